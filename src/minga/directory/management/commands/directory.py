from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from minga.core.models import Organisation
from minga.directory import exchange, registries


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
        seed = actions.add_parser(
            "seed",
            help="propose constituencies from registry data (RIR statistics or RPSL dumps, .gz read as is)",
        )
        seed.add_argument("files", nargs="+", metavar="FILE", help="one or more files of the same format")
        seed.add_argument("--format", choices=registries.FORMATS, required=True, dest="registry_format")
        seed.add_argument(
            "--problems", type=int, default=50, metavar="N", help="print the first N problems (default 50)"
        )

    def handle(self, *args: Any, action: str, dataset: str = "", **options: Any) -> None:
        if action == "seed":
            self._seed(options["files"], options["registry_format"], max(options["problems"], 0))
            return
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

    def _seed(self, files: list[str], fmt: str, shown: int) -> None:
        paths = [Path(f) for f in files]
        for path in paths:
            if not path.is_file():
                raise CommandError(f"{path} is not a file.")
        try:
            report = registries.seed_proposals(None, paths, fmt)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        read, proposed = registries.describe(report)
        for line in read:
            self.stdout.write(line)
        if report.problem_count:
            self.stdout.write(f"{report.problem_count} problem(s), records not read or resources refused:")
            for problem in report.problems[:shown]:
                self.stdout.write(f"  {problem}")
            if report.problem_count > shown:
                self.stdout.write(f"  ... and {report.problem_count - shown} more")
        self.stdout.write(self.style.SUCCESS(proposed[0]))
        for line in proposed[1:]:
            self.stdout.write(line)
