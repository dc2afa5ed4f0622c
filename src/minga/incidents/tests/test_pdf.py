"""The PDF summary: it parses, holds the reference, the title, the TLP marking on every page,
the participants, tasks and timeline; it is audited as an export; outsiders get 404."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from minga.core.choices import TLP
from minga.core.models import AuditEntry
from minga.directory.models import MemberState
from minga.incidents import services

pytestmark = pytest.mark.django_db


def _text(content: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(content))
    return reader, "\n".join(page.extract_text() for page in reader.pages)


@pytest.fixture
def worked(open_incident, network):
    incident = open_incident(
        title="Ransomware at Hospital San José",
        description="Hosts encrypted; C2 in two states.",
        affected_states=list(MemberState.objects.filter(code__in=["CL", "BR"])),
    )
    services.add_participant(network.ana, incident, network.cl)
    services.acknowledge(network.carlos, incident)
    services.add_task(network.ana, incident, title="Preserve the proxy logs", organisation=network.cl)
    for n in range(40):  # a long timeline runs over several pages
        services.comment(network.carlos, incident, f"Update {n}: still containing.")
    return incident


def test_the_summary_through_the_page(worked, network, login_client):
    answer = login_client(network.carlos).get(f"/incidents/{worked.reference}/summary.pdf")
    assert answer.status_code == 200 and answer["Content-Type"] == "application/pdf"
    assert f'filename="{worked.reference}.pdf"' in answer["Content-Disposition"]
    reader, text = _text(answer.content)
    assert len(reader.pages) > 1
    for page in reader.pages:  # the marking on every page
        assert "TLP:AMBER" in page.extract_text()
    assert worked.reference in text and "Ransomware at Hospital San José" in text
    assert "Intrusions / System compromise (RSIT)" in text and "Severity High" in text
    assert "Brazil, Chile" in text and "Hosts encrypted" in text
    assert network.cl.name in text
    assert "Acknowledged" in text and "Preserve the proxy logs" in text and "Update 39" in text
    assert reader.metadata.title.startswith(worked.reference)
    export = AuditEntry.objects.filter(action="incident.export").latest("seq")
    assert export.details["format"] == "pdf" and export.details["bytes"] == len(answer.content)
    assert (
        "/summary.pdf" in login_client(network.carlos).get(f"/incidents/{worked.reference}/").content.decode()
    )


def test_the_summary_through_the_api_and_the_red_marking(open_incident, network, client, bearer):
    incident = open_incident(title="Named people only", tlp=TLP.RED)
    answer = client.get(f"/api/v1/incidents/{incident.reference}/pdf", headers=bearer(network.ana))
    assert answer.status_code == 200, answer.content
    _reader, text = _text(answer.content)
    assert "TLP:RED" in text and incident.reference in text


def test_outsiders_get_404(worked, network, login_client, client, bearer):
    before = AuditEntry.objects.filter(action="incident.export").count()
    assert login_client(network.olga).get(f"/incidents/{worked.reference}/summary.pdf").status_code == 404
    assert (
        client.get(f"/api/v1/incidents/{worked.reference}/pdf", headers=bearer(network.olga)).status_code
        == 404
    )
    assert client.get(f"/api/v1/incidents/{worked.reference}/pdf").status_code in (401, 404)
    assert AuditEntry.objects.filter(action="incident.export").count() == before
