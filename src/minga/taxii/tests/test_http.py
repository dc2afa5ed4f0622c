"""The TAXII server at the HTTP level: authentication, content negotiation, error bodies, limits,
filters and pages, through Django's test client (fast; the taxii2-client stories run over a
real server in test_client.py)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from django.test import Client, override_settings

from minga.core.choices import TLP
from minga.core.models import AuditEntry
from minga.intel import stix
from minga.intel.models import StixObject
from minga.intel.tests.bundles import TS, indicator, sco
from minga.pipeline.stix import collection_id as events_id
from minga.taxii import services, views
from minga.taxii.models import TaxiiStatus
from minga.taxii.tests.conftest import MEDIA, READABLE_URL, Cast, get, inbox_url, store, validate_stix

pytestmark = pytest.mark.django_db

LATER = "2026-02-01T10:00:00.000Z"


def post(client: Client, person: Any, url: str, envelope: Any, **extra: Any) -> Any:
    body = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    headers = {**person.headers, **extra}
    content_type = headers.pop("CONTENT_TYPE", MEDIA)
    return client.post(url + "objects/", body, content_type=content_type, **headers)


def assert_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == MEDIA
    body = response.json()
    assert body["http_status"] == str(status)
    assert body["title"]
    return body


# --- authentication ------------------------------------------------------------------------------


def test_every_endpoint_asks_for_a_token(client: Client, cast: Cast) -> None:
    for url in ("/taxii2/", "/taxii2/api/", "/taxii2/api/collections/", READABLE_URL + "objects/"):
        response = client.get(url, HTTP_ACCEPT=MEDIA)
        assert_error(response, 401)
        assert "Bearer" in response["WWW-Authenticate"] and "Basic" in response["WWW-Authenticate"]
    wrong = client.get("/taxii2/", HTTP_ACCEPT=MEDIA, HTTP_AUTHORIZATION="Bearer mng_not-a-token")
    assert_error(wrong, 401)


def test_the_token_also_works_as_the_basic_password(client: Client, cast: Cast) -> None:
    basic = base64.b64encode(f"anything:{cast.ana.token}".encode()).decode()
    response = client.get("/taxii2/", HTTP_ACCEPT=MEDIA, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert response.status_code == 200
    assert response["Content-Type"] == MEDIA
    discovery = response.json()
    assert discovery["default"] == "http://testserver/taxii2/api/"
    assert discovery["api_roots"] == [discovery["default"]]
    garbled = client.get("/taxii2/", HTTP_ACCEPT=MEDIA, HTTP_AUTHORIZATION="Basic %%%")
    assert_error(garbled, 401)


# --- negotiation and errors ----------------------------------------------------------------------


def test_unacceptable_accept_is_406_and_wildcards_get_taxii(client: Client, cast: Cast) -> None:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {cast.ana.token}"}
    for accept in ("application/json", "application/taxii+json;version=2.0", "text/html"):
        assert_error(client.get("/taxii2/api/", HTTP_ACCEPT=accept, **headers), 406)
    # The STIX media type is for the object endpoints only.
    assert_error(client.get("/taxii2/api/", HTTP_ACCEPT=services.MEDIA_STIX, **headers), 406)
    for accept in ("*/*", "application/taxii+json", "text/html, application/*;q=0.5"):
        response = client.get("/taxii2/api/", HTTP_ACCEPT=accept, **headers)
        assert response.status_code == 200 and response["Content-Type"] == MEDIA
    stix = client.get(READABLE_URL + "objects/", HTTP_ACCEPT=services.MEDIA_STIX, **headers)
    assert stix.status_code == 200 and stix["Content-Type"] == services.MEDIA_STIX


def test_api_root_announces_the_configured_limit(client: Client, cast: Cast) -> None:
    with override_settings(MINGA_TAXII_MAX_CONTENT_LENGTH=1234):
        root = get(client, cast.ana, "/taxii2/api/").json()
    assert root["max_content_length"] == 1234
    assert root["versions"] == [MEDIA]


def test_a_post_must_accept_the_taxii_status(client: Client, cast: Cast) -> None:
    envelope = {"objects": [indicator()]}
    response = post(client, cast.ana, inbox_url(cast.andina), envelope, HTTP_ACCEPT=services.MEDIA_STIX)
    assert_error(response, 406)
    assert not StixObject.objects.exists()


def test_wrong_content_type_is_415(client: Client, cast: Cast) -> None:
    for content_type in ("application/json", "application/taxii+json;version=2.0", "text/plain"):
        response = post(client, cast.ana, inbox_url(cast.andina), {"objects": []}, CONTENT_TYPE=content_type)
        assert_error(response, 415)
    assert not StixObject.objects.exists()


def test_an_envelope_over_the_limit_is_413_and_nothing_is_stored(client: Client, cast: Cast) -> None:
    envelope = {"objects": [indicator() for _ in range(5)]}
    with override_settings(MINGA_TAXII_MAX_CONTENT_LENGTH=500):
        assert_error(post(client, cast.ana, inbox_url(cast.andina), envelope), 413)
    assert not StixObject.objects.exists()
    # Larger than the node's general request limit, within the TAXII one: accepted.
    with override_settings(MINGA_MAX_REQUEST_BYTES=100):
        assert post(client, cast.ana, inbox_url(cast.andina), envelope).status_code == 202


def test_the_limit_holds_while_reading_when_content_length_lies(cast: Cast) -> None:
    class Request:
        META = {"CONTENT_TYPE": MEDIA, "CONTENT_LENGTH": "10"}

        def __init__(self) -> None:
            self.stream = io.BytesIO(b"x" * 300_000)

        def read(self, size: int) -> bytes:
            return self.stream.read(size)

    limit = override_settings(MINGA_TAXII_MAX_CONTENT_LENGTH=200_000)
    with limit, pytest.raises(services.TaxiiError) as caught, views._Body(Request()):  # type: ignore[arg-type]
        pass
    assert caught.value.status == 413


def test_unknown_things_are_404_with_a_taxii_body(client: Client, cast: Cast) -> None:
    assert_error(get(client, cast.ana, "/taxii2/api/collections/not-a-uuid/"), 404)
    assert_error(get(client, cast.ana, "/taxii2/api/collections/00000000-0000-4000-8000-000000000000/"), 404)
    assert_error(get(client, cast.ana, "/taxii2/nowhere/"), 404)
    assert_error(get(client, cast.ana, "/taxii2/api/status/nope/"), 404)
    missing = f"{READABLE_URL}objects/indicator--00000000-0000-4000-8000-000000000000/"
    assert_error(get(client, cast.ana, missing), 404)
    for nonsense in ("not-an-id", "indicator--%00", "x" * 400):
        assert_error(get(client, cast.ana, f"{READABLE_URL}objects/{nonsense}/versions/"), 404)
        assert_error(client.delete(f"{inbox_url(cast.andina)}objects/{nonsense}/", **cast.ana.headers), 404)


def test_a_method_the_endpoint_lacks_is_405(client: Client, cast: Cast) -> None:
    response = client.put(READABLE_URL + "objects/", b"{}", content_type=MEDIA, **cast.ana.headers)
    assert_error(response, 405)
    assert response["Allow"] == "GET, POST"
    assert_error(client.post("/taxii2/api/collections/", **cast.ana.headers), 405)


def test_bad_filters_are_400(client: Client, cast: Cast) -> None:
    for params in (
        {"added_after": "yesterday"},
        {"limit": "0"},
        {"limit": "many"},
        {"next": "!!"},
        {"match[version]": "2026-13-01T00:00:00Z"},
        {"match[type]": "indicator\x00"},
    ):
        assert_error(get(client, cast.ana, READABLE_URL + "objects/", **params), 400)


# --- collections as policy views -----------------------------------------------------------------


def test_collections_are_the_readable_view_and_one_inbox_per_organisation(client: Client, cast: Cast) -> None:
    listed = get(client, cast.ana, "/taxii2/api/collections/").json()["collections"]
    assert [(c["id"], c["can_read"], c["can_write"]) for c in listed] == [
        (services.READABLE_ID, True, False),
        (services.inbox_id(cast.andina), True, True),
        (events_id(cast.andina), True, False),  # the feed pipeline's events (minga.pipeline.stix)
    ]
    assert listed[1]["alias"] == "inbox-andina"
    # A read-only member reads the inbox but may not post to it.
    rita = get(client, cast.rita, "/taxii2/api/collections/").json()["collections"]
    assert [(c["can_read"], c["can_write"]) for c in rita] == [(True, False), (True, False), (True, False)]
    # Another organisation's inbox does not exist for Ana.
    assert_error(get(client, cast.ana, inbox_url(cast.caribe)), 404)
    assert get(client, cast.ana, inbox_url(cast.andina)).json()["id"] == services.inbox_id(cast.andina)
    # Ids are stable: derived from the organisation, not drawn per request.
    assert services.inbox_id(cast.andina) == services.inbox_id(cast.andina)


def test_writing_needs_an_inbox_one_may_import_for(client: Client, cast: Cast) -> None:
    envelope = {"objects": [indicator()]}
    assert_error(post(client, cast.ana, READABLE_URL, envelope), 403)
    assert_error(post(client, cast.rita, inbox_url(cast.andina), envelope), 403)
    assert_error(post(client, cast.carlos, inbox_url(cast.andina), envelope), 404)
    assert not StixObject.objects.exists()


# --- posting envelopes ---------------------------------------------------------------------------


def test_an_envelope_is_stored_with_a_status_listing_every_object(client: Client, cast: Cast) -> None:
    good = indicator()
    unmarked_sco = sco("ipv4-addr", "198.51.100.9")
    green = indicator("203.0.113.5", object_marking_refs=[stix.TLP2_MARKING_IDS[TLP.GREEN]])
    bad_pattern = indicator(pattern="[ipv4-addr:value = ")
    bad_id = {**indicator(), "id": "indicator--nope"}
    envelope = {"objects": [good, unmarked_sco, bad_pattern, green, bad_id]}

    response = post(client, cast.ana, inbox_url(cast.andina), envelope)

    assert response.status_code == 202 and response["Content-Type"] == MEDIA
    status = response.json()
    assert status["status"] == "complete"
    counts = ("total_count", "success_count", "failure_count", "pending_count")
    assert [status[name] for name in counts] == [5, 3, 2, 0]
    assert {(s["id"], s["version"]) for s in status["successes"] if s["id"] != unmarked_sco["id"]} == {
        (good["id"], TS),
        (green["id"], TS),
    }
    stored_sco = StixObject.objects.get(stix_id=unmarked_sco["id"])
    assert {s["id"]: s["version"] for s in status["successes"]}[unmarked_sco["id"]] == services.timestamp(
        stored_sco.date_added
    )
    failures = {f["id"]: f for f in status["failures"]}
    assert failures[bad_pattern["id"]]["version"] == TS
    assert "pattern" in failures[bad_pattern["id"]]["message"]
    assert "indicator--nope" in failures
    # Stored in Andina's name; unmarked objects as TLP:AMBER for Andina alone, marked ones as marked.
    rows = {o.stix_id: o for o in StixObject.objects.all()}
    assert {o.origin_organisation_id for o in rows.values()} == {cast.andina.pk}
    assert rows[good["id"]].tlp == TLP.AMBER and not rows[good["id"]].recipient_organisations.exists()
    assert rows[green["id"]].tlp == TLP.GREEN
    # The status is kept for Andina: Ana and Rita read it; Caribe and the outsider cannot tell it exists.
    status_url = f"/taxii2/api/status/{status['id']}/"
    assert get(client, cast.rita, status_url).json() == status
    assert_error(get(client, cast.carlos, status_url), 404)
    assert_error(get(client, cast.olga, status_url), 404)


def test_a_replayed_version_is_a_success_already_stored(client: Client, cast: Cast) -> None:
    obj = indicator()
    post(client, cast.ana, inbox_url(cast.andina), {"objects": [obj]})
    status = post(client, cast.ana, inbox_url(cast.andina), {"objects": [obj]}).json()
    assert status["success_count"] == 1 and status["failure_count"] == 0
    assert status["successes"] == [{"id": obj["id"], "version": TS, "message": "Already stored."}]
    assert StixObject.objects.filter(stix_id=obj["id"]).count() == 1


def test_an_envelope_that_is_not_one_is_400(client: Client, cast: Cast) -> None:
    for body in (b"not json", b"[1, 2]", b" ", b"{}", json.dumps({"type": "report", "objects": []}).encode()):
        assert_error(post(client, cast.ana, inbox_url(cast.andina), body), 400)
    assert not TaxiiStatus.objects.exists()


# --- reading: filters, versions, pages -----------------------------------------------------------


def _versions_of_one_object(cast: Cast) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    first = indicator()
    second = {**first, "modified": "2026-01-20T10:00:00.000Z", "name": "second"}
    third = {**first, "modified": LATER, "name": "third"}
    store(cast.andina, first, tlp=TLP.GREEN)
    store(cast.andina, third, second, tlp=TLP.GREEN)
    return first, second, third


def test_match_version_first_last_all_and_timestamps(client: Client, cast: Cast) -> None:
    first, _second, _third = _versions_of_one_object(cast)
    url = READABLE_URL + "objects/"

    def names(**params: Any) -> list[str]:
        response = get(client, cast.carlos, url, **params)
        assert response.status_code == 200
        objects = response.json().get("objects", [])
        validate_stix(objects)
        return sorted(o["name"] for o in objects)

    assert names() == ["third"]
    assert names(**{"match[version]": "last"}) == ["third"]
    assert names(**{"match[version]": "first"}) == [first["name"]]
    assert names(**{"match[version]": "all"}) == sorted([first["name"], "second", "third"])
    assert names(**{"match[version]": f"first,{LATER}"}) == sorted([first["name"], "third"])
    assert names(**{"match[version]": "2026-01-20T10:00:00Z"}) == ["second"]
    assert names(**{"match[spec_version]": "2.0"}) == []
    assert names(**{"match[spec_version]": "2.1"}) == ["third"]

    detail = get(client, cast.carlos, f"{url}{first['id']}/", **{"match[version]": "all"}).json()
    assert len(detail["objects"]) == 3
    versions = get(client, cast.carlos, f"{url}{first['id']}/versions/").json()
    # In the order they were added: the first alone, then the third and second in one envelope.
    assert versions == {"more": False, "versions": [TS, LATER, "2026-01-20T10:00:00.000Z"]}


def test_match_type_id_and_added_after_with_the_date_added_headers(client: Client, cast: Cast) -> None:
    a, b = indicator("198.51.100.1"), indicator("198.51.100.2")
    address = sco("ipv4-addr", "198.51.100.3")
    store(cast.andina, a, address, tlp=TLP.GREEN)
    store(cast.andina, b, tlp=TLP.GREEN)
    url = READABLE_URL + "objects/"

    response = get(client, cast.carlos, url, **{"match[type]": "indicator"})
    ids = [o["id"] for o in response.json()["objects"]]
    assert ids == [a["id"], b["id"]]  # in the order they were added
    added = {o.stix_id: o.date_added for o in StixObject.objects.all()}
    assert response["X-TAXII-Date-Added-First"] == services.timestamp(added[a["id"]])
    assert response["X-TAXII-Date-Added-Last"] == services.timestamp(added[b["id"]])

    after = get(client, cast.carlos, url, added_after=response["X-TAXII-Date-Added-First"])
    assert [o["id"] for o in after.json()["objects"]] == [b["id"]]
    both = get(client, cast.carlos, url, **{"match[id]": f"{a['id']},{address['id']}"})
    assert {o["id"] for o in both.json()["objects"]} == {a["id"], address["id"]}

    manifest = get(client, cast.carlos, READABLE_URL + "manifest/", **{"match[type]": "ipv4-addr"})
    assert manifest.json()["objects"] == [
        {
            "id": address["id"],
            "date_added": services.timestamp(added[address["id"]]),
            "version": services.timestamp(added[address["id"]]),
            "media_type": services.MEDIA_STIX,
        }
    ]
    assert manifest["X-TAXII-Date-Added-First"] == services.timestamp(added[address["id"]])
    nothing = get(client, cast.carlos, url, **{"match[type]": "malware"})
    assert nothing.json() == {"more": False}
    assert "X-TAXII-Date-Added-First" not in nothing


def test_pages_neither_skip_nor_repeat_objects_added_meanwhile(client: Client, cast: Cast) -> None:
    store(cast.andina, *[indicator(f"198.51.100.{i}") for i in range(7)], tlp=TLP.GREEN)
    url = READABLE_URL + "objects/"
    seen: list[str] = []
    page = get(client, cast.carlos, url, limit=3).json()
    seen += [o["id"] for o in page["objects"]]
    assert page["more"] is True
    # Objects arrive while Carlos pages, some in Andina's inbox, some by import.
    green = [stix.TLP2_MARKING_IDS[TLP.GREEN]]
    late = [indicator(f"203.0.113.{i}", object_marking_refs=green) for i in range(4)]
    store(cast.andina, *late[:2], tlp=TLP.GREEN)
    while page["more"]:
        page = get(client, cast.carlos, url, limit=3, next=page["next"]).json()
        seen += [o["id"] for o in page.get("objects", [])]
        if len(seen) == 6:
            response = post(client, cast.ana, inbox_url(cast.andina), {"objects": late[2:]})
            assert response.json()["success_count"] == 2, response.json()
    everything = list(StixObject.objects.order_by("date_added", "pk").values_list("stix_id", flat=True))
    assert seen == everything
    assert len(seen) == len(set(seen)) == 11


def test_limit_is_capped(client: Client, cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "MAX_PAGE", 2)
    store(cast.andina, *[indicator(f"198.51.100.{i}") for i in range(3)], tlp=TLP.GREEN)
    page = get(client, cast.carlos, READABLE_URL + "objects/", limit=500).json()
    assert len(page["objects"]) == 2 and page["more"] is True and page["next"]
    default = get(client, cast.carlos, READABLE_URL + "manifest/").json()
    assert len(default["objects"]) == 2 and default["more"] is True


# --- the access policy on every read path --------------------------------------------------------


def test_no_read_path_shows_an_object_outside_the_policy(client: Client, cast: Cast) -> None:
    amber = indicator("198.51.100.77")
    store(cast.andina, amber, tlp=TLP.AMBER, recipients=(cast.caribe,))
    obj = f"{READABLE_URL}objects/{amber['id']}/"

    # Carlos (named recipient) reads it through every path.
    objects = get(client, cast.carlos, READABLE_URL + "objects/").json()["objects"]
    assert [o["id"] for o in objects] == [amber["id"]]
    assert get(client, cast.carlos, READABLE_URL + "manifest/").json()["objects"][0]["id"] == amber["id"]
    assert get(client, cast.carlos, obj).json()["objects"][0]["id"] == amber["id"]
    assert get(client, cast.carlos, obj + "versions/").json()["versions"] == [TS]

    # Olga (named nowhere) sees nothing, and cannot tell that it exists.
    assert get(client, cast.olga, READABLE_URL + "objects/").json() == {"more": False}
    assert get(client, cast.olga, READABLE_URL + "manifest/").json() == {"more": False}
    assert get(client, cast.olga, READABLE_URL + "objects/", **{"match[id]": amber["id"]}).json() == {
        "more": False
    }
    assert_error(get(client, cast.olga, obj), 404)
    assert_error(get(client, cast.olga, obj + "versions/"), 404)
    assert_error(get(client, cast.olga, f"{inbox_url(cast.andina)}objects/"), 404)
    collections = get(client, cast.olga, "/taxii2/api/collections/").json()["collections"]
    assert [c["id"] for c in collections] == [
        services.READABLE_ID,
        services.inbox_id(cast.outside),
        events_id(cast.outside),
    ]
    assert get(client, cast.olga, f"{inbox_url(cast.outside)}objects/").json() == {"more": False}


def test_an_inbox_shows_its_organisations_objects_the_reader_may_read(client: Client, cast: Cast) -> None:
    mine, theirs = indicator("198.51.100.1"), indicator("198.51.100.2")
    store(cast.andina, mine, tlp=TLP.GREEN)
    store(cast.caribe, theirs, tlp=TLP.GREEN)
    inbox = get(client, cast.ana, f"{inbox_url(cast.andina)}objects/").json()
    assert [o["id"] for o in inbox["objects"]] == [mine["id"]]
    readable = get(client, cast.ana, READABLE_URL + "objects/").json()
    assert {o["id"] for o in readable["objects"]} == {mine["id"], theirs["id"]}
    validate_stix(readable["objects"])


def test_reads_are_audited_per_page(client: Client, cast: Cast) -> None:
    store(cast.andina, indicator(), tlp=TLP.AMBER, recipients=(cast.caribe,))
    get(client, cast.carlos, READABLE_URL + "objects/")
    entry = AuditEntry.objects.filter(action="taxii.objects_read").get()
    assert entry.actor == cast.carlos.user
    assert entry.details["tlp"] == {TLP.AMBER: 1}


# --- deleting ------------------------------------------------------------------------------------


def test_an_organisation_deletes_its_own_objects_only(client: Client, cast: Cast) -> None:
    first, _second, _third = _versions_of_one_object(cast)
    foreign = indicator()
    store(cast.caribe, foreign, tlp=TLP.GREEN)
    inbox_obj = f"{inbox_url(cast.andina)}objects/{first['id']}/"

    # Not through the readable view, not by a read-only member, not another organisation's object.
    assert_error(client.delete(f"{READABLE_URL}objects/{first['id']}/", **cast.ana.headers), 403)
    assert_error(client.delete(inbox_obj, **cast.rita.headers), 403)
    assert_error(client.delete(f"{inbox_url(cast.andina)}objects/{foreign['id']}/", **cast.ana.headers), 404)
    assert_error(client.delete(f"{inbox_url(cast.andina)}objects/{first['id']}/", **cast.carlos.headers), 404)

    # One version, then the rest.
    response = client.delete(inbox_obj + f"?match[version]={LATER}", **cast.ana.headers)
    assert response.status_code == 200
    remaining = StixObject.objects.filter(stix_id=first["id"])
    assert sorted(remaining.values_list("is_latest", flat=True)) == [False, True]
    assert remaining.get(is_latest=True).data["name"] == "second"
    assert client.delete(inbox_obj, **cast.ana.headers).status_code == 200
    assert not StixObject.objects.filter(stix_id=first["id"]).exists()
    assert StixObject.objects.filter(stix_id=foreign["id"]).exists()
    deletions = AuditEntry.objects.filter(action="intel.deleted").order_by("seq")
    assert [e.details["versions"] for e in deletions] == [1, 2]
    assert_error(client.delete(inbox_obj, **cast.ana.headers), 404)


def test_emitted_json_is_what_the_intel_store_emits() -> None:
    green, amber = stix.TLP2_MARKING_IDS[TLP.GREEN], stix.TLP2_MARKING_IDS[TLP.AMBER]
    tlp1_green = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
    other = "marking-definition--00000000-0000-4000-8000-000000000000"
    cases = [
        (indicator(), TLP.AMBER),
        (indicator(object_marking_refs=[green]), TLP.GREEN),
        (indicator(object_marking_refs=[green]), TLP.AMBER),
        (indicator(object_marking_refs=[tlp1_green]), TLP.GREEN),
        (indicator(object_marking_refs=[amber, other]), TLP.AMBER),
        (indicator(description='says "object_marking_refs"'), TLP.AMBER),
        (stix.tlp_marking_definition(TLP.GREEN), TLP.CLEAR),
        (sco("ipv4-addr", "198.51.100.1"), TLP.RED),
    ]
    for obj, level in cases:
        raw = json.dumps(obj, separators=(",", ":"))
        assert json.loads(services.emitted_json(raw, level)) == stix.with_tlp_marking(obj, level)
