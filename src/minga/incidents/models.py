"""Incident cases shared among the participants' organisations, their observables, links to
intelligence, timeline, tasks and the notification outbox."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from minga.core.models import AuditEntry, Organisation, SharedObject
from minga.directory.models import MemberState, Sector
from minga.incidents.choices import (
    PAP,
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
    Taxonomy,
    TimelineKind,
)


class ReferenceCounter(models.Model):
    """The last number given out in a year. Incremented with one UPDATE in the transaction that
    opens the incident: the row lock (PostgreSQL) or the write lock (SQLite, IMMEDIATE) queues
    concurrent openings, and a rolled-back opening rolls its number back, so there are no gaps."""

    year = models.PositiveIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"


class Incident(SharedObject):
    """An incident case. A shared object: the TLP decides who reads it, the reporting
    organisation is its origin, and the participants the coordinator added are its recipient
    organisations (``services`` keeps them in step), so adding a participant grants what the TLP
    allows: everything at AMBER, nothing more at RED (named people only)."""

    reference = models.CharField(_("reference"), max_length=20, unique=True)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    taxonomy = models.CharField(_("RSIT taxonomy"), max_length=40, choices=Taxonomy.choices)
    type = models.CharField(_("RSIT type"), max_length=40, choices=EventType.choices)
    severity = models.CharField(
        _("severity"), max_length=10, choices=Severity.choices, default=Severity.MEDIUM
    )
    status = models.CharField(
        _("status"), max_length=12, choices=IncidentStatus.choices, default=IncidentStatus.NEW
    )
    status_reason = models.TextField(_("reason of the last status change"), blank=True)
    pap = models.CharField(_("PAP"), max_length=8, choices=PAP.choices, default=PAP.AMBER)
    coordinating_organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", verbose_name=_("coordinator")
    )
    affected_states = models.ManyToManyField(
        MemberState, blank=True, related_name="+", verbose_name=_("affected states")
    )
    affected_sectors = models.ManyToManyField(
        Sector, blank=True, related_name="+", verbose_name=_("affected sectors")
    )
    affected_organisations = models.ManyToManyField(
        Organisation, blank=True, related_name="+", verbose_name=_("affected organisations")
    )
    merged_into = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="duplicates",
        verbose_name=_("merged into"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("incident")
        verbose_name_plural = _("incidents")
        indexes = [
            models.Index(fields=["status", "created_at"], name="incident_status_created"),
            models.Index(fields=["severity", "created_at"], name="incident_severity_created"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.title}"


class IncidentObservable(models.Model):
    """An IP address, AS number or domain entered on the incident: what the directory resolves
    to the constituencies concerned."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="observables")
    kind = models.CharField(_("kind"), max_length=8, choices=ObservableKind.choices)
    value = models.CharField(_("value"), max_length=253)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "value"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "kind", "value"], name="incident_one_observable")
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class Participant(models.Model):
    """An organisation taking part in the incident, with its own status."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="participants")
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(
        _("status"), max_length=12, choices=ParticipantStatus.choices, default=ParticipantStatus.PROPOSED
    )
    # Why it was proposed: {"basis": "owner"|"national_csirt", "observables": [...]}.
    proposal = models.JSONField(default=dict, blank=True)
    reason = models.TextField(_("reason"), blank=True)  # of a decline or a removal
    proposed_at = models.DateTimeField(null=True, blank=True)
    added_at = models.DateTimeField(_("added"), null=True, blank=True)
    notified_at = models.DateTimeField(_("notified"), null=True, blank=True)
    acknowledged_at = models.DateTimeField(_("acknowledged"), null=True, blank=True)
    declined_at = models.DateTimeField(_("declined"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "organisation"], name="incident_one_participant")
        ]

    def __str__(self) -> str:
        return f"{self.organisation} ({self.get_status_display()})"

    @property
    def time_to_acknowledge(self) -> timedelta | None:
        if self.added_at is None or self.acknowledged_at is None:
            return None
        return self.acknowledged_at - self.added_at

    @property
    def time_to_acknowledge_shown(self) -> str:
        """As h:mm:ss, whole seconds."""
        elapsed = self.time_to_acknowledge
        return "" if elapsed is None else str(timedelta(seconds=int(elapsed.total_seconds())))


class IncidentLink(models.Model):
    """A STIX object of the intelligence store linked to the incident, by its id. Readers see a
    link only when they may read the object too (``queries.links_visible_to``)."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="links")
    stix_id = models.CharField(_("STIX id"), max_length=300)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [models.UniqueConstraint(fields=["incident", "stix_id"], name="incident_one_link")]

    def __str__(self) -> str:
        return self.stix_id


class IncidentEvent(models.Model):
    """A feed event of the pipeline linked to the incident, by its id: events are many, never
    edited and purged after their feed's retention, so no foreign key holds them. Readers see a
    link only while they may read the event (``queries.linked_events``)."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="event_links")
    event_id = models.BigIntegerField(_("event"))
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["event_id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "event_id"], name="incident_one_event_link")
        ]

    def __str__(self) -> str:
        return f"event {self.event_id}"


class TimelineEntry(models.Model):
    """One line of the incident's shared timeline: read by whoever reads the incident."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="timeline")
    kind = models.CharField(_("kind"), max_length=12, choices=TimelineKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField(_("text"), blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name = _("timeline entry")
        verbose_name_plural = _("timeline entries")

    def __str__(self) -> str:
        return f"{self.incident_id} {self.kind} {self.created_at:%Y-%m-%d %H:%M}"


class IncidentTask(models.Model):
    """Work asked of one organisation, by a due date."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(_("task"), max_length=200)
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", verbose_name=_("assigned to")
    )
    due_at = models.DateTimeField(_("due"), null=True, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_at", "pk"]
        verbose_name = _("task")
        verbose_name_plural = _("tasks")

    def __str__(self) -> str:
        return self.title

    @property
    def is_overdue(self) -> bool:
        from django.utils import timezone

        return self.status == TaskStatus.OPEN and self.due_at is not None and self.due_at < timezone.now()


class Notification(models.Model):
    """The outbox: written in the transaction of the change that caused it. In-app notifications
    are delivered by being written; e-mail ones wait for ``tasks.deliver_notification``, retried
    with backoff until delivered (``claimed_until`` keeps two attempts from sending twice)."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="notifications")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(_("channel"), max_length=8, choices=Channel.choices)
    event = models.CharField(_("event"), max_length=40)
    subject = models.CharField(_("subject"), max_length=300)
    body = models.TextField(_("message"))
    status = models.CharField(
        _("delivery"), max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    recipients = models.JSONField(default=list, blank=True)  # the addresses it went to
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        indexes = [models.Index(fields=["channel", "status"], name="incident_notification_due")]

    def __str__(self) -> str:
        return f"{self.event} → {self.organisation_id} ({self.channel}, {self.status})"

    @property
    def shown_subject(self) -> str:
        """The subject in the reader's language (the stored one is in the writer's)."""
        from minga.incidents.choices import NOTIFICATION_SUBJECTS

        label = NOTIFICATION_SUBJECTS.get(self.event)
        return str(label) % {"ref": self.incident.reference} if label is not None else self.subject


class Evidence(models.Model):
    """A file registered as evidence of an incident. The content lives outside the database in
    the content-addressed store (``minga.incidents.storage``, under its SHA-256); this row holds
    what is known about it and who holds it now. Who reads it follows the incident: the
    organisations taking part in it (``services.may_contribute``), never more.

    Its chain of custody is ``custody`` (``CustodyEvent``), each line bound to an entry of the
    hash-chained audit log."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="evidence")
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    file_name = models.CharField(_("original file name"), max_length=255)
    media_type = models.CharField(_("media type"), max_length=127)
    size = models.PositiveBigIntegerField(_("size (bytes)"))
    sha256 = models.CharField(_("SHA-256"), max_length=64, db_index=True)
    acquired_at = models.DateTimeField(_("acquired"), null=True, blank=True)
    acquired_by = models.CharField(_("acquired by"), max_length=200, blank=True)
    source = models.CharField(_("source"), max_length=500, blank=True)
    custodian_organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", verbose_name=_("custodian")
    )
    custodian_person = models.CharField(_("custodian (person)"), max_length=200, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=EvidenceStatus.choices, default=EvidenceStatus.HELD
    )
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    registered_at = models.DateTimeField(_("registered"), auto_now_add=True)

    class Meta:
        ordering = ["registered_at", "pk"]
        verbose_name = _("evidence")
        verbose_name_plural = _("evidence")

    def __str__(self) -> str:
        return f"{self.incident.reference} evidence {self.pk}: {self.title}"


class CustodyEvent(models.Model):
    """One line of an evidence item's chain of custody, bound to the audit log.

    What happened (who, when, action, from whom, to whom, why) is written once, in the details of
    the audit entry recorded in the same transaction (action ``evidence.<action>``); this row
    indexes that entry for the item and keeps its hash. The custody log shown on the page and
    in the API is read from the audit entries themselves, so it is exactly what the chain
    protects: altering an entry breaks ``minga audit verify``, and ``minga evidence verify``
    checks that every custody row still points to an entry with the hash it recorded, for the
    same item and action, that every evidence entry of the audit log has its row, and that the
    item's current custodian and content are the ones its chain ends with."""

    evidence = models.ForeignKey(Evidence, on_delete=models.PROTECT, related_name="custody")
    action = models.CharField(_("action"), max_length=12, choices=CustodyAction.choices)
    audit_entry = models.OneToOneField(AuditEntry, on_delete=models.PROTECT, related_name="+")
    audit_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["audit_entry__seq"]
        verbose_name = _("custody event")
        verbose_name_plural = _("custody events")

    def __str__(self) -> str:
        return f"{self.evidence_id} {self.action} (audit #{self.audit_entry_id})"
