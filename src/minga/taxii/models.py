"""What the TAXII server keeps of its own: the status resources of envelopes posted to it."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from minga.core.models import Organisation, User


class TaxiiStatus(models.Model):
    """The outcome of one envelope posted to an inbox collection (TAXII 2.1 status resource).

    Readable by the members of the organisation whose inbox received it, or by the peer node
    that posted it to the federation collection, and by nobody else. ``successes`` and
    ``failures`` hold the spec's status-details (id, version, message)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    peer = models.ForeignKey("Peer", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    collection_id = models.UUIDField(_("collection"))
    request_timestamp = models.DateTimeField(_("requested"))
    status = models.CharField(_("status"), max_length=10, default="complete")
    total_count = models.PositiveIntegerField(default=0)
    success_count = models.PositiveIntegerField(default=0)
    failure_count = models.PositiveIntegerField(default=0)
    pending_count = models.PositiveIntegerField(default=0)
    successes = models.JSONField(default=list, blank=True)
    failures = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-request_timestamp"]
        verbose_name = _("TAXII status")
        verbose_name_plural = _("TAXII statuses")

    def __str__(self) -> str:
        return f"{self.uuid} ({self.status})"


class PeerKind(models.TextChoices):
    MINGA = "minga", _("Minga node")
    TAXII = "taxii", _("other TAXII 2.1 server")
    MISP = "misp", _("MISP feed")


class Direction(models.TextChoices):
    PULL = "pull", _("pull")
    PUSH = "push", _("push")
    BOTH = "both", _("pull and push")


class Peer(models.Model):
    """Another node (or a foreign TAXII 2.1 server) this node exchanges intelligence with
    (``minga.taxii.federation``).

    Two credentials are involved: ``credential`` is what this node presents to the peer (an
    API token of the peer's account for this node), sealed at rest because it must be sent
    again; ``account`` is the local user the peer presents itself as here, whose API tokens
    are hashed like every other. What the peer receives, pulled or pushed, is decided by the
    distribution rule (``minga.core.access.distribution_filter``) from the organisations it
    hosts."""

    name = models.SlugField(
        _("name"),
        max_length=100,
        unique=True,
        help_text=_("For a Minga node: its MINGA_NODE_ID. Letters, digits and hyphens."),
    )
    kind = models.CharField(_("kind"), max_length=8, choices=PeerKind.choices, default=PeerKind.MINGA)
    url = models.URLField(_("API root URL"), max_length=500)
    # A foreign server's collection to pull from and push to; Minga nodes use their federation one.
    collection_id = models.CharField(_("collection"), max_length=100, blank=True)
    direction = models.CharField(
        _("direction"), max_length=8, choices=Direction.choices, default=Direction.BOTH
    )
    interval = models.PositiveIntegerField(_("sync every (seconds)"), default=300)
    is_member_node = models.BooleanField(
        _("member node"), default=True, help_text=_("Member nodes receive TLP:GREEN; others only CLEAR.")
    )
    username = models.CharField(_("user name"), max_length=150, blank=True)
    credential = models.TextField(blank=True)  # sealed (minga.core.sealed), never shown
    hosted_organisations = models.ManyToManyField(
        Organisation, blank=True, related_name="+", verbose_name=_("organisations it hosts")
    )
    # Objects from a foreign server carry no provenance: they are stored in this organisation's name.
    organisation = models.ForeignKey(
        Organisation,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("stored in the name of"),
    )
    default_tlp = models.CharField(_("TLP of unmarked objects"), max_length=16, default="amber")
    account = models.OneToOneField(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="peer", editable=False
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Sync state: cursors are saved only after what they cover is committed.
    pull_cursor = models.CharField(max_length=200, blank=True)
    push_after = models.DateTimeField(null=True, blank=True)
    push_after_pk = models.BigIntegerField(default=0)
    claimed_until = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    last_success_at = models.DateTimeField(_("last success"), null=True, blank=True)
    last_pulled_added = models.DateTimeField(null=True, blank=True)  # date_added of the newest pulled
    failures = models.PositiveIntegerField(_("failures in a row"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    pulled = models.PositiveBigIntegerField(_("objects pulled"), default=0)
    pushed = models.PositiveBigIntegerField(_("objects pushed"), default=0)
    rejected = models.PositiveBigIntegerField(_("objects refused"), default=0)

    class Meta:
        ordering = ["name"]
        verbose_name = _("peer")
        verbose_name_plural = _("peers")

    def __str__(self) -> str:
        return self.name

    @property
    def pulls(self) -> bool:
        return self.direction in (Direction.PULL, Direction.BOTH)

    @property
    def pushes(self) -> bool:
        return self.direction in (Direction.PUSH, Direction.BOTH)


class MispFeedEvent(models.Model):
    """An event of a MISP feed peer (kind ``misp``) as this node last pulled it: the manifest's
    ``timestamp`` then, so the next pull fetches only events that are new or changed
    (``minga.taxii.mispfeed.pull``). ``error`` holds why an event file was refused."""

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="misp_events")
    event_uuid = models.UUIDField(_("event"))
    timestamp = models.BigIntegerField(_("timestamp in the manifest"))
    accepted = models.PositiveIntegerField(_("objects stored"), default=0)
    error = models.TextField(_("why it was refused"), blank=True)
    pulled_at = models.DateTimeField(_("pulled"), auto_now=True)

    class Meta:
        ordering = ["peer", "-timestamp"]
        verbose_name = _("MISP feed event")
        verbose_name_plural = _("MISP feed events")
        constraints = [
            models.UniqueConstraint(fields=["peer", "event_uuid"], name="taxii_one_state_per_feed_event")
        ]

    def __str__(self) -> str:
        return f"{self.peer_id}: {self.event_uuid} @ {self.timestamp}"
