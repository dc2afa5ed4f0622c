"""Domain operations on mutual-assistance requests. Each checks who may act, changes the rows in
one transaction, writes the thread entry and the audit entry there, and puts what must be
e-mailed into the request's outbox (``RequestMail``) in the same transaction.

Who may do what (analysts, liaisons and admins of an organisation; read-only members read):

* create, change a draft, submit, withdraw: the requesting organisation;
* acknowledge, start, answer (fulfilled, partial, declined with a reason): the requested one;
* write on the thread, attach files, close an answered or withdrawn request: either party;
* set the network's deadlines per priority: node admins (the network's coordinators).

Audit entries carry metadata only (reference, parties, kind, priority, status, timings): the
audit log is read by node admins, who may see that a request exists but never its content.

``actor=None`` is the node itself (the escalation job, the demo loader).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from minga.assistance.choices import (
    CLOSABLE,
    DEFAULT_DEADLINES,
    OPEN_STATUSES,
    WITHDRAWABLE,
    DeliveryStatus,
    EntryKind,
    Escalation,
    Outcome,
    Priority,
    RequestKind,
    RequestStatus,
)
from minga.assistance.models import AssistanceRequest, Attachment, DeadlinePolicy, RequestMail, ThreadEntry
from minga.core import audit
from minga.core.choices import WORKING_ROLES, Role
from minga.core.models import Membership, Organisation, User
from minga.directory.choices import ContactRole, OrganisationKind
from minga.directory.models import MemberState, OrganisationProfile, PointOfContact

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    Actor = User | AnonymousUser | None

MAX_TEXT = 8000
CONTENT_FIELDS = ("kind", "priority", "subject", "description", "legal_basis", "legal_reference")
MAX_SUBJECT = 200
DEFAULT_MAX_ATTACHMENT_BYTES = 8 * 1024 * 1024
CLAIM_SECONDS = 600
# Whom to call after the 24/7 desk, in this order, when no other 24/7 contact is listed.
ESCALATION_ROLES = (ContactRole.DUTY, ContactRole.LIAISON, ContactRole.LEGAL, ContactRole.TECHNICAL)


# --- who may act -------------------------------------------------------------------------------


def working_organisation_ids(actor: Actor) -> set[int]:
    """Organisations in whose name ``actor`` works on requests."""
    if actor is None or not actor.is_authenticated or not actor.is_active:
        return set()
    return set(
        Membership.objects.filter(user_id=actor.pk, is_active=True, role__in=WORKING_ROLES).values_list(
            "organisation_id", flat=True
        )
    )


def may_request(actor: Actor, request: AssistanceRequest) -> bool:
    """Whether ``actor`` acts for the requesting side here (never where it works on another node)."""
    if request.requesting_node:
        return False
    return actor is None or request.requesting_organisation_id in working_organisation_ids(actor)


def may_answer(actor: Actor, request: AssistanceRequest) -> bool:
    """Whether ``actor`` acts for the requested side here (never where it works on another node)."""
    if request.requested_node:
        return False
    return actor is None or request.requested_organisation_id in working_organisation_ids(actor)


def _require_here(request: AssistanceRequest, organisation: Organisation, node: str) -> None:
    """A party whose side of the request is on another node acts there, not here: its changes
    reach this node by federation (``minga.assistance.federation``)."""
    if node:
        raise ValidationError(
            _("%(org)s works on %(ref)s on its own node, %(node)s: this is done there.")
            % {"org": organisation.short_name, "ref": request.reference, "node": node}
        )


def _require_requesting(actor: Actor, request: AssistanceRequest) -> None:
    _require_here(request, request.requesting_organisation, request.requesting_node)
    if not may_request(actor, request):
        raise PermissionDenied(
            _("Only the requesting organisation's analysts may do this on %(ref)s.")
            % {"ref": request.reference}
        )


def _require_requested(actor: Actor, request: AssistanceRequest) -> None:
    _require_here(request, request.requested_organisation, request.requested_node)
    if not may_answer(actor, request):
        raise PermissionDenied(
            _("Only the requested organisation's analysts may do this on %(ref)s.")
            % {"ref": request.reference}
        )


def _acting_organisation(actor: Actor, request: AssistanceRequest) -> Organisation | None:
    """The party ``actor`` speaks for: the requesting side first (a person in both is rare)."""
    if actor is None:
        return None
    own = working_organisation_ids(actor)
    if request.requesting_organisation_id in own and not request.requesting_node:
        return request.requesting_organisation
    if request.requested_organisation_id in own and not request.requested_node:
        return request.requested_organisation
    raise PermissionDenied(
        _("Only the two parties' analysts may do this on %(ref)s.") % {"ref": request.reference}
    )


def _require_status(request: AssistanceRequest, allowed: Iterable[str], action: str) -> None:
    allowed = tuple(allowed)
    if request.status not in allowed:
        raise ValidationError(
            {
                "status": _("%(ref)s is %(status)s; only a request that is %(allowed)s can be %(action)s.")
                % {
                    "ref": request.reference,
                    "status": RequestStatus(request.status).label.lower(),
                    "allowed": _(" or ").join(str(RequestStatus(s).label).lower() for s in allowed),
                    "action": action,
                }
            }
        )


# --- helpers ---------------------------------------------------------------------------------


def _author(actor: Actor) -> User | None:
    return actor if actor is not None and actor.is_authenticated else None  # type: ignore[return-value]


def _clean_text(value: Any, field: str, *, required: bool, limit: int) -> str:
    text = str(value or "").replace("\x00", "").strip()
    if required and not text:
        raise ValidationError({field: _("This field is required.")})
    if len(text) > limit:
        raise ValidationError({field: _("At most %(n)d characters.") % {"n": limit}})
    return text


def _choice(value: Any, choices: Any, field: str) -> str:
    if value not in choices.values:
        raise ValidationError(
            {
                field: _("%(value)s is not one of: %(choices)s.")
                % {"value": str(value)[:40], "choices": ", ".join(choices.values)}
            }
        )
    return str(value)


def _thread(
    request: AssistanceRequest,
    kind: str,
    actor: Actor,
    text: str = "",
    details: dict[str, Any] | None = None,
    organisation: Organisation | None = None,
) -> ThreadEntry:
    return ThreadEntry.objects.create(
        request=request,
        kind=kind,
        author=_author(actor),
        organisation=organisation,
        text=text,
        details=details or {},
    )


def _audit(action: str, actor: Actor, request: AssistanceRequest, **details: Any) -> None:
    audit.record(
        action,
        actor=actor,
        obj=request,
        organisation=request.requesting_organisation,
        details={
            "reference": request.reference,
            "from": request.requesting_organisation.short_name,
            "to": request.requested_organisation.short_name,
            "status": request.status,
            **details,
        },
    )


def _publish(request: AssistanceRequest) -> None:
    """The new version of a request that a party on another node works on, for federation to
    carry there, in the caller's transaction (``minga.assistance.federation.publish``)."""
    from minga.assistance import federation

    federation.publish(request)


def _status_change(request: AssistanceRequest, actor: Actor, old: str, text: str = "", **extra: Any) -> None:
    _thread(
        request,
        EntryKind.STATUS,
        actor,
        text,
        {"from": old, "to": request.status, **extra},
        organisation=_acting_organisation(actor, request) if actor is not None else None,
    )


# --- deadlines -------------------------------------------------------------------------------


def deadlines_for(priority: str) -> tuple[timedelta, timedelta]:
    """The network's (acknowledge within, respond within) for a priority."""
    row = DeadlinePolicy.objects.filter(priority=priority).first()
    if row is not None:
        return row.acknowledge_within, row.respond_within
    return DEFAULT_DEADLINES[priority]


def all_deadlines() -> dict[str, tuple[timedelta, timedelta]]:
    """Every priority's deadlines, most pressing first."""
    return {p: deadlines_for(p) for p in (Priority.EMERGENCY, Priority.URGENT, Priority.ROUTINE)}


@transaction.atomic
def set_deadlines(
    actor: Actor, priority: str, *, acknowledge_within: timedelta, respond_within: timedelta
) -> DeadlinePolicy:
    """Change the network's deadlines for one priority. Requests submitted before keep theirs.
    Node admins only; audited as ``assistance.deadlines``."""
    if actor is not None and not getattr(actor, "is_node_admin", False):
        raise PermissionDenied(_("Only the network's coordinators (node admins) set the deadlines."))
    priority = _choice(priority, Priority, "priority")
    if acknowledge_within <= timedelta(0) or respond_within <= timedelta(0):
        raise ValidationError(_("Deadlines must be longer than zero."))
    if respond_within < acknowledge_within:
        raise ValidationError({"respond_within": _("The answer cannot be due before the acknowledgement.")})
    if respond_within > timedelta(days=366):
        raise ValidationError({"respond_within": _("At most a year.")})
    old = deadlines_for(priority)
    row, _created = DeadlinePolicy.objects.update_or_create(
        priority=priority,
        defaults={"acknowledge_within": acknowledge_within, "respond_within": respond_within},
    )
    audit.record(
        "assistance.deadlines",
        actor=actor,
        obj=row,
        details={
            "priority": priority,
            "from": [int(old[0].total_seconds()), int(old[1].total_seconds())],
            "to": [int(acknowledge_within.total_seconds()), int(respond_within.total_seconds())],
        },
    )
    return row


# --- contacts --------------------------------------------------------------------------------


def _is_verified(contact: PointOfContact) -> bool:
    return contact.last_verified_at is not None and not contact.is_stale


def contact_chain(organisation_id: int) -> list[PointOfContact]:
    """Whom to write to at an organisation, in order: its confirmed 24/7 contacts, its other 24/7
    contacts, then its liaison, legal and technical contacts. The first is the primary desk."""
    contacts = list(
        PointOfContact.objects.filter(organisation_id=organisation_id, role__in=ESCALATION_ROLES).order_by(
            "pk"
        )
    )

    def rank(contact: PointOfContact) -> tuple[int, int, int]:
        role = ESCALATION_ROLES.index(contact.role)  # type: ignore[arg-type]
        return (role, 0 if _is_verified(contact) else 1, contact.pk)

    return sorted(contacts, key=rank)


def has_verified_duty_contact(organisation_id: int) -> bool:
    return any(
        _is_verified(c)
        for c in PointOfContact.objects.filter(organisation_id=organisation_id, role=ContactRole.DUTY)
    )


def designated_organisation(state: MemberState) -> Organisation | None:
    """A state's designated point of contact for requests: its national CSIRT."""
    profile = (
        OrganisationProfile.objects.filter(kind=OrganisationKind.NATIONAL_CSIRT, state=state)
        .select_related("organisation")
        .order_by("organisation__pk")
        .first()
    )
    return profile.organisation if profile is not None else None


def _suggestions(state: MemberState, exclude: int) -> list[str]:
    """Organisations of ``state`` whose 24/7 desk is confirmed: where a request could go instead."""
    names = []
    for profile in (
        OrganisationProfile.objects.filter(state=state)
        .exclude(organisation_id=exclude)
        .select_related("organisation")
        .order_by("organisation__name")
    ):
        if has_verified_duty_contact(profile.organisation_id):
            names.append(profile.organisation.short_name)
        if len(names) == 3:
            break
    return names


def coordinator_addresses() -> list[str]:
    """The network coordinator's addresses: the node admins' own, and the 24/7 desk of the
    organisation that runs the node (``MINGA_NODE_ORGANISATION``), if it names one."""
    addresses = set(
        User.objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(memberships__is_active=True, memberships__role=Role.NODE_ADMIN))
        .exclude(email="")
        .values_list("email", flat=True)
    )
    node_org = getattr(settings, "MINGA_NODE_ORGANISATION", "")
    if node_org:
        addresses |= set(
            PointOfContact.objects.filter(
                organisation__short_name=node_org, role=ContactRole.DUTY
            ).values_list("email", flat=True)
        )
    return sorted(addresses)


def _contact_language(contact: PointOfContact | None) -> str:
    spoken = {"en": "en", "es": "es", "pt": "pt-br", "pt-br": "pt-br", "fr": "fr"}
    for code in contact.languages if contact is not None else []:
        if str(code).lower() in spoken:
            return spoken[str(code).lower()]
    return "en"


# --- creating and submitting -------------------------------------------------------------------


def _state_of(organisation: Organisation) -> MemberState | None:
    profile = OrganisationProfile.objects.filter(organisation=organisation).select_related("state").first()
    return profile.state if profile is not None else None


def _resolve_target(
    requesting: Organisation,
    requested_state: MemberState | None,
    requested_organisation: Organisation | None,
) -> tuple[MemberState, Organisation]:
    if requested_organisation is not None:
        state = _state_of(requested_organisation)
        if state is None:
            raise ValidationError(
                {
                    "requested_organisation": _(
                        "%(org)s has no member state in the directory; "
                        "a request goes to a state's organisation."
                    )
                    % {"org": requested_organisation.short_name}
                }
            )
        if requested_state is not None and requested_state.pk != state.pk:
            raise ValidationError(
                {
                    "requested_organisation": _("%(org)s is in %(state)s, not in %(other)s.")
                    % {
                        "org": requested_organisation.short_name,
                        "state": state.code,
                        "other": requested_state.code,
                    }
                }
            )
        target = requested_organisation
    elif requested_state is not None:
        state = requested_state
        found = designated_organisation(state)
        if found is None:
            raise ValidationError(
                {
                    "requested_state": _(
                        "%(state)s has no national CSIRT in the directory; name the organisation to ask."
                    )
                    % {"state": state.code}
                }
            )
        target = found
    else:
        raise ValidationError({"requested_state": _("Say which state (or which organisation) you ask.")})
    if not state.participating:
        raise ValidationError(
            {"requested_state": _("%(state)s does not take part in the network.") % {"state": state.code}}
        )
    if target.pk == requesting.pk:
        raise ValidationError({"requested_organisation": _("An organisation cannot ask itself.")})
    own_state = _state_of(requesting)
    if own_state is not None and own_state.pk == state.pk:
        raise ValidationError(
            {
                "requested_state": _("Mutual assistance goes to another state; %(org)s is in %(state)s too.")
                % {"org": target.short_name, "state": state.code}
            }
        )
    return state, target


def _content(fields: dict[str, Any]) -> dict[str, str]:
    return {
        "kind": _choice(fields.get("kind"), RequestKind, "kind"),
        "priority": _choice(fields.get("priority"), Priority, "priority"),
        "subject": _clean_text(fields.get("subject"), "subject", required=True, limit=MAX_SUBJECT),
        "description": _clean_text(fields.get("description"), "description", required=False, limit=MAX_TEXT),
        "legal_basis": _clean_text(fields.get("legal_basis"), "legal_basis", required=False, limit=300),
        "legal_reference": _clean_text(
            fields.get("legal_reference"), "legal_reference", required=False, limit=200
        ),
    }


@transaction.atomic
def create_request(
    actor: Actor,
    organisation: Organisation,
    *,
    requested_state: MemberState | None = None,
    requested_organisation: Organisation | None = None,
    kind: str,
    priority: str,
    subject: str,
    description: str = "",
    legal_basis: str = "",
    legal_reference: str = "",
) -> AssistanceRequest:
    """A draft request from ``organisation`` to a state's designated point of contact (its
    national CSIRT) or to a named organisation of another state. Nothing is sent until
    ``submit``. The requesting organisation's analysts; audited as ``assistance.create``."""
    if actor is not None and organisation.pk not in working_organisation_ids(actor):
        raise PermissionDenied(_("You may only ask in the name of an organisation you work for."))
    content = _content(
        {
            "kind": kind,
            "priority": priority,
            "subject": subject,
            "description": description,
            "legal_basis": legal_basis,
            "legal_reference": legal_reference,
        }
    )
    state, target = _resolve_target(organisation, requested_state, requested_organisation)
    request = AssistanceRequest.objects.create(
        reference=os.urandom(10).hex(),  # replaced below, once the row has its number
        requesting_organisation=organisation,
        requesting_state=_state_of(organisation),
        requested_organisation=target,
        requested_state=state,
        created_by=_author(actor),
        **content,
    )
    request.reference = f"MAR-{request.created_at.year}-{request.pk:06d}"
    request.save(update_fields=["reference"])
    _thread(request, EntryKind.STATUS, actor, details={"to": RequestStatus.DRAFT}, organisation=organisation)
    _audit("assistance.create", actor, request, kind=request.kind, priority=request.priority)
    return request


@transaction.atomic
def update_draft(
    actor: Actor,
    request: AssistanceRequest,
    *,
    requested_state: MemberState | None = None,
    requested_organisation: Organisation | None = None,
    **changes: Any,
) -> AssistanceRequest:
    """Change a draft's kind, priority, subject, description or legal basis, or whom it asks (a
    state's national CSIRT, or a named organisation). The requesting organisation's analysts;
    audited as ``assistance.update`` (which fields, not their text)."""
    _require_requesting(actor, request)
    _require_status(request, [RequestStatus.DRAFT], _("changed"))
    unknown = set(changes) - set(CONTENT_FIELDS)
    if unknown:
        raise ValidationError(_("These fields cannot be changed: %(f)s.") % {"f": ", ".join(sorted(unknown))})
    current = {f: getattr(request, f) for f in CONTENT_FIELDS}
    content = _content({**current, **{k: v for k, v in changes.items() if v is not None}})
    changed = sorted(f for f, v in content.items() if current[f] != v)
    if requested_state is not None or requested_organisation is not None:
        state, target = _resolve_target(
            request.requesting_organisation, requested_state, requested_organisation
        )
        if target.pk != request.requested_organisation_id:
            changed.append("requested_organisation")
        request.requested_state, request.requested_organisation = state, target
    for field, value in content.items():
        setattr(request, field, value)
    request.save()
    _audit(
        "assistance.update",
        actor,
        request,
        fields=changed,
        requested=request.requested_organisation.short_name,
    )
    return request


def _queue_mail(
    request: AssistanceRequest, event: str, level: int, recipients: list[str], language: str
) -> RequestMail | None:
    """Put one e-mail in the outbox and enqueue its delivery, in the caller's transaction. An
    event of a level mails once (the unique constraint): a second call returns None."""
    from minga.assistance import tasks

    if not recipients:
        return None
    try:
        with transaction.atomic():
            mail = RequestMail.objects.create(
                request=request, event=event, level=level, recipients=recipients, language=language
            )
    except IntegrityError:
        return None
    tasks.deliver_request_mail.enqueue(mail.pk)
    return mail


@transaction.atomic
def submit(actor: Actor, request: AssistanceRequest) -> AssistanceRequest:
    """Send a draft: the deadlines of its priority start now (UTC wall-clock), and the requested
    organisation's primary 24/7 desk is e-mailed. Refused when that organisation has no
    confirmed 24/7 contact, naming organisations of the state that have one. The requesting
    organisation's analysts; audited as ``assistance.submit``."""
    _require_requesting(actor, request)
    _require_status(request, [RequestStatus.DRAFT], _("submitted"))
    chain = contact_chain(request.requested_organisation_id)
    if not has_verified_duty_contact(request.requested_organisation_id):
        suggestions = _suggestions(request.requested_state, request.requested_organisation_id)
        message = _(
            "%(org)s has no confirmed 24/7 contact in the directory, so no one would be told of the request."
        ) % {"org": request.requested_organisation.name}
        if suggestions:
            message += " " + _("Address it to another organisation of %(state)s instead: %(names)s.") % {
                "state": request.requested_state.code,
                "names": ", ".join(suggestions),
            }
        else:
            message += " " + _("Ask the network coordinator to have its 24/7 contact confirmed first.")
        raise ValidationError({"requested_organisation": message})
    from minga.assistance import federation

    now = timezone.now()
    acknowledge_within, respond_within = deadlines_for(request.priority)
    request.status = RequestStatus.SUBMITTED
    request.submitted_at = now
    request.acknowledge_by = now + acknowledge_within
    request.respond_by = now + respond_within
    # Asked on another node: that node tells its desk and runs the deadlines' escalation.
    request.requested_node = federation.hosting_node(request.requested_organisation)
    request.save()
    primary = chain[0]
    notified: list[str] = []
    if not request.requested_node:
        _queue_mail(request, "submitted", 0, [primary.email], _contact_language(primary))
        notified = [primary.email]
    _status_change(
        request,
        actor,
        RequestStatus.DRAFT,
        **({"notified": [primary.name]} if notified else {"node": request.requested_node}),
    )
    _audit(
        "assistance.submit",
        actor,
        request,
        priority=request.priority,
        acknowledge_by=request.acknowledge_by,
        respond_by=request.respond_by,
        notified=notified,
        node=request.requested_node,
    )
    federation.publish(request)
    return request


# --- the requested side --------------------------------------------------------------------------


def _seconds(start: datetime | None, end: datetime | None) -> int | None:
    return int((end - start).total_seconds()) if start is not None and end is not None else None


@transaction.atomic
def acknowledge(actor: Actor, request: AssistanceRequest) -> AssistanceRequest:
    """The requested organisation says it has the request; the time to acknowledge is counted
    from submission. Its analysts only; audited as ``assistance.acknowledge``."""
    _require_requested(actor, request)
    _require_status(request, [RequestStatus.SUBMITTED], _("acknowledged"))
    request.status = RequestStatus.ACKNOWLEDGED
    request.acknowledged_at = timezone.now()
    request.save()
    seconds = _seconds(request.submitted_at, request.acknowledged_at)
    _status_change(request, actor, RequestStatus.SUBMITTED, seconds=seconds)
    _audit("assistance.acknowledge", actor, request, time_to_acknowledge_seconds=seconds)
    _publish(request)
    return request


@transaction.atomic
def start(actor: Actor, request: AssistanceRequest) -> AssistanceRequest:
    """The requested organisation starts working on it (acknowledging it, if it had not).
    Its analysts only; audited as ``assistance.start``."""
    _require_requested(actor, request)
    _require_status(request, [RequestStatus.SUBMITTED, RequestStatus.ACKNOWLEDGED], _("started"))
    old = request.status
    request.status = RequestStatus.IN_PROGRESS
    request.acknowledged_at = request.acknowledged_at or timezone.now()
    request.save()
    _status_change(request, actor, old)
    _audit("assistance.start", actor, request)
    _publish(request)
    return request


@transaction.atomic
def answer(actor: Actor, request: AssistanceRequest, outcome: str, text: str) -> AssistanceRequest:
    """Answer the request: fulfilled, partially fulfilled, or declined (``text`` says why). The
    answer counts as the first response if none came before. The requested organisation's
    analysts; audited as ``assistance.answer`` (the outcome, not the text)."""
    _require_requested(actor, request)
    _require_status(request, OPEN_STATUSES, _("answered"))
    outcome = _choice(outcome, Outcome, "outcome")
    if outcome == Outcome.DECLINED:
        text = _clean_text(text, "text", required=False, limit=MAX_TEXT)
        if not text:
            raise ValidationError({"text": _("Say why the request is declined.")})
    else:
        text = _clean_text(text, "text", required=True, limit=MAX_TEXT)
    old = request.status
    now = timezone.now()
    request.status = RequestStatus.ANSWERED
    request.outcome = outcome
    request.answer = text
    request.answered_at = now
    request.acknowledged_at = request.acknowledged_at or now
    request.first_response_at = request.first_response_at or now
    request.save()
    _status_change(request, actor, old, text, outcome=outcome)
    _audit(
        "assistance.answer",
        actor,
        request,
        outcome=outcome,
        time_to_answer_seconds=_seconds(request.submitted_at, now),
        in_time=request.answered_in_time,
    )
    _publish(request)
    return request


# --- the requesting side, and both --------------------------------------------------------------


@transaction.atomic
def withdraw(actor: Actor, request: AssistanceRequest, reason: str = "") -> AssistanceRequest:
    """The requesting organisation takes the request back (a submitted one with a reason). Its
    analysts only; audited as ``assistance.withdraw``."""
    _require_requesting(actor, request)
    _require_status(request, WITHDRAWABLE, _("withdrawn"))
    submitted = request.status != RequestStatus.DRAFT
    reason = _clean_text(reason, "reason", required=submitted, limit=MAX_TEXT)
    old = request.status
    request.status = RequestStatus.WITHDRAWN
    request.withdrawn_at = timezone.now()
    request.withdrawal_reason = reason
    request.save()
    _status_change(request, actor, old, reason)
    _audit("assistance.withdraw", actor, request)
    _publish(request)
    return request


@transaction.atomic
def close(actor: Actor, request: AssistanceRequest) -> AssistanceRequest:
    """Close an answered or withdrawn request: nothing more is written on it. Either party's
    analysts; audited as ``assistance.close``."""
    _acting_organisation(actor, request)
    _require_status(request, CLOSABLE, _("closed"))
    old = request.status
    request.status = RequestStatus.CLOSED
    request.closed_at = timezone.now()
    request.save()
    _status_change(request, actor, old)
    _audit("assistance.close", actor, request)
    _publish(request)
    return request


def _require_writable(actor: Actor, request: AssistanceRequest) -> Organisation | None:
    organisation = _acting_organisation(actor, request)
    if request.status == RequestStatus.CLOSED:
        raise ValidationError(
            _("%(ref)s is closed; nothing more is written on it.") % {"ref": request.reference}
        )
    if request.status == RequestStatus.DRAFT and (
        organisation is None or organisation.pk != request.requesting_organisation_id
    ):
        raise ValidationError(_("%(ref)s is a draft; submit it first.") % {"ref": request.reference})
    return organisation


def _count_response(request: AssistanceRequest, organisation: Organisation | None, now: datetime) -> None:
    if (
        organisation is not None
        and organisation.pk == request.requested_organisation_id
        and request.first_response_at is None
        and request.status != RequestStatus.DRAFT
    ):
        request.first_response_at = now
        request.save(update_fields=["first_response_at", "updated_at"])


@transaction.atomic
def post_message(actor: Actor, request: AssistanceRequest, text: str) -> ThreadEntry:
    """Write on the request's thread. The requested side's first message is its first
    response. Either party's analysts; audited as ``assistance.message`` (length, not text)."""
    organisation = _require_writable(actor, request)
    text = _clean_text(text, "text", required=True, limit=MAX_TEXT)
    entry = _thread(request, EntryKind.MESSAGE, actor, text, organisation=organisation)
    _count_response(request, organisation, entry.created_at)
    _audit("assistance.message", actor, request, entry=entry.pk, length=len(text))
    _publish(request)
    return entry


# --- attachments -------------------------------------------------------------------------------


def max_attachment_bytes() -> int:
    return int(getattr(settings, "MINGA_ASSISTANCE_MAX_ATTACHMENT_BYTES", DEFAULT_MAX_ATTACHMENT_BYTES))


def attachment_root() -> Path:
    return Path(settings.VAR_DIR) / "assistance" / "files"


def attachment_path(sha256: str) -> Path:
    """Where the bytes of a file with this SHA-256 live (content-addressed, outside the database)."""
    return attachment_root() / sha256[:2] / sha256


def _store(chunks: Iterable[bytes]) -> tuple[str, int]:
    """Write the chunks to a temporary file beside the store while hashing them, refuse them
    past the limit, then move the file to its content address."""
    limit = max_attachment_bytes()
    root = attachment_root()
    root.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, temporary = tempfile.mkstemp(dir=root, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise ValidationError(
                        {
                            "file": _("The file is larger than %(limit)d bytes, the most this node accepts.")
                            % {"limit": limit}
                        }
                    )
                digest.update(chunk)
                handle.write(chunk)
        if size == 0:
            raise ValidationError({"file": _("The file is empty.")})
        sha = digest.hexdigest()
        target = attachment_path(sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temporary, target)
        return sha, size
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _clean_filename(name: str) -> str:
    base = os.path.basename(str(name or "").replace("\\", "/")).replace("\x00", "").strip()
    base = "".join(c for c in base if c.isprintable() and c not in '"<>')
    return base[:200] or "attachment"


@transaction.atomic
def add_attachment(
    actor: Actor, request: AssistanceRequest, *, filename: str, content_type: str, chunks: Iterable[bytes]
) -> Attachment:
    """Attach a file (at most ``MINGA_ASSISTANCE_MAX_ATTACHMENT_BYTES``), stored by its SHA-256
    under the node's var folder. Either party's analysts; audited as ``assistance.attach`` with
    the file's size and hash."""
    organisation = _require_writable(actor, request)
    sha, size = _store(chunks)
    attachment = Attachment.objects.create(
        request=request,
        filename=_clean_filename(filename),
        content_type=(content_type or "application/octet-stream")[:100],
        size=size,
        sha256=sha,
        uploaded_by=_author(actor),
        organisation=organisation or request.requesting_organisation,
    )
    _thread(
        request,
        EntryKind.ATTACHMENT,
        actor,
        details={"attachment": attachment.pk, "filename": attachment.filename, "size": size},
        organisation=organisation,
    )
    _count_response(request, organisation, attachment.created_at)
    _audit("assistance.attach", actor, request, attachment=attachment.pk, size=size, sha256=sha)
    _publish(request)
    return attachment


def open_attachment(actor: Actor, attachment: Attachment) -> Any:
    """The attachment's bytes as an open file, for a reader the caller has found to be a party
    (``queries.attachment_or_404``). Audited as ``assistance.download``."""
    path = attachment_path(attachment.sha256)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise ValidationError(_("The file of this attachment is missing from the node's storage.")) from None
    with transaction.atomic():
        _audit(
            "assistance.download",
            actor,
            attachment.request,
            attachment=attachment.pk,
            sha256=attachment.sha256,
        )
    return handle


# --- escalation ----------------------------------------------------------------------------------


def _escalate(request_id: int, now: datetime) -> str | None:
    """One step of escalation for one request, in its own transaction. The step is claimed with
    one conditional UPDATE, so two sweeps at once (or one run twice) escalate it once."""
    with transaction.atomic():
        request = (
            AssistanceRequest.objects.select_related("requesting_organisation", "requested_organisation")
            .filter(pk=request_id, status=RequestStatus.SUBMITTED)
            .first()
        )
        if request is None or request.acknowledge_by is None or request.submitted_at is None:
            return None
        window = request.acknowledge_by - request.submitted_at
        level = request.escalation_level
        if level == Escalation.NONE and now >= request.acknowledge_by:
            chain = contact_chain(request.requested_organisation_id)
            primary, following = (chain[0], chain[1:]) if chain else (None, [])
            following = [c for c in following if primary is None or c.email != primary.email]
            new_level = Escalation.NEXT_CONTACT if following else Escalation.COORDINATOR
        elif (
            level == Escalation.NEXT_CONTACT and request.escalated_at and now >= request.escalated_at + window
        ):
            new_level = Escalation.COORDINATOR
            primary, following = None, []
        else:
            return None
        claimed = AssistanceRequest.objects.filter(
            pk=request.pk, status=RequestStatus.SUBMITTED, escalation_level=level
        ).update(escalation_level=new_level, escalated_at=now)
        if not claimed:
            return None
        request.escalation_level, request.escalated_at = new_level, now
        if new_level == Escalation.NEXT_CONTACT:
            contact = following[0]
            recipients = sorted({contact.email, *([primary.email] if primary else [])})
            _queue_mail(request, "escalated", new_level, recipients, _contact_language(contact))
            told = [contact.name]
        else:
            recipients = coordinator_addresses()
            _queue_mail(request, "escalated", new_level, recipients, settings.LANGUAGE_CODE)
            told = [_("the network coordinator")] if recipients else []
        overdue = int((now - request.acknowledge_by).total_seconds())
        _thread(
            request,
            EntryKind.ESCALATION,
            None,
            details={"level": new_level, "notified": [str(t) for t in told], "overdue_seconds": overdue},
        )
        _audit(
            "assistance.escalate",
            None,
            request,
            level=new_level,
            recipients=recipients,
            overdue_seconds=overdue,
        )
        return request.reference


def _answer_overdue(request_id: int, now: datetime) -> str | None:
    """Tell the requested desk and the network coordinator, once, that an open request was not
    answered by its deadline. Claimed with one conditional UPDATE, like an escalation step."""
    with transaction.atomic():
        claimed = AssistanceRequest.objects.filter(
            pk=request_id,
            status__in=OPEN_STATUSES,
            answered_at__isnull=True,
            respond_by__lte=now,
            answer_overdue_at__isnull=True,
        ).update(answer_overdue_at=now)
        if not claimed:
            return None
        request = AssistanceRequest.objects.select_related(
            "requesting_organisation", "requested_organisation"
        ).get(pk=request_id)
        chain = contact_chain(request.requested_organisation_id)
        told: list[str] = []
        recipients: list[str] = []
        if chain:
            _queue_mail(request, "answer_overdue", 0, [chain[0].email], _contact_language(chain[0]))
            told.append(chain[0].name)
            recipients.append(chain[0].email)
        coordinators = coordinator_addresses()
        if _queue_mail(
            request, "answer_overdue", Escalation.COORDINATOR, coordinators, settings.LANGUAGE_CODE
        ):
            told.append(str(_("the network coordinator")))
            recipients += coordinators
        assert request.respond_by is not None
        overdue = int((now - request.respond_by).total_seconds())
        _thread(
            request,
            EntryKind.ESCALATION,
            None,
            details={"answer": True, "notified": told, "overdue_seconds": overdue},
        )
        _audit("assistance.answer_overdue", None, request, recipients=recipients, overdue_seconds=overdue)
        return request.reference


def escalate_overdue(now: datetime | None = None) -> list[str]:
    """Escalate every submitted request not acknowledged in time: first to the requested
    organisation's next contact (level 1), and when another acknowledgement period passes
    unanswered, to the network coordinator (level 2). Open requests not answered by their
    deadline are reported once to the requested desk and the coordinator. Each step is e-mailed,
    written on the request's thread and audited (``assistance.escalate``,
    ``assistance.answer_overdue``); running it again does nothing twice. Returns the
    references escalated or reported."""
    now = now or timezone.now()
    # A request asked of another node escalates there, where the requested side's desk is.
    due = AssistanceRequest.objects.filter(
        requested_node="",
        status=RequestStatus.SUBMITTED,
        acknowledge_by__lte=now,
        escalation_level__lt=Escalation.COORDINATOR,
    ).values_list("pk", flat=True)
    done = []
    for pk in list(due[:1000]):
        reference = _escalate(pk, now)
        if reference is not None:
            done.append(reference)
    unanswered = AssistanceRequest.objects.filter(
        requested_node="",
        status__in=OPEN_STATUSES,
        respond_by__lte=now,
        answered_at__isnull=True,
        answer_overdue_at__isnull=True,
    ).values_list("pk", flat=True)
    for pk in list(unanswered[:1000]):
        reference = _answer_overdue(pk, now)
        if reference is not None:
            done.append(reference)
    return done


# --- the outbox's e-mail -----------------------------------------------------------------------


class NotDelivered(Exception):
    """An e-mail could not go out now; the task tries again later."""


def _link(request: AssistanceRequest) -> str:
    return f"{settings.MINGA_PUBLIC_URL.rstrip('/')}/assistance/{request.reference}/"


def mail_message(mail: RequestMail) -> tuple[str, str]:
    """Subject and body of an e-mail, in the active language. E-mail leaves the node in clear,
    and the coordinator is one of its readers, so it carries the metadata (reference, parties,
    kind, priority, deadlines in UTC) and a link, never the subject, text or files."""
    request = mail.request
    values = {
        "ref": request.reference,
        "kind": request.get_kind_display(),
        "priority": request.get_priority_display(),
        "from": request.requesting_organisation.name,
        "to": request.requested_organisation.name,
        "state": request.requested_state.code,
        "ack": request.acknowledge_by.strftime("%Y-%m-%d %H:%M UTC") if request.acknowledge_by else "-",
        "respond": request.respond_by.strftime("%Y-%m-%d %H:%M UTC") if request.respond_by else "-",
        "link": _link(request),
    }
    if mail.event == "submitted":
        subject = _("[%(priority)s] Assistance request %(ref)s for %(to)s") % values
        lead = _("%(from)s asks %(to)s for assistance.") % values
    elif mail.event == "answer_overdue":
        subject = _("[%(priority)s] Overdue: assistance request %(ref)s is not answered") % values
        lead = _("%(to)s (%(state)s) has not answered this request from %(from)s by its deadline.") % values
    elif mail.level == Escalation.NEXT_CONTACT:
        subject = _("[%(priority)s] Escalated: assistance request %(ref)s is not acknowledged") % values
        lead = (
            _(
                "The 24/7 desk of %(to)s has not acknowledged this request by its deadline; "
                "you are its next contact."
            )
            % values
        )
    else:
        subject = _("[%(priority)s] Escalated to the coordinator: %(ref)s is not acknowledged") % values
        lead = (
            _(
                "%(to)s (%(state)s) has not acknowledged this request from %(from)s, "
                "even after it was escalated to its next contact."
            )
            % values
        )
    body = (
        lead
        + "\n\n"
        + _(
            "Reference: %(ref)s\nKind: %(kind)s\nPriority: %(priority)s\nFrom: %(from)s\nTo: %(to)s\n"
            "Acknowledge by: %(ack)s\nAnswer by: %(respond)s\n\n"
            "Sign in to read and acknowledge it: %(link)s\n"
        )
        % values
    )
    return subject, body


def deliver_mail(mail_id: int) -> str:
    """Send one e-mail of the outbox to the addresses chosen when it was written. The attempt
    claims the row first (one conditional UPDATE), so two attempts never send it twice at once.
    Audited: ``assistance.mail_delivered`` or ``assistance.mail_failed`` (then ``NotDelivered``
    is raised, and the task retries)."""
    now = timezone.now()
    claimed = RequestMail.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now), pk=mail_id, status=DeliveryStatus.PENDING
    ).update(claimed_until=now + timedelta(seconds=CLAIM_SECONDS), attempts=F("attempts") + 1)
    if not claimed:
        return "delivered already, gone, or being sent"
    mail = RequestMail.objects.select_related(
        "request__requesting_organisation", "request__requested_organisation", "request__requested_state"
    ).get(pk=mail_id)
    try:
        with translation.override(mail.language):
            subject, body = mail_message(mail)
        send_mail(subject, body, None, list(mail.recipients))
    except Exception as exc:
        error = str(exc)[:1000] or type(exc).__name__
        with transaction.atomic():
            RequestMail.objects.filter(pk=mail_id).update(claimed_until=None, last_error=error)
            _audit(
                "assistance.mail_failed", None, mail.request, mail=mail_id, attempt=mail.attempts, error=error
            )
        raise NotDelivered(error) from exc
    with transaction.atomic():
        RequestMail.objects.filter(pk=mail_id).update(
            status=DeliveryStatus.DELIVERED, delivered_at=timezone.now(), claimed_until=None, last_error=""
        )
        _audit(
            "assistance.mail_delivered",
            None,
            mail.request,
            mail=mail_id,
            event=mail.event,
            level=mail.level,
            recipients=mail.recipients,
            attempt=mail.attempts,
        )
    return f"sent to {len(mail.recipients)} address(es)"
