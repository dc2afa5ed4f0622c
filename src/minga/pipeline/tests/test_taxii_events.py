"""The TAXII collection "Events of <organisation>": an organisation's routed events as STIX 2.1,
read with the OASIS client (taxii2-client) from a real server (pytest-django's live server),
paged in the order stored, stable on re-reading, valid for the OASIS validator, and 404 for
anyone outside the organisation."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import stix2
from django.test import Client
from stix2validator import ValidationOptions, validate_instance
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import Server, as_pages

from minga.core import services as core_services
from minga.core.choices import Role
from minga.core.models import AuditEntry
from minga.intel import stix as intel_stix
from minga.pipeline import stix
from minga.pipeline.models import Event
from minga.pipeline.tests.helpers import HEADER, constituency, ingest, scan_feed
from minga.taxii import services as taxii

pytestmark = pytest.mark.django_db(transaction=True)

LINES = (
    "2026-01-10T10:00:00Z,192.0.2.10,22,64500,,,scan\n"
    + "2026-01-10T10:30:00Z,192.0.2.11,23,,www.demo-a.example,http://www.demo-a.example/x,scan\n"
    + "2026-01-10T11:00:00Z,192.0.2.12,80,,,,bot\n"
    + "2026-01-10T11:00:00Z,192.0.2.200,22,,,,bot\n"  # another organisation's
    + "2026-01-10T12:00:00Z,203.0.113.5,22,,,,scan\n"  # unrouted
)


class Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


@pytest.fixture
def world(make_org, make_user):
    hub = make_org("hub")
    team = constituency(make_org("demo-a"), "192.0.2.0/25")
    other = constituency(make_org("demo-c"), "192.0.2.128/25")
    feed = scan_feed(hub)
    ingest(feed, HEADER + LINES)

    def token(name: str, org: Any, role: str = Role.ANALYST) -> str:
        return core_services.create_api_token(None, make_user(name, org, role), name="taxii").raw

    return {
        "team": team,
        "other": other,
        "feed": feed,
        "ana": token("ana", team),
        "rita": token("rita", team, Role.READ_ONLY),
        "otto": token("otto", other),
        "hugo": token("hugo", hub),
    }


def root(live_server: Any, token: str) -> Any:
    api_root = Server(f"{live_server.url}/taxii2/", auth=Bearer(token)).default
    assert api_root is not None
    return api_root


def by_alias(api_root: Any) -> dict[str, Any]:
    return {c.alias: c for c in api_root.collections}


def test_a_member_reads_its_organisations_events_as_valid_stix(live_server, world):
    found = by_alias(root(live_server, world["ana"]))
    events = found["events-demo-a"]
    assert events.id == stix.collection_id(world["team"]) and events.title == "Events of Organisation demo-a"
    assert (events.can_read, events.can_write) == (True, False)
    envelope = events.get_objects()
    objects = envelope["objects"]
    assert envelope.get("more") is False
    for obj in objects:
        outcome = validate_instance(obj, ValidationOptions())
        assert outcome.is_valid, (obj, [str(e) for e in outcome.errors])
        assert obj["object_marking_refs"] == [intel_stix.TLP2_MARKING_IDS["amber"]]
    observed = [o for o in objects if o["type"] == "observed-data"]
    assert len(observed) == 3  # the three events routed to demo-a, none of the others
    values = {o.get("value") or o.get("number") for o in objects if "value" in o or "number" in o}
    assert values == {
        "192.0.2.10",
        "192.0.2.11",
        "192.0.2.12",
        64500,
        "www.demo-a.example",
        "http://www.demo-a.example/x",
    }
    assert {o["labels"][0] for o in observed} == {
        "rsit:information-gathering:scanner",
        "rsit:malicious-code:infected-system",
    }
    # The ports: a network-traffic from the source address, with STIX's deterministic id.
    traffic = {o["src_port"]: o for o in objects if o["type"] == "network-traffic"}
    assert set(traffic) == {22, 23, 80}
    ssh = traffic[22]
    assert ssh["protocols"] == ["ipv4"] and "dst_ref" not in ssh
    assert ssh["src_ref"] == stix.sco_id("ipv4-addr", {"value": "192.0.2.10"})
    assert ssh["id"] == stix2.NetworkTraffic(src_ref=ssh["src_ref"], src_port=22, protocols=["ipv4"]).id
    # Every reference resolves within the page, and each observed-data is its event's.
    ids = {o["id"] for o in objects}
    assert all(set(o["object_refs"]) <= ids for o in observed)
    assert all(o["src_ref"] in ids for o in traffic.values())
    mine = set(
        Event.objects.filter(source_ip__in=["192.0.2.10", "192.0.2.11", "192.0.2.12"]).values_list(
            "pk", flat=True
        )
    )
    assert {stix.event_id_of(o["id"]) for o in observed} == mine
    # Re-reading gives the very same objects (deterministic ids and times).
    assert events.get_objects()["objects"] == objects
    # The manifest lists the same ids; one object and its versions are found by id.
    manifest = events.get_manifest()["objects"]
    assert [m["id"] for m in manifest] == [o["id"] for o in objects]
    one = events.get_object(observed[0]["id"])["objects"]
    assert one == [observed[0]]
    assert AuditEntry.objects.filter(action="taxii.objects_read").exists()
    # A read-only member reads it too; the collection takes no writes.
    assert by_alias(root(live_server, world["rita"]))["events-demo-a"].get_objects()["objects"] == objects
    with pytest.raises(TAXIIServiceException):
        events.add_objects({"objects": [observed[0]]})


def test_pages_follow_the_order_stored_with_limit_next_and_added_after(live_server, world):
    ingest(world["feed"], HEADER + "2026-01-11T10:00:00Z,192.0.2.20,443,,,,scan\n", name="later.csv")
    events = by_alias(root(live_server, world["ana"]))["events-demo-a"]
    everything = events.get_objects()["objects"]
    paged = [obj for page in as_pages(events.get_objects, per_request=3) for obj in page.get("objects", [])]
    assert paged == everything  # whole events per page, none skipped or served twice
    observed = [o for o in everything if o["type"] == "observed-data"]
    assert len(observed) == 4
    # limit=2 is less than the first event's objects (its address, its network-traffic, its
    # observed-data): the page holds that one whole event.
    first = events.get_objects(limit=2)
    assert [o["type"] for o in first["objects"]] == ["ipv4-addr", "network-traffic", "observed-data"]
    assert first["more"] is True and first["next"]
    rest = events.get_objects(next=first["next"])["objects"]
    assert first["objects"] + rest == everything
    # added_after: what was stored after the first file.
    first_file_added = max(o["created"] for o in observed[:3])
    newer = events.get_objects(added_after=first_file_added)["objects"]
    assert [o["value"] for o in newer if o["type"] == "ipv4-addr"] == ["192.0.2.20"]
    only = events.get_objects(type="ipv4-addr")["objects"]
    assert {o["type"] for o in only} == {"ipv4-addr"} and len(only) == 4


def test_another_organisations_member_gets_404(live_server, world):
    client = Client()
    url = f"/taxii2/api/collections/{stix.collection_id(world['team'])}/"
    for who in ("otto", "hugo"):  # another routed organisation; the feed's owner
        headers = {"HTTP_AUTHORIZATION": f"Bearer {world[who]}", "HTTP_ACCEPT": taxii.MEDIA_TAXII}
        assert client.get(url, **headers).status_code == 404
        assert client.get(url + "objects/", **headers).status_code == 404
        assert client.get(url + "manifest/", **headers).status_code == 404
        assert "events-demo-a" not in by_alias(root(live_server, world[who]))
    # The other organisation's own collection holds only its event.
    theirs = by_alias(root(live_server, world["otto"]))["events-demo-c"].get_objects()["objects"]
    assert [o["value"] for o in theirs if o["type"] == "ipv4-addr"] == ["192.0.2.200"]
    # An observed-data id of an event not routed to demo-a is not found in demo-a's collection.
    other_event = Event.objects.get(source_ip="192.0.2.200")
    ana = {"HTTP_AUTHORIZATION": f"Bearer {world['ana']}", "HTTP_ACCEPT": taxii.MEDIA_TAXII}
    assert client.get(f"{url}objects/{stix.observed_data_id(other_event.pk)}/", **ana).status_code == 404
    assert client.get(f"{url}objects/not-an-id/", **ana).status_code == 404


def test_ids_are_stable_and_read_back():
    assert stix.observed_data_id(42) == stix.observed_data_id(42) != stix.observed_data_id(43)
    assert stix.event_id_of(stix.observed_data_id(123456789)) == 123456789
    assert stix.event_id_of("observed-data--00000000-0000-4000-8000-000000000001") is None
    # STIX 2.1's own deterministic SCO id for an IPv4 address (as the stix2 library computes it).
    assert stix.sco_id("ipv4-addr", {"value": "192.0.2.10"}) == stix2.IPv4Address(value="192.0.2.10").id
    assert stix.sco_id("autonomous-system", {"number": 64500}) == stix2.AutonomousSystem(number=64500).id
