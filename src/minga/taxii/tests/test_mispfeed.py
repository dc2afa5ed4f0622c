"""MISP feeds, both ways. A team that runs MISP subscribes to Minga's feed with an API token and
receives exactly what the token's user may read, as events PyMISP loads; Minga pulls MISP feeds
(here: its own feed, served by the live server and mirrored to a plain HTTP server) into an
organisation's name, fetching only what is new or changed."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from pymisp import MISPEvent
from pymisp.tools.feed import feed_meta_generator

from minga.core.choices import TLP
from minga.core.models import AuditEntry, Organisation
from minga.intel import services as intel_services
from minga.intel import stix
from minga.intel.models import StixObject
from minga.intel.tests.bundles import bundle, indicator, sco
from minga.taxii import federation, mispfeed
from minga.taxii.models import MispFeedEvent, Peer, PeerKind
from minga.taxii.tests.conftest import Cast, Person, store

FEED = "/federation/misp-feed/"
LATER = "2026-03-01T09:00:00.000Z"


def md5(value: str) -> str:
    return hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()


def read(client: Client, person: Person | None, name: str) -> Any:
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {person.token}"} if person else {}
    return client.get(FEED + name, **headers)


@dataclass
class Feed:
    manifest: dict[str, Any]
    events: dict[str, MISPEvent]
    documents: dict[str, bytes]
    hashes: list[tuple[str, str]]

    def values(self) -> set[str]:
        return {str(a.value) for event in self.events.values() for a in event.attributes}


def feed_of(client: Client, person: Person) -> Feed:
    """The whole feed as ``person`` reads it, each event loaded into PyMISP's model."""
    response = read(client, person, "manifest.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    manifest = response.json()
    events: dict[str, MISPEvent] = {}
    documents: dict[str, bytes] = {}
    for event_uuid in manifest:
        answer = read(client, person, f"{event_uuid}.json")
        assert answer.status_code == 200, answer.content
        documents[event_uuid] = answer.content
        event = MISPEvent()
        event.load(answer.content.decode())
        events[event_uuid] = event
    answer = read(client, person, "hashes.csv")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/csv")
    text = b"".join(answer.streaming_content).decode()  # type: ignore[attr-defined]
    lines = [tuple(line.split(",")) for line in text.splitlines()]
    assert all(len(line) == 2 for line in lines)
    return Feed(manifest, events, documents, lines)  # type: ignore[arg-type]


def shared(cast: Cast) -> dict[str, dict[str, Any]]:
    """What Andina shares: one object of each TLP, and its analyst's own TLP:RED note."""
    objects = {
        "green": indicator("198.51.100.1", object_marking_refs=[stix.TLP2_MARKING_IDS[TLP.GREEN]]),
        "green-domain": sco("domain-name", "bad.example.org"),
        "amber-caribe": indicator("198.51.100.2"),
        "amber-own": indicator("198.51.100.3"),
        "red": indicator("198.51.100.4"),
    }
    store(cast.andina, objects["green"], objects["green-domain"], tlp=TLP.GREEN)
    store(cast.andina, objects["amber-caribe"], tlp=TLP.AMBER, recipients=(cast.caribe,))
    store(cast.andina, objects["amber-own"], tlp=TLP.AMBER)
    result = intel_services.import_bundle(
        cast.ana.user, cast.andina, io.BytesIO(json.dumps(bundle(objects["red"])).encode()), TLP.RED
    )
    assert result.accepted == 1
    return objects


# --- publishing ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_subscriber_receives_what_its_user_may_read_as_events_pymisp_loads(
    client: Client, cast: Cast
) -> None:
    shared(cast)
    feed = feed_of(client, cast.carlos)

    # One event per originating organisation, day and TLP: the day an object was created (its
    # indicators: 2026-01-15), else the day it arrived (the domain, which has no versions).
    arrived = timezone.now().date().isoformat()
    events = {(e["Tag"][0]["name"], e["date"]): uuid for uuid, e in feed.manifest.items()}
    assert set(events) == {("tlp:green", "2026-01-15"), ("tlp:green", arrived), ("tlp:amber", "2026-01-15")}
    green = feed.events[events["tlp:green", "2026-01-15"]]
    seen = feed.events[events["tlp:green", arrived]]
    amber = feed.events[events["tlp:amber", "2026-01-15"]]
    assert [(a.type, a.value, a.to_ids) for a in green.attributes] == [("ip-dst", "198.51.100.1", True)]
    assert [(a.type, a.value, a.to_ids) for a in seen.attributes] == [("domain", "bad.example.org", False)]
    assert [(a.type, a.value) for a in amber.attributes] == [("ip-dst", "198.51.100.2")]
    for event, tag in ((green, "tlp:green"), (seen, "tlp:green"), (amber, "tlp:amber")):
        assert [t.name for t in event.tags] == [tag]
        assert all([t.name for t in a.tags] == [tag] for a in event.attributes)
        assert event.Orgc.name == cast.andina.name and event.Orgc.uuid == str(cast.andina.uuid)
        assert event.info.startswith(cast.andina.name)

    # The manifest is what PyMISP's model says of each event, and hashes.csv what PyMISP's feed
    # writer lists: the md5 of every attribute value, with its event.
    for event_uuid, event in feed.events.items():
        assert event.uuid == event_uuid
        assert event.manifest == {event_uuid: feed.manifest[event_uuid]}
        listed = sorted(digest for digest, owner in feed.hashes if owner == event_uuid)
        assert listed == sorted(event.to_feed(with_meta=True)["Event"]["_hashes"])
    assert sorted(feed.hashes) == sorted(
        [
            (md5("198.51.100.1"), green.uuid),
            (md5("bad.example.org"), seen.uuid),
            (md5("198.51.100.2"), amber.uuid),
        ]
    )
    # Reading the feed is audited like an export.
    exports = AuditEntry.objects.filter(action="intel.exported", actor=cast.carlos.user)
    assert exports.count() == 5  # the manifest, three events, hashes.csv
    assert {e.details["format"] for e in exports} == {"misp-feed"}


@pytest.mark.django_db
def test_nobody_outside_the_recipients_sees_an_object_in_any_file(client: Client, cast: Cast) -> None:
    objects = shared(cast)
    carlos, olga, ana = feed_of(client, cast.carlos), feed_of(client, cast.olga), feed_of(client, cast.ana)

    # Caribe is not named on Andina's own AMBER object: not in an event, nor in hashes.csv.
    assert "198.51.100.3" not in carlos.values()
    assert md5("198.51.100.3") not in {digest for digest, _uuid in carlos.hashes}
    assert b"198.51.100.3" not in b"".join(carlos.documents.values())
    # The outsider organisation is no network member: it sees nothing at all.
    assert (olga.manifest, olga.events, olga.hashes) == ({}, {}, [])
    for event_uuid in carlos.manifest:
        assert read(client, cast.olga, f"{event_uuid}.json").status_code == 404
    # Andina's analyst sees both AMBER objects, but TLP:RED never leaves the node in a feed.
    assert {"198.51.100.1", "198.51.100.2", "198.51.100.3"} <= ana.values()
    assert "198.51.100.4" not in ana.values()
    assert md5("198.51.100.4") not in {digest for digest, _uuid in ana.hashes}
    assert StixObject.objects.filter(stix_id=objects["red"]["id"], tlp=TLP.RED).exists()
    # An event of the same uuid holds, for each reader, only what that reader may read.
    amber = next(u for u, e in carlos.manifest.items() if e["Tag"][0]["name"] == "tlp:amber")
    assert amber in ana.manifest
    assert {str(a.value) for a in ana.events[amber].attributes} == {"198.51.100.2", "198.51.100.3"}
    assert read(client, cast.carlos, "00000000-0000-4000-8000-000000000000.json").status_code == 404


@pytest.mark.django_db
def test_every_file_needs_an_api_token(client: Client, cast: Cast) -> None:
    shared(cast)
    event_uuid = next(iter(feed_of(client, cast.carlos).manifest))
    for name in ("manifest.json", "hashes.csv", f"{event_uuid}.json"):
        response = read(client, None, name)
        assert response.status_code == 401
        assert "Authorization: Bearer" in response.json()["message"]
        assert "Bearer" in response["WWW-Authenticate"]
        wrong = client.get(FEED + name, HTTP_AUTHORIZATION="Bearer mng_not-a-token")
        assert wrong.status_code == 401
        posted = client.post(FEED + name, b"{}", content_type="application/json")
        assert posted.status_code == 405
    assert read(client, cast.carlos, "not-a-uuid.json").status_code == 404


@pytest.mark.django_db
def test_a_new_version_moves_its_events_timestamp_and_a_revoked_object_leaves_it(
    client: Client, cast: Cast
) -> None:
    objects = shared(cast)
    before = feed_of(client, cast.carlos)
    green = next(
        u
        for u, e in before.manifest.items()
        if e["Tag"][0]["name"] == "tlp:green" and e["date"] == "2026-01-15"
    )
    revoked = {**objects["green"], "modified": LATER, "revoked": True}
    time.sleep(1.1)  # MISP timestamps count seconds
    store(cast.andina, revoked, tlp=TLP.GREEN)

    after = feed_of(client, cast.carlos)
    assert set(after.manifest) == set(before.manifest)
    assert after.manifest[green]["timestamp"] > before.manifest[green]["timestamp"]
    stamp = after.events[green].timestamp
    assert isinstance(stamp, datetime) and int(stamp.timestamp()) == after.manifest[green]["timestamp"]
    assert "198.51.100.1" not in after.values()
    assert md5("198.51.100.1") not in {digest for digest, _uuid in after.hashes}
    for unchanged in set(before.manifest) - {green}:
        assert after.manifest[unchanged] == before.manifest[unchanged]


@pytest.mark.django_db
def test_the_feed_is_bounded_to_the_most_recently_changed_events(
    client: Client, cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared(cast)
    time.sleep(1.1)  # MISP timestamps count seconds: Andina's AMBER event becomes the newest
    store(cast.andina, indicator("198.51.100.5"), tlp=TLP.AMBER)
    everything = feed_of(client, cast.ana)
    newest = max(everything.manifest, key=lambda u: everything.manifest[u]["timestamp"])
    assert len(everything.events[newest].attributes) == 3
    monkeypatch.setattr(mispfeed, "MAX_EVENTS", 1)
    monkeypatch.setattr(mispfeed, "MAX_EVENT_OBJECTS", 1)
    bounded = feed_of(client, cast.ana)
    assert len(bounded.manifest) == 1
    (only,) = bounded.manifest
    assert only == newest
    assert len(bounded.events[only].attributes) == 1
    assert [owner for _digest, owner in bounded.hashes] == [only]
    for event_uuid in set(everything.manifest) - {only}:
        assert read(client, cast.ana, f"{event_uuid}.json").status_code == 404


# --- consuming -----------------------------------------------------------------------------------


class FeedServer(SimpleHTTPRequestHandler):
    """A MISP feed as a plain directory over HTTP; files named in ``server.broken`` answer 500."""

    def do_GET(self) -> None:
        if self.path.lstrip("/") in getattr(self.server, "broken", set()):
            self.send_error(500, "Internal Server Error")
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[tuple[str, Path, set[str]]]:
    folder = tmp_path / "feed"
    folder.mkdir()
    broken: set[str] = set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(FeedServer, directory=str(folder)))
    httpd.broken = broken  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder, broken
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def mirror(base: str, token: str, folder: Path) -> dict[str, Any]:
    """Copy a feed, as a MISP admin's script would, into ``folder``."""
    headers = {"Authorization": f"Bearer {token}"}
    manifest = requests.get(base + "manifest.json", headers=headers, timeout=10)
    manifest.raise_for_status()
    (folder / "manifest.json").write_bytes(manifest.content)
    for name in [f"{u}.json" for u in manifest.json()] + ["hashes.csv"]:
        answer = requests.get(base + name, headers=headers, timeout=10)
        answer.raise_for_status()
        (folder / name).write_bytes(answer.content)
    return dict(manifest.json())


def misp_peer(name: str, url: str, organisation: Organisation, token: str = "") -> Peer:
    return federation.add_peer(
        None,
        name=name,
        url=url,
        kind=PeerKind.MISP,
        direction="pull",
        organisation=organisation.short_name,
        default_tlp=TLP.AMBER,
        credential=token,
    ).peer


def pull(peer: Peer) -> int:
    peer.refresh_from_db()
    return mispfeed.pull(peer, federation._session(peer))


def test_a_misp_feed_peer_is_pulled_only_and_stored_in_an_organisations_name(cast: Cast) -> None:
    with pytest.raises(ValidationError) as refused:
        federation.add_peer(None, name="feed", url="https://feed.example/", kind=PeerKind.MISP)
    assert set(refused.value.message_dict) == {"direction", "organisation"}


@pytest.mark.django_db(transaction=True)
def test_minga_pulls_its_own_feed_round_trip_and_only_what_changed(live_server: Any, cast: Cast) -> None:
    objects = shared(cast)
    peer = misp_peer("andina-misp", f"{live_server.url}{FEED}", cast.caribe, cast.carlos.token)

    # Carlos's feed: Andina's GREEN event (an indicator, a domain) and the AMBER one naming Caribe.
    # GREEN of 2026-01-15 and AMBER: the indicator and the event's report each; GREEN of today:
    # the domain seen (observed-data and its domain-name) and the report.
    assert pull(peer) == 2 + 2 + 3
    copies = StixObject.objects.filter(received_from="andina-misp")
    assert {(c.origin_organisation_id, c.origin_node) for c in copies} == {(cast.caribe.pk, "andina-misp")}
    patterns = {c.data.get("pattern"): c.tlp for c in copies if c.type == "indicator"}
    assert patterns == {
        objects["green"]["pattern"]: TLP.GREEN,
        objects["amber-caribe"]["pattern"]: TLP.AMBER,
    }
    assert {c.data["value"] for c in copies if c.type == "domain-name"} == {"bad.example.org"}
    assert not copies.filter(tlp=TLP.RED).exists()
    assert MispFeedEvent.objects.filter(peer=peer, error="").count() == 3
    imports = AuditEntry.objects.filter(action="intel.misp_imported")
    assert imports.count() == 3

    # Unchanged: nothing fetched again, nothing stored twice.
    assert pull(peer) == 0
    assert imports.count() == 3 and copies.count() == 7

    # A new object of the same day and TLP changes that event only: only it is fetched again.
    time.sleep(1.1)  # MISP timestamps count seconds
    store(cast.andina, indicator("198.51.100.9", object_marking_refs=[stix.TLP2_MARKING_IDS[TLP.GREEN]]))
    # This time through the sync that the schedule runs: a MISP feed is pulled, never pushed.
    outcome = federation.sync(peer)
    assert (outcome.pulled, outcome.pushed, outcome.error) == (2, 0, "")  # the indicator, the report
    assert imports.count() == 4
    assert any("198.51.100.9" in c.raw for c in StixObject.objects.filter(received_from="andina-misp"))
    peer.refresh_from_db()
    assert peer.pulled == 9 and peer.rejected == 0


@pytest.mark.django_db(transaction=True)
def test_a_mirrored_feed_on_a_plain_http_server_is_pulled_and_its_faults_are_clear(
    live_server: Any,
    cast: Cast,
    make_org: Callable[..., Organisation],
    feed_server: tuple[str, Path, set[str]],
) -> None:
    shared(cast)
    url, folder, broken = feed_server
    manifest = mirror(f"{live_server.url}{FEED}", cast.ana.token, folder)
    assert len(manifest) == 3
    # PyMISP's own feed tool, run over the event files, writes the same manifest and hashes.
    check = folder.parent / "regenerated"
    check.mkdir()
    for event_uuid in manifest:
        (check / f"{event_uuid}.json").write_bytes((folder / f"{event_uuid}.json").read_bytes())
    feed_meta_generator(check)
    assert json.loads((check / "manifest.json").read_text()) == manifest
    regenerated = (check / "hashes.csv").read_text().splitlines()
    assert sorted(regenerated) == sorted((folder / "hashes.csv").read_text().splitlines())
    subscriber = make_org("subscriber")
    peer = misp_peer("andina-mirror", url, subscriber)

    # The server answers 500, then garbage: a clear reason each time, nothing stored.
    broken.add("manifest.json")
    with pytest.raises(federation.PeerUnavailable, match=re.escape("HTTP 500 for manifest.json")):
        pull(peer)
    broken.clear()
    good = (folder / "manifest.json").read_bytes()
    for garbage, reason in (
        (b"<html>not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"not-a-uuid": {"timestamp": 1}}', "not a MISP manifest"),
    ):
        (folder / "manifest.json").write_bytes(garbage)
        with pytest.raises(federation.PeerUnavailable, match=reason):
            pull(peer)
    assert not StixObject.objects.filter(received_from="andina-mirror").exists()
    (folder / "manifest.json").write_bytes(good)

    # One event file is garbage, the other answers 500: the pull stops with the reason, having
    # recorded the garbage one as refused; once the server is well, the rest comes.
    first, second, _third = sorted(manifest, key=lambda u: (manifest[u]["timestamp"], u))  # pull order
    (folder / f"{first}.json").write_bytes(b'{"something": "else"}')
    broken.add(f"{second}.json")
    with pytest.raises(federation.PeerUnavailable, match=re.escape(f"HTTP 500 for {second}.json")):
        pull(peer)
    refused = MispFeedEvent.objects.get(peer=peer, event_uuid=first)
    assert "not a MISP event" in refused.error and refused.accepted == 0
    assert AuditEntry.objects.filter(action="federation.misp_event_refused").count() == 1
    broken.clear()
    assert pull(peer) > 0
    assert pull(peer) == 0  # idempotent
    stored = StixObject.objects.filter(received_from="andina-mirror", origin_organisation=subscriber)
    assert "198.51.100.3" in "".join(stored.values_list("raw", flat=True))  # Ana's AMBER, in the mirror

    # A feed that is down.
    Peer.objects.filter(pk=peer.pk).update(url="http://127.0.0.1:9/")
    with pytest.raises(federation.PeerUnavailable, match="cannot be reached"):
        pull(peer)
