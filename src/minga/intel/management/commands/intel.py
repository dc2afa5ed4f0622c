from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.intel import csvio, services


class Command(BaseCommand):
    help = "Import STIX bundles, MISP events or CSV indicators into the intelligence store."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        load = actions.add_parser(
            "import", help="import a STIX bundle, MISP JSON events or CSV indicators (streamed: any size)"
        )
        load.add_argument("file", help="a STIX bundle (2.1, or 2.0 upgraded), MISP JSON events, or CSV")
        load.add_argument(
            "--format",
            choices=services.FORMATS,
            default="stix",
            help="stix (default), misp (an event, a list of events or a search answer) or csv",
        )
        load.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="FIELD=COLUMN",
            help=(
                "CSV: which column holds what (header name, or number from 1 with --no-header); FIELD is "
                "value (required), type, name, description, valid_from, valid_until, confidence or labels; "
                "repeatable"
            ),
        )
        load.add_argument(
            "--type",
            dest="fixed_type",
            default="",
            metavar="TYPE",
            help="CSV: one type for every row, e.g. ipv4-addr (default: detected from each value)",
        )
        load.add_argument("--delimiter", default=",", help="CSV: the delimiter (default ,; 'tab' for a tab)")
        load.add_argument(
            "--no-header", action="store_true", help="CSV: the first line is data, not column names"
        )
        load.add_argument(
            "--organisation", required=True, help="import in this organisation's name (short name)"
        )
        load.add_argument(
            "--tlp",
            choices=TLP.values,
            default=TLP.AMBER,
            help="for objects without a TLP marking of their own (default amber; red needs --as)",
        )
        load.add_argument(
            "--as",
            dest="as_user",
            default="",
            metavar="USER",
            help=(
                "import as this user (who must be allowed to import for the organisation): TLP:RED "
                "objects name people, and the importer is named on them"
            ),
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
            help="print the first N rejected objects, attributes or rows (default 20)",
        )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        organisation = self._organisation(options["organisation"])
        recipients = [self._organisation(name) for name in options["recipient"]]
        actor = None
        if options["as_user"]:
            actor = User.objects.filter(username=options["as_user"], is_active=True).first()
            if actor is None:
                raise CommandError(f"No active user is called {options['as_user']!r}.")
        fmt = options["format"]
        with path.open("rb") as stream:
            try:
                mapping = None
                if fmt == "csv":
                    delimiter = "\t" if options["delimiter"] == "tab" else options["delimiter"]
                    mapping = csvio.Mapping.parse(
                        options["map"],
                        fixed_type=options["fixed_type"],
                        delimiter=delimiter,
                        header=not options["no_header"],
                    ).as_dict()
                elif options["map"] or options["fixed_type"] or options["no_header"]:
                    raise CommandError("--map, --type and --no-header are for --format csv.")
                result = services.import_file(
                    actor,
                    organisation,
                    stream,
                    options["tlp"],
                    recipients,
                    fmt=fmt,
                    mapping=mapping,
                    source=path.name,
                )
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
            except PermissionDenied as exc:
                raise CommandError(str(exc)) from exc
        where = {"stix": "object", "misp": "attribute", "csv": ""}[fmt]
        for rejection in result.rejections[: max(options["problems"], 0)]:
            place = f"{where} {rejection.index} " if where else ""
            self.stderr.write(
                f"{place}{rejection.stix_id + ': ' if rejection.stix_id else ''}{rejection.reason}"
            )
        summary = f"{result.accepted} stored, {result.duplicates} already stored, {result.rejected} rejected"
        if result.error:
            raise CommandError(f"{summary}. {result.error}")
        self.stdout.write(self.style.SUCCESS(summary))

    def _organisation(self, short_name: str) -> Organisation:
        organisation = Organisation.objects.filter(short_name=short_name).first()
        if organisation is None:
            raise CommandError(f"No organisation is called {short_name!r}.")
        return organisation
