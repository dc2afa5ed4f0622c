"""``minga assistance``: the deadlines shown and set, and the escalation run by hand."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from minga.assistance import services
from minga.assistance.models import AssistanceRequest

pytestmark = pytest.mark.django_db


def test_deadlines_are_shown_and_set(network):
    out = StringIO()
    call_command("assistance", "deadlines", stdout=out)
    assert "emergency  acknowledge within 1h 00m" in out.getvalue()
    call_command(
        "assistance",
        "deadlines",
        "--set",
        "urgent",
        "--acknowledge-hours",
        "2",
        "--respond-hours",
        "48",
        stdout=out,
    )
    assert services.deadlines_for("urgent") == (timedelta(hours=2), timedelta(hours=48))
    with pytest.raises(CommandError, match="before the acknowledgement"):
        call_command(
            "assistance", "deadlines", "--set", "urgent", "--acknowledge-hours", "5", "--respond-hours", "1"
        )
    with pytest.raises(CommandError, match="--acknowledge-hours"):
        call_command("assistance", "deadlines", "--set", "urgent")


def test_escalate_now(network, make_request):
    request = make_request()
    # Submitted two hours ago with an hour to acknowledge: level 1 is due, level 2 an hour later.
    AssistanceRequest.objects.filter(pk=request.pk).update(
        submitted_at=request.submitted_at - timedelta(hours=2),
        acknowledge_by=request.submitted_at - timedelta(hours=1),
    )
    out = StringIO()
    call_command("assistance", "escalate", stdout=out)
    assert "escalated 1 request(s)" in out.getvalue() and request.reference in out.getvalue()
    again = StringIO()
    call_command("assistance", "escalate", stdout=again)
    assert "escalated 0 request(s)" in again.getvalue()
