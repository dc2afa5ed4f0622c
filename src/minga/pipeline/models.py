"""Feeds, their runs (split into chunks), the events they bring and the lines they could not read.

Events are shared objects: the originator is the feed's owner, the TLP is the feed's default and
the recipient organisations are the organisations the event was routed to. So the one access
policy (``minga.core.access``) decides who reads an event, and unrouted events (no recipient)
stay with the feed's owner: the node's own team when it runs the node's feeds.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from minga.core.choices import TLP
from minga.core.models import Organisation, SharedObject, User
from minga.pipeline.choices import (
    DigestChannel,
    DigestSchedule,
    Encoding,
    EventType,
    FeedFormat,
    FeedSource,
    RunSource,
    RunStatus,
    Taxonomy,
)

# The fields an input line can fill, in the order of exports.
EVENT_FIELDS = (
    "time",
    "classification_taxonomy",
    "classification_type",
    "source_ip",
    "source_port",
    "source_asn",
    "source_fqdn",
    "source_url",
    "source_country",
    "destination_ip",
    "destination_port",
    "destination_asn",
    "destination_fqdn",
    "destination_url",
    "destination_country",
)
DEFAULT_DEDUP_FIELDS = ["source_ip", "source_port", "classification_type"]
FEED_TLPS = (TLP.CLEAR, TLP.GREEN, TLP.AMBER, TLP.AMBER_STRICT)  # RED names people, not organisations


def _default_dedup_fields() -> list[str]:
    return list(DEFAULT_DEDUP_FIELDS)


class Feed(models.Model):
    """A source of events an organisation receives (scanning reports, botnet drones, phishing
    URLs...), with how to read it, classify it, de-duplicate it and how long to keep it."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.SlugField(
        _("name"), max_length=80, unique=True, help_text=_("Letters, digits, hyphens: e.g. shadow-scan-ssl.")
    )
    description = models.TextField(_("description"), blank=True)
    owner = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", verbose_name=_("owner")
    )
    format = models.CharField(_("format"), max_length=8, choices=FeedFormat.choices, default=FeedFormat.CSV)
    encoding = models.CharField(_("encoding"), max_length=10, choices=Encoding.choices, default=Encoding.UTF8)
    # Event field -> CSV column (a header name, or a number from 1 without a header) or JSON key.
    # Fields left out are read from a column (or key) of the same name when there is one.
    mapping = models.JSONField(_("column mapping"), default=dict, blank=True)
    delimiter = models.CharField(_("delimiter"), max_length=1, default=",")
    quotechar = models.CharField(_("quote character"), max_length=1, default='"')
    has_header = models.BooleanField(_("first line names the columns"), default=True)
    default_tlp = models.CharField(
        _("TLP of its events"), max_length=16, choices=TLP.choices, default=TLP.AMBER
    )
    classification_type = models.CharField(
        _("classification"),
        max_length=40,
        choices=EventType.choices,
        default=EventType.UNDETERMINED,
        help_text=_("The RSIT type of events whose line names none."),
    )
    # Value found in the line's classification column -> RSIT type.
    taxonomy_mapping = models.JSONField(_("taxonomy mapping"), default=dict, blank=True)
    dedup_window = models.PositiveIntegerField(
        _("de-duplication window (seconds)"),
        default=86400,
        help_text=_("Events with the same key in the same window are stored once; 0 keeps every event."),
    )
    dedup_fields = models.JSONField(_("de-duplication key"), default=_default_dedup_fields)
    retention_days = models.PositiveIntegerField(_("retention (days)"), default=365)
    is_active = models.BooleanField(_("active"), default=True)
    # Where files come from besides uploads: a URL pulled every ``pull_every`` seconds, or a
    # folder under the node's feed inbox (MINGA_PIPELINE_INBOX) swept every minute.
    source = models.CharField(
        _("source"), max_length=10, choices=FeedSource.choices, default=FeedSource.UPLOAD
    )
    url = models.URLField(_("URL"), max_length=2000, blank=True)
    directory = models.CharField(
        _("directory"),
        max_length=200,
        blank=True,
        help_text=_("A folder under the node's feed inbox, e.g. shadowserver/scan."),
    )
    pull_every = models.PositiveIntegerField(_("pull every (seconds)"), default=3600)
    # The state of the pulls (not settings: the node writes them).
    etag = models.CharField(max_length=300, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)
    pulled_at = models.DateTimeField(_("last pulled"), null=True, blank=True)
    next_pull_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    failures = models.PositiveIntegerField(_("failures in a row"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    # A TAXII collection's bearer token, sealed (minga.core.sealed), never shown; and the date
    # added of the last object received, which the next pull asks to be after.
    credential = models.TextField(blank=True)
    cursor = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("feed")
        verbose_name_plural = _("feeds")

    def __str__(self) -> str:
        return self.name

    def options(self) -> dict[str, Any]:
        """How a run reads its file: a snapshot, so editing the feed does not change a run
        halfway (re-processing dead letters reads with the feed's current options)."""
        return {
            "format": self.format,
            "encoding": self.encoding,
            "mapping": dict(self.mapping),
            "delimiter": self.delimiter,
            "quotechar": self.quotechar,
            "has_header": self.has_header,
            "classification_type": self.classification_type,
            "taxonomy_mapping": dict(self.taxonomy_mapping),
            "dedup_window": self.dedup_window,
            "dedup_fields": list(self.dedup_fields),
            "default_tlp": self.default_tlp,  # records marked stricter are not its events
        }


class Run(models.Model):
    """One file of a feed, kept under the node's var folder before anything reads it, and
    processed in chunks. Its counts are the sums of its chunks'."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="runs")
    source = models.CharField(_("source"), max_length=10, choices=RunSource.choices)
    file_name = models.CharField(_("file"), max_length=200)
    path = models.CharField(max_length=500)
    # The records of a STIX bundle, a MISP feed or an IntelMQ JSON array, one JSON object a line,
    # written from the kept file (``path``) before the split: the chunks read these lines.
    lines_path = models.CharField(max_length=500, blank=True)
    file_size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    options = models.JSONField(default=dict)
    header = models.JSONField(default=list, blank=True)  # the CSV header's columns
    status = models.CharField(_("status"), max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    message = models.TextField(blank=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    read = models.PositiveIntegerField(_("read"), default=0)
    parsed = models.PositiveIntegerField(_("parsed"), default=0)
    invalid = models.PositiveIntegerField(_("invalid"), default=0)
    duplicates = models.PositiveIntegerField(_("duplicates"), default=0)
    routed = models.PositiveIntegerField(_("routed"), default=0)
    unrouted = models.PositiveIntegerField(_("unrouted"), default=0)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("run")
        verbose_name_plural = _("runs")
        indexes = [models.Index(fields=["feed", "-created_at"], name="pipeline_run_feed")]

    def __str__(self) -> str:
        return f"{self.feed} {self.file_name}"

    @property
    def percent(self) -> int:
        if self.status == RunStatus.DONE:
            return 100
        return min(99, int(100 * self.chunks_done / self.chunk_count)) if self.chunk_count else 0


COUNTS = ("read", "parsed", "invalid", "duplicates", "routed", "unrouted")


class Chunk(models.Model):
    """A range of lines of a run's file: one background task, one transaction. ``done`` is set
    in the transaction that writes its events and dead letters, so a chunk is written once."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    start_byte = models.PositiveBigIntegerField()
    end_byte = models.PositiveBigIntegerField()
    first_line = models.PositiveIntegerField()  # from 1, as an editor counts
    line_count = models.PositiveIntegerField()
    done = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    read = models.PositiveIntegerField(default=0)
    parsed = models.PositiveIntegerField(default=0)
    invalid = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    routed = models.PositiveIntegerField(default=0)
    unrouted = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["run", "number"]
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="pipeline_chunk_number")]

    def __str__(self) -> str:
        return f"{self.run} #{self.number}"


class Event(SharedObject):
    """One record of a feed, normalised, classified and routed. The originator is the feed's
    owner, the TLP the feed's default, the recipients the organisations it was routed to."""

    # Events are many and never edited: no uuid, no update time.
    uuid = None  # type: ignore[assignment]
    updated_at = None  # type: ignore[assignment]
    origin_organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", verbose_name=_("originator"), db_index=False
    )
    recipient_organisations = models.ManyToManyField(  # type: ignore[assignment]
        Organisation,
        through="EventRecipient",
        blank=True,
        related_name="+",
        verbose_name=_("routed to"),
    )
    # Feeds are never TLP:RED, so no event names users and this table stays empty. No database
    # foreign keys (Django deletes its rows itself): on PostgreSQL the event table is
    # partitioned by time and its key is (id, time), which a key on event_id alone cannot name.
    recipient_users = models.ManyToManyField(  # type: ignore[assignment]
        User, blank=True, related_name="+", verbose_name=_("recipient users"), db_constraint=False
    )
    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="+", db_index=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+", db_index=False)
    line = models.PositiveIntegerField(_("line"))
    time = models.DateTimeField(_("time"))
    classification_taxonomy = models.CharField(_("taxonomy"), max_length=40, choices=Taxonomy.choices)
    classification_type = models.CharField(_("type"), max_length=40, choices=EventType.choices)
    source_ip = models.CharField(_("source IP"), max_length=39, blank=True)
    source_port = models.PositiveIntegerField(_("source port"), null=True, blank=True)
    source_asn = models.PositiveBigIntegerField(_("source ASN"), null=True, blank=True)
    source_fqdn = models.CharField(_("source FQDN"), max_length=253, blank=True)
    source_url = models.CharField(_("source URL"), max_length=2048, blank=True)
    source_country = models.CharField(_("source country"), max_length=2, blank=True)
    destination_ip = models.CharField(_("destination IP"), max_length=39, blank=True)
    destination_port = models.PositiveIntegerField(_("destination port"), null=True, blank=True)
    destination_asn = models.PositiveBigIntegerField(_("destination ASN"), null=True, blank=True)
    destination_fqdn = models.CharField(_("destination FQDN"), max_length=253, blank=True)
    destination_url = models.CharField(_("destination URL"), max_length=2048, blank=True)
    destination_country = models.CharField(_("destination country"), max_length=2, blank=True)
    is_routed = models.BooleanField(_("routed"), default=False)
    # A 64-bit hash of the de-duplication window the event falls in and its key fields (or of
    # its run and line when the feed keeps every event). Once per feed: a duplicate, in this
    # chunk, another chunk or another run, is never stored twice. The writers guarantee it (the
    # chunks of a feed are written one at a time, each looking its keys up first); SQLite's
    # index is also unique, PostgreSQL's cannot be (see below).
    dedup_key = models.BigIntegerField()

    class Meta:
        # Newest received first: ids only grow, so an organisation's latest events are the end
        # of its range of the recipients' (organisation, event) index. No index on time: each one
        # costs every insert (a third of the writing time at a million events), and the time
        # filters apply within an organisation's or a feed's range.
        #
        # On PostgreSQL the table is partitioned by month of ``time`` (``minga.pipeline.partitions``,
        # migration 0008): its primary key is (id, time), since every unique index of a partitioned
        # table must hold the partition key, so (feed, dedup_key) cannot be unique across the
        # partitions and is a plain index there (SQLite's is unique: migration 0008 makes it so).
        ordering = ["-id"]
        verbose_name = _("event")
        verbose_name_plural = _("events")
        indexes = [models.Index(fields=["feed", "dedup_key"], name="pipeline_event_key")]

    def __str__(self) -> str:
        return (
            f"{self.classification_type} {self.source_ip or self.source_fqdn or self.source_url} {self.time}"
        )


class EventRecipient(models.Model):
    """An organisation an event was routed to. Indexed by organisation then event, so an
    organisation's newest events are the end of one range of one index however large the table
    grows, and rows are appended in index order as events arrive (event ids only grow). The
    event's time is copied here for time filters on that range.

    On PostgreSQL the table is partitioned by month of ``time`` like the events, so an expired
    month's recipients are dropped with its events. No database foreign key to the event: one
    would have to name (event_id, time), and make every dropped month a detach that checks this
    whole table first. The rows are written with their event, in its transaction, and deleted
    with it by Django (which cascades itself) or with its month's partition."""

    event = models.ForeignKey(
        Event, on_delete=models.CASCADE, related_name="routes", db_index=False, db_constraint=False
    )
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+", db_index=False)
    time = models.DateTimeField()

    class Meta:
        # With the time, which the event fixes: a unique index of a partitioned table holds the
        # partition key.
        constraints = [
            models.UniqueConstraint(fields=["event", "organisation", "time"], name="pipeline_recipient_once")
        ]
        indexes = [models.Index(fields=["organisation", "event"], name="pipeline_recipient_org_event")]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.organisation_id}"


class DeadLetter(models.Model):
    """A line that could not become an event, with the field and the reason."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="dead_letters", db_index=False)
    line = models.PositiveIntegerField(_("line"))
    field = models.CharField(_("field"), max_length=40, blank=True)
    reason = models.CharField(_("reason"), max_length=300)
    raw = models.TextField(_("raw line"), blank=True)

    class Meta:
        ordering = ["run", "line"]
        indexes = [models.Index(fields=["run", "line"], name="pipeline_deadletter_run_line")]
        verbose_name = _("dead letter")
        verbose_name_plural = _("dead letters")

    def __str__(self) -> str:
        return f"{self.run_id}:{self.line} {self.reason}"


class Digest(models.Model):
    """An organisation's subscription to a digest of the events routed to it, on its schedule,
    by e-mail (a CSV attached) or by webhook (signed JSON). Managed by the organisation's admins
    (``digests.may_manage``). ``window_end`` is the end of the last window delivered: the next
    digest holds the events stored from then on; it moves only after a delivery succeeded."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="+", verbose_name=_("organisation")
    )
    schedule = models.CharField(
        _("schedule"), max_length=10, choices=DigestSchedule.choices, default=DigestSchedule.DAILY
    )
    channel = models.CharField(
        _("channel"), max_length=10, choices=DigestChannel.choices, default=DigestChannel.EMAIL
    )
    # Explicit addresses; none: the organisation's 24/7 duty contacts in the directory.
    recipients = models.JSONField(_("recipients"), default=list, blank=True)
    url = models.URLField(_("URL"), max_length=500, blank=True)
    # The webhook's signing secret, sealed (minga.core.sealed): shown once when set, never again.
    sealed_secret = models.TextField(blank=True, editable=False)
    send_empty = models.BooleanField(_("send a one-line digest when there is no event"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    window_end = models.DateTimeField(_("delivered up to"))
    # The end of the window being delivered, fixed at its first attempt so that every retry
    # sends the same events (and the same delivery id); cleared when it is delivered.
    pending_end = models.DateTimeField(null=True, blank=True)
    # A worker sending this digest holds it until then, with this token (a conditional UPDATE
    # claims it, so one worker sends each window).
    claim = models.CharField(max_length=32, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    failures = models.PositiveIntegerField(_("failures in a row"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    last_sent_at = models.DateTimeField(_("last sent"), null=True, blank=True)
    last_count = models.PositiveIntegerField(_("events in the last digest"), default=0)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organisation__short_name", "created_at"]
        verbose_name = _("digest")
        verbose_name_plural = _("digests")
        indexes = [models.Index(fields=["is_active", "window_end"], name="pipeline_digest_due")]

    def __str__(self) -> str:
        return f"{self.organisation.short_name} {self.schedule} {self.channel}"
