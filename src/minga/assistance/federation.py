"""Mutual-assistance requests across nodes: a request whose other party works on another Minga
node travels there over the TAXII federation, and each party's changes come back.

**What travels.** Each party publishes, in its own name, a STIX custom object
``x-minga-assistance-request`` whose id is derived from the request's uuid (the same on both
nodes), one new version (a new ``modified``) per change it makes: submission, acknowledgement,
start, answer, withdrawal, closing, a message, an attachment. Versions are kept per
originating organisation (``minga.intel.models.StixObject``), so each party has its own history
of the object: the requesting party's copy is authoritative for what the requesting side does,
the requested party's for what the requested side does. Every version is a full snapshot of the
request as its publisher sees it, with the messages and attachments (name, size, SHA-256: the
bytes stay on the node where they were attached) of the publishing party only.

**Who receives it.** The object is marked TLP:AMBER+STRICT with the two parties as its recipient
organisations: the distribution rule (``minga.core.access.distribution_filter``) sends it only
to the nodes hosting one of them, and a node that received it never passes it on. In the intel
store only the two parties' members can read it, as on the request's own pages.

**Receiving.** ``receive`` (registered with ``minga.taxii.federation.on_receive``) runs once per
version newly stored from a peer, in the transaction that stored it. It creates the local copy
of a newly submitted request (and e-mails the local 24/7 desk of the requested organisation,
once: the outbox's unique constraint), or applies the sender's changes to the request with the
same uuid, only those its side may make (the requested side acknowledges, starts and answers;
the requesting side withdraws; either closes), and only from the node that side works on.
Anything else is refused and audited (``assistance.federation_refused``); nothing a peer sends
can fail the sync. The deadlines' escalation runs on the requested organisation's node.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from minga.assistance import services
from minga.assistance.choices import (
    CLOSABLE,
    OPEN_STATUSES,
    EntryKind,
    Outcome,
    Priority,
    RequestKind,
    RequestStatus,
)
from minga.assistance.models import AssistanceRequest, ThreadEntry
from minga.core import audit
from minga.core.choices import TLP
from minga.core.models import Organisation
from minga.directory.models import MemberState
from minga.intel import services as intel_services
from minga.intel import stix
from minga.intel.convert import timestamp
from minga.intel.models import StixObject
from minga.taxii import federation
from minga.taxii.models import Peer, PeerKind
from minga.taxii.services import NAMESPACE

REQUEST = "x-minga-assistance-request"
SOURCE = "assistance"

# What each side may move a request to, from which statuses, when its version arrives.
REQUESTED_MOVES: dict[str, tuple[str, ...]] = {
    RequestStatus.ACKNOWLEDGED: (RequestStatus.SUBMITTED,),
    RequestStatus.IN_PROGRESS: (RequestStatus.SUBMITTED, RequestStatus.ACKNOWLEDGED),
    RequestStatus.ANSWERED: OPEN_STATUSES,
    RequestStatus.CLOSED: CLOSABLE,
}
REQUESTING_MOVES: dict[str, tuple[str, ...]] = {
    RequestStatus.WITHDRAWN: OPEN_STATUSES,
    RequestStatus.CLOSED: CLOSABLE,
}
REQUESTING_FIELDS = ("withdrawal_reason", "withdrawn_at")
REQUESTED_FIELDS = ("outcome", "answer", "acknowledged_at", "first_response_at", "answered_at")
TIME_FIELDS = frozenset(
    {
        "submitted_at",
        "acknowledge_by",
        "respond_by",
        "acknowledged_at",
        "first_response_at",
        "answered_at",
        "withdrawn_at",
        "closed_at",
    }
)


def stix_id(request: AssistanceRequest) -> str:
    return f"{REQUEST}--{request.uuid}"


def hosting_node(organisation: Organisation) -> str:
    """The Minga peer that hosts ``organisation`` (blank: none does; it works on this node)."""
    return (
        Peer.objects.filter(kind=PeerKind.MINGA, is_active=True, hosted_organisations=organisation)
        .order_by("name")
        .values_list("name", flat=True)
        .first()
        or ""
    )


def local_party(request: AssistanceRequest) -> Organisation | None:
    """The party that works on ``request`` on this node, when the other works on another."""
    if request.requested_node:
        return request.requesting_organisation
    if request.requesting_node:
        return request.requested_organisation
    return None


# --- publishing ------------------------------------------------------------------------------


def _stamp(moment: datetime | None) -> str | None:
    """A time of the request in UTC, to the microsecond (as stored: both nodes agree exactly)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment is not None else None


def _message_id(entry: ThreadEntry) -> str:
    return str(uuid.uuid5(NAMESPACE, f"assistance-message|{federation.node_id()}|{entry.pk}"))


def snapshot(request: AssistanceRequest, party: Organisation, modified: datetime) -> dict[str, Any]:
    """The STIX object of ``request`` as ``party`` publishes it (messages and attachments of
    ``party`` written on this node only; what it received from the other party is not echoed)."""
    entries = ThreadEntry.objects.filter(
        request=request, organisation=party, kind__in=(EntryKind.MESSAGE, EntryKind.ATTACHMENT)
    ).order_by("created_at", "pk")
    messages: list[dict[str, Any]] = []
    attachments: list[dict[str, Any]] = []
    for entry in entries:
        if "remote_id" in entry.details:
            continue
        if entry.kind == EntryKind.MESSAGE:
            messages.append(
                {"id": _message_id(entry), "created": _stamp(entry.created_at), "text": entry.text}
            )
    for attachment in request.attachments.filter(organisation=party).order_by("created_at", "pk"):
        attachments.append(
            {
                "id": str(uuid.uuid5(NAMESPACE, f"assistance-file|{federation.node_id()}|{attachment.pk}")),
                "created": _stamp(attachment.created_at),
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "size": attachment.size,
                "sha256": attachment.sha256,
            }
        )
    assert request.submitted_at is not None
    return {
        "type": REQUEST,
        "spec_version": "2.1",
        "id": stix_id(request),
        "created": timestamp(request.submitted_at),
        "modified": timestamp(modified),
        "name": request.reference,
        "request_uuid": str(request.uuid),
        "reference": request.reference,
        "requesting_organisation": request.requesting_organisation.short_name,
        "requested_organisation": request.requested_organisation.short_name,
        "requesting_state": request.requesting_state.code if request.requesting_state else "",
        "requested_state": request.requested_state.code,
        "kind": request.kind,
        "priority": request.priority,
        "subject": request.subject,
        "description": request.description,
        "legal_basis": request.legal_basis,
        "legal_reference": request.legal_reference,
        "status": request.status,
        "outcome": request.outcome,
        "answer": request.answer,
        "withdrawal_reason": request.withdrawal_reason,
        **{name: _stamp(getattr(request, name)) for name in sorted(TIME_FIELDS)},
        "messages": messages,
        "attachments": attachments,
    }


def publish(request: AssistanceRequest) -> None:
    """Store the new version of ``request`` in the intel store in the name of the party that
    works on it here, AMBER+STRICT for the two parties, for federation to carry to the other
    party's node. Nothing for a request both parties work on here, or a draft. In the caller's
    transaction: the change and its version are committed together."""
    party = local_party(request)
    if party is None or request.status == RequestStatus.DRAFT or request.submitted_at is None:
        return
    last = (
        StixObject.objects.filter(
            stix_id=stix_id(request), origin_organisation=party, origin_node="", received_from=""
        )
        .order_by("-modified")
        .values_list("modified", flat=True)
        .first()
    )
    # Never before the submission (another node's clock may be ahead of this one's).
    modified = max(timezone.now(), request.submitted_at)
    modified = modified.replace(microsecond=modified.microsecond // 1000 * 1000)  # STIX: milliseconds
    if last is not None and modified <= last:
        modified = last + timedelta(milliseconds=1)
    obj = stix.with_tlp_marking(snapshot(request, party, modified), TLP.AMBER_STRICT)
    result = intel_services.import_objects(
        None,
        party,
        [(0, obj)],
        TLP.AMBER_STRICT,
        [request.requesting_organisation, request.requested_organisation],
        fmt="stix",
        source=SOURCE,
    )
    if result.accepted != 1:
        raise ValidationError(
            " ".join(r.reason for r in result.rejections)
            or _("The request's version for the other node was not stored.")
        )


# --- receiving -------------------------------------------------------------------------------


class Refused(Exception):
    """A version from a peer that this node does not apply, with the reason."""


def _organisation(short_name: Any, side: str) -> Organisation:
    found = Organisation.objects.filter(short_name=str(short_name)).first() if short_name else None
    if found is None:
        unknown = (
            _("The requesting organisation %(name)s is not in this node's directory.")
            if side == "requesting"
            else _("The requested organisation %(name)s is not in this node's directory.")
        )
        raise Refused(unknown % {"name": str(short_name)[:60]})
    return found


def _time(body: dict[str, Any], name: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    parsed = parse_datetime(str(value)) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise Refused(_("%(field)s is not a UTC timestamp.") % {"field": name})
    return parsed


def _text(body: dict[str, Any], name: str, limit: int) -> str:
    value = body.get(name) or ""
    if not isinstance(value, str):
        raise Refused(_("%(field)s is not text.") % {"field": name})
    return value.replace("\x00", "")[:limit]


def _state(organisation: Organisation, code: Any) -> MemberState | None:
    return services._state_of(organisation) or MemberState.objects.filter(code=str(code or "")).first()


@federation.on_receive(REQUEST)
def receive(peer: Peer, version: StixObject) -> None:
    """Apply a version of a request that arrived from ``peer``; refuse (and audit) what its
    sender may not do. Never raises for what a peer sent: the sync goes on."""
    body = orjson.loads(version.raw)
    sender = version.origin_organisation
    try:
        with transaction.atomic():
            _apply(peer, sender, version, body)
    except (Refused, ValidationError, ValueError, TypeError, KeyError) as exc:
        reason = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        audit.record(
            "assistance.federation_refused",
            organisation=sender,
            details={
                "object": version.stix_id,
                "version": timestamp(version.modified),
                "from": peer.name,
                "sender": sender.short_name,
                "reason": reason[:500],
            },
        )


def _apply(peer: Peer, sender: Organisation, version: StixObject, body: dict[str, Any]) -> None:
    request_uuid = uuid.UUID(str(body.get("request_uuid", "")))
    if version.stix_id != f"{REQUEST}--{request_uuid}":
        raise Refused(_("The object's id is not the request's."))
    requesting = _organisation(body.get("requesting_organisation"), "requesting")
    requested = _organisation(body.get("requested_organisation"), "requested")
    if sender.pk not in (requesting.pk, requested.pk):
        raise Refused(_("%(org)s is not a party to this request.") % {"org": sender.short_name})
    request = AssistanceRequest.objects.select_for_update().filter(uuid=request_uuid).first()
    if request is None:
        request = _open(peer, sender, requesting, requested, version, body)
        _merge_thread(peer, request, sender, body)
        return
    if (request.requesting_organisation_id, request.requested_organisation_id) != (
        requesting.pk,
        requested.pk,
    ):
        raise Refused(_("The parties differ from those of %(ref)s here.") % {"ref": request.reference})
    side_node = request.requesting_node if sender.pk == requesting.pk else request.requested_node
    if peer.name != side_node:
        raise Refused(
            _("%(org)s does not work on %(ref)s on node %(node)s.")
            % {"org": sender.short_name, "ref": request.reference, "node": peer.name}
        )
    if request.remote_version is not None and version.modified <= request.remote_version:
        return  # an older version than one applied already: nothing new
    request.remote_version = version.modified
    _merge_thread(peer, request, sender, body)
    new = str(body.get("status", ""))
    refused = ""
    if new != request.remote_status:
        moves = REQUESTING_MOVES if sender.pk == requesting.pk else REQUESTED_MOVES
        if new == request.status:
            pass  # this node agrees already
        elif request.status in moves.get(new, ()):
            _move(peer, request, sender, new, body)
        else:
            refused = _("%(org)s may not move %(ref)s from %(old)s to %(new)s.") % {
                "org": sender.short_name,
                "ref": request.reference,
                "old": request.status,
                "new": new[:20],
            }
        request.remote_status = new[:12]
    request.save()
    if refused:
        audit.record(
            "assistance.federation_refused",
            obj=request,
            organisation=sender,
            details={
                "reference": request.reference,
                "object": version.stix_id,
                "version": timestamp(version.modified),
                "from": peer.name,
                "sender": sender.short_name,
                "reason": refused,
            },
        )


def _open(
    peer: Peer,
    sender: Organisation,
    requesting: Organisation,
    requested: Organisation,
    version: StixObject,
    body: dict[str, Any],
) -> AssistanceRequest:
    """The local copy of a request submitted on ``peer``, its deadlines as set there, and the
    e-mail to the requested organisation's 24/7 desk here."""
    if sender.pk != requesting.pk:
        raise Refused(_("Only the requesting party opens a request on another node."))
    if not peer.hosted_organisations.filter(pk=requesting.pk).exists():
        raise Refused(
            _("Node %(node)s does not host %(org)s.") % {"node": peer.name, "org": requesting.short_name}
        )
    if hosting_node(requested):
        raise Refused(_("%(org)s is not hosted on this node.") % {"org": requested.short_name})
    state = _state(requested, body.get("requested_state"))
    if state is None:
        raise Refused(
            _("%(org)s has no member state in this node's directory.") % {"org": requested.short_name}
        )
    status = str(body.get("status", ""))
    if status not in (RequestStatus.SUBMITTED, *REQUESTING_MOVES) or status == RequestStatus.CLOSED:
        raise Refused(
            _("A request arrives submitted (or withdrawn), not %(status)s.") % {"status": status[:20]}
        )
    kind, priority = body.get("kind"), body.get("priority")
    if kind not in RequestKind.values or priority not in Priority.values:
        raise Refused(_("Unknown kind or priority."))
    times = {name: _time(body, name) for name in ("submitted_at", "acknowledge_by", "respond_by")}
    if None in times.values():
        raise Refused(_("A submitted request carries its submission time and deadlines."))
    reference = str(body.get("reference") or "")[:15] or "MAR"
    candidate, n = reference, 1
    while AssistanceRequest.objects.filter(reference=candidate).exists():
        n += 1
        candidate = f"{reference}-{n}"
    request = AssistanceRequest.objects.create(
        uuid=uuid.UUID(str(body["request_uuid"])),
        reference=candidate,
        requesting_organisation=requesting,
        requesting_state=_state(requesting, body.get("requesting_state")),
        requested_organisation=requested,
        requested_state=state,
        kind=kind,
        priority=priority,
        subject=_text(body, "subject", services.MAX_SUBJECT) or candidate,
        description=_text(body, "description", services.MAX_TEXT),
        legal_basis=_text(body, "legal_basis", 300),
        legal_reference=_text(body, "legal_reference", 200),
        status=RequestStatus.SUBMITTED,
        requesting_node=peer.name,
        remote_status=RequestStatus.SUBMITTED,
        remote_version=version.modified,
        **times,
    )
    chain = services.contact_chain(requested.pk)
    notified: list[str] = []
    if chain:
        primary = chain[0]
        services._queue_mail(request, "submitted", 0, [primary.email], services._contact_language(primary))
        notified = [primary.email]
    services._thread(
        request,
        EntryKind.STATUS,
        None,
        details={
            "from": RequestStatus.DRAFT,
            "to": RequestStatus.SUBMITTED,
            "node": peer.name,
            "notified": [c.name for c in chain[:1]],
        },
        organisation=requesting,
    )
    services._audit(
        "assistance.received",
        None,
        request,
        node=peer.name,
        priority=request.priority,
        acknowledge_by=request.acknowledge_by,
        respond_by=request.respond_by,
        notified=notified,
    )
    if status != RequestStatus.SUBMITTED:
        _move(peer, request, sender, status, body)
        request.remote_status = status
        request.save()
    return request


def _move(
    peer: Peer, request: AssistanceRequest, sender: Organisation, new: str, body: dict[str, Any]
) -> None:
    """Apply the sender's move to ``new``, with the fields its side owns."""
    old = request.status
    requesting_side = sender.pk == request.requesting_organisation_id
    for name in REQUESTING_FIELDS if requesting_side else REQUESTED_FIELDS:
        if name in TIME_FIELDS:
            moment = _time(body, name)
            if moment is not None:
                setattr(request, name, moment)
        else:
            setattr(request, name, _text(body, name, services.MAX_TEXT))
    if request.outcome and request.outcome not in Outcome.values:
        raise Refused(_("Unknown outcome."))
    if new == RequestStatus.CLOSED:
        request.closed_at = _time(body, "closed_at") or timezone.now()
    request.status = new
    request.save()
    text = (
        request.answer
        if new == RequestStatus.ANSWERED
        else (request.withdrawal_reason if new == RequestStatus.WITHDRAWN else "")
    )
    extra: dict[str, Any] = {"from": old, "to": new, "node": peer.name}
    if new == RequestStatus.ANSWERED:
        extra["outcome"] = request.outcome
    services._thread(request, EntryKind.STATUS, None, text, extra, organisation=sender)
    services._audit(
        "assistance.received", None, request, node=peer.name, moved_from=old, by=sender.short_name
    )


def _merge_thread(peer: Peer, request: AssistanceRequest, sender: Organisation, body: dict[str, Any]) -> None:
    """The sender's messages and attachments (name, size and hash) not yet on the thread here."""
    known = set(
        ThreadEntry.objects.filter(request=request, details__has_key="remote_id").values_list(
            "details__remote_id", flat=True
        )
    )
    items: list[tuple[str, dict[str, Any]]] = [
        (str(EntryKind.MESSAGE), m) for m in body.get("messages") or [] if isinstance(m, dict)
    ] + [(str(EntryKind.ATTACHMENT), a) for a in body.get("attachments") or [] if isinstance(a, dict)]
    requested_side = sender.pk == request.requested_organisation_id
    for kind, item in sorted(items, key=lambda pair: str(pair[1].get("created", ""))):
        remote_id = str(item.get("id", ""))[:100]
        if not remote_id or remote_id in known:
            continue
        details: dict[str, Any] = {"remote_id": remote_id, "node": peer.name, "created": item.get("created")}
        text = ""
        if kind == EntryKind.MESSAGE:
            text = _text(item, "text", services.MAX_TEXT)
        else:
            details.update(
                filename=_text(item, "filename", 200),
                size=int(item.get("size") or 0),
                sha256=_text(item, "sha256", 64),
            )
        services._thread(request, kind, None, text, details, organisation=sender)
        known.add(remote_id)
        if requested_side and request.first_response_at is None:
            request.first_response_at = _time(item, "created") or timezone.now()
            request.save(update_fields=["first_response_at", "updated_at"])
