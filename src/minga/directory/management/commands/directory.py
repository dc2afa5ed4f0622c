from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from minga.core.models import Organisation
from minga.directory import exchange


class Command(BaseCommand):
    help = "Export or import the directory's organisations, contacts or constituencies as CSV or JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        export = actions.add_parser("export", help="write one dataset to standard output")
        export.add_argument("dataset", choices=exchange.DATASETS)
        export.add_argument("--format", choices=exchange.FORMATS, default="csv")
        export.add_argument(
            "--organisation", action="append", default=[], help="only this organisation (short name)"
        )
        load = actions.add_parser("import", help="import one dataset from a file, all or nothing")
        load.add_argument("dataset", choices=exchange.DATASETS)
        load.add_argument("file", help="a CSV or JSON file as written by export")
        load.add_argument("--format", choices=exchange.FORMATS, help="default: from the file's extension")

    def handle(self, *args: Any, action: str, dataset: str, **options: Any) -> None:
        if action == "export":
            for short_name in options["organisation"]:
                if not Organisation.objects.filter(short_name=short_name).exists():
                    raise CommandError(f"No organisation is called {short_name!r}.")
            text = exchange.export(None, dataset, options["format"], options["organisation"])
            self.stdout.write(text, ending="")
            return
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        fmt = options["format"] or ("json" if path.suffix.lower() == ".json" else "csv")
        try:
            result = exchange.import_text(None, dataset, path.read_text(encoding="utf-8-sig"), fmt)
        except exchange.ImportRejected as exc:
            for error in exc.errors:
                self.stderr.write(str(error))
            raise CommandError(f"Nothing was imported: {len(exc.errors)} bad row(s).") from exc
        except UnicodeDecodeError as exc:
            raise CommandError(f"{path} is not UTF-8 text: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"{dataset}: {result}"))
