"""MISP feeds: what a subscriber may read, published as a MISP feed, and MISP feeds consumed.

**Publishing** (``/federation/misp-feed/``, views in ``feed_views``). A MISP feed is a
directory of ``manifest.json`` (event uuid -> the event's info, date, analysis, threat level,
timestamp, Orgc and tags), one ``<event uuid>.json`` per event (``{"Event": {...}}``) and
``hashes.csv`` (the md5 of every attribute value, with its event's uuid). Minga answers each
for the API token's user from what the one access policy lets that user read
(``minga.intel.queries.visible``), never TLP:RED (it never leaves the node automatically), and
not what this node pulled from a MISP feed (no loops through MISP).

The objects that have a MISP attribute form (indicators, the cyber-observables of the mapped
kinds, CVE vulnerabilities: ``minga.intel.misp.attributes_of``) are grouped into one event per
**originating organisation, day and TLP level**: the day the object was created (its first
version's ``created``, else the day it arrived), so later versions of an object stay in its
event. An event's ``timestamp`` is when the newest latest version of its objects arrived here
(revocations included), which is how a subscriber sees that the event changed. The events
are built by the intel MISP export (``minga.intel.misp.event_of``) and serialised by PyMISP's
own feed writer (``MISPEvent.to_feed``); the manifest entries by ``MISPEvent.manifest``.

Bounds: the feed lists the ``MAX_EVENTS`` most recently changed events, each of at most
``MAX_EVENT_OBJECTS`` objects (the oldest stored first); ``hashes.csv`` is streamed. Every read
is audited like an export (``intel.exported``, format ``misp-feed``).

**Consuming** (``pull``): a peer of kind ``misp`` is a feed's base URL. A pull reads its
manifest, then fetches only the events that are new or whose timestamp is newer than the one
recorded at the last pull (``MispFeedEvent``), and imports each through the intel MISP import
(``minga.intel.misp.read`` and ``import_objects``) in the name of the peer's organisation, with
the peer as origin node and sender; untagged events take the peer's default TLP. An event is
stored and its timestamp recorded in one transaction, so a pull that stops resumes at the next
event and a second pull of an unchanged feed fetches nothing.
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import IO, TYPE_CHECKING, Any

import orjson
import requests
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import DateTimeField, F, Max, QuerySet
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from minga.core import audit
from minga.core.choices import TLP
from minga.intel import misp, queries, stix
from minga.intel import services as intel_services
from minga.intel.convert import Rejected
from minga.intel.models import StixObject
from minga.taxii import federation  # a module, not names: federation.sync calls into here
from minga.taxii.models import MispFeedEvent, Peer, PeerKind
from minga.taxii.services import NAMESPACE

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser
    from pymisp import MISPEvent

    from minga.core.models import User

MAX_EVENTS = 1000  # events in the manifest: the most recently changed
MAX_EVENT_OBJECTS = intel_services.MAX_EXPORT  # objects per event, as for any export
MAX_MANIFEST_BYTES = 32 * 1024 * 1024  # what a pull reads of a feed's manifest
MAX_EVENT_BYTES = 256 * 1024 * 1024  # and of one event file (spooled to disk past 8 MB)
SPOOL_IN_MEMORY = 8 * 1024 * 1024
READ_CHUNK = 64 * 1024
FORMAT = "misp-feed"
JSON = "application/json"

# The STIX types that may become MISP attributes (``misp.attributes_of``): the others are never
# read for the feed.
ATTRIBUTE_TYPES = sorted({"indicator", "vulnerability"} | {kind for kind, _path in misp.MISP_TYPE_OF_PATH})
# The day an object belongs to: its creation (all its versions share it), else its arrival.
DAY = TruncDate(Coalesce("created", "date_added", output_field=DateTimeField()), tzinfo=UTC)


# --- publishing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedEvent:
    """One event of a reader's feed: an originating organisation's objects of one day and TLP."""

    organisation_id: int
    short_name: str
    organisation_name: str
    organisation_uuid: str
    day: date
    tlp: str
    changed: datetime  # when the newest of its latest versions arrived

    @property
    def uuid(self) -> str:
        # The same for every reader and node: short names are the network's organisation keys.
        return str(uuid.uuid5(NAMESPACE, f"misp-feed|{self.short_name}|{self.day.isoformat()}|{self.tlp}"))

    @property
    def timestamp(self) -> int:
        return int(self.changed.timestamp())

    @property
    def info(self) -> str:
        # Data, not interface text: the same whatever language a request asks for, so that the
        # manifest and the event files always agree.
        return f"{self.organisation_name}: TLP:{self.tlp.upper()} intelligence of {self.day.isoformat()}"


def _candidates(user: User | AnonymousUser | None) -> QuerySet[StixObject]:
    """The latest versions ``user`` may read that could become attributes; never TLP:RED, nor
    what came from a MISP feed (its subscribers take it at its source: no loop through a MISP
    instance that both subscribes here and is pulled from)."""
    from_feeds = Peer.objects.filter(kind=PeerKind.MISP).values("name")
    return (
        queries.visible(user)
        .filter(is_latest=True, type__in=ATTRIBUTE_TYPES)
        .exclude(tlp=TLP.RED)
        .exclude(received_from__in=from_feeds)
        .select_related(None)
        .order_by()
    )


def _content(user: User | AnonymousUser | None) -> QuerySet[StixObject]:
    """What the events hold: the candidates not revoked."""
    return _candidates(user).filter(revoked=False)


def feed_events(user: User | AnonymousUser | None) -> list[FeedEvent]:
    """The events of ``user``'s feed, most recently changed first (at most ``MAX_EVENTS``)."""
    groups = (
        _candidates(user)
        .annotate(day=DAY)
        .values(
            "origin_organisation_id",
            "origin_organisation__short_name",
            "origin_organisation__name",
            "origin_organisation__uuid",
            "day",
            "tlp",
        )
        .annotate(changed=Max("date_added"))
        .order_by("-changed", "origin_organisation_id", "day", "tlp")[:MAX_EVENTS]
    )
    return [
        FeedEvent(
            organisation_id=row["origin_organisation_id"],
            short_name=row["origin_organisation__short_name"],
            organisation_name=row["origin_organisation__name"],
            organisation_uuid=str(row["origin_organisation__uuid"]),
            day=row["day"],
            tlp=row["tlp"],
            changed=row["changed"],
        )
        for row in groups
    ]


def _describe(event: MISPEvent, feed_event: FeedEvent) -> MISPEvent:
    """Set what the manifest says of an event on a PyMISP event: both come from here."""
    from pymisp import MISPOrganisation

    organisation = MISPOrganisation()
    organisation.name = feed_event.organisation_name
    organisation.uuid = feed_event.organisation_uuid
    event.uuid = feed_event.uuid
    event.info = feed_event.info
    event.Orgc = organisation
    event.set_date(feed_event.day)
    event.analysis = 2  # completed
    event.threat_level_id = 4  # undefined: the TLP tag says how to handle it
    event.timestamp = feed_event.changed
    event.published = True
    event.publish_timestamp = feed_event.changed
    tag = misp.TAG_OF_TLP[feed_event.tlp]
    if tag not in [t.name for t in event.tags]:
        event.add_tag(tag)
    return event


def _audit(user: User | AnonymousUser | None, scope: str, **details: Any) -> None:
    audit.record("intel.exported", actor=user, details={"scope": scope, "format": FORMAT, **details})


def manifest(user: User | AnonymousUser | None) -> dict[str, Any]:
    """The feed's ``manifest.json`` for ``user``. Audited as an export."""
    from pymisp import MISPEvent

    events = feed_events(user)
    document: dict[str, Any] = {}
    for feed_event in events:
        document.update(_describe(MISPEvent(), feed_event).manifest)
    tlps = sorted({e.tlp for e in events}, key=stix.TLP_ORDER.index)
    _audit(user, "misp feed: manifest", events=len(events), tlp=tlps)
    return document


class NotInFeed(Exception):
    """No event of that uuid in the reader's feed (it may not exist, or not for them)."""


def event_document(user: User | AnonymousUser | None, event_uuid: str) -> bytes:
    """The feed's ``<event uuid>.json`` for ``user``: ``{"Event": {...}}`` as PyMISP writes a
    feed, or ``NotInFeed``. Audited as an export, with the counts."""
    from pymisp import MISPEvent

    found = next((e for e in feed_events(user) if e.uuid == event_uuid), None)
    if found is None:
        raise NotInFeed(event_uuid)
    rows = list(_event_rows(user, found))
    built = misp.event_of(rows, info=found.info)
    event = MISPEvent()
    event.load(built.document)
    document = orjson.dumps(_describe(event, found).to_feed())
    _audit(
        user,
        f"misp feed: event {found.uuid}",
        objects=len(rows),
        attributes=built.attributes,
        skipped=built.skipped,
        tlp=[found.tlp],
        organisation=found.short_name,
    )
    return document


def _event_rows(user: User | AnonymousUser | None, feed_event: FeedEvent) -> QuerySet[StixObject]:
    return (
        _content(user)
        .annotate(day=DAY)
        .filter(origin_organisation_id=feed_event.organisation_id, day=feed_event.day, tlp=feed_event.tlp)
        .order_by("pk")[:MAX_EVENT_OBJECTS]
    )


def md5_values(kind: str, value: str) -> list[str]:
    """The md5 of an attribute's value as MISP's feeds list it (each part of a composite type)."""
    parts = value.split("|") if "|" in kind or kind == "malware-sample" else [value]
    return [hashlib.md5(part.encode("utf-8"), usedforsecurity=False).hexdigest() for part in parts]


def hashes(user: User | AnonymousUser | None) -> Iterator[str]:
    """The lines of the feed's ``hashes.csv`` for ``user`` (``md5,event uuid``), streamed: one
    query over the events' objects in the order the event files take them. Audited (once, as
    it starts) as an export."""
    events = {(e.organisation_id, e.day, e.tlp): e for e in feed_events(user)}
    _audit(user, "misp feed: hashes", events=len(events))
    rows = (
        _content(user)
        .annotate(day=DAY)
        .order_by("origin_organisation_id", "day", "tlp", "pk")
        .values_list("origin_organisation_id", "day", "tlp", "raw")
    )
    taken: Counter[tuple[int, date, str]] = Counter()
    for organisation_id, day, tlp, raw in rows.iterator(chunk_size=2000):
        key = (organisation_id, day, tlp)
        feed_event = events.get(key)
        if feed_event is None or taken[key] >= MAX_EVENT_OBJECTS:
            continue
        taken[key] += 1
        for kind, value, _to_ids in misp.attributes_of(orjson.loads(raw)):
            for digest in md5_values(kind, value):
                yield f"{digest},{feed_event.uuid}\n"


# --- consuming -----------------------------------------------------------------------------------


def _get(session: requests.Session, url: str, what: str) -> requests.Response:
    try:
        response = session.get(url, headers={"Accept": JSON}, timeout=federation.TIMEOUT, stream=True)
    except requests.RequestException as exc:
        raise federation.PeerUnavailable(
            _("The MISP feed cannot be reached (%(what)s): %(error)s")
            % {"what": what, "error": str(exc)[:300]}
        ) from None
    return response


def _refuse_status(response: requests.Response, what: str) -> federation.PeerUnavailable:
    return federation.PeerUnavailable(
        _("The MISP feed answered HTTP %(status)d for %(what)s.")
        % {"status": response.status_code, "what": what}
    )


def _read_limited(response: requests.Response, limit: int, what: str, into: IO[bytes]) -> None:
    size = 0
    try:
        for chunk in response.iter_content(READ_CHUNK):
            size += len(chunk)
            if size > limit:
                raise federation.PeerUnavailable(
                    _("The MISP feed's %(what)s is larger than %(limit)d MB.")
                    % {"what": what, "limit": limit // (1024 * 1024)}
                )
            into.write(chunk)
    except requests.RequestException as exc:
        raise federation.PeerUnavailable(
            _("The MISP feed stopped answering (%(what)s): %(error)s")
            % {"what": what, "error": str(exc)[:300]}
        ) from None
    finally:
        response.close()


def read_manifest(peer: Peer, session: requests.Session) -> dict[str, int]:
    """The feed's manifest: event uuid -> timestamp, or ``PeerUnavailable`` saying what is wrong."""
    what = "manifest.json"
    response = _get(session, f"{peer.url}manifest.json", what)
    if response.status_code != 200:
        response.close()
        raise _refuse_status(response, what)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        _read_limited(response, MAX_MANIFEST_BYTES, what, spool)
        spool.seek(0)
        try:
            document = orjson.loads(spool.read())
        except orjson.JSONDecodeError as exc:
            raise federation.PeerUnavailable(
                _("The MISP feed's manifest.json is not valid JSON: %(error)s") % {"error": str(exc)[:200]}
            ) from None
    if not isinstance(document, dict):
        raise federation.PeerUnavailable(
            _("The MISP feed's manifest.json is not a JSON object of events by uuid.")
        )
    found: dict[str, int] = {}
    for key, entry in document.items():
        event_uuid = _uuid(key)
        stamp = entry.get("timestamp") if isinstance(entry, dict) else None
        if event_uuid is None or not isinstance(stamp, int | str) or not str(stamp).strip().isdigit():
            raise federation.PeerUnavailable(
                _(
                    "The MISP feed's manifest.json is not a MISP manifest: the entry %(key)s has no "
                    "event uuid and timestamp."
                )
                % {"key": str(key)[:60]}
            )
        found[event_uuid] = int(str(stamp).strip())
    return found


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _never_red(items: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """TLP:RED names people, who a feed cannot name: it is refused, as between nodes."""
    for index, obj in items:
        if isinstance(obj, dict) and stix.tlp_of(obj) == TLP.RED:
            yield index, Rejected(_("TLP:RED never travels between nodes."), str(obj.get("id", "")))
        else:
            yield index, obj


@dataclass
class _Outcome:
    accepted: int = 0
    rejected: int = 0
    error: str = ""


def _import_event(peer: Peer, event_uuid: str, stream: IO[bytes]) -> _Outcome:
    assert peer.organisation is not None
    try:
        shape = misp.check_shape(stream)
    except ValidationError as exc:
        return _Outcome(rejected=1, error=" ".join(exc.messages))
    result = intel_services.import_objects(
        None,
        peer.organisation,
        _never_red(misp.read(stream, peer.default_tlp, shape)),
        peer.default_tlp,
        fmt="misp",
        source=f"peer {peer.name}: MISP event {event_uuid}",
        provenance=intel_services.Provenance(origin_node=peer.name, received_from=peer.name),
    )
    return _Outcome(result.accepted, result.rejected, result.error)


def pull(peer: Peer, session: requests.Session) -> int:
    """Pull a MISP feed (``peer.kind == "misp"``): its manifest, then each event that is new or
    changed since the last pull, oldest first, each stored with its timestamp recorded in one
    transaction. Raises ``PeerUnavailable`` when the feed cannot be reached or its manifest is
    not one; an event file that is not MISP JSON is recorded as refused (with the reason, audited
    as ``federation.misp_event_refused``) and the pull goes on. Returns how many objects were
    stored. The import audits each event (``intel.misp_imported``)."""
    if peer.organisation is None:
        raise federation.PeerUnavailable(
            _("The MISP feed peer names no organisation to store its events in.")
        )
    listed = read_manifest(peer, session)
    known = dict(MispFeedEvent.objects.filter(peer=peer).values_list("event_uuid", "timestamp"))
    wanted = sorted(
        (stamp, event_uuid)
        for event_uuid, stamp in listed.items()
        if known.get(uuid.UUID(event_uuid)) is None or stamp > known[uuid.UUID(event_uuid)]
    )
    total = 0
    for stamp, event_uuid in wanted:
        what = f"{event_uuid}.json"
        response = _get(session, f"{peer.url}{event_uuid}.json", what)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            if response.status_code == 404:
                response.close()
                outcome = _Outcome(
                    rejected=1, error=_("The feed lists the event but has no file for it (404).")
                )
            elif response.status_code != 200:
                response.close()
                raise _refuse_status(response, what)
            else:
                _read_limited(response, MAX_EVENT_BYTES, what, spool)
                spool.seek(0)
                outcome = None
            with transaction.atomic():
                if outcome is None:
                    outcome = _import_event(peer, event_uuid, spool)  # type: ignore[arg-type]
                MispFeedEvent.objects.update_or_create(
                    peer=peer,
                    event_uuid=event_uuid,
                    defaults={
                        "timestamp": stamp,
                        "accepted": outcome.accepted,
                        "error": outcome.error[:2000],
                    },
                )
                Peer.objects.filter(pk=peer.pk).update(
                    pulled=F("pulled") + outcome.accepted,
                    rejected=F("rejected") + outcome.rejected,
                    last_pulled_added=timezone.now() if outcome.accepted else F("last_pulled_added"),
                )
                if outcome.error and not outcome.accepted:
                    audit.record(
                        "federation.misp_event_refused",
                        obj=peer,
                        details={"peer": peer.name, "event": event_uuid, "error": outcome.error[:500]},
                    )
        total += outcome.accepted
    return total
