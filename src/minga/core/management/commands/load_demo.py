from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand

from minga.core import demo


class Command(BaseCommand):
    help = "Load the demo network: fictional organisations and users, clearly labelled as demo data."

    def handle(self, *args: Any, **options: Any) -> None:
        credentials = demo.load()
        # Each capability adds its own demo data on top of the core network.
        for config in apps.get_app_configs():
            loader = getattr(config, "load_demo", None)
            if callable(loader):
                loader()
        self.stdout.write(self.style.SUCCESS("Demo network loaded (fictional organisations and users)."))
        self.stdout.write(f"Demo admin login: {credentials.username} / {credentials.password}")
        self.stdout.write("Other demo accounts (same password): " + ", ".join(u[0] for u in demo.USERS[1:]))
