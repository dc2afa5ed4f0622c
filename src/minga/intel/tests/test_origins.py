"""Versions are kept per originating organisation: one organisation's versions of an id never
supersede, revoke or reveal another's, and every read path shows each reader one object per id
(the newest version it may read) and each version once."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from stix2validator import ValidationOptions, validate_string

from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.intel import queries, services
from minga.intel.models import StixObject
from minga.intel.tests.bundles import indicator, sco, sighting, stream

pytestmark = pytest.mark.django_db

V2 = "2026-02-01T00:00:00.000Z"
V3 = "2026-03-01T00:00:00.000Z"


@dataclass
class Teams:
    a: Organisation
    b: Organisation
    c: Organisation  # named on what A and B share with it
    ana: User  # of A
    bob: User  # of B
    cid: User  # of C


@pytest.fixture
def teams(make_org: Callable[..., Organisation], make_user: Callable[..., User]) -> Teams:
    a, b, c = make_org("csirt-a"), make_org("csirt-b"), make_org("csirt-c")
    return Teams(a, b, c, make_user("ana", a), make_user("bob", b), make_user("cid", c))


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _import(user: User, org: Organisation, *objects: dict[str, Any], tlp: str = TLP.AMBER, to=()) -> Any:
    return services.import_bundle(user, org, stream(*objects), tlp, list(to))


def _listed(user: User, **params: Any) -> list[dict[str, Any]]:
    return _client(user).get("/api/v1/intel/objects", params).json()["items"]


def test_a_newer_version_from_another_organisation_does_not_take_the_object_away(teams: Teams) -> None:
    x = indicator("198.51.100.7", name="A's")
    y = indicator("198.51.100.7", name="A's other")  # correlates with x through the address
    _import(teams.ana, teams.a, x, y, to=[teams.c])
    hijack = {**x, "modified": V2, "name": "B's", "pattern": "[ipv4-addr:value = '203.0.113.5']"}
    result = _import(teams.bob, teams.b, hijack, to=[teams.c])
    assert (result.accepted, result.duplicates, result.rejected) == (1, 0, 0)
    # Both organisations' copies are their own latest.
    assert StixObject.objects.filter(stix_id=x["id"], is_latest=True).count() == 2

    # A's readers: A's version, in the list, the search, the object, its versions, correlation.
    client = _client(teams.ana)
    assert [(o["label"], o["origin"]) for o in _listed(teams.ana, q=x["id"])] == [("A's", "csirt-a")]
    assert {o["id"] for o in _listed(teams.ana, value="198.51.100.7")} == {x["id"], y["id"]}
    assert client.get(f"/api/v1/intel/objects/{x['id']}").json()["object"]["name"] == "A's"
    assert [v["origin"] for v in client.get(f"/api/v1/intel/objects/{x['id']}/versions").json()["items"]] == [
        "csirt-a"
    ]
    assert [
        c["object"]["id"] for c in client.get(f"/api/v1/intel/objects/{y['id']}/correlations").json()
    ] == [x["id"]]
    page = client.get("/intel/", {"q": x["id"]}).content.decode()
    assert "A&#x27;s" in page and "B&#x27;s" not in page
    assert "B&#x27;s" not in client.get(f"/intel/objects/{x['id']}/").content.decode()
    y_row = StixObject.objects.get(stix_id=y["id"])
    batch = queries.correlate_many(teams.ana, [y_row.pk])
    assert {StixObject.objects.get(pk=pk).data["name"] for pk in batch.links[y_row.pk]} == {"A's"}

    # B's readers: B's version only; A's is not even listed among the versions.
    client = _client(teams.bob)
    assert [(o["label"], o["origin"]) for o in _listed(teams.bob, q=x["id"])] == [("B's", "csirt-b")]
    assert client.get(f"/api/v1/intel/objects/{x['id']}").json()["object"]["name"] == "B's"
    assert len(client.get(f"/api/v1/intel/objects/{x['id']}/versions").json()["items"]) == 1
    assert client.get(f"/api/v1/intel/objects/{y['id']}").status_code == 404

    # A reader of both: the newest, listed once; both versions; both holders on the page.
    client = _client(teams.cid)
    assert [o["origin"] for o in _listed(teams.cid, q=x["id"])] == ["csirt-b"]
    assert client.get(f"/api/v1/intel/objects/{x['id']}").json()["object"]["name"] == "B's"
    versions = client.get(f"/api/v1/intel/objects/{x['id']}/versions").json()["items"]
    assert [(v["origin"], v["modified"][:10]) for v in versions] == [
        ("csirt-b", "2026-02-01"),
        ("csirt-a", "2026-01-15"),
    ]
    page = client.get(f"/intel/objects/{x['id']}/").content.decode()
    assert "Organisation csirt-a, Organisation csirt-b" in page
    # B's version names another address: the reader's y no longer correlates with x.
    assert client.get(f"/api/v1/intel/objects/{y['id']}/correlations").json() == []


@pytest.mark.parametrize("level", [TLP.RED, TLP.AMBER])
def test_importing_what_another_organisation_holds_reveals_nothing(teams: Teams, level: str) -> None:
    """SCO ids derive from their value: importing one must not tell whether anyone holds it."""
    address, domain = sco("ipv4-addr", "192.0.2.77"), sco("domain-name", "held.example")
    _import(teams.ana, teams.a, address, domain, tlp=level)
    result = _import(teams.bob, teams.b, address, domain, tlp=TLP.AMBER)
    assert result.as_dict() == {"accepted": 2, "duplicates": 0, "rejected": 0, "rejections": [], "error": ""}

    client = _client(teams.bob)
    detail = client.get(f"/api/v1/intel/objects/{address['id']}").json()
    assert detail["origin"] == "csirt-b" and detail["tlp"] == "amber"
    versions = client.get(f"/api/v1/intel/objects/{address['id']}/versions").json()["items"]
    assert [v["origin"] for v in versions] == ["csirt-b"]
    assert [o["origin"] for o in _listed(teams.bob, value="192.0.2.77")] == ["csirt-b"]
    page = client.get(f"/intel/objects/{address['id']}/").content.decode()
    assert "csirt-a" not in page
    a_rows = StixObject.objects.filter(origin_organisation=teams.a)
    for url in (
        "/intel/?value=192.0.2.77",
        f"/intel/objects/{address['id']}/",
        f"/api/v1/intel/objects/{address['id']}/versions",
        "/api/v1/intel/export?value=192.0.2.77",
    ):
        body = client.get(url).content.decode()
        assert all(str(row.uuid) not in body for row in a_rows), url
    # A's copies are untouched and still A's latest.
    assert _client(teams.ana).get(f"/api/v1/intel/objects/{address['id']}").json()["tlp"] == level
    assert a_rows.filter(is_latest=True).count() == 2
    # A replay by the same organisation is still a replay.
    again = _import(teams.bob, teams.b, address, domain, tlp=TLP.AMBER)
    assert (again.accepted, again.duplicates) == (0, 2)


def test_a_revocation_binds_its_own_organisation_only(teams: Teams) -> None:
    x = indicator("198.51.100.8")
    _import(teams.ana, teams.a, x, {**x, "modified": V2, "revoked": True})
    # B's newer version is B's: A's revocation neither blocks it nor is mentioned.
    result = _import(teams.bob, teams.b, {**x, "modified": V3})
    assert (result.accepted, result.rejected) == (1, 0)
    # And the other way round: B revokes its copy, A's history goes on.
    z = indicator("198.51.100.9")
    _import(teams.bob, teams.b, {**z, "revoked": True})
    result = _import(teams.ana, teams.a, {**z, "modified": V2})
    assert (result.accepted, result.rejected) == (1, 0)
    assert _client(teams.ana).get(f"/api/v1/intel/objects/{z['id']}").json()["revoked"] is False
    # An organisation's own revocation still binds it.
    refused = _import(teams.ana, teams.a, {**x, "modified": V3})
    assert refused.rejected == 1 and "revoked" in refused.rejections[0].reason


def test_a_replay_by_the_same_organisation_is_a_duplicate(teams: Teams) -> None:
    x = indicator("198.51.100.10")
    assert _import(teams.ana, teams.a, x).accepted == 1
    again = _import(teams.ana, teams.a, x)
    assert (again.accepted, again.duplicates) == (0, 1)
    theirs = _import(teams.bob, teams.b, x)
    assert (theirs.accepted, theirs.duplicates) == (1, 0)
    assert StixObject.objects.filter(stix_id=x["id"]).count() == 2


def test_one_version_held_by_two_organisations_is_shown_once(teams: Teams) -> None:
    x = indicator("198.51.100.11")
    seen = sighting(x["id"], 4)
    _import(teams.ana, teams.a, x, seen, tlp=TLP.GREEN)
    _import(teams.bob, teams.b, x, seen, tlp=TLP.GREEN)
    # The reader's own organisation's copy first, else the first stored.
    for user, origin in ((teams.ana, "csirt-a"), (teams.bob, "csirt-b"), (teams.cid, "csirt-a")):
        client = _client(user)
        assert [o["origin"] for o in _listed(user, q=x["id"])] == [origin]
        assert client.get(f"/api/v1/intel/objects/{x['id']}").json()["origin"] == origin
        versions = client.get(f"/api/v1/intel/objects/{x['id']}/versions").json()["items"]
        assert [v["origin"] for v in versions] == [origin]
        # The sighting counts once.
        answer = client.get(f"/api/v1/intel/objects/{x['id']}/sightings").json()
        assert (answer["sightings"], answer["count"]) == (1, 4)
        summary, rows = queries.sightings(user, x["id"])
        assert (summary.sightings, summary.count, rows.count()) == (1, 4, 1)
    # Exports hold each (id, version) once, and the validator agrees.
    response = _client(teams.cid).get("/api/v1/intel/export", {"value": "198.51.100.11"})
    document = json.loads(response.content)
    keys = [(o["id"], o.get("modified")) for o in document["objects"]]
    assert len(keys) == len(set(keys)) and (x["id"], x["modified"]) in keys
    assert validate_string(response.content.decode(), ValidationOptions()).is_valid
    event = _client(teams.cid).get("/api/v1/intel/export", {"value": "198.51.100.11", "format": "misp"})
    values = [a["value"] for a in event.json()["Event"]["Attribute"]]
    assert values.count("198.51.100.11") == 1
    table = _client(teams.cid).get("/api/v1/intel/export", {"value": "198.51.100.11", "format": "csv"})
    assert table.content.decode().count(x["id"]) == 1
