"""The TAXII 2.1 server's domain: collections as policy views over the intel store, object
queries with the spec's filters and stable pages, envelopes posted to inboxes, deletions.

Collections are not stored: they are views that the access policy computes per caller.

* **Readable** (one, the same id on every node): every object version the caller may read.
  ``can_read`` true, ``can_write`` false.
* **Inbox of an organisation** (one per organisation the caller is an active member of): posting
  to it imports in the organisation's name (``intel.services.import_bundle``), so ``can_write``
  is true exactly when the caller may import for it; reading it shows the objects that
  organisation shared, of those the caller may read.
* **Events of an organisation** (one per organisation the caller is an active member of,
  read-only): the feed pipeline's events routed to it, as STIX (``minga.pipeline.stix``, which
  answers its pages).

A collection the caller has no view of answers 404, like one that does not exist. Every object
read starts from ``intel.queries.visible``: the policy is applied before any filter, count or
page, so no endpoint (objects, object, manifest, versions) reveals a hidden version.

Objects posted without a TLP marking are stored as TLP:AMBER for the inbox's organisation
alone (no recipients): TAXII carries no recipient list, and AMBER with none named is the
narrowest level an organisation can still read as a whole. Objects marked with a TLP level keep
it (again without named recipients).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import gettext as _

from minga.core import access, audit
from minga.core.choices import TLP
from minga.core.models import Membership, Organisation, User
from minga.intel import queries, stix
from minga.intel import services as intel_services
from minga.intel.models import UNVERSIONED, StixObject
from minga.taxii.models import Peer, TaxiiStatus

MEDIA_TAXII = "application/taxii+json;version=2.1"
MEDIA_STIX = "application/stix+json;version=2.1"
MAX_PAGE = 1000  # objects, manifest records or versions per response, whatever `limit` asks
DEFAULT_TLP = TLP.AMBER  # objects posted without a TLP marking: the inbox's organisation alone
# Collection ids are UUIDs derived from this namespace: stable across restarts and nodes.
NAMESPACE = uuid.UUID("5b0f5a0e-6d1c-4f1e-9c55-6d696e676174")
READABLE_ID = str(uuid.uuid5(NAMESPACE, "readable"))
VERSION_KEYWORDS = ("first", "last", "all")


class TaxiiError(Exception):
    """An answer other than success, with the spec's error-message fields."""

    def __init__(self, status: int, title: str, description: str = "", **headers: str) -> None:
        super().__init__(title)
        self.status, self.title, self.description, self.headers = status, title, description, headers


# --- timestamps ----------------------------------------------------------------------------------


def timestamp(value: datetime) -> str:
    """A STIX/TAXII timestamp in UTC with the precision the value has (milli- or microseconds)."""
    value = value.astimezone(UTC)
    if value.microsecond % 1000 == 0:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def version_of(modified: datetime, date_added: datetime) -> datetime:
    """TAXII's version of a stored version: ``modified``, else ``created`` (both kept in the
    ``modified`` column), else the time it was added, for objects that have neither."""
    return date_added if modified == UNVERSIONED else modified


def _parse_timestamp(value: str, name: str) -> datetime:
    try:
        return stix.parse_timestamp(value, name)
    except stix.Invalid as exc:
        raise TaxiiError(400, _("Invalid filter"), str(exc)) from None


# --- collections ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Collection:
    id: str
    title: str
    description: str
    alias: str
    can_read: bool
    can_write: bool
    organisation: Organisation | None = None  # None: the readable collection
    peer: Peer | None = None  # the federation collection, as this peer node sees it
    events_of: Organisation | None = None  # the pipeline's events routed to it (minga.pipeline.stix)

    def as_resource(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "alias": self.alias,
            "can_read": self.can_read,
            "can_write": self.can_write,
            "media_types": [MEDIA_STIX],
        }


def inbox_id(organisation: Organisation) -> str:
    return str(uuid.uuid5(NAMESPACE, f"inbox:{organisation.uuid}"))


def collections_for(user: User) -> list[Collection]:
    """The collections ``user`` has a view of: the readable one, then one inbox per organisation
    the user is an active member of. The account of a peer node has one view instead: the
    federation collection (``minga.taxii.federation``)."""
    from minga.taxii import federation

    peer = federation.peer_for(user)
    if peer is not None:
        return [_federation(peer)]
    found = [_readable()]
    memberships = Membership.objects.filter(user_id=user.pk, is_active=True).select_related("organisation")
    for membership in memberships.order_by("organisation__name"):
        org = membership.organisation
        found.append(
            Collection(
                inbox_id(org),
                _("Inbox of %(organisation)s") % {"organisation": org.name},
                _(
                    "Objects %(organisation)s shares. Objects posted here are imported in its name; "
                    "those without a TLP marking are stored as TLP:AMBER for it alone."
                )
                % {"organisation": org.name},
                f"inbox-{org.short_name}",
                can_read=True,
                can_write=intel_services.may_import(user, org),
                organisation=org,
            )
        )
        found.append(_events(org))
    return found


def _events(org: Organisation) -> Collection:
    """The feed pipeline's events routed to ``org``, as STIX (read-only, ``minga.pipeline.stix``)."""
    from minga.pipeline import stix as events

    return Collection(
        events.collection_id(org),
        events.collection_title(org),
        events.collection_description(org),
        f"events-{org.short_name}",
        can_read=True,
        can_write=False,
        events_of=org,
    )


def _readable() -> Collection:
    return Collection(
        READABLE_ID,
        _("Readable intelligence"),
        _("Every STIX object version this node's access policy lets you read."),
        "readable",
        can_read=True,
        can_write=False,
    )


def _federation(peer: Peer) -> Collection:
    from minga.taxii import federation

    return Collection(
        federation.FEDERATION_ID,
        _("Federation"),
        _(
            "What this node's distribution rule lets it send to your node, with provenance; "
            "objects posted here are stored with the provenance they carry."
        ),
        "federation",
        can_read=True,
        can_write=True,
        peer=peer,
    )


def get_collection(user: User, collection_id: str) -> Collection:
    from minga.taxii import federation

    if collection_id.lower() == READABLE_ID and federation.peer_for(user) is None:
        return _readable()
    for collection in collections_for(user):
        if collection.id == collection_id.lower():
            return collection
    raise TaxiiError(404, _("Collection not found"), _("No collection with this id is open to you."))


# --- filters and pages ---------------------------------------------------------------------------


@dataclass
class Filters:
    added_after: datetime | None = None
    ids: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)  # first / last / all
    version_times: list[datetime] = field(default_factory=list)
    spec_versions: list[str] = field(default_factory=list)
    limit: int = MAX_PAGE
    after: tuple[datetime, int] | None = None  # the position a `next` token stands for


def _values(query: QueryDict, name: str) -> list[str]:
    return [v.strip() for raw in query.getlist(name) for v in raw.split(",") if v.strip()]


def parse_filters(query: QueryDict, *, default_version: str = "last") -> Filters:
    """The spec's URL parameters, checked: a value that cannot mean anything is a 400."""
    for key, values in query.lists():
        if "\x00" in key or any("\x00" in v for v in values):
            raise TaxiiError(400, _("Invalid filter"), _("Text may not contain NUL characters."))
    filters = Filters(limit=MAX_PAGE)
    added_after = query.get("added_after", "").strip()
    if added_after:
        filters.added_after = _parse_timestamp(added_after, "added_after")
    filters.ids = _values(query, "match[id]")
    filters.types = _values(query, "match[type]")
    filters.spec_versions = _values(query, "match[spec_version]")
    for value in _values(query, "match[version]") or [default_version]:
        if value in VERSION_KEYWORDS:
            filters.versions.append(value)
        else:
            filters.version_times.append(_parse_timestamp(value, "match[version]"))
    limit = query.get("limit", "").strip()
    if limit:
        try:
            filters.limit = int(limit)
        except ValueError:
            filters.limit = 0
        if filters.limit < 1:
            raise TaxiiError(400, _("Invalid limit"), _("limit must be a whole number from 1."))
        filters.limit = min(filters.limit, MAX_PAGE)
    token = query.get("next", "").strip()
    if token:
        filters.after = _decode_next(token)
    return filters


def encode_next(date_added: datetime, pk: int) -> str:
    micros = int(date_added.timestamp() * 1_000_000)
    return base64.urlsafe_b64encode(f"{micros}.{pk}".encode()).decode().rstrip("=")


def _decode_next(token: str) -> tuple[datetime, int]:
    try:
        micros, pk = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(".")
        when = datetime.fromtimestamp(int(micros) / 1_000_000, tz=UTC)
        return when.replace(microsecond=int(micros) % 1_000_000), int(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError):
        raise TaxiiError(
            400, _("Invalid next"), _("next must be a token this server gave in an earlier page.")
        ) from None


def _one_object(objects: QuerySet[StixObject], stix_id: str) -> QuerySet[StixObject]:
    """The versions of ``stix_id`` among ``objects``; 404 when there is none, or when the id
    is not a STIX id at all (nothing could match it)."""
    if not stix.ID_RE.match(stix_id) or not objects.filter(stix_id=stix_id).exists():
        raise TaxiiError(404, _("Object not found"), _("No object with this id is open to you here."))
    return objects.filter(stix_id=stix_id)


def readable_objects(user: User, collection: Collection) -> QuerySet[StixObject]:
    """Every version in ``collection`` that ``user`` may read: the start of every read path."""
    if not collection.can_read:
        raise TaxiiError(403, _("Not readable"), _("You may not read this collection."))
    if collection.peer is not None:
        from minga.taxii import federation

        return federation.distributable(collection.peer)
    objects = queries.visible(user).select_related(None)
    if collection.organisation is not None:
        objects = objects.filter(origin_organisation=collection.organisation)
    return objects


def apply_filters(
    user: User, collection: Collection, objects: QuerySet[StixObject], filters: Filters
) -> QuerySet[StixObject]:
    """``objects`` (what ``user`` may read in ``collection``) narrowed by ``filters``. Versions
    are kept per originating organisation, so the readable collection may hold one id, even one
    version, from several organisations: ``last`` (``first``) is the newest (oldest) of the
    organisations' latest (first) versions the caller may read, and each (id, version) is
    answered once, the caller's own organisation's copy first, else the first stored
    (``intel.queries.preferred``). The choice is made among readable versions only, before the
    other filters, so that they narrow the answer and do not change it."""
    several_origins = collection.organisation is None
    selection = set(filters.versions) | ({"times"} if filters.version_times else set())
    if "all" not in filters.versions:
        wanted = Q(pk__in=[])
        if "last" in filters.versions:
            last = Q(is_latest=True)
            if several_origins:
                latest = objects.filter(last)
                last &= ~queries.outranked(user, latest, same=("stix_id",), order="newest")
            wanted |= last
        if "first" in filters.versions:
            older = StixObject.objects.filter(
                stix_id=OuterRef("stix_id"),
                origin_organisation=OuterRef("origin_organisation"),
                modified__lt=OuterRef("modified"),
            )
            first = ~Q(Exists(older))
            if several_origins:
                firsts = objects.filter(first)
                first &= ~queries.outranked(user, firsts, same=("stix_id",), order="oldest")
            wanted |= first
        for when in filters.version_times:
            wanted |= Q(modified=when) | Q(modified=UNVERSIONED, date_added=when)
        objects = objects.filter(wanted)
    if several_origins and selection not in ({"last"}, {"first"}):
        objects = queries.preferred(user, objects, same=("stix_id", "modified"))
    if filters.added_after is not None:
        objects = objects.filter(date_added__gt=filters.added_after)
    if filters.ids:
        objects = objects.filter(stix_id__in=filters.ids)
    if filters.types:
        objects = objects.filter(type__in=filters.types)
    if filters.spec_versions:
        # Minga stores STIX 2.1 only (2.0 is upgraded on import), so no object has a later
        # spec_version than the one it is stored in: the default needs no filter.
        objects = objects.filter(spec_version__in=filters.spec_versions)
    return objects


@dataclass
class Page:
    rows: list[tuple[Any, ...]]  # (pk, date_added, *columns); (pk, *columns) when not dated
    more: bool
    next: str = ""
    first_added: datetime | None = None
    last_added: datetime | None = None


def page(objects: QuerySet[StixObject], filters: Filters, *columns: str, dated: bool = True) -> Page:
    """One page in the order versions were added (date_added, then row id): a `next` token holds
    the last position served, so versions added while a client pages come after it, never in
    between, and none is skipped or served twice. Without ``dated``, the rows leave out their
    date_added: converting a thousand timestamps cost more than the page's query, and only the
    first and the last are needed (the headers and the token), read by the rows' ids."""
    if filters.after is not None:
        when, pk = filters.after
        # The range on date_added stands as a condition of its own, so that the index seeks to
        # it: written only as "later, or as late with a higher id", SQLite's query took 14 ms
        # instead of 1 ms near the end of 100,000 objects, and paging a million ran at 6,000
        # objects/s.
        objects = objects.filter(date_added__gte=when).filter(Q(date_added__gt=when) | Q(pk__gt=pk))
    selected = ("pk", "date_added", *columns) if dated else ("pk", *columns)
    rows = list(objects.order_by("date_added", "pk").values_list(*selected)[: filters.limit + 1])
    more = len(rows) > filters.limit
    rows = rows[: filters.limit]
    if not rows:
        return Page(rows, more)
    if dated:
        first, last = rows[0][1], rows[-1][1]
    else:
        # The rows were read through the policy above: these are their own timestamps.
        added = dict(
            StixObject.objects.filter(pk__in={rows[0][0], rows[-1][0]}).values_list("pk", "date_added")
        )
        first, last = added[rows[0][0]], added[rows[-1][0]]
    token = encode_next(last, rows[-1][0]) if more else ""
    return Page(rows, more, token, first, last)


# --- the read endpoints --------------------------------------------------------------------------


def emitted_json(raw: str, tlp: str) -> str:
    """The STIX JSON of a stored version as Minga emits it, with its TLP 2.0 marking: the same
    as ``stix.with_tlp_marking``, which runs when the object has marking references or is a
    marking; otherwise the reference is appended to the stored (compact) JSON text, so a page
    of a thousand objects is not parsed and serialised again."""
    marking = stix.TLP2_MARKING_IDS[tlp]
    references = raw.count('"marking-definition')
    if references == 0 and '"object_marking_refs"' not in raw and raw.endswith("}"):
        return f'{raw[:-1]},"object_marking_refs":["{marking}"]}}'
    if references == 1 and f'"object_marking_refs":["{marking}"]' in raw:
        return raw  # marked with exactly its own level already
    return orjson.dumps(stix.with_tlp_marking(orjson.loads(raw), tlp)).decode()


def get_objects(user: User, collection: Collection, filters: Filters, *, stix_id: str = "") -> Page:
    """A page of the versions in ``collection`` that ``user`` may read, matching ``filters``, as
    (pk, tlp, raw) rows; with ``stix_id``, of that object only (404 when the caller may read no
    version of it). Audited (``taxii.objects_read``, one entry per page served, like an export)
    with the counts per TLP level. An organisation's events collection pages its feed events
    (``minga.pipeline.stix``)."""
    if collection.events_of is not None:
        from minga.pipeline import stix as events

        return events.page(user, collection.events_of, filters, stix_id=stix_id)
    objects = readable_objects(user, collection)
    if stix_id:
        objects = _one_object(objects, stix_id)
    result = page(apply_filters(user, collection, objects, filters), filters, "tlp", "raw", dated=False)
    if result.rows:
        levels: dict[str, int] = {}
        for row in result.rows:
            levels[row[1]] = levels.get(row[1], 0) + 1
        audit.record(
            "taxii.objects_read",
            actor=user,
            details={"collection": collection.id, "objects": len(result.rows), "tlp": levels},
        )
    return result


def get_manifest(user: User, collection: Collection, filters: Filters) -> Page:
    """A page of manifest records: (pk, date_added, stix_id, modified, spec_version)."""
    if collection.events_of is not None:
        from minga.pipeline import stix as events

        return events.page(user, collection.events_of, filters, kind="manifest")
    objects = apply_filters(user, collection, readable_objects(user, collection), filters)
    return page(objects, filters, "stix_id", "modified", "spec_version")


def get_versions(user: User, collection: Collection, stix_id: str, filters: Filters) -> Page:
    """A page of the versions of ``stix_id`` that ``user`` may read: (pk, date_added, modified)."""
    if collection.events_of is not None:
        from minga.pipeline import stix as events

        return events.page(user, collection.events_of, filters, stix_id=stix_id, kind="versions")
    objects = _one_object(readable_objects(user, collection), stix_id)
    return page(apply_filters(user, collection, objects, filters), filters, "modified")


# --- writes --------------------------------------------------------------------------------------


def add_objects(user: User, collection: Collection, stream: IO[bytes]) -> TaxiiStatus:
    """Import the envelope read from ``stream`` into ``collection`` (an inbox the caller may
    write to), in the name of its organisation: valid objects are stored even when others are
    rejected, replayed versions count as successes. The import is audited by
    ``intel.bundle_imported``; the returned status resource is kept for its organisation."""
    organisation = collection.organisation
    if not collection.can_write or organisation is None:
        raise TaxiiError(403, _("Not writable"), _("You may not add objects to this collection."))
    requested = timezone.now()
    try:
        result = intel_services.import_bundle(
            user, organisation, stream, DEFAULT_TLP, track=True, source="TAXII"
        )
    except ValidationError as exc:
        raise TaxiiError(400, _("Invalid envelope"), " ".join(exc.messages)) from None
    except PermissionDenied as exc:
        raise TaxiiError(403, _("Not writable"), str(exc)) from None
    if result.seen == 0:
        raise TaxiiError(400, _("Invalid envelope"), result.error)
    stored = result.stored or []
    unversioned = {s.stix_id for s in stored if s.modified == UNVERSIONED}
    added = dict(
        queries.visible(user)
        .filter(stix_id__in=unversioned, modified=UNVERSIONED, origin_organisation=organisation)
        .values_list("stix_id", "date_added")
        if unversioned
        else []
    )
    successes = [
        _details(
            s.stix_id,
            timestamp(version_of(s.modified, added.get(s.stix_id, requested))),
            "" if s.fresh else _("Already stored."),
        )
        for s in stored
    ]
    failures = [_details(f.stix_id, f.version or timestamp(requested), f.reason) for f in result.failed or []]
    if result.error:
        # The envelope broke off: what came before it was stored, the rest was never read.
        failures.append(_details("", timestamp(requested), result.error))
    return TaxiiStatus.objects.create(
        organisation=organisation,
        requested_by=user,
        collection_id=collection.id,
        request_timestamp=requested,
        status="complete",
        total_count=len(successes) + len(failures),
        success_count=len(successes),
        failure_count=len(failures),
        pending_count=0,
        successes=successes,
        failures=failures,
    )


def _details(stix_id: str, version: str, message: str) -> dict[str, str]:
    details = {"id": stix_id, "version": version}
    if message:
        details["message"] = message
    return details


def delete_object(user: User, collection: Collection, stix_id: str, filters: Filters) -> int:
    """Delete the versions of ``stix_id`` matching ``filters`` (all by default) from an inbox the
    caller may write to: only objects its organisation shared, of those the caller may read.
    404 when none matches. Audited by ``intel.services.delete_versions``."""
    organisation = collection.organisation
    if organisation is None or not collection.can_write:
        raise TaxiiError(403, _("Not writable"), _("You may not delete objects from this collection."))
    # An inbox holds its organisation's rows only: other organisations' copies of the id stay.
    mine = _one_object(readable_objects(user, collection), stix_id)
    versions = apply_filters(user, collection, mine, filters)
    if not versions.exists():
        raise TaxiiError(404, _("Object not found"), _("No object with this id is open to you here."))
    return intel_services.delete_versions(user, organisation, versions)


def get_status(user: User, status_id: str) -> TaxiiStatus:
    """A status resource, for the members of the organisation whose inbox received the envelope."""
    try:
        key = uuid.UUID(status_id)
    except ValueError:
        key = None
    reader = access.reader_for(user)
    mine = Q(organisation_id__in=reader.organisation_ids) | Q(peer__account_id=user.pk, peer__is_active=True)
    status = TaxiiStatus.objects.filter(mine, uuid=key).first() if key is not None else None
    if status is None:
        raise TaxiiError(404, _("Status not found"), _("No status with this id is open to you."))
    return status


def status_resource(status: TaxiiStatus) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "id": str(status.uuid),
        "status": status.status,
        "request_timestamp": timestamp(status.request_timestamp),
        "total_count": status.total_count,
        "success_count": status.success_count,
        "failure_count": status.failure_count,
        "pending_count": status.pending_count,
    }
    if status.successes:
        resource["successes"] = status.successes
    if status.failures:
        resource["failures"] = status.failures
    return resource


def max_content_length() -> int:
    return int(settings.MINGA_TAXII_MAX_CONTENT_LENGTH)
