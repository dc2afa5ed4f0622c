"""Who sees what: the two parties read the content; the network's coordinators see the metadata
(who, kind, priority, timings) and never the content; everyone else gets 404 on the page, the
API and the attachment download. The queryset filter and the object check agree."""

from __future__ import annotations

import itertools

import pytest

from minga.assistance import queries, services
from minga.core.choices import Role
from minga.core.services import add_membership, remove_membership

pytestmark = pytest.mark.django_db


def _attach(network, request):
    return services.add_attachment(
        network.carlos, request, filename="logs.txt", content_type="text/plain", chunks=[b"preserved logs\n"]
    )


def test_a_third_organisation_sees_nothing_anywhere(network, make_request, login_client, bearer):
    request = make_request()
    attachment = _attach(network, request)
    page = f"/assistance/{request.reference}/"
    api = f"/api/v1/assistance/{request.reference}"
    client = login_client(network.bruna)
    assert client.get(page).status_code == 404
    assert client.get(f"{page}attachments/{attachment.pk}/").status_code == 404
    assert client.post(f"{page}messages/", {"text": "hi"}).status_code == 404
    headers = bearer(network.bruna)
    for path in (api, f"{api}/thread", f"{api}/attachments", f"{api}/attachments/{attachment.pk}"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not found."}
    assert client.post(f"{api}/acknowledge", headers=headers).status_code == 404
    listed = client.get("/api/v1/assistance/", headers=headers).json()
    assert listed["count"] == 0
    assert request.reference not in client.get("/assistance/").content.decode()


def test_the_coordinator_sees_metadata_never_content(network, make_request, login_client, bearer):
    request = make_request()
    attachment = _attach(network, request)
    services.post_message(network.carlos, request, "Internal note about the suspect")
    client = login_client(network.coordinator)
    page = client.get(f"/assistance/{request.reference}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert request.reference in html and network.cl.name in html and "Data preservation" in html
    for secret in ("Preserve the logs", "Secret operational detail", "Budapest", "Internal note", "logs.txt"):
        assert secret not in html
    assert client.get(f"/assistance/{request.reference}/attachments/{attachment.pk}/").status_code == 404
    headers = bearer(network.coordinator)
    body = client.get(f"/api/v1/assistance/{request.reference}", headers=headers).json()
    assert body["content"] is False and body["kind"] == "preservation" and body["priority"] == "emergency"
    assert body["requested_organisation"] == "csirt-cl" and body["acknowledge_by"]
    for field in ("subject", "description", "legal_basis", "legal_reference", "answer"):
        assert body[field] is None
    for suffix in ("thread", "attachments", f"attachments/{attachment.pk}"):
        assert (
            client.get(f"/api/v1/assistance/{request.reference}/{suffix}", headers=headers).status_code == 404
        )
    listed = client.get("/api/v1/assistance/", headers=headers).json()["items"]
    assert [(r["reference"], r["content"], r["subject"]) for r in listed] == [
        (request.reference, False, None)
    ]
    # A coordinator cannot act on a request between others.
    assert (
        client.post(f"/api/v1/assistance/{request.reference}/acknowledge", headers=headers).status_code == 404
    )


def test_drafts_are_the_requesting_organisations_alone(network, make_request, login_client):
    draft = make_request(submit=False)
    for user in (network.carlos, network.coordinator, network.bruna):
        assert login_client(user).get(f"/assistance/{draft.reference}/").status_code == 404
    assert login_client(network.ana).get(f"/assistance/{draft.reference}/").status_code == 200


def test_the_parties_read_content_read_only_members_included(network, make_request, login_client):
    request = make_request()
    for user in (network.ana, network.carlos, network.rosa):
        html = login_client(user).get(f"/assistance/{request.reference}/").content.decode()
        assert "Secret operational detail" in html
    # A membership ended: nothing any more.
    remove_membership(None, network.rosa.memberships.get())
    network.rosa.refresh_from_db()
    assert login_client(network.rosa).get(f"/assistance/{request.reference}/").status_code == 404


def test_the_queryset_filter_and_the_object_check_agree(network, make_request, make_user):
    requests = [make_request(submit=False), make_request()]
    withdrawn = make_request()
    services.withdraw(network.ana, withdrawn, "done")
    requests.append(withdrawn)
    both = make_user("both", network.pe, Role.ANALYST)
    add_membership(None, network.cl, both, Role.ANALYST)
    readers = [network.ana, network.carlos, network.rosa, network.bruna, network.coordinator, both, None]
    for reader, request in itertools.product(readers, requests):
        listed = queries.readable(reader).filter(pk=request.pk).exists()
        assert listed == queries.can_read_content(reader, request), (reader, request.status)


def test_reading_a_requests_content_is_audited_its_metadata_not(network, make_request, login_client, bearer):
    from minga.core.models import AuditEntry

    request = make_request()
    login_client(network.carlos).get(f"/assistance/{request.reference}/")
    login_client(network.ana).get(f"/api/v1/assistance/{request.reference}", headers=bearer(network.ana))
    login_client(network.coordinator).get(f"/assistance/{request.reference}/")
    readers = list(
        AuditEntry.objects.filter(action="assistance.read")
        .order_by("seq")
        .values_list("actor_label", flat=True)
    )
    assert readers == ["carlos", "ana"]
