"""Digests by webhook: the digest POSTed as JSON, signed with HMAC-SHA256 over the timestamp and
the raw body (``minga.core.webhooks``), to a real HTTP server in a thread that checks the
signature; a failed delivery is retried with backoff on the same window."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from minga.core import sealed, webhooks
from minga.core.choices import Role
from minga.core.models import AuditEntry
from minga.pipeline import digests
from minga.pipeline.models import Digest
from minga.pipeline.tests.helpers import HEADER, constituency, ingest, scan_feed
from minga.pipeline.tests.test_digests import LINES, run_due

pytestmark = pytest.mark.django_db


class Receiver:
    """A webhook receiver on a free loopback port: it verifies each request as the docs tell a
    receiver to, answers the statuses queued in ``answers`` (then 200), and keeps what it got."""

    def __init__(self) -> None:
        self.secret = ""
        self.answers: list[int] = []
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(
                    {
                        "path": self.path,
                        "body": body,
                        "headers": dict(self.headers.items()),
                        "verified": webhooks.verify(
                            receiver.secret,
                            self.headers.get(webhooks.SIGNATURE_HEADER, ""),
                            self.headers.get(webhooks.TIMESTAMP_HEADER, ""),
                            body,
                        ),
                    }
                )
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/minga"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def world(make_org, make_user):
    hub = make_org("hub")
    team = constituency(make_org("demo-a"), "192.0.2.0/25")
    other = constituency(make_org("demo-c"), "192.0.2.128/25")
    return {
        "hub": hub,
        "team": team,
        "other": other,
        "feed": scan_feed(hub),
        "admin": make_user("team-admin", team, role=Role.ORG_ADMIN),
    }


def subscribe(world: dict[str, Any], receiver: Receiver, org: str = "team") -> Digest:
    digest, secret = digests.create_digest(
        world["admin"] if org == "team" else None,
        world[org],
        schedule="hourly",
        channel="webhook",
        url=receiver.url,
    )
    receiver.secret = secret
    return digest


def test_a_webhook_digest_is_signed_json_of_the_organisations_events(world, receiver):
    digest = subscribe(world, receiver)
    stored = Digest.objects.get().sealed_secret
    assert receiver.secret and receiver.secret not in stored  # sealed at rest
    assert sealed.unseal(stored, digests.SEAL_PURPOSE) == receiver.secret
    ingest(world["feed"], HEADER + LINES)
    assert run_due(2) == [f"digest {digest.pk}: sent 3 events"]
    [got] = receiver.received
    assert got["verified"] and got["path"] == "/hooks/minga"
    assert got["headers"][webhooks.EVENT_HEADER] == "events.digest"
    assert got["headers"]["Content-Type"] == "application/json"
    body = orjson.loads(got["body"])
    assert body["organisation"] == "demo-a" and body["delivery"] == got["headers"][webhooks.DELIVERY_HEADER]
    assert sorted(e["source_ip"] for e in body["events"]) == ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
    assert body["counts"] == {"total": 3, "by_type": {"scanner": 2, "infected-system": 1}}
    assert body["truncated"] is False and all(e["routed_to"] == ["demo-a"] for e in body["events"])
    assert "192.0.2.200" not in got["body"].decode() and "203.0.113.5" not in got["body"].decode()
    # The signature covers the timestamp and every byte of the body.
    stamp = got["headers"][webhooks.TIMESTAMP_HEADER]
    signature = got["headers"][webhooks.SIGNATURE_HEADER]
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert not webhooks.verify(receiver.secret, signature, stamp, got["body"] + b" ")
    assert not webhooks.verify(receiver.secret, signature, str(int(stamp) + 1), got["body"])
    assert not webhooks.verify("another secret", signature, stamp, got["body"])
    assert not webhooks.verify(receiver.secret, signature, stamp, got["body"], now=time.time() + 600)
    digest.refresh_from_db()
    assert digest.last_count == 3 and digest.pending_end is None
    entry = AuditEntry.objects.get(action="pipeline.digest_sent")
    assert entry.details["url"] == receiver.url and entry.details["status"] == 200
    assert receiver.secret not in str(list(AuditEntry.objects.values_list("details", flat=True)))


def test_a_500_is_retried_with_backoff_and_the_same_window_is_sent(world, receiver):
    digest = subscribe(world, receiver)
    ingest(world["feed"], HEADER + LINES)
    receiver.answers = [500, 503]
    [failed] = run_due(2)
    assert failed == f"digest {digest.pk}: failed: The receiver answered HTTP 500."
    digest.refresh_from_db()
    assert digest.failures == 1 and digest.pending_end is not None
    assert digest.next_attempt_at - timezone.now() > timedelta(seconds=55)
    ingest(world["feed"], HEADER + "2026-01-11T10:00:00Z,192.0.2.21,443,,,,scan\n", name="meanwhile.csv")
    assert run_due(30 / 3600) == []  # backing off
    [failed] = run_due(31 / 3600)
    assert failed.endswith("HTTP 503.")
    digest.refresh_from_db()
    assert digest.failures == 2 and digest.last_sent_at is None  # the window has not moved
    assert digest.next_attempt_at - timezone.now() > timedelta(seconds=115)  # twice as long
    assert run_due(121 / 3600) == [f"digest {digest.pk}: sent 3 events"]
    first, second, third = (orjson.loads(r["body"]) for r in receiver.received)
    # The same window each time (the delivery id is derived from the window's start, which the
    # test's clock moved with the rest).
    assert first["events"] == second["events"] == third["events"]
    assert all(r["verified"] for r in receiver.received)
    assert run_due(1) == [f"digest {digest.pk}: sent 1 events"]  # what arrived meanwhile, once
    assert [e["source_ip"] for e in orjson.loads(receiver.received[-1]["body"])["events"]] == ["192.0.2.21"]
    assert AuditEntry.objects.filter(action="pipeline.digest_failed").count() == 2


def test_a_receiver_that_is_down_loses_nothing(world, receiver):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    digest, secret = digests.create_digest(
        None, world["team"], schedule="hourly", channel="webhook", url=down
    )
    ingest(world["feed"], HEADER + LINES)
    [failed] = run_due(2)
    assert "could not be reached" in failed
    digest.refresh_from_db()
    assert digest.failures == 1 and "could not be reached" in digest.last_error
    # The receiver comes up (at another address): the retry delivers the whole window.
    receiver.secret = secret
    digests.change_digest(None, digest, url=receiver.url)
    assert run_due(61 / 3600) == [f"digest {digest.pk}: sent 3 events"]
    assert receiver.received[0]["verified"]


def test_another_organisations_receiver_gets_only_its_events(world, receiver):
    subscribe(world, receiver, org="other")
    ingest(world["feed"], HEADER + LINES)
    run_due(2)
    [got] = receiver.received
    assert [e["source_ip"] for e in orjson.loads(got["body"])["events"]] == ["192.0.2.200"]


def test_a_new_secret_replaces_the_old_one(world, receiver):
    digest = subscribe(world, receiver)
    old = receiver.secret
    new = digests.new_secret(world["admin"], digest)
    assert new != old
    ingest(world["feed"], HEADER + LINES)
    run_due(2)
    got = receiver.received[0]
    assert not got["verified"]  # the receiver still holds the old secret
    stamp, signature = got["headers"][webhooks.TIMESTAMP_HEADER], got["headers"][webhooks.SIGNATURE_HEADER]
    assert webhooks.verify(new, signature, stamp, got["body"])
    assert AuditEntry.objects.filter(action="pipeline.digest_secret_changed").count() == 1


def test_webhook_urls_are_checked(world):
    for url, words in (
        ("", "full https URL"),
        ("ftp://example.org/hook", "full https URL"),
        ("http://hooks.example.org/minga", "must use https"),
        ("https://user:pw@hooks.example.org/minga", "no user name"),
        ("https://[hooks.example.org/minga", "full https URL"),
        ("https://hooks.example.org:http/minga", "full https URL"),
        ("https://hooks.example.org/\x00minga", "full https URL"),
    ):
        with pytest.raises(ValidationError) as caught:
            digests.create_digest(None, world["team"], channel="webhook", url=url)
        assert words in str(caught.value)
    digest, secret = digests.create_digest(
        None, world["team"], channel="webhook", url="https://hooks.example.org/m"
    )
    assert len(secret) >= 40
    with pytest.raises(ValidationError):
        digests.new_secret(None, digests.create_digest(None, world["team"], recipients=["a@b.example"])[0])
    assert not Digest.objects.filter(url__startswith="http://hooks").exists() and digest.url


def test_rest_shows_the_secret_once(world, bearer, client):
    headers = bearer(world["admin"])
    created = client.post(
        "/api/v1/pipeline/digests",
        {"channel": "webhook", "url": "https://hooks.example.org/minga"},
        content_type="application/json",
        headers=headers,
    )
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert len(secret) >= 40
    one = client.get(f"/api/v1/pipeline/digests/{created.json()['id']}", headers=headers)
    assert secret not in one.content.decode() and "secret" not in one.json()
    renewed = client.post(f"/api/v1/pipeline/digests/{created.json()['id']}/secret", headers=headers)
    assert renewed.status_code == 200 and renewed.json()["secret"] != secret
    bad = client.post(
        "/api/v1/pipeline/digests",
        {"channel": "webhook", "url": "http://hooks.example.org/minga"},
        content_type="application/json",
        headers=headers,
    )
    assert bad.status_code == 400 and "https" in bad.content.decode()
    broken = client.post(
        "/api/v1/pipeline/digests",
        {"channel": "webhook", "url": "https://[::1/minga"},
        content_type="application/json",
        headers=headers,
    )
    assert broken.status_code == 400 and "full https URL" in broken.content.decode()


def test_the_page_shows_a_new_secret_once(world, login_client, receiver):
    admin = login_client(world["admin"])
    page = admin.post(
        "/pipeline/digests/",
        {"organisation": "demo-a", "schedule": "daily", "channel": "webhook", "url": receiver.url},
    )
    assert page.status_code == 200
    digest = Digest.objects.get()
    secret = sealed.unseal(digest.sealed_secret, digests.SEAL_PURPOSE)
    assert secret and secret in page.content.decode()
    assert secret not in admin.get("/pipeline/digests/").content.decode()
