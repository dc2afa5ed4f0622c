"""Benchmark of the STIX bundle import (issue 4's target: 10,000 objects/s or more).

Generates a bundle of 100,000 STIX 2.1 objects (indicators with patterns on IPs, domains, URLs
and hashes, the matching cyber-observables, malware, relationships and sightings, with values
repeated so that objects correlate), then imports it into a fresh database as TLP:AMBER for
three named organisations: validation, normalisation, the observables index and the links
correlation reads, all included. Prints objects/s, then the rate of a replay (every version
already stored), the peak memory, and the time of a correlation query. On PostgreSQL on the
same host, it also prints the CPU time of this process and of the database's backend: on a
shared machine, wall time also counts the waits for a core, and their sum is the steadier figure.

    python benchmarks/intel_import.py                    # SQLite file in a temporary folder
    MINGA_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/minga_intel_bench \\
        python benchmarks/intel_import.py                # creates, then drops, that database
    python benchmarks/intel_import.py --objects 20000 --profile   # pyinstrument
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from scratch import scratch_node  # beside this script; it puts src/ on the path

TARGET = 10_000  # objects/s
TS = "2026-01-15T10:00:00.000Z"


def _sid(type_name: str, rng: random.Random) -> str:
    return f"{type_name}--{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def generate(path: Path, total: int, rng: random.Random) -> dict[str, int]:
    """Write a bundle of ``total`` objects to ``path``, one object at a time."""
    ips = [f"198.51.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(total // 8)]
    domains = [f"host{n}.bad{rng.randrange(1000)}.example" for n in range(total // 8)]
    hashes = [rng.randbytes(32).hex() for _ in range(total // 8)]
    counts = {"indicator": 0, "sco": 0, "malware": 0, "relationship": 0, "sighting": 0}
    indicators: list[str] = []
    malware: list[str] = []

    def indicator() -> dict[str, Any]:
        kind = rng.randrange(4)
        if kind == 0:
            pattern = f"[ipv4-addr:value = '{rng.choice(ips)}']"
        elif kind == 1:
            pattern = f"[domain-name:value = '{rng.choice(domains).upper()}']"
        elif kind == 2:
            pattern = f"[url:value = 'http://{rng.choice(domains)}/login.php']"
        else:
            pattern = f"[file:hashes.'SHA-256' = '{rng.choice(hashes)}']"
        stix_id = _sid("indicator", rng)
        indicators.append(stix_id)
        return {
            "type": "indicator",
            "spec_version": "2.1",
            "id": stix_id,
            "created": TS,
            "modified": TS,
            "name": "Generated indicator",
            "description": "Benchmark data",
            "indicator_types": ["malicious-activity"],
            "pattern": pattern,
            "pattern_type": "stix",
            "valid_from": TS,
        }

    def sco() -> dict[str, Any]:
        kind = rng.randrange(4)
        if kind == 0:
            return {
                "type": "ipv4-addr",
                "spec_version": "2.1",
                "id": _sid("ipv4-addr", rng),
                "value": rng.choice(ips),
            }
        if kind == 1:
            domain = rng.choice(domains)
            return {
                "type": "domain-name",
                "spec_version": "2.1",
                "id": _sid("domain-name", rng),
                "value": domain,
            }
        if kind == 2:
            value = f"http://{rng.choice(domains)}/login.php"
            return {"type": "url", "spec_version": "2.1", "id": _sid("url", rng), "value": value}
        return {
            "type": "file",
            "spec_version": "2.1",
            "id": _sid("file", rng),
            "hashes": {"SHA-256": rng.choice(hashes)},
        }

    plan = (
        ["malware"] * (total // 100)
        + ["indicator"] * (total * 35 // 100)
        + ["sco"] * (total * 30 // 100)
        + ["relationship"] * (total * 24 // 100)
    )
    plan += ["sighting"] * (total - len(plan))
    with path.open("wb") as out:
        out.write(b'{"type": "bundle", "id": "bundle--' + str(uuid.uuid4()).encode() + b'", "objects": [\n')
        for n, what in enumerate(plan):
            if what == "malware":
                obj = {
                    "type": "malware",
                    "spec_version": "2.1",
                    "id": _sid("malware", rng),
                    "created": TS,
                    "modified": TS,
                    "name": f"Family {n}",
                    "is_family": True,
                }
                malware.append(obj["id"])
            elif what == "indicator":
                obj = indicator()
            elif what == "sco":
                obj = sco()
            elif what == "relationship":
                obj = {
                    "type": "relationship",
                    "spec_version": "2.1",
                    "id": _sid("relationship", rng),
                    "created": TS,
                    "modified": TS,
                    "relationship_type": "indicates",
                    "source_ref": rng.choice(indicators),
                    "target_ref": rng.choice(malware),
                }
            else:
                obj = {
                    "type": "sighting",
                    "spec_version": "2.1",
                    "id": _sid("sighting", rng),
                    "created": TS,
                    "modified": TS,
                    "sighting_of_ref": rng.choice(indicators),
                    "count": rng.randint(1, 50),
                    "first_seen": TS,
                    "last_seen": "2026-02-01T00:00:00Z",
                }
            counts[what] += 1
            if n:
                out.write(b",\n")
            out.write(orjson.dumps(obj))
        out.write(b"\n]}\n")
    return counts


def backend_cpu() -> Callable[[], float] | None:
    """A reader of the CPU seconds the database's backend process has used so far, when it
    is PostgreSQL on this host (its /proc entry readable); None otherwise."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        stat = Path(f"/proc/{cursor.fetchone()[0]}/stat")
    ticks = os.sysconf("SC_CLK_TCK")

    def used() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()  # utime and stime follow the name
        return (int(fields[11]) + int(fields[12])) / ticks

    try:
        used()
    except (OSError, IndexError, ValueError):
        return None
    return used


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="profile the import with pyinstrument")
    args = parser.parse_args()
    rng = random.Random(2026)
    with scratch_node("minga-intel-bench-") as node:
        run(node.folder, node.url, args.objects, args.profile, rng)


def run(scratch: Path, url: str, total: int, profile: bool, rng: random.Random) -> None:
    from minga.core import services as core_services
    from minga.core.choices import TLP
    from minga.intel import queries, services
    from minga.intel.models import ObjectObservable, Observable, StixObject

    database = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    source = core_services.create_organisation(None, name="Benchmark CSIRT", short_name="bench-source")
    partners = [
        core_services.create_organisation(None, name=f"Partner {n}", short_name=f"bench-partner-{n}")
        for n in range(3)
    ]
    path = scratch / "bundle.json"
    started = time.perf_counter()
    counts = generate(path, total, rng)
    size_mb = path.stat().st_size / 1e6
    print(
        f"generated {total:,} objects ({size_mb:.0f} MB) in {time.perf_counter() - started:.1f} s: {counts}"
    )

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    backend = backend_cpu()
    backend_started = backend() if backend else 0.0
    cpu_started = time.process_time()
    started = time.perf_counter()
    with path.open("rb") as stream:
        result = services.import_bundle(None, source, stream, TLP.AMBER, partners)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    backend_used = backend() - backend_started if backend else None
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    rate = result.accepted / elapsed
    verdict = "meets" if rate >= TARGET else "below"
    print(
        f"{database}: imported {result.accepted:,} objects in {elapsed:.1f} s: {rate:,.0f} objects/s "
        f"({verdict} the {TARGET:,}/s target); rejected {result.rejected}"
    )
    if backend_used is not None:
        print(
            f"  CPU: this process {cpu:.1f} s, the database backend {backend_used:.1f} s: "
            f"{result.accepted / (cpu + backend_used):,.0f} objects per CPU second"
        )
    print(
        f"  stored: {StixObject.objects.count():,} versions, {Observable.objects.count():,} observables, "
        f"{ObjectObservable.objects.count():,} links"
    )
    print(f"  peak memory of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

    started = time.perf_counter()
    with path.open("rb") as stream:
        replay = services.import_bundle(None, source, stream, TLP.AMBER, partners)
    elapsed = time.perf_counter() - started
    print(
        f"  replay: {replay.duplicates:,} versions already stored, "
        f"{replay.duplicates / elapsed:,.0f} objects/s"
    )

    from minga.core.models import User

    reader = core_services.create_user(
        None,
        username="bench-reader",
        email="reader@bench.example",
        password="benchmark reader password 2026",  # noqa: S106
        organisation=partners[0],
    )
    reader = User.objects.get(pk=reader.pk)
    sample = list(StixObject.objects.filter(type="indicator", is_latest=True).order_by("?")[:50])
    started = time.perf_counter()
    found = sum(len(queries.correlations(reader, obj)) for obj in sample)
    elapsed = time.perf_counter() - started
    print(
        f"  correlation: {elapsed / len(sample) * 1000:.1f} ms per object ({found / len(sample):.1f} found)"
    )


if __name__ == "__main__":
    main()
