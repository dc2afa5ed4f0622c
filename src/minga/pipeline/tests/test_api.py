"""The pipeline's REST API: feeds for their owners, uploads and runs, events through the policy."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import Client

from minga.core.choices import Role
from minga.core.models import AuditEntry
from minga.pipeline.models import Event, Feed
from minga.pipeline.tests.helpers import HEADER, constituency, ingest, scan_feed

pytestmark = pytest.mark.django_db
API = "/api/v1/pipeline"


@pytest.fixture
def world(make_org, make_user, bearer):
    hub = make_org("hub")
    team = constituency(make_org("demo-a"), "192.0.2.0/25")
    other = constituency(make_org("demo-c"), "192.0.2.128/25")
    outsider_org = make_org("outsider")
    feed = scan_feed(hub)
    run = ingest(
        feed,
        HEADER
        + "2026-01-10T10:00:00Z,192.0.2.10,22,,,,scan\n"
        + "2026-01-10T11:00:00Z,192.0.2.200,22,,,,=cmd|' /C calc'!A0\n"
        + "2026-01-10T11:00:00Z,192.0.2.201,23,,,,bot\n"
        + "2026-01-10T12:00:00Z,203.0.113.5,22,,,,scan\n",
    )
    people = {
        "hub": make_user("hub-analyst", hub),
        "team": make_user("team-analyst", team),
        "other": make_user("other-analyst", other),
        "outsider": make_user("outsider-analyst", outsider_org),
        "admin": make_user("node-admin", outsider_org, Role.NODE_ADMIN),
    }
    return {"feed": feed, "run": run, "hub": hub, "team": team, **{k: bearer(u) for k, u in people.items()}}


def _get(world, who, url, **params):
    return Client().get(url, params, headers=world[who])


def test_each_organisation_reads_only_the_events_routed_to_it(world):
    def ips(who, **params):
        response = _get(world, who, f"{API}/events", **params)
        assert response.status_code == 200
        return sorted(e["source_ip"] for e in response.json())

    assert ips("hub") == ["192.0.2.10", "192.0.2.201", "203.0.113.5"]  # the owner: unrouted too
    assert ips("team") == ["192.0.2.10"]
    assert ips("other") == ["192.0.2.201"]
    assert ips("outsider") == [] and ips("admin") == []  # node admins manage, they do not read
    assert ips("outsider", organisation="demo-a") == []
    assert ips("hub", routed="false") == ["203.0.113.5"]
    assert ips("hub", organisation="demo-c") == ["192.0.2.201"]
    assert ips("hub", type="infected-system") == ["192.0.2.201"]
    assert ips("hub", ip="192.0.2.10", since="2026-01-10T09:00:00Z") == ["192.0.2.10"]
    counts = _get(world, "hub", f"{API}/events/counts").json()
    assert counts == {"total": 3, "by_type": {"scanner": 2, "infected-system": 1}}
    assert _get(world, "team", f"{API}/events/counts").json()["total"] == 1
    assert _get(world, "outsider", f"{API}/events/counts").json() == {"total": 0, "by_type": {}}
    event = _get(world, "team", f"{API}/events").json()[0]
    assert event["routed_to"] == ["demo-a"] and event["line"] == 2 and event["tlp"] == "amber"


def test_exports_hold_only_readable_events_neutralise_formulas_and_are_audited(world):
    response = _get(world, "team", f"{API}/events/export", format="csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["source_ip"] for r in rows] == ["192.0.2.10"]
    assert _get(world, "outsider", f"{API}/events/export", format="json").json() == []
    entries = AuditEntry.objects.filter(action="pipeline.events_exported")
    assert entries.count() == 2 and entries.order_by("seq").first().details["events"] == 1
    # A formula that reaches a cell is neutralised (here a country no one checks in exports).
    Event.objects.filter(source_ip="192.0.2.10").update(source_url='=HYPERLINK("http://x")')
    exported = _get(world, "hub", f"{API}/events/export", format="csv").content.decode()
    assert "'=HYPERLINK" in exported


def test_runs_and_dead_letters_are_the_feed_owners(world):
    run = world["run"]
    response = _get(world, "hub", f"{API}/runs/{run.uuid}")
    assert response.status_code == 200
    assert {k: response.json()[k] for k in ("read", "parsed", "invalid", "routed", "unrouted")} == {
        "read": 4, "parsed": 3, "invalid": 1, "routed": 2, "unrouted": 1,
    }  # fmt: skip
    dead = _get(world, "hub", f"{API}/runs/{run.uuid}/dead-letters").json()["items"]
    assert dead[0]["line"] == 3 and dead[0]["field"] == "classification_type"
    for who in ("team", "outsider", "admin"):
        assert _get(world, who, f"{API}/runs/{run.uuid}").status_code == 404
        assert _get(world, who, f"{API}/runs/{run.uuid}/dead-letters").status_code == 404
        assert _get(world, who, f"{API}/feeds/scan-report").status_code == 404
    assert _get(world, "team", f"{API}/feeds").json()["items"] == []


def test_an_owner_registers_changes_uploads_and_deletes_a_feed(world, django_capture_on_commit_callbacks):
    client = Client()
    body = {
        "name": "drones",
        "owner": "hub",
        "format": "jsonl",
        "default_tlp": "amber+strict",
        "classification_type": "infected-system",
        "dedup_window": 3600,
    }
    response = client.post(f"{API}/feeds", body, content_type="application/json", headers=world["hub"])
    assert response.status_code == 201, response.content
    assert response.json()["default_tlp"] == "amber+strict"
    refused = client.post(
        f"{API}/feeds", {**body, "name": "mine"}, content_type="application/json", headers=world["team"]
    )
    assert refused.status_code == 403
    bad = client.post(
        f"{API}/feeds",
        {**body, "name": "x", "mapping": {"colour": "c"}},
        content_type="application/json",
        headers=world["hub"],
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "mapping"
    red = client.post(
        f"{API}/feeds",
        {**body, "name": "y", "default_tlp": "red"},
        content_type="application/json",
        headers=world["hub"],
    )
    assert red.status_code == 422
    changed = client.patch(
        f"{API}/feeds/drones", {"retention_days": 30}, content_type="application/json", headers=world["hub"]
    )
    assert changed.status_code == 200 and changed.json()["retention_days"] == 30
    assert (
        client.patch(
            f"{API}/feeds/scan-report",
            {"retention_days": 30},
            content_type="application/json",
            headers=world["team"],
        ).status_code
        == 404
    )
    lines = '{"source.ip": "192.0.2.3", "time": "2026-01-10T10:00:00Z"}\nnot json\n'
    with django_capture_on_commit_callbacks(execute=True):
        uploaded = client.post(
            f"{API}/feeds/drones/runs?file_name=drones.jsonl",
            lines,
            content_type="application/x-ndjson",
            headers=world["hub"],
        )
    assert uploaded.status_code == 201, uploaded.content
    run = uploaded.json()
    assert run["status"] == "queued" and run["chunk_count"] == 1 and run["file_name"] == "drones.jsonl"
    from minga.pipeline import processing
    from minga.pipeline.models import Run

    processing.process_chunk(Run.objects.get(uuid=run["id"]).chunks.get().pk)
    status = client.get(f"{API}/runs/{run['id']}", headers=world["hub"]).json()
    assert (status["status"], status["parsed"], status["invalid"], status["routed"]) == ("done", 1, 1, 1)
    utf16 = client.post(
        f"{API}/feeds/drones/runs", "x\n".encode("utf-16"), content_type="text/csv", headers=world["hub"]
    )
    assert (
        utf16.status_code == 201
        and utf16.json()["status"] == "failed"
        and "UTF-16" in utf16.json()["message"]
    )
    empty = client.post(f"{API}/feeds/drones/runs", b"", content_type="text/csv", headers=world["hub"])
    assert empty.status_code == 400
    assert (
        client.post(
            f"{API}/feeds/scan-report/runs", "x", content_type="text/csv", headers=world["team"]
        ).status_code
        == 404
    )
    assert client.delete(f"{API}/feeds/drones", headers=world["hub"]).status_code == 204
    assert not Feed.objects.filter(name="drones").exists()
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {
        "pipeline.feed_registered",
        "pipeline.feed_changed",
        "pipeline.run_started",
        "pipeline.feed_deleted",
    } <= actions


def test_reprocess_through_the_api(world):
    client = Client()
    run = world["run"]
    assert client.post(f"{API}/runs/{run.uuid}/reprocess", headers=world["team"]).status_code == 404
    client.patch(
        f"{API}/feeds/scan-report",
        {"taxonomy_mapping": {"scan": "scanner", "bot": "infected-system", "=cmd|' /c calc'!a0": "test"}},
        content_type="application/json",
        headers=world["hub"],
    )
    result = client.post(f"{API}/runs/{run.uuid}/reprocess", headers=world["hub"]).json()
    assert result["stored"] == 1 and result["still_invalid"] == 0
    assert json.loads(client.get(f"{API}/runs/{run.uuid}", headers=world["hub"]).content)["invalid"] == 0


def test_rerun_through_the_api_is_the_owners(world, django_capture_on_commit_callbacks):
    client = Client()
    run = world["run"]
    assert client.post(f"{API}/runs/{run.uuid}/rerun", headers=world["team"]).status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{API}/runs/{run.uuid}/rerun", headers=world["hub"])
    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert not Event.objects.filter(run=run).exists()
    again = client.post(f"{API}/runs/{run.uuid}/rerun", headers=world["hub"])
    assert again.status_code == 400 and "still being processed" in again.json()["detail"]
    from minga.pipeline import services

    services.run_inline(run)
    assert Event.objects.filter(run=run).count() == 3


def test_a_stix_feed_registered_and_a_bundle_uploaded_through_the_api(
    world, django_capture_on_commit_callbacks
):
    client = Client()
    body = {"name": "stix-in", "owner": "hub", "format": "stix", "classification_type": "c2-server"}
    created = client.post(f"{API}/feeds", body, content_type="application/json", headers=world["hub"])
    assert created.status_code == 201 and created.json()["format"] == "stix"
    assert "source_url" in created.json()["dedup_fields"]
    bundle = {
        "type": "bundle",
        "id": "bundle--00000000-0000-4000-8000-000000000000",
        "objects": [
            {
                "type": "domain-name",
                "id": "domain-name--00000000-0000-4000-8000-000000000001",
                "value": "x.example",
            },
            {"type": "file", "id": "file--00000000-0000-4000-8000-000000000001", "name": "a.exe"},
        ],
    }
    with django_capture_on_commit_callbacks(execute=True):
        uploaded = client.post(
            f"{API}/feeds/stix-in/runs?file_name=b.json",
            json.dumps(bundle),
            content_type="application/json",
            headers=world["hub"],
        )
    assert uploaded.status_code == 201, uploaded.content
    from minga.pipeline import services
    from minga.pipeline.models import Run

    run = services.run_inline(Run.objects.get(feed__name="stix-in"))
    assert (run.read, run.parsed, run.invalid) == (2, 1, 1)
    letters = client.get(f"{API}/runs/{run.uuid}/dead-letters", headers=world["hub"]).json()
    assert letters["items"][0]["field"] == "type" and "file" in letters["items"][0]["reason"]
    assert client.get(f"{API}/runs/{run.uuid}/dead-letters", headers=world["team"]).status_code == 404
    garbage = client.post(
        f"{API}/feeds/stix-in/runs", b"\x00\x01garbage", content_type="application/json", headers=world["hub"]
    )
    assert garbage.status_code == 201 and garbage.json()["status"] == "failed"
    assert "not valid JSON" in garbage.json()["message"]


def test_a_taxii_feed_token_is_write_only(world):
    client = Client()
    body = {
        "name": "peer-feed",
        "owner": "hub",
        "format": "stix",
        "source": "taxii",
        "url": "https://taxii.example/api1/collections/c1/",
        "token": "very-secret",
    }
    created = client.post(f"{API}/feeds", body, content_type="application/json", headers=world["hub"])
    assert created.status_code == 201, created.content
    assert created.json()["has_token"] is True and "very-secret" not in created.content.decode()
    shown = client.get(f"{API}/feeds/peer-feed", headers=world["hub"])
    assert shown.json()["source"] == "taxii" and "very-secret" not in shown.content.decode()
    assert client.get(f"{API}/feeds/peer-feed", headers=world["team"]).status_code == 404
    entry = AuditEntry.objects.filter(action="pipeline.feed_registered").latest("pk")
    assert entry.details["token"] == "set" and "very-secret" not in json.dumps(entry.details)
    cleared = client.patch(
        f"{API}/feeds/peer-feed", {"token": ""}, content_type="application/json", headers=world["hub"]
    )
    assert cleared.json()["has_token"] is False
    wrong = client.patch(
        f"{API}/feeds/peer-feed", {"format": "csv"}, content_type="application/json", headers=world["hub"]
    )
    assert wrong.status_code == 400 and "TAXII collection gives STIX objects" in wrong.content.decode()
