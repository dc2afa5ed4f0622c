from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from minga.assistance import queries, services
from minga.assistance.choices import Priority


class Command(BaseCommand):
    help = "Show or set the network's deadlines per priority, or escalate overdue requests now."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("escalate", help="escalate the submitted requests not acknowledged in time, now")
        deadlines = actions.add_parser("deadlines", help="show the deadlines, or set one priority's")
        deadlines.add_argument(
            "--set", dest="priority", choices=Priority.values, help="the priority to change"
        )
        deadlines.add_argument("--acknowledge-hours", type=float, help="acknowledge within this many hours")
        deadlines.add_argument("--respond-hours", type=float, help="answer within this many hours")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "escalate":
            escalated = services.escalate_overdue()
            self.stdout.write(self.style.SUCCESS(f"escalated {len(escalated)} request(s)"))
            for reference in escalated:
                self.stdout.write(f"  {reference}")
            return
        priority = options["priority"]
        if priority:
            ack, respond = options["acknowledge_hours"], options["respond_hours"]
            if ack is None or respond is None:
                raise CommandError("Give --acknowledge-hours and --respond-hours with --set.")
            try:
                services.set_deadlines(
                    None,
                    priority,
                    acknowledge_within=timedelta(hours=ack),
                    respond_within=timedelta(hours=respond),
                )
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
        for name, (ack_within, respond_within) in services.all_deadlines().items():
            self.stdout.write(
                f"{name:<10} acknowledge within {queries.duration_text(ack_within):<8} "
                f"answer within {queries.duration_text(respond_within)}"
            )
