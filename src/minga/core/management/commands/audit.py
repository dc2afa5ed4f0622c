from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from minga.core import audit


class Command(BaseCommand):
    help = "Work with the audit log. `verify` recomputes the hash chain and reports any tampering."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("verify", help="recompute the hash chain")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        result = audit.verify()
        if result.ok:
            self.stdout.write(
                self.style.SUCCESS(f"The audit chain is intact: {result.entries} entries verified.")
            )
            return
        for problem in result.problems:
            where = f"entry #{problem.seq}: " if problem.seq is not None else ""
            self.stderr.write(f"{where}{problem.message}")
        raise CommandError(
            f"The audit chain is broken ({len(result.problems)} problem(s) found "
            f"in {result.entries} entries)."
        )
