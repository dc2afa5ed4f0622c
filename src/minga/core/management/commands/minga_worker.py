from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from minga.core import schedule


class Command(BaseCommand):
    help = "Run a background worker on the durable task queue (django-tasks, database backend)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queues", default="*", help="comma-separated queues, or * for all")
        parser.add_argument(
            "--interval", type=float, default=1.0, help="seconds to wait when the queue is empty"
        )
        parser.add_argument("--batch", action="store_true", help="run what is due, then exit")
        parser.add_argument("--max-tasks", type=int, default=None, help="exit after this many tasks")
        parser.add_argument(
            "--no-schedule",
            action="store_true",
            help="do not enqueue periodic jobs (another worker does)",
        )

    def handle(
        self,
        *args: Any,
        queues: str,
        interval: float,
        batch: bool,
        max_tasks: int | None,
        no_schedule: bool,
        **options: Any,
    ) -> None:
        worker_args = ["--queue-name", queues, "--interval", str(interval), "--no-reload"]
        if batch:
            worker_args.append("--batch")
        if max_tasks:
            worker_args += ["--max-tasks", str(max_tasks)]
        scheduler = None
        if no_schedule:
            pass
        elif batch:
            schedule.enqueue_due()  # what is due now runs in this batch
        else:
            scheduler = schedule.SchedulerThread()
            scheduler.start()
        try:
            call_command("db_worker", *worker_args, verbosity=options["verbosity"])
        finally:
            if scheduler is not None:
                scheduler.stop.set()
                scheduler.join(timeout=5)
