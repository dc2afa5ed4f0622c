"""Mutual-assistance requests between states' organisations: the request with its deadlines,
its thread (messages and events), attachments, the e-mail outbox of its notifications and the
network-wide deadlines per priority."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from minga.assistance.choices import (
    DeliveryStatus,
    EntryKind,
    Escalation,
    Outcome,
    Priority,
    RequestKind,
    RequestStatus,
)
from minga.core.models import Organisation
from minga.directory.models import MemberState


class DeadlinePolicy(models.Model):
    """How long the requested side has, network-wide, to acknowledge and to answer a request of
    one priority. Node admins change it; a request keeps the deadlines set when it was submitted."""

    priority = models.CharField(_("priority"), max_length=10, choices=Priority.choices, unique=True)
    acknowledge_within = models.DurationField(_("acknowledge within"))
    respond_within = models.DurationField(_("respond within"))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority"]
        verbose_name = _("deadline policy")
        verbose_name_plural = _("deadline policies")

    def __str__(self) -> str:
        return f"{self.priority}: {self.acknowledge_within} / {self.respond_within}"


class AssistanceRequest(models.Model):
    """A request from one state's organisation to another state's: its designated point of
    contact (the national CSIRT) or a named organisation. The content (subject, description,
    legal basis, thread, attachments) is for the two parties only; coordinators see the rest."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    reference = models.CharField(_("reference"), max_length=20, unique=True)
    requesting_organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", verbose_name=_("requesting organisation")
    )
    requesting_state = models.ForeignKey(
        MemberState,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("requesting state"),
    )
    requested_organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", verbose_name=_("requested organisation")
    )
    requested_state = models.ForeignKey(
        MemberState, on_delete=models.PROTECT, related_name="+", verbose_name=_("requested state")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(_("kind"), max_length=20, choices=RequestKind.choices)
    priority = models.CharField(_("priority"), max_length=10, choices=Priority.choices)
    # Content: the parties only.
    subject = models.CharField(_("subject"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    legal_basis = models.CharField(_("legal basis"), max_length=300, blank=True)
    legal_reference = models.CharField(_("legal reference"), max_length=200, blank=True)
    answer = models.TextField(_("answer"), blank=True)  # the answer's text, or why it was declined
    withdrawal_reason = models.TextField(_("reason for withdrawal"), blank=True)
    # Metadata: the parties and the network's coordinators.
    status = models.CharField(
        _("status"), max_length=12, choices=RequestStatus.choices, default=RequestStatus.DRAFT
    )
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices, blank=True)
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    acknowledge_by = models.DateTimeField(_("acknowledge by"), null=True, blank=True)
    respond_by = models.DateTimeField(_("answer by"), null=True, blank=True)
    acknowledged_at = models.DateTimeField(_("acknowledged"), null=True, blank=True)
    first_response_at = models.DateTimeField(_("first response"), null=True, blank=True)
    answered_at = models.DateTimeField(_("answered"), null=True, blank=True)
    withdrawn_at = models.DateTimeField(_("withdrawn"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    escalation_level = models.PositiveSmallIntegerField(
        _("escalation"), choices=Escalation.choices, default=Escalation.NONE
    )
    escalated_at = models.DateTimeField(_("escalated"), null=True, blank=True)
    # When the sweep found the answer overdue and told the desk and the coordinator (once).
    answer_overdue_at = models.DateTimeField(_("answer overdue"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("assistance request")
        verbose_name_plural = _("assistance requests")
        indexes = [
            # The escalation sweep: submitted requests by their acknowledgement deadline.
            models.Index(fields=["status", "acknowledge_by"], name="assistance_due_ack"),
        ]

    def __str__(self) -> str:
        return self.reference

    @property
    def is_open(self) -> bool:
        from minga.assistance.choices import OPEN_STATUSES

        return self.status in OPEN_STATUSES

    def _left(self, deadline: datetime | None, met_at: datetime | None) -> timedelta | None:
        if deadline is None or met_at is not None or not self.is_open:
            return None
        return deadline - timezone.now()

    @property
    def acknowledge_left(self) -> timedelta | None:
        """Time left to acknowledge (negative when overdue); None once acknowledged or closed."""
        return self._left(self.acknowledge_by, self.acknowledged_at)

    @property
    def respond_left(self) -> timedelta | None:
        """Time left to answer (negative when overdue); None once answered or closed."""
        return self._left(self.respond_by, self.answered_at)

    @property
    def acknowledged_in_time(self) -> bool | None:
        if self.acknowledge_by is None or self.acknowledged_at is None:
            return None
        return self.acknowledged_at <= self.acknowledge_by

    @property
    def answered_in_time(self) -> bool | None:
        if self.respond_by is None or self.answered_at is None:
            return None
        return self.answered_at <= self.respond_by


class ThreadEntry(models.Model):
    """A line of a request's thread: a party's message, or what happened (status changes,
    escalations, attachments), in order. Content: the parties only."""

    request = models.ForeignKey(AssistanceRequest, on_delete=models.CASCADE, related_name="thread")
    kind = models.CharField(_("kind"), max_length=12, choices=EntryKind.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name = _("thread entry")
        verbose_name_plural = _("thread entries")

    def __str__(self) -> str:
        return f"{self.request_id}: {self.kind}"


class Attachment(models.Model):
    """A file a party attached: its bytes live outside the database, named by their SHA-256
    (``services.attachment_path``), so the same file attached twice is stored once."""

    request = models.ForeignKey(AssistanceRequest, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(_("file name"), max_length=200)
    content_type = models.CharField(_("content type"), max_length=100)
    size = models.PositiveBigIntegerField(_("size"))
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")

    def __str__(self) -> str:
        return self.filename


class RequestMail(models.Model):
    """The request's e-mail outbox: written in the transaction of the change that caused it
    (submission, escalation), with the addresses chosen then; ``tasks.deliver_request_mail``
    sends it, retried until delivered. (The incidents app has an outbox of its own; one shared
    outbox in core is the refactoring that would merge them.)"""

    request = models.ForeignKey(AssistanceRequest, on_delete=models.CASCADE, related_name="mails")
    event = models.CharField(max_length=40)
    level = models.PositiveSmallIntegerField(default=0)  # the escalation level it belongs to
    recipients = models.JSONField(default=list)
    language = models.CharField(max_length=8, default="en")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            # An escalation level mails once per request, however often the sweep runs.
            models.UniqueConstraint(
                fields=["request", "event", "level"], name="assistance_one_mail_per_event_level"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} ({self.status})"
