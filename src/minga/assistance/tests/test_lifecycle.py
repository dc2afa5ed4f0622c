"""The request's story: a draft, submitted with the network's deadlines for its priority,
acknowledged, worked on, answered, closed; every wrong move refused with a clear message."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django_tasks_db.models import DBTaskResult

from minga.assistance import services
from minga.assistance.choices import RequestStatus
from minga.assistance.models import RequestMail
from minga.core import audit
from minga.core.models import AuditEntry
from minga.directory.models import MemberState

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("priority", "ack", "respond"),
    [
        ("emergency", timedelta(hours=1), timedelta(hours=24)),
        ("urgent", timedelta(hours=4), timedelta(hours=72)),
        ("routine", timedelta(days=2), timedelta(days=30)),
    ],
)
def test_submission_sets_the_deadlines_of_the_priority(make_request, priority, ack, respond):
    request = make_request(priority=priority)
    assert request.status == RequestStatus.SUBMITTED
    assert request.acknowledge_by - request.submitted_at == ack
    assert request.respond_by - request.submitted_at == respond
    assert request.submitted_at.utcoffset() == timedelta(0)  # stored in UTC


def test_the_network_deadlines_are_set_by_coordinators_and_apply_to_later_requests(network, make_request):
    before = make_request(priority="urgent")
    with pytest.raises(PermissionDenied):
        services.set_deadlines(
            network.ana, "urgent", acknowledge_within=timedelta(hours=2), respond_within=timedelta(hours=48)
        )
    with pytest.raises(ValidationError, match="before the acknowledgement"):
        services.set_deadlines(
            network.coordinator,
            "urgent",
            acknowledge_within=timedelta(hours=5),
            respond_within=timedelta(hours=1),
        )
    services.set_deadlines(
        network.coordinator,
        "urgent",
        acknowledge_within=timedelta(hours=2),
        respond_within=timedelta(hours=48),
    )
    after = make_request(priority="urgent")
    assert after.acknowledge_by - after.submitted_at == timedelta(hours=2)
    before.refresh_from_db()
    assert before.acknowledge_by - before.submitted_at == timedelta(hours=4)  # kept its own
    entry = AuditEntry.objects.get(action="assistance.deadlines")
    assert entry.details["from"] == [4 * 3600, 72 * 3600] and entry.details["to"] == [2 * 3600, 48 * 3600]


def test_a_request_to_a_state_goes_to_its_national_csirt_or_to_a_named_organisation(network, make_request):
    request = make_request(submit=False)
    assert request.requested_organisation == network.cl
    assert request.requested_state.code == "CL" and request.requesting_state.code == "PE"
    assert request.reference == f"MAR-{request.created_at.year}-{request.pk:06d}"
    named = make_request(submit=False, requested_organisation=network.police_cl)
    assert named.requested_organisation == network.police_cl and named.requested_state.code == "CL"


def test_bad_targets_are_refused_with_a_reason(network, make_request):
    with pytest.raises(ValidationError, match="another state"):
        services.create_request(
            network.carlos,
            network.cl,
            requested_organisation=network.police_cl,
            kind="information",
            priority="routine",
            subject="x",
        )
    with pytest.raises(ValidationError, match="cannot ask itself"):
        make_request(submit=False, requested_organisation=network.pe)
    with pytest.raises(ValidationError, match="no national CSIRT"):
        make_request(submit=False, requested_state=MemberState.objects.get(code="AR"))
    with pytest.raises(ValidationError, match="is in CL, not in BR"):
        make_request(
            submit=False,
            requested_state=MemberState.objects.get(code="BR"),
            requested_organisation=network.police_cl,
        )
    with pytest.raises(ValidationError, match="not one of"):
        make_request(submit=False, kind="gossip")
    with pytest.raises(PermissionDenied):
        services.create_request(
            network.bruna,
            network.pe,
            requested_state=MemberState.objects.get(code="CL"),
            kind="information",
            priority="routine",
            subject="x",
        )


def test_a_state_without_a_confirmed_24_7_desk_is_refused_with_a_suggestion(network, make_request):
    mx = MemberState.objects.get(code="MX")
    request = make_request(submit=False, requested_state=mx)
    with pytest.raises(ValidationError, match="no confirmed 24/7 contact") as refused:
        services.submit(network.ana, request)
    assert "confirmed first" in str(refused.value)
    request.refresh_from_db()
    assert request.status == RequestStatus.DRAFT and request.submitted_at is None
    assert not RequestMail.objects.exists()
    # With another organisation of the state that has a confirmed desk, the message names it.
    chile = make_request(submit=False)
    chile.requested_organisation.contacts.update(last_verified_at=None)
    with pytest.raises(ValidationError, match="instead: police-cl"):
        services.submit(network.ana, chile)


def test_the_whole_lifecycle_with_thread_and_audit(network, make_request):
    request = make_request()
    mail = RequestMail.objects.get()
    assert mail.event == "submitted" and mail.recipients == ["duty@csirt-cl.example.org"]
    assert DBTaskResult.objects.filter(
        task_path__endswith="deliver_request_mail", args_kwargs__args=[mail.pk]
    ).exists()

    services.acknowledge(network.carlos, request)
    assert request.status == RequestStatus.ACKNOWLEDGED and request.acknowledged_at is not None
    services.start(network.carlos, request)
    services.post_message(network.ana, request, "Any news?")
    assert request.first_response_at is None  # the requesting side's message is no response
    services.post_message(network.carlos, request, "Logs preserved; copying them now.")
    request.refresh_from_db()
    assert request.first_response_at is not None
    services.answer(network.carlos, request, "partial", "Only 30 days of logs were kept.")
    assert request.status == RequestStatus.ANSWERED and request.outcome == "partial"
    assert request.answered_in_time is True
    services.close(network.ana, request)
    assert request.status == RequestStatus.CLOSED

    kinds = [(e.kind, e.details.get("to")) for e in request.thread.all()]
    assert kinds == [
        ("status", "draft"),
        ("status", "submitted"),
        ("status", "acknowledged"),
        ("status", "in_progress"),
        ("message", None),
        ("message", None),
        ("status", "answered"),
        ("status", "closed"),
    ]
    actions = list(
        AuditEntry.objects.filter(object_type="assistance.assistancerequest")
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == [
        "assistance.create",
        "assistance.submit",
        "assistance.acknowledge",
        "assistance.start",
        "assistance.message",
        "assistance.message",
        "assistance.answer",
        "assistance.close",
    ]
    # The audit log is read by node admins: it holds no content of the request.
    everything = str(list(AuditEntry.objects.values_list("details", "object_repr")))
    for secret in ("Secret operational detail", "Preserve the logs", "Logs preserved", "30 days", "Budapest"):
        assert secret not in everything
    assert audit.verify().ok


def test_invalid_moves_are_refused_and_change_nothing(network, make_request):
    draft = make_request(submit=False)
    with pytest.raises(
        ValidationError, match="is draft; only a request that is submitted can be acknowledged"
    ):
        services.acknowledge(network.carlos, draft)
    with pytest.raises(ValidationError, match="submit it first"):
        services.post_message(network.carlos, draft, "hello")
    with pytest.raises(ValidationError, match="can be closed"):
        services.close(network.ana, draft)
    request = make_request()
    with pytest.raises(PermissionDenied, match="requested organisation"):
        services.acknowledge(network.ana, request)  # the requesting side cannot acknowledge
    with pytest.raises(PermissionDenied, match="requested organisation"):
        services.acknowledge(network.rosa, request)  # read-only members read, they do not act
    with pytest.raises(PermissionDenied, match="requesting organisation"):
        services.withdraw(network.carlos, request, "no")
    with pytest.raises(ValidationError, match="Say why"):
        services.answer(network.carlos, request, "declined", "  ")
    with pytest.raises(ValidationError, match="reason"):
        services.withdraw(network.ana, request, "")
    with pytest.raises(ValidationError, match="is submitted; only a request that is draft can be submitted"):
        services.submit(network.ana, request)
    request.refresh_from_db()
    assert request.status == RequestStatus.SUBMITTED and request.answer == ""
    services.answer(network.carlos, request, "declined", "Outside our legal mandate.")
    assert request.acknowledged_at is not None  # an answer acknowledges too
    with pytest.raises(ValidationError, match="is answered"):
        services.withdraw(network.ana, request, "too late")
    services.close(network.carlos, request)
    with pytest.raises(ValidationError, match="closed"):
        services.post_message(network.ana, request, "one more thing")


def test_a_draft_is_changed_then_withdrawn(network, make_request):
    draft = make_request(submit=False)
    services.update_draft(network.ana, draft, priority="urgent", subject="New subject")
    assert draft.priority == "urgent" and draft.subject == "New subject"
    assert AuditEntry.objects.get(action="assistance.update").details["fields"] == ["priority", "subject"]
    services.withdraw(network.ana, draft)  # a draft needs no reason
    assert draft.status == RequestStatus.WITHDRAWN
    with pytest.raises(ValidationError, match="only a request that is draft can be changed"):
        services.update_draft(network.ana, draft, subject="again")


def test_a_refused_draft_is_redirected_to_another_organisation_and_submitted(network, make_request):
    draft = make_request(submit=False, requested_state=MemberState.objects.get(code="MX"))
    with pytest.raises(ValidationError, match="no confirmed 24/7 contact"):
        services.submit(network.ana, draft)
    with pytest.raises(ValidationError, match="cannot ask itself"):
        services.update_draft(network.ana, draft, requested_state=MemberState.objects.get(code="PE"))
    draft.refresh_from_db()
    assert draft.requested_state.code == "MX"  # nothing changed
    services.update_draft(network.ana, draft, requested_organisation=network.police_cl)
    assert draft.requested_organisation == network.police_cl and draft.requested_state.code == "CL"
    assert AuditEntry.objects.filter(action="assistance.update").latest("seq").details["fields"] == [
        "requested_organisation"
    ]
    services.submit(network.ana, draft)
    assert draft.status == RequestStatus.SUBMITTED
