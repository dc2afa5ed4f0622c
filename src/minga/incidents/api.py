"""REST endpoints of incidents under ``/api/v1/incidents``. Every read starts from the access
policy (``queries``); every change goes through ``services``."""

from datetime import datetime
from typing import Annotated, Any, Literal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from ninja import Field, File, Form, Query, Router, Schema, Status, UploadedFile
from ninja.pagination import paginate
from ninja.params import functions as param
from pydantic import BeforeValidator, StrictInt

from minga.core import access
from minga.core.api import Pages, StrictInput
from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.directory.models import MemberState, Sector
from minga.incidents import metrics, queries, services
from minga.incidents.choices import (
    PAP,
    CustodyAction,
    EventType,
    EvidenceStatus,
    IncidentStatus,
    ParticipantStatus,
    Severity,
    TaskStatus,
    Taxonomy,
)
from minga.incidents.models import (
    Evidence,
    Incident,
    IncidentTask,
    Notification,
    Participant,
    TimelineEntry,
)

router = Router(tags=["incidents"])

REFERENCE_PATTERN = r"^MNG-\d{4}-\d{6,9}$"
Reference = Annotated[str, param.Path(pattern=REFERENCE_PATTERN, description="MNG-YYYY-NNNNNN")]
ShortNamePath = Annotated[str, param.Path(pattern=r"^[-a-zA-Z0-9_]+$", max_length=40)]
TaskId = Annotated[int, param.Path(ge=1, le=2**53)]
ShortNameText = Annotated[str, Field(max_length=40, pattern=r"^[-a-zA-Z0-9_]+$")]
StateCode = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")]
SectorSlug = Annotated[str, Field(max_length=60, pattern=r"^[-a-z0-9_]+$")]
StixIdText = Annotated[str, Field(max_length=300, pattern=r"^[a-z0-9][a-z0-9-]*--[0-9a-fA-F-]{36}$")]


def _text_only(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("give a date and time as text, e.g. 2026-12-01T12:00:00Z")
    return value


When = Annotated[datetime, BeforeValidator(_text_only)]  # a JSON number is not a date
EventId = Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


# --- schemas ---------------------------------------------------------------------------------


class IncidentOut(Schema):
    reference: str
    uuid: str
    title: str
    status: IncidentStatus
    severity: Severity
    tlp: TLP
    pap: PAP
    taxonomy: str
    type: str
    reporter: str = Field(..., alias="origin_organisation.short_name")
    coordinator: str = Field(..., alias="coordinating_organisation.short_name")
    merged_into: str | None
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_uuid(obj: Incident) -> str:
        return str(obj.uuid)

    @staticmethod
    def resolve_merged_into(obj: Incident) -> str | None:
        return obj.merged_into.reference if obj.merged_into is not None else None


class ObservableOut(Schema):
    kind: str
    value: str


class ParticipantOut(Schema):
    organisation: str = Field(..., alias="organisation.short_name")
    name: str = Field(..., alias="organisation.name")
    status: ParticipantStatus
    proposal: dict[str, Any]
    reason: str
    added_at: datetime | None
    notified_at: datetime | None
    acknowledged_at: datetime | None
    time_to_acknowledge_seconds: int | None

    @staticmethod
    def resolve_time_to_acknowledge_seconds(obj: Participant) -> int | None:
        elapsed = obj.time_to_acknowledge
        return int(elapsed.total_seconds()) if elapsed is not None else None


class TaskOut(Schema):
    id: int
    title: str
    organisation: str = Field(..., alias="organisation.short_name")
    due_at: datetime | None
    status: TaskStatus
    completed_at: datetime | None


class LinkedObjectOut(Schema):
    id: str = Field(..., alias="stix_id")
    type: str
    label: str
    tlp: TLP


class LinkedEventOut(Schema):
    id: int
    feed: str = Field(..., alias="feed.name")
    time: datetime
    classification_type: str
    source_ip: str
    source_asn: int | None
    source_fqdn: str
    tlp: TLP


class IncidentDetail(IncidentOut):
    description: str
    status_reason: str
    affected_states: list[str]
    affected_sectors: list[str]
    affected_organisations: list[str]
    observables: list[ObservableOut]
    participants: list[ParticipantOut]
    tasks: list[TaskOut]
    linked_objects: list[LinkedObjectOut] = Field(..., description="Only the objects the caller may read")
    linked_events: list[LinkedEventOut] = Field(..., description="Only the feed events the caller may read")

    @staticmethod
    def resolve_linked_events(obj: Incident) -> list[Any]:
        return getattr(obj, "readable_events", [])

    @staticmethod
    def resolve_affected_states(obj: Incident) -> list[str]:
        return sorted(obj.affected_states.values_list("code", flat=True))

    @staticmethod
    def resolve_affected_sectors(obj: Incident) -> list[str]:
        return sorted(obj.affected_sectors.values_list("slug", flat=True))

    @staticmethod
    def resolve_affected_organisations(obj: Incident) -> list[str]:
        return sorted(obj.affected_organisations.values_list("short_name", flat=True))

    @staticmethod
    def resolve_observables(obj: Incident) -> list[Any]:
        return list(obj.observables.all())

    @staticmethod
    def resolve_participants(obj: Incident) -> list[Participant]:
        return list(queries.participants(obj))

    @staticmethod
    def resolve_tasks(obj: Incident) -> list[IncidentTask]:
        return list(queries.tasks(obj))

    @staticmethod
    def resolve_linked_objects(obj: Incident) -> list[Any]:
        return getattr(obj, "readable_links", [])


class TimelineOut(Schema):
    kind: str
    created_at: datetime
    actor: str | None
    organisation: str | None
    text: str
    details: dict[str, Any]

    @staticmethod
    def resolve_actor(obj: TimelineEntry) -> str | None:
        return obj.actor.get_username() if obj.actor is not None else None

    @staticmethod
    def resolve_organisation(obj: TimelineEntry) -> str | None:
        return obj.organisation.short_name if obj.organisation is not None else None


class NotificationOut(Schema):
    incident: str = Field(..., alias="incident.reference")
    organisation: str = Field(..., alias="organisation.short_name")
    event: str
    subject: str = Field(..., alias="shown_subject")
    created_at: datetime


class IncidentFilter(Schema):
    status: IncidentStatus | None = None
    severity: Severity | None = None
    state: str | None = Field(
        None, pattern=r"^[A-Za-z]{2}$", description="An affected member state (ISO code)"
    )
    tlp: TLP | None = None
    q: str | None = Field(None, max_length=200, description="Part of the title, or the reference")


class MetricsFilter(Schema):
    by_priority: bool = Field(True, description="One row per affected state and severity")
    by_state: bool = Field(True, description="False: rows per severity alone")
    since: datetime | None = Field(None, description="Incidents opened from then on")
    until: datetime | None = Field(None, description="Incidents opened before then")
    node_wide: bool = Field(
        False, description="Every incident of the node (the network's coordinators only), thresholded"
    )
    min_group_size: int | None = Field(
        None, ge=1, le=1000, description="Suppress rows with fewer incidents (node-wide default 5)"
    )


class MetricOut(Schema):
    state: str = Field(..., description="Affected member state (ISO code); empty: none named")
    priority: str = Field(..., description="The severity; empty when not grouped by it")
    incidents: int
    acknowledged: int = Field(..., description="Acknowledgements measured")
    responded: int = Field(..., description="Incidents with a first response")
    resolved: int
    median_to_acknowledge_seconds: float | None
    p90_to_acknowledge_seconds: float | None
    mean_to_acknowledge_seconds: float | None
    median_to_first_response_seconds: float | None
    p90_to_first_response_seconds: float | None
    mean_to_first_response_seconds: float | None
    median_to_resolve_seconds: float | None
    p90_to_resolve_seconds: float | None
    mean_to_resolve_seconds: float | None


class MetricsOut(Schema):
    node_wide: bool
    min_group_size: int
    suppressed: int = Field(..., description="Rows left out under the privacy threshold")
    rows: list[MetricOut]


class IncidentIn(StrictInput):
    organisation: ShortNameText | None = Field(
        None, description="The reporting organisation (default: the caller's only one)"
    )
    title: str = Field(..., min_length=1, max_length=200)
    description: str = Field("", max_length=services.MAX_TEXT)
    type: EventType = Field(..., description="The RSIT type; the taxonomy follows from it")
    taxonomy: Taxonomy | None = None
    severity: Severity = Severity.MEDIUM
    tlp: TLP = TLP.AMBER
    pap: PAP = PAP.AMBER
    coordinator: ShortNameText | None = None
    affected_states: list[StateCode] = Field(default_factory=list, max_length=40)
    affected_sectors: list[SectorSlug] = Field(default_factory=list, max_length=100)
    affected_organisations: list[ShortNameText] = Field(default_factory=list, max_length=500)
    observables: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list,
        max_length=services.MAX_OBSERVABLES,
        description="IP addresses, AS numbers, domains",
    )
    links: list[StixIdText] = Field(
        default_factory=list,
        max_length=100,
        description="STIX objects the caller may read (opened from them)",
    )
    events: list[EventId] = Field(
        default_factory=list,
        max_length=1000,
        description="Feed events the caller may read (opened from them)",
    )


class IncidentPatch(StrictInput):
    title: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=services.MAX_TEXT)
    type: EventType | None = None
    severity: Severity | None = None
    tlp: TLP | None = None
    pap: PAP | None = None
    coordinator: ShortNameText | None = None
    affected_states: list[StateCode] | None = Field(None, max_length=40)
    affected_sectors: list[SectorSlug] | None = Field(None, max_length=100)
    affected_organisations: list[ShortNameText] | None = Field(None, max_length=500)


class StatusIn(StrictInput):
    status: IncidentStatus
    reason: str = Field("", max_length=services.MAX_TEXT)


class CommentIn(StrictInput):
    text: str = Field(..., min_length=1, max_length=services.MAX_TEXT)


class ObservablesIn(StrictInput):
    values: list[Annotated[str, Field(max_length=253)]] = Field(
        ..., min_length=1, max_length=services.MAX_OBSERVABLES
    )


class ParticipantIn(StrictInput):
    organisation: ShortNameText


class AnswerIn(StrictInput):
    organisation: ShortNameText | None = Field(
        None, description="Which of the caller's organisations answers (when they belong to several)"
    )


class DeclineIn(AnswerIn):
    reason: str = Field(..., min_length=1, max_length=services.MAX_TEXT)


class RemoveIn(StrictInput):
    reason: str = Field("", max_length=services.MAX_TEXT)


class TaskIn(StrictInput):
    title: str = Field(..., min_length=1, max_length=200)
    organisation: ShortNameText
    due_at: When | None = None


class TaskStatusIn(StrictInput):
    status: TaskStatus


class LinkIn(StrictInput):
    stix_id: StixIdText


class EventsIn(StrictInput):
    events: list[EventId] = Field(..., min_length=1, max_length=1000)


class FromEventsIn(StrictInput):
    events: list[EventId] = Field(..., min_length=1, max_length=1000)
    organisation: ShortNameText | None = Field(
        None, description="The reporting organisation (default: the caller's only one)"
    )
    title: str | None = Field(
        None, min_length=1, max_length=200, description="Default: the events' type and count"
    )
    severity: Severity = Severity.MEDIUM
    tlp: TLP = TLP.AMBER
    pap: PAP = PAP.AMBER


class MergeIn(StrictInput):
    survivor: Annotated[str, Field(pattern=REFERENCE_PATTERN)]
    reason: str = Field("", max_length=services.MAX_TEXT)


# --- helpers ---------------------------------------------------------------------------------


def _organisation(request: HttpRequest, short_name: str, field: str) -> Organisation:
    found = access.organisations_visible_to(request.user).filter(short_name=short_name).first()
    if found is None:
        raise ValidationError({field: _("No organisation is called %(name)s.") % {"name": short_name}})
    return found


def _organisations(request: HttpRequest, names: list[str], field: str) -> list[Organisation]:
    found = list(access.organisations_visible_to(request.user).filter(short_name__in=names))
    missing = sorted(set(names) - {o.short_name for o in found})
    if missing:
        raise ValidationError(
            {field: _("No organisation is called %(name)s.") % {"name": ", ".join(missing[:10])}}
        )
    return found


def _states(codes: list[str]) -> list[MemberState]:
    wanted = {c.upper() for c in codes}
    found = list(MemberState.objects.filter(code__in=wanted))
    missing = sorted(wanted - {s.code for s in found})
    if missing:
        raise ValidationError(
            {"affected_states": _("Not a member state: %(codes)s.") % {"codes": ", ".join(missing)}}
        )
    return found


def _sectors(slugs: list[str]) -> list[Sector]:
    found = list(Sector.objects.filter(slug__in=slugs))
    missing = sorted(set(slugs) - {s.slug for s in found})
    if missing:
        raise ValidationError(
            {"affected_sectors": _("Not a sector: %(slugs)s.") % {"slugs": ", ".join(missing[:10])}}
        )
    return found


def _reporting_organisation(request: HttpRequest, short_name: str | None) -> Organisation:
    if short_name:
        return _organisation(request, short_name, "organisation")
    own = services.working_organisation_ids(request.user)
    if len(own) != 1:
        raise ValidationError({"organisation": _("Say in which organisation's name you report.")})
    return Organisation.objects.get(pk=next(iter(own)))


def _detail(request: HttpRequest, incident: Incident) -> Incident:
    """The incident for ``IncidentDetail``, with the linked objects the caller may read."""
    incident.readable_links = queries.linked_objects(request.user, incident)  # type: ignore[attr-defined]
    incident.readable_events = queries.linked_events(request.user, incident)  # type: ignore[attr-defined]
    return incident


# --- endpoints ---------------------------------------------------------------------------------


@router.get("/", response=list[IncidentOut])
@paginate(Pages)
def list_incidents(request: HttpRequest, filters: Query[IncidentFilter]) -> QuerySet[Incident]:
    """The incidents the caller may read, newest first."""
    criteria = queries.Board(**{k: v for k, v in filters.dict().items() if v is not None})
    return queries.board(request.user, criteria)


@router.post("/", response={201: IncidentDetail})
def open_incident(request: HttpRequest, payload: IncidentIn) -> Status:
    """Open an incident in the name of one of the caller's organisations."""
    incident = services.open_incident(
        _user(request),
        _reporting_organisation(request, payload.organisation),
        title=payload.title,
        description=payload.description,
        type=payload.type,
        taxonomy=payload.taxonomy or "",
        severity=payload.severity,
        tlp=payload.tlp,
        pap=payload.pap,
        coordinating_organisation=_organisation(request, payload.coordinator, "coordinator")
        if payload.coordinator
        else None,
        affected_states=_states(payload.affected_states),
        affected_sectors=_sectors(payload.affected_sectors),
        affected_organisations=_organisations(
            request, payload.affected_organisations, "affected_organisations"
        ),
        observables=payload.observables,
        links=payload.links,
        events=payload.events,
    )
    return Status(201, _detail(request, incident))


@router.post("/from-events", response={201: IncidentDetail})
def open_from_events(request: HttpRequest, payload: FromEventsIn) -> Status:
    """Open an incident from feed events the caller may read: their most frequent RSIT type, their
    source addresses, AS numbers and domains as observables, and the events linked."""
    user = _user(request)
    organisation = _reporting_organisation(request, payload.organisation)
    start = services.proposal_from_events(user, payload.events)
    incident = services.open_incident(
        user,
        organisation,
        title=payload.title or start["title"],
        type=start["type"],
        severity=payload.severity,
        tlp=payload.tlp,
        pap=payload.pap,
        observables=start["observables"],
        events=payload.events,
    )
    return Status(201, _detail(request, incident))


@router.get("/notifications", response=list[NotificationOut])
@paginate(Pages)
def list_notifications(request: HttpRequest) -> QuerySet[Notification]:
    """In-app notifications of the caller's organisations, newest first."""
    return queries.notifications_for(request.user)


@router.get("/metrics", response=MetricsOut)
def incident_metrics(request: HttpRequest, filters: Query[MetricsFilter]) -> dict[str, Any]:
    """Time to acknowledge, to first response and to resolve (count, median, 90th percentile,
    mean, in seconds) per affected state and severity, over the incidents the caller may read,
    or node-wide with a privacy threshold for the network's coordinators."""
    return metrics.incident_metrics(
        request.user,
        by_priority=filters.by_priority,
        by_state=filters.by_state,
        since=filters.since,
        until=filters.until,
        node_wide=filters.node_wide,
        min_group_size=filters.min_group_size,
    ).as_dict()


@router.get("/{reference}", response=IncidentDetail)
def get_incident(request: HttpRequest, reference: Reference) -> Incident:
    """One incident with its observables, participants, tasks and the linked objects the caller
    may read."""
    return _detail(request, queries.get_or_404(request.user, reference))


@router.patch("/{reference}", response=IncidentDetail)
def update_incident(request: HttpRequest, reference: Reference, payload: IncidentPatch) -> Incident:
    """Change an incident (its coordinators)."""
    incident = queries.get_or_404(request.user, reference)
    given = payload.dict(exclude_unset=True)
    if any(value is None for value in given.values()):
        raise ValidationError(_("Fields cannot be set to null."))
    changes: dict[str, Any] = {
        k: v for k, v in given.items() if k in ("title", "description", "type", "severity", "tlp", "pap")
    }
    if "coordinator" in given:
        changes["coordinating_organisation"] = _organisation(request, given["coordinator"], "coordinator")
    if "affected_states" in given:
        changes["affected_states"] = _states(given["affected_states"])
    if "affected_sectors" in given:
        changes["affected_sectors"] = _sectors(given["affected_sectors"])
    if "affected_organisations" in given:
        changes["affected_organisations"] = _organisations(
            request, given["affected_organisations"], "affected_organisations"
        )
    return _detail(request, services.update_incident(_user(request), incident, **changes))


@router.post("/{reference}/status", response=IncidentDetail)
def change_status(request: HttpRequest, reference: Reference, payload: StatusIn) -> Incident:
    """Move the incident along its lifecycle; resolving, closing and reopening need a reason."""
    incident = queries.get_or_404(request.user, reference)
    return _detail(request, services.change_status(_user(request), incident, payload.status, payload.reason))


@router.get("/{reference}/timeline", response=list[TimelineOut])
@paginate(Pages)
def list_timeline(request: HttpRequest, reference: Reference) -> QuerySet[TimelineEntry]:
    """The shared timeline, oldest first."""
    return queries.timeline(queries.get_or_404(request.user, reference))


@router.post("/{reference}/comments", response={201: TimelineOut})
def add_comment(request: HttpRequest, reference: Reference, payload: CommentIn) -> Status:
    """Write on the timeline (the organisations taking part)."""
    incident = queries.get_or_404(request.user, reference)
    return Status(201, services.comment(_user(request), incident, payload.text))


@router.post("/{reference}/observables", response={201: list[ObservableOut]})
def add_observables(request: HttpRequest, reference: Reference, payload: ObservablesIn) -> Status:
    """Add IP addresses, AS numbers and domains, all or nothing; answers the new ones."""
    incident = queries.get_or_404(request.user, reference)
    return Status(201, services.add_observables(_user(request), incident, payload.values))


@router.post("/{reference}/propose", response=list[ParticipantOut])
def propose_participants(request: HttpRequest, reference: Reference) -> list[Participant]:
    """Resolve the observables against the directory and propose the organisations concerned."""
    incident = queries.get_or_404(request.user, reference)
    return services.propose_participants(_user(request), incident)


@router.post("/{reference}/participants", response={201: ParticipantOut})
def add_participant(request: HttpRequest, reference: Reference, payload: ParticipantIn) -> Status:
    """Add an organisation: it reads the incident as the TLP allows and its 24/7 contact is told."""
    incident = queries.get_or_404(request.user, reference)
    organisation = _organisation(request, payload.organisation, "organisation")
    return Status(201, services.add_participant(_user(request), incident, organisation))


@router.post("/{reference}/participants/{short_name}/remove", response=ParticipantOut)
def remove_participant(
    request: HttpRequest, reference: Reference, short_name: ShortNamePath, payload: RemoveIn
) -> Participant:
    """Take an organisation out of the incident."""
    incident = queries.get_or_404(request.user, reference)
    organisation = get_object_or_404(access.organisations_visible_to(request.user), short_name=short_name)
    return services.remove_participant(_user(request), incident, organisation, payload.reason)


@router.post("/{reference}/acknowledge", response=ParticipantOut)
def acknowledge(request: HttpRequest, reference: Reference, payload: AnswerIn) -> Participant:
    """The caller's organisation acknowledges the incident."""
    incident = queries.get_or_404(request.user, reference)
    organisation = (
        _organisation(request, payload.organisation, "organisation") if payload.organisation else None
    )
    return services.acknowledge(_user(request), incident, organisation)


@router.post("/{reference}/decline", response=ParticipantOut)
def decline(request: HttpRequest, reference: Reference, payload: DeclineIn) -> Participant:
    """The caller's organisation declines to take part, saying why."""
    incident = queries.get_or_404(request.user, reference)
    organisation = (
        _organisation(request, payload.organisation, "organisation") if payload.organisation else None
    )
    return services.decline(_user(request), incident, payload.reason, organisation)


@router.post("/{reference}/tasks", response={201: TaskOut})
def add_task(request: HttpRequest, reference: Reference, payload: TaskIn) -> Status:
    """Assign a task to an organisation taking part, with a due date."""
    incident = queries.get_or_404(request.user, reference)
    organisation = _organisation(request, payload.organisation, "organisation")
    task = services.add_task(
        _user(request), incident, title=payload.title, organisation=organisation, due_at=payload.due_at
    )
    return Status(201, task)


@router.post("/{reference}/tasks/{task_id}/status", response=TaskOut)
def set_task_status(
    request: HttpRequest, reference: Reference, task_id: TaskId, payload: TaskStatusIn
) -> IncidentTask:
    """Mark a task done, cancelled or open again."""
    incident = queries.get_or_404(request.user, reference)
    task = get_object_or_404(
        IncidentTask.objects.select_related("incident", "organisation"), pk=task_id, incident=incident
    )
    return services.set_task_status(_user(request), task, payload.status)


@router.post("/{reference}/links", response={201: LinkedObjectOut})
def link_object(request: HttpRequest, reference: Reference, payload: LinkIn) -> Status:
    """Link a STIX object of the intelligence store that the caller may read."""
    from minga.intel import queries as intel

    incident = queries.get_or_404(request.user, reference)
    services.link_object(_user(request), incident, payload.stix_id)
    return Status(201, intel.latest_visible(request.user).filter(stix_id=payload.stix_id).first())


@router.post("/{reference}/links/remove", response={204: None})
def unlink_object(request: HttpRequest, reference: Reference, payload: LinkIn) -> Status:
    """Remove a link to a STIX object."""
    incident = queries.get_or_404(request.user, reference)
    services.unlink_object(_user(request), incident, payload.stix_id)
    return Status(204, None)


@router.post("/{reference}/events", response={201: IncidentDetail})
def link_events(request: HttpRequest, reference: Reference, payload: EventsIn) -> Status:
    """Link feed events the caller may read, all or nothing."""
    incident = queries.get_or_404(request.user, reference)
    services.link_events(_user(request), incident, payload.events)
    return Status(201, _detail(request, incident))


@router.post("/{reference}/merge", response=IncidentDetail)
def merge_incident(request: HttpRequest, reference: Reference, payload: MergeIn) -> Incident:
    """Merge this incident (a duplicate) into the survivor; answers the survivor."""
    duplicate = queries.get_or_404(request.user, reference)
    survivor = queries.visible(request.user).filter(reference=payload.survivor).first()
    if survivor is None:
        raise ValidationError(
            {"survivor": _("No incident you may read is %(ref)s.") % {"ref": payload.survivor}}
        )
    return _detail(request, services.merge_incident(_user(request), duplicate, survivor, payload.reason))


STIX_MEDIA_TYPE = "application/stix+json;version=2.1"


@router.get("/{reference}/stix")
def export_stix(request: HttpRequest, reference: Reference) -> HttpResponse:
    """The incident as a STIX 2.1 bundle (audited as an export)."""
    incident = queries.get_or_404(request.user, reference)
    return HttpResponse(services.export_stix(request.user, incident), content_type=STIX_MEDIA_TYPE)


# --- evidence --------------------------------------------------------------------------------
#
# Only the organisations taking part in the incident reach these endpoints: anyone else gets
# 404, as if the incident had no evidence (``queries.evidence_incident_or_404``).

EvidenceId = Annotated[int, param.Path(ge=1, le=2**53)]


class CustodyOut(Schema):
    seq: int = Field(..., description="The audit entry that records this line")
    action: CustodyAction
    at: datetime
    actor: str = Field(..., description="Who (empty: the node, on an operator's command)")
    from_custodian: dict[str, Any] | None = Field(..., alias="from_")
    to_custodian: dict[str, Any] | None = Field(..., alias="to")
    reason: str
    hash: str = Field(..., description="The audit entry's SHA-256 in the hash chain")


class EvidenceOut(Schema):
    id: int
    uuid: str
    incident: str = Field(..., alias="incident.reference")
    title: str
    description: str
    file_name: str
    media_type: str
    size: int
    sha256: str
    acquired_at: datetime | None
    acquired_by: str
    source: str
    custodian: str = Field(..., alias="custodian_organisation.short_name")
    custodian_person: str
    status: EvidenceStatus
    registered_at: datetime

    @staticmethod
    def resolve_uuid(obj: Evidence) -> str:
        return str(obj.uuid)


class EvidenceDetail(EvidenceOut):
    custody: list[CustodyOut] = Field(..., description="The chain of custody, read from the audit log")

    @staticmethod
    def resolve_custody(obj: Evidence) -> list[Any]:
        return queries.custody_log(obj)


class EvidenceIn(Schema):
    title: str = Field(..., min_length=1, max_length=200)
    description: str = Field("", max_length=services.MAX_TEXT)
    acquired_at: datetime | None = None
    acquired_by: str = Field("", max_length=200)
    source: str = Field("", max_length=500)
    custodian: ShortNameText | None = Field(
        None, description="The organisation that holds it (default: the caller's)"
    )
    custodian_person: str | None = Field(None, max_length=200, description="Default: the caller")
    reason: str = Field("", max_length=services.MAX_TEXT)


class CustodyIn(StrictInput):
    action: Literal["transferred", "returned", "sealed", "disposed"]
    reason: str = Field(..., min_length=1, max_length=services.MAX_TEXT)
    to_organisation: ShortNameText | None = Field(None, description="For a transfer or a return")
    to_person: str = Field("", max_length=200)


class VerifiedOut(Schema):
    intact: bool
    found: bool
    sha256: str = Field(..., description="What the stored file hashes to now")
    size: int


class Message(Schema):
    detail: str


def _evidence(request: HttpRequest, reference: str, evidence_id: int) -> Evidence:
    return queries.evidence_or_404(queries.evidence_incident_or_404(request.user, reference), evidence_id)


@router.get("/{reference}/evidence", response=list[EvidenceOut])
@paginate(Pages)
def list_evidence(request: HttpRequest, reference: Reference) -> QuerySet[Evidence]:
    """The incident's evidence, oldest first (the organisations taking part)."""
    return queries.evidence_of(queries.evidence_incident_or_404(request.user, reference)).select_related(
        "incident"
    )


@router.post("/{reference}/evidence", response={201: EvidenceDetail, 413: Message})
def register_evidence(
    request: HttpRequest, reference: Reference, file: File[UploadedFile], data: Form[EvidenceIn]
) -> Status:
    """Register a file as evidence (``multipart/form-data``: the file in ``file``, the rest as
    form fields). It is stored once under its SHA-256; a file over the limit gets 413."""
    incident = queries.evidence_incident_or_404(request.user, reference)
    custodian = _organisation(request, data.custodian, "custodian") if data.custodian else None
    try:
        evidence = services.register_evidence(
            _user(request),
            incident,
            chunks=file.chunks(),
            file_name=file.name or "",
            media_type=file.content_type or "",
            title=data.title,
            description=data.description,
            acquired_at=data.acquired_at,
            acquired_by=data.acquired_by,
            source=data.source,
            custodian_organisation=custodian,
            custodian_person=data.custodian_person,
            reason=data.reason,
            limit=settings.MINGA_MAX_REQUEST_BYTES,
        )
    except services.EvidenceTooLarge as exc:
        return Status(413, {"detail": " ".join(exc.messages)})
    return Status(201, evidence)


@router.get("/{reference}/evidence/{evidence_id}", response=EvidenceDetail)
def get_evidence(request: HttpRequest, reference: Reference, evidence_id: EvidenceId) -> Evidence:
    """One item with its metadata and its chain of custody."""
    return _evidence(request, reference, evidence_id)


@router.post("/{reference}/evidence/{evidence_id}/custody", response={201: EvidenceDetail})
def record_custody(
    request: HttpRequest, reference: Reference, evidence_id: EvidenceId, payload: CustodyIn
) -> Status:
    """Record a transfer or a return (to an organisation and a person), a seal or the disposal,
    saying why (the coordinators or the organisation that holds the item)."""
    evidence = _evidence(request, reference, evidence_id)
    to = (
        _organisation(request, payload.to_organisation, "to_organisation")
        if payload.to_organisation
        else None
    )
    services.record_custody(
        _user(request),
        evidence,
        payload.action,
        reason=payload.reason,
        to_organisation=to,
        to_person=payload.to_person,
    )
    return Status(201, _evidence(request, reference, evidence_id))


@router.post("/{reference}/evidence/{evidence_id}/verify", response=VerifiedOut)
def verify_evidence(request: HttpRequest, reference: Reference, evidence_id: EvidenceId) -> dict[str, Any]:
    """Hash the stored file again; the result is a line of the chain of custody."""
    check = services.verify_evidence(_user(request), _evidence(request, reference, evidence_id))
    return {"intact": check.ok, "found": check.found, "sha256": check.sha256, "size": check.size}


@router.get("/{reference}/evidence/{evidence_id}/download")
def download_evidence(request: HttpRequest, reference: Reference, evidence_id: EvidenceId) -> FileResponse:
    """The file, as registered (each download is a line of the chain of custody)."""
    evidence = _evidence(request, reference, evidence_id)
    return evidence_response(services.open_evidence(_user(request), evidence), evidence)


def evidence_response(handle: Any, evidence: Evidence) -> FileResponse:
    """The file as an attachment, never rendered by the browser, with its digest (RFC 9530)."""
    import base64

    response = FileResponse(
        handle, as_attachment=True, filename=evidence.file_name, content_type="application/octet-stream"
    )
    response["Content-Length"] = str(evidence.size)
    digest = base64.b64encode(bytes.fromhex(evidence.sha256)).decode()
    response["Repr-Digest"] = f"sha-256=:{digest}:"
    return response
