"""The demo requests: among demo organisations, in several states of their lifecycle, loaded once."""

from __future__ import annotations

import pytest

from minga.assistance import demo, queries
from minga.assistance.models import AssistanceRequest
from minga.core import demo as core_demo
from minga.core.models import User
from minga.directory import demo as directory_demo


@pytest.fixture
def loaded(db, monkeypatch):
    monkeypatch.setenv("MINGA_DEMO_PASSWORD", "demo-password-for-the-test-suite-only")
    core_demo.load()
    directory_demo.load()
    demo.load()


def test_the_demo_requests_load_once_and_stay_between_their_parties(loaded):
    demo.load()
    requests = list(AssistanceRequest.objects.order_by("pk"))
    assert len(requests) == 3
    assert all(r.subject.endswith("(demo)") for r in requests)
    assert all(r.requesting_organisation.short_name.startswith("demo-") for r in requests)
    assert all(r.requested_organisation.short_name.startswith("demo-") for r in requests)
    # Whatever the demo directory confirmed, each request is past its draft or kept as one.
    assert {r.status for r in requests} <= {"draft", "submitted", "acknowledged", "in_progress", "answered"}
    operator = User.objects.get(username="demo-operator")  # a grid operator: no party to any
    assert not queries.overseeable(operator).exists()
    admin = User.objects.get(username="demo-admin")  # the coordinator sees the submitted ones
    assert set(queries.overseeable(admin)) == {r for r in requests if r.status != "draft"}
    assert not queries.readable(admin).exists()
