"""REST endpoints of mutual assistance under ``/api/v1/assistance``. Every read starts from the
access policy (``queries``): the parties read content, the network's coordinators metadata,
everyone else gets 404. Every change goes through ``services``."""

from datetime import datetime, timedelta
from typing import Annotated, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, File, Query, Router, Schema, Status
from ninja.files import UploadedFile
from ninja.pagination import paginate
from ninja.params import functions as param

from minga.assistance import queries, services
from minga.assistance.choices import Escalation, Outcome, Priority, RequestKind, RequestStatus
from minga.assistance.models import AssistanceRequest, Attachment, DeadlinePolicy, ThreadEntry
from minga.core import access
from minga.core.api import Pages, StrictInput
from minga.core.models import Organisation, User
from minga.directory.models import MemberState

router = Router(tags=["assistance"])

REFERENCE_PATTERN = r"^MAR-\d{4}-\d{6,9}$"
Reference = Annotated[str, param.Path(pattern=REFERENCE_PATTERN, description="MAR-YYYY-NNNNNN")]
AttachmentId = Annotated[int, param.Path(ge=1, le=2**53)]
PriorityPath = Annotated[Priority, param.Path()]
ShortNameText = Annotated[str, Field(max_length=40, pattern=r"^[-a-zA-Z0-9_]+$")]
StateCode = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")]


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


# --- schemas ---------------------------------------------------------------------------------


class RequestOut(Schema):
    """A request as the caller may see it: the parties get the content; the network's
    coordinators get the metadata, with every content field null and ``content`` false."""

    reference: str
    uuid: str
    content: bool = Field(..., description="Whether the caller reads the content (a party)")
    requesting_organisation: str = Field(..., alias="requesting_organisation.short_name")
    requesting_state: str | None
    requested_organisation: str = Field(..., alias="requested_organisation.short_name")
    requested_state: str = Field(..., alias="requested_state.code")
    kind: RequestKind
    priority: Priority
    status: RequestStatus
    outcome: Outcome | None
    escalation_level: Escalation
    created_at: datetime
    submitted_at: datetime | None
    acknowledge_by: datetime | None
    respond_by: datetime | None
    acknowledged_at: datetime | None
    first_response_at: datetime | None
    answered_at: datetime | None
    withdrawn_at: datetime | None
    closed_at: datetime | None
    escalated_at: datetime | None
    answer_overdue_at: datetime | None
    subject: str | None
    description: str | None
    legal_basis: str | None
    legal_reference: str | None
    answer: str | None
    withdrawal_reason: str | None

    @staticmethod
    def resolve_uuid(obj: AssistanceRequest) -> str:
        return str(obj.uuid)

    @staticmethod
    def resolve_content(obj: AssistanceRequest) -> bool:
        return bool(getattr(obj, "content_visible", False))

    @staticmethod
    def resolve_requesting_state(obj: AssistanceRequest) -> str | None:
        return obj.requesting_state.code if obj.requesting_state is not None else None

    @staticmethod
    def resolve_outcome(obj: AssistanceRequest) -> str | None:
        return obj.outcome or None

    @staticmethod
    def _content(obj: AssistanceRequest, field: str) -> str | None:
        return getattr(obj, field) if getattr(obj, "content_visible", False) else None

    @staticmethod
    def resolve_subject(obj: AssistanceRequest) -> str | None:
        return RequestOut._content(obj, "subject")

    @staticmethod
    def resolve_description(obj: AssistanceRequest) -> str | None:
        return RequestOut._content(obj, "description")

    @staticmethod
    def resolve_legal_basis(obj: AssistanceRequest) -> str | None:
        return RequestOut._content(obj, "legal_basis")

    @staticmethod
    def resolve_legal_reference(obj: AssistanceRequest) -> str | None:
        return RequestOut._content(obj, "legal_reference")

    @staticmethod
    def resolve_answer(obj: AssistanceRequest) -> str | None:
        return RequestOut._content(obj, "answer")

    @staticmethod
    def resolve_withdrawal_reason(obj: AssistanceRequest) -> str | None:
        return RequestOut._content(obj, "withdrawal_reason")


class RequestFilter(Schema):
    box: str | None = Field(
        None,
        pattern=r"^(incoming|outgoing)$",
        description="incoming: to the caller's organisations; outgoing: from them (default: every "
        "request the caller may see, the whole network's metadata for a coordinator)",
    )
    status: RequestStatus | None = None
    priority: Priority | None = None
    state: str | None = Field(None, pattern=r"^[A-Za-z]{2}$", description="The requested state (ISO code)")


class RequestIn(StrictInput):
    organisation: ShortNameText | None = Field(
        None, description="The requesting organisation (default: the caller's only one)"
    )
    requested_state: StateCode | None = Field(
        None, description="The state asked; its national CSIRT receives the request"
    )
    requested_organisation: ShortNameText | None = Field(
        None, description="A named organisation of the state asked, instead of its national CSIRT"
    )
    kind: RequestKind
    priority: Priority = Priority.ROUTINE
    subject: str = Field(..., min_length=1, max_length=services.MAX_SUBJECT)
    description: str = Field("", max_length=services.MAX_TEXT)
    legal_basis: str = Field("", max_length=300)
    legal_reference: str = Field("", max_length=200)
    submit: bool = Field(False, description="Submit at once rather than keep a draft")


class RequestPatch(StrictInput):
    requested_state: StateCode | None = Field(None, description="Ask this state's national CSIRT instead")
    requested_organisation: ShortNameText | None = Field(None, description="Ask this organisation instead")
    kind: RequestKind | None = None
    priority: Priority | None = None
    subject: str | None = Field(None, min_length=1, max_length=services.MAX_SUBJECT)
    description: str | None = Field(None, max_length=services.MAX_TEXT)
    legal_basis: str | None = Field(None, max_length=300)
    legal_reference: str | None = Field(None, max_length=200)


class AnswerIn(StrictInput):
    outcome: Outcome
    text: str = Field(..., max_length=services.MAX_TEXT, description="The answer, or why it is declined")


class ReasonIn(StrictInput):
    reason: str = Field("", max_length=services.MAX_TEXT)


class MessageIn(StrictInput):
    text: str = Field(..., min_length=1, max_length=services.MAX_TEXT)


class ThreadOut(Schema):
    kind: str
    created_at: datetime
    author: str | None
    organisation: str | None
    text: str
    details: dict[str, Any]

    @staticmethod
    def resolve_author(obj: ThreadEntry) -> str | None:
        return obj.author.get_username() if obj.author is not None else None

    @staticmethod
    def resolve_organisation(obj: ThreadEntry) -> str | None:
        return obj.organisation.short_name if obj.organisation is not None else None


class AttachmentOut(Schema):
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    organisation: str = Field(..., alias="organisation.short_name")
    created_at: datetime


class DeadlineOut(Schema):
    priority: Priority
    acknowledge_within_seconds: int
    respond_within_seconds: int


class DeadlineIn(StrictInput):
    acknowledge_within_seconds: int = Field(..., ge=60, le=366 * 86400)
    respond_within_seconds: int = Field(..., ge=60, le=366 * 86400)


class MetricOut(Schema):
    state: str
    priority: str
    requests: int
    open: int
    overdue: int
    acknowledged: int
    acknowledged_in_time: int
    answered: int
    answered_in_time: int
    median_to_acknowledge_seconds: float | None
    mean_to_acknowledge_seconds: float | None
    median_to_first_response_seconds: float | None
    mean_to_first_response_seconds: float | None
    acknowledge_compliance: float | None
    answer_compliance: float | None


class MetricsFilter(Schema):
    by_priority: bool = True
    since: datetime | None = None
    until: datetime | None = None


# --- helpers ---------------------------------------------------------------------------------


def _organisation(request: HttpRequest, short_name: str, field: str) -> Organisation:
    found = access.organisations_visible_to(request.user).filter(short_name=short_name).first()
    if found is None:
        raise ValidationError({field: _("No organisation is called %(name)s.") % {"name": short_name}})
    return found


def _requesting(request: HttpRequest, short_name: str | None) -> Organisation:
    if short_name:
        return _organisation(request, short_name, "organisation")
    own = services.working_organisation_ids(request.user)
    if len(own) != 1:
        raise ValidationError({"organisation": _("Say in which organisation's name you ask.")})
    return Organisation.objects.get(pk=next(iter(own)))


def _state(code: str | None) -> MemberState | None:
    if not code:
        return None
    found = MemberState.objects.filter(code=code.upper()).first()
    if found is None:
        raise ValidationError({"requested_state": _("Not a member state: %(code)s.") % {"code": code}})
    return found


def _shown(item: AssistanceRequest, content: bool) -> AssistanceRequest:
    item.content_visible = content  # type: ignore[attr-defined]
    return item


def _content(request: HttpRequest, reference: str) -> AssistanceRequest:
    return _shown(queries.get_content_or_404(request.user, reference), True)


def _deadline_rows() -> list[dict[str, Any]]:
    return [
        {
            "priority": priority,
            "acknowledge_within_seconds": int(ack.total_seconds()),
            "respond_within_seconds": int(respond.total_seconds()),
        }
        for priority, (ack, respond) in services.all_deadlines().items()
    ]


# --- endpoints ---------------------------------------------------------------------------------


@router.get("/deadlines", response=list[DeadlineOut])
def list_deadlines(request: HttpRequest) -> list[dict[str, Any]]:
    """The network's acknowledgement and answer deadlines per priority."""
    return _deadline_rows()


@router.put("/deadlines/{priority}", response=DeadlineOut)
def set_deadline(request: HttpRequest, priority: PriorityPath, payload: DeadlineIn) -> DeadlinePolicy:
    """Change one priority's deadlines (node admins); requests already submitted keep theirs."""
    services.set_deadlines(
        _user(request),
        priority,
        acknowledge_within=timedelta(seconds=payload.acknowledge_within_seconds),
        respond_within=timedelta(seconds=payload.respond_within_seconds),
    )
    return next(row for row in _deadline_rows() if row["priority"] == priority)  # type: ignore[return-value]


@router.get("/metrics", response=list[MetricOut])
def metrics(request: HttpRequest, filters: Query[MetricsFilter]) -> list[dict[str, object]]:
    """Time to acknowledge and to first response, and deadline compliance, per requested state
    (and priority), over the requests whose metadata the caller may see."""
    rows = queries.response_metrics(
        request.user, by_priority=filters.by_priority, since=filters.since, until=filters.until
    )
    return [row.as_dict() for row in rows]


@router.get("/", response=list[RequestOut])
@paginate(Pages)
def list_requests(request: HttpRequest, filters: Query[RequestFilter]) -> QuerySet[AssistanceRequest]:
    """The requests the caller may see, newest first: content for the parties, metadata for the
    network's coordinators."""
    if filters.box == "incoming":
        rows: QuerySet[AssistanceRequest] = queries.inbox(request.user)
    elif filters.box == "outgoing":
        rows = queries.outbox(request.user)
    else:
        rows = queries.overseeable(request.user)
    if filters.status:
        rows = rows.filter(status=filters.status)
    if filters.priority:
        rows = rows.filter(priority=filters.priority)
    if filters.state:
        rows = rows.filter(requested_state__code=filters.state.upper())
    return queries.with_content_flag(request.user, rows)


@router.post("/", response={201: RequestOut})
def create_request(request: HttpRequest, payload: RequestIn) -> Status:
    """Write a request in the name of one of the caller's organisations, to a state (its national
    CSIRT) or a named organisation of it; a draft unless ``submit`` is true."""
    user = _user(request)
    # One transaction: a request refused at submission leaves no draft behind.
    with transaction.atomic():
        item = services.create_request(
            user,
            _requesting(request, payload.organisation),
            requested_state=_state(payload.requested_state),
            requested_organisation=_organisation(
                request, payload.requested_organisation, "requested_organisation"
            )
            if payload.requested_organisation
            else None,
            kind=payload.kind,
            priority=payload.priority,
            subject=payload.subject,
            description=payload.description,
            legal_basis=payload.legal_basis,
            legal_reference=payload.legal_reference,
        )
        if payload.submit:
            services.submit(user, item)
    return Status(201, _shown(item, True))


@router.get("/{reference}", response=RequestOut)
def get_request(request: HttpRequest, reference: Reference) -> AssistanceRequest:
    """One request: its content for the parties, its metadata only for the coordinators."""
    found = queries.get_or_404(request.user, reference)
    return _shown(found.request, found.content)


@router.patch("/{reference}", response=RequestOut)
def update_request(request: HttpRequest, reference: Reference, payload: RequestPatch) -> AssistanceRequest:
    """Change a draft (the requesting organisation)."""
    item = _content(request, reference)
    given = payload.dict(exclude_unset=True)
    if any(value is None for value in given.values()):
        raise ValidationError(_("Fields cannot be set to null."))
    state = _state(given.pop("requested_state", None))
    name = given.pop("requested_organisation", None)
    target = _organisation(request, name, "requested_organisation") if name else None
    updated = services.update_draft(
        _user(request), item, requested_state=state, requested_organisation=target, **given
    )
    return _shown(updated, True)


@router.post("/{reference}/submit", response=RequestOut)
def submit(request: HttpRequest, reference: Reference) -> AssistanceRequest:
    """Send a draft: its deadlines start, the requested 24/7 desk is e-mailed."""
    return _shown(services.submit(_user(request), _content(request, reference)), True)


@router.post("/{reference}/acknowledge", response=RequestOut)
def acknowledge(request: HttpRequest, reference: Reference) -> AssistanceRequest:
    """The requested organisation acknowledges the request."""
    return _shown(services.acknowledge(_user(request), _content(request, reference)), True)


@router.post("/{reference}/start", response=RequestOut)
def start(request: HttpRequest, reference: Reference) -> AssistanceRequest:
    """The requested organisation starts working on it."""
    return _shown(services.start(_user(request), _content(request, reference)), True)


@router.post("/{reference}/answer", response=RequestOut)
def answer(request: HttpRequest, reference: Reference, payload: AnswerIn) -> AssistanceRequest:
    """The requested organisation answers: fulfilled, partial, or declined with a reason."""
    item = _content(request, reference)
    return _shown(services.answer(_user(request), item, payload.outcome, payload.text), True)


@router.post("/{reference}/withdraw", response=RequestOut)
def withdraw(request: HttpRequest, reference: Reference, payload: ReasonIn) -> AssistanceRequest:
    """The requesting organisation withdraws the request (with a reason once submitted)."""
    item = _content(request, reference)
    return _shown(services.withdraw(_user(request), item, payload.reason), True)


@router.post("/{reference}/close", response=RequestOut)
def close(request: HttpRequest, reference: Reference) -> AssistanceRequest:
    """Either party closes an answered or withdrawn request."""
    return _shown(services.close(_user(request), _content(request, reference)), True)


@router.get("/{reference}/thread", response=list[ThreadOut])
def get_thread(request: HttpRequest, reference: Reference) -> QuerySet[ThreadEntry]:
    """The request's messages and events, oldest first (the parties only)."""
    return queries.thread(_content(request, reference))


@router.post("/{reference}/messages", response={201: ThreadOut})
def post_message(request: HttpRequest, reference: Reference, payload: MessageIn) -> Status:
    """Write on the request's thread (either party)."""
    entry = services.post_message(_user(request), _content(request, reference), payload.text)
    return Status(201, entry)


@router.get("/{reference}/attachments", response=list[AttachmentOut])
def list_attachments(request: HttpRequest, reference: Reference) -> QuerySet[Attachment]:
    """The request's attachments (the parties only)."""
    return queries.attachments(_content(request, reference))


@router.post("/{reference}/attachments", response={201: AttachmentOut})
def upload_attachment(request: HttpRequest, reference: Reference, file: File[UploadedFile]) -> Status:
    """Attach a file (multipart form field ``file``), at most the node's attachment limit."""
    item = _content(request, reference)
    attachment = services.add_attachment(
        _user(request),
        item,
        filename=file.name or "attachment",
        content_type=file.content_type or "",
        chunks=file.chunks(),
    )
    return Status(201, attachment)


@router.get("/{reference}/attachments/{attachment_id}")
def download_attachment(
    request: HttpRequest, reference: Reference, attachment_id: AttachmentId
) -> FileResponse:
    """The attachment's bytes (the parties only; audited)."""
    attachment = queries.attachment_or_404(request.user, reference, attachment_id)
    handle = services.open_attachment(request.user, attachment)
    return FileResponse(
        handle, as_attachment=True, filename=attachment.filename, content_type="application/octet-stream"
    )
