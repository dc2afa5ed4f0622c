"""Background work through a real ``minga worker`` process on the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django_tasks_db.models import DBTaskResult

from tests.sharedapp.models import TaskRun
from tests.sharedapp.tasks import flaky

REPO = Path(__file__).resolve().parents[4]
pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgresql://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def worker() -> Iterator[Callable[[], subprocess.Popen]]:
    """Start ``minga worker`` processes against the test database; stop them afterwards."""
    started: list[subprocess.Popen] = []
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "MINGA_TEST_DATABASE_URL": _database_url(),
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
    }

    def start() -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "minga", "worker", "--interval", "0.2"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("the worker did not finish in time")


def test_work_enqueued_in_a_transaction_runs_only_once_it_commits(worker):
    with transaction.atomic():
        flaky.enqueue("rolled-back", 0)
        transaction.set_rollback(True)
    worker()
    with transaction.atomic():
        result = flaky.enqueue("committed", 0)
        time.sleep(1.5)  # the worker polls meanwhile and must not see the row
        assert not TaskRun.objects.filter(key="committed").exists()
    wait_for(lambda: DBTaskResult.objects.get(pk=result.id).status == "SUCCESSFUL")
    assert list(TaskRun.objects.values_list("key", "outcome")) == [("committed", "succeeded")]
    assert not DBTaskResult.objects.filter(args_kwargs__args=["rolled-back", 0]).exists()


def test_failures_are_retried_with_backoff_then_kept(worker, login_client, make_org, make_user):
    flaky.enqueue("recovers", 2)  # fails twice, succeeds on the third and last attempt
    flaky.enqueue("gives-up", 9)  # fails on every attempt
    worker()
    wait_for(
        lambda: (
            TaskRun.objects.filter(key="recovers", outcome="succeeded").exists()
            and TaskRun.objects.filter(key="gives-up").count() == 3
        )
    )
    time.sleep(1)  # a fourth attempt of "gives-up" would have been enqueued by now
    assert list(
        TaskRun.objects.filter(key="recovers").order_by("attempt").values_list("outcome", flat=True)
    ) == ["failed", "failed", "succeeded"]
    assert TaskRun.objects.filter(key="gives-up").count() == 3
    failed = DBTaskResult.objects.filter(status="FAILED")
    assert failed.count() == 5
    assert all("fails on purpose" in r.traceback for r in failed)
    retries = DBTaskResult.objects.exclude(run_after__year=9999).order_by("enqueued_at")
    assert retries.count() == 4  # each retry was scheduled for later, not run at once

    from minga.core.choices import Role

    admin = make_user("admin", make_org("hub"), Role.NODE_ADMIN)
    page = login_client(admin).get("/tasks/?status=FAILED")
    assert page.status_code == 200
    assert b"fails on purpose" in page.content and b"RuntimeError" in page.content
    analyst = make_user("ana", make_org("team"))
    assert login_client(analyst).get("/tasks/").status_code == 403


def test_periodic_jobs_are_enqueued_once_however_many_workers_check(worker, make_org):
    from minga.core.models import AuditEntry, ScheduledJob
    from minga.directory.models import PointOfContact
    from minga.directory.tasks import request_stale_confirmations

    org = make_org("csirt")
    contact = PointOfContact.objects.create(organisation=org, role="duty", name="Desk", email="d@x.example")
    worker(), worker()  # both check the schedule as they start
    wait_for(lambda: PointOfContact.objects.get(pk=contact.pk).confirmation_requested_at is not None)
    job = ScheduledJob.objects.get(name="directory.request_stale_confirmations")
    runs = DBTaskResult.objects.filter(task_path=request_stale_confirmations.module_path)
    wait_for(lambda: runs.filter(status="SUCCESSFUL").exists())
    time.sleep(1)  # a second claim would have been enqueued by now
    assert runs.count() == 1 and runs.get().return_value == "asked 1 stale contacts to confirm"
    assert job.next_run_at - job.last_enqueued_at == timedelta(days=1)
    asked = AuditEntry.objects.filter(action="contact.confirmation_requested")
    assert asked.count() == 1 and asked.get().details == {"via": "schedule"}
