"""Read paths of incidents, every one through the access policy: the incident first
(``visible_to`` / ``get_readable_or_404``), then what hangs from it (timeline, participants,
tasks), and intelligence links only where the reader may read the object too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from minga.core import access
from minga.incidents.choices import Channel
from minga.incidents.models import (
    CustodyEvent,
    Evidence,
    Incident,
    IncidentTask,
    Notification,
    Participant,
    TimelineEntry,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from minga.core.models import User

    Reader = User | AnonymousUser | None


def visible(user: Reader) -> QuerySet[Incident]:
    return Incident.objects.visible_to(user).select_related(  # type: ignore[attr-defined]
        "origin_organisation", "coordinating_organisation", "merged_into"
    )


@dataclass
class Board:
    """The board's filters; empty means any."""

    status: str = ""
    severity: str = ""
    state: str = ""  # an affected member state's ISO code
    tlp: str = ""
    q: str = ""  # part of the title, or the reference
    open_only: bool = False


def board(user: Reader, filters: Board) -> QuerySet[Incident]:
    """The incidents ``user`` may read, newest first, narrowed by the filters."""
    from minga.incidents.choices import AWAITING_ACK, OPEN_STATUSES, ParticipantStatus

    incidents = visible(user).annotate(
        acknowledged_count=Count(
            "participants", filter=Q(participants__status=ParticipantStatus.ACKNOWLEDGED), distinct=True
        ),
        awaiting_count=Count("participants", filter=Q(participants__status__in=AWAITING_ACK), distinct=True),
    )
    if filters.status:
        incidents = incidents.filter(status=filters.status)
    if filters.open_only:
        incidents = incidents.filter(status__in=OPEN_STATUSES)
    if filters.severity:
        incidents = incidents.filter(severity=filters.severity)
    if filters.tlp:
        incidents = incidents.filter(tlp=filters.tlp)
    if filters.state:
        incidents = incidents.filter(affected_states__code=filters.state.upper()).distinct()
    if filters.q:
        incidents = incidents.filter(Q(title__icontains=filters.q) | Q(reference__iexact=filters.q))
    # Explicit: a query that counts (GROUP BY) does not take the model's default ordering.
    return incidents.order_by("-created_at", "-pk")


def get_or_404(user: Reader, reference: str) -> Incident:
    """One incident ``user`` may read, else 404 (audited as ``object.read`` from TLP:AMBER up)."""
    return access.get_readable_or_404(
        Incident.objects.select_related("origin_organisation", "coordinating_organisation", "merged_into"),
        user,
        reference=reference,
    )


def timeline(incident: Incident) -> QuerySet[TimelineEntry]:
    """The incident's timeline; call only with an incident the reader may read."""
    return incident.timeline.select_related("actor", "organisation").order_by("created_at", "pk")


def participants(incident: Incident) -> QuerySet[Participant]:
    return incident.participants.select_related("organisation", "organisation__profile__state").order_by(
        "status", "organisation__name"
    )


def tasks(incident: Incident) -> QuerySet[IncidentTask]:
    return incident.tasks.select_related("organisation").order_by("status", "due_at", "pk")


def linked_objects(user: Reader, incident: Incident) -> list[Any]:
    """The linked STIX objects (latest versions) that ``user`` may read: a link to an object
    hidden from the reader is not shown, not even counted."""
    from minga.intel import queries as intel

    ids = list(incident.links.values_list("stix_id", flat=True))
    return list(intel.latest_visible(user).filter(stix_id__in=ids).order_by("type", "label"))


def notifications_for(user: Reader) -> QuerySet[Notification]:
    """In-app notifications of the reader's organisations, about incidents the reader may read."""
    reader = access.reader_for(user)
    if not reader.organisation_ids:
        return Notification.objects.none()
    return (
        Notification.objects.filter(
            channel=Channel.IN_APP,
            organisation_id__in=reader.organisation_ids,
            incident__in=Incident.objects.visible_to(user).values("pk"),  # type: ignore[attr-defined]
        )
        .select_related("incident", "organisation")
        .order_by("-created_at", "-pk")
    )


def linked_events(user: Reader, incident: Incident) -> list[Any]:
    """The linked feed events that ``user`` may read (purged or hidden ones are not shown)."""
    from minga.pipeline import queries as pipeline

    ids = list(incident.event_links.values_list("event_id", flat=True)[:1000])
    return list(
        pipeline.events_visible_to(user).filter(pk__in=ids).select_related("feed").order_by("time", "pk")
    )


# --- evidence --------------------------------------------------------------------------------


def evidence_incident_or_404(user: Reader, reference: str) -> Incident:
    """The incident whose evidence ``user`` may handle, else 404: first the access policy
    (``get_or_404``, audited from TLP:AMBER up), then participation
    (``services.may_handle_evidence``). A reader of the incident who takes no part in it cannot
    tell whether it has evidence."""
    from minga.incidents import services

    incident = get_or_404(user, reference)
    if not services.may_handle_evidence(user, incident):  # type: ignore[arg-type]
        raise Http404
    return incident


def evidence_of(incident: Incident) -> QuerySet[Evidence]:
    """The incident's evidence; call only with an incident from ``evidence_incident_or_404``."""
    return incident.evidence.select_related("custodian_organisation", "registered_by").order_by(
        "registered_at", "pk"
    )


def evidence_or_404(incident: Incident, evidence_id: int) -> Evidence:
    try:
        return evidence_of(incident).select_related("incident").get(pk=min(int(evidence_id), 2**53))
    except Evidence.DoesNotExist as exc:
        raise Http404 from exc


@dataclass(frozen=True)
class CustodyLine:
    """One line of a chain of custody, as its audit entry records it."""

    seq: int
    action: str
    label: str
    at: datetime
    actor: str
    from_: dict[str, Any] | None
    to: dict[str, Any] | None
    reason: str
    details: dict[str, Any]
    hash: str


def custody_log(evidence: Evidence) -> list[CustodyLine]:
    """The item's chain of custody, oldest first, read from the audit entries it is bound to
    (``CustodyEvent``): what the page and the API show is what the hash chain protects."""
    from minga.incidents.choices import CustodyAction

    lines = []
    for event in CustodyEvent.objects.filter(evidence=evidence).select_related("audit_entry"):
        entry = event.audit_entry
        details = entry.details if isinstance(entry.details, dict) else {}
        action = str(details.get("custody", event.action))
        lines.append(
            CustodyLine(
                seq=entry.seq,
                action=action,
                label=str(CustodyAction(action).label) if action in CustodyAction.values else action,
                at=entry.timestamp,
                actor=entry.actor_label,
                from_=details.get("from"),
                to=details.get("to"),
                reason=str(details.get("reason", "")),
                details=details,
                hash=entry.hash,
            )
        )
    return lines
