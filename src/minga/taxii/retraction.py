"""Retraction that reaches every copy: revoking, deleting or narrowing (TLP or recipients)
an object that was shared, on this node and on every node that received it.

A retraction travels as a STIX custom object (``x-minga-retraction``) through the same
federation as any object, marked with the TLP and recipients the object had **before** the
retraction: the distribution rule then carries it to exactly the nodes that may have received
a copy (and, for a node that was down, at its next sync: the retraction waits in the store like
any object). Each node that receives it applies it to its copies of the object from the same
organisation and origin node, then records an acknowledgement (``x-minga-retraction-ack``),
TLP:GREEN and naming only the retraction, which federation carries back to the originator, by
way of other nodes if need be. The originator's page lists, node by node, the acknowledgements
against the peers the retraction concerns.

Only the organisation that shared an object retracts it, on the node where it was shared; a
retraction that claims another organisation's or another node's copies is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from minga.core import access, audit
from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.intel import services as intel_services
from minga.intel import stix
from minga.intel.convert import timestamp
from minga.intel.models import StixObject
from minga.taxii import federation
from minga.taxii.models import Peer, PeerKind
from minga.taxii.services import NAMESPACE

RETRACTION = "x-minga-retraction"
ACK = "x-minga-retraction-ack"
ACTIONS = ("revoke", "delete", "narrow")


def _broadest(levels: Sequence[str]) -> str:
    return min(levels, key=stix.TLP_ORDER.index)


@dataclass
class Issued:
    retraction_id: str
    copies_here: int


def retract(
    actor: User | None,
    organisation: Organisation,
    stix_id: str,
    action: str,
    *,
    tlp: str = "",
    recipients: Sequence[Organisation] = (),
    reason: str = "",
) -> Issued:
    """Retract what ``organisation`` shared of ``stix_id`` on this node: ``revoke`` (a revoked
    version), ``delete`` (every version), or ``narrow`` to ``tlp`` and ``recipients`` (no
    broader than before). Applied here at once, then carried to every node concerned. Callable
    by whoever may import in the organisation's name. Audited (``federation.retraction_issued``)."""
    if not intel_services.may_import(actor, organisation):
        raise PermissionDenied(
            _("Only analysts and admins of %(organisation)s may retract what it shared.")
            % {"organisation": organisation.name}
        )
    if action not in ACTIONS:
        raise ValidationError({"action": _("A retraction revokes, deletes or narrows.")})
    rows = StixObject.objects.filter(
        stix_id=stix_id, origin_organisation=organisation, origin_node="", received_from=""
    )
    versions = list(rows.prefetch_related("recipient_organisations").order_by("modified", "pk"))
    if not versions:
        raise ValidationError(
            {
                "stix_id": _("%(organisation)s shared no object with this id on this node.")
                % {"organisation": organisation.name}
            }
        )
    old_tlp = _broadest([v.tlp for v in versions])
    old_recipients = sorted(
        {org for v in versions for org in v.recipient_organisations.all()}, key=lambda org: org.short_name
    )
    if old_tlp == TLP.RED:
        raise ValidationError(
            {"stix_id": _("TLP:RED never left this node: change it here, nothing to retract.")}
        )
    recipients = list(dict.fromkeys(recipients))
    if action == "narrow":
        _check_narrower(old_tlp, old_recipients, tlp, recipients)
    retraction: dict[str, Any] = {
        "type": RETRACTION,
        "spec_version": "2.1",
        "id": f"{RETRACTION}--{uuid.uuid4()}",
        "created": timestamp(timezone.now()),
        "modified": timestamp(timezone.now()),
        "name": f"{action} {stix_id}",
        "target_ref": stix_id,
        "action": action,
        "reason": reason[:1000],
    }
    if action == "narrow":
        retraction["new_tlp"] = tlp
        retraction["new_recipient_organisations"] = [org.short_name for org in recipients]
    with transaction.atomic():
        copies = _apply_here(actor, organisation, stix_id, action, tlp, recipients, origin_node="")
        marked = stix.with_tlp_marking(retraction, old_tlp)
        result = intel_services.import_objects(
            actor, organisation, [(0, marked)], old_tlp, old_recipients, fmt="stix", source="retraction"
        )
        if result.accepted != 1:
            raise ValidationError(
                " ".join(r.reason for r in result.rejections) or _("The retraction was not stored.")
            )
        audit.record(
            "federation.retraction_issued",
            actor=actor,
            organisation=organisation,
            details={
                "retraction": retraction["id"],
                "object": stix_id,
                "action": action,
                "tlp": tlp,
                "recipients": [org.short_name for org in recipients],
                "copies_here": copies,
            },
        )
    return Issued(retraction["id"], copies)


def _check_narrower(
    old_tlp: str,
    old: Sequence[Organisation],
    tlp: str,
    recipients: Sequence[Organisation],
    *,
    same_is_fine: bool = False,
) -> None:
    """Refuse a ``tlp`` and ``recipients`` that would let anyone read what ``old_tlp`` and
    ``old`` did not (and, unless ``same_is_fine``, one that changes nothing)."""
    if tlp not in (TLP.CLEAR, TLP.GREEN, TLP.AMBER, TLP.AMBER_STRICT, TLP.RED):
        raise ValidationError({"tlp": _("Unknown TLP level: %(value)s.") % {"value": str(tlp)[:40]}})
    if tlp == TLP.RED:
        raise ValidationError(
            {"tlp": _("Narrow to AMBER+STRICT at most: RED names people, who are per node.")}
        )
    order = stix.TLP_ORDER.index
    if order(tlp) < order(old_tlp):
        raise ValidationError(
            {
                "tlp": _("A retraction narrows: %(new)s is broader than %(old)s.")
                % {"new": stix.TLP_NAMES[tlp], "old": stix.TLP_NAMES[old_tlp]}
            }
        )
    if tlp in access.AMBER_LEVELS and old_tlp in access.AMBER_LEVELS and not set(recipients) <= set(old):
        raise ValidationError({"recipients": _("A retraction narrows: it may only remove recipients.")})
    if not same_is_fine and order(tlp) == order(old_tlp) and set(recipients) == set(old):
        raise ValidationError({"tlp": _("This changes nothing: give a stricter TLP or fewer recipients.")})


def _apply_here(
    actor: User | None,
    organisation: Organisation,
    stix_id: str,
    action: str,
    tlp: str,
    recipients: Sequence[Organisation],
    *,
    origin_node: str,
) -> int:
    """Apply a retraction to this node's copies of ``stix_id`` from ``organisation`` shared on
    ``origin_node`` (blank: here). Returns how many versions it touched."""
    copies = StixObject.objects.filter(
        stix_id=stix_id, origin_organisation=organisation, origin_node=origin_node
    )
    if action == "delete":
        return intel_services.delete_versions(actor, organisation, copies) if copies.exists() else 0
    if action == "narrow":
        rows = list(copies)
        for row in rows:
            row.tlp = tlp
            row.save(update_fields=["tlp", "updated_at"])
            row.recipient_organisations.set(recipients)
        return len(rows)
    # revoke: the newest version becomes revoked. Here, a new version says so; a peer's copy
    # receives that version through federation, and marks what it holds meanwhile.
    latest = copies.filter(is_latest=True).order_by("-modified").first()
    if latest is None or latest.revoked:
        return 0
    if origin_node:
        return copies.update(revoked=True)
    revoked = orjson.loads(latest.raw)
    revoked["revoked"] = True
    revoked["modified"] = timestamp(max(timezone.now(), latest.modified))
    result = intel_services.import_objects(
        actor,
        organisation,
        [(0, revoked)],
        latest.tlp,
        list(latest.recipient_organisations.all()),
        fmt="stix",
        source="retraction",
    )
    return result.accepted


def _narrows_every_copy(
    organisation: Organisation, stix_id: str, origin_node: str, tlp: str, recipients: Sequence[Organisation]
) -> bool:
    """Whether ``tlp`` and ``recipients`` narrow (or keep) every copy held here. A peer's
    retraction is checked as the originator's was: a forged or garbled one may not widen."""
    copies = StixObject.objects.filter(
        stix_id=stix_id, origin_organisation=organisation, origin_node=origin_node
    ).prefetch_related("recipient_organisations")
    try:
        for copy in copies:
            _check_narrower(
                copy.tlp, list(copy.recipient_organisations.all()), tlp, recipients, same_is_fine=True
            )
    except ValidationError:
        return False
    return True


def apply_received(peer: Peer, retraction: StixObject) -> None:
    """Apply a retraction that arrived from ``peer`` (stored already, with its provenance),
    then record the acknowledgement that federation carries back. Audited
    (``federation.retraction_applied``); a retraction claiming another organisation's copies
    applies to none and is acknowledged as refused."""
    body = orjson.loads(retraction.raw)
    organisation = retraction.origin_organisation
    action = body.get("action")
    target = body.get("target_ref", "")
    outcome = "applied"
    copies = 0
    recipients = list(
        Organisation.objects.filter(short_name__in=body.get("new_recipient_organisations") or [])
    )
    if action not in ACTIONS or not isinstance(target, str):
        outcome = "refused"
    elif action == "narrow" and not _narrows_every_copy(
        organisation, target, retraction.origin_node, str(body.get("new_tlp", "")), recipients
    ):
        outcome = "refused"  # it would widen a copy: a retraction only ever narrows
    else:
        copies = _apply_here(
            None,
            organisation,
            target,
            action,
            str(body.get("new_tlp", "")),
            recipients,
            origin_node=retraction.origin_node,
        )
        if copies == 0:
            outcome = "nothing held"
    ack = {
        "type": ACK,
        "spec_version": "2.1",
        "id": f"{ACK}--{uuid.uuid5(NAMESPACE, retraction.stix_id + '|' + federation.node_id())}",
        "created": timestamp(timezone.now()),
        "modified": timestamp(timezone.now()),
        "name": f"{federation.node_id()}: {outcome}",
        "retraction_ref": retraction.stix_id,
        "node": federation.node_id(),
        "outcome": outcome,
    }
    intel_services.import_objects(
        None,
        organisation,
        [(0, stix.with_tlp_marking(ack, TLP.GREEN))],
        TLP.GREEN,
        fmt="stix",
        source="retraction",
    )
    audit.record(
        "federation.retraction_applied",
        organisation=organisation,
        details={
            "retraction": retraction.stix_id,
            "object": target,
            "action": action,
            "from": peer.name,
            "origin_node": retraction.origin_node,
            "copies": copies,
            "outcome": outcome,
        },
    )


@dataclass
class NodeState:
    node: str
    outcome: str  # applied, nothing held, refused, or pending
    at: datetime | None


def status(retraction_id: str) -> list[NodeState]:
    """Per node, whether the retraction was applied: the acknowledgements received, and the
    peers it concerns that have not acknowledged yet (pending)."""
    retraction = StixObject.objects.filter(stix_id=retraction_id, type=RETRACTION).first()
    if retraction is None:
        return []
    states: dict[str, NodeState] = {}
    for raw, added in StixObject.objects.filter(type=ACK, raw__contains=retraction_id).values_list(
        "raw", "date_added"
    ):
        body: dict[str, Any] = orjson.loads(raw)
        if body.get("retraction_ref") == retraction_id and isinstance(body.get("node"), str):
            states[body["node"]] = NodeState(body["node"], str(body.get("outcome", "")), added)
    for peer in Peer.objects.filter(is_active=True, kind=PeerKind.MINGA):  # others never acknowledge
        if peer.name not in states and access.may_distribute(retraction, federation.peer_node(peer)):
            states[peer.name] = NodeState(peer.name, "pending", None)
    return sorted(states.values(), key=lambda state: state.node)
