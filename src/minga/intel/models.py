"""The STIX 2.1 store: one row per object version, the observables index, import jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import models
from django.utils.translation import gettext_lazy as _

from minga.core.choices import TLP
from minga.core.models import Organisation, SharedObject, User
from minga.intel.choices import ImportFormat, ImportStatus, ObservableKind

# The ``modified`` of objects that have no versions (SCOs without created or modified).
UNVERSIONED = datetime(1970, 1, 1, tzinfo=UTC)


class StixObject(SharedObject):
    """One version of a STIX object (SDO, SCO, SRO, marking, language content, extension
    definition or custom type), kept as validated JSON with the columns queries need.

    Versions are kept per originating organisation: a row is identified by (stix_id, modified,
    origin_organisation), and replaying one changes nothing. Two organisations sharing the
    same id (SCOs have ids derived from their value; a bundle may carry another team's objects)
    each keep their own copy and their own history: neither can supersede, revoke or even
    detect the other's rows. Objects without versions (SCOs, marking definitions) take
    ``created``, or the epoch, as their ``modified`` so that the same rule holds for them. The
    access policy (TLP and recipients) applies per version, as imported. Readers see one
    version per id (``minga.intel.queries``)."""

    stix_id = models.CharField(_("STIX id"), max_length=300)
    type = models.CharField(_("type"), max_length=250)
    spec_version = models.CharField(max_length=8, default="2.1")
    created = models.DateTimeField(_("created"), null=True, blank=True)
    modified = models.DateTimeField(_("modified"))
    # Set by this node when the version arrived, never taken from the input (TAXII's date_added).
    date_added = models.DateTimeField(_("added"))
    revoked = models.BooleanField(_("revoked"), default=False)
    # The newest version of its stix_id from its originating organisation: maintained by the
    # import, one per (stix_id, origin_organisation).
    is_latest = models.BooleanField(default=True)
    # True when the import knew that no row competes with this one for its stix_id: no other
    # organisation holds the id, and no second version of it is flagged latest. Readers then
    # skip choosing among copies (``intel.queries.outranked``), a look-up per row that at a
    # million rows costs more than the rest of a TAXII page. False or None (rows written
    # elsewhere) ask for the look-up. The import writes it under a lock (``services``), and
    # flags an id's rows False when a second organisation stores the id.
    unrivalled = models.BooleanField(null=True, default=None)
    # What a list shows: the name, the value or the pattern, cut short.
    label = models.CharField(_("label"), max_length=200, blank=True)
    # Sightings: what was sighted, how often and when, for per-reader aggregates.
    sighting_of_ref = models.CharField(max_length=300, blank=True)
    sighting_count = models.PositiveIntegerField(null=True, blank=True)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    raw = models.TextField(_("STIX JSON"))
    # Provenance, for federation: the node where the version was first shared (blank: this
    # node) and the peer this node received it from (blank: not received). Federation never
    # sends a version back to either (``minga.core.access.distribution_filter``).
    origin_node = models.CharField(_("origin node"), max_length=100, blank=True, db_default="")
    received_from = models.CharField(_("received from"), max_length=100, blank=True, db_default="")
    # As SharedObject's, without database foreign keys on the link rows: an import writes one
    # row per object per recipient, and PostgreSQL checked both keys of every row at commit
    # (1.5 of 11 CPU seconds for 100,000 objects). The import checks the recipients once per chunk
    # and links only the rows it has just written; deletions go through the ORM, which removes
    # an object's link rows (``services.delete_versions``). On SQLite the keys stay in place:
    # the migration drops them on PostgreSQL only, rather than rebuild the table.
    recipient_organisations = models.ManyToManyField(  # type: ignore[assignment]
        Organisation,
        blank=True,
        related_name="+",
        verbose_name=_("recipient organisations"),
        db_constraint=False,
    )

    class Meta:
        ordering = ["-date_added", "-pk"]
        verbose_name = _("STIX object")
        verbose_name_plural = _("STIX objects")
        constraints = [
            models.UniqueConstraint(
                fields=["stix_id", "modified", "origin_organisation"], name="intel_one_row_per_origin_version"
            )
        ]
        indexes = [
            # An id's latest versions, with what choosing among organisations' copies compares
            # (intel.queries.outranked), so that the choice reads the index, not the rows.
            models.Index(
                fields=["stix_id", "is_latest", "modified", "origin_organisation", "tlp"],
                name="intel_obj_latest_copies",
            ),
            models.Index(fields=["type", "is_latest"], name="intel_obj_type"),
            # TAXII pages in (date_added, id) order, the whole store or one type at a time.
            models.Index(fields=["date_added", "id"], name="intel_obj_added_id"),
            models.Index(fields=["type", "date_added", "id"], name="intel_obj_type_added"),
            models.Index(fields=["modified"], name="intel_obj_modified"),
            models.Index(fields=["sighting_of_ref", "is_latest"], name="intel_obj_sighted"),
        ]

    def __str__(self) -> str:
        return f"{self.stix_id} ({self.modified:%Y-%m-%d %H:%M:%S})"

    @property
    def version_time(self) -> datetime | None:
        """``modified`` as the object states it: None for objects that have no versions."""
        return None if self.modified == UNVERSIONED else self.modified

    @property
    def data(self) -> dict[str, Any]:
        return orjson.loads(self.raw)


class Observable(models.Model):
    """A normalised observable value, once per node: the index correlation runs on."""

    kind = models.CharField(_("kind"), max_length=20, choices=ObservableKind.choices)
    value = models.CharField(_("value"), max_length=2048)

    class Meta:
        ordering = ["kind", "value"]
        verbose_name = _("observable")
        verbose_name_plural = _("observables")
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="intel_one_observable")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class ObjectObservable(models.Model):
    """An object version carries an observable. Objects correlate through shared observables;
    no table of object pairs exists, so the index grows with objects, not with their square.

    Written by the import only, which links the objects it has just written to observables it
    has just looked up, in one transaction: the rows need neither database foreign keys (on
    PostgreSQL each row's two were checked at commit; SQLite keeps them, see migration 0009)
    nor an index per column, which the two below already cover. Deleting an object or an
    observable through the ORM removes its rows."""

    stix_object = models.ForeignKey(
        StixObject,
        on_delete=models.CASCADE,
        related_name="observable_links",
        db_index=False,
        db_constraint=False,
    )
    observable = models.ForeignKey(
        Observable, on_delete=models.CASCADE, related_name="object_links", db_index=False, db_constraint=False
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stix_object", "observable"], name="intel_one_link_per_pair")
        ]
        indexes = [models.Index(fields=["observable", "stix_object"], name="intel_link_by_observable")]

    def __str__(self) -> str:
        return f"{self.stix_object_id} → {self.observable_id}"


class ImportJob(models.Model):
    """A file (STIX bundle, MISP events, CSV) uploaded through the web, imported by a background
    task; its page shows the progress. The file is kept under the node's var folder until the
    task has read it."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    file_name = models.CharField(_("file"), max_length=200)
    file_size = models.PositiveBigIntegerField(default=0)
    path = models.CharField(max_length=500)
    format = models.CharField(
        _("format"), max_length=8, choices=ImportFormat.choices, default=ImportFormat.STIX
    )
    # The CSV column mapping (``minga.intel.csvio.Mapping``); empty for the other formats.
    mapping = models.JSONField(default=dict, blank=True)
    tlp = models.CharField(_("TLP"), max_length=16, choices=TLP.choices)
    recipients = models.ManyToManyField(Organisation, blank=True, related_name="+")
    status = models.CharField(
        _("status"), max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED
    )
    bytes_read = models.PositiveBigIntegerField(default=0)
    accepted = models.PositiveIntegerField(_("accepted"), default=0)
    duplicates = models.PositiveIntegerField(_("already stored"), default=0)
    rejected = models.PositiveIntegerField(_("rejected"), default=0)
    rejections = models.JSONField(default=list, blank=True)
    # The object versions the import stored, as pk ranges [first, last] (inclusive): each chunk
    # draws its pks at once under the chunk write lock, so a chunk is one range or a few and a
    # 100,000-object import a handful; the page correlates them without a link row per object.
    stored_ranges = models.JSONField(default=list, blank=True)
    message = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("import")
        verbose_name_plural = _("imports")

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_status_display()})"

    def stored_pks(self, limit: int | None = None) -> list[int]:
        """The pks of the object versions this import stored, in the order they were stored
        (the first ``limit`` of them)."""
        pks: list[int] = []
        for first, last in self.stored_ranges:
            if limit is not None and len(pks) + last - first + 1 > limit:
                pks.extend(range(first, first + limit - len(pks)))
                break
            pks.extend(range(first, last + 1))
        return pks

    @property
    def stored_count(self) -> int:
        """How many object versions this import stored."""
        return sum(last - first + 1 for first, last in self.stored_ranges)

    @property
    def percent(self) -> int:
        if self.status == ImportStatus.DONE:
            return 100
        return min(99, int(100 * self.bytes_read / self.file_size)) if self.file_size else 0
