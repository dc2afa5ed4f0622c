"""Digests by e-mail: the events routed to an organisation since its last digest, a CSV attached,
sent through a real SMTP server (aiosmtpd), the window moved only after the server accepted it."""

from __future__ import annotations

import csv
import io
import socket
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import F
from django.utils import timezone

from minga.core.choices import Role
from minga.core.models import AuditEntry
from minga.directory import services as directory
from minga.pipeline import digests, queries, services, tasks
from minga.pipeline.models import Chunk, Digest, Event, Run
from minga.pipeline.services import start_run
from minga.pipeline.tests.helpers import HEADER, constituency, ingest, scan_feed

pytestmark = pytest.mark.django_db

LINES = (
    "2026-01-10T10:00:00Z,192.0.2.10,22,,,,scan\n"
    + "2026-01-10T10:30:00Z,192.0.2.11,23,,,,scan\n"
    + "2026-01-10T11:00:00Z,192.0.2.12,80,,,,bot\n"
    + "2026-01-10T11:00:00Z,192.0.2.200,22,,,,bot\n"  # another organisation's
    + "2026-01-10T12:00:00Z,203.0.113.5,22,,,,scan\n"  # unrouted
)


@pytest.fixture
def world(make_org, make_user):
    hub = make_org("hub")
    team = constituency(make_org("demo-a"), "192.0.2.0/25")
    other = constituency(make_org("demo-c"), "192.0.2.128/25")
    directory.save_contact(None, team, role="duty", name="Duty desk", email="duty@demo-a.example")
    directory.save_contact(None, team, role="technical", name="Tech", email="tech@demo-a.example")
    directory.save_contact(None, other, role="duty", name="Other duty", email="duty@demo-c.example")
    return {
        "hub": hub,
        "team": team,
        "other": other,
        "feed": scan_feed(hub),
        "admin": make_user("team-admin", team, role=Role.ORG_ADMIN),
        "analyst": make_user("team-analyst", team),
    }


def elapse(hours: float) -> None:
    """Let time pass: every time stored by events, chunks and digests moves back."""
    delta = timedelta(hours=hours)
    Event.objects.update(created_at=F("created_at") - delta)
    Chunk.objects.update(started_at=F("started_at") - delta)
    Digest.objects.update(
        window_end=F("window_end") - delta,
        pending_end=F("pending_end") - delta,
        next_attempt_at=F("next_attempt_at") - delta,
        claimed_until=F("claimed_until") - delta,
        created_at=F("created_at") - delta,
    )


def run_due(hours: float = 0) -> list[str]:
    elapse(hours)
    now = timezone.now()
    return [digests.send(pk, token, now=now) for pk, token in digests.claim_due(now)]


def parse(envelope: Any) -> Message:
    return message_from_bytes(envelope.content)


def attachment(message: Message) -> tuple[str, list[dict[str, str]]]:
    for part in message.walk():
        if part.get_filename():
            data = part.get_payload(decode=True)
            return part.get_filename(), list(csv.DictReader(io.StringIO(data.decode())))
    raise AssertionError("no attachment")


def body(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.get_filename():
            return part.get_payload(decode=True).decode()
    raise AssertionError("no body")


def test_a_daily_digest_mails_the_organisations_events_as_csv_and_moves_the_window(world, smtp_server):
    digest, secret = digests.create_digest(world["admin"], world["team"], schedule="daily")
    assert secret == "" and digest.recipients == []
    ingest(world["feed"], HEADER + LINES)
    assert digests.claim_due(timezone.now()) == []  # a day has not passed
    results = run_due(25)
    assert results == [f"digest {digest.pk}: sent 3 events"]
    assert len(smtp_server) == 1
    envelope = smtp_server[0]
    assert envelope.rcpt_tos == ["duty@demo-a.example"]  # the 24/7 duty contact, not the others
    message = parse(envelope)
    assert "3 events" in message["Subject"]
    name, rows = attachment(message)
    assert name.startswith("events-demo-a-") and name.endswith(".csv")
    assert sorted(r["source_ip"] for r in rows) == ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
    assert all(r["routed_to"] == "demo-a" for r in rows)
    assert "192.0.2.200" not in envelope.content.decode() and "203.0.113.5" not in envelope.content.decode()
    text = body(message)
    assert "scanner (Scanning): 2" in text and "infected-system (Infected system): 1" in text
    digest.refresh_from_db()
    assert digest.window_end <= timezone.now() and digest.pending_end is None and digest.claim == ""
    assert digest.last_count == 3 and digest.failures == 0
    entry = AuditEntry.objects.filter(action="pipeline.digest_sent").get()
    assert entry.details["events"] == 3 and entry.details["recipients"] == ["duty@demo-a.example"]

    # The next window holds only what arrived since: nothing twice.
    ingest(world["feed"], HEADER + "2026-01-11T10:00:00Z,192.0.2.20,443,,,,scan\n", name="next.csv")
    assert run_due(5) == []  # the window moved: not due for another day
    assert run_due(20) == [f"digest {digest.pk}: sent 1 events"]
    _, rows = attachment(parse(smtp_server[1]))
    assert [r["source_ip"] for r in rows] == ["192.0.2.20"]


def test_the_attachment_is_the_exports_csv_with_formulas_neutralised(world, smtp_server):
    digests.create_digest(world["admin"], world["team"], schedule="hourly", recipients="soc@demo-a.example")
    ingest(world["feed"], HEADER + LINES)
    assert len(run_due(2)) == 1
    envelope = smtp_server[0]
    assert envelope.rcpt_tos == ["soc@demo-a.example"]  # explicit addresses replace the duty desk
    part = next(p for p in parse(envelope).walk() if p.get_filename())
    events = Event.objects.filter(source_ip__in=["192.0.2.10", "192.0.2.11", "192.0.2.12"]).order_by("id")
    attached = part.get_payload(decode=True).replace(b"\r\n", b"\n")  # text parts travel with CRLF
    assert attached == services.events_csv(queries.export_rows(events))
    # The same writer as the exports: a cell a spreadsheet would run is kept as text.
    row = {**queries.export_rows(events[:1])[0], "source_url": '=HYPERLINK("http://evil")'}
    written = list(csv.DictReader(io.StringIO(services.events_csv([row]).decode())))
    assert written[0]["source_url"] == '\'=HYPERLINK("http://evil")'


def test_smtp_down_retries_later_and_loses_nothing(world, settings, smtp_server):
    digest, _ = digests.create_digest(world["admin"], world["team"], schedule="hourly")
    ingest(world["feed"], HEADER + LINES)
    working_port = settings.EMAIL_PORT
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        settings.EMAIL_PORT = probe.getsockname()[1]
    [result] = run_due(2)
    first = timezone.now()
    assert result.startswith(f"digest {digest.pk}: failed")
    digest.refresh_from_db()
    start = digest.window_end
    assert digest.failures == 1 and first < digest.next_attempt_at <= first + timedelta(seconds=61)
    assert digest.pending_end is not None and digest.claim == "" and "refused" in digest.last_error
    assert AuditEntry.objects.filter(action="pipeline.digest_failed").count() == 1
    assert run_due(30 / 3600) == []  # backing off
    # More events arrive meanwhile: they wait for the next window, the retry sends the same one.
    ingest(world["feed"], HEADER + "2026-01-11T10:00:00Z,192.0.2.21,443,,,,scan\n", name="meanwhile.csv")
    settings.EMAIL_PORT = working_port
    assert run_due(31 / 3600) == [f"digest {digest.pk}: sent 3 events"]
    digest.refresh_from_db()
    assert digest.window_end > start and digest.failures == 0 and digest.next_attempt_at is None
    assert run_due(1) == [f"digest {digest.pk}: sent 1 events"]
    sent = [sorted(r["source_ip"] for r in attachment(parse(e))[1]) for e in smtp_server]
    assert sent == [["192.0.2.10", "192.0.2.11", "192.0.2.12"], ["192.0.2.21"]]


def test_another_organisations_events_are_never_in_a_digest(world, smtp_server):
    digests.create_digest(None, world["other"], schedule="daily")
    digests.create_digest(None, world["team"], schedule="daily")
    ingest(world["feed"], HEADER + LINES)
    assert len(run_due(25)) == 2
    by_rcpt = {tuple(e.rcpt_tos): e for e in smtp_server}
    _, other_rows = attachment(parse(by_rcpt[("duty@demo-c.example",)]))
    _, team_rows = attachment(parse(by_rcpt[("duty@demo-a.example",)]))
    assert [r["source_ip"] for r in other_rows] == ["192.0.2.200"]
    assert "192.0.2.200" not in [r["source_ip"] for r in team_rows]
    # The owner's unrouted event goes to no organisation's digest.
    assert all("203.0.113.5" not in e.content.decode() for e in smtp_server)
    since, until = timezone.now() - timedelta(days=2), timezone.now()
    assert digests.events_for(world["team"], since, until).count() == 3
    assert digests.events_for(world["hub"], since, until).count() == 0


def test_an_empty_window_sends_nothing_unless_asked(world, smtp_server):
    quiet, _ = digests.create_digest(None, world["team"], schedule="weekly")
    told, _ = digests.create_digest(
        None, world["team"], schedule="weekly", send_empty=True, recipients=["a@b.example"]
    )
    results = run_due(24 * 8)
    assert sorted(results) == sorted([f"digest {quiet.pk}: no events", f"digest {told.pk}: sent 0 events"])
    assert len(smtp_server) == 1 and smtp_server[0].rcpt_tos == ["a@b.example"]
    message = parse(smtp_server[0])
    assert "no events" in message["Subject"] and "No events were routed" in body(message)
    assert not any(p.get_filename() for p in message.walk())
    quiet.refresh_from_db()
    assert quiet.window_end > timezone.now() - timedelta(minutes=1) and quiet.last_sent_at is None
    assert AuditEntry.objects.filter(action="pipeline.digest_sent").count() == 1


def test_a_claim_is_taken_once_and_a_stale_token_sends_nothing(world, smtp_server):
    digests.create_digest(None, world["team"], schedule="hourly")
    ingest(world["feed"], HEADER + LINES)
    elapse(2)
    now = timezone.now()
    [(pk, token)] = digests.claim_due(now)
    assert digests.claim_due(now) == []  # a second worker finds it claimed
    assert digests.send(pk, "not-the-token", now=now).endswith("not claimed with this token (any more)")
    assert digests.send(pk, token, now=now) == f"digest {pk}: sent 3 events"
    assert digests.send(pk, token, now=now).endswith("(any more)")  # a repeated task
    assert len(smtp_server) == 1


def test_events_of_a_chunk_still_being_written_wait_for_the_next_window(world, smtp_server):
    digest, _ = digests.create_digest(None, world["team"], schedule="hourly")
    ingest(world["feed"], HEADER + LINES)
    # Another file's chunk started writing before those events were stored and has not committed:
    # its events will be stored with earlier times, so the window may not end after its start.
    pending = start_run(
        None, world["feed"], [(HEADER + LINES).encode()], "pending.csv", source="cli", queue=False
    )
    started = digest.window_end + timedelta(microseconds=1)
    Chunk.objects.filter(run=pending).update(started_at=started)
    Run.objects.filter(pk=pending.pk).update(status="running")
    elapse(2)
    started -= timedelta(hours=2)
    assert digests.settled_until(timezone.now()) == started
    assert run_due() == [f"digest {digest.pk}: no events"]
    digest.refresh_from_db()
    assert digest.window_end == started and not smtp_server
    Run.objects.filter(pk=pending.pk).update(status="done")  # written: the window may pass it
    Chunk.objects.filter(run=pending).update(done=True)
    assert run_due(1) == [f"digest {digest.pk}: sent 3 events"]


def test_the_periodic_job_queues_one_task_per_due_digest(world, smtp_server):
    from django_tasks_db.models import DBTaskResult

    from minga.core import schedule

    assert "pipeline.queue_digests" in {job.name for job in schedule.jobs()}
    digest, _ = digests.create_digest(None, world["team"], schedule="hourly")
    digests.create_digest(None, world["other"], schedule="daily")  # not due
    ingest(world["feed"], HEADER + LINES)
    elapse(2)
    assert tasks.queue_digests.call() == "queued 1 digests"
    assert tasks.queue_digests.call() == "queued 0 digests"  # claimed
    queued = DBTaskResult.objects.get(task_path=tasks.send_digest.module_path)
    assert queued.args_kwargs["args"][0] == digest.pk
    assert tasks.send_digest.call(*queued.args_kwargs["args"]) == f"digest {digest.pk}: sent 3 events"
    assert len(smtp_server) == 1


def test_only_the_organisations_admins_manage_its_digests(world, make_user):
    with pytest.raises(PermissionDenied):
        digests.create_digest(world["analyst"], world["team"])
    outsider = make_user("other-admin", world["other"], role=Role.ORG_ADMIN)
    with pytest.raises(PermissionDenied):
        digests.create_digest(outsider, world["team"])
    digest, _ = digests.create_digest(world["admin"], world["team"])
    assert list(digests.digests_visible_to(world["admin"])) == [digest]
    assert list(digests.digests_visible_to(outsider)) == []
    assert list(digests.digests_visible_to(world["analyst"])) == []
    with pytest.raises(PermissionDenied):
        digests.change_digest(outsider, digest, schedule="hourly")
    with pytest.raises(ValidationError):
        digests.create_digest(world["admin"], world["team"], recipients=["not an address"])
    with pytest.raises(ValidationError):
        digests.create_digest(world["admin"], world["team"], schedule="monthly")
    with pytest.raises(ValidationError):  # no duty contact and no address
        digests.create_digest(None, world["hub"])
    changed = digests.change_digest(world["admin"], digest, schedule="hourly", is_active=False)
    assert changed.schedule == "hourly" and not changed.is_active
    assert AuditEntry.objects.filter(action="pipeline.digest_changed").count() == 1
    digests.delete_digest(world["admin"], digest)
    assert not Digest.objects.exists()
    assert AuditEntry.objects.filter(action="pipeline.digest_deleted").count() == 1


def test_rest_manages_digests_for_the_organisations_admins_only(world, make_user, bearer, client):
    admin = bearer(world["admin"])
    outsider = bearer(make_user("other-admin", world["other"], role=Role.ORG_ADMIN))
    analyst = bearer(world["analyst"])
    api = "/api/v1/pipeline/digests"
    created = client.post(
        api,
        {"schedule": "hourly", "recipients": ["soc@demo-a.example"]},
        content_type="application/json",
        headers=admin,
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["organisation"] == "demo-a" and body["channel"] == "email" and body["secret"] == ""
    one = f"{api}/{body['id']}"
    assert client.get(one, headers=admin).json()["recipients"] == ["soc@demo-a.example"]
    for other in (outsider, analyst):
        assert client.get(one, headers=other).status_code == 404
        assert (
            client.patch(
                one, {"is_active": False}, content_type="application/json", headers=other
            ).status_code
            == 404
        )
        assert client.delete(one, headers=other).status_code == 404
        assert client.get(api, headers=other).json()["items"] == []
    refused = client.post(api, {"organisation": "demo-a"}, content_type="application/json", headers=outsider)
    assert refused.status_code == 403
    bad = client.post(api, {"recipients": ["nobody"]}, content_type="application/json", headers=admin)
    assert bad.status_code == 400 and "nobody" in bad.content.decode()
    bad = client.post(api, {"schedule": "monthly"}, content_type="application/json", headers=admin)
    assert bad.status_code in (400, 422)
    changed = client.patch(one, {"schedule": "weekly"}, content_type="application/json", headers=admin)
    assert changed.json()["schedule"] == "weekly"
    assert client.delete(one, headers=admin).status_code == 204
    assert not Digest.objects.exists()


def test_the_digests_page_lets_an_admin_subscribe_and_pause(world, make_user, login_client):
    admin = login_client(world["admin"])
    page = admin.get("/pipeline/digests/")
    assert page.status_code == 200 and "Subscribe to a digest" in page.content.decode()
    posted = admin.post(
        "/pipeline/digests/",
        {"organisation": "demo-a", "schedule": "daily", "channel": "email", "recipients": ""},
    )
    assert posted.status_code == 302
    digest = Digest.objects.get()
    assert digest.recipients == [] and digests.addresses(digest) == ["duty@demo-a.example"]
    assert "24/7 duty contacts" in admin.get("/pipeline/digests/").content.decode()
    bad = admin.post(
        "/pipeline/digests/",
        {"organisation": "demo-a", "schedule": "daily", "channel": "email", "recipients": "x@"},
    )
    assert bad.status_code == 200 and "is not an e-mail address" in bad.content.decode()
    outsider = login_client(make_user("other-admin", world["other"], role=Role.ORG_ADMIN))
    assert "demo-a" not in outsider.get("/pipeline/digests/").content.decode()
    assert outsider.post(f"/pipeline/digests/{digest.uuid}/pause/").status_code == 404
    assert login_client(world["analyst"]).post(f"/pipeline/digests/{digest.uuid}/delete/").status_code == 404
    refused = outsider.post(
        "/pipeline/digests/", {"organisation": "demo-a", "schedule": "daily", "channel": "email"}
    )
    assert refused.status_code == 200 and not Digest.objects.filter(organisation=world["other"]).exists()
    assert Digest.objects.count() == 1
    assert admin.post(f"/pipeline/digests/{digest.uuid}/pause/").status_code == 302
    digest.refresh_from_db()
    assert not digest.is_active
    assert "Paused" in admin.get("/pipeline/digests/").content.decode()


def test_the_command_line_adds_lists_and_sends_digests(world, smtp_server):
    from django.core.management import call_command

    out = io.StringIO()
    call_command(
        "feed", "digest", "add", "demo-a", "--schedule", "hourly", "--to", "cli@demo-a.example", stdout=out
    )
    digest = Digest.objects.get()
    assert f"digest {digest.uuid} added" in out.getvalue()
    ingest(world["feed"], HEADER + LINES)
    elapse(2)
    out = io.StringIO()
    call_command("feed", "digest", "send", stdout=out)
    assert f"digest {digest.pk}: sent 3 events" in out.getvalue()
    assert smtp_server[0].rcpt_tos == ["cli@demo-a.example"]
    out = io.StringIO()
    call_command("feed", "digest", "list", stdout=out)
    assert "demo-a\thourly\temail\tcli@demo-a.example" in out.getvalue()
    call_command("feed", "digest", "pause", str(digest.uuid), stdout=io.StringIO())
    digest.refresh_from_db()
    assert not digest.is_active


def test_changing_settings_does_not_undo_a_delivery(world, smtp_server):
    digest, _ = digests.create_digest(None, world["team"], schedule="hourly")
    stale = Digest.objects.get(pk=digest.pk)  # an admin's page loaded before the send
    ingest(world["feed"], HEADER + LINES)
    assert run_due(2) == [f"digest {digest.pk}: sent 3 events"]
    digests.change_digest(None, stale, recipients=["new@demo-a.example"])
    digest.refresh_from_db()
    assert digest.recipients == ["new@demo-a.example"] and digest.last_count == 3
    assert run_due(1.5) == [f"digest {digest.pk}: no events"]  # the window was not put back
    assert len(smtp_server) == 1
