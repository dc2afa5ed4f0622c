"""Directory data for the demo network: each demo organisation gets a kind, a state and sectors.
Fictional like the rest of the demo; idempotent."""

from __future__ import annotations

from django.db import transaction

from minga.core.models import Organisation
from minga.directory import services
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState, OrganisationProfile, Sector

PROFILES = [
    ("demo-hub", OrganisationKind.INTERNATIONAL, None, []),
    ("demo-csirt-andina", OrganisationKind.NATIONAL_CSIRT, "PE", ["digital-government"]),
    ("demo-cert-caribe", OrganisationKind.NATIONAL_CSIRT, "JM", ["digital-government", "financial"]),
    ("demo-police-sur", OrganisationKind.LAW_ENFORCEMENT, "UY", []),
    ("demo-grid-norte", OrganisationKind.CI_OPERATOR, "MX", ["energy"]),
]


@transaction.atomic
def load() -> None:
    for short_name, kind, state_code, sector_slugs in PROFILES:
        organisation = Organisation.objects.filter(short_name=short_name).first()
        if organisation is None or OrganisationProfile.objects.filter(organisation=organisation).exists():
            continue
        services.update_profile(
            None,
            organisation,
            kind=kind,
            state=MemberState.objects.filter(code=state_code).first() if state_code else None,
            sectors=Sector.objects.filter(slug__in=sector_slugs),
        )
