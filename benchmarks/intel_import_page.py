"""Benchmark of an import's page once done (issue 4: the analyst "sees at once which other
objects ... share an observable with it, and how often it has been sighted").

Fills a fresh database with the generated bundle of ``intel_import.py`` (100,000 objects by
default) imported as TLP:AMBER by one organisation for three partners, then an analyst of a
partner uploads 10,000 new indicators (every other one on a value already stored) as a web
upload, which the worker imports. Prints the import rates, then the time and the number of
SQL queries of the import's page (``/intel/imports/<uuid>/``, rendered through Django's test
client, the Correlations section included) and of its REST answer.

    python benchmarks/intel_import_page.py                       # SQLite, 100,000 objects
    python benchmarks/intel_import_page.py --objects 1000000     # a larger store
    python benchmarks/intel_import_page.py --profile             # pyinstrument, one page
    MINGA_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/minga_page_bench \\
        python benchmarks/intel_import_page.py                   # creates, then drops, it
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from intel_correlation import NEW_INDICATORS, _new_import  # sibling scripts
from intel_import import generate
from scratch import scratch_node

RUNS = 3


def run(scratch: Path, url: str, total: int, rng: random.Random, profile: bool = False) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from minga.core import services as core_services
    from minga.core.choices import TLP
    from minga.intel import queries as queries_module
    from minga.intel import services
    from minga.intel.models import ImportJob, Observable

    database = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    source = core_services.create_organisation(None, name="Benchmark CSIRT", short_name="bench-source")
    partners = [
        core_services.create_organisation(None, name=f"Partner {n}", short_name=f"bench-partner-{n}")
        for n in range(3)
    ]
    store = scratch / "store.json"
    generate(store, total, rng)
    started = time.perf_counter()
    with store.open("rb") as stream:
        filled = services.import_bundle(None, source, stream, TLP.AMBER, partners)
    store.unlink()
    elapsed = time.perf_counter() - started
    print(
        f"{database}: store of {filled.accepted:,} objects imported in {elapsed:.1f} s "
        f"({filled.accepted / elapsed:,.0f} objects/s, {len(filled.stored_ranges)} pk range(s))"
    )

    analyst = core_services.create_user(
        None,
        username="bench-analyst",
        email="analyst@bench-partner-0.example",
        password="benchmark analyst password 2026",  # noqa: S106
        organisation=partners[0],
    )
    top = Observable.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    picks = [rng.randrange(1, top + 1) for _ in range(900)]
    known = [
        (kind, value)
        for kind, value in Observable.objects.filter(pk__in=picks).values_list("kind", "value")
        if kind in {"ipv4-addr", "domain-name", "url", "sha-256"}
    ]
    upload = scratch / "new.json"
    _new_import(upload, known, rng)
    job = services.queue_import(
        analyst, partners[0], [upload.read_bytes()], "new.json", TLP.GREEN, fmt="stix"
    )
    started = time.perf_counter()
    services.run_import_job(job.pk)  # what the worker runs
    elapsed = time.perf_counter() - started
    job = ImportJob.objects.get(pk=job.pk)
    print(
        f"  upload of {NEW_INDICATORS:,} indicators imported in {elapsed:.2f} s: {job.accepted:,} "
        f"stored, recorded as {len(job.stored_ranges)} pk range(s)"
    )

    client = Client()
    client.force_login(analyst)
    for label, address in (
        ("page", f"/intel/imports/{job.uuid}/"),
        ("REST", f"/api/v1/intel/imports/{job.uuid}"),
    ):
        timings = []
        for _ in range(RUNS):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(address)
                timings.append(time.perf_counter() - started)
            assert response.status_code == 200, response.status_code
        print(
            f"  import {label}: {min(timings):.2f} s best, {max(timings):.2f} s worst of {RUNS}, "
            f"{len(queries.captured_queries)} SQL queries, {len(response.content):,} bytes"
        )
        slowest = sorted(queries.captured_queries, key=lambda q: -float(q["time"]))[:3]
        for query in slowest:
            print(f"    {float(query['time']) * 1000:.0f} ms: {query['sql'][:160]}")
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
        client.get(f"/intel/imports/{job.uuid}/")
        profiler.stop()
        print(profiler.output_text(color=False, show_all=False))
    found = client.get(f"/api/v1/intel/imports/{job.uuid}").json()["correlations"]
    print(
        f"  {found['correlated']:,} of {found['examined']:,} imported objects share an observable "
        f"with readable objects; {len(found['matches'])} listed"
    )
    # The store's own import, as a job that had stored it: what its page would compute.
    large = ImportJob(stored_ranges=filled.stored_ranges)
    started = time.perf_counter()
    whole = queries_module.import_correlations(analyst, large)
    print(
        f"  correlations of the {whole.stored:,}-object store import itself (the first {whole.asked:,} "
        f"examined): {time.perf_counter() - started:.2f} s; {whole.correlated:,} of {whole.examined:,} "
        f"correlate, {whole.sighted_total:,} sighted"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=100_000, help="objects in the store")
    parser.add_argument("--profile", action="store_true", help="profile one page with pyinstrument")
    args = parser.parse_args()
    rng = random.Random(2026)
    with scratch_node("minga-page-bench-") as node:
        run(node.folder, node.url, args.objects, rng, args.profile)


if __name__ == "__main__":
    main()
