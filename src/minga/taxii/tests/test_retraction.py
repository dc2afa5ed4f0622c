"""Retraction across a ring of three real nodes (A: this test process; B and C: ``minga serve``
processes with their own databases): an object shared by mistake is narrowed or deleted once,
every node that held a copy applies it and acknowledges, including a node that was down when
the retraction was issued, and the ring carries nothing in circles."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from minga.core.choices import TLP
from minga.core.models import AuditEntry, Organisation
from minga.intel import stix
from minga.intel.models import StixObject
from minga.intel.tests.bundles import TS, indicator
from minga.taxii import federation, retraction
from minga.taxii.models import Peer
from minga.taxii.tests.conftest import store
from minga.taxii.tests.nodes import Node, link

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
ORGS = ("andina", "caribe", "sur")


@pytest.fixture
def ring(tmp_path: Path, live_server: Any, make_org: Any, settings: Any) -> Iterator[dict[str, Any]]:
    settings.MINGA_NODE_ID = "node-a"
    orgs = {name: make_org(name) for name in ORGS}
    b = Node("node-b", tmp_path).start(*ORGS)
    c = Node("node-c", tmp_path).start(*ORGS)
    a_api = f"{live_server.url}/taxii2/api/"
    try:
        for other, hosts in ((b, "caribe"), (c, "sur")):
            new = federation.add_peer(None, name=other.name, url=other.api_root, hosts=[hosts])
            token = other.minga(
                "peer", "add", "node-a", "--url", a_api, "--hosts", "andina", "--token", new.token
            ).stdout
            federation.set_credential(None, new.peer, token.strip())
        link(b, c, node_hosts="caribe", other_hosts="sur")
        yield {"b": b, "c": c, **orgs}
    finally:
        b.stop()
        c.stop()


def sync_all(*nodes: Node) -> None:
    """One round: A syncs with its peers, then each other node with its own."""
    for peer in Peer.objects.all():
        federation.sync(peer)
    for node in nodes:
        node.minga("sync", check=False)


def copies(node: Node, stix_id: str) -> list[dict[str, Any]]:
    return [o for o in node.objects() if o["id"] == stix_id]


def test_a_retraction_reaches_every_copy_and_each_node_acknowledges(ring: dict[str, Any]) -> None:
    b, c = ring["b"], ring["c"]
    andina: Organisation = ring["andina"]
    mistake = indicator("198.51.100.66")  # shared as GREEN, should have been AMBER for caribe
    wide = indicator("198.51.100.67", name="sent to the wrong teams")  # AMBER for caribe and sur
    store(andina, mistake, tlp=TLP.GREEN)
    store(andina, wide, tlp=TLP.AMBER, recipients=(ring["caribe"], ring["sur"]))
    for _round in range(2):
        sync_all(b, c)
    for node in (b, c):
        held = {o["id"]: o for o in node.objects()}
        assert {mistake["id"], wide["id"]} <= set(held), node.name
        assert len(copies(node, mistake["id"])) == 1  # the ring carried it once, not in circles
        assert held[mistake["id"]]["origin_node"] == "node-a"
    assert StixObject.objects.filter(stix_id=mistake["id"]).count() == 1  # A's own, never back

    # C is down when the retractions are issued.
    c.stop()
    narrowed = retraction.retract(
        None, andina, mistake["id"], "narrow", tlp=TLP.AMBER, recipients=[ring["caribe"]]
    )
    deleted = retraction.retract(None, andina, wide["id"], "delete", reason="sent to the wrong teams")
    assert StixObject.objects.get(stix_id=mistake["id"]).tlp == TLP.AMBER
    assert not StixObject.objects.filter(stix_id=wide["id"]).exists()
    sync_all(b)  # B applies both; A cannot reach C
    on_b = copies(b, mistake["id"])
    assert [(o["tlp"], o["recipients"]) for o in on_b] == [(TLP.AMBER, ["caribe"])]
    assert copies(b, wide["id"]) == []
    sync_all(b)  # B's acknowledgements come back to A
    states = {s.node: s.outcome for s in retraction.status(deleted.retraction_id)}
    assert states == {"node-b": "applied", "node-c": "pending"}

    c.start()
    for _round in range(2):
        sync_all(b, c)
    on_c = copies(c, mistake["id"])
    assert [(o["tlp"], o["recipients"]) for o in on_c] == [(TLP.AMBER, ["caribe"])]
    assert copies(c, wide["id"]) == []
    for issued in (narrowed, deleted):
        assert {s.node: s.outcome for s in retraction.status(issued.retraction_id)} == {
            "node-b": "applied",
            "node-c": "applied",
        }
    assert AuditEntry.objects.filter(action="federation.retraction_issued").count() == 2
    # Nothing travels in circles: after the rounds, one more moves nothing new anywhere.
    before = (StixObject.objects.count(), len(b.objects()), len(c.objects()))
    sync_all(b, c)
    assert (StixObject.objects.count(), len(b.objects()), len(c.objects())) == before


@pytest.mark.django_db
def test_a_retraction_narrows_only_what_the_organisation_shared_here(make_org: Any) -> None:
    andina, caribe = make_org("andina"), make_org("caribe")
    obj = indicator("198.51.100.70")
    store(andina, obj, tlp=TLP.AMBER, recipients=(caribe,))
    with pytest.raises(ValidationError, match="broader"):
        retraction.retract(None, andina, obj["id"], "narrow", tlp=TLP.GREEN)
    with pytest.raises(ValidationError, match="only remove recipients"):
        retraction.retract(
            None, andina, obj["id"], "narrow", tlp=TLP.AMBER, recipients=[caribe, make_org("x")]
        )
    with pytest.raises(ValidationError, match="shared no object"):
        retraction.retract(None, caribe, obj["id"], "delete")
    assert StixObject.objects.get(stix_id=obj["id"]).tlp == TLP.AMBER


def received(
    obj: dict[str, Any], tlp: str, origin: str, recipients: list[str], node: str = "node-b"
) -> tuple:
    """``obj`` as a peer sends it: marked, with the provenance extension."""
    sent = stix.with_tlp_marking(dict(obj), tlp)
    sent["extensions"] = {
        federation.EXTENSION_ID: {
            "extension_type": "property-extension",
            "origin_node": node,
            "origin_organisation": origin,
            "recipient_organisations": recipients,
        }
    }
    return sent


@pytest.mark.django_db
def test_a_received_retraction_may_narrow_or_revoke_never_widen(make_org: Any, settings: Any) -> None:
    settings.MINGA_NODE_ID = "node-a"
    andina, caribe = make_org("andina"), make_org("caribe")
    peer = federation.add_peer(
        None, name="node-b", url="http://127.0.0.1:9/taxii2/api/", hosts=["caribe"]
    ).peer
    secret = indicator("198.51.100.80")
    federation.receive(peer, enumerate([received(secret, TLP.AMBER_STRICT, "caribe", ["andina"])]))
    copy = StixObject.objects.get(stix_id=secret["id"])
    assert (copy.tlp, copy.origin_node, copy.received_from) == (TLP.AMBER_STRICT, "node-b", "node-b")

    def retraction_of(action: str, **extra: Any) -> dict[str, Any]:
        return {
            "type": retraction.RETRACTION,
            "spec_version": "2.1",
            "id": f"{retraction.RETRACTION}--{uuid.uuid4()}",
            "created": TS,
            "modified": TS,
            "target_ref": secret["id"],
            "action": action,
            **extra,
        }

    # A forged (or garbled) retraction that would make the copy public is refused.
    forged = retraction_of("narrow", new_tlp=TLP.CLEAR, new_recipient_organisations=[])
    federation.receive(peer, enumerate([received(forged, TLP.GREEN, "caribe", [])]))
    copy.refresh_from_db()
    assert copy.tlp == TLP.AMBER_STRICT and list(copy.recipient_organisations.all()) == [andina]
    outcomes = AuditEntry.objects.filter(action="federation.retraction_applied")
    assert outcomes.get(details__retraction=forged["id"]).details["outcome"] == "refused"

    # A real narrowing (andina no longer named) applies; so does a revocation.
    narrow = retraction_of("narrow", new_tlp=TLP.AMBER_STRICT, new_recipient_organisations=[])
    federation.receive(peer, enumerate([received(narrow, TLP.AMBER_STRICT, "caribe", ["andina"])]))
    copy.refresh_from_db()
    assert copy.tlp == TLP.AMBER_STRICT and not copy.recipient_organisations.exists()
    federation.receive(peer, enumerate([received(retraction_of("revoke"), TLP.AMBER_STRICT, "caribe", [])]))
    copy.refresh_from_db()
    assert copy.revoked
    acks = StixObject.objects.filter(type=retraction.ACK)
    assert acks.count() == 3 and all(ack.tlp == TLP.GREEN for ack in acks)
    assert caribe.pk == copy.origin_organisation_id
