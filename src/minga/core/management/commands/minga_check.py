"""``minga check``: what is misconfigured, in plain words."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor


class Command(BaseCommand):
    help = "Check the node's configuration and database, and say what is wrong in plain words."

    def handle(self, *args: Any, **options: Any) -> None:
        problems: list[str] = []
        warnings: list[str] = []

        def ok(label: str, text: str) -> None:
            self.stdout.write(f"  ok    {label}: {text}")

        ok("node", settings.MINGA_NODE_NAME)

        var_dir = settings.VAR_DIR
        if os.access(var_dir, os.W_OK):
            ok("state folder", str(var_dir))
        else:
            problems.append(f"The state folder {var_dir} is not writable by this user.")

        if os.environ.get("MINGA_SECRET_KEY"):
            ok("secret key", "from MINGA_SECRET_KEY")
        else:
            ok("secret key", f"generated, kept in {var_dir / 'secret_key'}")
            warnings.append(
                "Several machines must share one MINGA_SECRET_KEY; set it explicitly "
                "when web or worker processes run on more than one machine."
            )
        if settings.DEBUG:
            warnings.append("MINGA_DEBUG is on: never run a node holding real data in debug mode.")

        ok("allowed hosts", ", ".join(settings.ALLOWED_HOSTS) or "(none)")
        if not settings.ALLOWED_HOSTS:
            problems.append("MINGA_ALLOWED_HOSTS is empty: the node would refuse every request.")

        db = settings.DATABASES["default"]
        engine = db["ENGINE"].rsplit(".", 1)[-1]
        where = (
            db["NAME"]
            if engine == "sqlite3"
            else f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"
        )
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            ok("database", f"{engine} at {where} answers")
            executor = MigrationExecutor(connection)
            pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
            if pending:
                warnings.append(
                    f"{len(pending)} database migration(s) are pending: run `minga manage migrate` "
                    "(or `minga up`, which migrates)."
                )
            else:
                ok("schema", "up to date")
        except DatabaseError as exc:
            problems.append(
                f"The database {engine} at {where} cannot be reached: {str(exc).strip()}. "
                "Check MINGA_DATABASE_URL."
            )

        if settings.EMAIL_BACKEND.endswith("console.EmailBackend"):
            ok("e-mail", "printed to the console (set MINGA_EMAIL_URL to send real mail)")
        else:
            ok("e-mail", f"SMTP via {settings.EMAIL_HOST}:{settings.EMAIL_PORT}")

        ok("task queue", "database (django-tasks)")
        for message in checks.run_checks(include_deployment_checks=False):
            if message.level >= checks.ERROR:
                problems.append(str(message))

        for warning in warnings:
            self.stdout.write(self.style.WARNING(f"  note  {warning}"))
        for problem in problems:
            self.stdout.write(self.style.ERROR(f"  FAIL  {problem}"))
        if problems:
            raise CommandError(f"{len(problems)} problem(s) found.")
        self.stdout.write(self.style.SUCCESS("The node's configuration is usable."))
