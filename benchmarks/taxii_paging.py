"""Benchmark of the TAXII 2.1 server (issue 4's targets: with 1,000,000 objects stored, paging
through a collection with taxii2-client at limit=1000 at 20,000 objects/s or more, and a
filtered GET (match[type] + added_after) with a p95 under 50 ms), and the same figures for
medallion (the OASIS reference server, memory back end) and Minga on the same 10,000 objects.

Each server runs as a real process on the loopback: Minga under gunicorn (one worker), medallion
with its own runner. The client is taxii2-client, as a team's tooling would use it.

1. ``--objects`` STIX objects (1,000,000 by default) are imported into a fresh database through
   the streamed bundle import, in envelopes of 5,000 generated on the fly: indicators, observables, malware
   and relationships, nine in ten TLP:GREEN, the rest TLP:AMBER between two other organisations,
   so that the policy filters for real. The reader is an analyst of a third member organisation.
2. The reader pages through the readable collection (``as_pages``, ``per_request=1000``), and
   sends filtered GETs: ``match[type]`` (one of four types) and ``added_after`` (the
   ``date_added`` of a random object among the newest 20%), each answering up to one page of
   1,000 (the objects per answer are printed).
3. The same 10,000 objects go to a fresh Minga database and to medallion; both are measured
   the same way, side by side. medallion's paging grows with the square of the collection.

    python benchmarks/taxii_paging.py                            # SQLite, in a temporary folder
    MINGA_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/minga_taxii_bench \\
        python benchmarks/taxii_paging.py                        # creates, then drops, that database
    python benchmarks/taxii_paging.py --objects 100000 --compare-objects 2000
    python benchmarks/taxii_paging.py --no-compare               # Minga alone
    python benchmarks/taxii_paging.py --no-compare --reuse /tmp/bench-1m   # keep the store
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scratch import postgres_database, postgres_database_exists  # noqa: E402

PAGING_TARGET = 20_000  # objects/s
FILTERED_TARGET_MS = 50  # p95
PAGE = 1000
FILTERED_REQUESTS = 200
ENVELOPE = 5000  # objects per import into Minga (one chunk of the import)
RECENT = 0.2  # filtered GETs ask for objects added after a random point in the newest 20%
TS = "2026-01-15T10:00:00.000Z"
GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
TYPES = ("indicator", "ipv4-addr", "malware", "relationship")
MEDALLION_USER, MEDALLION_PASSWORD = "bench", "benchmark-password"


# --- the objects ---------------------------------------------------------------------------------


def _sid(type_name: str, rng: random.Random) -> str:
    return f"{type_name}--{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def objects(total: int, seed: int = 2026) -> Iterator[dict[str, Any]]:
    """``total`` STIX 2.1 objects: 40% indicators, 30% IPv4 addresses, 10% malware, 20%
    relationships; nine in ten TLP:GREEN, one in ten TLP:AMBER."""
    rng = random.Random(seed)
    indicators: list[str] = [_sid("indicator", rng)]
    malware: list[str] = [_sid("malware", rng)]
    for n in range(total):
        roll = rng.random()
        marking = [AMBER if rng.random() < 0.1 else GREEN]
        address = f"198.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
        if roll < 0.4:
            stix_id = _sid("indicator", rng)
            if len(indicators) < 10_000:
                indicators.append(stix_id)
            yield {
                "type": "indicator",
                "spec_version": "2.1",
                "id": stix_id,
                "created": TS,
                "modified": TS,
                "name": f"Generated indicator {n}",
                "pattern": f"[ipv4-addr:value = '{address}']",
                "pattern_type": "stix",
                "valid_from": TS,
                "object_marking_refs": marking,
            }
        elif roll < 0.7:
            yield {
                "type": "ipv4-addr",
                "spec_version": "2.1",
                "id": _sid("ipv4-addr", rng),
                "value": address,
                "object_marking_refs": marking,
            }
        elif roll < 0.8:
            stix_id = _sid("malware", rng)
            if len(malware) < 1_000:
                malware.append(stix_id)
            yield {
                "type": "malware",
                "spec_version": "2.1",
                "id": stix_id,
                "created": TS,
                "modified": TS,
                "name": f"Family {n}",
                "is_family": True,
                "object_marking_refs": marking,
            }
        else:
            yield {
                "type": "relationship",
                "spec_version": "2.1",
                "id": _sid("relationship", rng),
                "created": TS,
                "modified": TS,
                "relationship_type": "indicates",
                "source_ref": rng.choice(indicators),
                "target_ref": rng.choice(malware),
                "object_marking_refs": marking,
            }


class BundleStream(io.RawIOBase):
    """A bundle of generated objects, serialised as the import reads it: never held whole."""

    def __init__(self, items: Iterator[dict[str, Any]]) -> None:
        self.items, self.buffer, self.first, self.done = items, bytearray(b'{"objects": ['), True, False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while len(self.buffer) < len(target) and not self.done:
            item = next(self.items, None)
            if item is None:
                self.buffer += b"]}"
                self.done = True
            else:
                self.buffer += (b"" if self.first else b",") + orjson.dumps(item)
                self.first = False
        size = min(len(target), len(self.buffer))
        target[:size] = self.buffer[:size]
        del self.buffer[:size]
        return size


# --- measuring a server --------------------------------------------------------------------------


def measure(
    collection: Any, added: list[str], rng: random.Random, requests: int = FILTERED_REQUESTS
) -> dict[str, Any]:
    """Page through ``collection`` with taxii2-client, then send filtered GETs, each added after
    one of ``added`` (the date_added of the newest objects)."""
    from taxii2client.v21 import as_pages

    started, count, pages = time.perf_counter(), 0, 0
    for envelope in as_pages(collection.get_objects, per_request=PAGE):
        count += len(envelope.get("objects", []))
        pages += 1
    paging_s = time.perf_counter() - started

    timings, sizes = [], []
    warm_up = max(1, requests // 20)
    for n in range(requests + warm_up):
        kind, after = rng.choice(TYPES), rng.choice(added)
        started = time.perf_counter()
        envelope = collection.get_objects(type=kind, added_after=after)
        elapsed = time.perf_counter() - started
        if n >= warm_up:
            timings.append(elapsed * 1000)
            sizes.append(len(envelope.get("objects", [])))
    timings.sort()
    return {
        "objects": count,
        "pages": pages,
        "paging_s": paging_s,
        "paging_rate": count / paging_s if paging_s else 0.0,
        "filtered_p50": statistics.median(timings),
        "filtered_p95": timings[math.ceil(len(timings) * 0.95) - 1],
        "filtered_max": timings[-1],
        "filtered_objects": statistics.mean(sizes),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(url: str, process: subprocess.Popen[bytes], auth: Any = None) -> None:
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server at {url} stopped with {process.returncode}")
        try:
            requests.get(url, timeout=10, auth=auth)
            return
        except requests.RequestException:  # not listening yet, or too busy starting to answer
            time.sleep(0.2)
    raise SystemExit(f"the server at {url} did not answer within a minute")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- Minga ---------------------------------------------------------------------------------------


def minga_phase(total: int, reuse: str = "") -> dict[str, Any]:
    """Run in a child process (Django is set up once per process): a fresh database with
    ``total`` objects, a Minga server on it, the measurements. With ``reuse`` (a folder), the
    database is kept there (SQLite) or kept (PostgreSQL) and imported into only when it does
    not hold the objects yet: the next run migrates it and measures again."""
    with contextlib.ExitStack() as stack:
        if reuse:
            scratch = Path(reuse).resolve()
            scratch.mkdir(parents=True, exist_ok=True)
        else:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="minga-taxii-bench-")))
        url = os.environ.get("MINGA_DATABASE_URL", "").strip() or f"sqlite:///{scratch / 'bench.sqlite3'}"
        env = {
            "MINGA_DATABASE_URL": url,
            "MINGA_VAR_DIR": str(scratch),
            "MINGA_SECRET_KEY": os.environ.get(
                "MINGA_SECRET_KEY", "benchmark-only-secret-key-not-for-any-node"
            ),
            "MINGA_DEBUG": "false",
            "MINGA_LOG_LEVEL": os.environ.get("MINGA_LOG_LEVEL", "WARNING"),
            "MINGA_ALLOWED_HOSTS": "127.0.0.1,localhost",
        }
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "minga.settings"
        postgres = url.startswith(("postgres://", "postgresql://"))
        if postgres and not (reuse and postgres_database_exists(url)):
            postgres_database(url, "create")
        try:
            return _minga_run(total, env)
        finally:
            if postgres and not reuse:
                from django.db import connections

                connections.close_all()
                postgres_database(url, "drop")


def _minga_run(total: int, env: dict[str, str]) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from minga.core import services as core_services
    from minga.core.choices import TLP
    from minga.core.models import Organisation, User
    from minga.intel import services as intel_services
    from minga.intel.models import StixObject

    reader = User.objects.filter(username="bench-reader").first()
    if reader is not None and StixObject.objects.count() >= total:  # a kept database (--reuse)
        token = core_services.create_api_token(None, reader, name="benchmark").raw
        total = StixObject.objects.count()
        generated: Iterator[dict[str, Any]] = iter(())
    else:
        if reader is not None:
            raise SystemExit("the kept database holds fewer objects than asked: remove it first")
        token, generated = _minga_setup(), objects(total)
    source = Organisation.objects.get(short_name="bench-source")
    partner = Organisation.objects.get(short_name="bench-partner")

    # Envelopes of up to 5,000 (one chunk of the import each): date_added moves on between them.
    started, stored = time.perf_counter(), 0
    # Small stores get smaller envelopes, so that added_after has a hundred points to fall between.
    envelope = max(100, min(ENVELOPE, total // 100))
    while batch := list(itertools.islice(generated, envelope)):
        result = intel_services.import_bundle(
            None,
            source,
            BundleStream(iter(batch)),
            TLP.AMBER,
            [partner],  # type: ignore[arg-type]
        )
        stored += result.accepted
    import_s = time.perf_counter() - started
    # Statistics for the planner, as autovacuum would gather them some minutes after a bulk load
    # (without them PostgreSQL plans each page as a sort of the whole store).
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    newest = StixObject.objects.order_by("date_added", "pk").values_list("date_added", flat=True)
    added = [_stamp(when) for when in newest[int(total * (1 - RECENT)) :]]

    port = _free_port()
    server = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "gunicorn",
            "minga.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--log-level",
            "warning",
        ],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT / "src")},
        cwd=ROOT,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", server)
        from taxii2client.v21 import Server

        root = Server(f"http://127.0.0.1:{port}/taxii2/", user="reader", password=token).default
        readable = next(c for c in root.collections if c.alias == "readable")
        figures = measure(readable, added, random.Random(7))
    finally:
        _stop(server)
    figures |= {"stored": stored or total, "import_s": import_s, "reused": not stored}
    return figures


def _minga_setup() -> str:
    """The organisations of a fresh database and the reader; the reader's API token."""
    from minga.core import services as core_services

    core_services.create_organisation(None, name="Benchmark CSIRT", short_name="bench-source")
    core_services.create_organisation(None, name="Partner", short_name="bench-partner")
    reader_org = core_services.create_organisation(None, name="Reader CSIRT", short_name="bench-reader")
    reader = core_services.create_user(
        None,
        username="bench-reader",
        email="reader@bench.example",
        password="benchmark reader password 2026",  # noqa: S106
        organisation=reader_org,
    )
    return core_services.create_api_token(None, reader, name="benchmark").raw


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- medallion -----------------------------------------------------------------------------------


def medallion_phase(total: int, folder: Path, requests: int) -> dict[str, Any]:
    """The same objects in medallion's memory back end (loaded from its data file, one
    ``date_added`` per object, a microsecond apart), read through its own server process."""
    collection_id = str(uuid.uuid4())
    start = datetime(2026, 3, 1, tzinfo=UTC)
    stored, manifest, added = [], [], []
    for n, obj in enumerate(objects(total)):
        when = _stamp(start + timedelta(microseconds=n))
        version = obj.get("modified", when)
        if "modified" not in obj:
            obj = {**obj, "_date_added": when}
        stored.append(obj)
        manifest.append(
            {
                "id": obj["id"],
                "date_added": when,
                "version": version,
                "media_type": "application/stix+json;version=2.1",
            }
        )
        added.append(when)
    added = added[int(total * (1 - RECENT)) :]
    data = {
        "/discovery": {
            "title": "medallion",
            "default": "http://127.0.0.1/api1/",
            "api_roots": ["http://127.0.0.1/api1/"],
        },
        "api1": {
            "information": {
                "title": "benchmark",
                "versions": ["application/taxii+json;version=2.1"],
                "max_content_length": 100_000_000,
            },
            "status": [],
            "collections": [
                {
                    "id": collection_id,
                    "title": "benchmark",
                    "can_read": True,
                    "can_write": False,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": stored,
                    "manifest": manifest,
                }
            ],
        },
    }
    data_path, config_path = folder / "medallion-data.json", folder / "medallion.json"
    data_path.write_bytes(orjson.dumps(data))
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(data_path),
        },
        "users": {MEDALLION_USER: MEDALLION_PASSWORD},
        "taxii": {"max_page_size": PAGE},
    }
    config_path.write_text(json.dumps(config))
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "medallion.scripts.run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            str(config_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/taxii2/", server, auth=(MEDALLION_USER, MEDALLION_PASSWORD))
        from taxii2client.v21 import Collection

        collection = Collection(
            f"http://127.0.0.1:{port}/api1/collections/{collection_id}/",
            user=MEDALLION_USER,
            password=MEDALLION_PASSWORD,
        )
        figures = measure(collection, added, random.Random(7), requests)
    finally:
        _stop(server)
    return figures | {"stored": total, "requests": requests}


# --- the report ----------------------------------------------------------------------------------


def _child(phase: str, total: int, requests: int = FILTERED_REQUESTS, reuse: str = "") -> dict[str, Any]:
    output = subprocess.run(  # noqa: S603
        [sys.executable, __file__, "--phase", phase, "--objects", str(total), "--requests", str(requests)]
        + (["--reuse", reuse] if reuse else []),
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def _line(name: str, figures: dict[str, Any]) -> str:
    return (
        f"{name:<28} {figures['objects']:>9,} objects in {figures['paging_s']:7.1f} s: "
        f"{figures['paging_rate']:>9,.0f} objects/s | filtered GET p50 {figures['filtered_p50']:6.1f} ms, "
        f"p95 {figures['filtered_p95']:6.1f} ms, max {figures['filtered_max']:6.1f} ms "
        f"({figures['filtered_objects']:.0f} objects per answer)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--compare-objects", type=int, default=10_000)
    parser.add_argument("--no-compare", action="store_true", help="measure Minga alone")
    parser.add_argument(
        "--reference-requests",
        type=int,
        default=10,
        help="filtered GETs sent to medallion (each costs it seconds at 10,000 objects)",
    )
    parser.add_argument(
        "--reuse",
        metavar="FOLDER",
        default="",
        help="keep the large store between runs: the SQLite database in FOLDER (created when "
        "missing), or the PostgreSQL database of MINGA_DATABASE_URL, not dropped; a kept store "
        "is migrated and measured, not imported again",
    )
    parser.add_argument("--requests", type=int, default=FILTERED_REQUESTS, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=["minga", "medallion"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "minga":
        print(json.dumps(minga_phase(args.objects, args.reuse)))
        return
    if args.phase == "medallion":
        with tempfile.TemporaryDirectory(prefix="minga-medallion-bench-") as folder:
            print(json.dumps(medallion_phase(args.objects, Path(folder), args.requests)))
        return

    database = "PostgreSQL" if os.environ.get("MINGA_DATABASE_URL", "").startswith("postgres") else "SQLite"
    big = _child("minga", args.objects, reuse=args.reuse)
    if big["reused"]:
        print(f"{database}: the {big['stored']:,} objects kept in {args.reuse}")
    else:
        print(
            f"{database}: imported {big['stored']:,} objects in {big['import_s']:.0f} s "
            f"({big['stored'] / big['import_s']:,.0f} objects/s)"
        )
    print(_line(f"Minga, {args.objects:,}", big))
    paging_ok = "meets" if big["paging_rate"] >= PAGING_TARGET else "below"
    filtered_ok = "meets" if big["filtered_p95"] < FILTERED_TARGET_MS else "above"
    print(
        f"  paging {paging_ok} the {PAGING_TARGET:,} objects/s target; "
        f"filtered GET p95 {filtered_ok} the {FILTERED_TARGET_MS} ms target"
    )
    if args.no_compare:
        return
    small = _child("minga", args.compare_objects)
    reference = _child("medallion", args.compare_objects, args.reference_requests)
    print(f"\nThe same {args.compare_objects:,} objects:")
    print(_line("Minga", small))
    print(_line("medallion (memory back end)", reference))
    print(f"  (medallion: {reference['requests']} filtered GETs; Minga: {FILTERED_REQUESTS})")
    print(
        f"  Minga / medallion: paging {small['paging_rate'] / reference['paging_rate']:,.1f}x as fast, "
        f"filtered GET p95 {reference['filtered_p95'] / small['filtered_p95']:,.1f}x as fast"
    )


if __name__ == "__main__":
    main()
