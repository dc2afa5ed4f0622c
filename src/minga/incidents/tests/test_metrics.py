"""Metrics: time to acknowledge, to first response and to resolve per affected state and
severity, over what the reader may read, or node-wide above a privacy threshold."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from minga.core.choices import TLP
from minga.directory.models import MemberState
from minga.incidents import metrics, services
from minga.incidents.models import Incident, Participant, TimelineEntry

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - timedelta(days=10)


def _at(incident: Incident, minutes: float) -> object:
    return T0 + timedelta(minutes=minutes) + timedelta(days=incident.pk)


def _story(
    network, open_incident, *, severity: str, states: list[str], ack: float, reply: float, resolve: float
):
    """An incident opened at T0 (+ a day per pk), Chile added at +10 min, acknowledging after
    ``ack`` minutes, answering on the timeline after ``reply`` minutes and resolved after
    ``resolve`` minutes; Peru (the reporter) writes first, which is no response."""
    incident = open_incident(
        severity=severity, affected_states=list(MemberState.objects.filter(code__in=states))
    )
    start = _at(incident, 0)
    Incident.objects.filter(pk=incident.pk).update(created_at=start)
    services.add_participant(network.ana, incident, network.cl)
    services.acknowledge(network.carlos, incident)
    Participant.objects.filter(incident=incident, organisation=network.cl).update(
        added_at=start + timedelta(minutes=10), acknowledged_at=start + timedelta(minutes=10 + ack)
    )
    own = services.comment(network.ana, incident, "We see encrypted hosts.")
    TimelineEntry.objects.filter(pk=own.pk).update(created_at=start + timedelta(minutes=1))
    answer = services.comment(network.carlos, incident, "Our hospital confirms.")
    TimelineEntry.objects.filter(pk=answer.pk).update(created_at=start + timedelta(minutes=reply))
    incident.refresh_from_db()
    services.change_status(network.ana, incident, "resolved", "Contained.")
    Incident.objects.filter(pk=incident.pk).update(resolved_at=start + timedelta(minutes=resolve))
    return incident


@pytest.fixture
def three(network, open_incident):
    return [
        _story(network, open_incident, severity="high", states=["CL", "PE"], ack=20, reply=30, resolve=600),
        _story(network, open_incident, severity="high", states=["CL"], ack=40, reply=90, resolve=1200),
        _story(network, open_incident, severity="low", states=["CL"], ack=60, reply=120, resolve=2400),
    ]


def _row(result, state, priority=""):
    return next(r for r in result.rows if r.state == state and r.priority == priority)


def test_the_three_durations_per_state_and_severity(network, three):
    result = metrics.incident_metrics(network.carlos)
    cl_high = _row(result, "CL", "high")
    assert cl_high.incidents == 2
    # Chile's own acknowledgements (20 and 40 minutes after being added); not the coordinator's.
    assert sorted(cl_high.to_acknowledge) == [1200.0, 2400.0]
    assert cl_high.median_to_acknowledge == 1800.0
    assert cl_high.p90_to_acknowledge == pytest.approx(1200 + 0.9 * 1200)
    # The reporter's own comment after a minute is not a response; Chile's is.
    assert sorted(cl_high.to_first_response) == [1800.0, 5400.0]
    assert sorted(cl_high.to_resolve) == [36000.0, 72000.0]
    assert _row(result, "PE", "high").incidents == 1
    assert _row(result, "CL", "low").median_to_resolve == 144000.0
    # Critical before low, per state; the shape the reports capability reads.
    assert [(r.state, r.priority) for r in result.rows] == [("CL", "high"), ("CL", "low"), ("PE", "high")]
    row = _row(result, "PE", "high").as_dict()
    assert row["median_to_first_response_seconds"] == 1800.0
    assert row["p90_to_resolve_seconds"] == 36000.0
    assert {"state", "priority", "median_to_acknowledge_seconds", "median_to_first_response_seconds"} <= set(
        row
    )
    per_state = metrics.incident_metrics(network.carlos, by_priority=False)
    assert [(r.state, r.incidents) for r in per_state.rows] == [("CL", 3), ("PE", 1)]
    per_severity = metrics.incident_metrics(network.carlos, by_state=False)
    assert [(r.priority, r.incidents) for r in per_severity.rows] == [("high", 2), ("low", 1)]


def test_unresolved_merged_and_unstated_incidents(network, open_incident):
    # Brazil coordinates: it is added acknowledged on opening, which measures nothing.
    nothing_yet = open_incident(severity="critical", coordinating_organisation=network.br)
    duplicate = open_incident(severity="critical")
    services.merge_incident(network.ana, duplicate, nothing_yet)
    result = metrics.incident_metrics(network.ana)
    assert len(result.rows) == 1
    row = result.rows[0]
    assert (row.state, row.priority, row.incidents) == ("", "critical", 1)
    assert (row.acknowledged, row.responded, row.resolved) == (0, 0, 0)
    assert row.as_dict()["median_to_resolve_seconds"] is None


def test_a_reader_counts_only_what_they_may_read(network, three, open_incident):
    hidden = open_incident(severity="critical", tlp=TLP.RED)
    # Olga (Mexico) takes part in nothing: no row, not even a count.
    assert metrics.incident_metrics(network.olga).rows == []
    # Chile does not read Peru's TLP:RED incident: no critical row.
    assert "critical" not in {r.priority for r in metrics.incident_metrics(network.carlos).rows}
    assert "critical" in {r.priority for r in metrics.incident_metrics(network.ana).rows}
    assert hidden.pk


def test_node_wide_rows_for_the_coordinators_with_a_privacy_threshold(network, three, node_admin):
    with pytest.raises(PermissionDenied):
        metrics.incident_metrics(network.carlos, node_wide=True)
    # The node admin reads none of these incidents, yet sees the node's timings in aggregate;
    # by default groups under five incidents are suppressed.
    assert metrics.incident_metrics(node_admin).rows == []
    default = metrics.incident_metrics(node_admin, node_wide=True)
    assert default.rows == [] and default.suppressed == 3 and default.min_group_size == 5
    two = metrics.incident_metrics(node_admin, node_wide=True, min_group_size=2)
    assert [(r.state, r.priority, r.incidents) for r in two.rows] == [("CL", "high", 2)]
    assert two.suppressed == 2
    operator = metrics.incident_metrics(None, node_wide=True, by_priority=False, min_group_size=3)
    assert [(r.state, r.incidents) for r in operator.rows] == [("CL", 3)]
    with pytest.raises(ValidationError):
        metrics.incident_metrics(None, node_wide=True, min_group_size=0)


def test_the_period(network, three):
    first = three[0]
    result = metrics.incident_metrics(
        network.carlos,
        since=first.created_at,
        until=first.created_at + timedelta(seconds=1),
        by_priority=False,
    )
    assert [(r.state, r.incidents) for r in result.rows] == [("CL", 1), ("PE", 1)]
    with pytest.raises(ValidationError):
        metrics.incident_metrics(network.carlos, since=first.created_at, until=first.created_at)


def test_the_api(client, network, three, node_admin, bearer):
    url = "/api/v1/incidents/metrics"
    answer = client.get(url, headers=bearer(network.carlos))
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["node_wide"] is False and body["suppressed"] == 0
    assert body["rows"][0]["state"] == "CL" and body["rows"][0]["median_to_acknowledge_seconds"] == 1800.0
    assert client.get(url, headers=bearer(network.olga)).json()["rows"] == []
    refused = client.get(url + "?node_wide=true", headers=bearer(network.olga))
    assert refused.status_code == 403
    wide = client.get(url + "?node_wide=true&min_group_size=3&by_priority=false", headers=bearer(node_admin))
    assert wide.json()["rows"][0]["incidents"] == 3
    assert client.get(url + "?min_group_size=0", headers=bearer(network.carlos)).status_code == 422
    bad = client.get(
        url + "?since=2026-05-01T00:00:00Z&until=2026-04-01T00:00:00Z", headers=bearer(network.carlos)
    )
    assert bad.status_code == 400 and "end of the period" in bad.content.decode()


def test_the_page(client, network, three, node_admin, login_client, make_user):
    page = login_client(network.carlos).get("/incidents/metrics/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Incident metrics" in text and "<td>CL</td>" in text and "30m" in text  # median to acknowledge
    assert "Whole node" not in text
    empty = login_client(network.olga).get("/incidents/metrics/").content.decode()
    assert "No incident to measure." in empty and "<td>CL</td>" not in empty
    wide = login_client(node_admin).get("/incidents/metrics/?shown=1&node_wide=on&min_group_size=3")
    assert "<td>CL</td>" in wide.content.decode() and "1 group hidden" in wide.content.decode()
    reader = make_user("reader", network.cl, role="read_only")
    assert login_client(reader).get("/incidents/metrics/").status_code == 403
    assert "/incidents/metrics/" in login_client(network.carlos).get("/incidents/").content.decode()
