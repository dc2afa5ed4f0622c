"""Periodic background work: background tasks that run every so often (the daily request to
stale contacts to confirm their details, later the feed pulls and retention sweeps).

django-tasks has no scheduler, so every ``minga worker`` checks every ten seconds which
periodic jobs are due and enqueues them. The claim is one conditional UPDATE on the job's
``ScheduledJob`` row, in the transaction that enqueues the task: however many workers check at
the same moment, each period enqueues the job once, and a crash between the two leaves it due.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone
from django_tasks.base import Task

from minga.core.models import ScheduledJob

logger = logging.getLogger(__name__)

CHECK_EVERY_SECONDS = 10.0  # a check is one UPDATE per job: cheap, and federation syncs every 10 s


@dataclass(frozen=True)
class Periodic:
    name: str
    task: Task
    every: timedelta


_JOBS: dict[str, Periodic] = {}


def every(interval: timedelta, *, name: str | None = None) -> Callable[[Task], Task]:
    """Declare a background task (see ``minga.core.tasks.background_task``) as periodic. Apps
    declare theirs in a module their AppConfig imports, so every worker knows them."""

    def register(task: Task) -> Task:
        job_name = name or task.module_path
        _JOBS[job_name] = Periodic(job_name, task, interval)
        return task

    return register


def jobs() -> list[Periodic]:
    return sorted(_JOBS.values(), key=lambda job: job.name)


def enqueue_due(now: datetime | None = None) -> list[str]:
    """Enqueue every periodic job that is due; return their names. A job seen for the first time
    is due at once."""
    now = now or timezone.now()
    enqueued = []
    for job in jobs():
        ScheduledJob.objects.get_or_create(name=job.name, defaults={"next_run_at": now})
        with transaction.atomic():
            claimed = ScheduledJob.objects.filter(name=job.name, next_run_at__lte=now).update(
                next_run_at=now + job.every, last_enqueued_at=now
            )
            if claimed:
                job.task.enqueue()
                enqueued.append(job.name)
    if enqueued:
        logger.info("enqueued periodic jobs: %s", ", ".join(enqueued))
    return enqueued


class SchedulerThread(threading.Thread):
    """Runs ``enqueue_due`` beside a worker's task loop until ``stop`` is set."""

    def __init__(self, interval: float = CHECK_EVERY_SECONDS) -> None:
        super().__init__(name="minga-scheduler", daemon=True)
        self.interval = interval
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                close_old_connections()
                try:
                    enqueue_due()
                except DatabaseError:
                    # A busy SQLite file or a restarting database: the next round tries again.
                    logger.warning("could not check the schedule; trying again later", exc_info=True)
                self.stop.wait(self.interval)
        finally:
            connection.close()
