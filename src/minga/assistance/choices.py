"""Choices of mutual-assistance requests, with translated labels, and the lifecycle's rules."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils.translation import gettext_lazy as _


class RequestKind(models.TextChoices):
    INCIDENT_RESPONSE = "incident_response", _("Incident-response assistance")
    INFORMATION = "information", _("Information request")
    PRESERVATION = "preservation", _("Data preservation")
    INVESTIGATION = "investigation", _("Investigation support")
    OTHER = "other", _("Other")


class Priority(models.TextChoices):
    ROUTINE = "routine", _("Routine")
    URGENT = "urgent", _("Urgent")
    EMERGENCY = "emergency", _("Emergency")


# The network's defaults (issue 7): acknowledge within, respond within. Node admins change them
# on the SLA page or through the API (``DeadlinePolicy`` rows); a priority without a row uses these.
DEFAULT_DEADLINES: dict[str, tuple[timedelta, timedelta]] = {
    Priority.EMERGENCY: (timedelta(hours=1), timedelta(hours=24)),
    Priority.URGENT: (timedelta(hours=4), timedelta(hours=72)),
    Priority.ROUTINE: (timedelta(days=2), timedelta(days=30)),
}


class RequestStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SUBMITTED = "submitted", _("Submitted")
    ACKNOWLEDGED = "acknowledged", _("Acknowledged")
    IN_PROGRESS = "in_progress", _("In progress")
    ANSWERED = "answered", _("Answered")
    WITHDRAWN = "withdrawn", _("Withdrawn")
    CLOSED = "closed", _("Closed")


class Outcome(models.TextChoices):
    FULFILLED = "fulfilled", _("Fulfilled")
    PARTIAL = "partial", _("Partially fulfilled")
    DECLINED = "declined", _("Declined")


# Requests the requested side still owes something on: the SLA view's "open" ones.
OPEN_STATUSES = (RequestStatus.SUBMITTED, RequestStatus.ACKNOWLEDGED, RequestStatus.IN_PROGRESS)
# The requesting side may withdraw a request until it is answered.
WITHDRAWABLE = (RequestStatus.DRAFT, *OPEN_STATUSES)
# Either side may close a request once it is answered or withdrawn.
CLOSABLE = (RequestStatus.ANSWERED, RequestStatus.WITHDRAWN)


class EntryKind(models.TextChoices):
    """What a line of a request's thread is: a message written by a party, or an event."""

    MESSAGE = "message", _("Message")
    STATUS = "status", _("Status")
    ESCALATION = "escalation", _("Escalation")
    ATTACHMENT = "attachment", _("Attachment")


class Escalation(models.IntegerChoices):
    NONE = 0, _("Not escalated")
    NEXT_CONTACT = 1, _("Next 24/7 contact")
    COORDINATOR = 2, _("Network coordinator")


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
