from django.db import models
from django.utils.translation import gettext_lazy as _


class OrganisationKind(models.TextChoices):
    NATIONAL_CSIRT = "national_csirt", _("National CSIRT")
    SECTOR_CSIRT = "sector_csirt", _("Sector CSIRT")
    AUTHORITY = "authority", _("Cybersecurity authority")
    LAW_ENFORCEMENT = "law_enforcement", _("Law-enforcement unit")
    CI_OPERATOR = "ci_operator", _("Critical-infrastructure operator")
    PRIVATE_SECTOR = "private_sector", _("Private sector")
    ACADEMIA = "academia", _("Academia")
    CIVIL_SOCIETY = "civil_society", _("Civil society")
    INTERNATIONAL = "international", _("International organisation")


class ContactRole(models.TextChoices):
    DUTY = "duty", _("24/7 duty")
    TECHNICAL = "technical", _("Technical")
    POLICY = "policy", _("Policy")
    LEGAL = "legal", _("Legal")
    LIAISON = "liaison", _("Law-enforcement liaison")


# The sectors the network names (CICTE 2016), seeded at installation; admins add more.
BUILTIN_SECTORS = [
    ("digital-government", _("Digital government")),
    ("health", _("Health")),
    ("energy", _("Energy")),
    ("financial", _("Financial")),
    ("telecommunications", _("Telecommunications")),
    ("transportation", _("Transportation")),
    ("water", _("Water")),
    ("emergency-services", _("Emergency services")),
]


class ProposalStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    ACCEPTED = "accepted", _("Accepted")
    REJECTED = "rejected", _("Rejected")


class ProposalBasis(models.TextChoices):
    """Why a registry resource was proposed for an organisation (or for none)."""

    ABUSE_DOMAIN = "abuse_domain", _("Abuse mailbox in the organisation's domain")
    NATIONAL_CSIRT = "national_csirt", _("National CSIRT of the state")
    NO_OWNER = "no_owner", _("No owner found")


class RegistryFormat(models.TextChoices):
    DELEGATED = "delegated", _("RIR statistics (delegated-extended)")
    RPSL = "rpsl", _("RPSL dump (inetnum, inet6num, aut-num)")
