"""Read helpers of the pipeline: events through the access policy, with filters and counts.

Every event query starts at ``Event.objects.visible_to(user)`` (``minga.core.access``): an
organisation reads the events routed to it; the feed's owner (the originator) reads every event
of its feeds, the unrouted ones included; TLP:GREEN and CLEAR feeds are read as the policy says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from minga.core.models import Organisation
from minga.pipeline import services
from minga.pipeline.models import EVENT_FIELDS, Event, EventRecipient, Feed

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from minga.core.models import User


def feed_visible_to(user: User | AnonymousUser | None, name: str) -> Feed:
    """The feed called ``name``, with its owner, if ``user`` may read it (a member of its
    owner, ``services.feeds_visible_to``); 404 otherwise."""
    return get_object_or_404(services.feeds_visible_to(user).select_related("owner"), name=name)


@dataclass
class EventFilter:
    organisation: Organisation | None = None  # routed to this organisation
    feed: str | None = None  # feed name
    run: str | None = None  # run uuid
    classification_type: str | None = None
    classification_taxonomy: str | None = None
    ip: str | None = None  # source or destination
    asn: int | None = None
    fqdn: str | None = None
    country: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    routed: bool | None = None


def events_visible_to(
    user: User | AnonymousUser | None, filters: EventFilter | None = None
) -> QuerySet[Event]:
    """The events ``user`` may read, narrowed by ``filters``, newest received first."""
    events = Event.objects.visible_to(user)
    f = filters or EventFilter()
    if f.organisation is not None:
        # Driven from the organisation's range of the recipients' (organisation, event) index:
        # its events are found without looking at anyone else's, however many there are. A
        # join (one recipient row per event and organisation), not IN (subquery): on
        # PostgreSQL's time partitions, the planner answered the semi-join by reading every
        # month's newest events until it met the organisation's, where the join walks the
        # organisation's index and looks each event up (two orders of magnitude apart). Ordered
        # by the index's event column (the same ids): SQLite then reads the index backwards
        # rather than sorting all of the organisation's events.
        routed: dict[str, Any] = {"routes__organisation_id": f.organisation.pk}
        if f.since is not None:
            routed["routes__time__gte"] = f.since
        if f.until is not None:
            routed["routes__time__lt"] = f.until
        events = events.filter(**routed)
    if f.feed:
        events = events.filter(feed__name=f.feed)
    if f.run:
        events = events.filter(run__uuid=f.run)
    if f.classification_type:
        events = events.filter(classification_type=f.classification_type)
    if f.classification_taxonomy:
        events = events.filter(classification_taxonomy=f.classification_taxonomy)
    if f.ip:
        events = events.filter(Q(source_ip=f.ip) | Q(destination_ip=f.ip))
    if f.asn is not None:
        events = events.filter(Q(source_asn=f.asn) | Q(destination_asn=f.asn))
    if f.fqdn:
        events = events.filter(Q(source_fqdn=f.fqdn) | Q(destination_fqdn=f.fqdn))
    if f.country:
        events = events.filter(source_country=f.country.upper())
    if f.since is not None:
        events = events.filter(time__gte=f.since)
    if f.until is not None:
        events = events.filter(time__lt=f.until)
    if f.routed is not None:
        events = events.filter(is_routed=f.routed)
    return events.order_by("-routes__event_id" if f.organisation is not None else "-id")


def counts(events: QuerySet[Event]) -> dict[str, Any]:
    """How many events, and how many of each classification type, in one grouped query."""
    by_type = {
        row["classification_type"]: row["n"]
        for row in events.order_by().values("classification_type").annotate(n=Count("id"))
    }
    return {"total": sum(by_type.values()), "by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1]))}


def recipients_of(event_ids: list[int]) -> dict[int, list[str]]:
    """Short names of the organisations each event was routed to, in one query."""
    names: dict[int, list[str]] = {}
    rows = EventRecipient.objects.filter(event_id__in=event_ids).values_list(
        "event_id", "organisation__short_name"
    )
    for event_id, short_name in rows.order_by("organisation__short_name"):
        names.setdefault(event_id, []).append(short_name)
    return names


def export_rows(events: QuerySet[Event]) -> list[dict[str, Any]]:
    """Plain rows of ``events`` (already narrowed by the access policy) for exports."""
    rows = list(events.values("id", *EVENT_FIELDS, "feed__name", "tlp", "run__uuid", "line"))
    routed = recipients_of([row["id"] for row in rows])
    out = []
    for row in rows:
        row["feed"] = row.pop("feed__name")
        row["run"] = str(row.pop("run__uuid"))
        row["routed_to"] = routed.get(row["id"], [])
        row["time"] = row["time"].isoformat()
        out.append(row)
    return out
