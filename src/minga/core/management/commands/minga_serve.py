import os
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the web server: gunicorn serving Minga's WSGI application."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=settings.MINGA_LISTEN, help="HOST:PORT to listen on")
        parser.add_argument("--workers", type=int, default=settings.MINGA_WEB_WORKERS)

    def handle(self, *args: Any, bind: str, workers: int, **options: Any) -> None:
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "minga.wsgi:application",
            "--bind",
            bind,
            "--workers",
            str(max(1, workers)),
            "--access-logfile",
            "-",
            "--graceful-timeout",
            "10",
            "--forwarded-allow-ips",
            ",".join(settings.MINGA_TRUSTED_PROXIES),
        ]
        sys.stdout.flush()
        os.execv(sys.executable, argv)  # noqa: S606  (fixed argv, no shell)
