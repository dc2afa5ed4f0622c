"""The pipeline's pages: feeds, uploads, a run's counts and dead letters, events by the policy."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from minga.core.models import AuditEntry, Organisation
from minga.pipeline.models import Event, Feed, Run
from minga.pipeline.tests.helpers import HEADER, constituency, ingest, scan_feed

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(make_org, make_user, login_client):
    hub = make_org("hub")
    team = constituency(make_org("demo-a"), "192.0.2.0/25")
    other = constituency(make_org("demo-c"), "192.0.2.128/25")
    feed = scan_feed(hub)
    run = ingest(
        feed,
        HEADER
        + "2026-01-10T10:00:00Z,192.0.2.10,22,,,,scan\n"
        + '2026-01-10T11:00:00Z,192.0.2.200,22,,,,=HYPERLINK("http://evil")\n'
        + "2026-01-10T11:00:00Z,192.0.2.201,23,,,,bot\n"
        + "2026-01-10T12:00:00Z,203.0.113.5,22,,,,scan\n",
    )
    return {
        "feed": feed,
        "run": run,
        "hub": login_client(make_user("hub-analyst", hub)),
        "team": login_client(make_user("team-analyst", team)),
        "other": login_client(make_user("other-analyst", other)),
        "outsider": login_client(make_user("outsider", make_org("outsider"))),
    }


def test_the_events_page_shows_each_organisation_its_own(world):
    def shown(who, query=""):
        page = world[who].get(f"/pipeline/{query}")
        assert page.status_code == 200
        return page.content.decode()

    hub, team, other, outsider = shown("hub"), shown("team"), shown("other"), shown("outsider")
    assert all(ip in hub for ip in ("192.0.2.10", "192.0.2.201", "203.0.113.5")) and "3 events" in hub
    assert "192.0.2.10" in team and "192.0.2.201" not in team and "203.0.113.5" not in team
    assert "192.0.2.201" in other and "192.0.2.10" not in other
    assert "0 events" in outsider and "192.0.2" not in outsider
    filtered = shown("hub", "?routed=no")
    assert "203.0.113.5" in filtered and "192.0.2.10" not in filtered
    assert "scanner</code> 1" in shown("hub", "?organisation=demo-a")
    assert "0 events" in shown("outsider", "?organisation=demo-a&ip=192.0.2.10")
    assert shown("hub", "?ip=not-an-ip&since=2026-13-45&type=nonsense")  # ignored, not an error page


def test_exports_hold_what_the_page_shows_neutralised_and_audited(world):
    response = world["team"].get("/pipeline/events.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["source_ip"] for r in rows] == ["192.0.2.10"] and rows[0]["routed_to"] == "demo-a"
    assert world["outsider"].get("/pipeline/events.json").json() == []
    assert world["hub"].get("/pipeline/events.xml").status_code == 404
    assert AuditEntry.objects.filter(action="pipeline.events_exported").count() == 2


def test_a_run_page_shows_counts_and_dead_letters_to_the_owner_only(world):
    run = world["run"]
    page = world["hub"].get(f"/pipeline/runs/{run.uuid}/").content.decode()
    assert (
        "HYPERLINK" in page
        and "classification_type" in page
        and "<script" not in page.split("</head>")[1].lower()[:0]
    )
    for who in ("team", "outsider"):
        assert world[who].get(f"/pipeline/runs/{run.uuid}/").status_code == 404
        assert world[who].get("/pipeline/feeds/scan-report/").status_code == 404
        assert world[who].post(f"/pipeline/runs/{run.uuid}/reprocess/").status_code == 404
        assert world[who].post(f"/pipeline/runs/{run.uuid}/rerun/").status_code == 404
    assert "Process the whole file again" in page
    assert world["hub"].post(f"/pipeline/runs/{run.uuid}/rerun/").status_code == 302
    run.refresh_from_db()
    assert run.status == "queued" and not Event.objects.filter(run=run).exists()


def test_an_analyst_registers_a_feed_uploads_a_file_and_reprocesses(
    world, django_capture_on_commit_callbacks
):
    client = world["hub"]
    form = client.get("/pipeline/feeds/new/")
    assert form.status_code == 200
    response = client.post(
        "/pipeline/feeds/new/",
        {
            "name": "phish",
            "owner": Feed.objects.get(name="scan-report").owner_id,
            "format": "csv",
            "encoding": "utf-8",
            "has_header": "on",
            "delimiter": ",",
            "quotechar": '"',
            "mapping": '{"source_url": "url"}',
            "default_tlp": "amber",
            "classification_type": "phishing",
            "taxonomy_mapping": "",
            "dedup_window": "86400",
            "dedup_key": "source_url",
            "retention_days": "90",
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    feed = Feed.objects.get(name="phish")
    assert feed.dedup_fields == ["source_url"] and feed.retention_days == 90
    bad = client.post("/pipeline/feeds/new/", {"name": "x", "mapping": "[1]"})
    assert bad.status_code == 200 and "JSON object" in bad.content.decode()
    upload = SimpleUploadedFile("phish.csv", b"url\nhttp://login.bank.example/x\nnot a url\n")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/pipeline/feeds/phish/", {"file": upload})
    assert response.status_code == 302
    run = Run.objects.get(feed=feed)
    from minga.pipeline import services

    services.run_inline(run)
    page = client.get(response["Location"]).content.decode()
    assert "not a URL" in page
    edited = client.post(
        "/pipeline/feeds/phish/edit/",
        {
            "format": "csv",
            "encoding": "utf-8",
            "has_header": "on",
            "delimiter": ",",
            "quotechar": '"',
            "mapping": '{"source_fqdn": "url"}',
            "default_tlp": "amber",
            "classification_type": "phishing",
            "dedup_window": "86400",
            "dedup_key": "source_fqdn",
            "retention_days": "90",
        },
    )
    assert edited.status_code == 302, edited.content.decode()[-1500:]
    assert world["team"].post("/pipeline/feeds/phish/edit/", {}).status_code == 404
    client.post(f"/pipeline/runs/{run.uuid}/reprocess/")
    assert Event.objects.filter(feed=feed).count() == 1  # "not a url" is still not a domain
    run.refresh_from_db()
    assert run.invalid == 1


def test_a_feed_pulled_from_a_url_is_registered_on_its_page_with_its_pull_state(world):
    client = world["hub"]
    owner = Feed.objects.get(name="scan-report").owner_id
    base = {
        "name": "remote",
        "owner": owner,
        "format": "stix",
        "encoding": "utf-8",
        "delimiter": ",",
        "quotechar": '"',
        "default_tlp": "amber",
        "classification_type": "c2-server",
        "dedup_window": "86400",
        "dedup_key": "source_ip, source_fqdn, source_url",
        "retention_days": "90",
        "is_active": "on",
        "source": "url",
        "pull_every": "600",
    }
    refused = client.post("/pipeline/feeds/new/", {**base, "url": "ftp://feeds.example/x.json"})
    assert refused.status_code == 200 and "http:// or https://" in refused.content.decode()
    response = client.post("/pipeline/feeds/new/", {**base, "url": "https://feeds.example/c2.json"})
    assert response.status_code == 302, response.content.decode()[-2000:]
    feed = Feed.objects.get(name="remote")
    assert (feed.format, feed.source, feed.url, feed.pull_every) == (
        "stix",
        "url",
        "https://feeds.example/c2.json",
        600,
    )
    Feed.objects.filter(pk=feed.pk).update(
        last_error="https://feeds.example/c2.json answered 500", failures=2
    )
    page = client.get("/pipeline/feeds/remote/").content.decode()
    assert (
        "answered 500" in page and "2 failures in a row" in page and "https://feeds.example/c2.json" in page
    )
    assert world["outsider"].get("/pipeline/feeds/remote/").status_code == 404


def test_unrouted_events_are_the_node_teams_only(world, make_user, login_client):
    """The events no organisation's constituency matched stay with the feed's owner, the node's
    team: its analysts find them with the Unrouted filter; nobody else sees them, whatever the
    filter (a node admin of another organisation included: admins manage the node, not content)."""
    hub_page = world["hub"].get("/pipeline/?routed=no").content.decode()
    assert "203.0.113.5" in hub_page and "1 event" in hub_page
    for who in ("team", "other", "outsider"):
        page = world[who].get("/pipeline/?routed=no").content.decode()
        assert "0 events" in page and "203.0.113.5" not in page
        assert "203.0.113.5" not in world[who].get("/pipeline/events.csv?routed=no").content.decode()
    admin = login_client(
        make_user("node-admin", Organisation.objects.get(short_name="outsider"), "node_admin")
    )
    assert "203.0.113.5" not in admin.get("/pipeline/?routed=no").content.decode()


def test_an_organisation_filter_that_names_no_organisation_shows_nothing_and_says_so(world):
    """As the API answers 404: an unknown organisation is not silently dropped from the filter
    (which would list every event the reader may see under a filter that reads as narrower)."""
    page = world["hub"].get("/pipeline/?organisation=no-such-team").content.decode()
    assert "No organisation has this short name." in page
    assert "0 events" in page and "203.0.113.5" not in page
    assert world["hub"].get("/pipeline/events.csv?organisation=no-such-team").status_code == 404
    assert "203.0.113.5" in world["hub"].get("/pipeline/?routed=no").content.decode()
