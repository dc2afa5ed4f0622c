"""The pages: my requests (incoming and outgoing) with their clocks, the new-request form, the
request page and its actions, times in the reader's time zone, and the coordinators' SLA view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from minga.assistance import services
from minga.assistance.models import AssistanceRequest
from minga.core.services import update_profile
from minga.directory.models import MemberState

pytestmark = pytest.mark.django_db


def test_a_request_is_written_and_submitted_from_the_form(network, login_client):
    client = login_client(network.ana)
    assert client.get("/assistance/new/").status_code == 200
    cl = MemberState.objects.get(code="CL")
    response = client.post(
        "/assistance/new/",
        {
            "organisation": network.pe.pk,
            "requested_state": cl.pk,
            "kind": "incident_response",
            "priority": "urgent",
            "subject": "Help with a wiper",
            "submit_now": "1",
        },
        follow=True,
    )
    request = AssistanceRequest.objects.get()
    assert request.status == "submitted" and request.requested_organisation == network.cl
    assert "submitted; the 24/7 desk of" in response.content.decode()


def test_the_form_shows_what_is_wrong(network, login_client):
    client = login_client(network.ana)
    response = client.post(
        "/assistance/new/",
        {
            "organisation": network.pe.pk,
            "requested_organisation": "csirt-pe",
            "kind": "other",
            "priority": "routine",
            "subject": "x",
        },
    )
    assert response.status_code == 200 and "cannot ask itself" in response.content.decode()
    refused = client.post(
        "/assistance/new/",
        {
            "organisation": network.pe.pk,
            "requested_state": MemberState.objects.get(code="MX").pk,
            "kind": "other",
            "priority": "routine",
            "subject": "x",
            "submit_now": "1",
        },
        follow=True,
    )
    # The draft is kept and the reason shown on its page.
    assert "no confirmed 24/7 contact" in refused.content.decode()
    assert AssistanceRequest.objects.get().status == "draft"


def test_lists_and_actions_from_the_pages(network, make_request, login_client):
    request = make_request()
    carlos = login_client(network.carlos)
    listing = carlos.get("/assistance/").content.decode()
    assert request.reference in listing and "left" in listing
    page = carlos.get(f"/assistance/{request.reference}/").content.decode()
    assert "Acknowledge" in page and "Secret operational detail" in page
    carlos.post(f"/assistance/{request.reference}/act/", {"action": "acknowledge"})
    request.refresh_from_db()
    assert request.status == "acknowledged"
    wrong = carlos.post(f"/assistance/{request.reference}/act/", {"action": "acknowledge"}, follow=True)
    assert "only a request that is submitted can be acknowledged" in wrong.content.decode()
    carlos.post(f"/assistance/{request.reference}/messages/", {"text": "On it."})
    carlos.post(
        f"/assistance/{request.reference}/attachments/",
        {"file": SimpleUploadedFile("logs.txt", b"line\n")},
    )
    carlos.post(f"/assistance/{request.reference}/answer/", {"outcome": "fulfilled", "text": "Done."})
    request.refresh_from_db()
    assert request.status == "answered" and request.attachments.count() == 1
    page = login_client(network.ana).get(f"/assistance/{request.reference}/").content.decode()
    assert "On it." in page and "logs.txt" in page and "Done." in page
    download = login_client(network.ana).get(
        f"/assistance/{request.reference}/attachments/{request.attachments.get().pk}/"
    )
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"line\n"


def test_times_are_shown_in_the_readers_time_zone(network, make_request, login_client):
    request = make_request()
    update_profile(network.carlos, preferred_language="", time_zone="America/Santiago")
    fixed = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    AssistanceRequest.objects.filter(pk=request.pk).update(acknowledge_by=fixed)
    santiago = login_client(network.carlos).get(f"/assistance/{request.reference}/").content.decode()
    assert "2026-07-01 08:00" in santiago  # UTC-4 in July
    utc = login_client(network.ana).get(f"/assistance/{request.reference}/").content.decode()
    assert "2026-07-01 12:00" in utc


def test_the_sla_view_shows_open_requests_and_compliance_per_state(network, make_request, login_client):
    late = make_request(priority="emergency")
    on_time = make_request(priority="routine", subject="Routine question")
    services.acknowledge(network.carlos, on_time)
    AssistanceRequest.objects.filter(pk=late.pk).update(acknowledge_by=timezone.now() - timedelta(minutes=10))
    assert login_client(network.ana).get("/assistance/sla/").status_code == 403
    page = login_client(network.coordinator).get("/assistance/sla/").content.decode()
    assert late.reference in page and on_time.reference in page
    assert "overdue by" in page
    assert "50 %" in page  # Chile: one acknowledged in time, one overdue
    assert "Routine question" not in page and "Preserve the logs" not in page
    changed = login_client(network.coordinator).post(
        "/assistance/sla/",
        {"priority": "routine", "acknowledge_hours": "24", "respond_hours": "240"},
        follow=True,
    )
    assert "Deadlines changed" in changed.content.decode()
    assert services.deadlines_for("routine") == (timedelta(hours=24), timedelta(hours=240))


def test_the_navigation_links_to_the_requests(network, login_client):
    html = login_client(network.ana).get("/assistance/").content.decode()
    assert 'href="/assistance/"' in html and "SLA view" not in html
    assert 'href="/assistance/sla/"' in login_client(network.coordinator).get("/assistance/").content.decode()


def test_a_draft_is_changed_from_its_page(network, make_request, login_client):
    draft = make_request(submit=False)
    client = login_client(network.ana)
    assert "Change the draft" in client.get(f"/assistance/{draft.reference}/").content.decode()
    form = client.get(f"/assistance/{draft.reference}/edit/")
    assert form.status_code == 200 and "Preserve the logs" in form.content.decode()
    client.post(
        f"/assistance/{draft.reference}/edit/",
        {
            "requested_state": draft.requested_state_id,
            "requested_organisation": "police-cl",
            "kind": "investigation",
            "priority": "urgent",
            "subject": "Now for the police",
        },
    )
    draft.refresh_from_db()
    assert draft.requested_organisation == network.police_cl and draft.subject == "Now for the police"
    assert login_client(network.carlos).get(f"/assistance/{draft.reference}/edit/").status_code == 404
    services.submit(network.ana, draft)
    assert client.get(f"/assistance/{draft.reference}/edit/").status_code == 403
