"""Digests end to end: a real ``minga worker`` (its scheduler thread and its task loop) finds a
due digest, sends it to a real SMTP server (aiosmtpd) and moves its window, nothing called by
hand."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from email import message_from_bytes

import pytest
from django.db.models import F

from minga.core.tests.test_worker import REPO, _database_url, wait_for
from minga.directory import services as directory
from minga.pipeline import digests
from minga.pipeline.models import Digest, Event
from minga.pipeline.tests.helpers import HEADER, constituency, ingest, scan_feed

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_sends_a_due_digest_on_its_schedule(make_org, smtp_server, settings):
    team = constituency(make_org("demo-a"), "192.0.2.0/25")
    directory.save_contact(None, team, role="duty", name="Duty desk", email="duty@demo-a.example")
    digest, _ = digests.create_digest(None, team, schedule="hourly")
    ingest(
        scan_feed(make_org("hub")),
        HEADER + "2026-01-10T10:00:00Z,192.0.2.10,22,,,,scan\n2026-01-10T10:00:00Z,203.0.113.9,22,,,,scan\n",
    )
    # An hour and a half ago: the digest is due, and the events were stored within its window.
    Event.objects.update(created_at=F("created_at") - timedelta(minutes=90))
    Digest.objects.update(window_end=F("window_end") - timedelta(minutes=91))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "MINGA_TEST_DATABASE_URL": _database_url(),
        "MINGA_EMAIL_URL": f"smtp://{settings.EMAIL_HOST}:{settings.EMAIL_PORT}",
        "PYTHONPATH": str(REPO),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "minga", "worker", "--interval", "0.1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: Digest.objects.filter(pk=digest.pk, last_count__gt=0).exists(), timeout=120)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    # (The worker's other periodic jobs may write too, e.g. asking the new contact to confirm.)
    [envelope] = [e for e in smtp_server if b"Minga digest for" in e.content]
    assert envelope.rcpt_tos == ["duty@demo-a.example"]
    message = message_from_bytes(envelope.content)
    [attached] = [p.get_payload(decode=True).decode() for p in message.walk() if p.get_filename()]
    assert "192.0.2.10" in attached and "203.0.113.9" not in attached
    digest.refresh_from_db()
    assert digest.last_count == 1 and digest.failures == 0 and digest.pending_end is None
