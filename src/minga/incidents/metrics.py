"""Response metrics of incidents, for the metrics page, the REST API and the reports capability.

Three durations, in seconds, each measured from rows the incident keeps:

* **time to acknowledge**: for each participant that acknowledged, from when it was added
  (``Participant.added_at``) to its acknowledgement (``acknowledged_at``). The coordinator's own
  participation (a coordinator other than the reporter is added acknowledged when the incident
  is opened) is not counted: it measures nothing. An incident contributes one value per
  acknowledging participant.
* **time to first response**: from the opening of the incident (``created_at``) to the first
  comment written on its shared timeline in the name of an organisation other than the
  reporting one (a participant's or the coordinator's, when the coordinator is not the
  reporter). Acknowledging, declining and the coordinators' housekeeping (status changes,
  tasks, links) are not responses: acknowledgement has its own measure, and the rest says
  nothing of whether someone else engaged. One value per incident that had such a comment.
* **time to resolve**: from the opening to ``resolved_at``, the last time it was marked
  resolved (reopening clears it, so a reopened incident counts when it is resolved again).
  An incident closed without being resolved has no time to resolve. One value per resolved
  incident.

Incidents merged into another are left out (the survivor counts). Each row groups the incidents
opened in [``since``, ``until``) by affected member state (an incident that affects three states
counts in each of the three; one that names none is in the row whose ``state`` is empty) and by
priority, which for incidents is their severity (``by_priority``; ``by_state=False`` gives rows
per priority alone). A row gives the number of incidents and, for each duration, how many
values were measured, their median, their 90th percentile (``statistics.quantiles`` with the
inclusive method: linear interpolation between the closest ranks; one value is its own
percentile) and their mean. Field names follow ``minga.assistance.queries.Metric`` (``state``,
``priority``, ``median_to_acknowledge_seconds``, ``median_to_first_response_seconds``...), so
the reports capability reads both the same way.

Who sees what:

* by default the rows are computed over the incidents ``user`` may read
  (``Incident.objects.visible_to``), so they disclose nothing the reader could not count
  themselves;
* ``node_wide=True`` computes them over every incident of the node (not the mirrors of those
  coordinated on other nodes: they count there), for the operator (``user``
  is ``None``: the CLI, the reports capability) or the network's coordinators (node admins).
  It is meant for statistics published beyond the readers, so it applies a privacy threshold:
  a row with fewer than ``min_group_size`` incidents (default ``NODE_WIDE_MIN_GROUP``) is
  suppressed, not shown with small numbers that could point at one incident. Suppressed rows
  are counted in the result's ``suppressed``.

Reading metrics is not audited: they are aggregates, and no incident is read.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import F, Min, QuerySet
from django.utils.translation import gettext as _

from minga.core import access
from minga.incidents.choices import Severity, TimelineKind
from minga.incidents.models import Incident, Participant, TimelineEntry

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from minga.core.models import User

    Reader = User | AnonymousUser | None

NODE_WIDE_MIN_GROUP = 5  # the default privacy threshold of node-wide rows
MAX_MIN_GROUP = 1000
SEVERITY_ORDER = {
    str(s): i for i, s in enumerate((Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW))
}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


@dataclass
class Metric:
    """One row: the incidents of one affected state (and severity). Times in seconds."""

    state: str
    priority: str = ""
    incidents: int = 0
    to_acknowledge: list[float] = field(default_factory=list, repr=False)
    to_first_response: list[float] = field(default_factory=list, repr=False)
    to_resolve: list[float] = field(default_factory=list, repr=False)

    @property
    def acknowledged(self) -> int:
        return len(self.to_acknowledge)

    @property
    def responded(self) -> int:
        return len(self.to_first_response)

    @property
    def resolved(self) -> int:
        return len(self.to_resolve)

    @property
    def median_to_acknowledge(self) -> float | None:
        return _median(self.to_acknowledge)

    @property
    def median_to_first_response(self) -> float | None:
        return _median(self.to_first_response)

    @property
    def median_to_resolve(self) -> float | None:
        return _median(self.to_resolve)

    @property
    def p90_to_acknowledge(self) -> float | None:
        return _p90(self.to_acknowledge)

    @property
    def p90_to_first_response(self) -> float | None:
        return _p90(self.to_first_response)

    @property
    def p90_to_resolve(self) -> float | None:
        return _p90(self.to_resolve)

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "priority": self.priority,
            "incidents": self.incidents,
            "acknowledged": self.acknowledged,
            "responded": self.responded,
            "resolved": self.resolved,
            "median_to_acknowledge_seconds": self.median_to_acknowledge,
            "p90_to_acknowledge_seconds": self.p90_to_acknowledge,
            "mean_to_acknowledge_seconds": _mean(self.to_acknowledge),
            "median_to_first_response_seconds": self.median_to_first_response,
            "p90_to_first_response_seconds": self.p90_to_first_response,
            "mean_to_first_response_seconds": _mean(self.to_first_response),
            "median_to_resolve_seconds": self.median_to_resolve,
            "p90_to_resolve_seconds": self.p90_to_resolve,
            "mean_to_resolve_seconds": _mean(self.to_resolve),
        }


@dataclass
class Metrics:
    """The rows, and how many were suppressed under the privacy threshold."""

    rows: list[Metric]
    node_wide: bool
    min_group_size: int
    suppressed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "node_wide": self.node_wide,
            "min_group_size": self.min_group_size,
            "suppressed": self.suppressed,
            "rows": [row.as_dict() for row in self.rows],
        }


def _incidents(user: Reader, node_wide: bool) -> QuerySet[Incident]:
    if node_wide:
        if user is not None and not access.is_network_coordinator(user):
            raise PermissionDenied(_("Node-wide metrics are for the network's coordinators."))
        # A mirror of an incident coordinated on another node is counted there, not twice.
        return Incident.objects.filter(coordinating_node="")
    return Incident.objects.visible_to(user)  # type: ignore[attr-defined,no-any-return]


def incident_metrics(
    user: Reader,
    *,
    by_priority: bool = True,
    by_state: bool = True,
    since: datetime | None = None,
    until: datetime | None = None,
    node_wide: bool = False,
    min_group_size: int | None = None,
) -> Metrics:
    """Time to acknowledge, to first response and to resolve per affected state and severity
    (see the module's docstring for the definitions and who sees what). ``min_group_size``
    suppresses rows with fewer incidents; it defaults to 1 for a reader's own incidents and to
    ``NODE_WIDE_MIN_GROUP`` node-wide. Raises ``PermissionDenied`` for node-wide rows asked by
    someone other than the operator or a coordinator, ``ValidationError`` for a bad threshold or
    period."""
    threshold = min_group_size if min_group_size is not None else (NODE_WIDE_MIN_GROUP if node_wide else 1)
    if not 1 <= threshold <= MAX_MIN_GROUP:
        raise ValidationError(
            {"min_group_size": _("Give a number from 1 to %(max)d.") % {"max": MAX_MIN_GROUP}}
        )
    if since is not None and until is not None and since >= until:
        raise ValidationError({"until": _("The end of the period must come after its start.")})
    incidents = _incidents(user, node_wide).filter(merged_into__isnull=True)
    if since is not None:
        incidents = incidents.filter(created_at__gte=since)
    if until is not None:
        incidents = incidents.filter(created_at__lt=until)
    opened: dict[int, tuple[datetime, str, datetime | None]] = {
        pk: (created, severity, resolved)
        for pk, created, severity, resolved in incidents.values_list(
            "pk", "created_at", "severity", "resolved_at"
        )
    }
    if not opened:
        return Metrics(rows=[], node_wide=node_wide, min_group_size=threshold)
    ids = list(opened)
    states: dict[int, list[str]] = defaultdict(list)
    if by_state:
        through = Incident.affected_states.through
        for incident_id, code in through.objects.filter(incident_id__in=ids).values_list(
            "incident_id", "memberstate__code"
        ):
            states[incident_id].append(code)
    acknowledgements: dict[int, list[float]] = defaultdict(list)
    for incident_id, added, acknowledged in (
        Participant.objects.filter(incident_id__in=ids, added_at__isnull=False, acknowledged_at__isnull=False)
        .exclude(organisation_id=F("incident__coordinating_organisation_id"))
        .values_list("incident_id", "added_at", "acknowledged_at")
    ):
        if added is not None and acknowledged is not None:  # filtered so; for the type checker
            acknowledgements[incident_id].append((acknowledged - added).total_seconds())
    first_comment = dict(
        TimelineEntry.objects.filter(
            incident_id__in=ids, kind=TimelineKind.COMMENT, organisation_id__isnull=False
        )
        .exclude(organisation_id=F("incident__origin_organisation_id"))
        .values("incident_id")
        .annotate(first=Min("created_at"))
        .values_list("incident_id", "first")
    )
    rows: dict[tuple[str, str], Metric] = {}
    for pk, (created, severity, resolved) in opened.items():
        priority = severity if by_priority else ""
        for state in sorted(set(states.get(pk) or [""])) if by_state else [""]:
            row = rows.setdefault((state, priority), Metric(state=state, priority=priority))
            row.incidents += 1
            row.to_acknowledge += acknowledgements.get(pk, [])
            if pk in first_comment:
                row.to_first_response.append((first_comment[pk] - created).total_seconds())
            if resolved is not None:
                row.to_resolve.append((resolved - created).total_seconds())
    kept = [row for row in rows.values() if row.incidents >= threshold]
    kept.sort(key=lambda m: (m.state == "", m.state, SEVERITY_ORDER.get(m.priority, 9)))
    return Metrics(rows=kept, node_wide=node_wide, min_group_size=threshold, suppressed=len(rows) - len(kept))


def duration_text(seconds: float | None) -> str:
    """A short, language-neutral duration: 3d 4h, 2h 05m, 12m, 40s."""
    if seconds is None:
        return "—"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes = total // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m"
