"""Fixtures of the assistance stories: national CSIRTs in Peru, Chile and Brazil with confirmed
24/7 desks, Mexico's whose desk was never confirmed, a police unit in Chile, their analysts,
and the network's coordinator (a node admin of the hub)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from minga.assistance import services
from minga.assistance.models import AssistanceRequest
from minga.core.choices import Role
from minga.core.models import Organisation, User
from minga.directory import services as directory
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState, PointOfContact


@dataclass
class Network:
    pe: Organisation  # national CSIRT, Peru: asks
    cl: Organisation  # national CSIRT, Chile: is asked
    br: Organisation  # national CSIRT, Brazil: a third party
    mx: Organisation  # national CSIRT, Mexico: its 24/7 desk is not confirmed
    police_cl: Organisation  # a law-enforcement unit in Chile, with a confirmed desk
    ana: User  # analyst, PE
    carlos: User  # analyst, CL
    rosa: User  # read-only member, CL
    bruna: User  # analyst, BR
    coordinator: User  # node admin of the hub


def _contact(
    org: Organisation, role: str, name: str, email: str, *, confirmed: bool, languages: list[str]
) -> PointOfContact:
    contact = directory.save_contact(
        None,
        org,
        role=role,
        name=name,
        email=email,
        phone_numbers=[],
        languages=languages,
        hours="24/7" if role == "duty" else "",
        time_zone="UTC",
    )
    if confirmed:
        directory.confirm_contact(contact, via="test")
    return contact


@pytest.fixture
def network(
    make_org: Callable[..., Organisation], make_user: Callable[..., User], node_admin: User
) -> Network:
    orgs = {}
    for short, code, kind in [
        ("csirt-pe", "PE", OrganisationKind.NATIONAL_CSIRT),
        ("csirt-cl", "CL", OrganisationKind.NATIONAL_CSIRT),
        ("csirt-br", "BR", OrganisationKind.NATIONAL_CSIRT),
        ("csirt-mx", "MX", OrganisationKind.NATIONAL_CSIRT),
        ("police-cl", "CL", OrganisationKind.LAW_ENFORCEMENT),
    ]:
        org = make_org(short)
        directory.update_profile(None, org, kind=kind, state=MemberState.objects.get(code=code), sectors=[])
        _contact(
            org,
            "duty",
            f"{short} duty desk",
            f"duty@{short}.example.org",
            confirmed=short != "csirt-mx",
            languages=["es"],
        )
        orgs[short] = org
    # Chile's CSIRT lists a second 24/7 officer: the next contact when the desk does not answer.
    _contact(
        orgs["csirt-cl"],
        "duty",
        "csirt-cl duty officer",
        "officer@csirt-cl.example.org",
        confirmed=True,
        languages=["en"],
    )
    return Network(
        pe=orgs["csirt-pe"],
        cl=orgs["csirt-cl"],
        br=orgs["csirt-br"],
        mx=orgs["csirt-mx"],
        police_cl=orgs["police-cl"],
        ana=make_user("ana", orgs["csirt-pe"]),
        carlos=make_user("carlos", orgs["csirt-cl"]),
        rosa=make_user("rosa", orgs["csirt-cl"], Role.READ_ONLY),
        bruna=make_user("bruna", orgs["csirt-br"]),
        coordinator=node_admin,
    )


@pytest.fixture
def make_request(network: Network) -> Callable[..., AssistanceRequest]:
    """A request from Peru's CSIRT to Chile (its national CSIRT), submitted unless told not to."""

    def make(*, submit: bool = True, **extra: Any) -> AssistanceRequest:
        fields: dict[str, Any] = {
            "kind": "preservation",
            "priority": "emergency",
            "subject": "Preserve the logs of 198.18.4.7",
            "description": "Secret operational detail",
            "legal_basis": "Budapest Convention art. 29",
            "legal_reference": "PE-2026-17",
            **extra,
        }
        if "requested_organisation" not in fields:
            fields.setdefault("requested_state", MemberState.objects.get(code="CL"))
        request = services.create_request(network.ana, network.pe, **fields)
        if submit:
            services.submit(network.ana, request)
        return request

    return make
