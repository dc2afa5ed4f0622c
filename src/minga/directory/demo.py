"""Directory data for the demo network: a national CSIRT for every member state, a few sector
CSIRTs, law-enforcement units and operators, their 24/7 contacts (some stale), and
constituencies to route by. Fictional like the rest of the demo, and idempotent.

The constituencies are generated from numbers set aside for documentation and testing (RFC 5737,
2544, 3849, 5398, 6996; names under .example, RFC 2606): any other range is some real network's,
and a demo must not claim it. Each state's national CSIRT gets a /22 of 198.18.0.0/15, a /40 of
2001:db8::/32, a private-use AS number and ``<state>.demo.example``; sector organisations get a
/24 inside their state's /22 and a subdomain, so the most specific entry wins when resolving.
"""

from __future__ import annotations

import ipaddress

import phonenumbers
from django.db import transaction

from minga.core import services as core_services
from minga.core.models import Organisation
from minga.directory import services
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState, OrganisationProfile, Sector

BENCHMARK_BLOCK = ipaddress.IPv4Network("198.18.0.0/15")
DOCUMENTATION_V6 = ipaddress.IPv6Network("2001:db8::/32")
FIRST_PRIVATE_ASN = 4200000000

# The organisations of the core demo (with users), by kind, state and sectors.
PROFILES = [
    ("demo-hub", OrganisationKind.INTERNATIONAL, None, []),
    ("demo-csirt-andina", OrganisationKind.NATIONAL_CSIRT, "PE", ["digital-government"]),
    ("demo-cert-caribe", OrganisationKind.NATIONAL_CSIRT, "JM", ["digital-government", "financial"]),
    ("demo-police-sur", OrganisationKind.LAW_ENFORCEMENT, "UY", []),
    ("demo-grid-norte", OrganisationKind.CI_OPERATOR, "MX", ["energy"]),
]

# More organisations without users: (short name, name, kind, state, sectors, subdomain).
OTHERS = [
    (
        "demo-csirt-salud-cl",
        "Health Sector CSIRT Chile (demo)",
        OrganisationKind.SECTOR_CSIRT,
        "CL",
        ["health"],
        "salud",
    ),
    (
        "demo-csirt-banca-br",
        "Banking CSIRT Brazil (demo)",
        OrganisationKind.SECTOR_CSIRT,
        "BR",
        ["financial"],
        "banca",
    ),
    (
        "demo-csirt-energia-co",
        "Energy CSIRT Colombia (demo)",
        OrganisationKind.SECTOR_CSIRT,
        "CO",
        ["energy"],
        "energia",
    ),
    (
        "demo-cyberpolice-ar",
        "Cybercrime Division Argentina (demo)",
        OrganisationKind.LAW_ENFORCEMENT,
        "AR",
        [],
        "",
    ),
    (
        "demo-fiscalia-gt",
        "Cybercrime Prosecutor Guatemala (demo)",
        OrganisationKind.LAW_ENFORCEMENT,
        "GT",
        [],
        "",
    ),
    (
        "demo-telecom-ec",
        "Andean Telecom (demo)",
        OrganisationKind.CI_OPERATOR,
        "EC",
        ["telecommunications"],
        "telecom",
    ),
    ("demo-agua-cr", "Central Valley Water (demo)", OrganisationKind.CI_OPERATOR, "CR", ["water"], "agua"),
    (
        "demo-authority-ca",
        "Cyber Security Authority Canada (demo)",
        OrganisationKind.AUTHORITY,
        "CA",
        ["digital-government"],
        "",
    ),
]

# (organisation, role, name, languages, phone: the ITU's example number of its state, confirmed?)
CONTACTS = [
    ("demo-csirt-andina", "technical", "Andina malware team (demo)", ["es", "en"], "+5111234567", False),
    ("demo-police-sur", "liaison", "Sur cybercrime liaison (demo)", ["es"], "+59821231234", True),
    ("demo-grid-norte", "technical", "Norte SOC (demo)", ["es"], "+522001234567", True),
]
STALE_EVERY = 4  # every fourth national CSIRT's 24/7 contact is left unconfirmed


@transaction.atomic
def load() -> None:
    _load_profiles()
    states = list(MemberState.objects.order_by("code"))
    national = _national_csirts(states)
    for index, state in enumerate(states):
        organisation = national[state.code]
        _constituency(organisation, _state_entries(index, state.code))
        _contact(
            organisation,
            "duty",
            f"{state.code} national duty desk (demo)",
            state.languages[:2] or ["es"],
            _example_phone(state.code),
            confirmed=index % STALE_EVERY != 1,
            time_zone=(state.time_zones or ["UTC"])[0],
        )
    index_of = {state.code: i for i, state in enumerate(states)}
    for n, (short_name, _name, _kind, code, _sectors, subdomain) in enumerate(OTHERS):
        organisation = Organisation.objects.get(short_name=short_name)
        if subdomain:
            block = list(BENCHMARK_BLOCK.subnets(new_prefix=22))[index_of[code]]
            entries = [
                str(list(block.subnets(new_prefix=24))[1 + n % 3]),
                str(64496 + n),
                f"{subdomain}.{code.lower()}.demo.example",
            ]
            _constituency(organisation, entries)
        _contact(
            organisation,
            "duty",
            f"{_name.removesuffix(' (demo)')} desk (demo)",
            ["es", "en"],
            _example_phone(code),
            confirmed=n % 2 == 0,
        )
    for short_name, role, name, languages, phone, confirmed in CONTACTS:
        owner = Organisation.objects.filter(short_name=short_name).first()
        if owner is not None:
            _contact(owner, role, name, languages, phone, confirmed=confirmed)


def _state_entries(index: int, code: str) -> list[str]:
    v4 = list(BENCHMARK_BLOCK.subnets(new_prefix=22))[index]
    v6 = list(DOCUMENTATION_V6.subnets(new_prefix=40))[index + 1]
    return [str(v4), str(v6), str(FIRST_PRIVATE_ASN + index + 1), f"{code.lower()}.demo.example"]


def _example_phone(code: str) -> str:
    number = phonenumbers.example_number(code)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if number else ""


def _load_profiles() -> None:
    for short_name, kind, state_code, sector_slugs in PROFILES:
        organisation = Organisation.objects.filter(short_name=short_name).first()
        if organisation is not None:
            _profile(organisation, kind, state_code, sector_slugs)
    for short_name, name, kind, state_code, sector_slugs, _subdomain in OTHERS:
        _profile(_organisation(short_name, name), kind, state_code, sector_slugs)


def _national_csirts(states: list[MemberState]) -> dict[str, Organisation]:
    """The national CSIRT of each state: the core demo's where it has one, else a new one."""
    profiles = OrganisationProfile.objects.filter(
        kind=OrganisationKind.NATIONAL_CSIRT,
        organisation__short_name__startswith="demo-",
        state__isnull=False,
    ).select_related("organisation", "state")
    found = {p.state.code: p.organisation for p in profiles if p.state is not None}
    for state in states:
        if state.code not in found:
            organisation = _organisation(f"demo-csirt-{state.code.lower()}", f"CSIRT {state.name} (demo)")
            _profile(organisation, OrganisationKind.NATIONAL_CSIRT, state.code, ["digital-government"])
            found[state.code] = organisation
    return found


def _organisation(short_name: str, name: str) -> Organisation:
    organisation = Organisation.objects.filter(short_name=short_name).first()
    return organisation or core_services.create_organisation(None, name=name, short_name=short_name)


def _profile(organisation: Organisation, kind: str, state_code: str | None, sector_slugs: list[str]) -> None:
    if OrganisationProfile.objects.filter(organisation=organisation).exists():
        return
    services.update_profile(
        None,
        organisation,
        kind=kind,
        state=MemberState.objects.filter(code=state_code).first() if state_code else None,
        sectors=Sector.objects.filter(slug__in=sector_slugs),
    )


def _constituency(organisation: Organisation, entries: list[str]) -> None:
    if not organisation.networks.exists():  # type: ignore[attr-defined]
        services.add_constituency(None, organisation, entries)


def _contact(
    organisation: Organisation,
    role: str,
    name: str,
    languages: list[str],
    phone: str,
    *,
    confirmed: bool,
    time_zone: str = "UTC",
) -> None:
    if organisation.contacts.filter(name=name).exists():  # type: ignore[attr-defined]
        return
    contact = services.save_contact(
        None,
        organisation,
        role=role,
        name=name,
        email=f"{role}@{organisation.short_name}.example.org",
        phone_numbers=[phone] if phone else [],
        languages=languages,
        hours="24/7" if role == "duty" else "",
        time_zone=time_zone,
    )
    if confirmed:  # the others stay unconfirmed, so the coordinator's view has work to show
        services.confirm_contact(contact, via="demo")
