from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from minga.core.choices import TLP
from minga.core.models import Organisation
from minga.intel import services


class Command(BaseCommand):
    help = "Import STIX 2.1 bundles into the intelligence store."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        load = actions.add_parser("import", help="import a STIX 2.1 bundle (streamed: any size)")
        load.add_argument("file", help="a JSON file holding one STIX 2.1 bundle")
        load.add_argument(
            "--organisation", required=True, help="import in this organisation's name (short name)"
        )
        load.add_argument(
            "--tlp",
            choices=[t for t in TLP.values if t != TLP.RED],
            default=TLP.AMBER,
            help="for objects without a TLP marking of their own (default amber)",
        )
        load.add_argument(
            "--recipient",
            action="append",
            default=[],
            help="a recipient organisation (short name); repeatable",
        )
        load.add_argument(
            "--problems",
            type=int,
            default=20,
            metavar="N",
            help="print the first N rejected objects (default 20)",
        )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        organisation = self._organisation(options["organisation"])
        recipients = [self._organisation(name) for name in options["recipient"]]
        with path.open("rb") as stream:
            try:
                result = services.import_bundle(
                    None, organisation, stream, options["tlp"], recipients, source=path.name
                )
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
        for rejection in result.rejections[: max(options["problems"], 0)]:
            self.stderr.write(f"object {rejection.index} {rejection.stix_id}: {rejection.reason}")
        summary = f"{result.accepted} stored, {result.duplicates} already stored, {result.rejected} rejected"
        if result.error:
            raise CommandError(f"{summary}. {result.error}")
        self.stdout.write(self.style.SUCCESS(summary))

    def _organisation(self, short_name: str) -> Organisation:
        organisation = Organisation.objects.filter(short_name=short_name).first()
        if organisation is None:
            raise CommandError(f"No organisation is called {short_name!r}.")
        return organisation
