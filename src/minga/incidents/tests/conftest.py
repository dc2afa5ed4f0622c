"""Fixtures of the incident stories: three national CSIRTs in three states with constituencies
and 24/7 contacts, a hospital in one of them, and their analysts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.directory import services as directory
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState
from minga.incidents import services
from minga.incidents.models import Incident


@dataclass
class Network:
    pe: Organisation  # national CSIRT, Peru: reports the incident
    cl: Organisation  # national CSIRT, Chile
    br: Organisation  # national CSIRT, Brazil
    hospital: Organisation  # a hospital in Chile, with its own network
    outsider: Organisation  # a member of the network with no part in the incident
    ana: User  # analyst, PE
    carlos: User  # analyst, CL
    bruna: User  # analyst, BR
    olga: User  # analyst, outsider


@pytest.fixture
def network(make_org: Callable[..., Organisation], make_user: Callable[..., User]) -> Network:
    orgs = {}
    for short, code, kind, entries in [
        (
            "csirt-pe",
            "PE",
            OrganisationKind.NATIONAL_CSIRT,
            ["198.18.0.0/22", "4200000001", "pe.demo.example"],
        ),
        (
            "csirt-cl",
            "CL",
            OrganisationKind.NATIONAL_CSIRT,
            ["198.18.4.0/22", "4200000002", "cl.demo.example"],
        ),
        (
            "csirt-br",
            "BR",
            OrganisationKind.NATIONAL_CSIRT,
            ["198.18.8.0/22", "4200000003", "br.demo.example"],
        ),
        ("hospital-cl", "CL", OrganisationKind.CI_OPERATOR, ["198.18.5.0/24", "salud.cl.demo.example"]),
        ("csirt-mx", "MX", OrganisationKind.NATIONAL_CSIRT, []),
    ]:
        org = make_org(f"demo-{short}")
        directory.update_profile(None, org, kind=kind, state=MemberState.objects.get(code=code), sectors=[])
        if entries:
            directory.add_constituency(None, org, entries)
        directory.save_contact(
            None,
            org,
            role="duty",
            name=f"{short} duty desk",
            email=f"duty@{short}.example.org",
            phone_numbers=[],
            languages=["es"],
            hours="24/7",
            time_zone="UTC",
        )
        orgs[short] = org
    return Network(
        pe=orgs["csirt-pe"],
        cl=orgs["csirt-cl"],
        br=orgs["csirt-br"],
        hospital=orgs["hospital-cl"],
        outsider=orgs["csirt-mx"],
        ana=make_user("ana", orgs["csirt-pe"]),
        carlos=make_user("carlos", orgs["csirt-cl"]),
        bruna=make_user("bruna", orgs["csirt-br"]),
        olga=make_user("olga", orgs["csirt-mx"]),
    )


@pytest.fixture
def open_incident(network: Network) -> Callable[..., Incident]:
    def make(**extra: Any) -> Incident:
        fields: dict[str, Any] = {
            "title": "Ransomware at a hospital",
            "type": "system-compromise",
            "severity": "high",
            "tlp": TLP.AMBER,
            **extra,
        }
        return services.open_incident(
            extra.pop("actor", network.ana), network.pe, **{k: v for k, v in fields.items() if k != "actor"}
        )

    return make
