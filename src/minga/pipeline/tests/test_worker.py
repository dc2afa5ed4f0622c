"""Nothing lost: a real ``minga worker`` killed with SIGKILL in the middle of a run, then a
worker started again, ends with exactly the events of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from minga.core.models import ScheduledJob
from minga.core.tests.test_worker import REPO, _database_url, wait_for
from minga.pipeline import services
from minga.pipeline.choices import RunStatus
from minga.pipeline.models import Chunk, DeadLetter, Event, EventRecipient, Run
from minga.pipeline.tests.helpers import constituency, scan_feed

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def start_worker() -> Iterator:
    started: list[subprocess.Popen] = []
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "MINGA_TEST_DATABASE_URL": _database_url(),
        "MINGA_PIPELINE_STALLED_SECONDS": "1",
        "PYTHONPATH": str(REPO),
    }

    def start() -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "minga", "worker", "--interval", "0.1"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)


def _feed_file(lines: int) -> bytes:
    rng = random.Random(6)
    body = ["timestamp,ip,port,asn,host,url,category"]
    for n in range(lines):
        if n % 97 == 0:
            body.append(f"2026-01-10T10:00:00Z,not-an-ip-{n},22,,,,scan")  # a dead letter
            continue
        ip = f"198.18.{rng.randrange(2)}.{rng.randrange(256)}" if n % 3 else f"203.0.113.{rng.randrange(256)}"
        body.append(f"2026-01-10T{rng.randrange(24):02d}:00:00Z,{ip},{rng.choice((22, 23))},,,,scan")
    return ("\n".join(body) + "\n").encode()


def _result(run: Run) -> tuple[set, set, set]:
    events = set(
        Event.objects.filter(run=run).values_list(
            "line", "time", "source_ip", "source_port", "classification_type"
        )
    )
    routes = set(EventRecipient.objects.filter(event__run=run).values_list("event__line", "organisation_id"))
    dead = set(DeadLetter.objects.filter(run=run).values_list("line", "field", "reason"))
    return events, routes, dead


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(make_org, start_worker):
    hub = make_org("hub")
    constituency(make_org("demo-a"), "198.18.0.0/24")
    constituency(make_org("demo-b"), "198.18.1.0/25")
    data = _feed_file(6000)

    # The reference: the same file, uninterrupted, through an identical feed.
    reference = services.run_inline(
        services.start_run(
            None, scan_feed(hub, name="reference"), [data], "f.csv", queue=False, chunk_lines=200
        )
    )
    run = services.start_run(None, scan_feed(hub, name="killed"), [data], "f.csv", chunk_lines=200)
    assert run.chunk_count == 30

    first = start_worker()
    wait_for(lambda: Chunk.objects.filter(run=run, done=True).count() >= 5, timeout=120)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=20)
    done = Chunk.objects.filter(run=run, done=True).count()
    assert done < run.chunk_count, "the worker finished before it was killed: nothing was tested"

    # A minute later (as far as the schedule knows), a worker starts again.
    ScheduledJob.objects.filter(name="pipeline.resume_stalled_chunks").update(
        next_run_at=timezone.now() - timedelta(seconds=1)
    )
    start_worker()
    wait_for(lambda: Run.objects.get(pk=run.pk).status == RunStatus.DONE, timeout=180)

    run.refresh_from_db()
    counts = ("read", "parsed", "invalid", "duplicates", "routed", "unrouted")
    assert [getattr(run, c) for c in counts] == [getattr(reference, c) for c in counts]
    assert run.chunks_done == run.chunk_count == Chunk.objects.filter(run=run, done=True).count()
    assert _result(run) == _result(reference)
    assert Event.objects.filter(run=run).count() == reference.routed + reference.unrouted


def test_two_workers_share_a_run_and_end_with_the_same_events(make_org, start_worker):
    hub = make_org("hub")
    constituency(make_org("demo-a"), "198.18.0.0/24")
    data = _feed_file(4000)
    reference = services.run_inline(
        services.start_run(
            None, scan_feed(hub, name="reference"), [data], "f.csv", queue=False, chunk_lines=200
        )
    )
    run = services.start_run(None, scan_feed(hub, name="shared"), [data], "f.csv", chunk_lines=200)
    start_worker(), start_worker()
    wait_for(lambda: Run.objects.get(pk=run.pk).status == RunStatus.DONE, timeout=180)
    run.refresh_from_db()
    counts = ("read", "parsed", "invalid", "duplicates", "routed", "unrouted")
    assert [getattr(run, c) for c in counts] == [getattr(reference, c) for c in counts]
    assert _result(run) == _result(reference)
    assert reference.duplicates > 100  # the chunks shared keys: the workers met on them
