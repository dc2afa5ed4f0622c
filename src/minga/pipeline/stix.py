"""An organisation's events as STIX 2.1, for the TAXII collection "Events of <organisation>"
that the node's TAXII server offers each of its members (read-only).

Each event becomes an ``observed-data`` object and the cyber-observables it names
(``ipv4-addr`` / ``ipv6-addr``, ``domain-name``, ``url``, ``autonomous-system``, for the source
and the destination, and a ``network-traffic`` between the addresses when it names a port),
with the event's TLP as a TLP 2.0 marking:

* the ``observed-data`` id is derived from the event alone, and the event can be found from it
  (a UUID of version 4's shape whose last 62 bits are the event's id, the rest a hash of it);
  ``created`` and ``modified`` are the time the event was stored, ``first_observed`` and
  ``last_observed`` its time, and ``labels`` its RSIT classification (``rsit:<taxonomy>:<type>``);
* the observables have the deterministic ids STIX 2.1 defines (UUIDv5 over their value), so the
  same address is the same object in every event and every page.

Re-reading gives the same objects. Pages follow the order events were stored (the time stored,
then the event's id): that time is the objects' ``date_added``, which ``added_after`` compares
with, and a ``next`` token holds the last event served, so an event stored while a client pages
comes after it, never in between. A page holds whole events: ``limit`` counts objects, and an
event whose objects would pass it starts the next page (a page holds at least one event).

The events are read through the access policy (``queries.events_visible_to``) narrowed to
those routed to the organisation: the collection exists only for the organisation's active
members (``minga.taxii.services.collections_for``), others get 404 from the TAXII server.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from minga.core import audit
from minga.core.models import Organisation
from minga.intel.convert import SCO_NAMESPACE  # STIX 2.1's, for SCO ids
from minga.pipeline import queries
from minga.pipeline.models import Event

if TYPE_CHECKING:
    from minga.core.models import User
    from minga.taxii.services import Filters, Page

NAMESPACE = uuid.UUID("e1a6f3c2-8d4b-4a57-b1c9-6d696e676165")  # collection ids
PK_BITS = (1 << 62) - 1
COLUMNS = (
    "id",
    "created_at",
    "tlp",
    "time",
    "classification_taxonomy",
    "classification_type",
    "source_ip",
    "source_port",
    "source_asn",
    "source_fqdn",
    "source_url",
    "destination_ip",
    "destination_port",
    "destination_asn",
    "destination_fqdn",
    "destination_url",
)
OBSERVABLE_TYPES = ("ipv4-addr", "ipv6-addr", "domain-name", "url", "autonomous-system", "network-traffic")


def collection_id(organisation: Organisation) -> str:
    return str(uuid.uuid5(NAMESPACE, f"events:{organisation.uuid}"))


def collection_title(organisation: Organisation) -> str:
    return _("Events of %(organisation)s") % {"organisation": organisation.name}


def collection_description(organisation: Organisation) -> str:
    return _(
        "The feed pipeline's events routed to %(organisation)s, as STIX 2.1 observed-data and "
        "observables, in the order they were stored. Read-only."
    ) % {"organisation": organisation.name}


# --- identifiers -------------------------------------------------------------------------------------


def observed_data_id(event_id: int) -> str:
    """A stable id for the event's observed-data, from which the event's id can be read back."""
    prefix = bytearray(hashlib.sha256(f"minga-event:{event_id}".encode()).digest()[:8])
    prefix[6] = (prefix[6] & 0x0F) | 0x40  # version 4's nibble
    suffix = (event_id & PK_BITS) | (0b10 << 62)  # RFC 4122's variant
    return f"observed-data--{uuid.UUID(bytes=bytes(prefix) + suffix.to_bytes(8, 'big'))}"


def event_id_of(stix_id: str) -> int | None:
    """The event whose observed-data has ``stix_id``, or None when it is not one of ours."""
    kind, _sep, rest = stix_id.partition("--")
    try:
        value = uuid.UUID(rest)
    except ValueError:
        return None
    event_id = int.from_bytes(value.bytes[8:], "big") & PK_BITS
    if kind != "observed-data" or observed_data_id(event_id) != stix_id:
        return None
    return event_id


def sco_id(kind: str, contributing: dict[str, Any]) -> str:
    """STIX 2.1's deterministic id of a cyber-observable (section 2.9)."""
    # For these ASCII keys, strings and integers, sorted compact JSON is RFC 8785's canonical
    # form (what stix2 computes, far slower, as a page holds thousands).
    canonical = json.dumps(contributing, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{kind}--{uuid.uuid5(SCO_NAMESPACE, canonical)}"


def _timestamp(value: datetime) -> str:
    from minga.taxii.services import timestamp

    return timestamp(value)


# --- conversion --------------------------------------------------------------------------------------


def _observables(row: dict[str, Any]) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}

    def add(kind: str, **props: Any) -> str:
        obj_id = sco_id(kind, props)
        found.setdefault(obj_id, {"type": kind, "spec_version": "2.1", "id": obj_id, **props})
        return obj_id

    traffic: dict[str, Any] = {}  # network-traffic's properties, when the event names a port
    for side, ref, port in (("source", "src_ref", "src_port"), ("destination", "dst_ref", "dst_port")):
        if row[f"{side}_ip"]:
            version = "ipv6" if ":" in row[f"{side}_ip"] else "ipv4"
            traffic[ref] = add(f"{version}-addr", value=row[f"{side}_ip"])
            traffic.setdefault("protocols", [version])
        if row[f"{side}_port"] is not None:
            traffic[port] = row[f"{side}_port"]
        if row[f"{side}_fqdn"]:
            add("domain-name", value=row[f"{side}_fqdn"])
        if row[f"{side}_url"]:
            add("url", value=row[f"{side}_url"])
        if row[f"{side}_asn"] is not None:
            add("autonomous-system", number=row[f"{side}_asn"])
    # STIX's network-traffic needs an address to refer to and a protocol: the network layer is
    # what an event knows for sure (feeds seldom say TCP or UDP). Without a start time, the same
    # addresses and ports are the same object in every event, as the addresses are.
    if ("src_port" in traffic or "dst_port" in traffic) and "protocols" in traffic:
        add("network-traffic", **traffic)
    return list(found.values())


def event_objects(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The STIX objects of one event (a row of ``COLUMNS``): its observables, then its
    observed-data; none when it names no observable. Without the TLP marking, which the TAXII
    server adds as it does to every object it serves."""
    observables = _observables(row)
    if not observables:
        return []
    stored = _timestamp(row["created_at"])
    observed = _timestamp(row["time"])
    observed_data = {
        "type": "observed-data",
        "spec_version": "2.1",
        "id": observed_data_id(row["id"]),
        "created": stored,
        "modified": stored,
        "first_observed": observed,
        "last_observed": observed,
        "number_observed": 1,
        "object_refs": [o["id"] for o in observables],
        "labels": [f"rsit:{row['classification_taxonomy']}:{row['classification_type']}"],
    }
    return [*observables, observed_data]


# --- the collection's pages ----------------------------------------------------------------------


def events_of(user: User, organisation: Organisation) -> QuerySet[Event]:
    """The events routed to ``organisation`` that ``user`` may read."""
    return queries.events_visible_to(user, queries.EventFilter(organisation=organisation))


def _selected(user: User, organisation: Organisation, filters: Filters, stix_id: str) -> QuerySet[Event]:
    events = events_of(user, organisation)
    wanted = [event_id_of(i) for i in ([stix_id] if stix_id else filters.ids)]
    if stix_id and wanted[0] is None:
        return events.none()  # an observable's id: not served one by one
    known = [w for w in wanted if w is not None]
    if wanted and len(known) == len(wanted):  # observed-data ids only: their events alone
        events = events.filter(pk__in=known)
    if filters.added_after is not None:
        events = events.filter(created_at__gt=filters.added_after)
    if filters.after is not None:
        when, pk = filters.after
        events = events.filter(created_at__gte=when).filter(Q(created_at__gt=when) | Q(pk__gt=pk))
    if filters.spec_versions and "2.1" not in filters.spec_versions:
        return events.none()
    return events.order_by("created_at", "pk")


def _wanted(obj: dict[str, Any], filters: Filters, stix_id: str) -> bool:
    if stix_id:
        return bool(obj["id"] == stix_id)
    if filters.types and obj["type"] not in filters.types:
        return False
    if filters.ids and obj["id"] not in filters.ids:
        return False
    if filters.version_times:
        version = obj.get("modified")
        return version is not None and any(_timestamp(t) == version for t in filters.version_times)
    return True


def page(
    user: User, organisation: Organisation, filters: Filters, *, stix_id: str = "", kind: str = "objects"
) -> Page:
    """A page of the collection, in the shape ``minga.taxii.services`` answers with: for
    ``objects`` rows of (event id, TLP, JSON), for ``manifest`` (event id, date
    added, STIX id, version, spec version), for ``versions`` (event id, date added, version).
    Reading objects is audited (``taxii.objects_read``) as for any collection."""
    from minga.intel.models import UNVERSIONED
    from minga.taxii.services import Page, TaxiiError, encode_next

    events = _selected(user, organisation, filters, stix_id)
    fetched = list(events.values(*COLUMNS)[: filters.limit + 1])
    rows: list[tuple[Any, ...]] = []
    added_at: list[Any] = []  # each row's date added, for the page's headers
    objects_counted = 0
    last: dict[str, Any] | None = None
    more = False
    for row in fetched:
        objects = [o for o in event_objects(row) if _wanted(o, filters, stix_id)]
        if last is not None and objects_counted + len(objects) > filters.limit:
            more = True
            break
        last = row
        objects_counted += len(objects)
        for obj in objects:
            added = row["created_at"]
            added_at.append(added)
            if kind == "objects":
                rows.append((row["id"], row["tlp"], orjson.dumps(obj).decode()))
            else:
                version = row["created_at"] if "modified" in obj else UNVERSIONED
                if kind == "manifest":
                    rows.append((row["id"], added, obj["id"], version, "2.1"))
                else:
                    rows.append((row["id"], added, version))
    if not more and len(fetched) > filters.limit:  # every event fetched was consumed
        more = True
    if stix_id and not rows:
        raise TaxiiError(404, _("Object not found"), _("No object with this id is open to you here."))
    token = encode_next(last["created_at"], last["id"]) if more and last is not None else ""
    if kind == "objects" and rows:
        levels: dict[str, int] = {}
        for row_ in rows:
            levels[row_[1]] = levels.get(row_[1], 0) + 1
        audit.record(
            "taxii.objects_read",
            actor=user,
            details={"collection": collection_id(organisation), "objects": len(rows), "tlp": levels},
        )
    return Page(rows, more, token, added_at[0] if added_at else None, added_at[-1] if added_at else None)
