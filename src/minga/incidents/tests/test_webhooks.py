"""Signed webhooks: an organisation registers a URL and a secret; the outbox POSTs its
notifications there, signed, to a real HTTP server on loopback; failures are retried and
audited, and nothing is lost while the receiver is down."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django_tasks_db.models import DBTaskResult

from minga.core.models import AuditEntry
from minga.directory import services as directory
from minga.directory import webhooks
from minga.directory.models import Webhook
from minga.incidents import services, tasks
from minga.incidents.choices import Channel, DeliveryStatus, ParticipantStatus
from minga.incidents.models import Notification

pytestmark = pytest.mark.django_db


@dataclass
class Receiver:
    """A webhook receiver: a real HTTP server in a thread. ``answers`` are the statuses to give,
    in order (then 204); each request is kept with its headers and raw body."""

    url: str
    answers: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            box.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status = box.answers.pop(0) if box.answers else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    box.url = f"http://127.0.0.1:{server.server_address[1]}/minga/hook"
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()


def _register(network, url: str) -> str:
    # Set by the node itself (an operator's command); the directory's tests cover the admins.
    _webhook, secret = directory.set_webhook(None, network.cl, url=url)
    assert secret
    return secret


def test_a_signed_post_reaches_the_receiver_and_counts_as_notification(open_incident, network, receiver):
    secret = _register(network, receiver.url)
    stored = Webhook.objects.get(organisation=network.cl)
    assert secret not in stored.sealed_secret and webhooks.unseal_secret(stored.sealed_secret) == secret
    incident = open_incident(title="Secret hospital name")
    network.cl.contacts.all().delete()  # no e-mail can go: the webhook alone tells Chile
    services.add_participant(network.ana, incident, network.cl)
    hook = Notification.objects.get(channel=Channel.WEBHOOK)
    assert hook.status == DeliveryStatus.PENDING
    assert DBTaskResult.objects.filter(
        task_path__endswith="deliver_webhook", args_kwargs__args=[hook.pk]
    ).exists()
    assert tasks.deliver_webhook.call(hook.pk) == f"posted to {receiver.url}"
    (request,) = receiver.received
    headers, body = request["headers"], request["body"]
    # The receiver's check, as the docs describe it: HMAC over timestamp, ".", raw body.
    assert webhooks.verify(secret, headers["X-Minga-Signature"], headers["X-Minga-Timestamp"], body)
    assert headers["X-Minga-Signature"].startswith("sha256=")
    assert headers["X-Minga-Delivery"] == str(hook.pk) and headers["X-Minga-Event"] == "participant_added"
    assert not webhooks.verify(
        "another secret of enough length!", headers["X-Minga-Signature"], headers["X-Minga-Timestamp"], body
    )
    # A replay later, or with another timestamp, fails.
    later = time.time() + 3600
    assert not webhooks.verify(
        secret, headers["X-Minga-Signature"], headers["X-Minga-Timestamp"], body, now=later
    )
    forged = str(int(headers["X-Minga-Timestamp"]) + 1)
    assert not webhooks.verify(secret, headers["X-Minga-Signature"], forged, body)
    payload = json.loads(body)
    assert payload["event"] == "participant_added" and payload["organisation"] == network.cl.short_name
    assert payload["incident"]["reference"] == incident.reference and payload["incident"]["tlp"] == "amber"
    assert "Secret hospital name" not in body.decode()  # it leaves the node: no content
    hook.refresh_from_db()
    assert hook.status == DeliveryStatus.DELIVERED and hook.recipients == [receiver.url]
    assert incident.participants.get(organisation=network.cl).status == ParticipantStatus.NOTIFIED
    delivered = AuditEntry.objects.get(action="incident.notification_delivered")
    assert delivered.details["channel"] == "webhook" and delivered.details["recipients"] == [receiver.url]
    # Delivered once: a retry that raced sends nothing.
    assert tasks.deliver_webhook.call(hook.pk) == "delivered already, gone, or being sent"
    assert len(receiver.received) == 1
    # An organisation without a webhook gets none.
    services.add_participant(network.ana, incident, network.br)
    assert Notification.objects.filter(channel=Channel.WEBHOOK).count() == 1


def test_a_500_is_retried_until_delivered(open_incident, network, receiver):
    secret = _register(network, receiver.url)
    receiver.answers = [500]
    incident = open_incident()
    services.add_participant(network.ana, incident, network.cl)
    hook = Notification.objects.get(channel=Channel.WEBHOOK)
    with pytest.raises(services.NotDelivered, match="HTTP 500"):
        tasks.deliver_webhook.call(hook.pk)
    hook.refresh_from_db()
    assert hook.status == DeliveryStatus.PENDING and hook.attempts == 1 and "500" in hook.last_error
    failed = AuditEntry.objects.get(action="incident.notification_failed")
    assert failed.details["channel"] == "webhook" and failed.details["attempt"] == 1
    retry = (
        DBTaskResult.objects.filter(task_path__endswith="deliver_webhook").order_by("-enqueued_at").first()
    )
    assert retry.args_kwargs["kwargs"].get("_attempt") == 2 and retry.run_after is not None
    # The retry (what the worker runs when it is due) goes through; the same body, signed anew.
    assert tasks.deliver_webhook.call(hook.pk, _attempt=2).startswith("posted")
    first, second = receiver.received
    assert first["body"] == second["body"]
    assert webhooks.verify(
        secret, second["headers"]["X-Minga-Signature"], second["headers"]["X-Minga-Timestamp"], second["body"]
    )
    hook.refresh_from_db()
    assert hook.status == DeliveryStatus.DELIVERED and hook.attempts == 2


def test_a_receiver_that_is_down_leaves_the_notification_pending(open_incident, network):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _register(network, f"http://127.0.0.1:{port}/hook")
    incident = open_incident()
    services.add_participant(network.ana, incident, network.cl)
    hook = Notification.objects.get(channel=Channel.WEBHOOK)
    for attempt in (1, 2):
        with pytest.raises(services.NotDelivered):
            tasks.deliver_webhook.call(hook.pk, _attempt=attempt)
    hook.refresh_from_db()
    assert hook.status == DeliveryStatus.PENDING and hook.attempts == 2 and hook.last_error
    assert AuditEntry.objects.filter(action="incident.notification_failed").count() == 2
    # Removing the webhook drops nothing: the notification waits for a new one.
    directory.remove_webhook(None, network.cl)
    with pytest.raises(services.NotDelivered, match="no webhook"):
        services.deliver_webhook(hook.pk)
    hook.refresh_from_db()
    assert hook.status == DeliveryStatus.PENDING


def test_the_sweep_restarts_stalled_webhooks(open_incident, network, receiver):
    from datetime import timedelta

    from django.utils import timezone

    _register(network, receiver.url)
    incident = open_incident()
    services.add_participant(network.ana, incident, network.cl)
    Notification.objects.filter(channel__in=["email", "webhook"]).update(
        updated_at=timezone.now() - timedelta(hours=7)
    )
    before = DBTaskResult.objects.filter(task_path__endswith="deliver_webhook").count()
    assert tasks.retry_notifications.call() == "queued 2 pending e-mail or webhook notification(s) again"
    assert DBTaskResult.objects.filter(task_path__endswith="deliver_webhook").count() == before + 1
