"""The demo feed, and the retention purge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from minga.core import demo as core_demo
from minga.core.models import AuditEntry, User
from minga.directory import demo as directory_demo
from minga.pipeline import demo, services
from minga.pipeline.models import DeadLetter, Event, EventRecipient, Feed, Run
from minga.pipeline.tests.helpers import HEADER, ingest, scan_feed

pytestmark = pytest.mark.django_db


def test_the_demo_feed_routes_to_demo_organisations_and_loads_once(monkeypatch):
    monkeypatch.setenv("MINGA_DEMO_PASSWORD", "demo-password-for-the-test-suite-only")
    core_demo.load()
    directory_demo.load()
    demo.load()
    demo.load()
    run = Run.objects.get()
    assert run.feed.name == "demo-scan-report" and run.feed.owner.short_name == "demo-hub"
    assert run.routed >= 10 and run.unrouted == 1 and run.invalid == 2
    assert DeadLetter.objects.count() == 2
    routed_to = set(EventRecipient.objects.values_list("organisation__short_name", flat=True))
    assert routed_to and all(name.startswith("demo-") for name in routed_to)
    # Documentation and benchmark ranges only.
    assert all(
        ip.startswith(("198.18.", "198.19.", "203.0.113."))
        for ip in Event.objects.values_list("source_ip", flat=True)
    )
    coordinator = User.objects.get(username="demo-coordinator")  # the hub: every event of its feed
    assert Event.objects.visible_to(coordinator).count() == run.routed + run.unrouted
    operator = User.objects.get(username="demo-operator")
    readable = Event.objects.visible_to(operator)
    assert set(readable.values_list("pk", flat=True)) == set(
        EventRecipient.objects.filter(organisation__short_name="demo-grid-norte").values_list(
            "event_id", flat=True
        )
    )


def test_events_past_their_feeds_retention_are_purged_and_audited(make_org):
    hub = make_org("hub")
    short = scan_feed(hub, name="short", retention_days=30)
    long = scan_feed(hub, name="long")
    now = timezone.now()
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    body = HEADER + "".join(
        f"{moment:%Y-%m-%dT%H:%M:%SZ},192.0.2.{n},22,,,,scan\n"
        for n, moment in enumerate((old, recent, old), 1)
    )
    ingest(short, body)
    ingest(long, body)
    purged = services.purge_expired()
    assert purged == {"short": 2}
    assert Event.objects.filter(feed=short).count() == 1 and Event.objects.filter(feed=long).count() == 3
    entry = AuditEntry.objects.get(action="pipeline.events_purged")
    assert entry.details["events"] == 2 and entry.details["retention_days"] == 30
    assert services.purge_expired() == {}
    assert AuditEntry.objects.filter(action="pipeline.events_purged").count() == 1


def test_the_purge_and_the_resumption_are_periodic_jobs():
    from minga.core import schedule

    names = {job.name for job in schedule.jobs()}
    assert {"pipeline.purge_expired_events", "pipeline.resume_stalled_chunks"} <= names
    assert Feed._meta.get_field("retention_days").default == 365
