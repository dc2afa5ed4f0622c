"""Domain operations of the intel store: importing STIX 2.1 bundles, queueing web uploads.

An import streams the bundle (ijson: a 500 MB file is never held whole), checks each object on
the fast path of ``minga.intel.stix``, and writes chunks of a few thousand objects, each in one
transaction: the versions (bulk), their recipients, their observables and links. A bad object
becomes a rejection with its reason and the rest goes on; a replayed version is counted as
already stored. Versions are kept per originating organisation (see ``StixObject``): an import
looks at, supersedes and is refused by its own organisation's versions only. Every import ends
with one audit entry carrying its counts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import ijson
import orjson
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from minga.core import audit
from minga.core.choices import TLP, WORKING_ROLES
from minga.core.models import Membership, Organisation, User
from minga.intel import bulk, observables, stix, stix20
from minga.intel.choices import ImportStatus
from minga.intel.convert import Rejected, Unreadable
from minga.intel.models import UNVERSIONED, ImportJob, ObjectObservable, Observable, StixObject

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

logger = logging.getLogger(__name__)

CHUNK_SIZE = 5000  # objects per transaction: a crash loses at most one chunk, replayed idempotently
MAX_REJECTIONS_KEPT = 100  # reasons kept for the report; the count covers them all
EPOCH = UNVERSIONED  # the version of objects that have none (SCOs)
IMPORTING_ROLES = WORKING_ROLES
LOOKUP_BATCH = 900  # values per IN (...) query, well within every database's limits


@dataclass(frozen=True)
class Rejection:
    index: int  # position in the bundle's objects, from 0
    stix_id: str
    reason: str
    version: str = ""  # the object's modified (or created) as given, when tracked

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.stix_id, "reason": self.reason}


@dataclass(frozen=True)
class Provenance:
    """Where versions come from, as federation tells: the node that first shared them and the
    peer that sent them here. Blank for what this node's own organisations share."""

    origin_node: str = ""
    received_from: str = ""


LOCAL = Provenance()


@dataclass(frozen=True)
class StoredVersion:
    index: int  # position in the bundle's objects, from 0
    stix_id: str
    modified: datetime  # as stored: EPOCH for objects without versions
    fresh: bool  # False: the version was already stored (a replay)


@dataclass
class ImportResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    error: str = ""  # the bundle itself was unreadable from some point on
    # Every object's fate, kept only when the caller asks (``import_bundle(track=True)``): what a
    # TAXII status resource lists. None otherwise, so a 500 MB bundle keeps no per-object list.
    stored: list[StoredVersion] | None = None
    failed: list[Rejection] | None = None
    # The pks of the versions stored, as ranges [first, last]: what an import job keeps to show
    # its correlations (``ImportJob.stored_ranges``). A few ranges per chunk at most.
    stored_ranges: list[list[int]] = field(default_factory=list)

    def tracked(self) -> ImportResult:
        """An empty result that tracks objects if this one does."""
        if self.stored is None:
            return ImportResult()
        return ImportResult(stored=[], failed=[])

    @property
    def seen(self) -> int:
        return self.accepted + self.duplicates + self.rejected

    def reject(self, index: int, stix_id: Any, reason: str, version: Any = None) -> None:
        self.rejected += 1
        name = stix_id if isinstance(stix_id, str) else ""
        if len(self.rejections) < MAX_REJECTIONS_KEPT:
            self.rejections.append(Rejection(index, name[:300], reason))
        if self.failed is not None:
            stamp = version if isinstance(version, str) else ""
            self.failed.append(Rejection(index, name[:300], reason, stamp[:40]))

    def add_stored(self, pks: Iterable[int]) -> None:
        """Record the pks of versions just stored (``stored_ranges``)."""
        add_ranges(self.stored_ranges, pks)

    def merge(self, other: ImportResult) -> None:
        for first, last in other.stored_ranges:
            if self.stored_ranges and first == self.stored_ranges[-1][1] + 1:
                self.stored_ranges[-1][1] = last  # the next chunk continues this one's range
            else:
                self.stored_ranges.append([first, last])
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        room = MAX_REJECTIONS_KEPT - len(self.rejections)
        self.rejections.extend(other.rejections[: max(room, 0)])
        if self.stored is not None and other.stored is not None:
            self.stored.extend(other.stored)
        if self.failed is not None and other.failed is not None:
            self.failed.extend(other.failed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "rejections": [r.as_dict() for r in self.rejections],
            "error": self.error,
        }


def add_ranges(ranges: list[list[int]], pks: Iterable[int]) -> None:
    """Extend ``ranges`` ([first, last] pairs, inclusive) with ``pks``: runs of consecutive pks
    become one range, and a run that continues the last range extends it. Contiguity is not
    assumed (on PostgreSQL another session may draw from the sequence between two of a chunk's
    pks): it only keeps the list short."""
    for pk in sorted(pks):
        if ranges and pk == ranges[-1][1] + 1:
            ranges[-1][1] = pk
        else:
            ranges.append([pk, pk])


def may_import(actor: User | AnonymousUser | None, organisation: Organisation) -> bool:
    """Analysts, liaisons and admins of an organisation import in its name; the node's operator
    (no actor, on the command line) for any organisation."""
    if actor is None:
        return True
    if not actor.is_authenticated or not actor.is_active:
        return False
    return Membership.objects.filter(
        user_id=actor.pk, organisation=organisation, is_active=True, role__in=IMPORTING_ROLES
    ).exists()


def _check_import(
    actor: User | AnonymousUser | None,
    organisation: Organisation,
    tlp: str,
    recipients: Sequence[Organisation],
) -> None:
    if not may_import(actor, organisation):
        raise PermissionDenied(
            _("Only analysts and admins of %(organisation)s may import in its name.")
            % {"organisation": organisation.name}
        )
    if tlp not in TLP.values:
        raise ValidationError({"tlp": _("Unknown TLP level: %(value)s.") % {"value": str(tlp)[:40]}})
    if tlp == TLP.RED and actor is None:
        raise ValidationError(
            {"tlp": _("TLP:RED objects are readable by named people only: import them as a user.")}
        )
    if tlp == TLP.RED and recipients:
        raise ValidationError(
            {"recipients": _("TLP:RED is for named people, not organisations: choose TLP:AMBER+STRICT.")}
        )


# --- the envelope ------------------------------------------------------------------------------


def _check_envelope(stream: IO[bytes]) -> None:
    """Refuse what is not a STIX bundle before reading its objects. Only the keys before
    ``objects`` are read (producers put type and spec_version first); a stream that cannot be
    rewound is checked object by object only."""
    if not stream.seekable():
        return
    start = stream.tell()
    envelope: dict[str, Any] = {}
    try:
        events = ijson.parse(stream)
        prefix, event, _value = next(events)
        if event != "start_map":
            raise ValidationError(_("This is not a STIX bundle: the document is not a JSON object."))
        for prefix, event, value in events:
            if prefix == "" and event == "map_key" and value == "objects":
                break
            if prefix in ("type", "spec_version") and event == "string":
                envelope[prefix] = value
    except StopIteration:
        raise ValidationError(_("The file is empty.")) from None
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError) as exc:
        raise ValidationError(
            _("The file is not valid JSON: %(error)s") % {"error": str(exc)[:200]}
        ) from None
    stream.seek(start)
    if envelope.get("type", "bundle") != "bundle":
        raise ValidationError(
            _("This is not a STIX bundle: its type is %(type)s, not bundle.")
            % {"type": envelope["type"][:60]}
        )
    # A STIX 2.0 bundle (spec_version on the bundle) is read like any other: its objects, which
    # carry no spec_version, are upgraded one by one (minga.intel.stix20). Some 2.1 producers
    # put "2.1" on the bundle, which 2.1 no longer defines but which harms nothing.
    version = envelope.get("spec_version", "2.1")
    if version not in ("2.0", "2.1"):
        raise ValidationError(
            _("The bundle's spec_version is %(value)s: Minga reads STIX 2.0 and 2.1 bundles.")
            % {"value": str(version)[:20]}
        )


# --- the import ----------------------------------------------------------------------------------


@dataclass
class _Candidate:
    index: int
    obj: dict[str, Any]
    stix_id: str
    modified: datetime
    raw: str
    tlp: str


def _label(obj: dict[str, Any]) -> str:
    for name in ("name", "value", "pattern", "relationship_type", "path", "number", "opinion", "context"):
        value = obj.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return str(value)[:200]
    return ""


def _version_of(obj: Any) -> Any:
    return (obj.get("modified") or obj.get("created")) if isinstance(obj, dict) else None


def _prepare(index: int, obj: Any, default_tlp: str, result: ImportResult) -> _Candidate | None:
    try:
        stix.validate(obj)
        stix.pad_to_milliseconds(obj)
        raw = orjson.dumps(obj).decode()
    except stix.Invalid as exc:
        result.reject(index, obj.get("id") if isinstance(obj, dict) else None, str(exc), _version_of(obj))
        return None
    except orjson.JSONEncodeError:
        result.reject(
            index, obj.get("id"), _("A number is too large to store (more than 64 bits)."), _version_of(obj)
        )
        return None
    if "\\u0000" in raw:
        result.reject(index, obj.get("id"), _("Text may not contain NUL characters."), _version_of(obj))
        return None
    stamp = obj.get("modified") or obj.get("created")
    modified = stix.parse_timestamp(stamp, "modified") if stamp else EPOCH
    tlp = stix.tlp_of(obj) or default_tlp
    return _Candidate(index, obj, obj["id"], modified, raw, tlp)


def _uuid4_hex() -> str:
    """A random (version 4) UUID as 32 hex digits, the form SQLite stores and PostgreSQL reads:
    ``uuid.uuid4()`` and its conversion cost more than the rest of a row's columns."""
    n = int.from_bytes(os.urandom(16), "big")
    n = (n & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    return f"{n:032x}"


def _batched(values: Sequence[Any], size: int = LOOKUP_BATCH) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _store_chunk(
    candidates: list[_Candidate],
    organisation: Organisation,
    recipients: Sequence[Organisation],
    recipient_users: Sequence[User],
    result: ImportResult,
    provenance: Provenance = LOCAL,
) -> None:
    """Write one chunk of valid objects in one transaction, with no per-object query. Chunks are
    written one at a time (``_serialise_chunk_writes``), so the look-up of the stored versions
    and the write see the same store; should a version still be stored meanwhile, the chunk is
    looked at again, and those versions count as already stored."""
    for attempt in (1, 2):
        outcome = result.tracked()
        try:
            _write_chunk(candidates, organisation, recipients, recipient_users, outcome, provenance)
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        break
    result.merge(outcome)


# Held by each chunk's transaction, and by deletions, on PostgreSQL (SQLite's IMMEDIATE
# transactions are one at a time already): another organisation's import of the same ids cannot
# slip between the look-up of the ids' holders and the write, nor a deletion between the look-up
# of an id's latest version and the write of a newer one, so ``StixObject.unrivalled`` is never
# wrongly true.
CHUNK_WRITE_LOCK = 0x6D696E6761  # "minga"


def _serialise_chunk_writes() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHUNK_WRITE_LOCK])


def _date_added_now() -> datetime:
    """The ``date_added`` of the versions a chunk stores: now, and never earlier than the newest
    version stored. Chunks are written one at a time and this is read inside that turn, so
    ``date_added`` grows in commit order even with workers on several machines whose clocks
    differ, or a clock stepped back: a TAXII client that pages, or polls with ``added_after``,
    never misses a version committed after its last page (one probe of the date_added index)."""
    now = timezone.now()
    newest = StixObject.objects.order_by("-date_added").values_list("date_added", flat=True).first()
    return newest if newest is not None and newest > now else now


def _write_chunk(
    candidates: list[_Candidate],
    organisation: Organisation,
    recipients: Sequence[Organisation],
    recipient_users: Sequence[User],
    result: ImportResult,
    provenance: Provenance,
) -> None:
    with transaction.atomic():
        _serialise_chunk_writes()
        _write_chunk_locked(candidates, organisation, recipients, recipient_users, result, provenance)


def _write_chunk_locked(
    candidates: list[_Candidate],
    organisation: Organisation,
    recipients: Sequence[Organisation],
    recipient_users: Sequence[User],
    result: ImportResult,
    provenance: Provenance,
) -> None:
    ids = list({c.stix_id for c in candidates})
    existing: set[tuple[str, datetime]] = set()
    latest: dict[str, tuple[datetime, bool, int | None]] = {}  # stix_id -> (modified, revoked, pk)
    held_elsewhere: set[str] = set()  # ids another organisation holds: their rows are rivals
    # The organisation's own versions only: another's copy of an id neither makes a version a
    # replay, nor blocks it by a revocation, nor loses its latest flag, and so the counts and
    # the reasons of this import say nothing about what other organisations hold.
    versions = bulk.select_in(
        StixObject,
        ("stix_id", "modified", "is_latest", "revoked", "id", "origin_organisation"),
        "stix_id",
        ids,
    )
    flagged: list[tuple[str, datetime, int]] = []  # own rows flagged latest: one per id, bar races
    for stix_id, modified, is_latest, revoked, pk, origin in versions:
        if origin != organisation.pk:
            held_elsewhere.add(stix_id)
            continue
        existing.add((stix_id, modified))
        if is_latest:
            flagged.append((stix_id, modified, pk))
            if stix_id not in latest or modified > latest[stix_id][0]:
                latest[stix_id] = (modified, revoked, pk)

    fresh: list[_Candidate] = []
    for candidate in candidates:
        key = (candidate.stix_id, candidate.modified)
        if key in existing:
            result.duplicates += 1
            if result.stored is not None:
                result.stored.append(StoredVersion(candidate.index, *key, fresh=False))
            continue
        current = latest.get(candidate.stix_id)
        if current is not None and current[1] and candidate.modified > current[0]:
            result.reject(
                candidate.index,
                candidate.stix_id,
                _("The object was revoked: STIX allows no newer version of a revoked object."),
                _version_of(candidate.obj),
            )
            continue
        existing.add(key)
        fresh.append(candidate)
        if current is None or candidate.modified > current[0]:
            latest[candidate.stix_id] = (candidate.modified, candidate.obj.get("revoked") is True, None)
    if not fresh:
        return

    now = _date_added_now()
    rows = []
    for c in fresh:
        obj = c.obj
        is_sighting = obj["type"] == "sighting"
        rows.append(
            (
                _uuid4_hex(),
                now,
                now,
                organisation.pk,
                c.tlp,
                c.stix_id,
                obj["type"],
                obj.get("spec_version", "2.1"),
                stix.parse_timestamp(obj["created"], "created") if "created" in obj else None,
                c.modified,
                now,
                obj.get("revoked") is True,
                latest[c.stix_id][0] == c.modified,
                c.stix_id not in held_elsewhere,
                _label(obj),
                obj["sighting_of_ref"] if is_sighting else "",
                obj.get("count", 1) if is_sighting else None,
                stix.parse_timestamp(obj["first_seen"], "first_seen") if "first_seen" in obj else None,
                stix.parse_timestamp(obj["last_seen"], "last_seen") if "last_seen" in obj else None,
                c.raw,
                provenance.origin_node,
                provenance.received_from,
            )
        )
    # The organisation's stored versions that a fresh one supersedes stop being its latest.
    superseded = [pk for stix_id, modified, pk in flagged if latest[stix_id][0] != modified]
    for batch in _batched(superseded):
        StixObject.objects.filter(pk__in=batch).update(is_latest=False)
    # Another organisation's rows of an id this one now stores too have a rival from now on.
    rivalled = sorted({c.stix_id for c in fresh} & held_elsewhere)
    for batch in _batched(rivalled):
        StixObject.objects.filter(stix_id__in=batch, unrivalled=True).update(unrivalled=False)
    pks = bulk.insert_returning_ids(StixObject, OBJECT_COLUMNS, rows)
    result.add_stored(pks)
    stored = [(pk, row[4], c) for pk, row, c in zip(pks, rows, fresh, strict=True)]
    _link_recipients(stored, recipients, recipient_users)
    _index_observables(stored)
    result.accepted += len(rows)
    if result.stored is not None:
        result.stored.extend(StoredVersion(c.index, c.stix_id, c.modified, fresh=True) for c in fresh)


# The columns the import writes, in the order of the rows it builds.
OBJECT_COLUMNS = (
    "uuid",
    "created_at",
    "updated_at",
    "origin_organisation",
    "tlp",
    "stix_id",
    "type",
    "spec_version",
    "created",
    "modified",
    "date_added",
    "revoked",
    "is_latest",
    "unrivalled",
    "label",
    "sighting_of_ref",
    "sighting_count",
    "first_seen",
    "last_seen",
    "raw",
    "origin_node",
    "received_from",
)


def _link_recipients(
    stored: list[tuple[int, str, _Candidate]],
    recipients: Sequence[Organisation],
    recipient_users: Sequence[User],
) -> None:
    _check_recipients(recipients)
    through = StixObject.recipient_organisations.through
    bulk.insert_product(
        through,
        ("stixobject", "organisation"),
        [pk for pk, _tlp, _c in stored],
        [org.pk for org in recipients],
    )
    through_users = StixObject.recipient_users.through
    bulk.insert(
        through_users,
        ("stixobject", "user"),
        [(pk, user.pk) for pk, tlp, _c in stored if tlp == TLP.RED for user in recipient_users],
    )


def _check_recipients(recipients: Sequence[Organisation]) -> None:
    """What the link table's foreign keys checked row by row (``StixObject``), once per chunk:
    every recipient still exists, and, on PostgreSQL, stays so until the chunk commits (the
    lock a foreign key check takes). The objects' side needs no check: the links name only the
    rows this chunk has just written."""
    wanted = {org.pk for org in recipients}
    if not wanted:
        return
    if connection.vendor == "postgresql":
        table, key = (connection.ops.quote_name(name) for name in (Organisation._meta.db_table, "id"))
        query = f"SELECT {key} FROM {table} WHERE {key} = ANY(%s) FOR KEY SHARE"  # noqa: S608  (names from the model)
        with connection.cursor() as cursor:
            cursor.execute(query, [sorted(wanted)])
            found = {row[0] for row in cursor.fetchall()}
    else:  # one writer at a time on SQLite, whose link table keeps its foreign keys anyway
        found = set(Organisation.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    if found != wanted:
        raise IntegrityError(f"recipient organisations {sorted(wanted - found)} no longer exist")


def _index_observables(stored: list[tuple[int, str, _Candidate]]) -> None:
    per_row = [(pk, observables.extract(c.obj)) for pk, _tlp, c in stored]
    wanted = {pair for _pk, found in per_row for pair in found}
    if not wanted:
        return
    ids = _observable_ids(wanted)
    # Observables recur across chunks and imports: inserting only the unknown ones spares
    # PostgreSQL a speculative insertion per known value (ON CONFLICT, ~18 µs a row here).
    missing = sorted(wanted - ids.keys())
    if missing:
        bulk.insert(Observable, ("kind", "value"), missing, ignore_conflicts=True)
        ids.update(_observable_ids(missing))
    bulk.insert(
        ObjectObservable,
        ("stix_object", "observable"),
        [(pk, ids[pair]) for pk, found in per_row for pair in found],
    )


def _observable_ids(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The ids of the stored observables among ``pairs`` (kind, value), and of any other kind
    with one of their values."""
    values = sorted({value for _kind, value in pairs})
    found = bulk.select_in(Observable, ("kind", "value", "id"), "value", values)
    return {(kind, value): pk for kind, value, pk in found}


def import_bundle(
    actor: User | AnonymousUser | None,
    organisation: Organisation,
    stream: IO[bytes],
    tlp: str,
    recipients: Sequence[Organisation] = (),
    *,
    progress: Callable[[ImportResult], None] | None = None,
    source: str = "",
    track: bool = False,
) -> ImportResult:
    """Import a STIX 2.1 bundle read from ``stream``, in the name of ``organisation``.

    ``tlp`` and ``recipients`` apply to every object that carries no TLP marking of its own;
    the recipients (organisations) are named on every object of the import. Callable by the
    organisation's analysts, liaisons and admins, or by the operator (``actor`` None). Raises
    ``ValidationError`` when the stream is not a STIX bundle at all; otherwise returns the
    counts and the reasons of rejected objects, which one ``intel.bundle_imported`` audit entry
    also records. STIX 2.0 objects are upgraded or rejected (``minga.intel.stix20``). With
    ``track``, the result also lists every object's fate (``stored`` and ``failed``), in bundle
    order within each list."""
    recipients = list(dict.fromkeys(recipients))
    _check_import(actor, organisation, tlp, recipients)
    _check_envelope(stream)
    items = stix20.upgrading(enumerate(ijson.items(stream, "objects.item", use_float=True)))
    return _import(
        actor, organisation, items, tlp, recipients, fmt="stix", progress=progress, source=source, track=track
    )


IMPORT_ACTIONS = {"stix": "intel.bundle_imported", "misp": "intel.misp_imported", "csv": "intel.csv_imported"}


def import_objects(
    actor: User | AnonymousUser | None,
    organisation: Organisation,
    items: Iterable[tuple[int, Any]],
    tlp: str,
    recipients: Sequence[Organisation] = (),
    *,
    fmt: str,
    progress: Callable[[ImportResult], None] | None = None,
    source: str = "",
    track: bool = False,
    provenance: Provenance = LOCAL,
) -> ImportResult:
    """Import the STIX 2.1 objects a format reader (MISP, CSV, a peer's envelope) yields as
    ``(index, object)`` pairs, or ``convert.Rejected`` entries for records it could not convert;
    stored exactly as a bundle's objects are (same checks, chunks, observables, recipients),
    with ``provenance`` on every version. Same permissions as ``import_bundle``; audited as
    ``intel.<fmt>_imported`` with the counts."""
    recipients = list(dict.fromkeys(recipients))
    _check_import(actor, organisation, tlp, recipients)
    return _import(
        actor,
        organisation,
        items,
        tlp,
        recipients,
        fmt=fmt,
        progress=progress,
        source=source,
        track=track,
        provenance=provenance,
    )


def _import(
    actor: User | AnonymousUser | None,
    organisation: Organisation,
    items: Iterable[tuple[int, Any]],
    tlp: str,
    recipients: list[Organisation],
    *,
    fmt: str,
    progress: Callable[[ImportResult], None] | None,
    source: str,
    track: bool = False,
    provenance: Provenance = LOCAL,
) -> ImportResult:
    # The importer is named on TLP:RED objects (theirs or marked so in the bundle): RED names
    # people, and its author is one of them.
    recipient_users = [actor] if isinstance(actor, User) else []
    result = ImportResult(stored=[], failed=[]) if track else ImportResult()
    chunk: list[_Candidate] = []
    index = -1
    try:
        for index, obj in items:
            if type(obj) is Rejected:
                result.reject(index, obj.stix_id, obj.reason)
                continue
            candidate = _prepare(index, obj, tlp, result)
            if candidate is not None:
                chunk.append(candidate)
            if len(chunk) >= CHUNK_SIZE:
                _store_chunk(chunk, organisation, recipients, recipient_users, result, provenance)
                chunk = []
                if progress is not None:
                    progress(result)
    except Unreadable as exc:
        result.error = str(exc)
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError, ValueError) as exc:
        result.error = _("The bundle is not valid JSON after object %(index)d: %(error)s") % {
            "index": index + 1,
            "error": str(exc)[:200],
        }
    if chunk:
        _store_chunk(chunk, organisation, recipients, recipient_users, result, provenance)
    if result.seen == 0 and not result.error:
        result.error = (
            _("The bundle has no objects.") if fmt == "stix" else _("The file holds nothing to import.")
        )
    details = {
        "format": fmt,
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "tlp": tlp,
        "recipients": [org.short_name for org in recipients],
    }
    if result.error:
        details["error"] = result.error
    if source:
        details["source"] = source[:200]
    audit.record(IMPORT_ACTIONS[fmt], actor=actor, organisation=organisation, details=details)
    if progress is not None:
        progress(result)
    return result


# --- deletion ------------------------------------------------------------------------------------


def delete_versions(
    actor: User | AnonymousUser | None, organisation: Organisation, versions: QuerySet[StixObject]
) -> int:
    """Delete ``versions`` (already narrowed to what ``actor`` may read), all of which must have
    come from ``organisation``, in whose name ``actor`` must be allowed to import. The newest
    remaining version of each object from ``organisation`` becomes its latest; other
    organisations' copies of the same ids are left as they are. Audited (``intel.deleted``) with the
    ids and versions removed. Returns how many versions were deleted."""
    if not may_import(actor, organisation):
        raise PermissionDenied(
            _("Only analysts and admins of %(organisation)s may delete its objects.")
            % {"organisation": organisation.name}
        )
    with transaction.atomic():
        # Like a chunk of an import: one latest version per id and organisation holds for
        # ``StixObject.unrivalled`` only if the two never interleave.
        _serialise_chunk_writes()
        rows = list(
            versions.select_related(None).values_list("pk", "stix_id", "modified", "origin_organisation")
        )
        if any(origin != organisation.pk for _pk, _id, _modified, origin in rows):
            raise PermissionDenied(_("Only the objects an organisation shared may be deleted in its name."))
        if not rows:
            return 0
        for batch in _batched([pk for pk, _id, _modified, _origin in rows]):
            StixObject.objects.filter(pk__in=batch).delete()
        touched = sorted({stix_id for _pk, stix_id, _modified, _origin in rows})
        for batch in _batched(touched):
            # The latest flag is per organisation: other organisations' copies are not touched.
            remaining = StixObject.objects.filter(stix_id__in=batch, origin_organisation=organisation)
            newest: dict[str, int] = {}
            for pk, stix_id in remaining.order_by("modified", "pk").values_list("pk", "stix_id"):
                newest[stix_id] = pk
            remaining.exclude(pk__in=newest.values()).filter(is_latest=True).update(is_latest=False)
            remaining.filter(pk__in=newest.values(), is_latest=False).update(is_latest=True)
        audit.record(
            "intel.deleted",
            actor=actor,
            organisation=organisation,
            details={
                "versions": len(rows),
                "objects": [
                    {"id": stix_id, "modified": modified.isoformat()}
                    for _pk, stix_id, modified, _origin in rows[:MAX_REJECTIONS_KEPT]
                ],
            },
        )
    return len(rows)


FORMATS = ("stix", "misp", "csv")


def _unknown_format(fmt: str) -> ValidationError:
    """The error for a ``fmt`` that is not one of ``FORMATS`` (imports, uploads, exports)."""
    return ValidationError({"format": _("Unknown format %(value)s.") % {"value": str(fmt)[:20]}})


def import_file(
    actor: User | AnonymousUser | None,
    organisation: Organisation,
    stream: IO[bytes],
    tlp: str,
    recipients: Sequence[Organisation] = (),
    *,
    fmt: str = "stix",
    mapping: dict[str, Any] | None = None,
    progress: Callable[[ImportResult], None] | None = None,
    source: str = "",
    now: datetime | None = None,
) -> ImportResult:
    """Import a file in one of ``FORMATS``: a STIX bundle (``import_bundle``), MISP JSON events
    (``minga.intel.misp``) or CSV indicators read with ``mapping`` (``minga.intel.csvio``;
    ``now`` is valid_from where the file gives none). Same permissions and audit as
    ``import_bundle``; raises ``ValidationError`` when the file is not of its format at all."""
    if fmt == "stix":
        return import_bundle(actor, organisation, stream, tlp, recipients, progress=progress, source=source)
    if fmt not in FORMATS:
        raise _unknown_format(fmt)
    recipients = list(dict.fromkeys(recipients))
    _check_import(actor, organisation, tlp, recipients)
    items: Iterable[tuple[int, Any]]
    if fmt == "misp":
        from minga.intel import misp

        items = misp.read(stream, tlp, misp.check_shape(stream))
    else:
        from minga.intel import csvio

        reader = csvio.Mapping.from_dict(mapping or {})
        items = csvio.Reader(stream, reader, organisation, now or timezone.now())
    return _import(actor, organisation, items, tlp, recipients, fmt=fmt, progress=progress, source=source)


# --- export --------------------------------------------------------------------------------------

MAX_EXPORT = 10_000  # objects per export; narrow the search for more


def export_bundle(actor: User | AnonymousUser | None, objects: QuerySet[StixObject], *, scope: str) -> bytes:
    """A STIX 2.1 bundle of ``objects`` (already narrowed to what ``actor`` may read, at most
    ``MAX_EXPORT``), each with its TLP marking and the marking definitions it refers to.
    Every export is audited (``intel.exported``), whatever the TLP."""
    from minga.intel import queries

    rows = list(objects[:MAX_EXPORT])
    document = orjson.dumps(queries.bundle_of(rows))
    tlps = sorted({row.tlp for row in rows}, key=stix.TLP_ORDER.index)
    audit.record(
        "intel.exported",
        actor=actor,
        details={"scope": scope[:200], "objects": len(rows), "tlp": tlps, "format": "stix-2.1"},
    )
    return document


def export_objects(
    actor: User | AnonymousUser | None, objects: QuerySet[StixObject], *, scope: str, fmt: str = "stix"
) -> bytes:
    """``objects`` (already narrowed to what ``actor`` may read, at most ``MAX_EXPORT``) in one
    of ``FORMATS``: a STIX 2.1 bundle, one MISP event, or CSV of the indicators. Audited
    (``intel.exported``, with the format), whatever the TLP."""
    if fmt == "stix":
        return export_bundle(actor, objects, scope=scope)
    from minga.intel import csvio, misp

    rows = list(objects.select_related("origin_organisation")[:MAX_EXPORT])
    details: dict[str, Any] = {"scope": scope[:200], "objects": len(rows), "format": fmt}
    if fmt == "misp":
        event = misp.event_of(rows, info=_("Minga export: %(scope)s") % {"scope": scope[:200] or _("all")})
        document, details["attributes"], details["skipped"] = event.document, event.attributes, event.skipped
    elif fmt == "csv":
        table = csvio.indicators_csv(rows)
        document, details["indicators"], details["skipped"] = table.document, table.indicators, table.skipped
    else:
        raise _unknown_format(fmt)
    details["tlp"] = sorted({row.tlp for row in rows}, key=stix.TLP_ORDER.index)
    audit.record("intel.exported", actor=actor, details=details)
    return document.encode()


# --- uploads imported in the background ----------------------------------------------------------


def imports_folder() -> Path:
    folder = Path(settings.VAR_DIR) / "intel-imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def queue_import(
    actor: User,
    organisation: Organisation,
    chunks: Iterable[bytes],
    file_name: str,
    tlp: str,
    recipients: Sequence[Organisation] = (),
    *,
    fmt: str = "stix",
    mapping: dict[str, Any] | None = None,
) -> ImportJob:
    """Keep an uploaded file (``fmt``: a STIX bundle, MISP events, CSV read with ``mapping``)
    under the node's var folder and queue its import (a background task, so a large file does
    not hold a web request). Audited as ``intel.import_queued``, with the format."""
    recipients = list(dict.fromkeys(recipients))
    _check_import(actor, organisation, tlp, recipients)
    if fmt not in FORMATS:
        raise _unknown_format(fmt)
    if fmt == "csv":
        from minga.intel import csvio

        mapping = csvio.Mapping.from_dict(mapping or {}).as_dict()
    job = ImportJob(
        organisation=organisation,
        created_by=actor,
        file_name=file_name[:200],
        tlp=tlp,
        format=fmt,
        mapping=mapping if fmt == "csv" else {},
    )
    path = imports_folder() / f"{job.uuid}.{'csv' if fmt == 'csv' else 'json'}"
    size = 0
    with path.open("wb") as out:
        for piece in chunks:
            out.write(piece)
            size += len(piece)
    job.path, job.file_size = str(path), size
    from minga.intel.tasks import run_import

    with transaction.atomic():
        job.save()
        job.recipients.set(recipients)
        audit.record(
            "intel.import_queued",
            actor=actor,
            obj=job,
            organisation=organisation,
            details={"file": job.file_name, "bytes": size, "tlp": tlp, "format": fmt},
        )
        transaction.on_commit(lambda: run_import.enqueue(job.pk))
    return job


class _CountingReader:
    """A file that remembers how far it has been read: the job's progress."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.count = handle, 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.count += len(data)
        return data

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.handle.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        self.count = offset
        return self.handle.seek(offset, whence)


def run_import_job(job_id: int) -> ImportJob | None:
    """Import a queued upload in its format. Safe to run again after a crash: versions already
    stored are counted as such. The file is removed once the import has finished."""
    job = ImportJob.objects.select_related("organisation", "created_by").filter(pk=job_id).first()
    if job is None or job.status in (ImportStatus.DONE, ImportStatus.FAILED):
        return job
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.RUNNING)
    path = Path(job.path)
    # A retry after a crash counts what the first run stored as already stored: its ranges are
    # kept, so that the job still shows the correlations of everything it stored.
    earlier = [list(r) for r in job.stored_ranges]

    def finish(status: str, message: str, result: ImportResult | None = None) -> None:
        changes: dict[str, Any] = {"status": status, "message": message, "finished_at": timezone.now()}
        if result is not None:
            changes |= _counts(result, earlier)
        ImportJob.objects.filter(pk=job.pk).update(**changes)
        job.refresh_from_db()
        path.unlink(missing_ok=True)

    if not path.is_file():
        finish(ImportStatus.FAILED, _("The uploaded file is gone; upload it again."))
        return job
    with path.open("rb") as handle:
        reader = _CountingReader(handle)

        def progress(result: ImportResult) -> None:
            ImportJob.objects.filter(pk=job.pk).update(bytes_read=reader.count, **_counts(result, earlier))

        try:
            result = import_file(
                job.created_by,
                job.organisation,
                reader,  # type: ignore[arg-type]
                job.tlp,
                list(job.recipients.all()),
                fmt=job.format,
                mapping=job.mapping,
                progress=progress,
                source=job.file_name,
                now=job.created_at,  # a retried job derives the same CSV indicators
            )
        except (ValidationError, PermissionDenied) as exc:
            finish(ImportStatus.FAILED, "; ".join(_messages(exc)))
            return job
    finish(
        ImportStatus.FAILED if result.error and not result.accepted else ImportStatus.DONE,
        result.error,
        result,
    )
    return job


def _counts(result: ImportResult, earlier: list[list[int]]) -> dict[str, Any]:
    ranges = [list(r) for r in earlier]
    for first, last in result.stored_ranges:
        ranges.append([first, last])
    return {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "rejections": [r.as_dict() for r in result.rejections],
        "stored_ranges": ranges,
    }


def _messages(exc: ValidationError | PermissionDenied) -> list[str]:
    if isinstance(exc, ValidationError):
        return [str(m) for m in exc.messages]
    return [str(exc) or _("You are not allowed to do this.")]
