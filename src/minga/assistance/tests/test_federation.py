"""Mutual-assistance requests across two real nodes on the loopback: node A is this test process
(its live server, its database), where Peru's CSIRT works; node B is a ``minga serve`` process
with its own database, where Chile's CSIRT works. A request travels to B only, B's 24/7 desk is
e-mailed through a real SMTP server, B acknowledges and answers, and A sees it; Brazil's CSIRT
(a member of both nodes' directories) sees nothing on either node, and no other node receives
it."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from minga.assistance import federation as assistance_federation
from minga.assistance import queries, services
from minga.assistance.choices import RequestStatus
from minga.assistance.models import AssistanceRequest, RequestMail
from minga.assistance.tests.conftest import Network
from minga.core import access
from minga.core import services as core_services
from minga.core.choices import TLP
from minga.core.models import AuditEntry
from minga.directory.models import MemberState
from minga.intel import queries as intel_queries
from minga.intel import stix
from minga.intel.models import StixObject
from minga.taxii import federation
from minga.taxii.models import Peer
from minga.taxii.tests.nodes import Node

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("reference_data"),
]
ORGS = ("csirt-pe", "csirt-cl", "csirt-br")

# Node B's directory and people: the same organisations (short names are the network's keys),
# Chile's CSIRT with a confirmed 24/7 desk, an analyst of Chile and one of Brazil with tokens.
B_SETUP = """
from minga.core import services as core
from minga.core.models import Organisation
from minga.directory import services as directory
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState
for short, code in (("csirt-pe", "PE"), ("csirt-cl", "CL"), ("csirt-br", "BR")):
    org = Organisation.objects.get(short_name=short)
    directory.update_profile(None, org, kind=OrganisationKind.NATIONAL_CSIRT,
                             state=MemberState.objects.get(code=code), sectors=[])
desk = directory.save_contact(None, Organisation.objects.get(short_name="csirt-cl"), role="duty",
                              name="CL desk on B", email="desk@csirt-cl.example.org", phone_numbers=[],
                              languages=["es"], hours="24/7", time_zone="UTC")
directory.confirm_contact(desk, via="test")
result = {}
for name, short in (("carla", "csirt-cl"), ("beto", "csirt-br")):
    user = core.create_user(None, username=name, email=f"{name}@example.org",
                            password="correct horse battery staple 42",
                            organisation=Organisation.objects.get(short_name=short), role="analyst")
    result[name] = core.create_api_token(None, user, name="test").raw
"""


@pytest.fixture
def node_b(tmp_path: Path, smtp_server: list[Any], settings: Any) -> Iterator[Node]:
    node = Node("node-b", tmp_path)
    # B's mail goes to the real SMTP server this test runs.
    node.env["MINGA_EMAIL_URL"] = f"smtp://127.0.0.1:{settings.EMAIL_PORT}"
    node.start(*ORGS)
    yield node
    node.stop()


def pair(live_server: Any, node_b: Node) -> Peer:
    """A registers B (hosting Chile's CSIRT); B registers A (hosting Peru's) with A's token."""
    new = federation.add_peer(None, name="node-b", url=node_b.api_root, hosts=["csirt-cl"])
    token_for_a = node_b.minga(
        "peer",
        "add",
        "node-a",
        "--url",
        f"{live_server.url}/taxii2/api/",
        "--hosts",
        "csirt-pe",
        "--token",
        new.token,
    ).stdout.strip()
    return federation.set_credential(None, new.peer, token_for_a)


def on_b(node: Node, request_uuid: str, code: str = "") -> Any:
    """Run ``code`` on B with ``request`` (B's copy) and ``services`` at hand; its result."""
    body = textwrap.indent(textwrap.dedent(code).strip(), " " * 8)
    return node.python(
        f"""
        from minga.assistance import services, queries
        from minga.assistance.models import AssistanceRequest, RequestMail
        from minga.core.models import User
        request = AssistanceRequest.objects.get(uuid={request_uuid!r})
{body}
        request.refresh_from_db()
        mails = list(RequestMail.objects.filter(request=request).values("event", "level", "recipients", "pk"))
        result = {{
            "reference": request.reference, "status": request.status, "outcome": request.outcome,
            "answer": request.answer, "subject": request.subject, "requesting_node": request.requesting_node,
            "requested_node": request.requested_node, "acknowledge_by": request.acknowledge_by.isoformat(),
            "respond_by": request.respond_by.isoformat(), "submitted_at": request.submitted_at.isoformat(),
            "acknowledged_at": request.acknowledged_at and request.acknowledged_at.isoformat(),
            "answered_at": request.answered_at and request.answered_at.isoformat(),
            "closed_at": request.closed_at and request.closed_at.isoformat(),
            "mails": mails, "thread": [[e.kind, e.organisation.short_name if e.organisation else "", e.text]
                                       for e in request.thread.all()],
            "extra": locals().get("extra"),
        }}
        """
    )


def test_a_request_travels_to_the_requested_node_and_its_answer_comes_back(
    live_server: Any, node_b: Node, network: Network, settings: Any, smtp_server: list[Any]
) -> None:
    settings.MINGA_NODE_ID = "node-a"
    tokens = node_b.python(B_SETUP)
    peer_b = pair(live_server, node_b)

    # A liaison of Peru's CSIRT, on A, asks Chile for an emergency preservation of logs.
    request = services.create_request(
        network.ana,
        network.pe,
        requested_state=MemberState.objects.get(code="CL"),
        kind="preservation",
        priority="emergency",
        subject="Preserve the logs of 198.18.4.7",
        description="Secret operational detail",
        legal_basis="Budapest Convention art. 29",
        legal_reference="PE-2026-17",
    )
    services.submit(network.ana, request)
    request.refresh_from_db()
    assert request.requested_node == "node-b"
    assert not RequestMail.objects.filter(request=request).exists()  # B tells its own desk
    stored = StixObject.objects.get(stix_id=assistance_federation.stix_id(request))
    assert stored.tlp == TLP.AMBER_STRICT and stored.origin_organisation == network.pe
    assert sorted(o.short_name for o in stored.recipient_organisations.all()) == ["csirt-cl", "csirt-pe"]
    # Chile's side works on B: a Chilean account on A cannot act for it here.
    with pytest.raises(ValidationError, match="node-b"):
        services.acknowledge(network.carlos, request)
    # Nor does A escalate what B's desk must acknowledge.
    assert services.escalate_overdue(request.acknowledge_by + timedelta(hours=3)) == []

    # The rule: only a node hosting one of the two parties receives it, and only from A.
    for name, hosts in (("node-c", ["csirt-br"]), ("node-d", [])):
        other = federation.add_peer(None, name=name, url=f"http://127.0.0.1:9/{name}/", hosts=hosts).peer
        assert not access.may_distribute(stored, federation.peer_node(other))
        assert not federation.distributable(other).filter(pk=stored.pk).exists()
    assert federation.distributable(peer_b).filter(pk=stored.pk).exists()

    # B pulls: its copy holds the deadlines set on A, and its 24/7 desk is e-mailed, once.
    assert "pulled 1" in node_b.minga("sync", "node-a").stdout
    uid = str(request.uuid)
    b = on_b(node_b, uid, "services.deliver_mail(RequestMail.objects.get(request=request).pk)")
    assert (b["status"], b["requesting_node"], b["requested_node"]) == ("submitted", "node-a", "")
    assert b["subject"] == request.subject and b["reference"] == request.reference
    assert b["acknowledge_by"] == request.acknowledge_by.isoformat()
    assert b["respond_by"] == request.respond_by.isoformat()
    assert [(m["event"], m["recipients"]) for m in b["mails"]] == [
        ("submitted", ["desk@csirt-cl.example.org"])
    ]
    assert len(smtp_server) == 1 and smtp_server[0].rcpt_tos == ["desk@csirt-cl.example.org"]
    mail = smtp_server[0].content.decode()
    assert request.reference in mail and "Secret operational detail" not in mail
    # Syncing again brings nothing and tells no one twice.
    assert "pulled 0" in node_b.minga("sync", "node-a").stdout

    # Brazil's analyst on B: 404 on the request and on its object, nothing in the intel list.
    headers = {"Authorization": f"Bearer {tokens['beto']}"}
    assert (
        requests.get(
            f"{node_b.url}/api/v1/assistance/{request.reference}", headers=headers, timeout=30
        ).status_code
        == 404
    )
    assert (
        requests.get(
            f"{node_b.url}/api/v1/intel/objects/{stored.stix_id}", headers=headers, timeout=30
        ).status_code
        == 404
    )
    listed = requests.get(f"{node_b.url}/api/v1/intel/objects", headers=headers, timeout=30)
    assert listed.status_code == 200 and stored.stix_id not in listed.text
    carla = {"Authorization": f"Bearer {tokens['carla']}"}
    seen = requests.get(f"{node_b.url}/api/v1/assistance/{request.reference}", headers=carla, timeout=30)
    assert seen.status_code == 200 and seen.json()["subject"] == request.subject

    # The deadlines run on B: an hour later unacknowledged, B escalates (here: to its coordinator).
    due = on_b(
        node_b,
        uid,
        """
        from datetime import timedelta
        extra = services.escalate_overdue(request.acknowledge_by + timedelta(minutes=1))
        """,
    )
    assert due["extra"] == [request.reference]

    # Chile's analyst, on B, acknowledges, writes, and answers.
    b = on_b(
        node_b,
        uid,
        """
        carla = User.objects.get(username="carla")
        services.acknowledge(carla, request)
        services.post_message(carla, request, "Logs frozen; we need the time zone of your capture.")
        services.answer(carla, request, "fulfilled", "Preserved under CL-2026-4, 90 days.")
        """,
    )
    assert b["status"] == "answered" and b["acknowledged_at"]

    # A pulls B's versions: acknowledged, then the message, then answered, with B's times.
    outcome = federation.sync(Peer.objects.get(pk=peer_b.pk))
    assert not outcome.error and outcome.pulled == 3
    request.refresh_from_db()
    assert request.status == RequestStatus.ANSWERED and request.outcome == "fulfilled"
    assert request.acknowledged_at is not None and request.acknowledged_at.isoformat() == b["acknowledged_at"]
    assert request.answered_at is not None and request.answered_at.isoformat() == b["answered_at"]
    assert request.answer == "Preserved under CL-2026-4, 90 days."
    assert request.first_response_at is not None and request.first_response_at <= request.answered_at
    thread = [
        (e.kind, e.organisation.short_name if e.organisation else "", e.text) for e in request.thread.all()
    ]
    assert ("message", "csirt-cl", "Logs frozen; we need the time zone of your capture.") in thread
    assert [(k, o) for k, o, _t in thread if k == "status"][-2:] == [("status", "csirt-cl")] * 2
    assert not AuditEntry.objects.filter(action="assistance.federation_refused").exists()

    # Brazil's analyst on A: nothing either, through the services, the intel store and HTTP.
    with pytest.raises(Http404):
        queries.get_or_404(network.bruna, request.reference)
    assert not intel_queries.visible(network.bruna).filter(stix_id=stored.stix_id).exists()
    copies = intel_queries.visible(network.ana).filter(stix_id=stored.stix_id)
    assert set(copies.values_list("origin_organisation__short_name", flat=True)) == {"csirt-pe", "csirt-cl"}
    bruna = core_services.create_api_token(None, network.bruna, name="test").raw
    answer = requests.get(
        f"{live_server.url}/api/v1/assistance/{request.reference}",
        headers={"Authorization": f"Bearer {bruna}"},
        timeout=30,
    )
    assert answer.status_code == 404

    # Peru closes it on A while B is down: A's push fails, the version waits, and A pushes it
    # when B is back (B applies it in its web server, receiving the envelope).
    node_b.stop()
    services.close(network.ana, request)
    assert "cannot be reached" in federation.sync(Peer.objects.get(pk=peer_b.pk)).error
    node_b.start()
    Peer.objects.filter(pk=peer_b.pk).update(next_attempt_at=None)
    back = federation.sync(Peer.objects.get(pk=peer_b.pk))
    assert back.error == "" and back.pushed == 1
    b = on_b(node_b, uid)
    assert b["status"] == "closed" and b["closed_at"]
    assert len(b["mails"]) == 1  # the submission (B has no coordinator address to escalate to)


def received(obj: dict[str, Any], origin: str, node: str = "node-b") -> dict[str, Any]:
    """``obj`` as a peer sends it: marked AMBER+STRICT for the two parties, with provenance."""
    sent = stix.with_tlp_marking(dict(obj), TLP.AMBER_STRICT)
    sent["extensions"] = {
        federation.EXTENSION_ID: {
            "extension_type": "property-extension",
            "origin_node": node,
            "origin_organisation": origin,
            "recipient_organisations": ["csirt-cl", "csirt-pe"],
        }
    }
    return sent


@pytest.mark.django_db
def test_a_peer_may_only_make_the_moves_of_the_side_it_hosts(
    network: Network, make_request: Any, settings: Any, login_client: Any
) -> None:
    settings.MINGA_NODE_ID = "node-a"
    peer_b = federation.add_peer(None, name="node-b", url="http://127.0.0.1:9/b/", hosts=["csirt-cl"]).peer
    peer_c = federation.add_peer(None, name="node-c", url="http://127.0.0.1:9/c/", hosts=["csirt-br"]).peer
    request = make_request()
    assert request.requested_node == "node-b"
    mine = orjson.loads(StixObject.objects.get(stix_id=assistance_federation.stix_id(request)).raw)

    def version(n: int, **changes: Any) -> dict[str, Any]:
        return {
            **mine,
            "modified": f"2030-01-01T00:00:{n:02d}.000Z",
            "messages": [],
            "attachments": [],
            **changes,
        }

    refused = AuditEntry.objects.filter(action="assistance.federation_refused")
    # B claims Peru's voice and withdraws: refused (Peru works on A), audited, nothing changes.
    federation.receive(peer_b, enumerate([received(version(1, status="withdrawn"), "csirt-pe")]))
    # B, in Chile's name, tries a move of the requesting side: refused.
    federation.receive(peer_b, enumerate([received(version(2, status="withdrawn"), "csirt-cl")]))
    # C (hosting Brazil) speaks for Chile: refused, and so is Brazil, no party.
    federation.receive(peer_c, enumerate([received(version(3, status="answered"), "csirt-cl", "node-c")]))
    federation.receive(peer_c, enumerate([received(version(4, status="answered"), "csirt-br", "node-c")]))
    request.refresh_from_db()
    assert request.status == RequestStatus.SUBMITTED
    assert refused.count() == 4
    assert (
        "may not move"
        in refused.filter(details__version__startswith="2030-01-01T00:00:02").get().details["reason"]
    )
    # Chile, from B, acknowledges with a message and a file (its bytes stay on B): applied,
    # once, even if the same version comes again.
    extra = {
        "status": "acknowledged",
        "acknowledged_at": "2030-01-01T00:00:05.000Z",
        "messages": [{"id": "m-1", "created": "2030-01-01T00:00:05.000Z", "text": "On it."}],
        "attachments": [
            {
                "id": "f-1",
                "created": "2030-01-01T00:00:05.000Z",
                "filename": "hold.pdf",
                "size": 12,
                "sha256": "ab" * 32,
            }
        ],
    }
    ack = received(version(5, **extra), "csirt-cl")
    federation.receive(peer_b, enumerate([ack]))
    again = received(version(5, **extra), "csirt-cl")
    assert federation.receive(peer_b, enumerate([again])).duplicates == 1
    request.refresh_from_db()
    assert request.status == RequestStatus.ACKNOWLEDGED
    assert request.acknowledged_at is not None and request.acknowledged_at.year == 2030
    assert request.thread.filter(kind="status", organisation=network.cl).count() == 1
    assert request.thread.filter(kind="message", organisation=network.cl, text="On it.").count() == 1
    assert request.first_response_at is not None and request.first_response_at.year == 2030
    # The page shows it all to Peru, with where Chile works and where the file is kept; Brazil: 404.
    page = login_client(network.ana).get(f"/assistance/{request.reference}/")
    assert page.status_code == 200
    assert "hold.pdf" in page.text and "kept on node node-b" in page.text and "On it." in page.text
    assert login_client(network.bruna).get(f"/assistance/{request.reference}/").status_code == 404
    # In the intel store, neither Brazil nor the coordinator (metadata only) reads either copy.
    stix_id = assistance_federation.stix_id(request)
    assert intel_queries.visible(network.ana).filter(stix_id=stix_id, origin_organisation=network.cl).exists()
    for outsider in (network.bruna, network.coordinator):
        # (what node-c sent in Brazil's own name above is Brazil's, not a party's copy)
        parties = (network.pe, network.cl)
        assert (
            not intel_queries.visible(outsider)
            .filter(stix_id=stix_id, origin_organisation__in=parties)
            .exists()
        )
    assert login_client(network.coordinator).get(f"/api/v1/intel/objects/{stix_id}").status_code == 404
    # Chile's people on A see no button to act for Chile: that is done on B.
    assert (
        'value="acknowledge"'
        not in login_client(network.carlos).get(f"/assistance/{request.reference}/").text
    )
    # A forged request that Peru never sent, opened in Chile's name, is not created.
    forged = version(6, id=f"{assistance_federation.REQUEST}--{uuid.uuid4()}")
    forged["request_uuid"] = forged["id"].split("--")[1]
    federation.receive(peer_b, enumerate([received(forged, "csirt-cl")]))
    assert not AssistanceRequest.objects.filter(uuid=forged["request_uuid"]).exists()
    assert refused.count() == 5


@pytest.mark.django_db
def test_requests_between_parties_of_this_node_stay_here(network: Network, make_request: Any) -> None:
    request = make_request()
    services.acknowledge(network.carlos, request)
    assert request.requested_node == "" and request.remote_node == ""
    assert not StixObject.objects.filter(type=assistance_federation.REQUEST).exists()
    with pytest.raises(PermissionDenied):
        services.acknowledge(network.bruna, request)


@pytest.mark.django_db
def test_the_requested_node_opens_the_request_once_and_follows_the_requesting_side(
    network: Network, settings: Any
) -> None:
    settings.MINGA_NODE_ID = "node-b"  # this node hosts Chile; Peru works on node-a
    peer_a = federation.add_peer(None, name="node-a", url="http://127.0.0.1:9/a/", hosts=["csirt-pe"]).peer
    request_uuid = str(uuid.uuid4())
    body = {
        "type": assistance_federation.REQUEST,
        "spec_version": "2.1",
        "id": f"{assistance_federation.REQUEST}--{request_uuid}",
        "created": "2030-01-01T00:00:00.000Z",
        "modified": "2030-01-01T00:00:00.000Z",
        "name": "MAR-2030-000007",
        "request_uuid": request_uuid,
        "reference": "MAR-2030-000007",
        "requesting_organisation": "csirt-pe",
        "requested_organisation": "csirt-cl",
        "requesting_state": "PE",
        "requested_state": "CL",
        "kind": "information",
        "priority": "urgent",
        "subject": "Who holds 198.18.9.9?",
        "status": "submitted",
        "submitted_at": "2030-01-01T00:00:00.123456Z",
        "acknowledge_by": "2030-01-01T04:00:00.123456Z",
        "respond_by": "2030-01-04T00:00:00.123456Z",
        "messages": [],
        "attachments": [],
    }
    federation.receive(peer_a, enumerate([received(body, "csirt-pe", "node-a")]))
    request = AssistanceRequest.objects.get(uuid=request_uuid)
    assert (request.reference, request.status, request.requesting_node) == (
        "MAR-2030-000007",
        "submitted",
        "node-a",
    )
    assert request.acknowledge_by is not None and request.acknowledge_by.microsecond == 123456
    assert request.requested_state.code == "CL" and request.requesting_state is not None
    mails = RequestMail.objects.filter(request=request)
    assert [(m.event, m.recipients) for m in mails] == [("submitted", ["duty@csirt-cl.example.org"])]
    assert AuditEntry.objects.filter(
        action="assistance.received", details__reference=request.reference
    ).exists()
    # Peru's people on this node do not act for Peru here: that is done on node-a.
    with pytest.raises(ValidationError, match="node-a"):
        services.withdraw(network.ana, request, "no longer needed")
    # The same version again is a replay: nothing more, no second e-mail.
    assert federation.receive(peer_a, enumerate([received(body, "csirt-pe", "node-a")])).duplicates == 1
    assert mails.count() == 1 and AssistanceRequest.objects.count() == 1

    # Peru withdraws on node-a; then claims an answer, which is Chile's to give: refused.
    withdrawn = {
        **body,
        "modified": "2030-01-01T00:10:00.000Z",
        "status": "withdrawn",
        "withdrawal_reason": "Found it ourselves.",
        "withdrawn_at": "2030-01-01T00:10:00.000000Z",
    }
    federation.receive(peer_a, enumerate([received(withdrawn, "csirt-pe", "node-a")]))
    request.refresh_from_db()
    assert (request.status, request.withdrawal_reason) == ("withdrawn", "Found it ourselves.")
    assert request.withdrawn_at is not None and request.withdrawn_at.minute == 10
    claimed = {**withdrawn, "modified": "2030-01-01T00:11:00.000Z", "status": "answered", "answer": "x"}
    federation.receive(peer_a, enumerate([received(claimed, "csirt-pe", "node-a")]))
    request.refresh_from_db()
    assert request.status == "withdrawn" and request.answer == ""
    assert AuditEntry.objects.filter(action="assistance.federation_refused").count() == 1
    # A withdrawn request is not escalated; Chile closes it here, and that travels to node-a.
    assert services.escalate_overdue(request.respond_by + timedelta(days=1)) == []
    services.close(network.carlos, request)
    latest = StixObject.objects.filter(stix_id=body["id"], origin_organisation=network.cl).get()
    assert orjson.loads(latest.raw)["status"] == "closed"
    assert access.may_distribute(latest, federation.peer_node(peer_a))
