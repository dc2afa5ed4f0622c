"""Member states, sectors and the directory's profile of each organisation."""

from __future__ import annotations

import gettext
from datetime import timedelta
from functools import cache

import pycountry
from django.conf import settings
from django.db import models
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from minga.core.models import Organisation
from minga.directory.choices import (
    BUILTIN_SECTORS,
    ContactRole,
    OrganisationKind,
    ProposalBasis,
    ProposalStatus,
    RegistryFormat,
)


@cache
def _country_names(language: str) -> gettext.NullTranslations:
    locale = translation.to_locale(language)
    return gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[locale], fallback=True)


class MemberState(models.Model):
    """A member state of the OAS. Which states take part in the network is data: node admins
    change ``participating``, no code changes."""

    code = models.CharField(_("ISO 3166 code"), max_length=2, unique=True)
    participating = models.BooleanField(_("participating"), default=True)
    languages = models.JSONField(_("languages"), default=list)
    time_zones = models.JSONField(_("time zones"), default=list)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("member state")
        verbose_name_plural = _("member states")

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        """The state's common name from ISO 3166 (pycountry), in the active language."""
        country = pycountry.countries.get(alpha_2=self.code)
        if country is None:
            return self.code
        english = getattr(country, "common_name", None) or country.name
        return _country_names(translation.get_language() or "en").gettext(english)


class Sector(models.Model):
    slug = models.SlugField(_("short name"), max_length=60, unique=True)
    name = models.CharField(_("name"), max_length=120, unique=True)
    builtin = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = _("sector")
        verbose_name_plural = _("sectors")

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        # Built-in sectors are named in the reader's language; admins' own in their words.
        labels = dict(BUILTIN_SECTORS)
        return str(labels[self.slug]) if self.builtin and self.slug in labels else self.name


class OrganisationProfile(models.Model):
    """What the directory knows of an organisation beyond its account data in core."""

    organisation = models.OneToOneField(Organisation, on_delete=models.CASCADE, related_name="profile")
    kind = models.CharField(_("kind"), max_length=20, choices=OrganisationKind.choices)
    state = models.ForeignKey(
        MemberState,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="profiles",
        verbose_name=_("state"),
    )
    sectors = models.ManyToManyField(Sector, blank=True, related_name="profiles", verbose_name=_("sectors"))
    parent = models.ForeignKey(
        Organisation,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        verbose_name=_("parent organisation"),
    )
    hosting_node = models.CharField(
        _("hosting node"),
        max_length=200,
        blank=True,
        help_text=_("The Minga node where this organisation's people work; empty for this node."),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organisation__name"]
        verbose_name = _("organisation profile")
        verbose_name_plural = _("organisation profiles")

    def __str__(self) -> str:
        return f"{self.organisation} ({self.get_kind_display()})"


class ConstituencyNetwork(models.Model):
    """An IPv4 or IPv6 network an organisation answers for. Overlaps are allowed: the most
    specific network wins when an address is resolved."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="networks")
    cidr = models.CharField(_("network"), max_length=43)
    version = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "cidr"]
        constraints = [models.UniqueConstraint(fields=["organisation", "cidr"], name="one_network_per_org")]

    def __str__(self) -> str:
        return self.cidr


class ConstituencyASN(models.Model):
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="asns")
    asn = models.PositiveBigIntegerField(_("AS number"), db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["asn"]
        constraints = [models.UniqueConstraint(fields=["organisation", "asn"], name="one_asn_per_org")]

    def __str__(self) -> str:
        return f"AS{self.asn}"


class ConstituencyDomain(models.Model):
    """A domain and all its subdomains, stored in its IDNA (ASCII) form."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(_("domain"), max_length=253, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["domain"]
        constraints = [models.UniqueConstraint(fields=["organisation", "domain"], name="one_domain_per_org")]

    def __str__(self) -> str:
        return self.domain


class ConstituencyGeneration(models.Model):
    """Replaced in the transaction of every constituency change: resolvers in every process
    compare it with the generation they built their index from, and rebuild when it differs.
    A random token rather than a counter: a restored backup cannot bring back a number that an
    index was already built from."""

    token = models.CharField(max_length=32)

    def __str__(self) -> str:
        return f"constituency generation {self.token}"


class PointOfContact(models.Model):
    """Someone to call or write to at an organisation, kept current by periodic confirmation.
    Personal data: readable by members of the network only (``queries.contacts_visible_to``)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="contacts")
    role = models.CharField(_("role"), max_length=20, choices=ContactRole.choices)
    name = models.CharField(_("name"), max_length=200)
    email = models.EmailField(_("e-mail"))
    phone_numbers = models.JSONField(_("phone numbers"), default=list, blank=True)  # E.164
    languages = models.JSONField(_("languages"), default=list, blank=True)
    hours = models.CharField(_("hours"), max_length=200, blank=True)
    time_zone = models.CharField(_("time zone"), max_length=64, default="UTC")
    pgp_fingerprint = models.CharField(_("OpenPGP fingerprint"), max_length=64, blank=True)
    pgp_key = models.TextField(_("OpenPGP public key"), blank=True)
    last_verified_at = models.DateTimeField(_("last confirmed"), null=True, blank=True)
    # When the last confirmation request went out, so the daily schedule does not ask every day.
    confirmation_requested_at = models.DateTimeField(_("confirmation requested"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organisation__name", "role", "name"]
        verbose_name = _("point of contact")
        verbose_name_plural = _("points of contact")
        indexes = [models.Index(fields=["role", "last_verified_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_role_display()}, {self.organisation.short_name})"

    @property
    def is_stale(self) -> bool:
        limit = timezone.now() - timedelta(days=settings.MINGA_CONTACT_STALE_DAYS)
        return self.last_verified_at is None or self.last_verified_at < limit


class TeamProfile(models.Model):
    """What a team publishes about itself, in the sections of RFC 2350 (Expectations for Computer
    Security Incident Response). Contacts, keys and constituency come from the directory."""

    organisation = models.OneToOneField(Organisation, on_delete=models.CASCADE, related_name="team_profile")
    address = models.TextField(_("postal address"), blank=True)
    hours = models.CharField(_("operating hours"), max_length=200, blank=True)
    mission = models.TextField(_("mission statement"), blank=True)
    constituency_description = models.TextField(_("constituency"), blank=True)
    sponsorship = models.TextField(_("sponsorship and affiliation"), blank=True)
    authority = models.TextField(_("authority"), blank=True)
    incident_types = models.TextField(_("types of incidents and level of support"), blank=True)
    disclosure_policy = models.TextField(
        _("co-operation, interaction and disclosure of information"), blank=True
    )
    communication_policy = models.TextField(_("communication and authentication"), blank=True)
    services = models.TextField(_("services"), blank=True)
    reporting = models.TextField(_("incident reporting forms"), blank=True)
    disclaimers = models.TextField(_("disclaimers"), blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    EDITABLE = (
        "address",
        "hours",
        "mission",
        "constituency_description",
        "sponsorship",
        "authority",
        "incident_types",
        "disclosure_policy",
        "communication_policy",
        "services",
        "reporting",
        "disclaimers",
    )

    class Meta:
        verbose_name = _("team profile (RFC 2350)")
        verbose_name_plural = _("team profiles (RFC 2350)")

    def __str__(self) -> str:
        return f"RFC 2350: {self.organisation}"


class ConstituencyProposal(models.Model):
    """A network or AS number read from a registry's data file (RIR statistics, RPSL dump),
    proposed for an organisation's constituency until a coordinator accepts or rejects it.
    ``organisation`` is what the load proposed and never changes, so a re-run recognises its
    own proposals; ``accepted_for`` is where the coordinator put it."""

    KIND_CHOICES = [("network", _("Network")), ("asn", _("AS number"))]

    kind = models.CharField(_("kind"), max_length=10, choices=KIND_CHOICES)
    value = models.CharField(_("resource"), max_length=43)  # canonical CIDR, or the AS number's digits
    country = models.CharField(_("country"), max_length=2)
    source = models.CharField(_("registry"), max_length=40)  # lacnic, arin, ripe, ...
    source_format = models.CharField(_("file format"), max_length=10, choices=RegistryFormat.choices)
    holder = models.CharField(_("holder"), max_length=200, blank=True)  # opaque-id, org handle, netname
    abuse_email = models.CharField(_("abuse mailbox"), max_length=254, blank=True)
    organisation = models.ForeignKey(
        Organisation,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="constituency_proposals",
        verbose_name=_("proposed organisation"),
    )
    basis = models.CharField(_("reason"), max_length=20, choices=ProposalBasis.choices)
    matched_domain = models.CharField(_("matched domain"), max_length=253, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=ProposalStatus.choices, default=ProposalStatus.PENDING
    )
    accepted_for = models.ForeignKey(
        Organisation,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("accepted for"),
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["country", "kind", "value", "pk"]
        verbose_name = _("constituency proposal")
        verbose_name_plural = _("constituency proposals")
        indexes = [
            # The review page: pending ones by state, by proposed organisation.
            models.Index(fields=["status", "country"], name="proposal_status_country"),
            models.Index(fields=["status", "organisation"], name="proposal_status_org"),
            # A re-run looks its resources up to propose each only once.
            models.Index(fields=["kind", "value"], name="proposal_resource"),
        ]

    def __str__(self) -> str:
        shown = f"AS{self.value}" if self.kind == "asn" else self.value
        return f"{shown} ({self.country}, {self.source})"


class Webhook(models.Model):
    """Where the node POSTs an organisation's notifications as signed JSON
    (``minga.directory.webhooks``). The signing secret must be used again, so it cannot be
    hashed: it is sealed at rest (``minga.core.sealed``), shown once when set, never again.
    Read and changed by the organisation's admins and node admins only
    (``queries.webhook_for``, ``services.set_webhook``)."""

    organisation = models.OneToOneField(Organisation, on_delete=models.CASCADE, related_name="webhook")
    url = models.URLField(_("URL"), max_length=500)
    sealed_secret = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("webhook")
        verbose_name_plural = _("webhooks")

    def __str__(self) -> str:
        return f"{self.organisation.short_name}: {self.url}"
