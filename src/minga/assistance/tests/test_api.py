"""The REST API under /api/v1/assistance: the lifecycle through real HTTP requests of Django's
test client with API tokens, clear 4xx answers for bad input and wrong moves, attachments."""

from __future__ import annotations

import hashlib

import pytest
from django.test import Client

from minga.assistance import services
from minga.assistance.models import AssistanceRequest
from minga.core.models import AuditEntry
from minga.directory.models import MemberState

pytestmark = pytest.mark.django_db

BASE = "/api/v1/assistance"


def _post(client: Client, path: str, headers: dict[str, str], body: dict | None = None):
    return client.post(path, body or {}, content_type="application/json", headers=headers)


def test_the_lifecycle_through_the_api(network, bearer):
    client = Client()
    ana, carlos = bearer(network.ana), bearer(network.carlos)
    created = _post(
        client,
        f"{BASE}/",
        ana,
        {
            "requested_state": "cl",
            "kind": "information",
            "priority": "urgent",
            "subject": "Who runs 198.18.4.7?",
            "legal_basis": "MLAT PE-CL",
        },
    )
    assert created.status_code == 201, created.content
    body = created.json()
    ref = body["reference"]
    assert (
        body["status"] == "draft" and body["content"] is True and body["requested_organisation"] == "csirt-cl"
    )
    assert _post(client, f"{BASE}/{ref}/acknowledge", carlos).status_code == 404  # drafts are not sent
    patched = client.patch(
        f"{BASE}/{ref}", {"priority": "emergency"}, content_type="application/json", headers=ana
    )
    assert patched.status_code == 200 and patched.json()["priority"] == "emergency"
    submitted = _post(client, f"{BASE}/{ref}/submit", ana).json()
    assert submitted["status"] == "submitted" and submitted["acknowledge_by"] and submitted["respond_by"]

    wrong = _post(client, f"{BASE}/{ref}/acknowledge", ana)
    assert wrong.status_code == 403 and "requested organisation" in wrong.json()["detail"]
    assert _post(client, f"{BASE}/{ref}/acknowledge", carlos).json()["status"] == "acknowledged"
    again = _post(client, f"{BASE}/{ref}/acknowledge", carlos)
    assert again.status_code == 400
    assert "is acknowledged; only a request that is submitted can be acknowledged" in again.json()["detail"]
    assert _post(client, f"{BASE}/{ref}/start", carlos).json()["status"] == "in_progress"
    message = _post(client, f"{BASE}/{ref}/messages", carlos, {"text": "Looking into it."})
    assert message.status_code == 201 and message.json()["organisation"] == "csirt-cl"
    declined = _post(client, f"{BASE}/{ref}/answer", carlos, {"outcome": "declined", "text": ""})
    assert declined.status_code == 400 and "Say why" in declined.json()["detail"]
    answered = _post(
        client, f"{BASE}/{ref}/answer", carlos, {"outcome": "fulfilled", "text": "A VPS provider."}
    )
    assert answered.json()["status"] == "answered" and answered.json()["answer"] == "A VPS provider."
    assert _post(client, f"{BASE}/{ref}/close", ana).json()["status"] == "closed"
    thread = client.get(f"{BASE}/{ref}/thread", headers=ana).json()
    assert [e["kind"] for e in thread].count("status") == 6
    assert thread[-1]["details"]["to"] == "closed"

    incoming = client.get(f"{BASE}/?box=incoming", headers=carlos).json()
    outgoing = client.get(f"{BASE}/?box=outgoing", headers=carlos).json()
    assert [r["reference"] for r in incoming["items"]] == [ref] and outgoing["count"] == 0
    metrics = client.get(f"{BASE}/metrics", headers=ana).json()
    assert metrics[0]["state"] == "CL" and metrics[0]["priority"] == "emergency"
    assert metrics[0]["acknowledged_in_time"] == 1 and metrics[0]["median_to_acknowledge_seconds"] >= 0


def test_submit_at_once_and_a_refusal_for_a_state_without_a_confirmed_desk(network, bearer):
    client = Client()
    ana = bearer(network.ana)
    fields = {"kind": "preservation", "priority": "emergency", "subject": "Logs", "submit": True}
    ok = _post(client, f"{BASE}/", ana, {**fields, "requested_organisation": "police-cl"})
    assert ok.status_code == 201 and ok.json()["status"] == "submitted"
    refused = _post(client, f"{BASE}/", ana, {**fields, "requested_state": "MX"})
    assert refused.status_code == 400
    assert "no confirmed 24/7 contact" in refused.json()["detail"]
    assert not AssistanceRequest.objects.filter(requested_state__code="MX").exists()  # nothing half-written


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"requested_state": "CL", "kind": "gossip", "subject": "x"}, "kind"),
        ({"requested_state": "CL", "kind": "other", "subject": "x", "priority": "soon"}, "priority"),
        ({"requested_state": "CL", "kind": "other", "subject": ""}, "subject"),
        ({"requested_state": "ZZ", "kind": "other", "subject": "x"}, "requested_state"),
        ({"requested_organisation": "nobody", "kind": "other", "subject": "x"}, "requested_organisation"),
        ({"kind": "other", "subject": "x"}, "requested_state"),
        ({"requested_state": "CL", "kind": "other", "subject": "x", "colour": "red"}, "colour"),
    ],
)
def test_bad_input_gets_a_clear_4xx(network, bearer, body, field):
    response = _post(Client(), f"{BASE}/", bearer(network.ana), body)
    assert response.status_code in (400, 422), response.content
    assert field in response.content.decode()
    assert not AssistanceRequest.objects.exists()


def test_attachments_upload_download_and_limit(network, make_request, bearer, settings):
    request = make_request()
    client = Client()
    carlos, ana = bearer(network.carlos), bearer(network.ana)
    data = b"2026-12-01T10:00:00Z 198.18.4.7 -> 203.0.113.9\n" * 20
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = client.post(
        f"{BASE}/{request.reference}/attachments",
        {"file": SimpleUploadedFile("../../etc/logs.txt", data, content_type="text/plain")},
        headers=carlos,
    )
    assert upload.status_code == 201, upload.content
    attachment = upload.json()
    assert attachment["sha256"] == hashlib.sha256(data).hexdigest() and attachment["size"] == len(data)
    assert attachment["filename"] == "logs.txt"
    stored = services.attachment_path(attachment["sha256"])
    assert stored.read_bytes() == data  # outside the database, by its hash
    download = client.get(f"{BASE}/{request.reference}/attachments/{attachment['id']}", headers=ana)
    assert download.status_code == 200 and b"".join(download.streaming_content) == data
    assert download["Content-Type"] == "application/octet-stream"
    assert AuditEntry.objects.filter(action="assistance.download").count() == 1
    assert AuditEntry.objects.get(action="assistance.attach").details["sha256"] == attachment["sha256"]

    settings.MINGA_ASSISTANCE_MAX_ATTACHMENT_BYTES = 100
    too_big = client.post(
        f"{BASE}/{request.reference}/attachments",
        {"file": SimpleUploadedFile("big.bin", b"x" * 101)},
        headers=carlos,
    )
    assert too_big.status_code == 400 and "larger than 100 bytes" in too_big.json()["detail"]
    assert request.attachments.count() == 1


def test_deadlines_are_read_by_members_and_set_by_node_admins(network, bearer):
    client = Client()
    listed = client.get(f"{BASE}/deadlines", headers=bearer(network.ana)).json()
    assert listed[0] == {
        "priority": "emergency",
        "acknowledge_within_seconds": 3600,
        "respond_within_seconds": 86400,
    }
    body = {"acknowledge_within_seconds": 1800, "respond_within_seconds": 43200}
    refused = client.put(
        f"{BASE}/deadlines/emergency", body, content_type="application/json", headers=bearer(network.ana)
    )
    assert refused.status_code == 403
    changed = client.put(
        f"{BASE}/deadlines/emergency",
        body,
        content_type="application/json",
        headers=bearer(network.coordinator),
    )
    assert changed.status_code == 200 and changed.json()["acknowledge_within_seconds"] == 1800
    unknown = client.put(
        f"{BASE}/deadlines/someday",
        body,
        content_type="application/json",
        headers=bearer(network.coordinator),
    )
    assert unknown.status_code == 422


def test_the_api_needs_authentication():
    assert Client().get(f"{BASE}/").status_code == 401


def test_a_draft_is_redirected_through_the_api(network, make_request, bearer):
    draft = make_request(submit=False, requested_state=MemberState.objects.get(code="MX"))
    client, ana = Client(), bearer(network.ana)
    changed = client.patch(
        f"{BASE}/{draft.reference}", {"requested_state": "CL"}, content_type="application/json", headers=ana
    )
    assert changed.status_code == 200 and changed.json()["requested_organisation"] == "csirt-cl"
    unknown = client.patch(
        f"{BASE}/{draft.reference}",
        {"requested_organisation": "nobody"},
        content_type="application/json",
        headers=ana,
    )
    assert unknown.status_code == 400 and "No organisation is called nobody" in unknown.json()["detail"]
