"""Benchmark of federation (issue 5's targets): 100,000 objects from one node to another in
under 30 s, and the steady-state lag of a ring of three nodes under a continuous trickle.

Every node is a real ``minga serve`` process on the loopback with its own database (SQLite
files by default; with ``MINGA_DATABASE_URL`` naming a scratch PostgreSQL database, one
database per node is created beside it and dropped after).

1. **Transfer.** Node A stores ``--objects`` GREEN indicators (one import). Node B pulls them
   (``minga sync node-a`` on B), then node C receives them pushed by A (``minga sync node-c``
   on A). Each is timed end to end: pages served, sent, validated, stored and indexed.
2. **Ring lag.** A, B and C each run a worker (syncing every peer every ``--interval``
   seconds, the schedule checking every ten); A shares one new object every ``--every``
   seconds for ``--trickle`` seconds. The lag of an object at a node is its ``date_added``
   there minus its ``date_added`` on A; the median, p95 and maximum are printed per node.

    python benchmarks/federation_sync.py
    python benchmarks/federation_sync.py --objects 20000 --trickle 30
    MINGA_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/minga_fed_bench \\
        python benchmarks/federation_sync.py
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scratch import postgres_database  # noqa: E402

from minga.taxii.tests.nodes import Node, link  # noqa: E402

TARGET_SECONDS = 30  # for 100,000 objects
TS = "2026-03-01T10:00:00.000Z"
ORGS = ("andina", "caribe", "sur")


def indicator(n: int) -> dict[str, Any]:
    address = f"198.{18 + n // 65536 % 2}.{n // 256 % 256}.{n % 256}"
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.UUID(int=random.getrandbits(128), version=4)}",
        "created": TS,
        "modified": TS,
        "name": f"Benchmark indicator {n}",
        "pattern": f"[ipv4-addr:value = '{address}']",
        "pattern_type": "stix",
        "valid_from": TS,
    }


def bundle_file(folder: Path, total: int) -> Path:
    path = folder / "bundle.json"
    with path.open("w") as out:
        out.write('{"type": "bundle", "id": "bundle--6f1c2b1e-0f4e-4d59-9a43-2b1d5d1e7a10", "objects": [')
        for n in range(total):
            out.write(("," if n else "") + json.dumps(indicator(n)))
        out.write("]}")
    return path


def database_urls(names: list[str]) -> dict[str, str]:
    base = os.environ.get("MINGA_DATABASE_URL", "").strip()
    if not base:
        return {name: "" for name in names}
    prefix = base.rsplit("/", 1)[0]
    scratch = base.rsplit("/", 1)[1]
    return {name: f"{prefix}/{scratch}_{name.replace('-', '_')}" for name in names}


def count(node: Node) -> int:
    return int(node.python("from minga.intel.models import StixObject\nresult = StixObject.objects.count()"))


def transfer(folder: Path, total: int, urls: dict[str, str]) -> None:
    a, b, c = (Node(name, folder, urls[name]) for name in ("node-a", "node-b", "node-c"))
    nodes = [a.start(*ORGS), b.start(*ORGS), c.start(*ORGS)]
    try:
        link(a, b, node_hosts="andina", other_hosts="caribe")
        link(a, c, node_hosts="andina", other_hosts="sur")
        path = bundle_file(folder, total)
        started = time.perf_counter()
        a.minga("intel", "import", str(path), "--organisation", "andina", "--tlp", "green")
        print(f"  stored on A: {total:,} objects in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        b.minga("sync", "node-a")
        pulled = time.perf_counter() - started
        held = count(b)
        print(
            f"  pull A → B: {held:,} objects in {pulled:.1f} s = {held / pulled:,.0f} objects/s"
            f"  ({'meets' if pulled * 100_000 / max(held, 1) < TARGET_SECONDS else 'misses'} "
            f"the target of 100,000 in {TARGET_SECONDS} s)"
        )
        started = time.perf_counter()
        a.minga("sync", "node-c")
        pushed = time.perf_counter() - started
        held = count(c)
        print(
            f"  push A → C: {held:,} objects in {pushed:.1f} s = {held / pushed:,.0f} objects/s"
            f"  ({'meets' if pushed * 100_000 / max(held, 1) < TARGET_SECONDS else 'misses'} the target)"
        )
    finally:
        for node in nodes:
            node.stop()


def ring_lag(folder: Path, seconds: float, every: float, interval: int, urls: dict[str, str]) -> None:
    a, b, c = (Node(name, folder / "ring", urls[name]) for name in ("node-a", "node-b", "node-c"))
    nodes = [a.start(*ORGS), b.start(*ORGS), c.start(*ORGS)]
    try:
        link(a, b, node_hosts="andina", other_hosts="caribe")
        link(b, c, node_hosts="caribe", other_hosts="sur")
        link(c, a, node_hosts="sur", other_hosts="andina")
        for node in nodes:
            node.python(f"from minga.taxii.models import Peer\nPeer.objects.update(interval={interval})")
            node.start_worker()
        rounds = int(seconds / every)
        trickle = threading.Thread(
            target=a.python,
            args=(
                f"""
                import io, json, time, uuid
                from minga.core.models import Organisation
                from minga.intel import services
                andina = Organisation.objects.get(short_name="andina")
                for n in range({rounds}):
                    started = time.monotonic()
                    obj = {{"type": "indicator", "spec_version": "2.1", "id": f"indicator--{{uuid.uuid4()}}",
                           "created": "{TS}", "modified": "{TS}", "pattern_type": "stix",
                           "valid_from": "{TS}",
                           "pattern": f"[domain-name:value = 'trickle-{{n}}.demo.example']"}}
                    bundle = {{"type": "bundle", "id": f"bundle--{{uuid.uuid4()}}", "objects": [obj]}}
                    services.import_bundle(None, andina, io.BytesIO(json.dumps(bundle).encode()), "green")
                    time.sleep(max(0.0, {every} - (time.monotonic() - started)))
                """,
            ),
        )
        trickle.start()
        trickle.join()
        time.sleep(3 * interval + 20)  # let the last objects go round
        query = """
            from minga.intel.models import StixObject
            trickled = StixObject.objects.filter(label__startswith="[domain-name:value = 'trickle-")
            result = {o: d.isoformat() for o, d in trickled.values_list("stix_id", "date_added")}
        """
        shared = {k: datetime.fromisoformat(v) for k, v in a.python(query).items()}
        print(
            f"  ring of three, syncing every {interval} s: "
            f"{len(shared)} objects shared on A, one every {every} s"
        )
        for node in (b, c):
            arrived = {k: datetime.fromisoformat(v) for k, v in node.python(query).items()}
            lags = sorted((arrived[k] - shared[k]).total_seconds() for k in shared if k in arrived)
            missing = len(shared) - len(lags)
            if not lags:
                print(f"  {node.name}: nothing arrived")
                continue
            p95 = lags[min(len(lags) - 1, int(0.95 * len(lags)))]
            print(
                f"  {node.name}: lag median {statistics.median(lags):.1f} s, p95 {p95:.1f} s, "
                f"max {lags[-1]:.1f} s" + (f"; {missing} not arrived" if missing else "")
            )
    finally:
        for node in nodes:
            node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--trickle", type=float, default=60, help="seconds of trickle in the ring")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between two new objects")
    parser.add_argument("--interval", type=int, default=10, help="each peer's sync interval, seconds")
    parser.add_argument("--no-ring", action="store_true")
    args = parser.parse_args()
    random.seed(5)
    names = ["node-a", "node-b", "node-c"]
    urls = database_urls(names)
    for url in urls.values():
        if url:
            postgres_database(url, "create")
    database = "PostgreSQL" if any(urls.values()) else "SQLite"
    try:
        with tempfile.TemporaryDirectory(prefix="minga-federation-bench-") as folder:
            print(f"Federation on {database}, nodes as minga serve processes on the loopback")
            transfer(Path(folder), args.objects, urls)
            if not args.no_ring:
                for url in urls.values():
                    if url:
                        postgres_database(url, "create")
                ring_lag(Path(folder), args.trickle, args.every, args.interval, urls)
    finally:
        for url in urls.values():
            if url:
                postgres_database(url, "drop")


if __name__ == "__main__":
    main()
