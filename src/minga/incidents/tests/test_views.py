"""The incident pages: the board, opening an incident, the incident page and its actions."""

from __future__ import annotations

import pytest
from stix2validator import ValidationOptions, validate_string

from minga.core.testing import assert_invisible_to
from minga.incidents import queries, services
from minga.incidents.choices import ParticipantStatus
from minga.incidents.models import Incident, TimelineEntry

pytestmark = pytest.mark.django_db


def test_a_duty_officer_opens_and_coordinates_an_incident_in_the_browser(login_client, network):
    ana = login_client(network.ana)
    form = ana.get("/incidents/new/")
    assert form.status_code == 200 and b"Classification" in form.content
    opened = ana.post(
        "/incidents/new/",
        {
            "organisation": network.pe.pk,
            "title": "Ransomware at a hospital",
            "description": "Patient records encrypted.",
            "type": "system-compromise",
            "severity": "critical",
            "tlp": "amber",
            "pap": "amber",
            "affected_organisations": network.hospital.short_name,
            "observables": "198.18.5.20\nc2.br.demo.example",
        },
    )
    assert opened.status_code == 302, opened.content.decode()[:2000]
    incident = Incident.objects.get()
    page_url = f"/incidents/{incident.reference}/"
    assert opened["Location"] == page_url
    assert ana.post(f"{page_url}propose/").status_code == 302
    page = ana.get(page_url).content.decode()
    assert "Propose participants" in page and network.br.name in page and "Proposed" in page
    assert ana.post(f"{page_url}participants/", {"organisation": network.br.short_name}).status_code == 302
    assert incident.participants.get(organisation=network.br).status == ParticipantStatus.ADDED

    bruna = login_client(network.bruna)
    board = bruna.get("/incidents/").content.decode()
    assert incident.reference in board and "Notifications for your organisations" in board
    assert "Acknowledge" in bruna.get(page_url).content.decode()
    assert bruna.post(f"{page_url}answer/", {"answer": "acknowledge"}).status_code == 302
    assert incident.participants.get(organisation=network.br).status == ParticipantStatus.ACKNOWLEDGED
    assert bruna.post(f"{page_url}comment/", {"text": "Domain sinkholed."}).status_code == 302
    assert TimelineEntry.objects.filter(kind="comment", text="Domain sinkholed.").exists()
    refused = bruna.post(f"{page_url}status/", {"status": "triage"}, follow=True).content.decode()
    assert "Only the reporting and coordinating" in refused

    assert (
        ana.post(
            f"{page_url}tasks/", {"title": "Block C2", "organisation": network.br.short_name}
        ).status_code
        == 302
    )
    task = incident.tasks.get()
    assert bruna.post(f"{page_url}tasks/{task.pk}/", {"status": "done"}).status_code == 302
    task.refresh_from_db()
    assert task.status == "done"
    missing_reason = ana.post(f"{page_url}status/", {"status": "resolved"}, follow=True).content.decode()
    assert "this change needs a reason" in missing_reason
    assert ana.post(f"{page_url}status/", {"status": "resolved", "reason": "Restored"}).status_code == 302
    incident.refresh_from_db()
    assert incident.status == "resolved"
    edit = ana.post(
        f"{page_url}edit/",
        {
            "title": "Ransomware at a hospital (Chile)",
            "type": "system-compromise",
            "severity": "high",
            "tlp": "amber",
            "pap": "green",
        },
    )
    assert edit.status_code == 302
    incident.refresh_from_db()
    assert incident.pap == "green" and incident.severity == "high"
    export = bruna.get(f"{page_url}stix.json")
    assert export.status_code == 200
    assert validate_string(export.content.decode(), ValidationOptions()).is_valid
    row = f'href="{page_url}">{incident.reference}</a></td>'  # the board's row, not a notification
    assert row in ana.get("/incidents/?severity=high").content.decode()
    assert row not in ana.get("/incidents/?severity=critical").content.decode()


def test_an_outsider_sees_nothing_in_the_ui(login_client, network, open_incident):
    incident = open_incident()
    services.add_participant(network.ana, incident, network.cl)
    services.comment(network.carlos, incident, "inside")
    page = f"/incidents/{incident.reference}/"
    urls = ["/incidents/", f"/incidents/?q={incident.reference}", page, f"{page}stix.json", f"{page}edit/"]
    assert_invisible_to(network.olga, incident, urls=urls)
    olga = login_client(network.olga)
    assert olga.post(f"{page}comment/", {"text": "let me in"}).status_code == 404
    assert olga.post(f"{page}answer/", {"answer": "acknowledge"}).status_code == 404
    assert not TimelineEntry.objects.filter(text="let me in").exists()


def test_bad_forms_come_back_with_messages(login_client, network, open_incident):
    incident = open_incident()
    ana = login_client(network.ana)
    page = f"/incidents/{incident.reference}/"
    bad = ana.post(f"{page}participants/", {"organisation": "nobody"}, follow=True).content.decode()
    assert "No organisation is called nobody" in bad
    bad = ana.post(f"{page}observables/", {"values": "300.1.1.1"}, follow=True).content.decode()
    assert "Value 1" in bad
    bad = ana.post("/incidents/new/", {"organisation": network.pe.pk, "title": "", "type": "x"})
    assert bad.status_code == 200 and b"This field is required" in bad.content


def test_the_board_and_the_page_cost_the_same_queries_however_many_rows(login_client, network, open_incident):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def cost(url: str) -> int:
        client = login_client(network.ana)
        client.get(url)  # warm: the session, the resolution index
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        return len(queries)

    first = open_incident()
    services.add_participant(network.ana, first, network.cl)
    board, page = cost("/incidents/"), cost(f"/incidents/{first.reference}/")
    for _ in range(10):
        other = open_incident()
        services.add_participant(network.ana, other, network.cl)
    for org in (network.br, network.hospital):
        services.add_participant(network.ana, first, org)
    services.add_task(network.ana, first, title="A", organisation=network.br)
    services.add_task(network.ana, first, title="B", organisation=network.hospital)
    for n in range(5):
        services.comment(network.ana, first, f"comment {n}")
    assert cost("/incidents/") == board
    assert cost(f"/incidents/{first.reference}/") == page


def test_the_board_counts_acknowledgements_and_the_page_flags_overdue_tasks(
    login_client, network, open_incident
):
    from datetime import timedelta

    from django.utils import timezone

    incident = open_incident()
    services.add_participant(network.ana, incident, network.cl)
    services.add_participant(network.ana, incident, network.br)
    services.acknowledge(network.carlos, incident)
    (row,) = queries.board(network.ana, queries.Board())
    assert (row.acknowledged_count, row.awaiting_count) == (1, 1)
    services.add_task(
        network.ana,
        incident,
        title="Late",
        organisation=network.cl,
        due_at=timezone.now() - timedelta(hours=1),
    )
    page = login_client(network.ana).get(f"/incidents/{incident.reference}/").content.decode()
    assert "overdue" in page
