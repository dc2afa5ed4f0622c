"""REST endpoints of federation under ``/api/v1/federation``: peers and their sync state (node
admins), and retractions with their status per node (whoever may read the retraction). Every
change goes through ``federation`` or ``retraction``, which check and audit it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Router, Schema, Status
from ninja.params import functions as param

from minga.core import access
from minga.core.api import StrictInput
from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.taxii import federation, peering, queries, retraction
from minga.taxii.models import Direction, Peer, PeerKind

router = Router(tags=["federation"])

PeerName = Annotated[str, param.Path(pattern=r"^[-a-z0-9_]+$", max_length=100, description="The peer's name")]
RetractionId = Annotated[
    str,
    param.Path(pattern=r"^x-minga-retraction--[0-9a-fA-F-]{36}$", description="x-minga-retraction--UUID"),
]
ShortNameText = Annotated[str, Field(max_length=40, pattern=r"^[-a-zA-Z0-9_]+$")]
StixIdText = Annotated[str, Field(max_length=300, pattern=r"^[a-z0-9][a-z0-9-]*--[0-9a-fA-F-]{36}$")]


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


# --- schemas ---------------------------------------------------------------------------------


class PeerOut(Schema):
    """A peer and its sync state. The credential this node presents to it is never shown."""

    name: str
    kind: PeerKind
    direction: Direction
    url: str
    hosts: list[str]
    member_node: bool = Field(..., alias="is_member_node")
    interval: int = Field(..., description="Seconds between syncs")
    has_credential: bool = Field(..., description="Whether this node holds a token for the peer")
    state: Literal["ok", "failing", "inactive"]
    last_success: datetime | None = Field(..., alias="last_success_at")
    last_attempt: datetime | None = Field(..., alias="last_attempt_at")
    next_attempt: datetime | None = Field(..., alias="next_attempt_at")
    lag_seconds: int | None = Field(..., description="Seconds since the last successful sync")
    failures: int = Field(..., description="Failed attempts in a row")
    last_error: str
    pulled: int
    pushed: int
    refused: int = Field(..., alias="rejected")

    @staticmethod
    def resolve_hosts(peer: Peer) -> list[str]:
        return queries.hosts(peer)

    @staticmethod
    def resolve_has_credential(peer: Peer) -> bool:
        return bool(peer.credential)

    @staticmethod
    def resolve_state(peer: Peer) -> str:
        return queries.state(peer)

    @staticmethod
    def resolve_lag_seconds(peer: Peer) -> int | None:
        return queries.lag_seconds(peer)


class PeerCreated(PeerOut):
    token: str = Field(
        ..., description="The token the peer's node presents here: give it to its operator. Shown once."
    )


class PeerIn(StrictInput):
    name: str = Field(..., max_length=100, description="The peer's node id (its MINGA_NODE_ID)")
    url: str = Field(..., max_length=500, description="The peer's TAXII API root")
    kind: PeerKind = PeerKind.MINGA
    direction: Direction = Direction.BOTH
    hosts: list[ShortNameText] = Field(
        default_factory=list, max_length=1000, description="Short names of the organisations it hosts"
    )
    token: str = Field("", max_length=500, description="The token the peer issued for this node, if known")
    username: str = Field("", max_length=150, description="Send the token as HTTP Basic password")
    collection_id: str = Field("", max_length=100, description="A foreign server's collection")
    organisation: ShortNameText | Literal[""] = Field(
        "", description="Foreign server: store its objects in this organisation's name"
    )
    default_tlp: TLP = Field(TLP.AMBER, description="Foreign server: TLP of its unmarked objects")
    interval: int = Field(300, ge=10, le=86400, description="Seconds between syncs")
    member_node: bool = Field(True, description="Member nodes receive TLP:GREEN; others only CLEAR")


class CredentialIn(StrictInput):
    token: str = Field(
        ..., min_length=1, max_length=500, description="The token the peer issued for this node"
    )
    username: str = Field("", max_length=150)


class Message(Schema):
    detail: str


class SyncQueued(Schema):
    detail: str
    task_id: str


class RetractionIn(StrictInput):
    stix_id: StixIdText
    organisation: ShortNameText = Field(..., description="The organisation that shared the object")
    action: Literal["revoke", "delete", "narrow"]
    tlp: TLP | Literal[""] = Field("", description="narrow: the new TLP level")
    recipients: list[ShortNameText] = Field(
        default_factory=list, max_length=1000, description="narrow: the recipient organisations that stay"
    )
    reason: str = Field("", max_length=1000)


class RetractionIssued(Schema):
    retraction_id: str
    copies_here: int = Field(..., description="Versions changed on this node")


class NodeStateOut(Schema):
    node: str
    outcome: str = Field(..., description="applied, nothing held, refused or pending")
    at: datetime | None


class RetractionOut(Schema):
    retraction_id: str
    object: str = Field(..., alias="target")
    organisation: str
    action: str
    new_tlp: str
    new_recipients: list[str]
    reason: str
    issued_at: datetime
    nodes: list[NodeStateOut] = Field(..., alias="states")


# --- peers -----------------------------------------------------------------------------------


@router.get("/peers", response=list[PeerOut])
def list_peers(request: HttpRequest) -> list[Peer]:
    """Every peer with its sync state (node admins)."""
    return list(queries.peers(request.user))


@router.post("/peers", response={201: PeerCreated})
def add_peer(request: HttpRequest, payload: PeerIn) -> Status:
    """Register a peer (node admins). The answer carries, once, the token the peer's node
    presents here: give it to the peer's operator."""
    queries.require_node_admin(request.user)
    new = federation.add_peer(
        _user(request),
        name=payload.name,
        url=peering.check_url(payload.url),
        kind=payload.kind,
        direction=payload.direction,
        hosts=payload.hosts,
        credential=payload.token,
        username=payload.username,
        collection_id=payload.collection_id,
        interval=payload.interval,
        organisation=payload.organisation,
        default_tlp=payload.default_tlp,
        is_member_node=payload.member_node,
    )
    setattr(new.peer, "token", new.token)  # noqa: B010  (this answer only; never stored)
    return Status(201, new.peer)


@router.get("/peers/{name}", response=PeerOut)
def get_peer(request: HttpRequest, name: PeerName) -> Peer:
    """One peer with its sync state (node admins)."""
    return queries.peer_or_404(request.user, name)


@router.delete("/peers/{name}", response={204: None})
def remove_peer(request: HttpRequest, name: PeerName) -> Status:
    """Stop exchanging with a peer: its account here is disabled and its tokens revoked (node
    admins)."""
    federation.remove_peer(_user(request), queries.peer_or_404(request.user, name))
    return Status(204, None)


@router.post("/peers/{name}/token", response=PeerOut)
def set_token(request: HttpRequest, name: PeerName, payload: CredentialIn) -> Peer:
    """Keep (sealed) the token the peer issued for this node (node admins)."""
    peer = queries.peer_or_404(request.user, name)
    return federation.set_credential(_user(request), peer, payload.token, payload.username)


@router.post("/peers/{name}/sync", response={202: SyncQueued})
def sync_peer(request: HttpRequest, name: PeerName) -> Status:
    """Queue a sync of the peer now (node admins); ``minga worker`` runs it."""
    peer = queries.peer_or_404(request.user, name)
    task_id = peering.request_sync(_user(request), peer)
    return Status(202, {"detail": _("Sync of %(name)s queued.") % {"name": peer.name}, "task_id": task_id})


# --- retractions -----------------------------------------------------------------------------


def _organisations(user: User, short_names: list[str], field: str) -> list[Organisation]:
    found = {
        o.short_name: o for o in access.organisations_visible_to(user).filter(short_name__in=short_names)
    }
    unknown = sorted(set(short_names) - set(found))
    if unknown:
        raise ValidationError(
            {field: _("No organisation is called %(names)s.") % {"names": ", ".join(unknown)}}
        )
    return [found[name] for name in dict.fromkeys(short_names)]


@router.post("/retractions", response={201: RetractionIssued})
def issue_retraction(request: HttpRequest, payload: RetractionIn) -> Status:
    """Retract an object an organisation shared on this node (revoke, delete, or narrow its TLP
    or recipients), here and on every node that received it. Whoever may import in the
    organisation's name."""
    user = _user(request)
    (organisation,) = _organisations(user, [payload.organisation], "organisation")
    issued = retraction.retract(
        user,
        organisation,
        payload.stix_id,
        payload.action,
        tlp=payload.tlp,
        recipients=_organisations(user, payload.recipients, "recipients"),
        reason=payload.reason,
    )
    return Status(201, {"retraction_id": issued.retraction_id, "copies_here": issued.copies_here})


@router.get("/retractions", response=list[RetractionOut])
def list_retractions(request: HttpRequest) -> list[queries.IssuedRetraction]:
    """Retractions issued on this node that the caller may read, newest first (at most 200),
    each with its status per node."""
    return queries.issued_here(request.user)


@router.get("/retractions/{retraction_id}", response=RetractionOut)
def get_retraction(request: HttpRequest, retraction_id: RetractionId) -> queries.IssuedRetraction:
    """A retraction the caller may read, with, per node, whether it was applied, held nothing,
    was refused, or is pending."""
    return queries.describe(queries.retraction_or_404(request.user, retraction_id))
