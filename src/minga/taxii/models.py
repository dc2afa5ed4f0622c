"""What the TAXII server keeps of its own: the status resources of envelopes posted to it."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from minga.core.models import Organisation, User


class TaxiiStatus(models.Model):
    """The outcome of one envelope posted to an inbox collection (TAXII 2.1 status resource).

    Readable by the members of the organisation whose inbox received it, and by nobody else.
    ``successes`` and ``failures`` hold the spec's status-details (id, version, message)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
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
