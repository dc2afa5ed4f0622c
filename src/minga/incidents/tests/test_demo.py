"""The demo incident: cross-border, among demo organisations, on documentation ranges only."""

from __future__ import annotations

import ipaddress

import pytest

from minga.core import access
from minga.core import demo as core_demo
from minga.core.models import User
from minga.directory import demo as directory_demo
from minga.incidents import demo, queries
from minga.incidents.choices import ParticipantStatus
from minga.incidents.models import Incident
from minga.intel import demo as intel_demo


@pytest.fixture
def loaded(db, monkeypatch):
    monkeypatch.setenv("MINGA_DEMO_PASSWORD", "demo-password-for-the-test-suite-only")
    core_demo.load()
    directory_demo.load()
    intel_demo.load()
    demo.load()


def test_the_demo_incident_is_cross_border_and_loads_once(loaded):
    demo.load()
    incident = Incident.objects.get()
    assert incident.title.endswith("(demo)") and incident.reference.startswith("MNG-")
    statuses = {
        p.organisation.short_name: p.status for p in incident.participants.select_related("organisation")
    }
    assert statuses["demo-cert-caribe"] == ParticipantStatus.ACKNOWLEDGED
    assert statuses["demo-csirt-br"] == ParticipantStatus.ADDED
    for observable in incident.observables.all():
        if observable.kind == "ip":
            assert ipaddress.ip_address(observable.value) in ipaddress.ip_network("198.18.0.0/15")
        else:
            assert observable.value.endswith(".example")
    caribe = User.objects.get(username="demo-caribe")
    assert queries.get_or_404(caribe, incident.reference) == incident
    assert queries.linked_objects(caribe, incident)  # Andina's indicator, shared with Caribe
    operator = User.objects.get(username="demo-operator")  # not a participant
    assert not access.can_read(operator, incident)
