"""Read paths of mutual assistance, every one through the access policy (``minga.core.access``):

* content (subject, description, legal basis, answer, thread, attachments): the two parties'
  active members; a draft is the requesting organisation's alone until it is submitted;
* metadata (who asked whom, kind, priority, status, deadlines, timings): the parties and the
  network's coordinators (node admins), for submitted requests;
* everyone else: nothing, and a 404 for a request they may not know exists.

``content_filter`` and ``can_read_content`` are the queryset filter and the object check of
the one rule; tests prove that they agree. The metrics at the end are for the SLA view and for
the reports capability.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import BooleanField, Case, Q, QuerySet, Value, When
from django.http import Http404

from minga.assistance.choices import OPEN_STATUSES, Priority, RequestStatus
from minga.assistance.models import AssistanceRequest, Attachment, ThreadEntry
from minga.core import access, audit

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from minga.core.models import User

    Reader = User | AnonymousUser | None

REQUESTING = "requesting_organisation"
REQUESTED = "requested_organisation"


def content_filter(user: Reader) -> Q:
    """The ``Q`` admitting the requests whose content ``user`` may read."""
    return access.party_filter(user, REQUESTING) | (
        access.party_filter(user, REQUESTED) & ~Q(status=RequestStatus.DRAFT)
    )


def can_read_content(user: Reader, request: AssistanceRequest) -> bool:
    """The object check of ``content_filter``."""
    if access.is_party(user, request, REQUESTING):
        return True
    return request.status != RequestStatus.DRAFT and access.is_party(user, request, REQUESTED)


def metadata_filter(user: Reader) -> Q:
    """The ``Q`` admitting the requests whose metadata ``user`` may see."""
    if access.is_network_coordinator(user):
        return content_filter(user) | ~Q(status=RequestStatus.DRAFT)
    return content_filter(user)


def _base() -> QuerySet[AssistanceRequest]:
    return AssistanceRequest.objects.select_related(
        "requesting_organisation", "requested_organisation", "requesting_state", "requested_state"
    )


def readable(user: Reader) -> QuerySet[AssistanceRequest]:
    """Requests whose content ``user`` may read (the parties)."""
    return _base().filter(content_filter(user))


def overseeable(user: Reader) -> QuerySet[AssistanceRequest]:
    """Requests whose metadata ``user`` may see (the parties and the coordinators)."""
    return _base().filter(metadata_filter(user))


@dataclass(frozen=True)
class Found:
    """A request and whether the reader sees its content or its metadata only."""

    request: AssistanceRequest
    content: bool


def get_or_404(user: Reader, reference: str) -> Found:
    """The request ``reference`` as ``user`` may see it; 404 if they may see nothing of it.
    Reading a submitted request's content is audited (``assistance.read``), as reading TLP:AMBER
    is: a request is confidential between its parties."""
    request = overseeable(user).filter(reference=str(reference)[:20]).first()
    if request is None:
        raise Http404
    content = can_read_content(user, request)
    if content and request.status != RequestStatus.DRAFT:
        audit.record(
            "assistance.read",
            actor=user,
            obj=request,
            organisation=request.requesting_organisation,
            details={"reference": request.reference},
        )
    return Found(request, content)


def get_content_or_404(user: Reader, reference: str) -> AssistanceRequest:
    """The request ``reference`` if ``user`` may read its content; 404 otherwise (coordinators
    included: the content does not exist for them)."""
    request = readable(user).filter(reference=str(reference)[:20]).first()
    if request is None:
        raise Http404
    return request


def with_content_flag(user: Reader, rows: QuerySet[AssistanceRequest]) -> QuerySet[AssistanceRequest]:
    """``rows`` annotated with ``content_visible``: whether ``user`` reads each one's content."""
    return rows.annotate(
        content_visible=Case(
            When(content_filter(user), then=Value(True)), default=Value(False), output_field=BooleanField()
        )
    )


def thread(request: AssistanceRequest) -> QuerySet[ThreadEntry]:
    """Call with a request found by ``get_content_or_404``."""
    return request.thread.select_related("author", "organisation")


def attachments(request: AssistanceRequest) -> QuerySet[Attachment]:
    """Call with a request found by ``get_content_or_404``."""
    return request.attachments.select_related("organisation", "uploaded_by")


def attachment_or_404(user: Reader, reference: str, attachment_id: int) -> Attachment:
    request = get_content_or_404(user, reference)
    found = request.attachments.filter(pk=min(int(attachment_id), 2**53)).select_related("request").first()
    if found is None:
        raise Http404
    return found


def inbox(user: Reader) -> QuerySet[AssistanceRequest]:
    """Requests to the reader's organisations (submitted ones: drafts are not sent)."""
    ids = access.reader_for(user).organisation_ids
    return readable(user).filter(requested_organisation_id__in=ids)


def outbox(user: Reader) -> QuerySet[AssistanceRequest]:
    """Requests from the reader's organisations, drafts included."""
    ids = access.reader_for(user).organisation_ids
    return readable(user).filter(requesting_organisation_id__in=ids)


def open_requests(user: Reader) -> QuerySet[AssistanceRequest]:
    """Open requests whose metadata ``user`` may see, the most pressing deadline first."""
    return overseeable(user).filter(status__in=OPEN_STATUSES).order_by("acknowledge_by", "respond_by")


# --- metrics -------------------------------------------------------------------------------------


@dataclass
class Metric:
    """Timings of the requests one state (or one state and priority) was asked: counts, the
    median and mean times to acknowledge and to first response, and how many met their
    deadlines. Times are in seconds."""

    state: str
    priority: str = ""
    requests: int = 0
    open: int = 0
    overdue: int = 0
    acknowledged: int = 0
    acknowledged_in_time: int = 0
    answered: int = 0
    answered_in_time: int = 0
    overdue_unacknowledged: int = 0  # due for acknowledgement, never acknowledged
    to_acknowledge: list[float] = field(default_factory=list, repr=False)
    to_first_response: list[float] = field(default_factory=list, repr=False)

    @staticmethod
    def _median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    @staticmethod
    def _mean(values: list[float]) -> float | None:
        return statistics.fmean(values) if values else None

    @property
    def median_to_acknowledge(self) -> float | None:
        return self._median(self.to_acknowledge)

    @property
    def mean_to_acknowledge(self) -> float | None:
        return self._mean(self.to_acknowledge)

    @property
    def median_to_first_response(self) -> float | None:
        return self._median(self.to_first_response)

    @property
    def mean_to_first_response(self) -> float | None:
        return self._mean(self.to_first_response)

    @property
    def acknowledge_compliance(self) -> float | None:
        """Share of the requests due for acknowledgement (acknowledged, or overdue) that were
        acknowledged in time."""
        due = self.acknowledged + self.overdue_unacknowledged
        return self.acknowledged_in_time / due if due else None

    @property
    def answer_compliance(self) -> float | None:
        due = self.answered
        return self.answered_in_time / due if due else None

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state,
            "priority": self.priority,
            "requests": self.requests,
            "open": self.open,
            "overdue": self.overdue,
            "acknowledged": self.acknowledged,
            "acknowledged_in_time": self.acknowledged_in_time,
            "answered": self.answered,
            "answered_in_time": self.answered_in_time,
            "median_to_acknowledge_seconds": self.median_to_acknowledge,
            "mean_to_acknowledge_seconds": self.mean_to_acknowledge,
            "median_to_first_response_seconds": self.median_to_first_response,
            "mean_to_first_response_seconds": self.mean_to_first_response,
            "acknowledge_compliance": self.acknowledge_compliance,
            "answer_compliance": self.answer_compliance,
        }


def response_metrics(
    user: Reader,
    *,
    by_priority: bool = True,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> list[Metric]:
    """Time to acknowledge and to first response, and compliance with the deadlines, per
    requested state (and per priority, unless ``by_priority`` is false), over the submitted
    requests whose metadata ``user`` may see (a coordinator: the whole network), submitted in
    [``since``, ``until``). For the SLA view and the reports capability."""
    from django.utils import timezone

    now = now or timezone.now()
    rows = overseeable(user).filter(submitted_at__isnull=False)
    if since is not None:
        rows = rows.filter(submitted_at__gte=since)
    if until is not None:
        rows = rows.filter(submitted_at__lt=until)
    metrics: dict[tuple[str, str], Metric] = {}
    order: dict[str, int] = {
        str(p): i for i, p in enumerate((Priority.EMERGENCY, Priority.URGENT, Priority.ROUTINE))
    }
    for (
        state,
        priority,
        status,
        submitted,
        ack_by,
        respond_by,
        acknowledged,
        first_response,
        answered,
    ) in rows.values_list(
        "requested_state__code",
        "priority",
        "status",
        "submitted_at",
        "acknowledge_by",
        "respond_by",
        "acknowledged_at",
        "first_response_at",
        "answered_at",
    ):
        if submitted is None or ack_by is None or respond_by is None:
            continue  # a submitted request has all three
        key = (state, priority if by_priority else "")
        metric = metrics.setdefault(key, Metric(state=state, priority=key[1]))
        metric.requests += 1
        is_open = status in OPEN_STATUSES
        if is_open:
            metric.open += 1
            if (acknowledged is None and ack_by < now) or (answered is None and respond_by < now):
                metric.overdue += 1
        if acknowledged is not None:
            metric.acknowledged += 1
            metric.to_acknowledge.append((acknowledged - submitted).total_seconds())
            if acknowledged <= ack_by:
                metric.acknowledged_in_time += 1
        elif ack_by < now and status not in (RequestStatus.WITHDRAWN, RequestStatus.CLOSED):
            metric.overdue_unacknowledged += 1
        if first_response is not None:
            metric.to_first_response.append((first_response - submitted).total_seconds())
        if answered is not None:
            metric.answered += 1
            if answered <= respond_by:
                metric.answered_in_time += 1
    return sorted(metrics.values(), key=lambda m: (m.state, order.get(m.priority, 9)))


def duration_text(seconds: float | timedelta | None) -> str:
    """A short, language-neutral duration: 3d 4h, 2h 05m, 12m, -1h 10m (overdue)."""
    if seconds is None:
        return "—"
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    sign = "-" if seconds < 0 else ""
    total = int(abs(seconds)) // 60
    days, rest = divmod(total, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    return f"{sign}{minutes}m"


def per_state(metrics: list[Metric]) -> dict[str, list[Metric]]:
    grouped: dict[str, list[Metric]] = defaultdict(list)
    for metric in metrics:
        grouped[metric.state].append(metric)
    return dict(grouped)
