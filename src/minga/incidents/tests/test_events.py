"""Incidents and feed events: opened from a set of events, events linked, only readable ones."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from minga.core.choices import TLP
from minga.core.testing import assert_invisible_to
from minga.incidents import queries, services
from minga.pipeline import services as pipeline
from minga.pipeline.models import Event

pytestmark = pytest.mark.django_db


def _events(owner, rows: str, name: str) -> list[int]:
    feed = pipeline.register_feed(
        None,
        owner,
        name=name,
        mapping={"source_ip": "ip"},
        classification_type="c2-server",
        default_tlp=TLP.AMBER,
    )
    run = pipeline.start_run(None, feed, [f"ip\n{rows}".encode()], "f.csv", queue=False)
    pipeline.run_inline(run)
    return sorted(Event.objects.filter(feed=feed).values_list("pk", flat=True))


def test_an_incident_opened_from_feed_events_through_the_api(client, network, bearer):
    ours = _events(network.pe, "198.18.5.20\n198.18.8.9\n198.18.5.20\n", "pe-sensors")
    theirs = _events(network.outsider, "198.18.4.4\n", "mx-sensors")
    ana = bearer(network.ana)
    refused = client.post(
        "/api/v1/incidents/from-events",
        json.dumps({"events": ours + theirs}),
        content_type="application/json",
        headers=ana,
    )
    assert refused.status_code == 400 and str(theirs[0]) in refused.json()["detail"]
    opened = client.post(
        "/api/v1/incidents/from-events",
        json.dumps({"events": ours}),
        content_type="application/json",
        headers=ana,
    )
    assert opened.status_code == 201, opened.content
    body = opened.json()
    assert body["type"] == "c2-server" and body["taxonomy"] == "malicious-code"
    assert {o["value"] for o in body["observables"]} == {"198.18.5.20", "198.18.8.9"}
    assert sorted(e["id"] for e in body["linked_events"]) == ours
    incident = services.propose_participants(network.ana, queries.get_or_404(network.ana, body["reference"]))
    assert {p.organisation for p in incident} == {network.hospital, network.cl, network.br}


def test_linked_events_are_shown_only_to_who_may_read_them(open_incident, network, login_client):
    ours = _events(network.pe, "198.18.5.20\n", "pe-sensors")
    incident = open_incident()
    with pytest.raises(ValidationError):
        services.link_events(network.ana, incident, [10**12])
    services.link_events(network.ana, incident, ours)
    services.link_events(network.ana, incident, ours)  # again: nothing twice
    assert incident.event_links.count() == 1
    services.add_participant(network.ana, incident, network.cl)
    # Carlos reads the incident, but the AMBER event is the feed owner's (and the organisations
    # it was routed to): routed to Chile's hospital network, not to CSIRT Chile.
    assert [e.pk for e in queries.linked_events(network.ana, incident)] == ours
    page = login_client(network.carlos).get(f"/incidents/{incident.reference}/").content.decode()
    assert "198.18.5.20" not in page.split("Linked feed events")[1].split("Timeline")[0]
    assert_invisible_to(network.olga, incident, urls=[f"/incidents/{incident.reference}/"])
    survivor = open_incident()
    services.merge_incident(network.ana, incident, survivor)
    assert list(survivor.event_links.values_list("event_id", flat=True)) == ours
