"""The escalation job: a submitted request nobody acknowledges goes to the requested
organisation's next 24/7 contact, then to the network coordinator; each step e-mailed through a
real SMTP server, written on the thread, audited, and never done twice."""

from __future__ import annotations

import socket
from datetime import timedelta
from email import message_from_bytes

import pytest
from django_tasks_db.models import DBTaskResult

from minga.assistance import services, tasks
from minga.assistance.choices import DeliveryStatus, Escalation, RequestStatus
from minga.assistance.models import AssistanceRequest, RequestMail
from minga.core import audit
from minga.core.models import AuditEntry

pytestmark = pytest.mark.django_db


def _deliver_all() -> None:
    for mail in RequestMail.objects.filter(status=DeliveryStatus.PENDING).order_by("pk"):
        tasks.deliver_request_mail.call(mail.pk)


def _body(envelope) -> str:
    return message_from_bytes(envelope.content).get_payload(decode=True).decode()


def test_unacknowledged_requests_escalate_to_the_next_contact_then_the_coordinator(
    network, make_request, smtp_server
):
    request = make_request(priority="emergency")  # acknowledge within the hour
    _deliver_all()
    (submitted,) = smtp_server
    assert submitted.rcpt_tos == ["duty@csirt-cl.example.org"]
    # Written in the desk's language (Spanish), with the metadata and a link, never the content.
    text = _body(submitted)
    assert request.reference in text and "/assistance/" in text
    assert "Secret operational detail" not in text and "Preserve the logs" not in text

    # Not yet due: nothing happens.
    assert services.escalate_overdue(now=request.acknowledge_by - timedelta(minutes=1)) == []

    # Level 1: the next 24/7 contact (and the desk again), once however often the job runs.
    late = request.acknowledge_by + timedelta(minutes=5)
    assert services.escalate_overdue(now=late) == [request.reference]
    assert services.escalate_overdue(now=late + timedelta(minutes=1)) == []
    request.refresh_from_db()
    assert request.escalation_level == Escalation.NEXT_CONTACT and request.escalated_at == late
    _deliver_all()
    assert len(smtp_server) == 2
    assert sorted(smtp_server[1].rcpt_tos) == ["duty@csirt-cl.example.org", "officer@csirt-cl.example.org"]
    assert "Escalated" in message_from_bytes(smtp_server[1].content)["Subject"]

    # Level 2: another acknowledgement period later, the network coordinator (node admins).
    assert services.escalate_overdue(now=late + timedelta(minutes=30)) == []
    coordinator_time = late + timedelta(hours=1)
    assert services.escalate_overdue(now=coordinator_time) == [request.reference]
    assert services.escalate_overdue(now=coordinator_time + timedelta(hours=5)) == []
    _deliver_all()
    assert len(smtp_server) == 3
    assert smtp_server[2].rcpt_tos == [network.coordinator.email]
    coordinator_mail = _body(smtp_server[2])
    assert "csirt-cl" in coordinator_mail.lower() or network.cl.name in coordinator_mail
    assert "Secret operational detail" not in coordinator_mail and "Preserve the logs" not in coordinator_mail

    escalations = [e.details for e in request.thread.filter(kind="escalation")]
    assert [e["level"] for e in escalations] == [1, 2]
    assert escalations[0]["notified"] == ["csirt-cl duty officer"]
    assert escalations[0]["overdue_seconds"] == 300
    audited = AuditEntry.objects.filter(action="assistance.escalate").order_by("seq")
    assert [a.details["level"] for a in audited] == [1, 2]
    assert audited[1].details["recipients"] == [network.coordinator.email]
    assert AuditEntry.objects.filter(action="assistance.mail_delivered").count() == 3
    assert audit.verify().ok

    # Acknowledged at last: nothing escalates any more.
    services.acknowledge(network.carlos, request)
    assert services.escalate_overdue(now=coordinator_time + timedelta(hours=2)) == []


def test_without_a_next_contact_the_request_goes_straight_to_the_coordinator(
    network, make_request, smtp_server
):
    request = make_request(requested_organisation=network.police_cl, priority="urgent")
    assert services.escalate_overdue(now=request.acknowledge_by + timedelta(seconds=1)) == [request.reference]
    request.refresh_from_db()
    assert request.escalation_level == Escalation.COORDINATOR
    _deliver_all()
    assert [e.rcpt_tos for e in smtp_server] == [["duty@police-cl.example.org"], [network.coordinator.email]]


def test_acknowledged_withdrawn_and_draft_requests_do_not_escalate(network, make_request):
    acknowledged = make_request()
    services.acknowledge(network.carlos, acknowledged)
    withdrawn = make_request()
    services.withdraw(network.ana, withdrawn, "Solved locally.")
    make_request(submit=False)
    assert services.escalate_overdue(now=acknowledged.acknowledge_by + timedelta(hours=2)) == []
    # Much later, only the acknowledged request is reported, for its answer; none is escalated.
    assert services.escalate_overdue(now=acknowledged.acknowledge_by + timedelta(days=60)) == [
        acknowledged.reference
    ]
    assert not AssistanceRequest.objects.exclude(escalation_level=0).exists()
    assert set(RequestMail.objects.values_list("event", flat=True)) == {"submitted", "answer_overdue"}


def test_the_periodic_job_runs_the_sweep_from_the_task_queue(network, make_request, smtp_server):
    request = make_request()
    type(request).objects.filter(pk=request.pk).update(
        acknowledge_by=request.submitted_at - timedelta(seconds=1)
    )  # overdue already
    result = tasks.escalate_overdue.call()
    assert result.startswith("escalated 1 request(s)")
    assert DBTaskResult.objects.filter(task_path__endswith="deliver_request_mail").count() == 2
    request.refresh_from_db()
    assert request.status == RequestStatus.SUBMITTED and request.escalation_level == Escalation.NEXT_CONTACT
    from minga.core import schedule

    assert "assistance.escalate_overdue" in [job.name for job in schedule.jobs()]


def test_an_smtp_server_that_is_down_leaves_the_mail_pending_and_retried(network, make_request, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 2
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    make_request()
    mail = RequestMail.objects.get()
    with pytest.raises(services.NotDelivered):
        tasks.deliver_request_mail.call(mail.pk)
    mail.refresh_from_db()
    assert mail.status == DeliveryStatus.PENDING and mail.attempts == 1 and mail.last_error
    assert AuditEntry.objects.filter(action="assistance.mail_failed").exists()
    # The retry is in the queue.
    assert DBTaskResult.objects.filter(task_path__endswith="deliver_request_mail").count() == 2


def test_an_unanswered_request_is_reported_once_when_its_answer_is_overdue(
    network, make_request, smtp_server
):
    request = make_request(priority="emergency")
    services.acknowledge(network.carlos, request)
    _deliver_all()
    smtp_server.clear()
    assert services.escalate_overdue(now=request.respond_by - timedelta(minutes=1)) == []
    late = request.respond_by + timedelta(minutes=2)
    assert services.escalate_overdue(now=late) == [request.reference]
    assert services.escalate_overdue(now=late + timedelta(hours=3)) == []
    _deliver_all()
    assert sorted(e.rcpt_tos[0] for e in smtp_server) == [
        network.coordinator.email,
        "duty@csirt-cl.example.org",
    ]
    assert all("Secret operational detail" not in _body(e) for e in smtp_server)
    entry = request.thread.get(kind="escalation")
    assert entry.details["answer"] is True and entry.details["overdue_seconds"] == 120
    assert AuditEntry.objects.filter(action="assistance.answer_overdue").count() == 1
    # Answered: nothing more is sent.
    services.answer(network.carlos, request, "fulfilled", "Here.")
    assert services.escalate_overdue(now=late + timedelta(days=2)) == []
    assert RequestMail.objects.filter(event="answer_overdue").count() == 2
