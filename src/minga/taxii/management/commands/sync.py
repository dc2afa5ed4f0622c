"""``minga sync [PEER]``: exchange with peers now, here, rather than on the schedule."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from minga.taxii import federation
from minga.taxii.models import Peer


class Command(BaseCommand):
    help = "Pull from and push to one peer, or every active peer, now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("peer", nargs="?", help="the peer's name (default: every active peer)")

    def handle(self, *args: Any, peer: str | None = None, **options: Any) -> None:
        peers = Peer.objects.filter(is_active=True)
        if peer:
            peers = peers.filter(name=peer)
            if not peers:
                raise CommandError(f"No active peer is called {peer!r}. `minga peer list` shows them.")
        failed = 0
        for found in peers:
            outcome = federation.sync(found)
            if outcome.skipped:
                self.stdout.write(f"{found.name}: a sync is running already elsewhere; skipped.")
            elif outcome.error:
                failed += 1
                self.stderr.write(f"{found.name}: failed: {outcome.error}")
            else:
                self.stdout.write(f"{found.name}: pulled {outcome.pulled}, pushed {outcome.pushed}.")
        if failed:
            raise CommandError(f"{failed} peer(s) failed; the schedule retries them with backoff.")
