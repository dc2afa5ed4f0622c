"""Choices of the intel app, with translated labels."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class ImportStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class ImportFormat(models.TextChoices):
    STIX = "stix", _("STIX bundle (2.1, or 2.0 upgraded)")
    MISP = "misp", _("MISP JSON event(s)")
    CSV = "csv", _("CSV indicators")


class ObservableKind(models.TextChoices):
    """Kinds of normalised observable values; hashes are one kind per algorithm."""

    IPV4 = "ipv4-addr", _("IPv4 address or network")
    IPV6 = "ipv6-addr", _("IPv6 address or network")
    DOMAIN = "domain-name", _("Domain name")
    URL = "url", _("URL")
    EMAIL = "email-addr", _("E-mail address")
    MD5 = "md5", _("MD5 hash")
    SHA1 = "sha-1", _("SHA-1 hash")
    SHA256 = "sha-256", _("SHA-256 hash")
    SHA512 = "sha-512", _("SHA-512 hash")
    SHA3_256 = "sha3-256", _("SHA3-256 hash")
    SHA3_512 = "sha3-512", _("SHA3-512 hash")
