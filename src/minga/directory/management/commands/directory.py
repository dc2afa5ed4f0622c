from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from minga.core.models import Organisation
from minga.directory import exchange


class Command(BaseCommand):
    help = "Export or import the directory's constituencies as CSV or JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        export = actions.add_parser("export", help="write constituencies to standard output")
        export.add_argument("--format", choices=["csv", "json"], default="csv")
        export.add_argument("--organisation", help="only this organisation (short name)")
        load = actions.add_parser("import", help="add constituencies from a file, all or nothing")
        load.add_argument("file", help="a CSV or JSON file as written by export")
        load.add_argument("--format", choices=["csv", "json"], help="default: from the file's extension")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "export":
            organisations = Organisation.objects.order_by("short_name")
            if options["organisation"]:
                organisations = organisations.filter(short_name=options["organisation"])
                if not organisations.exists():
                    raise CommandError(f"No organisation is called {options['organisation']!r}.")
            render = exchange.export_json if options["format"] == "json" else exchange.export_csv
            self.stdout.write(render(organisations), ending="")
            return
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        fmt = options["format"] or ("json" if path.suffix.lower() == ".json" else "csv")
        try:
            added = exchange.import_constituency(None, path.read_text(encoding="utf-8-sig"), fmt)
        except exchange.ImportRejected as exc:
            for error in exc.errors:
                self.stderr.write(str(error))
            raise CommandError(f"Nothing was imported: {len(exc.errors)} bad row(s).") from exc
        except (UnicodeDecodeError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"{added} entries imported."))
