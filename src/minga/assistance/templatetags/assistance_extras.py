"""Template filters of the assistance pages: deadline clocks and compliance shares."""

from __future__ import annotations

from datetime import timedelta

from django import template

from minga.assistance import queries
from minga.assistance.choices import Outcome, RequestStatus

register = template.Library()


@register.filter
def duration(value: float | timedelta | None) -> str:
    """Seconds or a timedelta as a short clock: 3d 4h, 2h 05m, -12m (overdue)."""
    return queries.duration_text(value)


@register.filter
def overdue(value: timedelta | None) -> bool:
    return value is not None and value.total_seconds() < 0


@register.filter
def percent(value: float | None) -> str:
    return "—" if value is None else f"{round(value * 100)} %"


@register.filter
def status_label(value: str) -> str:
    """A status stored in a thread entry, in the reader's language."""
    return str(RequestStatus(value).label) if value in RequestStatus.values else str(value)


@register.filter
def outcome_label(value: str) -> str:
    return str(Outcome(value).label) if value in Outcome.values else str(value)
