"""A fresh, throw-away node database for a benchmark script: SQLite in a temporary folder by
default, or the PostgreSQL database that ``MINGA_DATABASE_URL`` names (created before, dropped
after; it must be a scratch database of its own).

    from scratch import scratch_node

    with scratch_node() as node:   # Django set up, migrations applied
        print(node.database, node.folder)
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


@dataclass(frozen=True)
class Node:
    url: str
    folder: Path  # the node's var folder, in the temporary folder

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgres://", "postgresql://"))

    @property
    def database(self) -> str:
        return "PostgreSQL" if self.is_postgres else "SQLite"


def _admin_url(url: str) -> tuple[str, str]:
    """The maintenance database's URL and the name of the database to create."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name or name in {"postgres", "template0", "template1"}:
        raise SystemExit(f"MINGA_DATABASE_URL must name a scratch database of its own, not {name!r}")
    return urlunsplit(parts._replace(path="/postgres")), name


def postgres_database(url: str, action: str) -> None:
    """Create (after dropping any left over) or drop the scratch database ``url`` names."""
    import psycopg
    from psycopg import sql

    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if action == "create":
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def postgres_database_exists(url: str) -> bool:
    """Whether the scratch database ``url`` names exists (kept by an earlier run)."""
    import psycopg

    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


@contextmanager
def scratch_node(prefix: str = "minga-bench-", *, sqlite_only: bool = False) -> Iterator[Node]:
    """Point the settings at a fresh database before Django reads them, set Django up and
    migrate; drop the PostgreSQL database on the way out."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        scratch = Path(folder)
        sqlite = f"sqlite:///{scratch / 'bench.sqlite3'}"
        url = sqlite if sqlite_only else os.environ.get("MINGA_DATABASE_URL", "").strip() or sqlite
        os.environ["MINGA_DATABASE_URL"] = url
        os.environ["MINGA_VAR_DIR"] = str(scratch)
        os.environ.setdefault("MINGA_SECRET_KEY", "benchmark-only-secret-key-not-for-any-node")
        os.environ["MINGA_ALLOWED_HOSTS"] = "testserver"
        os.environ["MINGA_DEBUG"] = "false"
        os.environ.setdefault("MINGA_LOG_LEVEL", "WARNING")
        os.environ["DJANGO_SETTINGS_MODULE"] = "minga.settings"
        logging.getLogger("django.request").disabled = True  # a failed page is reported in one line
        node = Node(url, scratch)
        if node.is_postgres:
            postgres_database(url, "create")
        try:
            import django

            django.setup()
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
            yield node
        finally:
            if node.is_postgres:
                from django.db import connections

                connections.close_all()
                postgres_database(url, "drop")
