"""Incidents across nodes: an incident with a participant that works on another Minga node
travels there over the TAXII federation, and the participants' answers come back.

**What travels.** The coordinating node publishes the incident as a STIX ``incident`` SDO (id
``incident--<uuid>``, as in the STIX export) carrying a Minga property extension
(``EXTENSION_ID``) with what a participant needs: reference, title, description, RSIT
classification, severity, status and its reason, TLP, PAP, the reporting and coordinating
organisations, the participants with their statuses and times, the tasks and the timeline. One
new version (a new ``modified``) per change made through ``minga.incidents.services``, in the
change's transaction (``services._audit`` calls ``changed``). A participant that works on
another node answers there, on its mirror of the incident; each answer (acknowledge, decline,
comment, task status) travels back as one ``x-minga-incident-update`` object in the
participant's name, and the coordinating node applies it through the same services, for that
organisation, so its next version carries the merged state to every participant's node.

**Who receives it.** Both kinds of object are stored in the intel store in the publisher's name
with the incident's participants (with the reporter and the coordinator) as recipient
organisations, marked TLP:AMBER (AMBER+STRICT for an AMBER+STRICT incident): the distribution
rule (``minga.core.access.distribution_filter``) sends them only to the nodes hosting one of
them, even for a CLEAR or GREEN incident (whose own TLP travels in the extension). A TLP:RED
incident is read by named people only and never leaves its node: nothing is published for it.

**Receiving.** The receivers (``minga.taxii.federation.on_receive``) run once per version newly
stored from a peer, in the transaction that stored it. A node keeps a *mirror* of an incident
(``Incident.coordinating_node`` set) when one of its participants works here; the mirror is
read under the usual policy (its TLP, its participants as recipients), changed only by the
coordinating node's versions and by the local participants' own answers. The coordinating node
applies an update only from the node hosting its sender, only what that organisation may do
(``services``' own checks); anything else is refused and audited
(``incident.federation_refused``), and nothing a peer sends fails the sync.
"""

from __future__ import annotations

import contextvars
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from minga.core import audit
from minga.core.choices import TLP
from minga.core.models import Organisation
from minga.directory.models import MemberState, Sector
from minga.incidents.choices import (
    AWAITING_ACK,
    PAP,
    READING_STATUSES,
    EventType,
    IncidentStatus,
    ParticipantStatus,
    Severity,
    TaskStatus,
    TimelineKind,
)
from minga.incidents.models import Incident, IncidentTask, Participant, TimelineEntry
from minga.intel import services as intel_services
from minga.intel import stix
from minga.intel.convert import timestamp
from minga.intel.models import StixObject
from minga.taxii import federation
from minga.taxii.models import Peer, PeerKind
from minga.taxii.services import NAMESPACE

INCIDENT = "incident"
UPDATE = "x-minga-incident-update"
SOURCE = "incidents"
EXTENSION_ID = f"extension-definition--{uuid.uuid5(NAMESPACE, 'incident-federation')}"
# What a participant does on its own node, carried back as an update: the service's audit action.
UPDATE_ACTIONS = {
    "incident.acknowledge": "acknowledge",
    "incident.decline": "decline",
    "incident.comment": "comment",
    "incident.task_status": "task_status",
}
# Audited reads, and failed delivery attempts (retried with backoff): nothing a peer's copy
# shows has changed, so no new version.
NOT_CHANGES = frozenset({"incident.export", "incident.notification_failed"})
MAX_TEXT = 8000

# The update being applied (its id, the node it came from) while the services apply it: the
# timeline entry they write names it, so the mirror it came from does not show it twice.
_applying: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "incident_update_applying", default=None
)


def stix_id(incident: Incident) -> str:
    return f"{INCIDENT}--{incident.uuid}"


def carrier_tlp(tlp: str) -> str | None:
    """The marking of what travels for an incident of ``tlp``: AMBER (AMBER+STRICT stays so),
    so that only the participants' nodes receive it; none for RED, which never travels."""
    if tlp == TLP.RED:
        return None
    return TLP.AMBER_STRICT if tlp == TLP.AMBER_STRICT else TLP.AMBER


def hosted_elsewhere(organisation_ids: set[int]) -> set[int]:
    """Which of these organisations a Minga peer hosts (they work on another node)."""
    return set(
        Peer.objects.filter(
            kind=PeerKind.MINGA, is_active=True, hosted_organisations__in=organisation_ids
        ).values_list("hosted_organisations", flat=True)
    ) & set(organisation_ids)


def _stamp(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment is not None else None


def _reading_ids(incident: Incident) -> set[int]:
    return set(
        incident.participants.filter(status__in=READING_STATUSES).values_list("organisation_id", flat=True)
    )


def _recipients(incident: Incident, publisher: Organisation) -> list[Organisation]:
    ids = _reading_ids(incident) | {incident.origin_organisation_id, incident.coordinating_organisation_id}
    ids.discard(publisher.pk)
    return list(Organisation.objects.filter(pk__in=ids).order_by("pk"))


def _next_modified(object_id: str, publisher: Organisation, floor: datetime) -> datetime:
    last = (
        StixObject.objects.filter(
            stix_id=object_id, origin_organisation=publisher, origin_node="", received_from=""
        )
        .order_by("-modified")
        .values_list("modified", flat=True)
        .first()
    )
    modified = max(timezone.now(), floor)
    modified = modified.replace(microsecond=modified.microsecond // 1000 * 1000)  # STIX: milliseconds
    if last is not None and modified <= last:
        modified = last + timedelta(milliseconds=1)
    return modified


def _store(publisher: Organisation, obj: dict[str, Any], tlp: str, recipients: list[Organisation]) -> None:
    result = intel_services.import_objects(
        None, publisher, [(0, stix.with_tlp_marking(obj, tlp))], tlp, recipients, fmt="stix", source=SOURCE
    )
    if result.accepted != 1:
        raise ValidationError(
            " ".join(r.reason for r in result.rejections)
            or _("The incident's version for the participants' nodes was not stored.")
        )


# --- publishing ------------------------------------------------------------------------------


def changed(incident: Incident, action: str, details: dict[str, Any]) -> None:
    """``services`` changed ``incident`` (audited as ``action``): publish what the other nodes
    must know, in the caller's transaction."""
    if action in NOT_CHANGES:
        return
    applying = _applying.get()
    if applying is not None:
        entry = incident.timeline.order_by("-pk").first()
        if entry is not None:
            entry.details = {**entry.details, "remote_update": applying[0], "node": applying[1]}
            entry.save(update_fields=["details"])
    if incident.coordinating_node:
        if action in UPDATE_ACTIONS:
            publish_update(incident, UPDATE_ACTIONS[action], details)
        return
    removed: list[Organisation] = []
    if action == "incident.participant_remove":
        # This version goes to the removed participant's node too: its mirror learns of the
        # removal and stops granting its members access. Later versions go there no more.
        removed = list(Organisation.objects.filter(short_name=details.get("participant")))
    publish(incident, also=removed)


def snapshot(incident: Incident, modified: datetime) -> dict[str, Any]:
    """The ``incident`` SDO of this version, with the Minga extension."""
    participants = [
        {
            "organisation": p.organisation.short_name,
            "status": p.status,
            "reason": p.reason,
            "added_at": _stamp(p.added_at),
            "acknowledged_at": _stamp(p.acknowledged_at),
            "declined_at": _stamp(p.declined_at),
        }
        for p in incident.participants.exclude(status=ParticipantStatus.PROPOSED)
        .select_related("organisation")
        .order_by("pk")
    ]
    tasks = [
        {
            "id": str(t.pk),
            "title": t.title,
            "organisation": t.organisation.short_name,
            "due_at": _stamp(t.due_at),
            "status": t.status,
            "completed_at": _stamp(t.completed_at),
        }
        for t in incident.tasks.select_related("organisation").order_by("pk")
    ]
    timeline = []
    for entry in incident.timeline.select_related("organisation").order_by("created_at", "pk"):
        if entry.details.get("remote_id"):
            continue  # never here (a coordinating node mirrors nothing), but never echo
        item: dict[str, Any] = {
            "id": str(entry.pk),
            "kind": entry.kind,
            "organisation": entry.organisation.short_name if entry.organisation else "",
            "text": entry.text,
            "details": {k: v for k, v in entry.details.items() if k not in ("remote_update", "node")},
            "created": _stamp(entry.created_at),
        }
        if entry.details.get("remote_update"):
            item["update"] = entry.details["remote_update"]
        timeline.append(item)
    extension: dict[str, Any] = {
        "extension_type": "property-extension",
        "incident_uuid": str(incident.uuid),
        "reference": incident.reference,
        "taxonomy": incident.taxonomy,
        "type": incident.type,
        "severity": incident.severity,
        "status": incident.status,
        "status_reason": incident.status_reason,
        "tlp": incident.tlp,
        "pap": incident.pap,
        "reporting_organisation": incident.origin_organisation.short_name,
        "coordinating_organisation": incident.coordinating_organisation.short_name,
        "coordinating_node": federation.node_id(),
        "affected_states": sorted(incident.affected_states.values_list("code", flat=True)),
        "affected_sectors": sorted(incident.affected_sectors.values_list("slug", flat=True)),
        "opened_at": _stamp(incident.created_at),
        "resolved_at": _stamp(incident.resolved_at),
        "closed_at": _stamp(incident.closed_at),
        "participants": participants,
        "tasks": tasks,
        "timeline": timeline,
    }
    obj: dict[str, Any] = {
        "type": INCIDENT,
        "spec_version": "2.1",
        "id": stix_id(incident),
        "created": timestamp(incident.created_at),
        "modified": timestamp(modified),
        "name": incident.title,
        "extensions": {EXTENSION_ID: extension},
    }
    if incident.description:
        obj["description"] = incident.description
    return obj


def publish(incident: Incident, also: list[Organisation] | None = None) -> None:
    """Store the new version of an incident coordinated here, in the coordinator's name, when
    one of its participants (or ``also``: one just removed) works on another node. Never for
    TLP:RED."""
    tlp = carrier_tlp(incident.tlp)
    if tlp is None:
        return
    extra = [o for o in also or [] if o.pk != incident.coordinating_organisation_id]
    others = (_reading_ids(incident) | {o.pk for o in extra}) - {incident.coordinating_organisation_id}
    if not others or not hosted_elsewhere(others):
        return
    publisher = incident.coordinating_organisation
    modified = _next_modified(stix_id(incident), publisher, incident.created_at)
    recipients = _recipients(incident, publisher)
    recipients += [o for o in extra if o not in recipients]
    _store(publisher, snapshot(incident, modified), tlp, recipients)


def publish_update(incident: Incident, action: str, details: dict[str, Any]) -> None:
    """A local participant answered on the mirror of ``incident``: the update for the
    coordinating node, in the participant's name. The timeline entry the answer wrote names it."""
    tlp = carrier_tlp(incident.tlp)
    if tlp is None:
        return
    entry = incident.timeline.order_by("-pk").first()
    body: dict[str, Any] = {"action": action}
    if action == "comment":
        entry = TimelineEntry.objects.filter(pk=int(details.get("entry") or 0), incident=incident).first()
        if entry is None:
            return
        body["text"] = entry.text
        organisation = entry.organisation
    elif action == "task_status":
        task = IncidentTask.objects.filter(pk=int(details.get("task") or 0), incident=incident).first()
        if task is None or not task.remote_id:
            return
        body.update(task=task.remote_id, status=task.status)
        organisation = task.organisation
    else:
        organisation = Organisation.objects.filter(short_name=details.get("participant")).first()
        body["text"] = str(details.get("reason") or "")
    if organisation is None or entry is None:
        return
    at = entry.created_at
    if action == "acknowledge":
        acknowledged = (
            incident.participants.filter(organisation=organisation)
            .values_list("acknowledged_at", flat=True)
            .first()
        )
        at = acknowledged or at
    now = timezone.now()
    update_id = f"{UPDATE}--{uuid.uuid4()}"
    entry.details = {**entry.details, "update": update_id}
    entry.save(update_fields=["details"])
    moment = timestamp(now)
    _store(
        organisation,
        {
            "type": UPDATE,
            "spec_version": "2.1",
            "id": update_id,
            "created": moment,
            "modified": moment,
            "name": f"{incident.reference} {action}",
            "incident_uuid": str(incident.uuid),
            "reference": incident.reference,
            "organisation": organisation.short_name,
            "at": _stamp(at),
            **body,
        },
        tlp,
        _recipients(incident, organisation),
    )


# --- receiving -------------------------------------------------------------------------------


class Refused(Exception):
    """A version from a peer that this node does not apply, with the reason."""


def _refuse(peer: Peer, version: StixObject, reason: str, incident: Incident | None = None) -> None:
    audit.record(
        "incident.federation_refused",
        obj=incident,
        organisation=version.origin_organisation,
        details={
            "object": version.stix_id,
            "version": timestamp(version.modified),
            "from": peer.name,
            "origin_node": version.origin_node,
            "sender": version.origin_organisation.short_name,
            "reason": reason[:500],
        },
    )


def _organisation(short_name: Any) -> Organisation:
    found = Organisation.objects.filter(short_name=str(short_name)).first() if short_name else None
    if found is None:
        raise Refused(
            _("The organisation %(name)s is not in this node's directory.") % {"name": str(short_name)[:60]}
        )
    return found


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise Refused(_("%(value)s is not a UTC timestamp.") % {"value": str(value)[:40]})
    return parsed


def _text(body: dict[str, Any], name: str, limit: int = MAX_TEXT) -> str:
    value = body.get(name) or ""
    if not isinstance(value, str):
        raise Refused(_("%(field)s is not text.") % {"field": name})
    return value.replace("\x00", "")[:limit]


def _choice(value: Any, choices: Any, name: str) -> str:
    if value not in choices.values:
        raise Refused(
            _("%(field)s: %(value)s is not a valid choice.") % {"field": name, "value": str(value)[:40]}
        )
    return str(value)


def _works_on(node: str, organisation: Organisation) -> bool:
    return Peer.objects.filter(
        name=node, kind=PeerKind.MINGA, is_active=True, hosted_organisations=organisation
    ).exists()


def _receiving(peer: Peer, version: StixObject, apply: Any) -> None:
    try:
        with transaction.atomic():
            apply(peer, version, orjson.loads(version.raw))
    except (Refused, ValidationError, PermissionDenied, ValueError, TypeError, KeyError) as exc:
        reason = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        _refuse(peer, version, reason or exc.__class__.__name__)


@federation.on_receive(INCIDENT)
def receive_incident(peer: Peer, version: StixObject) -> None:
    """A version of an incident coordinated on another node: create or bring up to date its
    mirror here, when one of its participants works here. An ``incident`` without the Minga
    extension is plain intelligence: left in the intel store."""
    extensions = orjson.loads(version.raw).get("extensions")
    if not isinstance(extensions, dict) or EXTENSION_ID not in extensions:
        return
    _receiving(peer, version, _apply_incident)


def _apply_incident(peer: Peer, version: StixObject, body: dict[str, Any]) -> None:
    ext = body["extensions"][EXTENSION_ID]
    if not isinstance(ext, dict):
        raise Refused(_("The Minga extension is not an object."))
    incident_uuid = uuid.UUID(str(ext.get("incident_uuid", "")))
    if version.stix_id != f"{INCIDENT}--{incident_uuid}":
        raise Refused(_("The object's id is not the incident's."))
    node = str(ext.get("coordinating_node") or "")
    coordinator = _organisation(ext.get("coordinating_organisation"))
    if coordinator.pk != version.origin_organisation_id or node != version.origin_node:
        raise Refused(_("Only the coordinator publishes an incident, from its own node."))
    if not _works_on(node, coordinator):
        raise Refused(
            _("Node %(node)s does not host %(org)s.") % {"node": node[:100], "org": coordinator.short_name}
        )
    tlp = _choice(ext.get("tlp"), TLP, "tlp")
    if tlp == TLP.RED:
        raise Refused(_("TLP:RED never travels between nodes."))
    incident = Incident.objects.select_for_update().filter(uuid=incident_uuid).first()
    if incident is not None and incident.coordinating_node != node:
        raise Refused(
            _("%(ref)s is not coordinated on node %(node)s.") % {"ref": incident.reference, "node": node}
        )
    if (
        incident is not None
        and incident.remote_version is not None
        and version.modified <= incident.remote_version
    ):
        return  # older than what is applied: nothing new
    rows = [p for p in ext.get("participants") or [] if isinstance(p, dict)]
    organisations = {str(p.get("organisation")): _organisation(p.get("organisation")) for p in rows}
    reading = {organisations[str(p["organisation"])].pk for p in rows if p.get("status") in READING_STATUSES}
    local = reading - hosted_elsewhere(reading)
    if incident is None and not local:
        return  # none of its participants works here: no mirror
    fields = {
        "title": _text(body, "name", 200) or str(ext.get("reference", ""))[:200],
        "description": _text(body, "description"),
        "type": _choice(ext.get("type"), EventType, "type"),
        "severity": _choice(ext.get("severity"), Severity, "severity"),
        "status": _choice(ext.get("status"), IncidentStatus, "status"),
        "status_reason": _text(ext, "status_reason"),
        "tlp": tlp,
        "pap": _choice(ext.get("pap"), PAP, "pap"),
        "origin_organisation": _organisation(ext.get("reporting_organisation")),
        "coordinating_organisation": coordinator,
        "resolved_at": _time(ext.get("resolved_at")),
        "closed_at": _time(ext.get("closed_at")),
        "remote_version": version.modified,
    }
    fields["taxonomy"] = _taxonomy(str(fields["type"]))
    created = incident is None
    if incident is None:
        reference = str(ext.get("reference") or "")[:16] or "MNG"
        candidate, n = reference, 1
        while Incident.objects.filter(reference=candidate).exists():
            n += 1
            candidate = f"{reference}-{n}"
        incident = Incident.objects.create(
            uuid=incident_uuid, reference=candidate, coordinating_node=node, **fields
        )
        opened = _time(ext.get("opened_at"))
        if opened is not None:
            Incident.objects.filter(pk=incident.pk).update(created_at=opened)
        before: set[int] = set()
    else:
        before = _reading_ids(incident)
        for name, value in fields.items():
            setattr(incident, name, value)
        incident.save()
    for row in rows:
        organisation = organisations[str(row["organisation"])]
        status = _choice(row.get("status"), ParticipantStatus, "participant status")
        Participant.objects.update_or_create(
            incident=incident,
            organisation=organisation,
            defaults={
                "status": status,
                "reason": _text(row, "reason"),
                "added_at": _time(row.get("added_at")),
                "acknowledged_at": _time(row.get("acknowledged_at")),
                "declined_at": _time(row.get("declined_at")),
            },
        )
    ids = _reading_ids(incident) | {incident.coordinating_organisation_id}
    ids.discard(incident.origin_organisation_id)
    incident.recipient_organisations.set(ids)
    # States and sectors by their network-wide codes; those this node does not know are left out.
    states, sectors = ext.get("affected_states") or [], ext.get("affected_sectors") or []
    incident.affected_states.set(
        MemberState.objects.filter(code__in=[str(c) for c in states if isinstance(c, str)])
    )
    incident.affected_sectors.set(
        Sector.objects.filter(slug__in=[str(c) for c in sectors if isinstance(c, str)])
    )
    _merge_tasks(incident, ext)
    _merge_timeline(incident, ext, node)
    # The local participants newly added are told in the application (their 24/7 desk was
    # e-mailed by the coordinating node, from the shared directory: never twice).
    from minga.incidents import services

    for participant in incident.participants.filter(
        organisation_id__in=local - before, status__in=AWAITING_ACK
    ).select_related("organisation"):
        services.notify(incident, participant.organisation, "participant_added", email=False)
    audit.record(
        "incident.federation_received",
        obj=incident,
        organisation=incident.origin_organisation,
        details={
            "reference": incident.reference,
            "node": node,
            "from": peer.name,
            "version": timestamp(version.modified),
            "created": created,
            "status": incident.status,
        },
    )


def _taxonomy(kind: str) -> str:
    from minga.incidents.choices import TAXONOMY_OF

    return str(TAXONOMY_OF[kind])


def _merge_tasks(incident: Incident, ext: dict[str, Any]) -> None:
    for row in ext.get("tasks") or []:
        if not isinstance(row, dict) or not row.get("id"):
            continue
        IncidentTask.objects.update_or_create(
            incident=incident,
            remote_id=str(row["id"])[:100],
            defaults={
                "title": _text(row, "title", 200),
                "organisation": _organisation(row.get("organisation")),
                "due_at": _time(row.get("due_at")),
                "status": _choice(row.get("status"), TaskStatus, "task status"),
                "completed_at": _time(row.get("completed_at")),
            },
        )


def _merge_timeline(incident: Incident, ext: dict[str, Any], node: str) -> None:
    """The coordinating node's entries not yet here; those that are the local participants'
    own answers (written here already) are not written twice."""
    known: set[str] = set()
    own_updates: set[str] = set()
    for stored in incident.timeline.values_list("details", flat=True):
        if stored.get("remote_id"):
            known.add(str(stored["remote_id"]))
        if stored.get("update"):
            own_updates.add(str(stored["update"]))
    for row in ext.get("timeline") or []:
        if not isinstance(row, dict):
            continue
        remote_id = f"{node}:{str(row.get('id', ''))[:60]}"
        if remote_id in known or str(row.get("update", "")) in own_updates:
            continue
        given = row.get("details")
        details: dict[str, Any] = given if isinstance(given, dict) else {}
        short_name = row.get("organisation")
        entry = TimelineEntry.objects.create(
            incident=incident,
            kind=_choice(row.get("kind"), TimelineKind, "timeline kind"),
            organisation=_organisation(short_name) if short_name else None,
            text=_text(row, "text"),
            details={**details, "remote_id": remote_id, "node": node},
        )
        created = _time(row.get("created"))
        if created is not None:
            TimelineEntry.objects.filter(pk=entry.pk).update(created_at=created)
        known.add(remote_id)


@federation.on_receive(UPDATE)
def receive_update(peer: Peer, version: StixObject) -> None:
    """A participant's answer made on its node, for an incident coordinated here."""
    _receiving(peer, version, _apply_update)


def _apply_update(peer: Peer, version: StixObject, body: dict[str, Any]) -> None:
    from minga.incidents import services

    incident_uuid = uuid.UUID(str(body.get("incident_uuid", "")))
    incident = Incident.objects.select_for_update().filter(uuid=incident_uuid).first()
    if incident is None or incident.coordinating_node:
        return  # coordinated elsewhere: a participant's node reads the coordinator's versions
    sender = version.origin_organisation
    if str(body.get("organisation")) != sender.short_name:
        raise Refused(_("An update is made in its sender's name."))
    if not _works_on(version.origin_node, sender):
        raise Refused(
            _("%(org)s does not work on node %(node)s.")
            % {"org": sender.short_name, "node": version.origin_node[:100]}
        )
    if TimelineEntry.objects.filter(incident=incident, details__remote_update=version.stix_id).exists():
        return  # applied already
    action = body.get("action")
    token = _applying.set((version.stix_id, version.origin_node))
    try:
        if action == "acknowledge":
            services.acknowledge(None, incident, sender, at=_time(body.get("at")))
        elif action == "decline":
            services.decline(None, incident, _text(body, "text"), sender)
        elif action == "comment":
            services.comment(None, incident, _text(body, "text"), organisation=sender)
        elif action == "task_status":
            task = IncidentTask.objects.filter(incident=incident, pk=int(str(body.get("task")))).first()
            if task is None or task.organisation_id != sender.pk:
                raise Refused(
                    _("%(org)s may change only the tasks assigned to it.") % {"org": sender.short_name}
                )
            services.set_task_status(None, task, _choice(body.get("status"), TaskStatus, "status"))
        else:
            raise Refused(_("Unknown action %(action)s.") % {"action": str(action)[:40]})
    finally:
        _applying.reset(token)
