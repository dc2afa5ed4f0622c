"""The federation REST API: node admins manage peers (an analyst may not), the token for a new
peer is in the answer that creates it and nowhere else, bad input is a clear 4xx, every change
is audited; retractions are issued by whoever may import for the organisation, and their
status is read only by who may read the retraction."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django_tasks_db.models import DBTaskResult

from minga.core.choices import TLP
from minga.core.models import AuditEntry, User
from minga.intel.models import StixObject
from minga.intel.tests.bundles import indicator
from minga.taxii import federation
from minga.taxii.models import Peer
from minga.taxii.tests.conftest import Cast, store

pytestmark = pytest.mark.django_db

API = "/api/v1/federation"
PEER_URL = "http://127.0.0.1:9/taxii2/api/"


@pytest.fixture(autouse=True)
def _node(settings: Any) -> None:
    settings.MINGA_NODE_ID = "node-a"


def call(headers: dict[str, str], method: str, path: str, body: Any = None) -> tuple[int, Any, str]:
    client = Client()
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs.update(data=json.dumps(body), content_type="application/json")
    response = getattr(client, method)(f"{API}{path}", **kwargs)
    text = response.content.decode()
    return response.status_code, (json.loads(text) if text else None), text


@pytest.fixture
def admin_headers(node_admin: User, bearer: Callable[[User], dict[str, str]]) -> dict[str, str]:
    return bearer(node_admin)


def test_a_node_admin_adds_a_peer_and_sees_its_token_once(
    cast: Cast, admin_headers: dict[str, str], node_admin: User
) -> None:
    status, body, _text = call(
        admin_headers,
        "post",
        "/peers",
        {"name": "node-b", "url": PEER_URL, "hosts": ["caribe"], "interval": 60},
    )
    assert status == 201, body
    token = body["token"]
    assert token.startswith("mng_")
    assert body["name"] == "node-b"
    assert body["hosts"] == ["caribe"]
    assert body["state"] == "ok" and body["lag_seconds"] is None and body["has_credential"] is False
    entry = AuditEntry.objects.get(action="federation.peer_added")
    assert entry.actor_id == node_admin.pk and token not in json.dumps(entry.details)

    # The token is the peer's identity here: its node authenticates with it.
    me = Client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["username"] == "peer-node-b"

    status, listed, text = call(admin_headers, "get", "/peers")
    assert status == 200
    assert [p["name"] for p in listed] == ["node-b"]
    assert token not in text and "token" not in listed[0] and "credential" not in listed[0]
    status, one, text = call(admin_headers, "get", "/peers/node-b")
    assert status == 200 and token not in text and one["url"] == PEER_URL


def test_the_credential_is_kept_sealed_and_never_answered(cast: Cast, admin_headers: dict[str, str]) -> None:
    federation.add_peer(None, name="node-b", url=PEER_URL, hosts=["caribe"])
    secret = "mng_the-token-node-b-issued-for-us"
    status, body, text = call(admin_headers, "post", "/peers/node-b/token", {"token": secret})
    assert status == 200, body
    assert body["has_credential"] is True and secret not in text
    peer = Peer.objects.get(name="node-b")
    assert peer.credential and secret not in peer.credential  # sealed at rest
    assert AuditEntry.objects.filter(action="federation.peer_credential_set").count() == 1
    _status, _listed, text = call(admin_headers, "get", "/peers")
    assert secret not in text
    status, body, _text = call(admin_headers, "post", "/peers/node-b/token", {"token": ""})
    assert status == 422


def test_sync_now_queues_the_task_and_is_audited(cast: Cast, admin_headers: dict[str, str]) -> None:
    peer = federation.add_peer(None, name="node-b", url=PEER_URL, hosts=["caribe"]).peer
    status, body, _text = call(admin_headers, "post", "/peers/node-b/sync")
    assert status == 202, body
    task = DBTaskResult.objects.get(pk=body["task_id"])
    assert task.task_path.endswith("sync_peer") and task.args_kwargs["args"] == [peer.pk]
    assert AuditEntry.objects.filter(action="federation.sync_requested").count() == 1


def test_removing_a_peer_revokes_its_access(cast: Cast, admin_headers: dict[str, str]) -> None:
    new = federation.add_peer(None, name="node-b", url=PEER_URL, hosts=["caribe"])
    status, _body, _text = call(admin_headers, "delete", "/peers/node-b")
    assert status == 204
    assert not Peer.objects.filter(name="node-b").exists()
    assert AuditEntry.objects.filter(action="federation.peer_removed").count() == 1
    assert Client().get("/api/v1/me", headers={"Authorization": f"Bearer {new.token}"}).status_code == 401
    status, _body, _text = call(admin_headers, "delete", "/peers/node-b")
    assert status == 404


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"name": "node-b", "url": "ftp://example.org/taxii2/"}, "url", "http"),
        ({"name": "node-b", "url": "not a url"}, "url", "http"),
        ({"name": "node-b", "url": PEER_URL, "hosts": ["nowhere"]}, "hosts", "nowhere"),
        ({"name": "node-a", "url": PEER_URL}, "name", "own id"),
        ({"name": "Node B!", "url": PEER_URL}, "name", "lower-case"),
        ({"name": "node-b", "url": PEER_URL, "kind": "taxii"}, "collection_id", "collection"),
    ],
)
def test_bad_peers_are_refused_with_a_reason(
    cast: Cast, admin_headers: dict[str, str], payload: dict[str, Any], field: str, words: str
) -> None:
    status, body, _text = call(admin_headers, "post", "/peers", payload)
    assert status == 400, body
    assert any(e["field"] == field and words in e["message"] for e in body["errors"]), body
    assert not Peer.objects.exists()
    assert not AuditEntry.objects.filter(action="federation.peer_added").exists()


def test_a_duplicate_name_and_bad_shapes_are_refused(cast: Cast, admin_headers: dict[str, str]) -> None:
    federation.add_peer(None, name="node-b", url=PEER_URL)
    status, body, _text = call(admin_headers, "post", "/peers", {"name": "node-b", "url": PEER_URL})
    assert status == 400 and "exists already" in body["detail"]
    for payload in (
        {"name": "node-c", "url": PEER_URL, "direction": "sideways"},
        {"name": "node-c", "url": PEER_URL, "interval": 1},
        {"name": "node-c", "url": PEER_URL, "credential": "typo for token"},
        {"name": "node-c"},
    ):
        status, body, _text = call(admin_headers, "post", "/peers", payload)
        assert status == 422, (payload, body)
        assert body["detail"].startswith("Invalid input")
    assert Peer.objects.count() == 1


def test_an_analyst_may_not_see_or_manage_peers(cast: Cast, bearer: Callable[[User], dict[str, str]]) -> None:
    federation.add_peer(None, name="node-b", url=PEER_URL, hosts=["caribe"])
    analyst = bearer(cast.ana.user)
    for method, path, body in (
        ("get", "/peers", None),
        ("get", "/peers/node-b", None),
        ("post", "/peers", {"name": "node-c", "url": PEER_URL}),
        ("delete", "/peers/node-b", None),
        ("post", "/peers/node-b/token", {"token": "x"}),
        ("post", "/peers/node-b/sync", None),
        ("get", "/peers/no-such-peer", None),
    ):
        status, answer, text = call(analyst, method, path, body)
        assert status == 403, (method, path, answer)
        assert "node admins" in answer["detail"] and "127.0.0.1:9" not in text
    assert Peer.objects.filter(name="node-b", is_active=True).exists()
    assert not Peer.objects.filter(name="node-c").exists()
    assert Client().get(f"{API}/peers").status_code == 401


# --- retractions -----------------------------------------------------------------------------


@pytest.fixture
def shared(cast: Cast) -> dict[str, Any]:
    """Andina shared an indicator with Caribe (AMBER); node-b hosts Caribe, so holds a copy."""
    obj = indicator("198.51.100.66")
    store(cast.andina, obj, tlp=TLP.AMBER, recipients=(cast.caribe,))
    federation.add_peer(None, name="node-b", url=PEER_URL, hosts=["caribe"])
    federation.add_peer(None, name="node-c", url=PEER_URL, hosts=["outside"])
    return obj


def test_an_analyst_retracts_and_follows_the_status_per_node(
    cast: Cast, shared: dict[str, Any], bearer: Callable[[User], dict[str, str]]
) -> None:
    ana = bearer(cast.ana.user)
    status, body, _text = call(
        ana,
        "post",
        "/retractions",
        {
            "stix_id": shared["id"],
            "organisation": "andina",
            "action": "narrow",
            "tlp": "amber+strict",
            "recipients": [],
            "reason": "sent to the wrong team",
        },
    )
    assert status == 201, body
    retraction_id = body["retraction_id"]
    assert body["copies_here"] == 1
    assert StixObject.objects.get(stix_id=shared["id"]).tlp == TLP.AMBER_STRICT
    entry = AuditEntry.objects.get(action="federation.retraction_issued")
    assert entry.actor_id == cast.ana.user.pk and entry.details["retraction"] == retraction_id

    status, one, _text = call(ana, "get", f"/retractions/{retraction_id}")
    assert status == 200, one
    assert one["object"] == shared["id"] and one["action"] == "narrow" and one["new_tlp"] == "amber+strict"
    # node-b hosts the recipient it had, so may hold a copy: pending; node-c never could.
    assert [(n["node"], n["outcome"], n["at"]) for n in one["nodes"]] == [("node-b", "pending", None)]

    status, listed, _text = call(ana, "get", "/retractions")
    assert status == 200 and [r["retraction_id"] for r in listed] == [retraction_id]

    # Caribe was a recipient of the object: it may read the retraction that concerns its copy.
    status, _one, _text = call(bearer(cast.carlos.user), "get", f"/retractions/{retraction_id}")
    assert status == 200


def test_a_user_outside_the_recipients_cannot_see_a_retraction(
    cast: Cast, shared: dict[str, Any], bearer: Callable[[User], dict[str, str]], node_admin: User
) -> None:
    status, body, _text = call(
        bearer(cast.ana.user),
        "post",
        "/retractions",
        {"stix_id": shared["id"], "organisation": "andina", "action": "delete"},
    )
    assert status == 201, body
    retraction_id = body["retraction_id"]
    for outsider in (cast.olga.user, node_admin):  # a node admin reads by the same policy
        headers = bearer(outsider)
        status, answer, _text = call(headers, "get", f"/retractions/{retraction_id}")
        assert status == 404, answer
        status, listed, text = call(headers, "get", "/retractions")
        assert status == 200 and listed == [] and retraction_id not in text
    missing = "x-minga-retraction--00000000-0000-4000-8000-000000000000"
    assert call(bearer(cast.ana.user), "get", f"/retractions/{missing}")[0] == 404
    assert call(bearer(cast.ana.user), "get", "/retractions/not-an-id")[0] == 422


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [
        ({"organisation": "nowhere", "action": "delete"}, 400, "No organisation is called nowhere"),
        ({"organisation": "andina", "action": "shred"}, 422, "Invalid input"),
        ({"organisation": "andina", "action": "narrow", "tlp": "green"}, 400, "broader"),
        (
            {"organisation": "andina", "action": "narrow", "tlp": "amber", "recipients": ["caribe"]},
            400,
            "changes nothing",
        ),
        ({"organisation": "andina", "action": "narrow", "tlp": "red"}, 400, "AMBER+STRICT at most"),
        (
            {"organisation": "andina", "action": "narrow", "tlp": "amber", "recipients": ["outside"]},
            400,
            "only remove recipients",
        ),
        ({"organisation": "caribe", "action": "delete"}, 400, "shared no object"),
    ],
)
def test_bad_retractions_are_refused_with_a_reason(
    cast: Cast,
    shared: dict[str, Any],
    bearer: Callable[[User], dict[str, str]],
    make_user: Callable[..., User],
    payload: dict[str, Any],
    status: int,
    words: str,
) -> None:
    # ana may import for caribe too here, so the last case reaches the service's own check.
    from minga.core.models import Membership

    Membership.objects.create(user=cast.ana.user, organisation=cast.caribe, role="analyst")
    answer_status, body, _text = call(
        bearer(cast.ana.user), "post", "/retractions", {"stix_id": shared["id"], **payload}
    )
    assert answer_status == status, body
    assert words in body["detail"], body
    assert StixObject.objects.get(stix_id=shared["id"]).tlp == TLP.AMBER  # nothing half-written
    assert not StixObject.objects.filter(type="x-minga-retraction").exists()
    assert not AuditEntry.objects.filter(action="federation.retraction_issued").exists()


def test_only_who_may_import_for_the_organisation_retracts(
    cast: Cast, shared: dict[str, Any], bearer: Callable[[User], dict[str, str]]
) -> None:
    for person in (cast.rita.user, cast.carlos.user):  # read-only member; another organisation
        status, body, _text = call(
            bearer(person),
            "post",
            "/retractions",
            {"stix_id": shared["id"], "organisation": "andina", "action": "delete"},
        )
        assert status == 403, body
        assert "andina" in body["detail"].lower()
    assert StixObject.objects.filter(stix_id=shared["id"]).exists()
