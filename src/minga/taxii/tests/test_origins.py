"""TAXII when several organisations hold one STIX id: each caller gets the newest version it may
read as ``last``, each (id, version) once per answer, and an inbox deletes its own copies only."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from minga.core import services as core_services
from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.intel import services as intel_services
from minga.intel.models import StixObject
from minga.intel.tests.bundles import TS, bundle, indicator, sco
from minga.taxii.tests.conftest import READABLE_URL, Cast, Person, get, inbox_url, store, validate_stix

pytestmark = pytest.mark.django_db

V2 = "2026-02-01T00:00:00.000Z"


@pytest.fixture
def dora(make_org: Callable[..., Organisation], make_user: Callable[..., User]) -> Person:
    """An analyst of a third organisation, named on what Andina and Caribe share in these stories."""
    user = make_user("dora", make_org("delta"))
    return Person(user, core_services.create_api_token(None, user, name="taxii").raw)


def _delta(dora: Person) -> Organisation:
    return dora.user.memberships.get().organisation


def _objects(client: Client, person: Person, url: str = READABLE_URL, **params: Any) -> list[dict[str, Any]]:
    response = get(client, person, url + "objects/", **params)
    assert response.status_code == 200, response.content
    objects = response.json().get("objects", [])
    validate_stix(objects)
    return objects


def _manifest(client: Client, person: Person, **params: Any) -> list[tuple[str, str]]:
    body = get(client, person, READABLE_URL + "manifest/", **params).json()
    return [(m["id"], m["version"]) for m in body.get("objects", [])]


def test_another_organisations_newer_version_is_not_the_callers_last(
    client: Client, cast: Cast, dora: Person
) -> None:
    x = indicator(name="Andina's")
    store(cast.andina, x, recipients=(_delta(dora),))
    store(cast.caribe, {**x, "modified": V2, "name": "Caribe's"}, recipients=(_delta(dora),))

    for person, name, version in (
        (cast.ana, "Andina's", TS),
        (cast.carlos, "Caribe's", V2),
        (dora, "Caribe's", V2),
    ):
        assert [o["name"] for o in _objects(client, person)] == [name]
        assert [o["name"] for o in _objects(client, person, **{"match[id]": x["id"]})] == [name]
        detail = get(client, person, f"{READABLE_URL}objects/{x['id']}/").json()["objects"]
        assert [o["name"] for o in detail] == [name]
        assert _manifest(client, person) == [(x["id"], version)]
    # Each caller's versions are those it may read; the reader of both gets both.
    for person, versions in ((cast.ana, [TS]), (cast.carlos, [V2]), (dora, [TS, V2])):
        answer = get(client, person, f"{READABLE_URL}objects/{x['id']}/versions/").json()
        assert answer["versions"] == versions
        assert (
            sorted(o["modified"] for o in _objects(client, person, **{"match[version]": "all"})) == versions
        )
        assert [o["modified"] for o in _objects(client, person, **{"match[version]": "first"})] == versions[
            :1
        ]
    # An inbox shows its organisation's copy.
    assert [o["name"] for o in _objects(client, cast.carlos, inbox_url(cast.caribe))] == ["Caribe's"]
    assert [o["name"] for o in _objects(client, cast.ana, inbox_url(cast.andina))] == ["Andina's"]


def test_one_version_held_by_two_organisations_is_answered_once(
    client: Client, cast: Cast, dora: Person
) -> None:
    x, address = indicator(), sco("ipv4-addr", "192.0.2.80")
    store(cast.andina, x, address, tlp=TLP.GREEN)
    store(cast.caribe, x, address, tlp=TLP.GREEN)
    for person in (cast.ana, cast.carlos, dora):
        for version in ("last", "all", "first", TS, f"first,last,{TS}"):
            keys = [
                (o["id"], o.get("modified")) for o in _objects(client, person, **{"match[version]": version})
            ]
            expected = {(x["id"], TS)} | (set() if version == TS else {(address["id"], None)})
            assert sorted(keys) == sorted(expected), (person, version)
            manifest = _manifest(client, person, **{"match[version]": version})
            assert len(manifest) == len(set(manifest)) == (1 if version == TS else 2), version
        assert get(client, person, f"{READABLE_URL}objects/{x['id']}/versions/").json()["versions"] == [TS]
        assert (
            len(
                get(client, person, f"{READABLE_URL}objects/{x['id']}/", **{"match[version]": "all"}).json()[
                    "objects"
                ]
            )
            == 1
        )


@pytest.mark.parametrize("level", [TLP.RED, TLP.AMBER])
def test_posting_what_another_organisation_holds_is_a_fresh_success(
    client: Client, cast: Cast, level: str
) -> None:
    address = sco("ipv4-addr", "192.0.2.81")
    intel_services.import_bundle(
        cast.ana.user, cast.andina, io.BytesIO(json.dumps(bundle(address)).encode()), level
    )
    response = client.post(
        inbox_url(cast.caribe) + "objects/",
        json.dumps({"objects": [address]}).encode(),
        content_type=cast.carlos.headers["HTTP_ACCEPT"],
        **cast.carlos.headers,
    )
    assert response.status_code == 202, response.content
    status = response.json()
    assert status["success_count"] == 1 and "message" not in status["successes"][0]
    caribe_row = StixObject.objects.get(stix_id=address["id"], origin_organisation=cast.caribe)
    assert status["successes"][0]["version"].startswith(caribe_row.date_added.strftime("%Y-%m-%dT%H:%M:%S"))
    assert [o["id"] for o in _objects(client, cast.carlos)] == [address["id"]]


def test_an_inbox_deletes_its_own_copies_only(client: Client, cast: Cast) -> None:
    x = indicator()
    store(cast.andina, x, tlp=TLP.GREEN)
    store(cast.caribe, x, {**x, "modified": V2}, tlp=TLP.GREEN)
    caribe_obj = f"{inbox_url(cast.caribe)}objects/{x['id']}/"
    response = client.delete(caribe_obj + f"?match[version]={V2}", **cast.carlos.headers)
    assert response.status_code == 200
    rows = {
        (r.origin_organisation_id, r.modified.year, r.modified.month): r.is_latest
        for r in StixObject.objects.filter(stix_id=x["id"])
    }
    assert rows == {(cast.andina.pk, 2026, 1): True, (cast.caribe.pk, 2026, 1): True}
    assert client.delete(caribe_obj, **cast.carlos.headers).status_code == 200
    andina = StixObject.objects.get(stix_id=x["id"])
    assert (andina.origin_organisation_id, andina.is_latest) == (cast.andina.pk, True)
    # Andina's copy is in the readable view, not in Caribe's inbox: nothing more to delete there.
    assert client.delete(caribe_obj, **cast.carlos.headers).status_code == 404
    assert [o["id"] for o in _objects(client, cast.carlos)] == [x["id"]]
