from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from minga.pipeline import processing, services
from minga.pipeline.choices import RunSource, RunStatus
from minga.pipeline.models import Feed, Run


class Command(BaseCommand):
    help = "Ingest a file of a feed: keep it, split it into chunks, process them (here, or on the workers)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "file", help="a file in the feed's format (CSV, JSON lines, IntelMQ, STIX 2.1 bundle, MISP)"
        )
        parser.add_argument("--feed", required=True, help="the feed's name (see `minga feed list`)")
        parser.add_argument(
            "--queue",
            action="store_true",
            help="queue the chunks for `minga worker` processes instead of processing them here",
        )
        parser.add_argument(
            "--chunk-lines",
            type=int,
            default=processing.CHUNK_LINES,
            metavar="N",
            help=f"lines per chunk (default {processing.CHUNK_LINES:,})",
        )
        parser.add_argument(
            "--problems",
            type=int,
            default=20,
            metavar="N",
            help="print the first N dead letters (default 20)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        feed = Feed.objects.select_related("owner").filter(name=options["feed"]).first()
        if feed is None:
            raise CommandError(f"No feed is called {options['feed']!r}; `minga feed list` names them.")
        if not 100 <= options["chunk_lines"] <= 1_000_000:
            raise CommandError("--chunk-lines is between 100 and 1,000,000.")

        def pieces() -> Any:
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    yield block

        try:
            run = services.start_run(
                None,
                feed,
                pieces(),
                path.name,
                source=RunSource.CLI,
                queue=options["queue"],
                chunk_lines=options["chunk_lines"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        if run.status == RunStatus.FAILED:
            raise CommandError(f"run {run.uuid} failed: {run.message}")
        if options["queue"]:
            self.stdout.write(
                self.style.SUCCESS(f"run {run.uuid}: {run.chunk_count} chunks queued for the workers")
            )
            return
        run = self._process(run)
        for letter in run.dead_letters.order_by("line")[: max(options["problems"], 0)]:
            where = f" {letter.field}" if letter.field else ""
            self.stderr.write(f"line {letter.line}{where}: {letter.reason}")
        summary = (
            f"run {run.uuid}: read {run.read}, parsed {run.parsed}, invalid {run.invalid}, "
            f"duplicates {run.duplicates}, routed {run.routed}, unrouted {run.unrouted}"
        )
        if run.status == RunStatus.FAILED:
            raise CommandError(f"{summary}. {run.message}")
        self.stdout.write(self.style.SUCCESS(summary))

    def _process(self, run: Run) -> Run:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("lines"),
            TimeElapsedColumn(),
        )
        total = sum(run.chunks.values_list("line_count", flat=True))
        with Progress(*columns, transient=True, disable=not self.stdout.isatty()) as progress:
            bar = progress.add_task(run.file_name, total=total)

            return services.run_inline(
                run, progress=lambda current: progress.update(bar, completed=current.read)
            )
