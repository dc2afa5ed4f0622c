"""``minga peer``: register, list and remove the nodes this node federates with."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from minga.taxii import federation
from minga.taxii.models import Direction, Peer, PeerKind


class Command(BaseCommand):
    help = (
        "Manage peers: add (prints, once, the token the peer's operator gives their node), "
        "set-token (the token the peer issued for this node), list, remove."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="register a peer node or a foreign TAXII server")
        add.add_argument("name", help="the peer's node id (its MINGA_NODE_ID), e.g. csirt-ar")
        add.add_argument(
            "--url", required=True, help="the peer's TAXII API root, e.g. https://minga.example/taxii2/api/"
        )
        add.add_argument("--kind", choices=PeerKind.values, default=PeerKind.MINGA)
        add.add_argument("--direction", choices=Direction.values, default=Direction.BOTH)
        add.add_argument(
            "--hosts", default="", help="short names of the organisations it hosts, comma-separated"
        )
        add.add_argument(
            "--token", default="", help="the token the peer issued for this node (or set-token later)"
        )
        add.add_argument(
            "--username", default="", help="send the token as HTTP Basic password with this user"
        )
        add.add_argument("--collection", default="", help="a foreign server's collection id")
        add.add_argument(
            "--organisation", default="", help="foreign server: store its objects in this organisation's name"
        )
        add.add_argument("--tlp", default="amber", help="foreign server: TLP of its unmarked objects")
        add.add_argument("--interval", type=int, default=300, help="seconds between syncs (default 300)")
        add.add_argument(
            "--not-member", action="store_true", help="not a member node: it receives TLP:CLEAR only"
        )
        token = actions.add_parser("set-token", help="keep the token the peer issued for this node")
        token.add_argument("name")
        token.add_argument("token")
        token.add_argument("--username", default="")
        actions.add_parser("list", help="list peers and their sync state")
        remove = actions.add_parser("remove", help="stop exchanging with a peer and revoke its access")
        remove.add_argument("name")

    def _peer(self, name: str) -> Peer:
        peer = Peer.objects.filter(name=name).first()
        if peer is None:
            raise CommandError(f"No peer is called {name!r}. `minga peer list` shows them.")
        return peer

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            if action == "add":
                new = federation.add_peer(
                    None,
                    name=options["name"],
                    url=options["url"],
                    kind=options["kind"],
                    direction=options["direction"],
                    hosts=options["hosts"].split(","),
                    credential=options["token"],
                    username=options["username"],
                    collection_id=options["collection"],
                    interval=options["interval"],
                    organisation=options["organisation"],
                    default_tlp=options["tlp"],
                    is_member_node=not options["not_member"],
                )
                self.stderr.write(
                    f"Peer {new.peer.name} added. Give its operator this token for this node (shown once):"
                )
                self.stdout.write(new.token)
            elif action == "set-token":
                peer = federation.set_credential(
                    None, self._peer(options["name"]), options["token"], options["username"]
                )
                self.stdout.write(f"Token for {peer.name} kept (sealed).")
            elif action == "list":
                self._list()
            elif action == "remove":
                peer = self._peer(options["name"])
                federation.remove_peer(None, peer)
                self.stdout.write(f"Peer {options['name']} removed; its account here is disabled.")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc

    def _list(self) -> None:
        now = timezone.now()
        peers = Peer.objects.prefetch_related("hosted_organisations")
        if not peers:
            self.stdout.write("No peers. `minga peer add NAME --url URL` registers one.")
        for peer in peers:
            hosts = ",".join(org.short_name for org in peer.hosted_organisations.all()) or "-"
            last = f"{peer.last_success_at:%Y-%m-%d %H:%M:%S}" if peer.last_success_at else "never"
            state = "inactive" if not peer.is_active else ("failing" if peer.failures else "ok")
            due = (
                "now"
                if peer.next_attempt_at is None or peer.next_attempt_at <= now
                else f"{peer.next_attempt_at:%H:%M:%S}"
            )
            self.stdout.write(
                f"{peer.name}\t{peer.kind}\t{peer.direction}\t{peer.url}\thosts {hosts}\t{state}\t"
                f"last sync {last}\tnext {due}\tpulled {peer.pulled}\tpushed {peer.pushed}"
                + (f"\terror: {peer.last_error}" if peer.last_error else "")
            )
