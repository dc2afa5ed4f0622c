"""Federation between two real nodes over HTTP: this test process is node A (its live server,
its database); node B is a ``minga serve`` process with its own database. Each holds exactly
what the distribution rule lets it have, with provenance, and a second sync changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from stix2validator import ValidationOptions, validate_instance

from minga.core.choices import TLP
from minga.core.models import AuditEntry, Organisation
from minga.intel import queries
from minga.intel import services as intel_services
from minga.intel.models import StixObject
from minga.intel.tests.bundles import TS, indicator, sighting, stream
from minga.taxii import federation
from minga.taxii.models import Peer
from minga.taxii.tests.conftest import store
from minga.taxii.tests.nodes import Node

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def node_b(tmp_path: Path) -> Iterator[Node]:
    node = Node("node-b", tmp_path).start("andina", "caribe", "sur")
    yield node
    node.stop()


@pytest.fixture
def a_orgs(make_org: Any, settings: Any) -> dict[str, Organisation]:
    settings.MINGA_NODE_ID = "node-a"
    return {name: make_org(name) for name in ("andina", "caribe", "sur")}


def pair(live_server: Any, node_b: Node) -> Peer:
    """A registers B (hosting caribe); B registers A (hosting andina) with A's token; A keeps
    B's token: what the two operators do with ``minga peer add``."""
    new = federation.add_peer(None, name="node-b", url=node_b.api_root, hosts=["caribe"])
    token_for_a = node_b.minga(
        "peer",
        "add",
        "node-a",
        "--url",
        f"{live_server.url}/taxii2/api/",
        "--hosts",
        "andina",
        "--token",
        new.token,
    ).stdout.strip()
    return federation.set_credential(None, new.peer, token_for_a)


def test_each_node_receives_what_the_rule_allows_with_provenance(
    live_server: Any, node_b: Node, a_orgs: dict[str, Organisation], make_user: Any
) -> None:
    andina, caribe, sur = a_orgs["andina"], a_orgs["caribe"], a_orgs["sur"]
    green, for_caribe, for_sur, strict, red = (
        indicator("198.51.100.1"),
        indicator("198.51.100.2"),
        indicator("198.51.100.3"),
        indicator("198.51.100.4"),
        indicator("198.51.100.5"),
    )
    store(andina, green, tlp=TLP.GREEN)
    store(andina, for_caribe, tlp=TLP.AMBER, recipients=(caribe,))
    store(andina, for_sur, tlp=TLP.AMBER, recipients=(sur,))
    store(andina, strict, tlp=TLP.AMBER_STRICT, recipients=(caribe, sur))
    ana = make_user("ana", andina)
    intel_services.import_bundle(ana, andina, stream(red), TLP.RED)  # names ana: never sent
    peer_b = pair(live_server, node_b)

    # B pulls from A.
    pulled = node_b.minga("sync", "node-a").stdout
    assert "pulled 3" in pulled, pulled
    on_b = {o["id"]: o for o in node_b.objects()}
    assert set(on_b) == {green["id"], for_caribe["id"], strict["id"]}
    assert on_b[for_caribe["id"]]["recipients"] == ["caribe"]
    # Recipients that B does not host are still named: B hosts none of sur's people, but the
    # rule is about who may read, and the name is part of the object's provenance.
    assert on_b[strict["id"]]["recipients"] == ["caribe", "sur"]
    for copy in on_b.values():
        assert (copy["origin"], copy["origin_node"], copy["received_from"]) == ("andina", "node-a", "node-a")
        stored = orjson.loads(copy["raw"])
        assert federation.EXTENSION_ID not in stored.get("extensions", {})  # provenance lives in columns
    assert on_b[green["id"]]["tlp"] == TLP.GREEN and on_b[strict["id"]]["tlp"] == TLP.AMBER_STRICT

    # caribe shares on B; A syncs (pull, then push): A gets B's object, B gets nothing twice.
    node_b.share("caribe", indicator("203.0.113.9"))
    outcome = federation.sync(peer_b)
    assert not outcome.error, outcome.error
    assert outcome.pulled == 1  # B's own object; A's objects are never offered back to A
    from_b = StixObject.objects.get(received_from="node-b")
    assert (from_b.origin_organisation, from_b.origin_node, from_b.tlp) == (caribe, "node-b", TLP.GREEN)
    assert outcome.pushed == 3  # what B pulled already: replays there, stored once
    assert len(node_b.objects()) == 4

    # A second sync in both directions moves nothing: the cursors held.
    again = federation.sync(Peer.objects.get(pk=peer_b.pk))
    assert (again.pulled, again.pushed, again.error) == (0, 0, "")
    # B had never pushed: it sends its object once (A pulled it already: a replay there), then
    # nothing more.
    assert "pulled 0, pushed 1" in node_b.minga("sync", "node-a").stdout
    assert "pulled 0, pushed 0" in node_b.minga("sync", "node-a").stdout
    assert len(node_b.objects()) == 4 and StixObject.objects.count() == 6
    assert AuditEntry.objects.filter(action="federation.served").exists()


def test_sightings_are_merged_across_nodes(
    live_server: Any, node_b: Node, a_orgs: dict[str, Organisation], make_user: Any
) -> None:
    andina = a_orgs["andina"]
    shared = indicator("198.51.100.40")
    store(andina, shared, tlp=TLP.GREEN)
    store(andina, sighting(shared["id"], count=3, first=TS, last=TS), tlp=TLP.GREEN)
    peer_b = pair(live_server, node_b)
    node_b.minga("sync", "node-a")
    # caribe's team, on B, saw it five more times, later.
    later = "2026-02-01T08:00:00.000Z"
    node_b.share("caribe", sighting(shared["id"], count=5, first=later, last=later))
    assert federation.sync(peer_b).pulled == 1
    reader = make_user("ana", andina)
    summary, _rows = queries.sightings(reader, shared["id"])
    assert (summary.sightings, summary.count) == (2, 8)
    assert summary.last_seen.isoformat().startswith("2026-02-01T08:00")


def test_what_a_peer_is_served_passes_the_stix_validator(
    live_server: Any, node_b: Node, a_orgs: dict[str, Organisation]
) -> None:
    store(a_orgs["andina"], indicator("198.51.100.21"), tlp=TLP.AMBER, recipients=(a_orgs["caribe"],))
    peer_b = pair(live_server, node_b)
    objects = federation.distributable(peer_b)
    _page, emitted = federation.emitted_page(peer_b, objects, federation.Filters(limit=10))
    assert len(emitted) == 1
    obj = orjson.loads(emitted[0])
    assert obj["extensions"][federation.EXTENSION_ID]["recipient_organisations"] == ["caribe"]
    report = validate_instance(obj, ValidationOptions(version="2.1"))
    assert report.is_valid, [str(e) for e in report.errors]


def test_a_peer_that_is_down_is_retried_with_backoff_and_resumes(
    live_server: Any, node_b: Node, a_orgs: dict[str, Organisation]
) -> None:
    peer_b = pair(live_server, node_b)
    store(a_orgs["andina"], indicator("198.51.100.31"), tlp=TLP.GREEN)
    node_b.stop()
    failed = federation.sync(peer_b)
    assert "cannot be reached" in failed.error
    peer_b.refresh_from_db()
    assert peer_b.failures == 1 and peer_b.last_error and peer_b.next_attempt_at is not None
    assert peer_b.push_after is None  # nothing counted as pushed
    failed_again = federation.sync(peer_b)
    peer_b.refresh_from_db()
    assert failed_again.error and peer_b.failures == 2
    assert federation.backoff(2) == 2 * federation.backoff(1)
    assert AuditEntry.objects.filter(action="federation.sync_failed").count() == 2

    node_b.start()
    recovered = federation.sync(peer_b)
    assert recovered.error == "" and recovered.pushed == 1
    peer_b.refresh_from_db()
    assert peer_b.failures == 0 and peer_b.last_error == ""
    assert [o["origin_node"] for o in node_b.objects()] == ["node-a"]


def test_garbage_from_a_peer_is_an_error_not_a_crash(
    live_server: Any, a_orgs: dict[str, Organisation]
) -> None:
    # The peer's "API root" is this node's health check: JSON, but not TAXII.
    new = federation.add_peer(None, name="node-x", url=f"{live_server.url}/healthz/", credential="x")
    outcome = federation.sync(new.peer)
    assert outcome.error
    new.peer.refresh_from_db()
    assert new.peer.failures == 1 and new.peer.last_error == outcome.error
