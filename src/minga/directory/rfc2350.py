"""An organisation's team description as an RFC 2350 text document. Section titles follow the
RFC (in English, as teams exchange these documents); the content is the team's own."""

from __future__ import annotations

import textwrap

from minga.core.models import Organisation
from minga.directory.contacts import published_contacts
from minga.directory.models import TeamProfile

NOT_PUBLISHED = "Not published."


def _block(text: str) -> list[str]:
    paragraphs = [p for p in (text or "").strip().split("\n") if p.strip()] or [NOT_PUBLISHED]
    lines: list[str] = []
    for paragraph in paragraphs:
        lines += textwrap.wrap(paragraph.strip(), width=72, initial_indent="    ", subsequent_indent="    ")
    return lines


def listed(items: list[str]) -> list[str]:
    return ["    " + item for item in items] or ["    " + NOT_PUBLISHED]


def render(organisation: Organisation, url: str) -> str:
    team = TeamProfile.objects.filter(organisation=organisation).first() or TeamProfile(
        organisation=organisation
    )
    contacts = list(published_contacts(organisation))
    updated = max(
        [c.updated_at for c in contacts] + ([team.updated_at] if team.updated_at else []), default=None
    )
    out = [f"Description of {organisation.name} according to RFC 2350", ""]

    def section(title: str, body: list[str]) -> None:
        out.extend([title, *body, ""])

    section("1. Document Information", [])
    section(
        "1.1 Date of Last Update", ["    " + (updated.strftime("%Y-%m-%d") if updated else NOT_PUBLISHED)]
    )
    section(
        "1.2 Distribution List for Notifications",
        ["    Changes are published in the directory of the network's Minga nodes."],
    )
    section("1.3 Locations where this Document May Be Found", ["    " + url])
    section("2. Contact Information", [])
    section("2.1 Name of the Team", [f"    {organisation.name} ({organisation.short_name})"])
    section("2.2 Address", _block(team.address))
    section("2.3 Time Zone", listed(list(dict.fromkeys(c.time_zone for c in contacts))))
    section(
        "2.4 Telephone Number",
        listed([f"{p} ({c.get_role_display()})" for c in contacts for p in c.phone_numbers]),
    )
    section("2.5 Electronic Mail Address", listed([f"{c.email} ({c.get_role_display()})" for c in contacts]))
    section(
        "2.6 Public Keys and Encryption Information",
        listed([f"{c.email}: OpenPGP {c.pgp_fingerprint}" for c in contacts if c.pgp_fingerprint]),
    )
    section("2.7 Points of Customer Contact and Hours of Operation", _block(team.hours))
    section("3. Charter", [])
    section("3.1 Mission Statement", _block(team.mission))
    networks = [str(n) for n in organisation.networks.values_list("cidr", flat=True)]  # type: ignore[attr-defined]
    asns = [f"AS{a}" for a in organisation.asns.values_list("asn", flat=True)]  # type: ignore[attr-defined]
    domains = list(organisation.domains.values_list("domain", flat=True))  # type: ignore[attr-defined]
    entries = ["    " + e for e in networks + asns + domains]
    description = (
        _block(team.constituency_description) if team.constituency_description or not entries else []
    )
    section("3.2 Constituency", description + entries)
    section("3.3 Sponsorship and/or Affiliation", _block(team.sponsorship))
    section("3.4 Authority", _block(team.authority))
    section("4. Policies", [])
    section("4.1 Types of Incidents and Level of Support", _block(team.incident_types))
    section("4.2 Co-operation, Interaction and Disclosure of Information", _block(team.disclosure_policy))
    section("4.3 Communication and Authentication", _block(team.communication_policy))
    section("5. Services", _block(team.services))
    section("6. Incident Reporting Forms", _block(team.reporting))
    section("7. Disclaimers", _block(team.disclaimers))
    return "\n".join(out).rstrip() + "\n"
