"""The directory's first slice: member states, sectors and organisation profiles."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.utils import translation

from minga.core.choices import Role
from minga.core.models import AuditEntry, User
from minga.directory import services
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState, OrganisationProfile, Sector


def test_the_35_oas_member_states_are_seeded(db):
    assert MemberState.objects.count() == 35
    brazil = MemberState.objects.get(code="BR")
    assert brazil.languages == ["pt"] and "America/Sao_Paulo" in brazil.time_zones
    assert brazil.name == "Brazil"
    with translation.override("es"):
        assert MemberState.objects.get(code="US").name == "Estados Unidos"
    with translation.override("fr"):
        assert MemberState.objects.get(code="HT").name == "Haïti"
    assert set(Sector.objects.filter(builtin=True).values_list("slug", flat=True)) >= {
        "digital-government",
        "health",
        "energy",
        "financial",
        "telecommunications",
        "transportation",
    }


def test_participation_is_data_changed_by_node_admins_and_audited(node_admin, make_org, make_user):
    analyst = make_user("ana", make_org())
    state = MemberState.objects.get(code="NI")
    with pytest.raises(PermissionDenied):
        services.set_state_participation(analyst, state, True)
    services.set_state_participation(node_admin, state, True)
    assert MemberState.objects.get(code="NI").participating
    entry = AuditEntry.objects.get(action="state.set_participation")
    assert entry.details == {"state": "NI", "participating": True} and entry.actor == node_admin


def test_profiles_are_edited_by_the_organisation_or_node_admins(node_admin, make_org, make_user):
    org, other = make_org("csirt-pe"), make_org("other")
    boss = make_user("boss", org, Role.ORG_ADMIN)
    outsider = make_user("eve", other, Role.ORG_ADMIN)
    peru, health = MemberState.objects.get(code="PE"), Sector.objects.get(slug="health")
    profile = services.update_profile(
        boss, org, kind=OrganisationKind.NATIONAL_CSIRT, state=peru, sectors=[health]
    )
    assert profile.state == peru and list(profile.sectors.all()) == [health]
    with pytest.raises(PermissionDenied):
        services.update_profile(outsider, org, kind=OrganisationKind.ACADEMIA, state=None, sectors=[])
    services.update_profile(
        node_admin, other, kind=OrganisationKind.SECTOR_CSIRT, state=peru, sectors=[], parent=org
    )
    with pytest.raises(ValidationError, match="own parent"):
        services.update_profile(
            node_admin, org, kind=OrganisationKind.NATIONAL_CSIRT, state=peru, sectors=[], parent=other
        )
    change = AuditEntry.objects.filter(action="organisation.update_profile", actor=boss).get()
    assert change.details["changed"]["state"] == [None, "PE"]


def test_added_sectors_are_unique(node_admin):
    services.add_sector(node_admin, "Space systems")
    with pytest.raises(ValidationError, match="exists already"):
        services.add_sector(node_admin, "space systems")


def test_api_lists_states_with_counts_and_sets_profiles(node_admin, make_org, make_user, bearer):
    org = make_org("csirt-uy")
    boss = make_user("boss", org, Role.ORG_ADMIN)
    headers = bearer(boss)
    body = {"kind": "national_csirt", "state": "uy", "sectors": ["health", "energy"]}
    put = Client().put(
        "/api/v1/directory/organisations/csirt-uy/profile",
        body,
        content_type="application/json",
        headers=headers,
    )
    assert put.status_code == 200, put.content
    assert put.json() == {
        "organisation": "csirt-uy",
        "kind": "national_csirt",
        "state": "UY",
        "sectors": ["energy", "health"],
        "parent": None,
        "hosting_node": "",
    }
    states = {s["code"]: s for s in Client().get("/api/v1/directory/states", headers=headers).json()}
    assert states["UY"]["national_csirt_count"] == 1 and states["AR"]["organisation_count"] == 0
    bad = Client().put(
        "/api/v1/directory/organisations/csirt-uy/profile",
        {**body, "sectors": ["nope"]},
        content_type="application/json",
        headers=headers,
    )
    assert bad.status_code == 400 and "nope" in bad.json()["detail"]
    refused = Client().patch(
        "/api/v1/directory/states/UY",
        {"participating": False},
        content_type="application/json",
        headers=headers,
    )
    assert refused.status_code == 403
    done = Client().patch(
        "/api/v1/directory/states/UY",
        {"participating": False},
        content_type="application/json",
        headers=bearer(node_admin),
    )
    assert done.status_code == 200 and done.json()["participating"] is False


def test_outsiders_see_no_organisation_of_the_directory(make_org, make_user, bearer, login_client):
    org = make_org("csirt-cl")
    services.update_profile(
        None, org, kind=OrganisationKind.NATIONAL_CSIRT, state=MemberState.objects.get(code="CL"), sectors=[]
    )
    loner = User.objects.create_user("loner", password="x" * 20)
    headers = bearer(loner)
    assert (
        Client().get("/api/v1/directory/organisations/csirt-cl/profile", headers=headers).status_code == 404
    )
    states = {s["code"]: s for s in Client().get("/api/v1/directory/states", headers=headers).json()}
    assert states["CL"]["national_csirt_count"] == 0
    page = login_client(loner).get("/directory/states/CL/")
    assert page.status_code == 200 and b"csirt-cl" not in page.content
    assert login_client(loner).get("/directory/organisations/csirt-cl/").status_code == 404
    assert Client().get("/api/v1/directory/states").status_code == 401


def test_pages_show_states_and_let_admins_edit_profiles(node_admin, make_org, make_user, login_client):
    org = make_org("csirt-br")
    boss = make_user("boss", org, Role.ORG_ADMIN)
    client = login_client(boss)
    listing = client.get("/directory/")
    assert listing.status_code == 200 and b"Brazil" in listing.content
    brazil = MemberState.objects.get(code="BR")
    saved = client.post(
        "/directory/organisations/csirt-br/",
        {
            "kind": "national_csirt",
            "state": brazil.pk,
            "sectors": [Sector.objects.get(slug="energy").pk],
            "hosting_node": "",
        },
    )
    assert saved.status_code == 302
    assert OrganisationProfile.objects.get(organisation=org).state == brazil
    detail = client.get("/directory/states/BR/")
    assert b"Organisation csirt-br" in detail.content and b"National CSIRT" in detail.content
    analyst = make_user("ana", org)
    assert (
        login_client(analyst).post("/directory/organisations/csirt-br/", {"kind": "academia"}).status_code
        == 403
    )
    assert client.post("/directory/states/BR/participation/", {"participating": "0"}).status_code == 403
    assert (
        login_client(node_admin)
        .post("/directory/states/BR/participation/", {"participating": "0"})
        .status_code
        == 302
    )
    assert not MemberState.objects.get(code="BR").participating
