"""Accounts, organisations, tokens, the audit log and the base of every shared object."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from minga.core.choices import TLP, Role

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser


class Organisation(models.Model):
    """A member team or authority of the network. The directory adds kind, state and contacts."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=200, unique=True)
    short_name = models.SlugField(
        _("short name"),
        max_length=40,
        unique=True,
        help_text=_("Letters, digits, hyphens: used in URLs and references, e.g. csirt-ar."),
    )
    is_network_member = models.BooleanField(
        _("network member"),
        default=True,
        help_text=_("Members read TLP:GREEN; others only what names them."),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A person with an account on this node. Belongs to organisations through memberships."""

    preferred_language = models.CharField(_("language"), max_length=8, blank=True)
    time_zone = models.CharField(_("time zone"), max_length=64, default="UTC")
    # Encrypted with a key derived from the node's secret key (minga.core.totp).
    totp_secret = models.CharField(max_length=255, blank=True)
    totp_enabled_at = models.DateTimeField(null=True, blank=True)
    # The last time step whose code was accepted: a code is good once (RFC 6238, 5.2).
    totp_last_step = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["username"]
        verbose_name = _("user")
        verbose_name_plural = _("users")

    @property
    def has_totp(self) -> bool:
        return self.totp_enabled_at is not None

    def active_memberships(self) -> models.QuerySet[Membership]:
        return self.memberships.filter(is_active=True).select_related("organisation")

    @property
    def is_node_admin(self) -> bool:
        if self.is_superuser:
            return True
        cached = getattr(self, "_is_node_admin", None)
        if cached is None:
            cached = self.memberships.filter(is_active=True, role=Role.NODE_ADMIN).exists()
            self._is_node_admin = cached
        return cached


class Membership(models.Model):
    """A user's place in an organisation, with one role."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.ANALYST)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organisation__name", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "organisation"], name="one_membership_per_org")
        ]
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")

    def __str__(self) -> str:
        return f"{self.user} @ {self.organisation} ({self.get_role_display()})"


class ApiToken(models.Model):
    """A bearer credential for the REST API and TAXII. Only a SHA-256 of the secret is kept."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(_("name"), max_length=100)
    # The first characters of the token, shown so a person can tell tokens apart.
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"))
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class AuditEntry(models.Model):
    """One line of the append-only, hash-chained audit log. Written only by ``minga.core.audit``."""

    seq = models.PositiveBigIntegerField(unique=True)
    timestamp = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Kept as text as well: the entry must stay verifiable after the user is deleted.
    actor_label = models.CharField(max_length=200, blank=True)
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    organisation_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=80, db_index=True)
    object_type = models.CharField(max_length=80, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise RuntimeError("audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise RuntimeError("audit entries are append-only")


class AuditChainHead(models.Model):
    """The last entry of the chain. Locked while appending, so entries are numbered without
    gaps even on PostgreSQL, and compared by ``verify`` so a truncated tail is caught."""

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"audit chain head #{self.seq}"


class ScheduledJob(models.Model):
    """When a periodic job (``minga.core.schedule``) is next due. Workers claim a due job with one
    conditional UPDATE, so however many run, each period enqueues the job once."""

    name = models.CharField(max_length=100, unique=True)
    next_run_at = models.DateTimeField()
    last_enqueued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class SharedQuerySet(models.QuerySet):
    def visible_to(self, user: User | AnonymousUser | None) -> SharedQuerySet:
        """What ``user`` may read under the access policy (``minga.core.access``)."""
        from minga.core import access

        return access.restrict(self, user)  # type: ignore[return-value]


class SharedObject(models.Model):
    """Base of everything shared across organisations: inheriting it brings the TLP fields
    and puts the model under the one access policy."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    origin_organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", verbose_name=_("originator")
    )
    tlp = models.CharField(_("TLP"), max_length=16, choices=TLP.choices, default=TLP.RED)
    recipient_organisations = models.ManyToManyField(
        Organisation, blank=True, related_name="+", verbose_name=_("recipient organisations")
    )
    recipient_users = models.ManyToManyField(
        User, blank=True, related_name="+", verbose_name=_("recipient users")
    )

    objects = SharedQuerySet.as_manager()

    class Meta:
        abstract = True
