"""Coordination: constituencies found from the observables, participants proposed and added,
the outbox (in-app and e-mail to the 24/7 contact, through a real SMTP server), retries."""

from __future__ import annotations

import socket
from email import message_from_bytes

import pytest
from django.db import transaction
from django_tasks_db.models import DBTaskResult

from minga.core.models import AuditEntry
from minga.incidents import queries, services, tasks
from minga.incidents.choices import Channel, DeliveryStatus, ParticipantStatus
from minga.incidents.models import Notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp_down(settings):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 2
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False


def test_observables_propose_the_owners_and_their_national_csirts(open_incident, network):
    incident = open_incident(observables=["198.18.5.20", "c2.br.demo.example", "AS4200000002", "203.0.113.9"])
    proposed = services.propose_participants(network.ana, incident)
    by_org = {p.organisation: p for p in proposed}
    # The hospital owns 198.18.5.0/24 (more specific than CSIRT Chile's /22); Chile's national
    # CSIRT is proposed for its state and for its own AS; Brazil's for the domain. Peru reports.
    assert set(by_org) == {network.hospital, network.cl, network.br}
    assert by_org[network.hospital].proposal == {"basis": ["owner"], "observables": ["198.18.5.20"]}
    assert by_org[network.cl].proposal["basis"] == ["national_csirt", "owner"]
    assert all(p.status == ParticipantStatus.PROPOSED for p in proposed)
    # A proposal grants nothing and tells no one.
    assert not queries.visible(network.carlos).filter(pk=incident.pk).exists()
    assert not Notification.objects.exists()
    audit = AuditEntry.objects.get(action="incident.propose")
    assert sorted(audit.details["proposed"]) == sorted(o.short_name for o in by_org)
    # Proposing again changes nothing already decided.
    services.add_participant(network.ana, incident, network.cl)
    again = services.propose_participants(network.ana, incident)
    assert {p.organisation for p in again} == {network.hospital, network.br}


def test_adding_a_participant_writes_the_outbox_in_the_same_transaction(open_incident, network):
    incident = open_incident()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.add_participant(network.ana, incident, network.cl)
        raise RuntimeError("the change is rolled back")
    assert not Notification.objects.exists()
    assert not DBTaskResult.objects.filter(task_path__endswith="deliver_notification").exists()
    services.add_participant(network.ana, incident, network.cl)
    in_app = Notification.objects.get(channel=Channel.IN_APP)
    mail = Notification.objects.get(channel=Channel.EMAIL)
    assert in_app.status == DeliveryStatus.DELIVERED and mail.status == DeliveryStatus.PENDING
    assert DBTaskResult.objects.filter(
        task_path__endswith="deliver_notification", args_kwargs__args=[mail.pk]
    ).exists()
    assert list(queries.notifications_for(network.carlos)) == [in_app]
    assert not queries.notifications_for(network.olga).exists()


def test_the_24_7_contact_gets_the_email_and_the_participant_counts_as_notified(
    open_incident, network, smtp_server
):
    incident = open_incident(title="Secret hospital name")
    services.add_participant(network.ana, incident, network.cl)
    mail = Notification.objects.get(channel=Channel.EMAIL)
    assert tasks.deliver_notification.call(mail.pk).startswith("sent")
    (envelope,) = smtp_server
    assert envelope.rcpt_tos == ["duty@csirt-cl.example.org"]
    message = message_from_bytes(envelope.content)
    body = message.get_payload(decode=True).decode()
    assert incident.reference in message["Subject"]
    assert services.contact_language(network.cl.pk) == "es"  # the desk's language, where translated
    assert f"/incidents/{incident.reference}/" in body
    assert "Secret hospital name" not in body  # e-mail leaves the node in clear: no content
    mail.refresh_from_db()
    assert mail.status == DeliveryStatus.DELIVERED and mail.recipients == ["duty@csirt-cl.example.org"]
    participant = incident.participants.get(organisation=network.cl)
    assert participant.status == ParticipantStatus.NOTIFIED and participant.notified_at is not None
    assert AuditEntry.objects.filter(action="incident.notification_delivered").count() == 1
    # Delivered once: a second attempt (a retry that raced) sends nothing.
    assert tasks.deliver_notification.call(mail.pk) == "delivered already, gone, or being sent"
    assert len(smtp_server) == 1
    services.acknowledge(network.carlos, incident)
    assert incident.participants.get(organisation=network.cl).status == ParticipantStatus.ACKNOWLEDGED


def test_an_smtp_server_that_is_down_leaves_the_mail_pending_and_retried(open_incident, network, smtp_down):
    incident = open_incident()
    services.add_participant(network.ana, incident, network.cl)
    mail = Notification.objects.get(channel=Channel.EMAIL)
    with pytest.raises(services.NotDelivered):
        tasks.deliver_notification.call(mail.pk)
    mail.refresh_from_db()
    assert mail.status == DeliveryStatus.PENDING and mail.attempts == 1 and mail.last_error
    failed = AuditEntry.objects.get(action="incident.notification_failed")
    assert failed.details["organisation"] == network.cl.short_name
    # The failure enqueued the next attempt, later (backoff).
    retry = (
        DBTaskResult.objects.filter(task_path__endswith="deliver_notification")
        .order_by("-enqueued_at")
        .first()
    )
    assert retry.args_kwargs["kwargs"].get("_attempt") == 2 and retry.run_after is not None


def test_an_organisation_without_a_24_7_contact_is_visible_as_pending(open_incident, network, smtp_server):
    network.br.contacts.all().delete()
    incident = open_incident()
    services.add_participant(network.ana, incident, network.br)
    mail = Notification.objects.get(channel=Channel.EMAIL)
    with pytest.raises(services.NotDelivered, match="no 24/7 contact"):
        services.deliver_email(mail.pk)
    mail.refresh_from_db()
    assert mail.status == DeliveryStatus.PENDING and "24/7" in mail.last_error
    assert incident.participants.get(organisation=network.br).status == ParticipantStatus.ADDED
    assert not smtp_server


def test_the_periodic_sweep_restarts_stalled_deliveries(open_incident, network):
    from datetime import timedelta

    from django.utils import timezone

    incident = open_incident()
    services.add_participant(network.ana, incident, network.cl)
    mail = Notification.objects.get(channel=Channel.EMAIL)
    assert tasks.retry_notifications.call() == "queued 0 pending e-mail or webhook notification(s) again"
    Notification.objects.filter(pk=mail.pk).update(updated_at=timezone.now() - timedelta(hours=7))
    before = DBTaskResult.objects.filter(task_path__endswith="deliver_notification").count()
    assert tasks.retry_notifications.call() == "queued 1 pending e-mail or webhook notification(s) again"
    assert DBTaskResult.objects.filter(task_path__endswith="deliver_notification").count() == before + 1
