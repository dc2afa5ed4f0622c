"""``minga evidence``: register a file as evidence of an incident, list the register, and verify
it (files hashed again, chains of custody checked against the audit log)."""

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from minga.core.models import Organisation
from minga.incidents import services, storage
from minga.incidents.models import Evidence, Incident


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return " ".join(f"{field}: {m}" for field, ms in exc.message_dict.items() for m in ms)
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = "Register, list and verify the evidence of incidents."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser(
            "add",
            help="register a file as evidence of an incident (streamed into the store; "
            "at most MINGA_EVIDENCE_MAX_BYTES)",
        )
        add.add_argument("file", help="the file to register")
        add.add_argument(
            "--incident", required=True, metavar="REF", help="the incident, e.g. MNG-2026-000123"
        )
        add.add_argument("--title", required=True, help="what the file is, in a few words")
        add.add_argument("--description", default="")
        add.add_argument(
            "--media-type", default="", help="e.g. application/vnd.tcpdump.pcap (default: guessed)"
        )
        add.add_argument("--acquired-at", default="", help="when it was acquired, e.g. 2026-11-29T08:00:00Z")
        add.add_argument("--acquired-by", default="", help="who acquired it")
        add.add_argument("--source", default="", help="where it comes from (a host, a device, a person)")
        add.add_argument(
            "--custodian",
            default="",
            metavar="ORG",
            help="the organisation that holds it (short name; default: the incident's coordinator)",
        )
        add.add_argument("--custodian-person", default="", help="the person who holds it")
        add.add_argument("--reason", default="", help="why it is registered")

        listing = actions.add_parser("list", help="list the register")
        listing.add_argument("--incident", default="", metavar="REF", help="only this incident's evidence")

        actions.add_parser(
            "verify",
            help="hash every stored file again, check every chain of custody against the audit log "
            "and verify the audit chain; exits non-zero on any problem",
        )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "add":
            self._add(options)
        elif action == "list":
            self._list(options["incident"])
        else:
            self._verify()

    def _incident(self, reference: str) -> Incident:
        incident = Incident.objects.filter(reference=reference.strip().upper()).first()
        if incident is None:
            raise CommandError(f"No incident has the reference {reference!r}.")
        return incident

    def _add(self, options: dict[str, Any]) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        incident = self._incident(options["incident"])
        custodian = None
        if options["custodian"]:
            custodian = Organisation.objects.filter(short_name=options["custodian"]).first()
            if custodian is None:
                raise CommandError(f"No organisation is called {options['custodian']!r}.")
        acquired_at = None
        if options["acquired_at"]:
            acquired_at = parse_datetime(options["acquired_at"])
            if acquired_at is None or acquired_at.tzinfo is None:
                raise CommandError(
                    "--acquired-at: give a date and time with its zone, e.g. 2026-11-29T08:00:00Z."
                )
        with path.open("rb") as handle:
            try:
                evidence = services.register_evidence(
                    None,
                    incident,
                    chunks=storage.read_chunks(handle),
                    file_name=path.name,
                    title=options["title"],
                    media_type=options["media_type"],
                    description=options["description"],
                    acquired_at=acquired_at,
                    acquired_by=options["acquired_by"],
                    source=options["source"],
                    custodian_organisation=custodian,
                    custodian_person=options["custodian_person"],
                    reason=options["reason"],
                )
            except ValidationError as exc:
                raise CommandError(_messages(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered {path.name} as evidence #{evidence.pk} of {incident.reference}: "
                f"{evidence.size} bytes, SHA-256 {evidence.sha256}, "
                f"held by {evidence.custodian_organisation.short_name}."
            )
        )

    def _list(self, reference: str) -> None:
        rows = Evidence.objects.select_related("incident", "custodian_organisation").order_by("pk")
        if reference:
            rows = rows.filter(incident=self._incident(reference))
        count = 0
        for evidence in rows.iterator(chunk_size=500):
            count += 1
            holder = evidence.custodian_organisation.short_name
            if evidence.custodian_person:
                holder += f" ({evidence.custodian_person})"
            self.stdout.write(
                f"#{evidence.pk}\t{evidence.incident.reference}\t{evidence.status}\t{evidence.sha256}\t"
                f"{evidence.size}\t{holder}\t{evidence.title}"
            )
        self.stdout.write(f"{count} item(s).")

    def _verify(self) -> None:
        report = services.verify_register()
        for problem in report.problems:
            self.stderr.write(f"{problem.label}: {problem.message}")
        for broken in report.chain.problems:
            where = f"audit entry #{broken.seq}: " if broken.seq is not None else "audit log: "
            self.stderr.write(f"{where}{broken.message}")
        summary = (
            f"{report.items} item(s), {report.files} file(s) hashed again, "
            f"{report.custody_entries} custody line(s), {report.chain.entries} audit entries"
        )
        if report.ok:
            self.stdout.write(self.style.SUCCESS(f"The evidence register is intact: {summary} verified."))
            return
        items = {p.evidence for p in report.problems}
        raise CommandError(
            f"The evidence register has problems: {len(report.problems)} in {len(items)} item(s)"
            + (", and the audit chain is broken" if not report.chain.ok else "")
            + f" ({summary})."
        )
