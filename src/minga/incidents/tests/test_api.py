"""The REST API of incidents: a duty officer's story, and the outsider who sees nothing."""

from __future__ import annotations

import json

import pytest
from stix2validator import ValidationOptions, validate_string

from minga.core.testing import assert_invisible_to
from minga.incidents.models import Incident

pytestmark = pytest.mark.django_db

BASE = "/api/v1/incidents/"


def post(client, url, headers, body):
    return client.post(url, json.dumps(body), content_type="application/json", headers=headers)


def test_a_cross_border_incident_through_the_api(client, network, bearer):
    ana, carlos = bearer(network.ana), bearer(network.carlos)
    created = post(
        client,
        BASE,
        ana,
        {
            "title": "Ransomware at a hospital",
            "type": "system-compromise",
            "severity": "critical",
            "tlp": "amber",
            "pap": "green",
            "affected_states": ["CL"],
            "affected_organisations": [network.hospital.short_name],
            "observables": ["198.18.5.20", "c2.br.demo.example"],
        },
    )
    assert created.status_code == 201, created.content
    incident = created.json()
    ref = incident["reference"]
    assert incident["taxonomy"] == "intrusions" and incident["reporter"] == network.pe.short_name
    assert {o["value"] for o in incident["observables"]} == {"198.18.5.20", "c2.br.demo.example"}

    proposed = post(client, f"{BASE}{ref}/propose", ana, {})
    assert proposed.status_code == 200
    assert {p["organisation"] for p in proposed.json()} == {
        network.hospital.short_name,
        network.cl.short_name,
        network.br.short_name,
    }
    assert client.get(f"{BASE}{ref}", headers=carlos).status_code == 404  # proposed only
    added = post(client, f"{BASE}{ref}/participants", ana, {"organisation": network.cl.short_name})
    assert added.status_code == 201 and added.json()["status"] == "added"
    assert client.get(f"{BASE}{ref}", headers=carlos).status_code == 200
    ack = post(client, f"{BASE}{ref}/acknowledge", carlos, {})
    assert ack.status_code == 200 and ack.json()["time_to_acknowledge_seconds"] >= 0
    assert post(client, f"{BASE}{ref}/comments", carlos, {"text": "Seen here too"}).status_code == 201
    task = post(
        client,
        f"{BASE}{ref}/tasks",
        ana,
        {
            "title": "Sinkhole the domain",
            "organisation": network.cl.short_name,
            "due_at": "2026-12-01T12:00:00Z",
        },
    )
    assert task.status_code == 201
    done = post(client, f"{BASE}{ref}/tasks/{task.json()['id']}/status", carlos, {"status": "done"})
    assert done.status_code == 200 and done.json()["status"] == "done"
    moved = post(client, f"{BASE}{ref}/status", ana, {"status": "resolved"})
    assert moved.status_code == 400 and "reason" in moved.json()["detail"]
    assert post(client, f"{BASE}{ref}/status", ana, {"status": "triage"}).status_code == 200
    assert post(client, f"{BASE}{ref}/status", carlos, {"status": "in_progress"}).status_code == 403
    timeline = client.get(f"{BASE}{ref}/timeline", headers=carlos).json()["items"]
    assert [e["kind"] for e in timeline][:2] == ["opened", "observable"]
    assert any(e["kind"] == "comment" and e["organisation"] == network.cl.short_name for e in timeline)
    patched = client.patch(
        f"{BASE}{ref}", json.dumps({"severity": "high"}), content_type="application/json", headers=ana
    )
    assert patched.status_code == 200 and patched.json()["severity"] == "high"
    listed = client.get(BASE + "?severity=high&state=CL", headers=carlos).json()
    assert [i["reference"] for i in listed["items"]] == [ref]
    notes = client.get(f"{BASE}notifications", headers=carlos).json()["items"]
    assert notes and notes[0]["incident"] == ref
    bundle = client.get(f"{BASE}{ref}/stix", headers=carlos)
    assert bundle.status_code == 200 and bundle["Content-Type"].startswith("application/stix+json")
    assert validate_string(bundle.content.decode(), ValidationOptions()).is_valid


def test_bad_requests_get_clear_answers(client, network, bearer, open_incident):
    ana = bearer(network.ana)
    incident = open_incident()
    ref = incident.reference
    wrong = post(client, BASE, ana, {"title": "x", "type": "phishing", "taxonomy": "availability"})
    assert wrong.status_code == 400 and "fraud" in wrong.json()["detail"]
    unknown = post(client, f"{BASE}{ref}/participants", ana, {"organisation": "nobody"})
    assert unknown.status_code == 400 and "nobody" in unknown.json()["detail"]
    bad = post(client, f"{BASE}{ref}/observables", ana, {"values": ["not an address!"]})
    assert bad.status_code == 400 and "Value 1" in bad.json()["detail"]
    assert post(client, f"{BASE}{ref}/merge", ana, {"survivor": "MNG-2020-000999"}).status_code == 400
    assert client.get(f"{BASE}MNG-2020-000999", headers=ana).status_code == 404
    assert client.get(f"{BASE}not-a-reference", headers=ana).status_code == 422
    due = post(
        client, f"{BASE}{ref}/tasks", ana, {"title": "x", "organisation": network.pe.short_name, "due_at": 5}
    )
    assert due.status_code == 422


def test_an_organisation_outside_the_participants_sees_nothing(network, bearer, open_incident):
    incident = open_incident(tlp="amber")
    from minga.incidents import services

    services.add_participant(network.ana, incident, network.cl)
    services.comment(network.carlos, incident, "inside")
    ref = incident.reference
    urls = [
        BASE,
        f"{BASE}{ref}",
        f"{BASE}{ref}/timeline",
        f"{BASE}{ref}/stix",
        f"{BASE}notifications",
        f"{BASE}?q={ref}",
    ]
    assert_invisible_to(network.olga, incident, urls=urls, headers=bearer(network.olga))
    assert_invisible_to(network.olga, incident, urls=urls)  # the browser session too
    assert Incident.objects.visible_to(network.carlos).filter(pk=incident.pk).exists()
