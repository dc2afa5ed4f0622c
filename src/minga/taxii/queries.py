"""Read paths of federation for the peers page and the REST API: peers with their sync state
(node admins only), and retractions with their status per node, read through the access
policy like every other object of the intel store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from minga.core import access, audit
from minga.core import services as core_services
from minga.intel import queries as intel_queries
from minga.intel.models import StixObject
from minga.taxii import retraction
from minga.taxii.models import Peer

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from minga.core.models import User

    Reader = User | AnonymousUser | None

MAX_RETRACTIONS = 200  # newest first: the page and the list answer show these


# --- peers (node admins) -------------------------------------------------------------------------


def require_node_admin(user: Reader) -> None:
    """Peers, their sync state and their management are for node admins only."""
    if user is None or not user.is_authenticated or not core_services.is_node_admin(user):  # type: ignore[arg-type]
        raise PermissionDenied(_("Only node admins manage peers."))


def peers(user: Reader) -> QuerySet[Peer]:
    """Every peer, for a node admin."""
    require_node_admin(user)
    return Peer.objects.prefetch_related("hosted_organisations").order_by("name")


def peer_or_404(user: Reader, name: str) -> Peer:
    """One peer by name, for a node admin (else 403); 404 if there is none."""
    found = peers(user).filter(name=name).first()
    if found is None:
        raise Http404
    return found


def state(peer: Peer) -> str:
    """ok, failing (its last attempt failed) or inactive."""
    if not peer.is_active:
        return "inactive"
    return "failing" if peer.failures else "ok"


def lag_seconds(peer: Peer, now: datetime | None = None) -> int | None:
    """Seconds since the last successful sync, or None if it never succeeded."""
    if peer.last_success_at is None:
        return None
    return max(0, int(((now or timezone.now()) - peer.last_success_at).total_seconds()))


def hosts(peer: Peer) -> list[str]:
    return sorted(org.short_name for org in peer.hosted_organisations.all())


# --- retractions -------------------------------------------------------------------------------


def readable_retractions(user: Reader) -> QuerySet[StixObject]:
    """The retraction objects ``user`` may read (the one access policy)."""
    return intel_queries.visible(user).filter(type=retraction.RETRACTION)


def retraction_or_404(user: Reader, retraction_id: str) -> StixObject:
    """A retraction ``user`` may read, else 404: a reader outside its recipients cannot tell it
    from one that does not exist. Reading one marked AMBER or stricter is audited
    (``object.read``), as every such read is."""
    obj = readable_retractions(user).filter(stix_id=retraction_id).order_by("pk").first()
    if obj is None:
        raise Http404
    if obj.tlp in access.AUDITED_READ_LEVELS:
        audit.record("object.read", actor=user, obj=obj, details={"tlp": obj.tlp})  # type: ignore[arg-type]
    return obj


@dataclass
class IssuedRetraction:
    """A retraction issued on this node, as its originator follows it."""

    obj: StixObject
    target: str
    action: str
    reason: str
    new_tlp: str
    new_recipients: list[str]
    states: list[retraction.NodeState] = field(default_factory=list)

    @property
    def retraction_id(self) -> str:
        return self.obj.stix_id

    @property
    def organisation(self) -> str:
        return self.obj.origin_organisation.short_name

    @property
    def issued_at(self) -> datetime:
        return self.obj.date_added

    @property
    def pending(self) -> int:
        return sum(1 for s in self.states if s.outcome == "pending")


def describe(obj: StixObject, *, with_states: bool = True) -> IssuedRetraction:
    body: dict[str, Any] = orjson.loads(obj.raw)
    recipients = body.get("new_recipient_organisations") or []
    return IssuedRetraction(
        obj=obj,
        target=str(body.get("target_ref", "")),
        action=str(body.get("action", "")),
        reason=str(body.get("reason", "")),
        new_tlp=str(body.get("new_tlp", "")),
        new_recipients=[str(name) for name in recipients] if isinstance(recipients, list) else [],
        states=retraction.status(obj.stix_id) if with_states else [],
    )


def issued_here(user: Reader, *, with_states: bool = True) -> list[IssuedRetraction]:
    """Retractions issued on this node that ``user`` may read, newest first, each with its
    status per node."""
    rows = readable_retractions(user).filter(origin_node="").order_by("-date_added", "-pk")
    return [describe(obj, with_states=with_states) for obj in rows[:MAX_RETRACTIONS]]
