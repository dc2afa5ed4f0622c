from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from minga.core import services
from minga.core.models import ApiToken, User


class Command(BaseCommand):
    help = "Manage API tokens: create (prints only the token, once), list, revoke."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="issue a token and print it once")
        create.add_argument("--user", required=True)
        create.add_argument(
            "--expires",
            type=int,
            default=None,
            metavar="DAYS",
            help="lifetime in days (default: MINGA_TOKEN_DEFAULT_DAYS)",
        )
        create.add_argument("--name", default="command line")
        listing = actions.add_parser("list", help="list a user's tokens")
        listing.add_argument("--user", required=True)
        revoke = actions.add_parser("revoke", help="revoke a token by its id")
        revoke.add_argument("--id", type=int, required=True, dest="token_id")

    def _user(self, username: str) -> User:
        user = User.objects.filter(username__iexact=username).first()
        if user is None:
            raise CommandError(f"No user is called {username!r}.")
        return user

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            if action == "create":
                issued = services.create_api_token(
                    None,
                    self._user(options["user"]),
                    name=options["name"],
                    expires_in_days=options["expires"],
                )
                self.stdout.write(issued.raw)
            elif action == "list":
                now = timezone.now()
                for token in ApiToken.objects.filter(user=self._user(options["user"])):
                    state = (
                        "revoked" if token.revoked_at else "expired" if token.expires_at <= now else "active"
                    )
                    self.stdout.write(
                        f"{token.pk}\t{token.prefix}…\t{token.name}\t{state}\t"
                        f"expires {token.expires_at:%Y-%m-%d}"
                    )
            elif action == "revoke":
                found = ApiToken.objects.filter(pk=options["token_id"]).first()
                if found is None:
                    raise CommandError(f"No token has id {options['token_id']}.")
                services.revoke_api_token(None, found)
                self.stdout.write(f"Token {found.prefix}… revoked.")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
