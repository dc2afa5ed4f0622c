"""The demo network's intelligence: shared AMBER with named partners, correlated, sighted."""

from __future__ import annotations

import pytest

from minga.core import demo as core_demo
from minga.core.models import User
from minga.intel import demo, queries
from minga.intel.models import StixObject


@pytest.fixture
def loaded(db, monkeypatch):
    monkeypatch.setenv("MINGA_DEMO_PASSWORD", "demo-password-for-the-test-suite-only")
    core_demo.load()
    demo.load()


def test_demo_intel_is_shared_correlated_sighted_and_loads_once(loaded):
    count = StixObject.objects.count()
    demo.load()
    assert StixObject.objects.count() == count  # a replay
    analyst = User.objects.get(username="demo-analyst")  # CSIRT Andina, the producer
    indicator = queries.get_latest_or_404(analyst, demo._id("indicator", "Cóndor command server address"))
    assert [c.obj.type for c in queries.correlations(analyst, indicator)] == ["ipv4-addr"]
    summary, _rows = queries.sightings(analyst, indicator.stix_id)
    assert (summary.sightings, summary.count) == (1, 14)
    # The grid operator is not named: it sees the GREEN observables, not the AMBER indicators.
    operator = User.objects.get(username="demo-operator")
    assert set(queries.latest_visible(operator).values_list("type", flat=True)) == {
        "ipv4-addr",
        "domain-name",
    }
