"""``minga retraction``: retract what an organisation shared, everywhere it went, and follow the
acknowledgements of the nodes that held copies."""

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from minga.core.models import Organisation
from minga.taxii import retraction


class Command(BaseCommand):
    help = "Issue a retraction (revoke, delete, narrow) of a shared object, or show its status per node."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="command", required=True)
        issue = actions.add_parser("issue", help="retract an object an organisation shared on this node")
        issue.add_argument("stix_id")
        issue.add_argument("--organisation", required=True, help="the organisation that shared it")
        issue.add_argument("--action", choices=retraction.ACTIONS, required=True)
        issue.add_argument("--tlp", default="", help="narrow: the new TLP level")
        issue.add_argument("--recipient", action="append", default=[], help="narrow: a recipient that stays")
        issue.add_argument("--reason", default="")
        status = actions.add_parser("status", help="per node: applied, nothing held, refused or pending")
        status.add_argument("retraction_id")

    def _organisations(self, names: list[str]) -> list[Organisation]:
        found = list(Organisation.objects.filter(short_name__in=names))
        missing = set(names) - {org.short_name for org in found}
        if missing:
            raise CommandError(f"Unknown organisations: {', '.join(sorted(missing))}.")
        return found

    def handle(self, *args: Any, command: str, **options: Any) -> None:
        if command == "status":
            states = retraction.status(options["retraction_id"])
            if not states:
                raise CommandError("No retraction with this id is stored here, or it concerns no node.")
            for state in states:
                when = f"{state.at:%Y-%m-%d %H:%M:%S} UTC" if state.at else "-"
                self.stdout.write(f"{state.node}\t{state.outcome}\t{when}")
            return
        (organisation,) = self._organisations([options["organisation"]])
        try:
            issued = retraction.retract(
                None,
                organisation,
                options["stix_id"],
                options["action"],
                tlp=options["tlp"],
                recipients=self._organisations(options["recipient"]),
                reason=options["reason"],
            )
        except (ValidationError, PermissionDenied) as exc:
            messages = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
            raise CommandError(" ".join(messages)) from exc
        self.stderr.write(f"Retraction issued; {issued.copies_here} version(s) changed here. Its id:")
        self.stdout.write(issued.retraction_id)
