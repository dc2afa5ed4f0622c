"""Benchmark of the feed pipeline (issue 6's targets: 50,000 events/s end to end on SQLite with
one worker, peak memory under 500 MB).

Generates a CSV feed of 1,000,000 events (about 15% duplicates within the de-duplication
window, about 70% inside 2,000 constituency networks of 300 organisations, in the RFC 2544
benchmark range 198.18.0.0/15), then measures end to end: the file handed to the pipeline
(kept under var/, split into chunks, one task per chunk), real ``minga worker`` processes
parsing, normalising, classifying, de-duplicating, routing and storing every chunk, until the
run is done. Prints events/s, the counts, and the peak memory of each worker.

    python benchmarks/pipeline_ingest.py                     # SQLite in a temporary folder, one worker
    MINGA_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/minga_pipe_bench \\
        python benchmarks/pipeline_ingest.py --workers 2      # creates, then drops, that database
    python benchmarks/pipeline_ingest.py --events 100000 --inline --profile   # in-process, pyinstrument
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from scratch import postgres_database  # noqa: E402

TARGET = 50_000  # events/s
MEMORY_TARGET_MB = 500
ORGANISATIONS = 300
NETWORKS = 2_000
INSIDE = 0.70
DUPLICATES = 0.15
BENCHMARK_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
OUTSIDE = [ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
CATEGORIES = ("scan", "bot", "open-resolver", "brute-force")

if TYPE_CHECKING:
    from minga.pipeline.models import Feed, Run


def set_up_django(scratch: Path) -> str:
    url = os.environ.get("MINGA_DATABASE_URL", "").strip() or f"sqlite:///{scratch / 'bench.sqlite3'}"
    os.environ["MINGA_DATABASE_URL"] = url
    os.environ["MINGA_VAR_DIR"] = str(scratch)
    os.environ.setdefault("MINGA_SECRET_KEY", "benchmark-only-secret-key-not-for-any-node")
    os.environ["MINGA_DEBUG"] = "false"
    os.environ.setdefault("MINGA_LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "minga.settings"
    if url.startswith(("postgres://", "postgresql://")):
        postgres_database(url, "create")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url


def constituency(rng: random.Random) -> list[list[str]]:
    """2,000 networks (/26 and, nested in some, /28) of the benchmark range for 300 organisations."""
    from minga.core.models import Organisation
    from minga.directory.models import ConstituencyGeneration, ConstituencyNetwork

    organisations = Organisation.objects.bulk_create(
        Organisation(name=f"Benchmark team {n}", short_name=f"bench-team-{n}") for n in range(ORGANISATIONS)
    )
    blocks = list(BENCHMARK_RANGE.subnets(new_prefix=26))  # 2,048 blocks of 64 addresses
    rng.shuffle(blocks)
    networks, rows = [], []
    for n in range(NETWORKS):
        # Every tenth network lies inside the one before, with its own owner: the most specific wins.
        block = next(networks[-1].subnets(new_prefix=28)) if n % 10 == 9 else blocks[n]
        networks.append(block)
        rows.append(ConstituencyNetwork(organisation=rng.choice(organisations), cidr=str(block), version=4))
    ConstituencyNetwork.objects.bulk_create(rows, batch_size=2000)
    ConstituencyGeneration.objects.update_or_create(pk=1, defaults={"token": "benchmark"})
    return [[str(address) for address in block] for block in networks if block.prefixlen == 26]


def generate(path: Path, total: int, inside: list[list[str]], rng: random.Random) -> int:
    """Write ``total`` CSV lines; return how many repeat an earlier line within the window."""
    day = int(datetime(2026, 1, 10, tzinfo=UTC).timestamp())
    outside = [str(a) for network in OUTSIDE for a in network]
    recent: list[str] = []
    duplicates = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("timestamp,ip,port,category\n")
        lines = []
        for n in range(total):
            if recent and rng.random() < DUPLICATES:
                line = rng.choice(recent)  # the same key, and the same day: a duplicate
                duplicates += 1
            else:
                ip = rng.choice(rng.choice(inside)) if rng.random() < INSIDE else rng.choice(outside)
                moment = datetime.fromtimestamp(day + rng.randrange(86_400), UTC)
                line = (
                    f"{moment:%Y-%m-%dT%H:%M:%SZ},{ip},{rng.randrange(1, 65_536)},{rng.choice(CATEGORIES)}\n"
                )
                if len(recent) < 50_000:
                    recent.append(line)
                else:
                    recent[n % 50_000] = line
            lines.append(line)
            if len(lines) >= 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)
    return duplicates


def _worker_env(url: str, scratch: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MINGA_DATABASE_URL": url,
        "MINGA_VAR_DIR": str(scratch),
        "DJANGO_SETTINGS_MODULE": "minga.settings",
        "PYTHONPATH": str(REPO / "src"),
    }


def _peak_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far: on a shared machine, the figure that other
    processes' load moves least."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_feed() -> Feed:
    """The hub and its CSV feed of the generated lines (one day's de-duplication window)."""
    from minga.core import services as core_services
    from minga.pipeline import partitions, services

    hub = core_services.create_organisation(None, name="Benchmark hub", short_name="bench-hub")
    feed = services.register_feed(
        None,
        hub,
        name="bench-scan",
        mapping={"time": "timestamp", "source_ip": "ip", "source_port": "port", "classification": "category"},
        taxonomy_mapping={
            "scan": "scanner",
            "bot": "infected-system",
            "open-resolver": "ddos-amplifier",
            "brute-force": "brute-force",
        },
        dedup_window=86_400,
    )
    # On PostgreSQL, the months the node's daily job keeps (the generated day is one of them),
    # so the events land in their month's partition, not the DEFAULT one. Nothing on SQLite.
    partitions.maintain()
    return feed


def with_workers(
    feed: Feed, path: Path, url: str, scratch: Path, count: int
) -> tuple[Run, float, list[float], float]:
    """Hand ``path`` to the pipeline and let ``count`` real ``minga worker`` processes run it to
    the end: the run, the seconds from the file handed over to the run done, each worker's peak
    MB, and the CPU seconds the workers spent meanwhile."""
    from minga.pipeline import services
    from minga.pipeline.models import Run

    def pieces() -> Iterator[bytes]:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                yield block

    env = _worker_env(url, scratch)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "minga", "worker", "--interval", "0.05", "--no-schedule"],
            cwd=REPO,
            env=env,
        )
        for _ in range(count)
    ]
    peaks: list[float] = []
    try:
        time.sleep(3)  # let the workers import Django and reach their queue
        cpu = sum(_cpu_seconds(worker.pid) for worker in workers)
        started = time.perf_counter()
        the_run = services.start_run(None, feed, pieces(), path.name, source="cli")
        while Run.objects.filter(pk=the_run.pk, status__in=("queued", "running")).exists():
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = sum(_cpu_seconds(worker.pid) for worker in workers) - cpu
        peaks = [_peak_mb(worker.pid) for worker in workers]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
    return Run.objects.get(pk=the_run.pk), elapsed, peaks, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=1, help="minga worker processes (default 1)")
    parser.add_argument("--inline", action="store_true", help="process in this process, without workers")
    parser.add_argument("--profile", action="store_true", help="with --inline: profile with pyinstrument")
    args = parser.parse_args()
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory(prefix="minga-pipeline-bench-") as folder:
        scratch = Path(folder)
        url = set_up_django(scratch)
        try:
            run(scratch, url, args, rng)
        finally:
            if url.startswith(("postgres://", "postgresql://")):
                from django.db import connections

                connections.close_all()
                postgres_database(url, "drop")


def run(scratch: Path, url: str, args: argparse.Namespace, rng: random.Random) -> None:
    from minga.pipeline import services
    from minga.pipeline.models import Event, EventRecipient, Run

    database = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    started = time.perf_counter()
    inside = constituency(rng)
    feed = bench_feed()
    path = scratch / "feed.csv"
    duplicates = generate(path, args.events, inside, rng)
    size_mb = path.stat().st_size / 1e6
    print(
        f"{database}: {ORGANISATIONS} organisations, {NETWORKS:,} networks; generated {args.events:,} events "
        f"({size_mb:.0f} MB, {duplicates:,} repeated lines) in {time.perf_counter() - started:.1f} s"
    )

    def pieces() -> object:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                yield block

    peaks: list[float] = []
    if args.inline:
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler()
            profiler.start()
        started, cpu = time.perf_counter(), time.process_time()
        the_run = services.start_run(None, feed, pieces(), "feed.csv", source="cli", queue=False)  # type: ignore[arg-type]
        services.run_inline(the_run)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        how = f"inline, in one process ({cpu:.1f} s of CPU)"
    else:
        the_run, elapsed, peaks, cpu = with_workers(feed, path, url, scratch, args.workers)
        how = f"{args.workers} worker process{'es' if args.workers > 1 else ''} ({cpu:.1f} s of their CPU)"
    the_run = Run.objects.get(pk=the_run.pk)
    rate = the_run.read / elapsed
    verdict = "meets" if rate >= TARGET else "below"
    print(
        f"{database}, {how}: {the_run.read:,} events end to end in {elapsed:.1f} s: {rate:,.0f} events/s "
        f"({verdict} the {TARGET:,}/s target); status {the_run.status}"
    )
    print(
        f"  read {the_run.read:,}, parsed {the_run.parsed:,}, invalid {the_run.invalid:,}, duplicates "
        f"{the_run.duplicates:,}, routed {the_run.routed:,}, unrouted {the_run.unrouted:,}; "
        f"stored {Event.objects.count():,} events, {EventRecipient.objects.count():,} routes"
    )
    peak = max(peaks) if peaks else 0
    verdict = "meets" if peak < MEMORY_TARGET_MB else "above"
    print(
        f"  peak memory: {', '.join(f'{p:.0f} MB' for p in peaks)} "
        f"({verdict} the {MEMORY_TARGET_MB} MB target); the generator process "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
