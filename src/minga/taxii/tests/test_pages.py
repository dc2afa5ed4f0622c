"""The federation pages: a node admin adds a peer (its token shown once), sees each peer's sync
state, syncs, sets its token and removes it; an analyst gets none of it. An analyst retracts
what their organisation shared from the object's page and follows it on the retractions page,
which shows nothing to a user outside the retraction's recipients."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from minga.core.choices import TLP
from minga.core.models import AuditEntry, User
from minga.intel.models import StixObject
from minga.intel.tests.bundles import indicator
from minga.taxii import federation, retraction
from minga.taxii.models import Peer
from minga.taxii.tests.conftest import Cast, store

pytestmark = pytest.mark.django_db

PEER_URL = "http://127.0.0.1:9/taxii2/api/"
PEERS = "/federation/peers/"


@pytest.fixture(autouse=True)
def _node(settings: Any) -> None:
    settings.MINGA_NODE_ID = "node-a"


@pytest.fixture
def admin(node_admin: User, login_client: Callable[[User], Client]) -> Client:
    return login_client(node_admin)


def add_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "node-b",
        "url": PEER_URL,
        "kind": "minga",
        "direction": "both",
        "hosts": "caribe",
        "is_member_node": "on",
        "interval": "300",
    }
    data.update(overrides)
    return data


def test_a_node_admin_adds_a_peer_and_sees_the_token_once(cast: Cast, admin: Client) -> None:
    response = admin.post(PEERS, add_form())
    assert response.status_code == 200
    html = response.content.decode()
    peer = Peer.objects.get(name="node-b")
    token = response.context["issued"].token
    assert token.startswith("mng_") and token in html
    assert "shown only once" in html
    assert list(peer.hosted_organisations.values_list("short_name", flat=True)) == ["caribe"]
    assert AuditEntry.objects.filter(action="federation.peer_added", object_id=str(peer.pk)).exists()
    again = admin.get(PEERS).content.decode()
    assert "node-b" in again and token not in again
    assert "due now" in again and "never" in again  # not synced yet


def test_the_peers_page_shows_sync_state_lag_errors_and_counts(cast: Cast, admin: Client) -> None:
    peer = federation.add_peer(None, name="node-b", url=PEER_URL, hosts=["caribe"]).peer
    now = timezone.now()
    Peer.objects.filter(pk=peer.pk).update(
        last_success_at=now - timedelta(minutes=7),
        last_attempt_at=now - timedelta(minutes=1),
        next_attempt_at=now + timedelta(minutes=2),
        failures=3,
        last_error="node-b is unreachable: connection refused",
        pulled=120,
        pushed=45,
        rejected=2,
    )
    html = admin.get(PEERS).content.decode()
    assert "failing" in html and "3 failures in a row" in html
    assert "node-b is unreachable: connection refused" in html
    assert "lag 7\xa0minutes" in html
    assert "120 / 45 / 2" in html
    assert "Sync now" in html and "Set token" in html and "Remove" in html


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "ftp://example.org/"}, "http:// or https://"),
        ({"hosts": "caribe, nowhere"}, "Unknown organisations: nowhere"),
        ({"name": "node-a"}, "this node"),
        ({"kind": "taxii"}, "collection"),
        ({"interval": "5"}, "greater than or equal to 10"),
    ],
)
def test_bad_peers_are_refused_on_the_form(
    cast: Cast, admin: Client, overrides: dict[str, str], message: str
) -> None:
    response = admin.post(PEERS, add_form(**overrides))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert response.context["issued"] is None
    assert not Peer.objects.exists()


def test_a_duplicate_peer_is_refused(cast: Cast, admin: Client) -> None:
    federation.add_peer(None, name="node-b", url=PEER_URL)
    response = admin.post(PEERS, add_form())
    assert response.status_code == 400 and "exists already" in response.content.decode()
    assert Peer.objects.count() == 1


def test_sync_now_set_token_and_remove_from_the_page(cast: Cast, admin: Client) -> None:
    new = federation.add_peer(None, name="node-b", url=PEER_URL, hosts=["caribe"])
    response = admin.post(f"{PEERS}node-b/sync/", follow=True)
    assert "Sync of node-b queued." in response.content.decode()
    assert DBTaskResult.objects.filter(task_path__endswith="sync_peer").count() == 1
    assert AuditEntry.objects.filter(action="federation.sync_requested").exists()

    response = admin.post(f"{PEERS}node-b/token/", {"token": "mng_from-node-b"}, follow=True)
    html = response.content.decode()
    assert "Token for node-b kept (sealed)." in html and "mng_from-node-b" not in html
    assert Peer.objects.get(name="node-b").credential
    assert AuditEntry.objects.filter(action="federation.peer_credential_set").exists()
    response = admin.post(f"{PEERS}node-b/token/", {"token": ""}, follow=True)
    assert "Give the token" in response.content.decode()

    confirm = admin.get(f"{PEERS}node-b/remove/")
    assert confirm.status_code == 200 and "Remove the peer node-b?" in confirm.content.decode()
    assert Peer.objects.filter(name="node-b").exists()  # asking removes nothing
    response = admin.post(f"{PEERS}node-b/remove/", follow=True)
    assert "Peer node-b removed" in response.content.decode()
    assert not Peer.objects.filter(name="node-b").exists()
    assert not User.objects.get(pk=new.peer.account_id).is_active
    assert AuditEntry.objects.filter(action="federation.peer_removed").exists()
    assert admin.post(f"{PEERS}node-b/sync/").status_code == 404


def test_an_analyst_gets_no_peers_page(cast: Cast, login_client: Callable[[User], Client]) -> None:
    federation.add_peer(None, name="node-b", url=PEER_URL, hosts=["caribe"])
    analyst = login_client(cast.ana.user)
    assert analyst.get(PEERS).status_code == 403
    assert analyst.post(PEERS, add_form(name="node-c")).status_code == 403
    for action in ("sync", "token", "remove"):
        assert analyst.post(f"{PEERS}node-b/{action}/", {"token": "x"}).status_code == 403
        assert analyst.get(f"{PEERS}node-b/remove/").status_code == 403
    assert Peer.objects.filter(name="node-b").exists() and not Peer.objects.filter(name="node-c").exists()
    assert not DBTaskResult.objects.exists()
    assert "/federation/peers/" not in analyst.get("/").content.decode()  # no nav link either
    assert Client().get(PEERS).status_code == 302  # to the sign-in page


# --- "Retract everywhere" and the retractions page ------------------------------------------------


@pytest.fixture
def shared(cast: Cast) -> dict[str, Any]:
    obj = indicator("198.51.100.66")
    store(cast.andina, obj, tlp=TLP.AMBER, recipients=(cast.caribe,))
    federation.add_peer(None, name="node-b", url=PEER_URL, hosts=["caribe"])
    return obj


def object_page(client: Client, stix_id: str) -> str:
    response = client.get(f"/intel/objects/{stix_id}/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_originator_retracts_from_the_object_page(
    cast: Cast, shared: dict[str, Any], login_client: Callable[[User], Client]
) -> None:
    ana = login_client(cast.ana.user)
    form_page = object_page(ana, shared["id"])
    assert "Retract everywhere" in form_page
    # Narrowing AMBER only removes recipients: the form offers the ones it has, no others.
    assert 'value="caribe"' in form_page and 'value="outside"' not in form_page
    # Caribe reads the object but did not share it; Rita only reads: no form for them.
    assert "Retract everywhere" not in object_page(login_client(cast.carlos.user), shared["id"])
    assert "Retract everywhere" not in object_page(login_client(cast.rita.user), shared["id"])

    response = ana.post(
        "/federation/retract/",
        {
            "stix_id": shared["id"],
            "organisation": "andina",
            "action": "narrow",
            "tlp": "amber+strict",
            "recipients": ["caribe"],
            "reason": "should have been strict",
        },
        follow=True,
    )
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == f"/intel/objects/{shared['id']}/"
    assert "Retraction issued: 1 version(s) changed here" in html
    assert StixObject.objects.get(stix_id=shared["id"]).tlp == TLP.AMBER_STRICT
    entry = AuditEntry.objects.get(action="federation.retraction_issued")
    assert entry.actor_id == cast.ana.user.pk

    page = ana.get("/federation/retractions/").content.decode()
    assert shared["id"] in page and "should have been strict" in page
    assert "node-b" in page and "pending" in page


def test_a_bad_retraction_is_a_message_not_a_500(
    cast: Cast, shared: dict[str, Any], login_client: Callable[[User], Client]
) -> None:
    ana = login_client(cast.ana.user)
    for data, message in (
        ({"action": "narrow", "tlp": "green"}, "broader than"),
        ({"action": "shred"}, "Select a valid choice"),
        ({"action": "narrow", "tlp": "amber", "recipients": ["caribe"]}, "This changes nothing"),
    ):
        response = ana.post(
            "/federation/retract/",
            {"stix_id": shared["id"], "organisation": "andina", **data},
            follow=True,
        )
        assert response.status_code == 200
        assert message in response.content.decode(), data
    assert StixObject.objects.get(stix_id=shared["id"]).tlp == TLP.AMBER
    assert not AuditEntry.objects.filter(action="federation.retraction_issued").exists()


def test_only_the_originator_may_post_a_retraction(
    cast: Cast, shared: dict[str, Any], login_client: Callable[[User], Client]
) -> None:
    data = {"stix_id": shared["id"], "organisation": "andina", "action": "delete"}
    carlos = login_client(cast.carlos.user)  # reads it, did not share it
    response = carlos.post("/federation/retract/", data, follow=True)
    assert "You may not retract this object" in response.content.decode()
    # An outsider may not even know it exists.
    assert login_client(cast.olga.user).post("/federation/retract/", data).status_code == 404
    assert StixObject.objects.filter(stix_id=shared["id"]).exists()


def test_a_copy_received_from_a_peer_shows_its_provenance_and_no_retract_form(
    cast: Cast, shared: dict[str, Any], login_client: Callable[[User], Client]
) -> None:
    StixObject.objects.filter(stix_id=shared["id"]).update(origin_node="node-c", received_from="node-b")
    html = object_page(login_client(cast.ana.user), shared["id"])
    assert "Shared on node" in html and "node-c" in html
    assert "Received from" in html and "node-b" in html
    assert "Retract everywhere" not in html


def test_the_retractions_page_hides_what_a_user_may_not_read(
    cast: Cast, shared: dict[str, Any], login_client: Callable[[User], Client], node_admin: User
) -> None:
    issued = retraction.retract(cast.ana.user, cast.andina, shared["id"], "delete", reason="leak")
    assert (
        issued.retraction_id
        in login_client(cast.carlos.user).get("/federation/retractions/").content.decode()
    )
    for outsider in (cast.olga.user, node_admin):
        html = login_client(outsider).get("/federation/retractions/").content.decode()
        assert issued.retraction_id not in html and shared["id"] not in html and "leak" not in html
