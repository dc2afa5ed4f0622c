import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from minga.core.models import Organisation
from minga.pipeline import services
from minga.pipeline.choices import (
    TAXONOMY_OF,
    DigestChannel,
    DigestSchedule,
    Encoding,
    FeedFormat,
    FeedSource,
    RunStatus,
)
from minga.pipeline.models import COUNTS, EVENT_FIELDS, FEED_TLPS, Digest, Feed, Run


def _pairs(values: list[str], option: str) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for value in values:
        key, sep, target = value.partition("=")
        if not sep or not key.strip() or not target.strip():
            raise CommandError(f"{option} takes KEY=VALUE, not {value!r}.")
        pairs[key.strip()] = target.strip()
    return pairs


class Command(BaseCommand):
    help = "Register, change, list and show feeds; re-process a run's dead letters; purge expired events."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        for name, text in (("add", "register a feed"), ("change", "change a feed's settings")):
            sub = actions.add_parser(name, help=text)
            sub.add_argument("name", help="the feed's name: letters, digits, hyphens")
            sub.add_argument("--owner", required=name == "add", help="the owning organisation (short name)")
            sub.add_argument("--format", choices=FeedFormat.values)
            sub.add_argument("--encoding", choices=Encoding.values)
            sub.add_argument(
                "--map",
                action="append",
                default=[],
                metavar="FIELD=COLUMN",
                help=(
                    "which column (header name, or number from 1 with --no-header) or JSON key holds an "
                    f"event field ({', '.join(EVENT_FIELDS)}, or classification); repeatable"
                ),
            )
            sub.add_argument("--delimiter", help="CSV delimiter (default ,; 'tab' for a tab)")
            sub.add_argument("--quotechar", help='CSV quote character (default ")')
            sub.add_argument("--no-header", action="store_true", default=None, help="the first line is data")
            sub.add_argument("--tlp", choices=FEED_TLPS, help="TLP of the feed's events (default amber)")
            sub.add_argument("--type", choices=sorted(TAXONOMY_OF), help="RSIT type of lines that name none")
            sub.add_argument(
                "--taxonomy",
                action="append",
                default=[],
                metavar="VALUE=TYPE",
                help="a value of the classification column and the RSIT type it means; repeatable",
            )
            sub.add_argument("--dedup-window", type=int, metavar="SECONDS", help="0 keeps every event")
            sub.add_argument(
                "--dedup-key", metavar="FIELD,FIELD", help="the fields of the de-duplication key"
            )
            sub.add_argument("--retention-days", type=int, metavar="DAYS")
            sub.add_argument(
                "--source", choices=FeedSource.values, help="upload (default), url, directory or taxii"
            )
            sub.add_argument(
                "--url", help="with --source url: the URL pulled; with --source taxii: the collection's URL"
            )
            sub.add_argument(
                "--token", help="with --source taxii: the collection's bearer token ('' clears it)"
            )
            sub.add_argument(
                "--directory", help="with --source directory: a folder under MINGA_PIPELINE_INBOX"
            )
            sub.add_argument(
                "--pull-every", type=int, metavar="SECONDS", help="between two pulls (default 3600)"
            )
        actions.add_parser("list", help="list the feeds")
        show = actions.add_parser("show", help="a feed's settings and latest runs, as JSON")
        show.add_argument("name")
        again = actions.add_parser(
            "reprocess", help="read a run's dead letters again with the feed's settings"
        )
        again.add_argument("run", help="the run's id (a UUID)")
        rerun = actions.add_parser(
            "rerun", help="process a finished run's file again with the feed's settings (replaces its events)"
        )
        rerun.add_argument("run", help="the run's id (a UUID)")
        rerun.add_argument("--queue", action="store_true", help="queue the chunks for the workers")
        actions.add_parser("purge", help="delete the events older than their feed's retention now")
        actions.add_parser(
            "partitions", help="PostgreSQL: create the events' monthly partitions now (the daily job does it)"
        )
        pull = actions.add_parser("pull", help="pull a URL feed now (and process the run here)")
        pull.add_argument("name")
        pull.add_argument("--queue", action="store_true", help="leave the chunks to the workers")
        actions.add_parser("watch", help="read the settled files of the watched directories now")
        digest = actions.add_parser(
            "digest", help="organisations' digests: list, add, pause, resume, remove, send"
        )
        digest_actions = digest.add_subparsers(dest="digest_action", required=True)
        digest_actions.add_parser("list", help="list the digests")
        add = digest_actions.add_parser("add", help="subscribe an organisation to a digest of its events")
        add.add_argument("organisation", help="the organisation's short name")
        add.add_argument("--schedule", choices=DigestSchedule.values, default=DigestSchedule.DAILY)
        add.add_argument("--channel", choices=DigestChannel.values, default=DigestChannel.EMAIL)
        add.add_argument(
            "--to",
            action="append",
            default=[],
            metavar="ADDRESS",
            help="an e-mail address (repeatable; default: the organisation's 24/7 duty contacts)",
        )
        add.add_argument("--url", default="", help="with --channel webhook: the receiver's https URL")
        add.add_argument(
            "--send-empty", action="store_true", help="send a one-line digest when there is no event"
        )
        for name, text in (
            ("pause", "stop sending a digest"),
            ("resume", "send a paused digest again"),
            ("remove", "remove a digest"),
            ("secret", "give a webhook digest a new signing secret (printed once)"),
        ):
            one = digest_actions.add_parser(name, help=text)
            one.add_argument("id", help="the digest's id (a UUID)")
        digest_actions.add_parser("send", help="send the digests that are due now, here")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"_{action}")(options)

    def _fields(self, options: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        simple = {
            "format": "format",
            "encoding": "encoding",
            "quotechar": "quotechar",
            "tlp": "default_tlp",
            "type": "classification_type",
            "dedup_window": "dedup_window",
            "retention_days": "retention_days",
            "source": "source",
            "url": "url",
            "directory": "directory",
            "pull_every": "pull_every",
            "token": "token",
        }
        for option, name in simple.items():
            if options.get(option) is not None:
                fields[name] = options[option]
        if options.get("delimiter") is not None:
            fields["delimiter"] = "\t" if options["delimiter"] == "tab" else options["delimiter"]
        if options.get("no_header"):
            fields["has_header"] = False
        if options["map"]:
            fields["mapping"] = _pairs(options["map"], "--map")
        if options["taxonomy"]:
            fields["taxonomy_mapping"] = _pairs(options["taxonomy"], "--taxonomy")
        if options.get("dedup_key"):
            fields["dedup_fields"] = [f.strip() for f in options["dedup_key"].split(",") if f.strip()]
        return fields

    def _organisation(self, short_name: str) -> Organisation:
        organisation = Organisation.objects.filter(short_name=short_name).first()
        if organisation is None:
            raise CommandError(f"No organisation is called {short_name!r}.")
        return organisation

    def _feed(self, name: str) -> Feed:
        feed = Feed.objects.select_related("owner").filter(name=name).first()
        if feed is None:
            raise CommandError(f"No feed is called {name!r}.")
        return feed

    def _run(self, text: str) -> Run:
        run_id = _uuid(text)
        run = Run.objects.select_related("feed__owner").filter(uuid=run_id).first() if run_id else None
        if run is None:
            raise CommandError(f"No run has the id {text!r}.")
        return run

    def _add(self, options: dict[str, Any]) -> None:
        try:
            feed = services.register_feed(
                None, self._organisation(options["owner"]), name=options["name"], **self._fields(options)
            )
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"feed {feed.name} registered for {feed.owner.short_name}"))

    def _change(self, options: dict[str, Any]) -> None:
        feed = self._feed(options["name"])
        if options.get("owner"):
            raise CommandError("A feed keeps its owner; register a new feed for another organisation.")
        try:
            services.change_feed(None, feed, **self._fields(options))
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"feed {feed.name} changed"))

    def _list(self, options: dict[str, Any]) -> None:
        for feed in Feed.objects.select_related("owner").annotate(run_count=Count("runs")).order_by("name"):
            state = "active" if feed.is_active else "inactive"
            self.stdout.write(
                f"{feed.name}\t{feed.owner.short_name}\t{feed.format}\t{feed.default_tlp}\t{state}\t"
                f"{feed.run_count} runs"
            )

    def _show(self, options: dict[str, Any]) -> None:
        feed = self._feed(options["name"])
        runs = [
            {"id": str(r.uuid), "file": r.file_name, "status": r.status, "created": r.created_at.isoformat()}
            | {name: getattr(r, name) for name in COUNTS}
            for r in feed.runs.order_by("-created_at")[:10]
        ]
        document = {"name": feed.name, "owner": feed.owner.short_name, **feed.options(), "runs": runs}
        document |= {"default_tlp": feed.default_tlp, "retention_days": feed.retention_days}
        document |= {"source": feed.source, "url": feed.url, "directory": feed.directory}
        if feed.source in (FeedSource.URL, FeedSource.TAXII):
            document |= {
                "pull_every": feed.pull_every,
                "pulled_at": feed.pulled_at.isoformat() if feed.pulled_at else None,
                "next_pull_at": feed.next_pull_at.isoformat() if feed.next_pull_at else None,
                "failures": feed.failures,
                "last_error": feed.last_error,
            }
        self.stdout.write(json.dumps(document, indent=2, ensure_ascii=False))

    def _reprocess(self, options: dict[str, Any]) -> None:
        run = self._run(options["run"])
        try:
            result = services.reprocess_dead_letters(None, run)
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from exc
        self.stdout.write(self.style.SUCCESS(", ".join(f"{k} {v}" for k, v in result.items())))

    def _rerun(self, options: dict[str, Any]) -> None:
        run = self._run(options["run"])
        try:
            run = services.rerun(None, run, queue=options["queue"])
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from exc
        if not options["queue"]:
            run = services.run_inline(run)
        self.stdout.write(
            self.style.SUCCESS(
                f"run {run.uuid}: {run.status}; read {run.read}, parsed {run.parsed}, invalid {run.invalid}, "
                f"duplicates {run.duplicates}, routed {run.routed}, unrouted {run.unrouted}"
            )
        )

    def _pull(self, options: dict[str, Any]) -> None:
        feed = self._feed(options["name"])
        if feed.source not in (FeedSource.URL, FeedSource.TAXII):
            raise CommandError(
                f"The feed {feed.name} is not pulled from a URL (its source is {feed.source})."
            )
        run = services.pull_feed(feed)
        if run is None:
            if feed.last_error:
                raise CommandError(
                    f"pull failed: {feed.last_error} (next attempt {feed.next_pull_at:%Y-%m-%d %H:%M})"
                )
            self.stdout.write(self.style.SUCCESS(f"feed {feed.name}: not modified since the last pull"))
            return
        if not options["queue"] and run.status != RunStatus.FAILED:
            run = services.run_inline(run)
        self.stdout.write(
            self.style.SUCCESS(
                f"run {run.uuid}: {run.status}; read {run.read}, parsed {run.parsed}, invalid {run.invalid}"
            )
        )

    def _watch(self, options: dict[str, Any]) -> None:
        read = services.watch_directories()
        self.stdout.write(
            self.style.SUCCESS(
                f"read {sum(read.values())} files" + "".join(f"\n  {k}: {v}" for k, v in read.items())
            )
        )

    def _digest(self, options: dict[str, Any]) -> None:
        from minga.pipeline import digests

        action = options["digest_action"]
        if action == "list":
            for d in Digest.objects.select_related("organisation").order_by(
                "organisation__short_name", "created_at"
            ):
                to = (
                    d.url
                    if d.channel == DigestChannel.WEBHOOK
                    else ", ".join(d.recipients) or "duty contacts"
                )
                state = "active" if d.is_active else "paused"
                if d.failures:
                    state += f" ({d.failures} failures: {d.last_error})"
                self.stdout.write(
                    f"{d.uuid}\t{d.organisation.short_name}\t{d.schedule}\t{d.channel}\t{to}\t"
                    f"up to {d.window_end.isoformat(timespec='seconds')}\t{state}"
                )
            return
        if action == "send":
            claimed = digests.claim_due()
            for digest_id, token in claimed:
                self.stdout.write(digests.send(digest_id, token))
            self.stdout.write(self.style.SUCCESS(f"{len(claimed)} digests due"))
            return
        try:
            if action == "add":
                digest, secret = digests.create_digest(
                    None,
                    self._organisation(options["organisation"]),
                    schedule=options["schedule"],
                    channel=options["channel"],
                    recipients=options["to"],
                    url=options["url"],
                    send_empty=options["send_empty"],
                )
                self.stdout.write(self.style.SUCCESS(f"digest {digest.uuid} added"))
                if secret:
                    self.stdout.write(f"signing secret (shown once): {secret}")
                return
            key = _uuid(options["id"])
            found = Digest.objects.select_related("organisation").filter(uuid=key).first() if key else None
            if found is None:
                raise CommandError(f"No digest has the id {options['id']!r}.")
            if action in ("pause", "resume"):
                digests.change_digest(None, found, is_active=action == "resume")
            elif action == "remove":
                digests.delete_digest(None, found)
            elif action == "secret":
                self.stdout.write(f"signing secret (shown once): {digests.new_secret(None, found)}")
                return
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"digest {found.uuid}: {action} done"))

    def _purge(self, options: dict[str, Any]) -> None:
        purged = services.purge_expired()
        total = sum(purged.values())
        self.stdout.write(
            self.style.SUCCESS(f"purged {total} events" + "".join(f"\n  {k}: {v}" for k, v in purged.items()))
        )

    def _partitions(self, options: dict[str, Any]) -> None:
        from minga.pipeline import partitions

        if not partitions.enabled():
            self.stdout.write("SQLite: the event tables are not partitioned; nothing to do")
            return
        created = partitions.maintain()
        self.stdout.write(
            self.style.SUCCESS(
                f"created {len(created)} monthly partitions"
                + "".join(f"\n  {name}: {moved} events moved from DEFAULT" for name, moved in created.items())
            )
        )


def _uuid(text: str) -> str | None:
    import uuid

    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return "; ".join(exc.messages)
