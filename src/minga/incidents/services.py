"""Domain operations on incidents. Each checks who may act, changes the rows in one
transaction, writes the timeline entry and the audit entry there, and puts what must be told
into the outbox (``Notification``) in the same transaction.

Who may do what:

* open an incident: analysts, liaisons and admins of the reporting organisation;
* coordinate (edit, change status, observables, participants, tasks, merge): such members of the
  reporting or of the coordinating organisation;
* contribute (comment, link intelligence): coordinators and such members of an organisation
  that takes part (added and not removed), provided the incident's TLP lets them read it;
* acknowledge or decline: such members of the participant organisation.

``actor=None`` is the node itself, on an operator's command (the CLI, the demo loader).
"""

from __future__ import annotations

import ipaddress
import json
import mimetypes
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.encoders import encode_7or8bit
from email.mime.application import MIMEApplication
from email.mime.text import MIMEText
from typing import TYPE_CHECKING, Any, BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage, get_connection
from django.core.mail.message import SafeMIMEMultipart
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Prefetch, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from minga.core import access, audit
from minga.core.choices import TLP, WORKING_ROLES
from minga.core.models import AuditEntry, Membership, Organisation, User
from minga.directory import resolution
from minga.directory.choices import ContactRole, OrganisationKind
from minga.directory.constituency import MAX_ASN, normalise_domain
from minga.directory.models import MemberState, OrganisationProfile, PointOfContact, Sector
from minga.incidents import storage
from minga.incidents.choices import (
    AWAITING_ACK,
    CUSTODIAN_CHANGES,
    NOTIFICATION_SUBJECTS,
    PAP,
    READING_STATUSES,
    REASON_REQUIRED,
    RECORDED_BY_HAND,
    TAXONOMY_OF,
    TRANSITIONS,
    Channel,
    CustodyAction,
    DeliveryStatus,
    EventType,
    EvidenceStatus,
    IncidentStatus,
    ObservableKind,
    ParticipantStatus,
    Severity,
    TaskStatus,
    TimelineKind,
)
from minga.incidents.models import (
    CustodyEvent,
    Evidence,
    Incident,
    IncidentEvent,
    IncidentLink,
    IncidentObservable,
    IncidentTask,
    Notification,
    Participant,
    ReferenceCounter,
    TimelineEntry,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    Actor = User | AnonymousUser | None

MAX_OBSERVABLES = 1000  # per call: a list pasted from a report, not a feed (feeds go to the pipeline)
MAX_TEXT = 8000  # a description or a comment; longer material is evidence
CLAIM_SECONDS = 600  # how long an e-mail attempt holds its notification


# --- who may act -------------------------------------------------------------------------------


def working_organisation_ids(actor: Actor) -> set[int]:
    """Organisations in whose name ``actor`` works on incidents."""
    if actor is None or not actor.is_authenticated or not actor.is_active:
        return set()
    return set(
        Membership.objects.filter(user_id=actor.pk, is_active=True, role__in=WORKING_ROLES).values_list(
            "organisation_id", flat=True
        )
    )


def may_open(actor: Actor, organisation: Organisation) -> bool:
    return actor is None or organisation.pk in working_organisation_ids(actor)


def may_coordinate(actor: Actor, incident: Incident) -> bool:
    if incident.coordinating_node:
        return False  # a mirror: coordinated on its node
    if actor is None:
        return True
    if not access.can_read(actor, incident):
        return False
    own = working_organisation_ids(actor)
    return bool(own & {incident.origin_organisation_id, incident.coordinating_organisation_id})


def participating_ids(incident: Incident) -> set[int]:
    return set(
        incident.participants.filter(status__in=READING_STATUSES).values_list("organisation_id", flat=True)
    )


def may_contribute(actor: Actor, incident: Incident) -> bool:
    # The coordinators, and the participants that read: one policy check, one membership query.
    if actor is None:
        return True
    if not access.can_read(actor, incident):
        return False
    own = working_organisation_ids(actor)
    if own & {incident.origin_organisation_id, incident.coordinating_organisation_id}:
        return True
    return bool(own & participating_ids(incident))


def _require_coordinator(actor: Actor, incident: Incident) -> None:
    if incident.coordinating_node:
        raise ValidationError(
            _("%(ref)s is coordinated on node %(node)s: only its participants' own answers are made here.")
            % {"ref": incident.reference, "node": incident.coordinating_node}
        )
    if not may_coordinate(actor, incident):
        raise PermissionDenied(
            _("Only the reporting and coordinating organisations' analysts may do this on %(ref)s.")
            % {"ref": incident.reference}
        )


def _require_contributor(actor: Actor, incident: Incident) -> None:
    if not may_contribute(actor, incident):
        raise PermissionDenied(
            _("Only the organisations taking part in %(ref)s may do this.") % {"ref": incident.reference}
        )


def _not_merged(incident: Incident) -> None:
    if incident.merged_into_id is not None:
        raise ValidationError(
            _("%(ref)s was merged into another incident; work on that one.") % {"ref": incident.reference}
        )


# --- references ----------------------------------------------------------------------------------


def allocate_reference(now: datetime | None = None) -> str:
    """The next reference of the year, ``MNG-YYYY-NNNNNN``. Call it inside the transaction that
    stores the incident: concurrent callers queue on the counter's row (PostgreSQL) or on the
    database's write lock (SQLite), and a rollback gives the number back, so numbers have no gaps
    and no duplicates. A number held by the mirror of an incident coordinated on another node
    (which keeps that node's reference) is skipped."""
    year = (now or timezone.now()).year
    while True:
        if not ReferenceCounter.objects.filter(year=year).update(last=F("last") + 1):
            try:
                with transaction.atomic():  # the first of the year: two may try at once
                    ReferenceCounter.objects.create(year=year, last=1)
            except IntegrityError:
                ReferenceCounter.objects.filter(year=year).update(last=F("last") + 1)
        number = ReferenceCounter.objects.values_list("last", flat=True).get(year=year)
        reference = f"MNG-{year}-{number:06d}"
        if not Incident.objects.filter(reference=reference).exists():
            return reference


# --- helpers ---------------------------------------------------------------------------------


def _author(actor: Actor) -> User | None:
    """The user to name as author of a row: ``None`` for the system or an anonymous caller."""
    return actor if actor is not None and actor.is_authenticated else None  # type: ignore[return-value]


def _timeline(
    incident: Incident,
    kind: str,
    actor: Actor,
    text: str = "",
    details: dict[str, Any] | None = None,
    organisation: Organisation | None = None,
) -> TimelineEntry:
    user = _author(actor)
    return TimelineEntry.objects.create(
        incident=incident,
        kind=kind,
        actor=user,
        organisation=organisation,
        text=text,
        details=details or {},
    )


def _audit(action: str, actor: Actor, incident: Incident, **details: Any) -> None:
    audit.record(
        action,
        actor=actor,
        obj=incident,
        organisation=incident.origin_organisation,
        details={"reference": incident.reference, **details},
    )
    # Every change is audited here, once, in its transaction: the place where it is also
    # published to the participants' nodes (a new version of the incident, or a participant's
    # update of a mirror), committed with it.
    from minga.incidents.federation import changed

    changed(incident, action, details)


def _clean_text(value: Any, field: str, *, required: bool, limit: int) -> str:
    text = str(value or "").replace("\x00", "").strip()
    if required and not text:
        raise ValidationError({field: _("This field is required.")})
    if len(text) > limit:
        raise ValidationError({field: _("At most %(n)d characters.") % {"n": limit}})
    return text


def _choice(value: Any, choices: Any, field: str) -> str:
    if value not in choices.values:
        raise ValidationError({field: _("%(value)s is not a valid choice.") % {"value": str(value)[:40]}})
    return str(value)


def _classification(taxonomy: str, kind: str) -> tuple[str, str]:
    kind = _choice(kind, EventType, "type")
    expected = TAXONOMY_OF[kind]
    if taxonomy and taxonomy != expected:
        raise ValidationError(
            {
                "type": _("The RSIT type %(type)s belongs to the taxonomy %(taxonomy)s.")
                % {"type": kind, "taxonomy": expected}
            }
        )
    return expected, kind


def _sync_recipients(incident: Incident) -> None:
    """The incident's recipient organisations are its coordinator and its reading participants."""
    ids = participating_ids(incident) | {incident.coordinating_organisation_id}
    ids.discard(incident.origin_organisation_id)
    incident.recipient_organisations.set(ids)


def _name_author(incident: Incident, actor: Actor) -> None:
    # TLP:RED is read by named people only: the author is always one of them.
    if incident.tlp == TLP.RED and actor is not None and actor.is_authenticated:
        incident.recipient_users.add(actor)  # type: ignore[arg-type]


# --- opening and editing -------------------------------------------------------------------------


@transaction.atomic
def open_incident(
    actor: Actor,
    organisation: Organisation,
    *,
    title: str,
    type: str,
    description: str = "",
    taxonomy: str = "",
    severity: str = Severity.MEDIUM,
    tlp: str = TLP.AMBER,
    pap: str = PAP.AMBER,
    coordinating_organisation: Organisation | None = None,
    affected_states: Iterable[MemberState] = (),
    affected_sectors: Iterable[Sector] = (),
    affected_organisations: Iterable[Organisation] = (),
    observables: Sequence[str] = (),
    links: Sequence[str] = (),
    events: Sequence[int] = (),
) -> Incident:
    """Open an incident reported by ``organisation``, with the next reference of the year, its
    observables and links to intelligence objects ``actor`` may read (an incident opened from
    an object). Audited as ``incident.open``. A coordinator other than the reporter becomes a
    participant that has acknowledged."""
    if not may_open(actor, organisation):
        raise PermissionDenied(
            _("Only analysts and admins of %(organisation)s may open incidents in its name.")
            % {"organisation": organisation.short_name}
        )
    title = _clean_text(title, "title", required=True, limit=200)
    description = _clean_text(description, "description", required=False, limit=MAX_TEXT)
    taxonomy, kind = _classification(taxonomy, type)
    severity = _choice(severity, Severity, "severity")
    tlp = _choice(tlp, TLP, "tlp")
    pap = _choice(pap, PAP, "pap")
    if tlp == TLP.RED and (actor is None or not actor.is_authenticated):
        raise ValidationError({"tlp": _("A TLP:RED incident is read by named people: open it as a person.")})
    coordinator = coordinating_organisation or organisation
    now = timezone.now()
    incident = Incident.objects.create(
        reference=allocate_reference(now),
        title=title,
        description=description,
        taxonomy=taxonomy,
        type=kind,
        severity=severity,
        tlp=tlp,
        pap=pap,
        origin_organisation=organisation,
        coordinating_organisation=coordinator,
        created_by=_author(actor),
    )
    incident.affected_states.set(list(affected_states))
    incident.affected_sectors.set(list(affected_sectors))
    incident.affected_organisations.set(list(affected_organisations))
    _name_author(incident, actor)
    if coordinator != organisation:
        Participant.objects.create(
            incident=incident,
            organisation=coordinator,
            status=ParticipantStatus.ACKNOWLEDGED,
            added_at=now,
            acknowledged_at=now,
        )
    _sync_recipients(incident)
    _timeline(incident, TimelineKind.OPENED, actor, organisation=organisation)
    _audit(
        "incident.open",
        actor,
        incident,
        title=title,
        type=kind,
        severity=severity,
        tlp=tlp,
        pap=pap,
        coordinator=coordinator.short_name,
    )
    if observables:
        add_observables(actor, incident, observables)
    for stix_id in dict.fromkeys(links):
        link_object(actor, incident, stix_id)
    if events:
        link_events(actor, incident, events)
    return incident


EDITABLE = (
    "title",
    "description",
    "type",
    "severity",
    "tlp",
    "pap",
    "coordinating_organisation",
    "affected_states",
    "affected_sectors",
    "affected_organisations",
)


@transaction.atomic
def update_incident(actor: Actor, incident: Incident, **changes: Any) -> Incident:
    """Change the incident's description, classification, severity, TLP, PAP, coordinator or
    what it affects. Coordinators only; audited as ``incident.update`` with what changed."""
    _require_coordinator(actor, incident)
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValidationError(_("These fields cannot be changed: %(names)s.") % {"names": ", ".join(unknown)})
    changed: dict[str, Any] = {}
    if "title" in changes:
        changes["title"] = _clean_text(changes["title"], "title", required=True, limit=200)
    if "description" in changes:
        changes["description"] = _clean_text(
            changes["description"], "description", required=False, limit=MAX_TEXT
        )
    if "type" in changes:
        incident_taxonomy, changes["type"] = _classification("", changes["type"])
        if incident_taxonomy != incident.taxonomy:
            changed["taxonomy"] = {"from": incident.taxonomy, "to": incident_taxonomy}
            incident.taxonomy = incident_taxonomy
    for name, choices in (("severity", Severity), ("tlp", TLP), ("pap", PAP)):
        if name in changes:
            changes[name] = _choice(changes[name], choices, name)
    if changes.get("tlp") == TLP.RED and (actor is None or not actor.is_authenticated):
        raise ValidationError(
            {"tlp": _("A TLP:RED incident is read by named people: change it as a person.")}
        )
    for name in ("title", "description", "type", "severity", "tlp", "pap"):
        if name in changes and getattr(incident, name) != changes[name]:
            changed[name] = {"from": getattr(incident, name), "to": changes[name]}
            setattr(incident, name, changes[name])
    coordinator = changes.get("coordinating_organisation")
    if coordinator is not None and coordinator.pk != incident.coordinating_organisation_id:
        changed["coordinator"] = {
            "from": incident.coordinating_organisation.short_name,
            "to": coordinator.short_name,
        }
        incident.coordinating_organisation = coordinator
    incident.save()
    for name in ("affected_states", "affected_sectors", "affected_organisations"):
        if name in changes:
            manager = getattr(incident, name)
            before = set(manager.values_list("pk", flat=True))
            after = {o.pk for o in changes[name]}
            if before != after:
                manager.set(list(changes[name]))
                changed[name] = sorted(str(o) for o in changes[name])
    if "tlp" in changed:
        _name_author(incident, actor)
    if "coordinator" in changed:
        _sync_recipients(incident)
    if changed:
        _timeline(incident, TimelineKind.EDITED, actor, details={"changed": sorted(changed)})
        _audit("incident.update", actor, incident, changes=changed)
    return incident


@transaction.atomic
def change_status(actor: Actor, incident: Incident, status: str, reason: str = "") -> Incident:
    """Move the incident along its lifecycle (``choices.TRANSITIONS``); resolving, closing and
    reopening need a reason. Coordinators only; audited as ``incident.status``."""
    _require_coordinator(actor, incident)
    _not_merged(incident)
    status = _choice(status, IncidentStatus, "status")
    reason = _clean_text(reason, "reason", required=False, limit=MAX_TEXT)
    old = incident.status
    if status not in TRANSITIONS[old]:
        raise ValidationError(
            {
                "status": _("An incident that is %(from)s cannot become %(to)s.")
                % {"from": IncidentStatus(old).label, "to": IncidentStatus(status).label}
            }
        )
    if (old, status) in REASON_REQUIRED and not reason:
        raise ValidationError({"reason": _("Say why: this change needs a reason.")})
    now = timezone.now()
    incident.status, incident.status_reason = status, reason
    if status == IncidentStatus.RESOLVED:
        incident.resolved_at = now
    if status == IncidentStatus.CLOSED:
        incident.closed_at = now
    if status == IncidentStatus.IN_PROGRESS:
        incident.resolved_at = incident.closed_at = None
    incident.save()
    _timeline(incident, TimelineKind.STATUS, actor, reason, {"from": old, "to": status})
    _audit("incident.status", actor, incident, **{"from": old, "to": status, "reason": reason})
    return incident


# --- observables and participants -------------------------------------------------------------


def parse_observable(text: str) -> tuple[str, str]:
    """An IP address, an AS number ("AS64500" or "64500") or a domain, in canonical form.
    Raises ``ValueError`` with a message a person can act on."""
    raw = text.strip()
    if not raw:
        raise ValueError(_("The value is empty."))
    try:
        return ObservableKind.IP, str(ipaddress.ip_address(raw))
    except ValueError:
        pass
    digits = raw[2:] if raw[:2].upper() == "AS" else raw
    if digits.isdigit():
        if not 0 < int(digits) <= MAX_ASN:
            raise ValueError(_("%(text)s is not an AS number (AS1 to AS4294967295).") % {"text": raw[:40]})
        return ObservableKind.ASN, str(int(digits))
    if raw.replace(".", "").isdigit() or ":" in raw or "/" in raw:
        raise ValueError(_("%(text)s is not an IP address.") % {"text": raw[:60]})
    return ObservableKind.DOMAIN, normalise_domain(raw)


@transaction.atomic
def add_observables(actor: Actor, incident: Incident, values: Sequence[str]) -> list[IncidentObservable]:
    """Add IP addresses, AS numbers and domains to the incident, all or nothing: a bad value is
    reported with its position. Coordinators only; audited as ``incident.observables``."""
    _require_coordinator(actor, incident)
    values = [v for v in (str(v).replace("\x00", "") for v in values) if v.strip()]
    if len(values) > MAX_OBSERVABLES:
        raise ValidationError({"observables": _("At most %(n)d values at a time.") % {"n": MAX_OBSERVABLES}})
    parsed, problems = [], []
    for position, value in enumerate(values, start=1):
        try:
            parsed.append(parse_observable(value))
        except ValueError as exc:
            problems.append(_("Value %(n)d: %(error)s") % {"n": position, "error": exc})
    if problems:
        raise ValidationError({"observables": problems[:20]})
    existing = set(incident.observables.values_list("kind", "value"))
    fresh = [pair for pair in dict.fromkeys(parsed) if pair not in existing]
    created = IncidentObservable.objects.bulk_create(
        [IncidentObservable(incident=incident, kind=k, value=v) for k, v in fresh]
    )
    if created:
        shown = [f"{k}:{v}" for k, v in fresh]
        _timeline(
            incident, TimelineKind.OBSERVABLE, actor, details={"added": shown[:50], "count": len(shown)}
        )
        _audit("incident.observables", actor, incident, added=shown[:200], count=len(shown))
    return created


def affected_constituencies(incident: Incident) -> dict[int, dict[str, Any]]:
    """Who answers for the incident's observables, resolved in one batch through the directory's
    resolution service, with the national CSIRTs of the owners' states: organisation id →
    {"basis": {"owner", "national_csirt"}, "observables": [...]}."""
    index = resolution.current()
    rows = list(incident.observables.values_list("kind", "value"))
    by_kind: dict[str, list[str]] = {ObservableKind.IP: [], ObservableKind.ASN: [], ObservableKind.DOMAIN: []}
    for kind, value in rows:
        by_kind[kind].append(value)
    answers: dict[str, list[tuple[int, ...] | None]] = {
        ObservableKind.IP: index.resolve_ips(by_kind[ObservableKind.IP]),
        ObservableKind.ASN: index.resolve_asns([int(a) for a in by_kind[ObservableKind.ASN]]),
        ObservableKind.DOMAIN: index.resolve_domains(by_kind[ObservableKind.DOMAIN]),
    }
    found: dict[int, dict[str, Any]] = {}

    def note(org_id: int, basis: str, observable: str) -> None:
        entry = found.setdefault(org_id, {"basis": set(), "observables": []})
        entry["basis"].add(basis)
        if observable not in entry["observables"]:
            entry["observables"].append(observable)

    owners_of: dict[int, list[str]] = {}
    for kind, values in by_kind.items():
        for value, owners in zip(values, answers[kind], strict=True):
            for org_id in owners or ():
                note(org_id, "owner", value)
                owners_of.setdefault(org_id, []).append(value)
    states = dict(
        OrganisationProfile.objects.filter(organisation_id__in=owners_of, state__isnull=False).values_list(
            "organisation_id", "state_id"
        )
    )
    national = OrganisationProfile.objects.filter(
        kind=OrganisationKind.NATIONAL_CSIRT, state_id__in=set(states.values())
    ).values_list("organisation_id", "state_id")
    for org_id, state_id in national:
        for owner, owner_state in states.items():
            if owner_state == state_id:
                for value in owners_of[owner]:
                    note(org_id, "national_csirt", value)
    return found


@transaction.atomic
def propose_participants(actor: Actor, incident: Incident) -> list[Participant]:
    """Resolve the observables and propose their owners and the national CSIRTs of the owners'
    states as participants. A proposal grants nothing: the coordinator adds whom it chooses.
    Coordinators only; audited as ``incident.propose``."""
    _require_coordinator(actor, incident)
    _not_merged(incident)
    found = affected_constituencies(incident)
    found.pop(incident.origin_organisation_id, None)
    found.pop(incident.coordinating_organisation_id, None)
    existing = {p.organisation_id: p for p in incident.participants.all()}
    now = timezone.now()
    proposed = []
    for org_id, why in sorted(found.items()):
        proposal = {"basis": sorted(why["basis"]), "observables": why["observables"][:50]}
        participant = existing.get(org_id)
        if participant is None:
            participant = Participant.objects.create(
                incident=incident, organisation_id=org_id, proposal=proposal, proposed_at=now
            )
        elif participant.status == ParticipantStatus.PROPOSED:
            participant.proposal = proposal
            participant.save(update_fields=["proposal"])
        else:
            continue
        proposed.append(participant)
    names = dict(
        Organisation.objects.filter(pk__in=[p.organisation_id for p in proposed]).values_list(
            "pk", "short_name"
        )
    )
    shown = [names[p.organisation_id] for p in proposed]
    if proposed:
        _timeline(incident, TimelineKind.PARTICIPANT, actor, details={"proposed": shown})
    _audit("incident.propose", actor, incident, proposed=shown, observables=incident.observables.count())
    return proposed


def _participant_message(incident: Incident, event: str, *, sealed: bool = False) -> tuple[str, str]:
    """Subject and body of a notification. What may travel in clear (e-mail without OpenPGP, the
    outbox's in-app line) carries the reference, severity, TLP, PAP, coordinator and a link, never
    the title or the description: the reader signs in to read what the TLP allows. A body
    ``sealed`` (encrypted to the 24/7 contact's OpenPGP key) names the title too, unless the
    incident is TLP:RED (named people only, which a desk's mailbox is not). The subject always
    travels in clear."""
    link = f"{settings.MINGA_PUBLIC_URL.rstrip('/')}/incidents/{incident.reference}/"
    subject = str(NOTIFICATION_SUBJECTS[event]) % {"ref": incident.reference}
    facts = {
        "subject": subject,
        "ref": incident.reference,
        "severity": incident.get_severity_display(),
        "tlp": incident.get_tlp_display(),
        "pap": incident.get_pap_display(),
        "coordinator": incident.coordinating_organisation.name,
        "link": link,
    }
    if sealed and incident.tlp != TLP.RED:
        body = _(
            "%(subject)s.\n\nReference: %(ref)s\nTitle: %(title)s\nSeverity: %(severity)s\n"
            "%(tlp)s, %(pap)s\nCoordinator: %(coordinator)s\n\nSign in to read it and acknowledge: "
            "%(link)s\n"
        ) % {**facts, "title": incident.title}
        return subject, body
    body = (
        _(
            "%(subject)s.\n\nReference: %(ref)s\nSeverity: %(severity)s\n%(tlp)s, %(pap)s\n"
            "Coordinator: %(coordinator)s\n\nSign in to read it and acknowledge: %(link)s\n"
        )
        % facts
    )
    return subject, body


def _webhook_payload(incident: Incident, organisation: Organisation, event: str, subject: str) -> str:
    """The JSON a webhook receives: what an e-mail says (reference, severity, TLP, PAP, status,
    coordinator, link), never the title or the description."""
    link = f"{settings.MINGA_PUBLIC_URL.rstrip('/')}/incidents/{incident.reference}/"
    return json.dumps(
        {
            "event": event,
            "node": settings.MINGA_NODE_NAME,
            "organisation": organisation.short_name,
            "subject": subject,
            "incident": {
                "reference": incident.reference,
                "severity": incident.severity,
                "tlp": incident.tlp,
                "pap": incident.pap,
                "status": incident.status,
                "coordinator": incident.coordinating_organisation.short_name,
                "url": link,
            },
            "created_at": timezone.now().isoformat(),
        },
        sort_keys=True,
    )


def notify(incident: Incident, organisation: Organisation, event: str, *, email: bool) -> list[Notification]:
    """Put notifications of ``event`` for ``organisation`` in the outbox, in the caller's
    transaction: in-app (delivered by being written); if ``email``, one for its 24/7 contacts;
    and, when the organisation registered a webhook, one for it (whatever the event: a webhook
    is a machine asking for everything). Delivery tasks are enqueued in the same transaction
    (the queue is in the database), so they exist exactly when the change does."""
    from minga.directory.models import Webhook
    from minga.incidents import tasks

    subject, body = _participant_message(incident, event)
    now = timezone.now()
    made = [
        Notification.objects.create(
            incident=incident,
            organisation=organisation,
            channel=Channel.IN_APP,
            event=event,
            subject=subject,
            body=body,
            status=DeliveryStatus.DELIVERED,
            delivered_at=now,
        )
    ]
    if email:
        mail = Notification.objects.create(
            incident=incident,
            organisation=organisation,
            channel=Channel.EMAIL,
            event=event,
            subject=subject,
            body=body,
        )
        tasks.deliver_notification.enqueue(mail.pk)
        made.append(mail)
    if Webhook.objects.filter(organisation=organisation).exists():
        hook = Notification.objects.create(
            incident=incident,
            organisation=organisation,
            channel=Channel.WEBHOOK,
            event=event,
            subject=subject,
            body=_webhook_payload(incident, organisation, event, subject),
        )
        tasks.deliver_webhook.enqueue(hook.pk)
        made.append(hook)
    return made


@transaction.atomic
def add_participant(actor: Actor, incident: Incident, organisation: Organisation) -> Participant:
    """Add an organisation (proposed or not) as a participant: it becomes a recipient of the
    incident, reading what the TLP allows, and its 24/7 contacts are notified through the
    outbox. Coordinators only; audited as ``incident.participant_add``."""
    _require_coordinator(actor, incident)
    _not_merged(incident)
    if organisation.pk == incident.origin_organisation_id:
        raise ValidationError({"organisation": _("This is the reporting organisation.")})
    participant, _created = Participant.objects.get_or_create(incident=incident, organisation=organisation)
    if participant.status in READING_STATUSES:
        raise ValidationError(
            {"organisation": _("%(org)s takes part already.") % {"org": organisation.short_name}}
        )
    participant.status = ParticipantStatus.ADDED
    participant.added_at = timezone.now()
    participant.notified_at = participant.acknowledged_at = participant.declined_at = None
    participant.reason = ""
    participant.save()
    _sync_recipients(incident)
    notify(incident, organisation, "participant_added", email=True)
    _timeline(incident, TimelineKind.PARTICIPANT, actor, details={"added": organisation.short_name})
    _audit("incident.participant_add", actor, incident, participant=organisation.short_name)
    return participant


@transaction.atomic
def remove_participant(
    actor: Actor, incident: Incident, organisation: Organisation, reason: str = ""
) -> Participant:
    """Take an organisation out of the incident: it no longer reads it (unless the TLP lets every
    member read). Coordinators only; audited as ``incident.participant_remove``."""
    _require_coordinator(actor, incident)
    if organisation.pk == incident.coordinating_organisation_id:
        raise ValidationError({"organisation": _("Name another coordinator first.")})
    participant = incident.participants.filter(organisation=organisation).first()
    if participant is None or participant.status == ParticipantStatus.REMOVED:
        raise ValidationError(
            {"organisation": _("%(org)s does not take part.") % {"org": organisation.short_name}}
        )
    reason = _clean_text(reason, "reason", required=False, limit=MAX_TEXT)
    participant.status, participant.reason = ParticipantStatus.REMOVED, reason
    participant.save(update_fields=["status", "reason"])
    _sync_recipients(incident)
    _timeline(incident, TimelineKind.PARTICIPANT, actor, reason, {"removed": organisation.short_name})
    _audit("incident.participant_remove", actor, incident, participant=organisation.short_name, reason=reason)
    return participant


def _own_participation(actor: Actor, incident: Incident, organisation: Organisation | None) -> Participant:
    if actor is None and organisation is not None:
        # The node itself, for an organisation: a participant's answer arriving from its node.
        found_one = (
            incident.participants.filter(status__in=READING_STATUSES, organisation=organisation)
            .select_related("organisation")
            .first()
        )
        if found_one is None:
            raise PermissionDenied(
                _("%(org)s does not take part in %(ref)s.")
                % {"org": organisation.short_name, "ref": incident.reference}
            )
        return found_one
    own = working_organisation_ids(actor)
    candidates = incident.participants.filter(status__in=READING_STATUSES, organisation_id__in=own)
    if organisation is not None:
        candidates = candidates.filter(organisation=organisation)
    found = list(candidates.select_related("organisation")[:2])
    if not found or not access.can_read(actor, incident):
        raise PermissionDenied(_("Only a participant's analysts may answer for it."))
    if len(found) > 1:
        raise ValidationError({"organisation": _("Say for which of your organisations you answer.")})
    return found[0]


@transaction.atomic
def acknowledge(
    actor: Actor, incident: Incident, organisation: Organisation | None = None, *, at: datetime | None = None
) -> Participant:
    """The participant says it has taken the incident on; the time to acknowledge is counted
    from when it was added (to ``at``, when it acknowledged on its own node: never before it
    was added, never in the future). Its analysts only; audited as ``incident.acknowledge``."""
    participant = _own_participation(actor, incident, organisation)
    if participant.status == ParticipantStatus.ACKNOWLEDGED:
        raise ValidationError(
            _("%(org)s acknowledged already.") % {"org": participant.organisation.short_name}
        )
    now = timezone.now()
    if at is not None:
        at = min(max(at, participant.added_at or at), now)
    participant.status = ParticipantStatus.ACKNOWLEDGED
    participant.acknowledged_at = at or now
    participant.declined_at, participant.reason = None, ""
    participant.save()
    elapsed = participant.time_to_acknowledge
    seconds = int(elapsed.total_seconds()) if elapsed is not None else None
    notify(incident, incident.coordinating_organisation, "participant_acknowledged", email=False)
    _timeline(
        incident,
        TimelineKind.PARTICIPANT,
        actor,
        details={"acknowledged": participant.organisation.short_name, "seconds": seconds},
        organisation=participant.organisation,
    )
    _audit(
        "incident.acknowledge",
        actor,
        incident,
        participant=participant.organisation.short_name,
        time_to_acknowledge_seconds=seconds,
    )
    return participant


@transaction.atomic
def decline(
    actor: Actor, incident: Incident, reason: str, organisation: Organisation | None = None
) -> Participant:
    """The participant declines to take part, saying why. Its analysts only; audited as
    ``incident.decline``."""
    participant = _own_participation(actor, incident, organisation)
    reason = _clean_text(reason, "reason", required=True, limit=MAX_TEXT)
    if participant.status == ParticipantStatus.DECLINED:
        raise ValidationError(_("%(org)s declined already.") % {"org": participant.organisation.short_name})
    participant.status, participant.reason = ParticipantStatus.DECLINED, reason
    participant.declined_at = timezone.now()
    participant.save()
    notify(incident, incident.coordinating_organisation, "participant_declined", email=False)
    _timeline(
        incident,
        TimelineKind.PARTICIPANT,
        actor,
        reason,
        {"declined": participant.organisation.short_name},
        organisation=participant.organisation,
    )
    _audit(
        "incident.decline", actor, incident, participant=participant.organisation.short_name, reason=reason
    )
    return participant


# --- timeline, tasks, links --------------------------------------------------------------------


def _actor_organisation(actor: Actor, incident: Incident) -> Organisation | None:
    own = working_organisation_ids(actor)
    for org_id in (incident.coordinating_organisation_id, incident.origin_organisation_id):
        if org_id in own:
            return Organisation.objects.get(pk=org_id)
    ids = own & participating_ids(incident)
    return Organisation.objects.filter(pk__in=ids).order_by("name").first() if ids else None


@transaction.atomic
def comment(
    actor: Actor, incident: Incident, text: str, *, organisation: Organisation | None = None
) -> TimelineEntry:
    """Write on the shared timeline. Contributors only (the node itself names the
    ``organisation`` it writes for: a participant's comment from its node); audited as
    ``incident.comment``."""
    _require_contributor(actor, incident)
    text = _clean_text(text, "text", required=True, limit=MAX_TEXT)
    if actor is None and organisation is not None:
        allowed = participating_ids(incident) | {
            incident.origin_organisation_id,
            incident.coordinating_organisation_id,
        }
        if organisation.pk not in allowed:
            raise PermissionDenied(
                _("Only the organisations taking part in %(ref)s may do this.") % {"ref": incident.reference}
            )
    else:
        organisation = _actor_organisation(actor, incident)
    entry = _timeline(incident, TimelineKind.COMMENT, actor, text, organisation=organisation)
    _audit("incident.comment", actor, incident, entry=entry.pk, length=len(text))
    return entry


@transaction.atomic
def add_task(
    actor: Actor,
    incident: Incident,
    *,
    title: str,
    organisation: Organisation,
    due_at: datetime | None = None,
) -> IncidentTask:
    """Ask an organisation taking part for a piece of work, by a due date; it is told in the
    application. Coordinators only; audited as ``incident.task_add``."""
    _require_coordinator(actor, incident)
    _not_merged(incident)
    title = _clean_text(title, "title", required=True, limit=200)
    allowed = participating_ids(incident) | {
        incident.origin_organisation_id,
        incident.coordinating_organisation_id,
    }
    if organisation.pk not in allowed:
        raise ValidationError(
            {"organisation": _("Add %(org)s as a participant first.") % {"org": organisation.short_name}}
        )
    task = IncidentTask.objects.create(
        incident=incident,
        title=title,
        organisation=organisation,
        due_at=due_at,
        created_by=_author(actor),
    )
    notify(incident, organisation, "task_assigned", email=False)
    shown = {"task": task.pk, "title": title, "organisation": organisation.short_name, "due_at": due_at}
    _timeline(
        incident, TimelineKind.TASK, actor, title, {**shown, "due_at": due_at.isoformat() if due_at else None}
    )
    _audit("incident.task_add", actor, incident, **shown)
    return task


@transaction.atomic
def set_task_status(actor: Actor, task: IncidentTask, status: str) -> IncidentTask:
    """Mark a task done, cancelled or open again: the coordinators, or the organisation it is
    assigned to. Audited as ``incident.task_status``."""
    incident = task.incident
    status = _choice(status, TaskStatus, "status")
    own = working_organisation_ids(actor)
    if not (
        may_coordinate(actor, incident) or (task.organisation_id in own and access.can_read(actor, incident))
    ):
        raise PermissionDenied(
            _("Only the coordinators or the organisation the task is assigned to may change it.")
        )
    if task.status == status:
        return task
    old, task.status = task.status, status
    task.completed_at = timezone.now() if status == TaskStatus.DONE else None
    task.save(update_fields=["status", "completed_at"])
    _timeline(incident, TimelineKind.TASK, actor, task.title, {"task": task.pk, "from": old, "to": status})
    _audit("incident.task_status", actor, incident, task=task.pk, **{"from": old, "to": status})
    return task


@transaction.atomic
def link_object(actor: Actor, incident: Incident, stix_id: str) -> IncidentLink:
    """Link a STIX object of the intelligence store that ``actor`` may read. Contributors only;
    audited as ``incident.link``."""
    from minga.intel import queries as intel

    _require_contributor(actor, incident)
    stix_id = str(stix_id).strip()[:300]
    objects = (
        intel.latest_visible(actor) if actor is not None else intel.StixObject.objects.filter(is_latest=True)
    )
    if not objects.filter(stix_id=stix_id).exists():
        raise ValidationError(
            {"stix_id": _("No object you may read has the id %(id)s.") % {"id": stix_id[:80]}}
        )
    link, created = IncidentLink.objects.get_or_create(
        incident=incident,
        stix_id=stix_id,
        defaults={"added_by": _author(actor)},
    )
    if created:
        _timeline(incident, TimelineKind.LINK, actor, details={"linked": stix_id})
        _audit("incident.link", actor, incident, stix_id=stix_id)
    return link


MAX_EVENTS = 1000  # per call


def _readable_events(actor: Actor, event_ids: Sequence[int]) -> Any:
    from minga.pipeline import queries as pipeline
    from minga.pipeline.models import Event

    ids = list(dict.fromkeys(int(i) for i in event_ids))
    if len(ids) > MAX_EVENTS:
        raise ValidationError({"events": _("At most %(n)d events at a time.") % {"n": MAX_EVENTS}})
    events = Event.objects.all() if actor is None else pipeline.events_visible_to(actor)
    found = events.filter(pk__in=ids)
    missing = sorted(set(ids) - set(found.values_list("pk", flat=True)))
    if missing:
        raise ValidationError(
            {
                "events": _("No event you may read has the id %(ids)s.")
                % {"ids": ", ".join(str(i) for i in missing[:10])}
            }
        )
    return found


@transaction.atomic
def link_events(actor: Actor, incident: Incident, event_ids: Sequence[int]) -> list[IncidentEvent]:
    """Link feed events that ``actor`` may read, all or nothing. Contributors only; audited as
    ``incident.link_events``."""
    _require_contributor(actor, incident)
    ids = list(_readable_events(actor, event_ids).values_list("pk", flat=True))
    have = set(incident.event_links.values_list("event_id", flat=True))
    user = _author(actor)
    created = IncidentEvent.objects.bulk_create(
        [IncidentEvent(incident=incident, event_id=i, added_by=user) for i in sorted(set(ids) - have)]
    )
    if created:
        shown = [c.event_id for c in created]
        _timeline(incident, TimelineKind.LINK, actor, details={"events": shown[:50], "count": len(shown)})
        _audit("incident.link_events", actor, incident, events=shown[:200], count=len(shown))
    return created


def proposal_from_events(actor: Actor, event_ids: Sequence[int]) -> dict[str, Any]:
    """What an incident opened from feed events starts with: their most frequent RSIT type, a
    title, and their source addresses, AS numbers and domains as observables."""
    from collections import Counter

    from minga.incidents.choices import EventType as Kind

    events = list(
        _readable_events(actor, event_ids).values_list(
            "classification_type", "source_ip", "source_asn", "source_fqdn"
        )
    )
    if not events:
        raise ValidationError({"events": _("Name at least one event.")})
    kind = Counter(e[0] for e in events).most_common(1)[0][0]
    observables: list[str] = []
    for _kind, ip, asn, fqdn in events:
        observables += [str(v) for v in (ip, asn, fqdn) if v]
    return {
        "type": kind,
        "title": _("%(type)s: %(n)d feed events") % {"type": Kind(kind).label, "n": len(events)},
        "observables": list(dict.fromkeys(observables))[:MAX_OBSERVABLES],
    }


@transaction.atomic
def unlink_object(actor: Actor, incident: Incident, stix_id: str) -> None:
    """Remove a link to a STIX object. Contributors only; audited as ``incident.unlink``."""
    _require_contributor(actor, incident)
    deleted, _rows = incident.links.filter(stix_id=stix_id).delete()
    if not deleted:
        raise ValidationError(
            {"stix_id": _("The incident is not linked to %(id)s.") % {"id": str(stix_id)[:80]}}
        )
    _timeline(incident, TimelineKind.LINK, actor, details={"unlinked": stix_id})
    _audit("incident.unlink", actor, incident, stix_id=stix_id)


@transaction.atomic
def merge_incident(actor: Actor, duplicate: Incident, survivor: Incident, reason: str = "") -> Incident:
    """Merge a duplicate into the incident that survives: the duplicate is closed and points to
    the survivor, which takes its observables and intelligence links. Participants are not moved
    (adding them would widen who reads the survivor): the survivor's timeline names them for the
    coordinator to add. Coordinators of both only; audited as ``incident.merge`` on both."""
    _require_coordinator(actor, duplicate)
    _require_coordinator(actor, survivor)
    if duplicate.pk == survivor.pk:
        raise ValidationError({"survivor": _("An incident cannot be merged into itself.")})
    _not_merged(duplicate)
    if survivor.merged_into_id is not None:
        raise ValidationError({"survivor": _("%(ref)s was merged itself.") % {"ref": survivor.reference}})
    reason = _clean_text(reason, "reason", required=False, limit=MAX_TEXT)
    have = set(survivor.observables.values_list("kind", "value"))
    IncidentObservable.objects.bulk_create(
        [
            IncidentObservable(incident=survivor, kind=o.kind, value=o.value)
            for o in duplicate.observables.all()
            if (o.kind, o.value) not in have
        ]
    )
    linked = set(survivor.links.values_list("stix_id", flat=True))
    IncidentLink.objects.bulk_create(
        [
            IncidentLink(incident=survivor, stix_id=link.stix_id, added_by=link.added_by)
            for link in duplicate.links.all()
            if link.stix_id not in linked
        ]
    )
    events = set(survivor.event_links.values_list("event_id", flat=True))
    IncidentEvent.objects.bulk_create(
        [
            IncidentEvent(incident=survivor, event_id=e.event_id, added_by=e.added_by)
            for e in duplicate.event_links.all()
            if e.event_id not in events
        ]
    )
    old_status = duplicate.status
    duplicate.merged_into = survivor
    duplicate.status = IncidentStatus.CLOSED
    duplicate.status_reason = reason or _("Duplicate of %(ref)s.") % {"ref": survivor.reference}
    duplicate.closed_at = timezone.now()
    duplicate.save()
    participants = sorted(
        duplicate.participants.filter(status__in=READING_STATUSES).values_list(
            "organisation__short_name", flat=True
        )
    )
    _timeline(
        duplicate, TimelineKind.MERGE, actor, reason, {"into": survivor.reference, "from_status": old_status}
    )
    _timeline(
        survivor,
        TimelineKind.MERGE,
        actor,
        reason,
        {"merged": duplicate.reference, "participants": participants},
    )
    _audit("incident.merge", actor, duplicate, into=survivor.reference, reason=reason)
    _audit("incident.merge", actor, survivor, merged=duplicate.reference, reason=reason)
    return survivor


# --- the outbox's e-mail ---------------------------------------------------------------------


class NotDelivered(Exception):
    """An e-mail could not go out now; the task tries again later."""


def contact_language(organisation_id: int) -> str:
    """The language to write to an organisation's 24/7 desk in: the first of its first 24/7
    contact's languages that the node speaks, else English."""
    spoken = {"en": "en", "es": "es", "pt": "pt-br", "pt-br": "pt-br", "fr": "fr"}
    contact = (
        PointOfContact.objects.filter(organisation_id=organisation_id, role=ContactRole.DUTY)
        .order_by("pk")
        .first()
    )
    for code in contact.languages if contact is not None else []:
        if str(code).lower() in spoken:
            return spoken[str(code).lower()]
    return "en"


def duty_addresses(organisation_id: int) -> list[str]:
    return sorted(duty_keys(organisation_id))


def duty_keys(organisation_id: int) -> dict[str, str]:
    """The organisation's 24/7 addresses, each with its contact's OpenPGP key ("" for none)."""
    keys: dict[str, str] = {}
    for email, key in PointOfContact.objects.filter(
        organisation_id=organisation_id, role=ContactRole.DUTY
    ).values_list("email", "pgp_key"):
        keys[email] = keys.get(email) or key.strip()
    return keys


class PGPMessage(EmailMessage):
    """An e-mail in PGP/MIME (RFC 3156): ``multipart/encrypted`` with the version part and the
    ASCII-armoured OpenPGP message, which holds a ``text/plain`` MIME entity."""

    def __init__(self, subject: str, armoured: str, to: list[str]) -> None:
        super().__init__(subject, "", None, to)
        self.armoured = armoured

    def _create_message(self, msg: Any) -> Any:
        control = MIMEApplication("Version: 1\r\n", "pgp-encrypted", _encoder=encode_7or8bit)
        control["Content-Description"] = "PGP/MIME version identification"
        data = MIMEApplication(self.armoured, "octet-stream", _encoder=encode_7or8bit)
        data["Content-Description"] = "OpenPGP encrypted message"
        data["Content-Disposition"] = 'inline; filename="encrypted.asc"'
        return SafeMIMEMultipart(
            _subtype="encrypted",
            _subparts=[control, data],
            encoding=self.encoding,
            protocol="application/pgp-encrypted",
        )


def _encrypted_mail(subject: str, body: str, address: str, key: str) -> PGPMessage:
    from minga.directory import openpgp

    inner = MIMEText(body, "plain", "utf-8")
    return PGPMessage(subject, openpgp.encrypt(key, inner.as_string()), [address])


def _claim(notification_id: int, channel: str) -> Notification | None:
    """Claim a pending notification for one attempt (one conditional UPDATE), so two attempts
    never send it twice at once; None when it was delivered already, is gone or is claimed."""
    now = timezone.now()
    claimed = Notification.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        pk=notification_id,
        channel=channel,
        status=DeliveryStatus.PENDING,
    ).update(claimed_until=now + timedelta(seconds=CLAIM_SECONDS), attempts=F("attempts") + 1)
    if not claimed:
        return None
    return Notification.objects.select_related("incident", "organisation").get(pk=notification_id)


def _failed(notification: Notification, exc: Exception) -> NotDelivered:
    """Release the claim and audit the failed attempt (``incident.notification_failed``)."""
    error = str(exc)[:1000] or type(exc).__name__
    with transaction.atomic():
        Notification.objects.filter(pk=notification.pk).update(claimed_until=None, last_error=error)
        _audit(
            "incident.notification_failed",
            None,
            notification.incident,
            notification=notification.pk,
            channel=notification.channel,
            organisation=notification.organisation.short_name,
            attempt=notification.attempts,
            error=error,
        )
    return NotDelivered(error)


def _delivered(
    notification: Notification,
    recipients: list[str],
    fields: dict[str, Any] | None = None,
    **details: Any,
) -> None:
    """Mark the notification delivered, the participant notified, and audit the delivery
    (``incident.notification_delivered``, with where it went)."""
    incident = notification.incident
    with transaction.atomic():
        Notification.objects.filter(pk=notification.pk).update(
            status=DeliveryStatus.DELIVERED,
            delivered_at=timezone.now(),
            claimed_until=None,
            recipients=recipients,
            last_error="",
            **(fields or {}),
        )
        Participant.objects.filter(
            incident=incident,
            organisation_id=notification.organisation_id,
            status__in=AWAITING_ACK,
            notified_at__isnull=True,
        ).update(notified_at=timezone.now())
        Participant.objects.filter(
            incident=incident, organisation_id=notification.organisation_id, status=ParticipantStatus.ADDED
        ).update(status=ParticipantStatus.NOTIFIED)
        _audit(
            "incident.notification_delivered",
            None,
            incident,
            notification=notification.pk,
            channel=notification.channel,
            organisation=notification.organisation.short_name,
            recipients=recipients,
            attempt=notification.attempts,
            **details,
        )


def deliver_email(notification_id: int) -> str:
    """Send one e-mail notification to its organisation's 24/7 contacts: encrypted (PGP/MIME,
    with the title) to each contact whose OpenPGP key can encrypt, in clear (reference and
    facts only) to the others. The attempt claims the notification first, so two attempts never
    send it twice at once. Each attempt is audited: ``incident.notification_delivered`` (naming
    the addresses that got it encrypted) or ``incident.notification_failed`` (then
    ``NotDelivered`` is raised, and the task retries)."""
    from minga.directory import openpgp

    notification = _claim(notification_id, Channel.EMAIL)
    if notification is None:
        return "delivered already, gone, or being sent"
    keys = duty_keys(notification.organisation_id)
    addresses = sorted(keys)
    encrypted = sorted(a for a, key in keys.items() if key and openpgp.can_encrypt(key))
    try:
        if not addresses:
            raise NotDelivered(
                _("%(org)s has no 24/7 contact in the directory.")
                % {"org": notification.organisation.short_name}
            )
        with translation.override(contact_language(notification.organisation_id)):
            subject, body = _participant_message(notification.incident, notification.event)
            _subject, sealed = _participant_message(notification.incident, notification.event, sealed=True)
        mails: list[EmailMessage] = [_encrypted_mail(subject, sealed, a, keys[a]) for a in encrypted]
        clear = [a for a in addresses if a not in encrypted]
        if clear:
            mails.append(EmailMessage(subject, body, None, clear))
        get_connection(fail_silently=False).send_messages(mails)
    except Exception as exc:
        raise _failed(notification, exc) from exc
    _delivered(notification, addresses, {"subject": subject[:300], "body": body}, encrypted=encrypted)
    return f"sent to {len(addresses)} address(es), {len(encrypted)} encrypted"


WEBHOOK_TIMEOUT = 10  # seconds, to connect and to read the answer


def deliver_webhook(notification_id: int) -> str:
    """POST one webhook notification (its stored JSON, unchanged on every attempt) to the
    organisation's webhook, signed with its secret (``minga.directory.webhooks``: a fresh
    timestamp per attempt, in the signed content). Delivered when the receiver answers 2xx;
    anything else, a time-out or a refused connection is a failed attempt. Claimed and audited
    like e-mail; ``NotDelivered`` makes the task retry with backoff."""

    from minga.directory import webhooks
    from minga.directory.models import Webhook

    notification = _claim(notification_id, Channel.WEBHOOK)
    if notification is None:
        return "delivered already, gone, or being sent"
    try:
        webhook = Webhook.objects.filter(organisation_id=notification.organisation_id).first()
        if webhook is None:
            raise NotDelivered(
                _("%(org)s has no webhook any more.") % {"org": notification.organisation.short_name}
            )
        secret = webhooks.unseal_secret(webhook.sealed_secret)
        if secret is None:
            raise NotDelivered(_("The webhook's secret cannot be opened with this node's key: set it again."))
        # The node's one scheme: signed, no redirects, never into a private network.
        webhooks.post(
            webhook.url,
            secret,
            notification.body.encode(),
            delivery=str(notification.pk),
            event=notification.event,
            timeout=WEBHOOK_TIMEOUT,
        )
    except Exception as exc:
        raise _failed(notification, exc) from exc
    _delivered(notification, [webhook.url])
    return f"posted to {webhook.url}"


def export_stix(actor: Actor, incident: Incident) -> bytes:
    """The incident as a STIX 2.1 bundle (``minga.incidents.stix``). Call with an incident that
    ``actor`` may read; audited as ``incident.export``."""
    from minga.incidents import stix

    document = stix.bundle(actor, incident)
    with transaction.atomic():
        _audit("incident.export", actor, incident, format="stix", bytes=len(document))
    return document


def export_pdf(actor: Actor, incident: Incident) -> bytes:
    """The incident as a PDF summary (``minga.incidents.pdf``): reference, title, classification,
    status, the TLP marking on every page, participants, tasks and timeline. Call with an
    incident that ``actor`` may read; audited as ``incident.export``."""
    from minga.incidents import pdf

    document = pdf.summary(actor, incident)
    with transaction.atomic():
        _audit("incident.export", actor, incident, format="pdf", bytes=len(document))
    return document


# --- evidence and chain of custody -------------------------------------------------------------
#
# Evidence belongs to an incident and is read and handled by the organisations taking part in
# it (``may_contribute``: the incident's access policy first, then participation), never more:
# a network member who may read a TLP:GREEN incident does not get its evidence. The content
# lives in the content-addressed store (``storage``); every line of the chain of custody is an
# entry of the audit log (``evidence.<action>``) written in the transaction of the change, and a
# ``CustodyEvent`` row binds it to the item (see its docstring).


class EvidenceTooLarge(ValidationError):
    """An evidence file over the size limit; the API and the pages answer 413."""


MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$")


def may_handle_evidence(actor: Actor, incident: Incident) -> bool:
    """Read, register and download the incident's evidence: the organisations taking part."""
    return may_contribute(actor, incident)


def _require_evidence_handler(actor: Actor, incident: Incident) -> None:
    if not may_handle_evidence(actor, incident):
        raise PermissionDenied(
            _("Only the organisations taking part in %(ref)s handle its evidence.")
            % {"ref": incident.reference}
        )


def evidence_limit() -> int:
    return int(settings.MINGA_EVIDENCE_MAX_BYTES)


def _too_large(limit: int) -> EvidenceTooLarge:
    return EvidenceTooLarge(
        {
            "file": _("The file is larger than %(limit)s bytes, the most this register accepts.")
            % {"limit": f"{limit:,}"}
        }
    )


def _file_name(name: str) -> str:
    base = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c for c in base if c.isprintable()).strip()
    return cleaned[:255] or "evidence"


def _media_type(given: str, file_name: str) -> str:
    value = str(given or "").split(";", 1)[0].strip().lower()
    if MEDIA_TYPE.match(value):
        return value
    guessed, _encoding = mimetypes.guess_type(file_name)
    return guessed or "application/octet-stream"


def _person(actor: Actor) -> str:
    user = _author(actor)
    if user is None:
        return ""
    return (user.get_full_name() or user.get_username())[:200]


def _custodian(organisation: Organisation | None, person: str) -> dict[str, Any] | None:
    if organisation is None:
        return None
    return {"organisation_id": organisation.pk, "organisation": organisation.short_name, "person": person}


def _custody(
    actor: Actor,
    evidence: Evidence,
    action: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
    **extra: Any,
) -> CustodyEvent:
    """One line of the chain of custody: its audit entry, then the row that binds it to the
    item. Call inside the transaction of the change."""
    entry = audit.record(
        f"evidence.{action}",
        actor=actor,
        obj=evidence,
        organisation=evidence.incident.origin_organisation,
        details={
            "reference": evidence.incident.reference,
            "evidence": evidence.pk,
            "sha256": evidence.sha256,
            "custody": action,
            "from": before,
            "to": after,
            "reason": reason,
            **extra,
        },
    )
    return CustodyEvent.objects.create(
        evidence=evidence, action=action, audit_entry=entry, audit_hash=entry.hash
    )


def register_evidence(
    actor: Actor,
    incident: Incident,
    *,
    chunks: Iterable[bytes],
    file_name: str,
    title: str,
    media_type: str = "",
    description: str = "",
    acquired_at: datetime | None = None,
    acquired_by: str = "",
    source: str = "",
    custodian_organisation: Organisation | None = None,
    custodian_person: str | None = None,
    reason: str = "",
    limit: int | None = None,
) -> Evidence:
    """Register a file as evidence of ``incident``: its content is streamed into the
    content-addressed store (``EvidenceTooLarge`` past the limit: the smaller of
    ``MINGA_EVIDENCE_MAX_BYTES`` and ``limit``), then the item and the first line of its chain of
    custody are written in one transaction. The first custodian is the given organisation, else
    the actor's. The organisations taking part only; audited as ``evidence.registered``."""
    _require_evidence_handler(actor, incident)
    _not_merged(incident)
    title = _clean_text(title, "title", required=True, limit=200)
    description = _clean_text(description, "description", required=False, limit=MAX_TEXT)
    acquired_by = _clean_text(acquired_by, "acquired_by", required=False, limit=200)
    source = _clean_text(source, "source", required=False, limit=500)
    reason = _clean_text(reason, "reason", required=False, limit=MAX_TEXT)
    person = _clean_text(
        _person(actor) if custodian_person is None else custodian_person,
        "custodian_person",
        required=False,
        limit=200,
    )
    custodian = custodian_organisation or _actor_organisation(actor, incident)
    if custodian is None:
        custodian = incident.coordinating_organisation
    if acquired_at is not None and timezone.is_naive(acquired_at):
        acquired_at = timezone.make_aware(acquired_at, UTC)  # the API says: UTC unless told
    name = _file_name(file_name)
    kind = _media_type(media_type, name)
    most = evidence_limit() if limit is None else min(limit, evidence_limit())
    try:
        stored = storage.store(chunks, most)
    except storage.TooLarge:
        raise _too_large(most) from None
    try:
        with transaction.atomic():
            evidence = Evidence.objects.create(
                incident=incident,
                title=title,
                description=description,
                file_name=name,
                media_type=kind,
                size=stored.size,
                sha256=stored.sha256,
                acquired_at=acquired_at,
                acquired_by=acquired_by,
                source=source,
                custodian_organisation=custodian,
                custodian_person=person,
                registered_by=_author(actor),
            )
            _custody(
                actor,
                evidence,
                CustodyAction.REGISTERED,
                after=_custodian(custodian, person),
                reason=reason,
                title=title,
                file_name=name,
                size=stored.size,
                acquired_at=acquired_at,
                acquired_by=acquired_by,
                source=source,
            )
    except BaseException:
        # Nothing names content stored for this attempt alone: take it away again.
        if stored.created and not Evidence.objects.filter(sha256=stored.sha256).exists():
            storage.remove(stored.sha256)
        raise
    return evidence


@transaction.atomic
def record_custody(
    actor: Actor,
    evidence: Evidence,
    action: str,
    *,
    reason: str,
    to_organisation: Organisation | None = None,
    to_person: str = "",
) -> CustodyEvent:
    """Record a hand-over (``transferred``, ``returned``: to an organisation and a person), a
    seal, or the disposal of the item (its file is deleted once no other item holds the same
    content), saying why. The coordinators, or the organisation that holds the item, provided
    they take part in the incident; audited as ``evidence.<action>``."""
    evidence = (
        Evidence.objects.select_for_update()
        .select_related("incident", "custodian_organisation")
        .get(pk=evidence.pk)
    )
    incident = evidence.incident
    _require_evidence_handler(actor, incident)
    if not (
        may_coordinate(actor, incident)
        or evidence.custodian_organisation_id in working_organisation_ids(actor)
    ):
        raise PermissionDenied(
            _("Only the coordinators of %(ref)s or the organisation that holds the item record its custody.")
            % {"ref": incident.reference}
        )
    action = _choice(action, CustodyAction, "action")
    if action not in RECORDED_BY_HAND:
        raise ValidationError({"action": _("The node records this action itself.")})
    if evidence.status == EvidenceStatus.DISPOSED:
        raise ValidationError(_("This item was disposed of; its chain of custody is closed."))
    reason = _clean_text(reason, "reason", required=True, limit=MAX_TEXT)
    person = _clean_text(to_person, "to_person", required=False, limit=200)
    before = _custodian(evidence.custodian_organisation, evidence.custodian_person)
    after = None
    if action in CUSTODIAN_CHANGES:
        if to_organisation is None:
            raise ValidationError({"to_organisation": _("Say to which organisation the item goes.")})
        evidence.custodian_organisation, evidence.custodian_person = to_organisation, person
        after = _custodian(to_organisation, person)
    if action == CustodyAction.DISPOSED:
        evidence.status = EvidenceStatus.DISPOSED
        sha256 = evidence.sha256

        def remove_if_unheld() -> None:
            if not Evidence.objects.filter(sha256=sha256, status=EvidenceStatus.HELD).exists():
                storage.remove(sha256)

        transaction.on_commit(remove_if_unheld)
    evidence.save(update_fields=["custodian_organisation", "custodian_person", "status"])
    return _custody(actor, evidence, action, before=before, after=after, reason=reason)


def open_evidence(actor: Actor, evidence: Evidence) -> BinaryIO:
    """The item's stored content, for downloading. The organisations taking part only; each
    download is a line of the chain of custody (``evidence.accessed``)."""
    _require_evidence_handler(actor, evidence.incident)
    if evidence.status == EvidenceStatus.DISPOSED:
        raise ValidationError(_("This item was disposed of; its file is no longer kept."))
    try:
        handle = storage.open_blob(evidence.sha256)
    except FileNotFoundError:
        raise ValidationError(
            _(
                "The file of this item is missing from the store; "
                "tell the node's operator (minga evidence verify)."
            )
        ) from None
    try:
        with transaction.atomic():
            _custody(actor, evidence, CustodyAction.ACCESSED)
    except BaseException:
        handle.close()
        raise
    return handle


@dataclass(frozen=True)
class ItemCheck:
    evidence: Evidence
    found: bool
    sha256: str  # of the stored file now ("" when missing)
    size: int

    @property
    def ok(self) -> bool:
        return self.found and self.sha256 == self.evidence.sha256 and self.size == self.evidence.size


def verify_evidence(actor: Actor, evidence: Evidence) -> ItemCheck:
    """Hash the item's stored file again and record the result in its chain of custody
    (``evidence.verified``, with ``intact`` true or false). The organisations taking part."""
    _require_evidence_handler(actor, evidence.incident)
    if evidence.status == EvidenceStatus.DISPOSED:
        raise ValidationError(_("This item was disposed of; its file is no longer kept."))
    # Hashed before the transaction: a large image must not hold the database's write lock.
    now = storage.rehash(evidence.sha256)
    check = ItemCheck(evidence, now is not None, now[0] if now else "", now[1] if now else 0)
    with transaction.atomic():
        _custody(
            actor,
            evidence,
            CustodyAction.VERIFIED,
            intact=check.ok,
            found_sha256=check.sha256,
            found_size=check.size,
        )
    return check


# --- verifying the whole register (``minga evidence verify``) --------------------------------


@dataclass(frozen=True)
class EvidenceProblem:
    evidence: int | None
    label: str  # which item, in words
    message: str


@dataclass(frozen=True)
class RegisterReport:
    items: int
    files: int  # files hashed again
    custody_entries: int
    chain: audit.VerifyResult
    problems: tuple[EvidenceProblem, ...]

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problems


def _label(evidence: Evidence) -> str:
    return _("%(ref)s evidence #%(id)d (%(title)s)") % {
        "ref": evidence.incident.reference,
        "id": evidence.pk,
        "title": evidence.title[:60],
    }


def _check_custody(evidence: Evidence, events: Sequence[CustodyEvent]) -> list[str]:
    """What is wrong with the item's chain of custody, as bound to the audit log."""
    problems: list[str] = []
    if not events:
        return [_("it has no chain of custody (its registration entry is gone)")]
    holder: dict[str, Any] | None = None
    disposed = False
    for position, event in enumerate(events):
        entry = event.audit_entry
        where = _("custody line %(n)d (%(action)s, audit entry #%(seq)d)") % {
            "n": position + 1,
            "action": event.action,
            "seq": entry.seq,
        }
        details = entry.details if isinstance(entry.details, dict) else {}
        if entry.hash != event.audit_hash:
            problems.append(_("%(where)s: the audit entry's hash is not the one recorded") % {"where": where})
        if (
            entry.action != f"evidence.{event.action}"
            or details.get("custody") != event.action
            or entry.object_type != Evidence._meta.label_lower
            or entry.object_id != str(evidence.pk)
            or details.get("evidence") != evidence.pk
        ):
            problems.append(
                _("%(where)s: the audit entry describes another item or action") % {"where": where}
            )
        if details.get("sha256") != evidence.sha256:
            problems.append(_("%(where)s: the audit trail names other content (SHA-256)") % {"where": where})
        if position == 0 and (
            event.action != CustodyAction.REGISTERED or details.get("size") != evidence.size
        ):
            problems.append(
                _("%(where)s: the chain does not start with the registration of this content")
                % {"where": where}
            )
        if event.action in CUSTODIAN_CHANGES:
            holder = details.get("to")
        if event.action == CustodyAction.DISPOSED:
            disposed = True
    # By the organisation's id, not its short name: an organisation may be renamed.
    held = (holder or {}).get("organisation_id"), (holder or {}).get("person")
    if held != (evidence.custodian_organisation_id, evidence.custodian_person):
        problems.append(_("its custodian is not the one its chain of custody ends with"))
    if disposed != (evidence.status == EvidenceStatus.DISPOSED):
        problems.append(_("its status does not match its chain of custody"))
    return problems


def verify_register() -> RegisterReport:
    """Check the evidence register: every held item's file is hashed again (streamed) and
    compared with its SHA-256 and size; every item's chain of custody is compared with the audit
    entries it is bound to; every evidence entry of the audit log must have its custody row; and
    the audit chain itself is verified (``minga.core.audit.verify``)."""
    problems: list[EvidenceProblem] = []
    items = files = lines = 0
    evidence_rows = (
        Evidence.objects.select_related("incident", "custodian_organisation")
        .prefetch_related(Prefetch("custody", queryset=CustodyEvent.objects.select_related("audit_entry")))
        .order_by("pk")
    )
    for evidence in evidence_rows.iterator(chunk_size=500):
        items += 1
        label = _label(evidence)
        events = list(evidence.custody.all())
        lines += len(events)
        if evidence.status == EvidenceStatus.HELD:
            files += 1
            now = storage.rehash(evidence.sha256)
            if now is None:
                problems.append(EvidenceProblem(evidence.pk, label, _("its file is missing from the store")))
            elif now != (evidence.sha256, evidence.size):
                problems.append(
                    EvidenceProblem(
                        evidence.pk,
                        label,
                        _("its file does not match its SHA-256 (altered or damaged): it hashes to %(found)s")
                        % {"found": now[0]},
                    )
                )
        problems.extend(EvidenceProblem(evidence.pk, label, p) for p in _check_custody(evidence, events))
    bound = CustodyEvent.objects.filter(audit_entry_id=OuterRef("pk"))
    unbound = (
        AuditEntry.objects.filter(object_type=Evidence._meta.label_lower, action__startswith="evidence.")
        .exclude(Exists(bound))
        .order_by("seq")
    )
    for entry in unbound.iterator(chunk_size=500):
        problems.append(
            EvidenceProblem(
                int(entry.object_id) if entry.object_id.isdigit() else None,
                _("evidence #%(id)s") % {"id": entry.object_id},
                _("audit entry #%(seq)d (%(action)s) is missing from its chain of custody")
                % {"seq": entry.seq, "action": entry.action},
            )
        )
    return RegisterReport(
        items=items, files=files, custody_entries=lines, chain=audit.verify(), problems=tuple(problems)
    )
