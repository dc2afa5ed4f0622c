"""Domain operations of the pipeline: registering and changing feeds, starting runs (the file
kept first, then split into chunks queued as tasks), re-processing dead letters, exporting
events and purging expired ones. Each change is one transaction with its audit entry."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from minga.core import audit, sealed
from minga.core.choices import Role
from minga.core.models import Membership, Organisation, User
from minga.core.spreadsheet import neutralise
from minga.pipeline import formats, partitions, processing, sources
from minga.pipeline.choices import DOCUMENT_FORMATS, TAXONOMY_OF, FeedFormat, FeedSource, RunSource, RunStatus
from minga.pipeline.models import COUNTS, EVENT_FIELDS, FEED_TLPS, Chunk, DeadLetter, Event, Feed, Run

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

logger = logging.getLogger(__name__)

MANAGING_ROLES = (Role.NODE_ADMIN, Role.ORG_ADMIN, Role.ANALYST)
FEED_FIELDS = (
    "name",
    "description",
    "format",
    "encoding",
    "mapping",
    "delimiter",
    "quotechar",
    "has_header",
    "default_tlp",
    "classification_type",
    "taxonomy_mapping",
    "dedup_window",
    "dedup_fields",
    "retention_days",
    "is_active",
    "source",
    "url",
    "directory",
    "pull_every",
)

TOKEN_PURPOSE = "pipeline.feed-token"  # noqa: S105  (a purpose, not a password)
PULLED_SOURCES = (FeedSource.URL, FeedSource.TAXII)
RETRY_FIRST_SECONDS = 60  # the first retry of a failed pull; each next one waits twice as long
RETRY_MAX_SECONDS = 86_400
MAPPABLE = (*EVENT_FIELDS, "classification")
DOCUMENT_DEDUP_FIELDS = ("source_ip", "source_port", "source_fqdn", "source_url", "classification_type")
MAX_EXPORT = 100_000  # events per export; narrow the filters for more
GIVE_UP_AFTER_FAILURES = 6  # failed attempts of one chunk before its run is marked failed


# --- who may do what ------------------------------------------------------------------------------


def may_manage(actor: User | AnonymousUser | None, organisation: Organisation | int) -> bool:
    """Analysts and admins of an organisation manage its feeds and runs; the node's operator
    (no actor, on the command line) any organisation's."""
    if actor is None:
        return True
    if not actor.is_authenticated or not actor.is_active:
        return False
    org_id = organisation if isinstance(organisation, int) else organisation.pk
    return Membership.objects.filter(
        user_id=actor.pk, organisation_id=org_id, is_active=True, role__in=MANAGING_ROLES
    ).exists()


def feeds_visible_to(user: User | AnonymousUser | None) -> QuerySet[Feed]:
    """A feed (its settings, runs and dead letters) is its owner's: active members of the
    owning organisation see it. Dead letters hold raw lines that were routed to no one yet, so
    they stay with the feed's owner, like the events the owner originates."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Feed.objects.none()
    return Feed.objects.filter(
        owner__memberships__user_id=user.pk, owner__memberships__is_active=True
    ).distinct()


def runs_visible_to(user: User | AnonymousUser | None) -> QuerySet[Run]:
    return Run.objects.filter(feed__in=feeds_visible_to(user)).select_related("feed", "feed__owner")


def _check_manage(actor: User | AnonymousUser | None, organisation: Organisation | int) -> None:
    if not may_manage(actor, organisation):
        raise PermissionDenied(_("Only analysts and admins of the feed's owner may do this."))


# --- feeds -----------------------------------------------------------------------------------------


def _validate(feed: Feed) -> None:
    errors: dict[str, str] = {}
    if feed.default_tlp not in FEED_TLPS:
        errors["default_tlp"] = _(
            "Events are shared with organisations: TLP:RED (named people only) is not a feed's level."
        )
    if not isinstance(feed.mapping, dict) or any(
        k not in MAPPABLE or not isinstance(v, str | int) or isinstance(v, bool)
        for k, v in feed.mapping.items()
    ):
        errors["mapping"] = _(
            "Map event fields (%(fields)s) to column names, numbers from 1, or JSON keys."
        ) % {"fields": ", ".join(MAPPABLE)}
    elif (
        not feed.has_header
        and feed.format == FeedFormat.CSV
        and any(
            not (str(v).isascii() and str(v).isdigit() and 0 < int(str(v)) < 10_000)
            for v in feed.mapping.values()
        )
    ):
        errors["mapping"] = _("Without a header, columns are numbers from 1.")
    if not isinstance(feed.taxonomy_mapping, dict) or any(
        not isinstance(k, str) or v not in TAXONOMY_OF for k, v in feed.taxonomy_mapping.items()
    ):
        errors["taxonomy_mapping"] = _('Map values of the feed to RSIT types, e.g. {"scan": "scanner"}.')
    if not isinstance(feed.dedup_fields, list) or any(
        f not in EVENT_FIELDS or f == "time" for f in feed.dedup_fields
    ):
        errors["dedup_fields"] = _("The key is a list of event fields other than time: %(fields)s.") % {
            "fields": ", ".join(EVENT_FIELDS[1:])
        }
    if feed.delimiter in ("", "\n", "\r", feed.quotechar) or feed.quotechar in ("", "\n", "\r"):
        errors["delimiter"] = _(
            "The delimiter and the quote character are two different characters, not line ends."
        )
    errors |= _source_errors(feed)
    if errors:
        raise ValidationError(errors)
    feed.full_clean(exclude=["owner"])


def _source_errors(feed: Feed) -> dict[str, str]:
    errors: dict[str, str] = {}
    if feed.source in PULLED_SOURCES:
        problem = sources.check_url(feed.url) if feed.url else _("A feed pulled from a URL names its URL.")
        if problem:
            errors["url"] = problem
    if feed.source == FeedSource.TAXII and feed.format != FeedFormat.STIX:
        errors["format"] = _("A TAXII collection gives STIX objects: the feed's format is STIX 2.1.")
    if feed.source == FeedSource.DIRECTORY:
        problem = sources.check_directory(feed.directory)
        if not problem and Feed.objects.filter(directory=feed.directory).exclude(pk=feed.pk).exists():
            problem = _("Another feed watches this folder: each folder is one feed's.")
        if problem:
            errors["directory"] = problem
    if not isinstance(feed.pull_every, int) or not 60 <= feed.pull_every <= 7 * 86_400:
        errors["pull_every"] = _("Pull between every minute (60 seconds) and every week (604800).")
    return errors


def register_feed(actor: User | AnonymousUser | None, owner: Organisation, **fields: Any) -> Feed:
    """Register a feed that ``owner`` receives. Analysts and admins of the owner may; audited
    (``pipeline.feed_registered``)."""
    _check_manage(actor, owner)
    token = fields.pop("token", None)
    unknown = set(fields) - set(FEED_FIELDS)
    if unknown:
        raise ValidationError({name: _("Unknown field.") for name in sorted(unknown)})
    if fields.get("format") in (*DOCUMENT_FORMATS, FeedFormat.INTELMQ) and "dedup_fields" not in fields:
        # Indicators name a domain or a URL as often as an address: all three in the key.
        fields["dedup_fields"] = list(DOCUMENT_DEDUP_FIELDS)
    feed = Feed(owner=owner, **fields)
    if token:
        feed.credential = sealed.seal(str(token), TOKEN_PURPOSE)
    _validate(feed)
    with transaction.atomic():
        feed.save()
        audit.record(
            "pipeline.feed_registered",
            actor=actor,
            obj=feed,
            organisation=owner,
            details={name: getattr(feed, name) for name in FEED_FIELDS if name != "description"}
            | ({"token": "set"} if token else {}),
        )
    return feed


def change_feed(actor: User | AnonymousUser | None, feed: Feed, **changes: Any) -> Feed:
    """Change a feed's settings; runs already started keep the options they started with.
    Audited (``pipeline.feed_changed``, with the old and new values)."""
    _check_manage(actor, feed.owner_id)
    token = changes.pop("token", None)
    unknown = set(changes) - set(FEED_FIELDS)
    if unknown:
        raise ValidationError({name: _("Unknown field.") for name in sorted(unknown)})
    before = {name: getattr(feed, name) for name in changes}
    for name, value in changes.items():
        setattr(feed, name, value)
    _validate(feed)
    if any(before[name] != getattr(feed, name) for name in ("source", "url") if name in changes):
        # Another source: its first pull is unconditional and due now.
        feed.etag = feed.last_modified = feed.last_error = feed.cursor = ""
        feed.failures, feed.next_pull_at = 0, None
    changed = {name: [before[name], value] for name, value in changes.items() if before[name] != value}
    if token is not None:  # the value is never recorded: only that it was set or cleared
        feed.credential = sealed.seal(str(token), TOKEN_PURPOSE) if token else ""
        changed["token"] = ["…", "set" if token else "cleared"]
    with transaction.atomic():
        feed.save()
        if changed:
            audit.record(
                "pipeline.feed_changed", actor=actor, obj=feed, organisation=feed.owner, details=changed
            )
    return feed


def delete_feed(actor: User | AnonymousUser | None, feed: Feed) -> None:
    """Delete a feed with its runs, events and dead letters, and the runs' files. Audited
    (``pipeline.feed_deleted``, with how many events went)."""
    _check_manage(actor, feed.owner_id)
    paths = [Path(p) for pair in feed.runs.values_list("path", "lines_path") for p in pair if p]
    with transaction.atomic():
        events = Event.objects.filter(feed=feed).count()
        audit.record(
            "pipeline.feed_deleted",
            actor=actor,
            obj=feed,
            organisation=feed.owner,
            details={"name": feed.name, "events": events},
        )
        Event.objects.filter(feed=feed).delete()
        feed.delete()
    for path in paths:
        path.unlink(missing_ok=True)


# --- runs ------------------------------------------------------------------------------------------


def runs_folder() -> Path:
    folder = Path(settings.VAR_DIR) / "pipeline-runs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start_run(
    actor: User | AnonymousUser | None,
    feed: Feed,
    pieces: Iterable[bytes],
    file_name: str,
    *,
    source: str = RunSource.UPLOAD,
    queue: bool = True,
    chunk_lines: int = processing.CHUNK_LINES,
) -> Run:
    """Keep a file of ``feed`` under the node's var folder (before anything reads it), split it
    into chunks of ``chunk_lines`` lines and, with ``queue``, queue one task per chunk (or leave
    them for ``run_inline``). A file that is not lines of text at all fails the run with the
    reason. Analysts and admins of the feed's owner may; audited (``pipeline.run_started``)."""
    _check_manage(actor, feed.owner_id)
    if not feed.is_active:
        raise ValidationError({"feed": _("The feed %(name)s is not active.") % {"name": feed.name}})
    run = Run(
        feed=feed,
        source=source,
        file_name=file_name.replace("\x00", "")[:200] or "upload",
        options=feed.options(),
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    path = runs_folder() / f"{run.uuid}.raw"
    digest, size = hashlib.sha256(), 0
    with path.open("wb") as out:
        for piece in pieces:
            out.write(piece)
            digest.update(piece)
            size += len(piece)
    run.path, run.file_size, run.sha256 = str(path), size, digest.hexdigest()
    split = _split(run, chunk_lines)
    from minga.pipeline.tasks import process_chunk

    with transaction.atomic():
        run.save()
        chunks = _create_chunks(run, split)
        audit.record(
            "pipeline.run_started",
            actor=actor,
            obj=run,
            organisation=feed.owner,
            details={
                "feed": feed.name,
                "file": run.file_name,
                "bytes": size,
                "sha256": run.sha256,
                "source": source,
                "chunks": len(chunks),
                "status": run.status,
                **({"reason": run.message[:300]} if run.message else {}),
            },
        )
        if queue:
            ids = list(Chunk.objects.filter(run=run).order_by("number").values_list("pk", flat=True))
            transaction.on_commit(lambda: _enqueue(process_chunk, ids))
    return run


def _split(run: Run, chunk_lines: int) -> processing.Split:
    """Split the run's file with its options; a file that cannot be read marks the run failed,
    an empty one done."""
    try:
        split = processing.split_file(_lines_file(run), run.options, chunk_lines)
        run.header = split.header
        processing.Chain(run.options, split.header, timezone.now())  # the mapping fits the header
    except ValueError as exc:
        split = processing.Split([], [])
        run.status, run.message, run.finished_at = RunStatus.FAILED, str(exc), timezone.now()
    if run.status != RunStatus.FAILED and not split.ranges:
        run.status, run.finished_at = RunStatus.DONE, timezone.now()
    run.chunk_count = len(split.ranges)
    return split


def _lines_file(run: Run) -> Path:
    """The file the chunks read: the kept file, or for a document (a STIX bundle, a MISP feed,
    an IntelMQ JSON array) its records written out as JSON lines next to it. Raises
    ``ValueError`` with a message when the document is not of the feed's format."""
    if run.lines_path:
        Path(run.lines_path).unlink(missing_ok=True)
        run.lines_path = ""
    raw = Path(run.path)
    if not formats.needs_preparing(run.options["format"], raw):
        return raw
    target = raw.with_suffix(".lines")
    run.lines_path = str(target)
    run.options["encoding"] = "utf-8"  # JSON documents are UTF-8, and so are the lines written
    prepared = formats.prepare(run.options["format"], raw, target)
    run.message = prepared.note()
    return target


def _create_chunks(run: Run, split: processing.Split) -> list[Chunk]:
    return Chunk.objects.bulk_create(
        Chunk(run=run, number=n, start_byte=s, end_byte=e, first_line=f, line_count=c)
        for n, (s, e, f, c) in enumerate(split.ranges, 1)
    )


def rerun(
    actor: User | AnonymousUser | None,
    run: Run,
    *,
    queue: bool = True,
    chunk_lines: int = processing.CHUNK_LINES,
) -> Run:
    """Process a finished run's kept file again with the feed's current settings (after fixing
    the mapping): its events and dead letters are replaced by what the file gives now (new
    events, new ids: incident links to the old ones no longer resolve). Events of other runs are
    not touched. Analysts and admins of the feed's owner may; audited
    (``pipeline.run_reprocessed``, with the counts before)."""
    feed = run.feed
    _check_manage(actor, feed.owner_id)
    if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        raise ValidationError({"run": _("The run is still being processed; wait until it is done.")})
    if not Path(run.path).is_file():
        raise ValidationError({"run": _("The run's file is no longer kept; upload it again.")})
    from minga.pipeline.tasks import process_chunk

    before = {name: getattr(run, name) for name in COUNTS}
    with transaction.atomic():
        processing.lock_feed(feed.pk)
        Event.objects.filter(run=run).delete()
        DeadLetter.objects.filter(run=run).delete()
        Chunk.objects.filter(run=run).delete()
        run.options, run.message, run.finished_at = feed.options(), "", None
        run.status, run.chunks_done = RunStatus.QUEUED, 0
        for name in COUNTS:
            setattr(run, name, 0)
        split = _split(run, chunk_lines)
        run.save()
        chunks = _create_chunks(run, split)
        audit.record(
            "pipeline.run_reprocessed",
            actor=actor,
            obj=run,
            organisation=feed.owner,
            details={"feed": feed.name, "file": run.file_name, "before": before, "chunks": len(chunks)},
        )
        if queue:
            ids = list(Chunk.objects.filter(run=run).order_by("number").values_list("pk", flat=True))
            transaction.on_commit(lambda: _enqueue(process_chunk, ids))
    return run


def _enqueue(task: Any, chunk_ids: list[int]) -> None:
    for chunk_id in chunk_ids:
        result = task.enqueue(chunk_id)
        Chunk.objects.filter(pk=chunk_id).update(task_id=str(result.id)[:64])


def run_inline(run: Run, progress: Callable[[Run], None] | None = None) -> Run:
    """Process a run's chunks in this process, in order (the command line without --queue)."""
    for chunk_id in run.chunks.filter(done=False).order_by("number").values_list("pk", flat=True):
        processing.process_chunk(chunk_id)
        if progress is not None:
            progress(Run.objects.get(pk=run.pk))
    run.refresh_from_db()
    return run


def resume_stalled(older_than: timedelta) -> int:
    """Queue again the chunks of unfinished runs whose task was lost: a worker killed in the
    middle of one leaves it marked running for ever. A chunk is stalled when it is not done and
    no task for it is waiting, and its last start (if any) is older than ``older_than``. Safe:
    a chunk is written once whoever processes it. Returns how many were queued."""
    from django_tasks_db.models import DBTaskResult

    from minga.pipeline.tasks import process_chunk

    cutoff = timezone.now() - older_than
    stalled = Chunk.objects.filter(done=False, run__status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).filter(
        Q(started_at__lt=cutoff) | Q(started_at__isnull=True, run__created_at__lt=cutoff)
    )
    queued = []
    for chunk_id in stalled.values_list("pk", flat=True)[:10_000]:
        tasks = DBTaskResult.objects.filter(task_path=process_chunk.module_path, args_kwargs__args=[chunk_id])
        if tasks.filter(status="READY").exists():
            continue
        if tasks.filter(status="RUNNING", started_at__gte=cutoff).exists():
            continue
        if tasks.filter(status="FAILED").count() >= GIVE_UP_AFTER_FAILURES:
            # Not a dead worker but a chunk that fails every time: say so rather than loop.
            chunk = Chunk.objects.select_related("run__feed").get(pk=chunk_id)
            processing.fail_run(
                chunk.run,
                _("Chunk %(number)s (lines from %(line)s) failed %(n)s times; see Background tasks.")
                % {"number": chunk.number, "line": chunk.first_line, "n": GIVE_UP_AFTER_FAILURES},
            )
            continue
        queued.append(chunk_id)
    _enqueue(process_chunk, queued)
    if queued:
        logger.warning("queued %d stalled chunks again", len(queued))
    return len(queued)


# --- sources: URLs pulled on a schedule, watched directories --------------------------------------


def claim_due_pulls(now: datetime | None = None) -> list[int]:
    """The active URL feeds whose next pull is due, each claimed (its next attempt moved past
    the longest a pull may take) so that one pull of it runs however many workers look."""
    now = now or timezone.now()
    due = Q(next_pull_at__isnull=True) | Q(next_pull_at__lte=now)
    lease = now + timedelta(seconds=12 * settings.MINGA_PIPELINE_PULL_TIMEOUT + 60)
    claimed = []
    pulled = Feed.objects.filter(due, is_active=True, source__in=PULLED_SOURCES)
    for feed_id in pulled.values_list("pk", flat=True):
        if Feed.objects.filter(due, pk=feed_id).update(next_pull_at=lease):
            claimed.append(feed_id)
    return claimed


def remove_stale_downloads(older_than: timedelta) -> int:
    """Delete the temporary files of pulls that a dead worker left under the runs folder."""
    cutoff = time.time() - older_than.total_seconds()
    removed = 0
    for path in runs_folder().glob(".*.part"):
        if path.name.startswith((".pull-", ".taxii-")) and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def retry_delay(failures: int) -> timedelta:
    """How long after its ``failures``-th failure in a row a source is tried again."""
    return timedelta(seconds=min(RETRY_FIRST_SECONDS * 2 ** max(failures - 1, 0), RETRY_MAX_SECONDS))


def pull_feed(feed: Feed) -> Run | None:
    """Pull a URL feed's source now: a new body is kept as a run's file and queued like an
    upload; "not modified" (ETag, Last-Modified) starts nothing. A failure (no answer, an error
    status, a body too large, a run that fails on what came) is recorded on the feed with the
    time of the next attempt, later after each failure in a row. Audited
    (``pipeline.feed_pulled`` or ``pipeline.feed_pull_failed``)."""
    try:
        if feed.source == FeedSource.TAXII:
            token = sealed.unseal(feed.credential, TOKEN_PURPOSE) if feed.credential else ""
            if token is None:
                raise sources.PullError(
                    _("The feed's token no longer opens (the node's key changed): set it again.")
                )
            pulled = sources.taxii_pull(feed.url, token, feed.cursor, runs_folder())
        else:
            pulled = sources.pull(feed.url, feed.etag, feed.last_modified, runs_folder())
    except sources.PullError as exc:
        _pull_failed(feed, str(exc))
        return None
    if pulled.status == 304 or pulled.path is None:
        _pulled(feed, None, pulled)
        return None
    name = Path(urlsplit(pulled.url).path).name or f"{feed.name}.pull"
    origin = RunSource.URL
    if feed.source == FeedSource.TAXII:
        name, origin = f"{feed.name}-{timezone.now():%Y%m%dT%H%M%S}.json", RunSource.TAXII
    try:
        run = start_run(None, feed, sources.pieces(pulled.path), name, source=origin)
    except ValidationError as exc:
        _pull_failed(feed, " ".join(exc.messages))
        return None
    finally:
        pulled.path.unlink(missing_ok=True)
    if run.status == RunStatus.FAILED:
        _pull_failed(
            feed, _("Run %(run)s failed: %(reason)s") % {"run": run.uuid, "reason": run.message}, run
        )
    else:
        _pulled(feed, run, pulled)
    return run


def _pulled(feed: Feed, run: Run | None, pulled: sources.Pulled) -> None:
    now = timezone.now()
    with transaction.atomic():
        Feed.objects.filter(pk=feed.pk).update(
            etag=pulled.etag,
            last_modified=pulled.last_modified,
            cursor=pulled.cursor,
            pulled_at=now,
            next_pull_at=now + timedelta(seconds=feed.pull_every),
            failures=0,
            last_error="",
        )
        audit.record(
            "pipeline.feed_pulled",
            obj=feed,
            organisation=feed.owner,
            details={
                "feed": feed.name,
                "url": pulled.url[:500],
                "result": "new" if run is not None else "not modified",
                **({"run": str(run.uuid), "bytes": pulled.size} if run is not None else {}),
                **({"objects": pulled.objects, "cursor": pulled.cursor} if pulled.cursor else {}),
            },
        )
    feed.refresh_from_db()


def _pull_failed(feed: Feed, reason: str, run: Run | None = None) -> None:
    now = timezone.now()
    failures = feed.failures + 1
    with transaction.atomic():
        Feed.objects.filter(pk=feed.pk).update(
            pulled_at=now,
            next_pull_at=now + retry_delay(failures),
            failures=failures,
            last_error=reason[:2000],
        )
        audit.record(
            "pipeline.feed_pull_failed",
            obj=feed,
            organisation=feed.owner,
            details={
                "feed": feed.name,
                "url": feed.url[:500],
                "reason": reason[:300],
                "failures": failures,
                "next_attempt": now + retry_delay(failures),
                **({"run": str(run.uuid)} if run is not None else {}),
            },
        )
    feed.refresh_from_db()
    logger.warning("pull of feed %s failed (%d in a row): %s", feed.name, failures, reason)


def watch_directories(now: float | None = None) -> dict[str, int]:
    """Read the settled files of every active feed's watched folder: each file is claimed
    (moved into ``processing/``, so no other worker takes it), kept as a run's file and queued,
    then moved into ``done/`` — or into ``failed/`` beside a ``.reason.txt`` when it cannot be
    read. A file is never read twice: it leaves the folder before its run starts, and one left in
    ``processing/`` by a crash is read again only if no run of it exists. Returns the files read
    per feed."""
    now = now if now is not None else time.time()
    settle = settings.MINGA_PIPELINE_SETTLE_SECONDS
    stalled = settings.MINGA_PIPELINE_STALLED_SECONDS
    read: dict[str, int] = {}
    feeds = Feed.objects.select_related("owner").filter(is_active=True, source=FeedSource.DIRECTORY)
    for feed in feeds:
        try:
            folder = sources.watched_folder(feed.directory)
        except (sources.PullError, OSError) as exc:
            if feed.last_error != str(exc):
                _pull_failed(feed, str(exc))
            continue
        # Left in processing/ by a worker that died: read unless its run exists.
        files = [(path, True) for path in sources.settled_files(folder / "processing", stalled, now)]
        for path in sources.settled_files(folder, settle, now):
            claimed = folder / "processing" / path.name
            if claimed.exists():
                continue  # a file of the same name is being read: this one waits its turn
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another worker claimed it
            except OSError as exc:  # not ours to move (permissions): say so, read the others
                if feed.last_error != str(exc):
                    _pull_failed(feed, str(exc))
                continue
            files.append((claimed, False))
        for claimed, leftover in files:
            try:
                _read_file(feed, folder, claimed, leftover=leftover)
            except OSError as exc:
                _pull_failed(feed, str(exc))
                continue
            read[feed.name] = read.get(feed.name, 0) + 1
    return read


def _read_file(feed: Feed, folder: Path, claimed: Path, *, leftover: bool) -> None:
    if leftover:
        digest = hashlib.sha256()
        for piece in sources.pieces(claimed):
            digest.update(piece)
        if Run.objects.filter(feed=feed, file_name=claimed.name[:200], sha256=digest.hexdigest()).exists():
            _file_to(claimed, folder / "done")  # its run started before the crash
            return
    try:
        run = start_run(None, feed, sources.pieces(claimed), claimed.name, source=RunSource.DIRECTORY)
    except (ValidationError, OSError) as exc:
        reason = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        _file_to(claimed, folder / "failed", reason)
        return
    if run.status == RunStatus.FAILED:
        _file_to(
            claimed,
            folder / "failed",
            _("Run %(run)s: %(reason)s") % {"run": run.uuid, "reason": run.message},
        )
    else:
        _file_to(claimed, folder / "done")


def _file_to(path: Path, folder: Path, reason: str = "") -> None:
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    target = folder / f"{stamp}-{path.name}"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{stamp}-{n}-{path.name}"
    path.rename(target)
    if reason:
        target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")


# --- dead letters ------------------------------------------------------------------------------------


def reprocess_dead_letters(actor: User | AnonymousUser | None, run: Run) -> dict[str, int]:
    """Read a run's dead letters again with the feed's current options (after the mapping was
    fixed): the lines that now pass become events (de-duplicated and routed as any other) and
    leave the dead letters; the run's counts follow. One transaction; audited
    (``pipeline.dead_letters_reprocessed``)."""
    feed = run.feed
    _check_manage(actor, feed.owner_id)
    options = feed.options()
    letters = list(DeadLetter.objects.filter(run=run).order_by("line").values_list("pk", "line", "raw"))
    try:
        chain = processing.Chain(options, run.header, run.created_at)
    except ValueError as exc:
        raise ValidationError({"mapping": str(exc)}) from exc
    outcome = processing.Outcome(window=chain.window)
    lines = [(line, raw) for _pk, line, raw in letters]
    seen: set[int] = set()
    for number, text, values in list(chain.records(lines, outcome)):
        try:
            event = chain.event(values)
        except processing.Bad as bad:
            outcome.reject(number, bad.field, bad.reason, text)
            continue
        key = chain.dedup_key(event, run.pk, number)
        if key in seen:
            outcome.duplicates += 1
            continue
        seen.add(key)
        event["line"], event["dedup_key"] = number, key
        outcome.events.append(event)
    owners = processing.route(outcome.events)
    with transaction.atomic():
        processing.lock_feed(feed.pk)
        locked = Run.objects.select_for_update().get(pk=run.pk)
        DeadLetter.objects.filter(pk__in=[pk for pk, _line, _raw in letters]).delete()
        counts = processing.write_events(locked, outcome, owners)
        still = DeadLetter.objects.filter(run=run).count()
        Run.objects.filter(pk=run.pk).update(
            invalid=still,
            parsed=locked.read - still,
            duplicates=F("duplicates") + counts["duplicates"],
            routed=F("routed") + counts["routed"],
            unrouted=F("unrouted") + counts["unrouted"],
        )
        result = {
            "reprocessed": len(letters),
            "stored": counts["routed"] + counts["unrouted"],
            "still_invalid": len(outcome.dead),
            **counts,
        }
        audit.record(
            "pipeline.dead_letters_reprocessed",
            actor=actor,
            obj=run,
            organisation=feed.owner,
            details={"feed": feed.name, **result},
        )
    return result


# --- exports and retention ---------------------------------------------------------------------------

EXPORT_COLUMNS = ("id", *EVENT_FIELDS, "feed", "tlp", "routed_to", "run", "line")


def export_events(
    actor: User | AnonymousUser | None, events: QuerySet[Event], *, fmt: str, scope: str
) -> bytes:
    """``events`` (already narrowed to what ``actor`` may read, at most ``MAX_EXPORT``) as CSV
    (cells a spreadsheet would run as formulas neutralised) or JSON. Audited
    (``pipeline.events_exported``), whatever the TLP."""
    from minga.pipeline import queries

    if fmt not in ("csv", "json"):
        raise ValidationError({"format": _("Unknown format %(value)s.") % {"value": str(fmt)[:20]}})
    rows = queries.export_rows(events[:MAX_EXPORT])
    document = orjson.dumps(rows) if fmt == "json" else events_csv(rows)
    audit.record(
        "pipeline.events_exported",
        actor=actor,
        details={
            "scope": scope[:200],
            "events": len(rows),
            "format": fmt,
            "tlp": sorted({r["tlp"] for r in rows}),
        },
    )
    return document


def events_csv(rows: list[dict[str, Any]]) -> bytes:
    """Export rows (``queries.export_rows``) as CSV, the cells a spreadsheet would run as
    formulas neutralised (``minga.core.spreadsheet``): the exports' and the digests' format."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow([neutralise(_cell(row[name])) for name in EXPORT_COLUMNS])
    return out.getvalue().encode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def purge_expired(now: datetime | None = None) -> dict[str, int]:
    """Delete the events older than their feed's retention period, feed by feed; each purge
    that deletes something is audited (``pipeline.events_purged``, by the node). On PostgreSQL
    the months older than every feed's cutoff go first, whole (``partitions.drop_expired``,
    counted and audited before the drop); the rest of each feed's expired events are deleted."""
    now = now or timezone.now()
    feeds = list(Feed.objects.select_related("owner"))
    cutoffs = {feed.pk: now - timedelta(days=feed.retention_days) for feed in feeds}
    dropped = partitions.drop_expired(cutoffs)
    purged: dict[str, int] = {feed.name: dropped[feed.pk] for feed in feeds if feed.pk in dropped}
    for feed in feeds:
        cutoff = cutoffs[feed.pk]
        with transaction.atomic():
            _deleted, per_model = Event.objects.filter(feed=feed, time__lt=cutoff).delete()
            count = per_model.get("pipeline.Event", 0)
            if count:
                purged[feed.name] = purged.get(feed.name, 0) + count
                audit.record(
                    "pipeline.events_purged",
                    obj=feed,
                    organisation=feed.owner,
                    details={"events": count, "older_than": cutoff, "retention_days": feed.retention_days},
                )
    return purged
