"""The ``minga`` command: one entry point for operators, wrapping Django management commands."""

from __future__ import annotations

import os
import sys

COMMANDS = {
    "up": ("minga_up", "migrate, optionally load the demo network, run web + worker together"),
    "serve": ("minga_serve", "run the web server (gunicorn)"),
    "worker": ("minga_worker", "run a background worker"),
    "check": ("minga_check", "report configuration and database problems in plain words"),
    "createadmin": ("createadmin", "create a node admin (and their organisation)"),
    "token": ("token", "create, list or revoke API tokens"),
    "audit": ("audit", "verify the audit log's hash chain"),
    "demo": ("load_demo", "load the demo network (fictional organisations and users)"),
    "directory": ("directory", "export or import constituencies (CSV, JSON)"),
    "intel": ("intel", "import STIX bundles, MISP events or CSV indicators into the intelligence store"),
    "feed": ("feed", "register, change, list and show feeds; re-process dead letters; purge expired events"),
    "peer": ("peer", "register, list and remove peer nodes (federation over TAXII 2.1)"),
    "sync": ("sync", "pull from and push to peers now"),
    "retraction": (
        "retraction",
        "retract a shared object everywhere it went; follow each node's acknowledgement",
    ),
    "ingest": ("ingest", "ingest a file of a feed (processed here with a progress bar, or queued)"),
    "evidence": ("evidence", "register, list and verify evidence (files hashed again, custody checked)"),
    "assistance": ("assistance", "show or set the deadlines per priority; escalate overdue requests now"),
}

USAGE = (
    "usage: minga COMMAND [options]\n\ncommands:\n"
    + "\n".join(f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items())
    + "\n  manage       any Django management command, e.g. `minga manage migrate`\n\n"
    "`minga COMMAND --help` describes a command's options."
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "minga.settings")
    if not args or args[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0
    name, rest = args[0], args[1:]
    if name != "manage" and name not in COMMANDS:
        print(f"minga: unknown command {name!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        import django

        django.setup()
    except Exception as exc:  # a bad MINGA_* value: say which, not a traceback
        print(f"minga: the configuration is not valid: {exc}", file=sys.stderr)
        return 2
    from django.core.management import ManagementUtility, execute_from_command_line

    if name == "manage":
        execute_from_command_line(["minga manage", *rest])
        return 0
    # Run the Django command under its public name, so its help reads "usage: minga up ...".
    from django.db import DatabaseError

    command = ManagementUtility(["minga"]).fetch_command(COMMANDS[name][0])
    try:
        command.run_from_argv(["minga", name, *rest])
    except DatabaseError as exc:
        print(
            f"minga: the database refused the operation: {str(exc).strip()}\n"
            "Is it reachable and migrated? `minga check` tells; `minga manage migrate` (or `minga up`) "
            "brings the schema up to date.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
