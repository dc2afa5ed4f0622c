"""Issue 6's comparison with IntelMQ: the same generated CSV feed through Minga's pipeline and
through IntelMQ 3.x's Redis pipeline, events/s of each, the ratio, and whether both routed the
same events to the same organisations.

The feed is ``pipeline_ingest.py``'s (its generator and constituency, same seed): about 15%
repeated lines, about 70% of the addresses inside 2,000 networks (/26, every tenth a /28 inside
the one before with another owner) of 300 organisations. Default 20,000 events: IntelMQ moves a
few hundred events/s, so 1,000,000 would take it about half an hour; the figures of the smaller
sample are extrapolated linearly.

IntelMQ runs from its own virtualenv (not the project's), with a private ``redis-server`` on a
free port and a temporary ``INTELMQ_ROOT_DIR``, each bot its own process:

    file collector -> generic CSV parser -> taxonomy -> deduplicator (Redis) -> ASN lookup -> file output

The lookup is IntelMQ's ``asn_lookup`` expert (pyasn, a longest-prefix radix tree, offline):
its database is written from the constituency, each network under a private-range pseudo-AS
(4,200,000,000 + the organisation's number), so the AS it adds names the owning organisation and
the most specific network wins, as in Minga. ``--lookup sieve`` uses the sieve expert instead,
with ``source.ip << [...]`` rules (one per organisation and prefix length, longest first, adding
the same pseudo-AS): also offline, but it parses every listed network for every event, so with
2,000 networks the sieve is the pipeline's bottleneck. The deduplicator keys on source.ip,
source.port and classification.type within 24 hours of processing: Minga's default key, whose
window is the event's day; the generated events all fall on one day, so both find the same
duplicates.

    /usr/bin/python3 -m venv /tmp/intelmq-venv && /tmp/intelmq-venv/bin/pip install intelmq pyasn textX
    .venv/bin/python benchmarks/intelmq_compare.py                     # 20,000 events
    .venv/bin/python benchmarks/intelmq_compare.py --events 50000 --keep
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline_ingest  # the generator and Minga's measurement, reused

PSEUDO_AS = 4_200_000_000  # private-use 32-bit AS numbers: PSEUDO_AS + organisation number
ISSUE_EVENTS = 1_000_000
ISSUE_INTELMQ_RATE = 530  # events/s, issue 6's figure for IntelMQ 3.5's full Redis pipeline

LOOKUPS = {  # --lookup: the expert that finds the owning organisation
    "asn": ("asn-lookup-expert", "intelmq.bots.experts.asn_lookup.expert"),
    "sieve": ("sieve-expert", "intelmq.bots.experts.sieve.expert"),
}


def bots(lookup: str) -> tuple[tuple[str, str], ...]:
    """The pipeline's bots in order: bot id, module."""
    return (
        ("file-collector", "intelmq.bots.collectors.file.collector_file"),
        ("csv-parser", "intelmq.bots.parsers.generic.parser_csv"),
        ("taxonomy-expert", "intelmq.bots.experts.taxonomy.expert"),
        ("deduplicator-expert", "intelmq.bots.experts.deduplicator.expert"),
        LOOKUPS[lookup],
        ("file-output", "intelmq.bots.outputs.file.output"),
    )


class SetupError(Exception):
    """IntelMQ could not be set up here; the message says why."""


def _tool(name: str) -> str:
    return shutil.which(name) or name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class IntelMQ:
    """A private Redis and IntelMQ's bots, one process each, under a temporary root folder."""

    def __init__(self, venv: Path, root: Path, lookup: str) -> None:
        self.venv, self.root, self.lookup = venv, root, lookup
        self.bots_in_order = bots(lookup)
        self.port = 0
        self.redis: subprocess.Popen[bytes] | None = None
        self.bots: dict[str, subprocess.Popen[bytes]] = {}
        self.inbox = root / "inbox"
        self.output = root / "output" / "events.jsonl"
        # IntelMQ's bots refuse to run as root and switch to an "intelmq" user this machine may
        # not have: as root, run them as nobody instead.
        self.as_user = "nobody" if os.geteuid() == 0 else None

    # -- set-up -------------------------------------------------------------------------------
    def check(self) -> str:
        python = self.venv / "bin" / "python"
        if not python.exists():
            raise SetupError(
                f"no virtualenv at {self.venv} (python3 -m venv {self.venv} && "
                f"{self.venv}/bin/pip install intelmq pyasn textX; as root, from a Python outside /root "
                "such as /usr/bin/python3)"
            )
        probe = subprocess.run(  # noqa: S603
            [str(python), "-c", "import intelmq, pyasn, textx; print(intelmq.__version__)"],
            capture_output=True,
            text=True,
            cwd="/",
            **self._user(),
        )
        if probe.returncode:
            who = (
                f" as {self.as_user} (a virtualenv made from a Python under /root cannot run as another user)"
            )
            raise SetupError(
                f"{python} cannot import intelmq, pyasn and textx{who if self.as_user else ''}: "
                f"{probe.stderr.strip()[-300:]}"
            )
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                raise SetupError(f"{tool} is not installed")
        return probe.stdout.strip()

    def configure(self, networks: list[tuple[str, int]], chunk_size: int) -> None:
        for folder in ("etc", "var/log", "var/run", "var/lib/bots", "inbox", "output", "redis"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        package = subprocess.run(  # noqa: S603
            [
                str(self.venv / "bin" / "python"),
                "-c",
                "import intelmq, os; print(os.path.dirname(intelmq.__file__))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        shutil.copy(Path(package) / "etc" / "harmonization.conf", self.root / "etc" / "harmonization.conf")
        database = self.root / "var" / "lib" / "bots" / "ipasn.dat"
        with database.open("w") as out:
            out.write("; IntelMQ benchmark: each constituency network under its organisation's pseudo-AS\n")
            for cidr, organisation in networks:
                out.write(f"{cidr}\t{PSEUDO_AS + organisation}\n")
        self.port = free_port()
        parameters: dict[str, dict[str, Any]] = {
            "file-collector": {
                "path": str(self.inbox),
                "postfix": ".csv",
                "delete_file": True,
                "rate_limit": 1,
                "chunk_size": chunk_size,
                "chunk_replicate_header": True,
                "name": "bench-scan",
                "provider": "Minga benchmark",
            },
            "csv-parser": {
                "columns": ["time.source", "source.ip", "source.port", "classification.type"],
                "skip_header": True,
                "type_translation": {
                    "scan": "scanner",
                    "bot": "infected-system",
                    "open-resolver": "ddos-amplifier",
                    "brute-force": "brute-force",
                },
            },
            "taxonomy-expert": {},
            "deduplicator-expert": {
                "redis_cache_host": "127.0.0.1",
                "redis_cache_port": self.port,
                "redis_cache_db": 6,
                "redis_cache_ttl": 86_400,
                "filter_type": "whitelist",
                "filter_keys": "source.ip,source.port,classification.type",
            },
            "asn-lookup-expert": {"database": str(database), "autoupdate_cached_database": False},
            "sieve-expert": {"file": str(self.root / "etc" / "constituency.sieve")},
            "file-output": {"file": str(self.output), "hierarchical_output": False},
        }
        bots: dict[str, Any] = {}
        self.write_sieve(networks)
        for position, (bot_id, module) in enumerate(self.bots_in_order):
            group = module.split(".")[2].capitalize()
            settings = dict(parameters[bot_id])
            if position + 1 < len(self.bots_in_order):
                settings["destination_queues"] = {
                    "_default": [f"{self.bots_in_order[position + 1][0]}-queue"]
                }
            bots[bot_id] = {
                "bot_id": bot_id,
                "module": module,
                "name": bot_id,
                "group": group,
                "groupname": group.lower(),
                "description": f"Minga benchmark: {bot_id}",
                "enabled": True,
                "run_mode": "continuous",
                "parameters": settings,
            }
        pipeline = {
            "host": "127.0.0.1",
            "port": self.port,
            "db": 2,
        }
        runtime = {
            "global": {
                "source_pipeline_broker": "redis",
                "destination_pipeline_broker": "redis",
                "source_pipeline_host": pipeline["host"],
                "source_pipeline_port": pipeline["port"],
                "source_pipeline_db": pipeline["db"],
                "destination_pipeline_host": pipeline["host"],
                "destination_pipeline_port": pipeline["port"],
                "destination_pipeline_db": pipeline["db"],
                "statistics_host": "127.0.0.1",
                "statistics_port": self.port,
                "statistics_database": 3,
                "logging_handler": "file",
                "logging_level": "WARNING",
                "logging_path": str(self.root / "var" / "log"),
                "error_procedure": "pass",
                "error_dump_message": True,
                "error_log_message": True,
                "error_max_retries": 0,
                "rate_limit": 0,
                "process_manager": "intelmq",
                "http_proxy": None,
                "https_proxy": None,
                "ssl_ca_certificate": None,
            },
            **bots,
        }
        # JSON is YAML: no YAML library needed on this side.
        (self.root / "etc" / "runtime.yaml").write_text(json.dumps(runtime, indent=2))
        if self.as_user:
            for path in [self.root, *self.root.rglob("*")]:
                shutil.chown(path, user=self.as_user, group="nogroup")
            self.root.chmod(0o755)

    # -- processes ---------------------------------------------------------------------------
    def write_sieve(self, networks: list[tuple[str, int]]) -> None:
        """One rule per organisation and prefix length, the longest prefixes first: ``add`` keeps
        a value already set, so the most specific network wins."""
        by_owner: dict[tuple[int, int], list[str]] = collections.defaultdict(list)
        for cidr, organisation in networks:
            by_owner[(-int(cidr.rsplit("/", 1)[1]), organisation)].append(cidr)
        with (self.root / "etc" / "constituency.sieve").open("w") as out:
            for (_, organisation), cidrs in sorted(by_owner.items()):
                ranges = ", ".join(f"'{cidr}'" for cidr in cidrs)
                out.write(f"if source.ip << [{ranges}] {{ add source.asn = {PSEUDO_AS + organisation} }}\n")

    def cpu_seconds(self) -> dict[str, float]:
        """User and system CPU time of each bot and of Redis so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        processes = {**self.bots, **({"redis-server": self.redis} if self.redis else {})}
        seconds = {}
        for name, process in processes.items():
            try:
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            seconds[name] = (int(fields[11]) + int(fields[12])) / ticks
        return seconds

    def _env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("MINGA_", "DJANGO_"))}
        env.update(INTELMQ_ROOT_DIR=str(self.root) + "/", PYTHONUNBUFFERED="1", HOME=str(self.root))
        return env

    def _user(self) -> dict[str, Any]:
        if not self.as_user:
            return {}
        return {"user": self.as_user, "group": "nogroup", "extra_groups": []}

    def start_redis(self) -> None:
        log = (self.root / "redis" / "redis.log").open("wb")
        self.redis = subprocess.Popen(  # noqa: S603
            [
                _tool("redis-server"),
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root / "redis")),
                *("--save", "", "--appendonly", "no", "--protected-mode", "yes"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for _ in range(100):
            if self.redis_cli("PING") == "PONG":
                return
            if self.redis.poll() is not None:
                break
            time.sleep(0.05)
        raise SetupError(
            f"redis-server did not answer on port {self.port}: see {self.root / 'redis' / 'redis.log'}"
        )

    def redis_cli(self, *command: str, db: int = 2) -> str:
        done = subprocess.run(  # noqa: S603
            [_tool("redis-cli"), "-p", str(self.port), "-n", str(db), *command],
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def queue_lengths(self) -> dict[str, int]:
        lengths = {}
        for bot_id, _ in self.bots_in_order:
            for queue in (f"{bot_id}-queue", f"{bot_id}-queue-internal"):
                lengths[queue] = int(self.redis_cli("LLEN", queue) or 0)
        return lengths

    def start_bots(self, names: list[str] | None = None) -> None:
        for bot_id, module in self.bots_in_order:
            if names is not None and bot_id not in names:
                continue
            log = (self.root / "var" / "log" / f"{bot_id}.console").open("wb")
            self.bots[bot_id] = subprocess.Popen(  # noqa: S603
                [str(self.venv / "bin" / module), bot_id],
                cwd=self.root,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._user(),
            )

    def dead_bots(self) -> list[str]:
        return [bot_id for bot_id, process in self.bots.items() if process.poll() is not None]

    def problems(self) -> list[str]:
        """Error lines from the bots' logs and the messages they dumped."""
        found = []
        for log in sorted((self.root / "var" / "log").glob("*")):
            if log.suffix == ".dump":
                try:
                    dumped = json.loads(log.read_text() or "{}")
                except ValueError:
                    dumped = {}
                found.append(f"{log.name}: {len(dumped)} dumped message(s)")
                continue
            for line in log.read_text(errors="replace").splitlines():
                if "ERROR" in line or "Traceback" in line or "CRITICAL" in line:
                    found.append(f"{log.name}: {line[:300]}")
        return found

    def output_lines(self) -> int:
        try:
            with self.output.open("rb") as handle:
                return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        for process in [*self.bots.values(), *([self.redis] if self.redis else [])]:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.bots.values(), *([self.redis] if self.redis else [])]:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def unique_keys(path: Path) -> int:
    """Lines of the feed that are not duplicates under both key definitions (IP, port, type)."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return len({(ip, port, category) for _, ip, port, category in reader})


def run_intelmq(
    args: argparse.Namespace, feed: Path, networks: list[tuple[str, int]], expected: int, root: Path
) -> tuple[float, dict[int, int], int]:
    """Seconds from the file dropped into the collector's folder until every expected event is in
    the output file and the queues are empty; events per organisation number; events without one."""
    intelmq = IntelMQ(Path(args.intelmq_venv), root, args.lookup)
    version = intelmq.check()
    print(f"IntelMQ {version} from {args.intelmq_venv}, redis-server on 127.0.0.1 (private, temporary)")
    intelmq.configure(networks, args.chunk_size)
    try:
        intelmq.start_redis()
        intelmq.start_bots()
        time.sleep(args.warm_up)  # let every bot import, read its configuration and reach its queue
        dead = intelmq.dead_bots()
        if dead:
            raise SetupError(
                f"bot(s) {', '.join(dead)} stopped at start: " + "; ".join(intelmq.problems()[-5:])
            )
        staged = root / "feed.csv.part"
        shutil.copy(feed, staged)
        if intelmq.as_user:
            shutil.chown(staged, user=intelmq.as_user)
        started = time.perf_counter()
        staged.rename(intelmq.inbox / "feed.csv")  # the collector polls its folder every second
        deadline = started + args.timeout
        last_report, changed, last_count = started, started, 0
        while True:
            count = intelmq.output_lines()
            now = time.perf_counter()
            if count != last_count:
                last_count, changed = count, now
            idle = not (intelmq.inbox / "feed.csv").exists() and not any(intelmq.queue_lengths().values())
            # Done: every expected event out, or (should IntelMQ keep fewer) nothing moving for 10 s.
            if idle and (count >= expected or (count and now - changed > 10)):
                elapsed = changed - started
                break
            if now - last_report >= 30:
                rate = count / (now - started)
                print(
                    f"  IntelMQ: {count:,} of {expected:,} events out after {now - started:.0f} s "
                    f"({rate:,.0f}/s)"
                )
                last_report = now
            dead = intelmq.dead_bots()
            if dead:
                raise SetupError(f"bot(s) {', '.join(dead)} stopped: " + "; ".join(intelmq.problems()[-5:]))
            if now > deadline or (idle and not count and now - started > 60):
                raise SetupError(
                    f"IntelMQ wrote {count:,} of the {expected:,} expected events in {now - started:.0f} s, "
                    f"queues {intelmq.queue_lengths()}; " + "; ".join(intelmq.problems()[-5:])
                )
            time.sleep(0.2)
        cpu = intelmq.cpu_seconds()
        print(
            "  IntelMQ CPU time: "
            + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cpu.items())
            + f"; {sum(cpu.values()) / args.events * 1e6:,.0f} µs an event in all"
        )
        problems = intelmq.problems()
        for problem in problems[:10]:
            print(f"  IntelMQ log: {problem}")
    finally:
        intelmq.stop()
    per_organisation: collections.Counter[int] = collections.Counter()
    unrouted = 0
    with intelmq.output.open() as lines:
        for line in lines:
            event = json.loads(line)
            asn = event.get("source.asn")
            if asn is None:
                unrouted += 1
            else:
                per_organisation[int(asn) - PSEUDO_AS] += 1
    return elapsed, dict(per_organisation), unrouted


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=20_000, help="events in the generated feed (default 20,000)"
    )
    parser.add_argument(
        "--intelmq-venv",
        default="/tmp/intelmq-venv",  # noqa: S108
        help="virtualenv with intelmq, pyasn and textX",
    )
    parser.add_argument(
        "--lookup",
        choices=sorted(LOOKUPS),
        default="asn",
        help="IntelMQ's lookup expert: asn_lookup on a pyasn database of the networks (default), "
        "or sieve rules",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=200_000, help="bytes per report of the file collector"
    )
    parser.add_argument("--warm-up", type=float, default=8.0, help="seconds the bots get to start")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds IntelMQ may take at most")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (print where)")
    args = parser.parse_args()
    if os.environ.get("MINGA_DATABASE_URL", "").strip():
        raise SystemExit("this comparison runs Minga on SQLite with one worker: unset MINGA_DATABASE_URL")

    scratch = Path(tempfile.mkdtemp(prefix="minga-intelmq-bench-"))
    intelmq_root = Path(tempfile.mkdtemp(prefix="intelmq-bench-"))
    try:
        compare(args, scratch, intelmq_root)
    finally:
        if args.keep:
            print(f"kept: Minga's node folder {scratch}, IntelMQ's root {intelmq_root}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(intelmq_root, ignore_errors=True)


def compare(args: argparse.Namespace, scratch: Path, intelmq_root: Path) -> None:
    try:  # before anything is measured
        IntelMQ(Path(args.intelmq_venv), intelmq_root, args.lookup).check()
    except SetupError as error:
        print(f"IntelMQ could not be set up: {error}")
        raise SystemExit(2) from None
    rng = random.Random(2026)  # pipeline_ingest.py's seed: the same constituency and feed
    url = pipeline_ingest.set_up_django(scratch)
    from django.db.models import Count

    from minga.directory.models import ConstituencyNetwork
    from minga.pipeline.models import EventRecipient

    inside = pipeline_ingest.constituency(rng)
    feed = pipeline_ingest.bench_feed()
    path = scratch / "feed.csv"
    repeated = pipeline_ingest.generate(path, args.events, inside, rng)
    expected = unique_keys(path)
    number = {f"bench-team-{n}": n for n in range(pipeline_ingest.ORGANISATIONS)}
    networks = [
        (str(cidr), number[short_name])
        for cidr, short_name in ConstituencyNetwork.objects.values_list("cidr", "organisation__short_name")
    ]
    print(
        f"Feed: {args.events:,} CSV events ({repeated:,} repeated lines; {expected:,} distinct events), "
        f"{len(networks):,} networks of {pipeline_ingest.ORGANISATIONS} organisations"
    )
    if args.events < ISSUE_EVENTS:
        print(
            f"A sample of {args.events:,} events, not issue 6's {ISSUE_EVENTS:,}: IntelMQ at a few hundred "
            "events/s would take about half an hour for those; the times for 1,000,000 below are this "
            "sample's rates extrapolated linearly."
        )

    # Minga: one real worker on SQLite, as pipeline_ingest.py measures it.
    the_run, minga_seconds, peaks = pipeline_ingest.with_workers(feed, path, url, scratch, 1)
    minga_rate = the_run.read / minga_seconds
    minga_routes = dict(
        EventRecipient.objects.values_list("organisation__short_name")
        .annotate(n=Count("id"))
        .values_list("organisation__short_name", "n")
    )
    minga_per_org = {number[name]: n for name, n in minga_routes.items() if name in number}
    print(
        f"Minga (SQLite, 1 worker): {the_run.read:,} events in {minga_seconds:.2f} s = "
        f"{minga_rate:,.0f} events/s "
        f"(status {the_run.status}; {the_run.duplicates:,} duplicates, {the_run.routed:,} routed, "
        f"{the_run.unrouted:,} unrouted; worker peak {max(peaks, default=0):.0f} MB)"
    )

    # IntelMQ: the same file.
    try:
        intelmq_seconds, intelmq_per_org, intelmq_unrouted = run_intelmq(
            args, path, networks, expected, intelmq_root
        )
    except SetupError as error:
        print(f"IntelMQ could not be set up: {error}")
        raise SystemExit(2) from None
    intelmq_rate = args.events / intelmq_seconds
    intelmq_out = sum(intelmq_per_org.values()) + intelmq_unrouted
    print(
        f"IntelMQ (Redis pipeline, 6 bots, {LOOKUPS[args.lookup][0]}): {args.events:,} events in "
        f"{intelmq_seconds:.1f} s = "
        f"{intelmq_rate:,.0f} events/s ({intelmq_out:,} written, {sum(intelmq_per_org.values()):,} with an "
        f"organisation, {intelmq_unrouted:,} without)"
    )
    print(
        f"Ratio: Minga {minga_rate / intelmq_rate:,.0f} times IntelMQ on this machine now "
        f"(issue 6's goal, 50,000/s against IntelMQ's {ISSUE_INTELMQ_RATE}/s, is about "
        f"{50_000 / ISSUE_INTELMQ_RATE:.0f} times)"
    )
    print(
        f"Extrapolated to {ISSUE_EVENTS:,} events: Minga {ISSUE_EVENTS / minga_rate / 60:,.1f} min, "
        f"IntelMQ {ISSUE_EVENTS / intelmq_rate / 60:,.1f} min (linear; Minga's own 1,000,000-event run: "
        "benchmarks/pipeline_ingest.py)"
    )

    # The same routed result?
    organisations = sorted(set(minga_per_org) | set(intelmq_per_org))
    differing = [n for n in organisations if minga_per_org.get(n, 0) != intelmq_per_org.get(n, 0)]
    minga_stored = the_run.read - the_run.invalid - the_run.duplicates
    print(
        f"Routed result: Minga stored {minga_stored:,} events ({the_run.unrouted:,} unrouted), IntelMQ wrote "
        f"{intelmq_out:,} ({intelmq_unrouted:,} without an organisation); {len(organisations)} organisations "
        f"received events, {len(differing)} with a different count"
    )
    for n in differing[:10]:
        print(f"  bench-team-{n}: Minga {minga_per_org.get(n, 0):,}, IntelMQ {intelmq_per_org.get(n, 0):,}")
    same = not differing and minga_stored == intelmq_out and the_run.unrouted == intelmq_unrouted
    print("  the same events to the same organisations" if same else "  the results differ (above)")


if __name__ == "__main__":
    main()
