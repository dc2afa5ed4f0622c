"""Choices of the incidents app, with translated labels. The classification is the Reference
Security Incident Taxonomy (RSIT), shared with the feed pipeline (``minga.pipeline.choices``)."""

from django.db import models
from django.utils.translation import gettext_lazy as _

from minga.pipeline.choices import RSIT, TAXONOMY_OF, EventType, Taxonomy

__all__ = ["RSIT", "TAXONOMY_OF", "EventType", "Taxonomy"]


class Severity(models.TextChoices):
    LOW = "low", _("Low")
    MEDIUM = "medium", _("Medium")
    HIGH = "high", _("High")
    CRITICAL = "critical", _("Critical")


class IncidentStatus(models.TextChoices):
    NEW = "new", _("New")
    TRIAGE = "triage", _("Triage")
    IN_PROGRESS = "in_progress", _("In progress")
    RESOLVED = "resolved", _("Resolved")
    CLOSED = "closed", _("Closed")


S = IncidentStatus
# The moves a coordinator may make. Going back (reopening) is allowed, with a reason.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.NEW: frozenset({S.TRIAGE, S.IN_PROGRESS, S.RESOLVED, S.CLOSED}),
    S.TRIAGE: frozenset({S.IN_PROGRESS, S.RESOLVED, S.CLOSED}),
    S.IN_PROGRESS: frozenset({S.TRIAGE, S.RESOLVED, S.CLOSED}),
    S.RESOLVED: frozenset({S.IN_PROGRESS, S.CLOSED}),
    S.CLOSED: frozenset({S.IN_PROGRESS}),
}
# Moves that must say why: ending an incident, or reopening one.
REASON_REQUIRED: frozenset[tuple[str, str]] = frozenset(
    {(a, b) for a, targets in TRANSITIONS.items() for b in targets if b in (S.RESOLVED, S.CLOSED)}
    | {(S.RESOLVED, S.IN_PROGRESS), (S.CLOSED, S.IN_PROGRESS)}
)
OPEN_STATUSES = (S.NEW, S.TRIAGE, S.IN_PROGRESS)


class PAP(models.TextChoices):
    """Permissible Actions Protocol: what a recipient may do with the information."""

    CLEAR = "clear", _("PAP:CLEAR")
    GREEN = "green", _("PAP:GREEN")
    AMBER = "amber", _("PAP:AMBER")
    RED = "red", _("PAP:RED")


class ParticipantStatus(models.TextChoices):
    PROPOSED = "proposed", _("Proposed")  # found from the observables; not yet told anything
    ADDED = "added", _("Added, notification pending")
    NOTIFIED = "notified", _("Notified")
    ACKNOWLEDGED = "acknowledged", _("Acknowledged")
    DECLINED = "declined", _("Declined")
    REMOVED = "removed", _("Removed")


P = ParticipantStatus
# Participants who read the incident (as its TLP allows): every one the coordinator added and
# did not remove. A declined participant was told already, and keeps reading what it was told.
READING_STATUSES = (P.ADDED, P.NOTIFIED, P.ACKNOWLEDGED, P.DECLINED)
AWAITING_ACK = (P.ADDED, P.NOTIFIED)


class ObservableKind(models.TextChoices):
    IP = "ip", _("IP address")
    ASN = "asn", _("AS number")
    DOMAIN = "domain", _("Domain")


class TimelineKind(models.TextChoices):
    OPENED = "opened", _("Opened")
    EDITED = "edited", _("Edited")
    COMMENT = "comment", _("Comment")
    STATUS = "status", _("Status change")
    PARTICIPANT = "participant", _("Participant change")
    TASK = "task", _("Task")
    LINK = "link", _("Linked object")
    OBSERVABLE = "observable", _("Observables")
    MERGE = "merge", _("Merge")


class TaskStatus(models.TextChoices):
    OPEN = "open", _("Open")
    DONE = "done", _("Done")
    CANCELLED = "cancelled", _("Cancelled")


class Channel(models.TextChoices):
    IN_APP = "in_app", _("In the application")
    EMAIL = "email", _("E-mail to the 24/7 contact")
    WEBHOOK = "webhook", _("Signed webhook")


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")


# What a notification says, by event, in the reader's language (``%(ref)s``: the reference).
NOTIFICATION_SUBJECTS = {
    "participant_added": _("Your organisation was added to incident %(ref)s"),
    "task_assigned": _("A task of incident %(ref)s was assigned to your organisation"),
    "participant_acknowledged": _("A participant acknowledged incident %(ref)s"),
    "participant_declined": _("A participant declined incident %(ref)s"),
}


class CustodyAction(models.TextChoices):
    """What happened to a piece of evidence: one line of its chain of custody."""

    REGISTERED = "registered", _("Registered")
    TRANSFERRED = "transferred", _("Transferred")
    RETURNED = "returned", _("Returned")
    SEALED = "sealed", _("Sealed")
    ACCESSED = "accessed", _("Downloaded")
    VERIFIED = "verified", _("Verified")
    DISPOSED = "disposed", _("Disposed of")


# The actions that hand the evidence to a new custodian (organisation and person).
CUSTODIAN_CHANGES = (CustodyAction.REGISTERED, CustodyAction.TRANSFERRED, CustodyAction.RETURNED)
# The actions a person records through the custody form (the others the node records itself).
RECORDED_BY_HAND = (
    CustodyAction.TRANSFERRED,
    CustodyAction.RETURNED,
    CustodyAction.SEALED,
    CustodyAction.DISPOSED,
)


class EvidenceStatus(models.TextChoices):
    HELD = "held", _("Held")
    DISPOSED = "disposed", _("Disposed of")
