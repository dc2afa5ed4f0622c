"""A foreign peer: medallion, the OASIS reference TAXII 2.1 server (memory back end), as a real
process on the loopback. Minga pulls its collection and pushes to it; what came from medallion
is never pushed back, and a second sync moves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from taxii2client.v21 import Collection

from minga.core.choices import TLP
from minga.core.models import Organisation
from minga.intel.models import StixObject
from minga.intel.tests.bundles import indicator, sco
from minga.taxii import federation
from minga.taxii.models import PeerKind
from minga.taxii.tests.conftest import store
from minga.taxii.tests.nodes import free_port

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
USER, PASSWORD = "minga", "a-medallion-password"
COLLECTION = str(uuid.uuid4())


@pytest.fixture
def medallion(tmp_path: Path) -> Iterator[dict[str, Any]]:
    theirs = [indicator("192.0.2.10"), sco("domain-name", "c2.example.net")]
    manifest = [
        {
            "id": obj["id"],
            "date_added": f"2026-03-01T10:00:0{n}.000000Z",
            "version": obj.get("modified", f"2026-03-01T10:00:0{n}.000Z"),
            "media_type": "application/stix+json;version=2.1",
        }
        for n, obj in enumerate(theirs)
    ]
    stored = [
        obj if "modified" in obj else {**obj, "_date_added": manifest[n]["date_added"]}
        for n, obj in enumerate(theirs)
    ]
    port = free_port()
    root = f"http://127.0.0.1:{port}/api1/"
    data = {
        "/discovery": {"title": "medallion", "default": root, "api_roots": [root]},
        "api1": {
            "information": {
                "title": "foreign",
                "versions": ["application/taxii+json;version=2.1"],
                "max_content_length": 10_000_000,
            },
            "status": [],
            "collections": [
                {
                    "id": COLLECTION,
                    "title": "shared with Minga",
                    "can_read": True,
                    "can_write": True,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": stored,
                    "manifest": manifest,
                }
            ],
        },
    }
    (tmp_path / "data.json").write_text(json.dumps(data))
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(tmp_path / "data.json"),
        },
        "users": {USER: PASSWORD},
        "taxii": {"max_page_size": 100},
    }
    (tmp_path / "medallion.json").write_text(json.dumps(config))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medallion.scripts.run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            str(tmp_path / "medallion.json"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/taxii2/", auth=(USER, PASSWORD), timeout=2)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield {"root": root, "theirs": theirs}
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_minga_pulls_from_and_pushes_to_medallion(medallion: dict[str, Any], make_org: Any) -> None:
    andina: Organisation = make_org("andina")
    ours_green, ours_amber = indicator("198.51.100.90"), indicator("198.51.100.91")
    store(andina, ours_green, tlp=TLP.GREEN)
    store(andina, ours_amber, tlp=TLP.AMBER)  # hosted by no one there: stays here
    new = federation.add_peer(
        None,
        name="medallion",
        kind=PeerKind.TAXII,
        url=medallion["root"],
        collection_id=COLLECTION,
        organisation="andina",
        default_tlp=TLP.GREEN,
        username=USER,
        credential=PASSWORD,
    )
    outcome = federation.sync(new.peer)
    assert outcome.error == ""
    assert (outcome.pulled, outcome.pushed) == (2, 1)
    for theirs in medallion["theirs"]:
        copy = StixObject.objects.get(stix_id=theirs["id"])
        assert (copy.origin_organisation, copy.tlp) == (andina, TLP.GREEN)
        assert (copy.origin_node, copy.received_from) == ("medallion", "medallion")

    # What medallion holds now, read with the OASIS client: its own two objects and ours, GREEN.
    collection = Collection(f"{medallion['root']}collections/{COLLECTION}/", user=USER, password=PASSWORD)
    held = {obj["id"]: obj for obj in collection.get_objects().get("objects", [])}
    assert set(held) == {o["id"] for o in medallion["theirs"]} | {ours_green["id"]}
    assert held[ours_green["id"]]["object_marking_refs"] == [
        "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
    ]
    assert "extensions" not in held[ours_green["id"]]  # plain STIX to a foreign server

    again = federation.sync(new.peer)
    assert (again.pulled, again.pushed, again.error) == (0, 0, "")
