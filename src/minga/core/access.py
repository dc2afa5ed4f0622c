"""The one access policy of the node: TLP 2.0 with recipient organisations and users.

Every read path (UI, REST, TAXII, exports, search, statistics, notifications, federation)
asks here, through ``restrict`` (a queryset filter) or ``can_read`` (an object check). The two
are written independently and property-based tests prove that they agree.

Who may read an object of each level:

* CLEAR: anyone, anonymous visitors included.
* GREEN: every active member of an organisation that is a member of the network.
* AMBER, AMBER+STRICT: active members of the originating organisation and of the named
  recipient organisations, and the named recipient users. (STRICT matters for federation:
  it is never re-shared beyond the named organisations' nodes.)
* RED: the named recipient users only. Services that create RED objects name their author.

Nothing else is readable: an unknown level, an inactive user or an inactive membership
admits no one. Node admins get no exception; they manage the node, not the content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Exists, Model, OuterRef, Q, QuerySet
from django.http import Http404

from minga.core import audit
from minga.core.choices import TLP
from minga.core.models import Membership, Organisation, User

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from minga.core.models import SharedObject

AMBER_LEVELS = (TLP.AMBER, TLP.AMBER_STRICT)
NAMED_USER_LEVELS = (TLP.AMBER, TLP.AMBER_STRICT, TLP.RED)
AUDITED_READ_LEVELS = NAMED_USER_LEVELS

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Reader:
    """What the policy needs to know about a reader, read once per request."""

    user_id: int | None
    organisation_ids: frozenset[int]
    is_network_member: bool

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None


ANONYMOUS = Reader(user_id=None, organisation_ids=frozenset(), is_network_member=False)


def organisation_reader(organisation: Organisation) -> Reader:
    """The organisation itself as a reader: what any active member of it reads by being a
    member, and no more (no user row has id 0, so none is named on an object). Digests read
    as the organisation they are for, whoever receives them."""
    return Reader(
        user_id=0,
        organisation_ids=frozenset({organisation.pk}),
        is_network_member=organisation.is_network_member,
    )


def reader_for(user: User | AnonymousUser | Reader | None) -> Reader:
    """The reader ``user`` is (a ``Reader`` is one already), read once per request."""
    if isinstance(user, Reader):
        return user
    if user is None or not user.is_authenticated or not user.is_active:
        return ANONYMOUS
    cached = getattr(user, "_minga_reader", None)
    if cached is not None:
        return cached
    rows = Membership.objects.filter(user_id=user.pk, is_active=True).values_list(
        "organisation_id", "organisation__is_network_member"
    )
    organisation_ids = frozenset(org_id for org_id, _ in rows)
    reader = Reader(
        user_id=user.pk,
        organisation_ids=organisation_ids,
        is_network_member=any(member for _, member in rows),
    )
    setattr(user, "_minga_reader", reader)  # noqa: B010  (per-request cache on the user)
    return reader


def visibility_filter(model: Any, user: User | AnonymousUser | None) -> Q:
    """The ``Q`` that admits exactly the objects of ``model`` that ``user`` may read."""
    reader = reader_for(user)
    admitted = Q(tlp=TLP.CLEAR)
    if not reader.is_authenticated:
        return admitted
    if reader.is_network_member:
        admitted |= Q(tlp=TLP.GREEN)
    # Correlated EXISTS rather than joins (a join through the recipient tables would repeat
    # rows) or ``pk IN (subquery)`` (which both databases may evaluate over the whole recipient
    # table before filtering: 28 ms against 1.6 ms per correlation on PostgreSQL).
    if reader.organisation_ids:
        org_through = model.recipient_organisations.through
        org_fk = model.recipient_organisations.field.m2m_field_name()
        named_orgs = org_through.objects.filter(
            **{f"{org_fk}_id": OuterRef("pk")}, organisation_id__in=reader.organisation_ids
        )
        admitted |= Q(tlp__in=AMBER_LEVELS) & (
            Q(origin_organisation_id__in=reader.organisation_ids) | Q(Exists(named_orgs))
        )
    user_through = model.recipient_users.through
    user_fk = model.recipient_users.field.m2m_field_name()
    named_users = user_through.objects.filter(**{f"{user_fk}_id": OuterRef("pk")}, user_id=reader.user_id)
    admitted |= Q(tlp__in=NAMED_USER_LEVELS) & Q(Exists(named_users))
    return admitted


def restrict(queryset: QuerySet[Any], user: User | AnonymousUser | None) -> QuerySet[Any]:
    """Narrow ``queryset`` (of a ``SharedObject`` model) to what ``user`` may read."""
    return queryset.filter(visibility_filter(queryset.model, user))


def can_read(user: User | AnonymousUser | None, obj: SharedObject) -> bool:
    """The object check: may ``user`` read ``obj``?"""
    if obj.tlp == TLP.CLEAR:
        return True
    reader = reader_for(user)
    if not reader.is_authenticated:
        return False
    if obj.tlp == TLP.GREEN:
        return reader.is_network_member
    if obj.tlp not in NAMED_USER_LEVELS:
        return False
    if obj.recipient_users.filter(pk=reader.user_id or 0).exists():
        return True
    if obj.tlp == TLP.RED:
        return False
    if obj.origin_organisation_id in reader.organisation_ids:  # type: ignore[attr-defined]
        return True
    return obj.recipient_organisations.filter(pk__in=reader.organisation_ids).exists()


def get_readable_or_404(queryset: QuerySet[M], user: User | AnonymousUser | None, **lookup: Any) -> M:
    """One object that ``user`` may read, else 404: a reader outside the policy cannot tell a
    hidden object from a missing one. Reading a TLP:AMBER, AMBER+STRICT or RED object is
    audited (``object.read``)."""
    try:
        obj = restrict(queryset, user).get(**lookup)
    except ObjectDoesNotExist as exc:
        raise Http404 from exc
    if getattr(obj, "tlp", None) in AUDITED_READ_LEVELS:
        audit.record("object.read", actor=user, obj=obj, details={"tlp": obj.tlp})  # type: ignore[attr-defined]
    return obj


def organisations_visible_to(user: User | AnonymousUser | None) -> QuerySet[Organisation]:
    """The directory of organisations is network-internal: active members of any organisation
    of the node read it; anonymous visitors and users without a membership read nothing."""
    return Organisation.objects.filter(organisation_filter(user, "pk"))


def organisation_filter(user: User | AnonymousUser | None, field: str = "organisation") -> Q:
    """The ``Q`` that admits the rows whose ``field`` (an organisation, or a path to one) is an
    organisation ``user`` may see: the rule of ``organisations_visible_to``, for the directory's
    other tables. It is a condition, not ``field__in=<every organisation>``: SQLite probes such a
    subquery once per row, which made counting and listing the network's 20,000 contacts 4 to 18
    times slower (benchmarks/directory_pages.py)."""
    if not reader_for(user).organisation_ids:
        return Q(**{f"{field}__in": []})
    return Q()


def users_visible_to(user: User) -> QuerySet[User]:
    """Accounts: node admins see every one; others see the people of their own organisations."""
    if user.is_node_admin:
        return User.objects.all()
    organisation_ids = user.memberships.filter(is_active=True).values("organisation_id")
    return User.objects.filter(
        memberships__organisation_id__in=organisation_ids, memberships__is_active=True
    ).distinct()


# --- exchanges between named organisations ---------------------------------------------------
# Some objects carry no TLP: they are exchanged between parties named on the object (an
# assistance request's requesting and requested organisations). Their content is for those
# parties' active members only; the network's coordinators may see that they exist.


def party_filter(user: User | AnonymousUser | None, *fields: str) -> Q:
    """The ``Q`` that admits the rows one of whose ``fields`` (foreign keys to an organisation)
    names an organisation in which ``user`` has an active membership; nothing for anyone else."""
    reader = reader_for(user)
    if not reader.organisation_ids or not fields:
        return Q(pk__in=[])
    admitted = Q()
    for field in fields:
        admitted |= Q(**{f"{field}_id__in": reader.organisation_ids})
    return admitted


def is_party(user: User | AnonymousUser | None, obj: Model, *fields: str) -> bool:
    """The object check of ``party_filter``: does one of ``fields`` name an organisation of ``user``?"""
    organisation_ids = reader_for(user).organisation_ids
    return any(getattr(obj, f"{field}_id") in organisation_ids for field in fields)


def is_network_coordinator(user: User | AnonymousUser | None) -> bool:
    """The network's coordinators (the secretariat) are the node admins. They see that exchanges
    between parties happen, and their timings (metadata), never their content."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return bool(user.is_node_admin)  # type: ignore[union-attr]


# --- federation: what may leave this node for a peer node ------------------------------------
# The distribution rule of TLP 2.0 as the network uses it, for objects that carry provenance
# (``origin_node``, ``received_from``: blank when shared on this node):
#
# * CLEAR: to every peer. GREEN: to every member node of the network.
# * AMBER: to the nodes that host the originating organisation or a named recipient.
# * AMBER+STRICT: as AMBER, and only from the node where it was shared: never onward.
# * RED: never automatically.
#
# Nothing goes back to the node it came from, or to the node where it was first shared: this,
# with versions kept per origin, keeps a ring of nodes free of loops.


@dataclass(frozen=True)
class PeerNode:
    """What the distribution rule needs to know about a peer node."""

    node_id: str
    hosted_organisation_ids: frozenset[int]
    is_member_node: bool = True


def distribution_filter(model: Any, peer: PeerNode) -> Q:
    """The ``Q`` that admits exactly the objects of ``model`` this node may send to ``peer``."""
    admitted = Q(tlp=TLP.CLEAR)
    if peer.is_member_node:
        admitted |= Q(tlp=TLP.GREEN)
    if peer.hosted_organisation_ids:
        org_through = model.recipient_organisations.through
        org_fk = model.recipient_organisations.field.m2m_field_name()
        hosted_recipient = org_through.objects.filter(
            **{f"{org_fk}_id": OuterRef("pk")}, organisation_id__in=peer.hosted_organisation_ids
        )
        concerned = Q(origin_organisation_id__in=peer.hosted_organisation_ids) | Q(Exists(hosted_recipient))
        admitted |= Q(tlp=TLP.AMBER) & concerned
        admitted |= Q(tlp=TLP.AMBER_STRICT, origin_node="", received_from="") & concerned
    return admitted & ~Q(origin_node=peer.node_id) & ~Q(received_from=peer.node_id)


def may_distribute(obj: Any, peer: PeerNode) -> bool:
    """The object check of ``distribution_filter``: may ``obj`` be sent to ``peer``?"""
    if peer.node_id in (obj.origin_node, obj.received_from):
        return False
    if obj.tlp == TLP.CLEAR:
        return True
    if obj.tlp == TLP.GREEN:
        return peer.is_member_node
    if obj.tlp not in AMBER_LEVELS or not peer.hosted_organisation_ids:
        return False
    if obj.tlp == TLP.AMBER_STRICT and (obj.origin_node or obj.received_from):
        return False
    if obj.origin_organisation_id in peer.hosted_organisation_ids:
        return True
    return obj.recipient_organisations.filter(pk__in=peer.hosted_organisation_ids).exists()
