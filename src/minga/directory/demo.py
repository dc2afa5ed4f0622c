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


# (organisation, role, name, languages, phone: the ITU's example number of its state, confirmed?)
CONTACTS = [
    ("demo-csirt-andina", "duty", "Andina duty desk (demo)", ["es"], "+5111234567", True),
    ("demo-csirt-andina", "technical", "Andina malware team (demo)", ["es", "en"], "+5111234567", False),
    ("demo-cert-caribe", "duty", "Caribe duty officer (demo)", ["en"], "+18765230123", False),
    ("demo-police-sur", "liaison", "Sur cybercrime liaison (demo)", ["es"], "+59821231234", True),
    ("demo-grid-norte", "technical", "Norte SOC (demo)", ["es"], "+522001234567", True),
]


@transaction.atomic
def load() -> None:
    _load_profiles()
    for short_name, role, name, languages, phone, confirmed in CONTACTS:
        organisation = Organisation.objects.filter(short_name=short_name).first()
        if organisation is None or organisation.contacts.filter(name=name).exists():  # type: ignore[attr-defined]
            continue
        contact = services.save_contact(
            None,
            organisation,
            role=role,
            name=name,
            email=f"{role}@{short_name}.example.org",
            phone_numbers=[phone],
            languages=languages,
            hours="24/7" if role == "duty" else "",
            time_zone="UTC",
        )
        if confirmed:  # the others stay unconfirmed, so the coordinator's view has work to show
            services.confirm_contact(contact, via="demo")


def _load_profiles() -> None:
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
