import getpass
import os
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.text import slugify

from minga.core import services
from minga.core.choices import Role
from minga.core.models import Organisation, User


class Command(BaseCommand):
    help = (
        "Create a node admin. The password comes from MINGA_ADMIN_PASSWORD, else a prompt. "
        "The organisation is created if it does not exist."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument("--email", required=True)
        parser.add_argument("--organisation", required=True, help="name or short name")
        parser.add_argument("--short-name", help="short name of a new organisation (default: from its name)")

    def _password(self) -> str:
        password = os.environ.get("MINGA_ADMIN_PASSWORD", "")
        if password:
            return password
        if not self.stdin_is_tty():
            raise CommandError("Set MINGA_ADMIN_PASSWORD, or run this in a terminal to be asked.")
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("The two passwords differ.")
        return first

    @staticmethod
    def stdin_is_tty() -> bool:
        import sys

        return sys.stdin is not None and sys.stdin.isatty()

    def handle(
        self, *args: Any, username: str, email: str, organisation: str, short_name: str | None, **options: Any
    ) -> None:
        if User.objects.filter(username__iexact=username).exists():
            raise CommandError(f"A user called {username!r} already exists.")
        password = self._password()
        try:
            with transaction.atomic():
                org = (
                    Organisation.objects.filter(name__iexact=organisation).first()
                    or Organisation.objects.filter(short_name__iexact=organisation).first()
                )
                if org is None:
                    org = services.create_organisation(
                        None, name=organisation, short_name=short_name or slugify(organisation)[:40]
                    )
                    self.stdout.write(f"Created organisation {org.name} ({org.short_name}).")
                user = services.create_user(
                    None,
                    username=username,
                    email=email,
                    password=password,
                    organisation=org,
                    role=Role.NODE_ADMIN,
                )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(self.style.SUCCESS(f"Node admin {user.username} created in {org.name}."))
