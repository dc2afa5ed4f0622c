"""``minga up``: one command that brings a node up and keeps it up."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

RESTART_LIMIT = 5  # restarts of one process within RESTART_WINDOW before giving up
RESTART_WINDOW = 60.0
STOP_TIMEOUT = 15.0


class Supervisor:
    """Runs the web server and the worker as children and restarts one that dies; on Ctrl-C or
    SIGTERM it stops both and waits for them."""

    def __init__(self, commands: dict[str, list[str]], out: Any) -> None:
        self.commands = commands
        self.out = out
        self.children: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, list[float]] = {name: [] for name in commands}
        self.stopping = False

    def start(self, name: str) -> None:
        # A new session: Ctrl-C reaches only the supervisor, which then stops children in order.
        self.children[name] = subprocess.Popen(  # noqa: S603  (our own fixed commands)
            self.commands[name], start_new_session=True
        )

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        for name in self.commands:
            self.start(name)
        exit_code = 0
        while not self.stopping:
            time.sleep(0.5)
            for name, child in list(self.children.items()):
                code = child.poll()
                if code is None or self.stopping:
                    continue
                now = time.monotonic()
                recent = [t for t in self.restarts[name] if now - t < RESTART_WINDOW]
                if len(recent) >= RESTART_LIMIT:
                    self.out.write(f"{name} keeps failing (exit code {code}); stopping the node.")
                    self.stopping, exit_code = True, 1
                    break
                self.out.write(f"{name} exited with code {code}; restarting it.")
                self.restarts[name] = [*recent, now]
                self.start(name)
        self.stop_all()
        return exit_code

    def stop_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, child in self.children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.out.write(f"{name} did not stop in time; killing it.")
                child.kill()
                child.wait()


class Command(BaseCommand):
    help = "Migrate the database, optionally load the demo network, then run web server and worker."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--demo", action="store_true", help="load the demo network first")
        parser.add_argument("--bind", default=settings.MINGA_LISTEN, help="HOST:PORT to listen on")

    def handle(self, *args: Any, demo: bool, bind: str, **options: Any) -> None:
        self.stdout.write("Preparing the database…")
        call_command("migrate", interactive=False, verbosity=0)
        if demo:
            call_command("load_demo", stdout=self.stdout)
        host, _, port = bind.rpartition(":")
        shown_host = "localhost" if host in ("127.0.0.1", "0.0.0.0", "") else host  # noqa: S104
        self.stdout.write(self.style.SUCCESS(f"Minga is starting at http://{shown_host}:{port}/"))
        self.stdout.write("Press Ctrl-C to stop the web server and the worker.")
        minga = [sys.executable, "-m", "minga"]
        supervisor = Supervisor(
            {"web": [*minga, "serve", "--bind", bind], "worker": [*minga, "worker"]}, self.stdout
        )
        code = supervisor.run()
        self.stdout.write("Minga stopped.")
        if code:
            sys.exit(code)
