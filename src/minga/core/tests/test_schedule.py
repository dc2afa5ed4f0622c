"""The schedule of periodic jobs: due jobs are claimed once per period, in the transaction
that enqueues them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from minga.core import schedule
from minga.core.models import ScheduledJob
from minga.directory.tasks import request_stale_confirmations

JOB = "directory.request_stale_confirmations"


@pytest.mark.django_db
def test_a_due_job_is_enqueued_once_per_period():
    assert JOB in [job.name for job in schedule.jobs()]
    now = timezone.now()
    assert JOB in schedule.enqueue_due(now)  # first seen: due at once
    assert JOB not in schedule.enqueue_due(now)
    assert JOB not in schedule.enqueue_due(now + timedelta(hours=23))
    assert JOB in schedule.enqueue_due(now + timedelta(days=1))
    runs = DBTaskResult.objects.filter(task_path=request_stale_confirmations.module_path)
    assert runs.count() == 2
    assert ScheduledJob.objects.get(name=JOB).next_run_at == now + timedelta(days=2)


@pytest.mark.django_db(transaction=True)  # the thread opens its own connection
def test_the_scheduler_thread_checks_until_stopped():
    thread = schedule.SchedulerThread(interval=0.05)
    thread.start()
    try:
        deadline = timezone.now() + timedelta(seconds=10)
        while not ScheduledJob.objects.filter(name=JOB).exists() and timezone.now() < deadline:
            thread.stop.wait(0.05)
    finally:
        thread.stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert ScheduledJob.objects.get(name=JOB).last_enqueued_at is not None
