"""Metrics for the reports capability: time to acknowledge and to first response, and deadline
compliance, per requested state and per priority."""

from __future__ import annotations

from datetime import timedelta

import pytest

from minga.assistance import queries, services
from minga.assistance.models import AssistanceRequest

pytestmark = pytest.mark.django_db


def _shift(request: AssistanceRequest, **offsets: timedelta) -> None:
    """Place the request's timings relative to its submission."""
    fields = {name: request.submitted_at + offset for name, offset in offsets.items()}
    AssistanceRequest.objects.filter(pk=request.pk).update(**fields)


def test_times_and_compliance_per_state_and_priority(network, make_request):
    fast = make_request(priority="emergency")
    services.acknowledge(network.carlos, fast)
    services.post_message(network.carlos, fast, "Preserved.")
    _shift(fast, acknowledged_at=timedelta(minutes=20), first_response_at=timedelta(minutes=50))
    slow = make_request(priority="emergency")
    services.acknowledge(network.carlos, slow)
    _shift(slow, acknowledged_at=timedelta(minutes=100))  # past the hour
    routine = make_request(priority="routine")
    services.answer(network.carlos, routine, "fulfilled", "Here it is.")
    _shift(
        routine,
        acknowledged_at=timedelta(hours=3),
        first_response_at=timedelta(hours=3),
        answered_at=timedelta(hours=3),
    )
    brazil = make_request(priority="urgent", requested_state=network.br.profile.state)

    rows = {(m.state, m.priority): m for m in queries.response_metrics(network.coordinator)}
    emergency = rows[("CL", "emergency")]
    assert emergency.requests == 2 and emergency.acknowledged == 2 and emergency.acknowledged_in_time == 1
    assert emergency.median_to_acknowledge == 60 * 60  # (20 + 100) / 2 minutes
    assert emergency.mean_to_first_response == 50 * 60  # the slow one has not responded
    assert emergency.acknowledge_compliance == 0.5
    assert rows[("CL", "routine")].answer_compliance == 1.0
    assert rows[("BR", "urgent")].open == 1 and rows[("BR", "urgent")].acknowledged == 0

    # Later: Brazil's request is overdue and counts against its compliance.
    later = brazil.acknowledge_by + timedelta(minutes=1)
    per_state = {
        m.state: m for m in queries.response_metrics(network.coordinator, by_priority=False, now=later)
    }
    assert per_state["BR"].overdue == 1 and per_state["BR"].acknowledge_compliance == 0.0
    assert per_state["CL"].requests == 3 and per_state["CL"].acknowledged_in_time == 2

    # A party sees the metrics of its own requests only; a third party sees none.
    assert {m.state for m in queries.response_metrics(network.carlos)} == {"CL"}
    assert queries.response_metrics(network.bruna, by_priority=False)[0].requests == 1
    from minga.core.models import User

    outsider = User.objects.create_user("nobody")
    assert queries.response_metrics(outsider) == []


def test_duration_text():
    assert queries.duration_text(None) == "—"
    assert queries.duration_text(timedelta(days=2, hours=3)) == "2d 3h"
    assert queries.duration_text(3 * 3600 + 5 * 60) == "3h 05m"
    assert queries.duration_text(-600) == "-10m"
