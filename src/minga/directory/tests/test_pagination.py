"""Lists that run into thousands at network scale come a page at a time: a big state's
organisations, an organisation's constituency, the coordinator's stale contacts (page and API).
Each page still goes through the access policy, and the number of queries does not grow with
the number of rows (benchmarks/directory_pages.py measures the time)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from django.utils import timezone

from minga.core import access
from minga.core.choices import Role
from minga.core.models import Organisation, User
from minga.directory import queries, services, views
from minga.directory.choices import OrganisationKind
from minga.directory.models import (
    ConstituencyASN,
    ConstituencyDomain,
    ConstituencyNetwork,
    MemberState,
    OrganisationProfile,
    PointOfContact,
)


@pytest.fixture
def peru(make_org, node_admin):
    """Five organisations of Peru: a national CSIRT and four others of two kinds."""
    state = MemberState.objects.get(code="PE")
    kinds = [
        ("pe-national", OrganisationKind.NATIONAL_CSIRT),
        ("pe-bank-b", OrganisationKind.PRIVATE_SECTOR),
        ("pe-uni", OrganisationKind.ACADEMIA),
        ("pe-bank-a", OrganisationKind.PRIVATE_SECTOR),
        ("pe-bank-c", OrganisationKind.PRIVATE_SECTOR),
    ]
    for short_name, kind in kinds:
        services.update_profile(None, make_org(short_name), kind=kind, state=state, sectors=[])
    return state


def _names(response) -> list[str]:
    text = response.content.decode()
    return sorted(name for name in ("national", "bank-a", "bank-b", "bank-c", "uni") if f"pe-{name}" in text)


def test_a_state_lists_its_organisations_a_page_at_a_time(peru, node_admin, login_client, monkeypatch):
    monkeypatch.setattr(views, "PROFILES_PER_PAGE", 2)
    client = login_client(node_admin)
    first = client.get("/directory/states/PE/")
    # Grouped by kind in the order of the kinds, then by name: the national CSIRT, then banks.
    assert _names(first) == ["bank-a", "national"]
    assert "Page 1 of 3" in first.content.decode() and "National CSIRT" in first.content.decode()
    second = client.get("/directory/states/PE/?page=2")
    assert _names(second) == ["bank-b", "bank-c"]
    assert "Private sector" in second.content.decode() and "National CSIRT" not in second.content.decode()
    assert _names(client.get("/directory/states/PE/?page=3")) == ["uni"]
    assert _names(client.get("/directory/states/PE/?page=99")) == ["uni"]  # past the end: the last page


def test_an_outsider_sees_no_organisation_on_any_page(peru, login_client, monkeypatch):
    monkeypatch.setattr(views, "PROFILES_PER_PAGE", 2)
    loner = User.objects.create_user("loner", password="x" * 20)
    client = login_client(loner)
    for page in (1, 2, 3):
        response = client.get(f"/directory/states/PE/?page={page}")
        assert response.status_code == 200 and _names(response) == []
    assert "No organisation of this state" in client.get("/directory/states/PE/").content.decode()


def test_a_state_page_takes_the_same_queries_for_five_or_fifty_organisations(
    peru, make_org, node_admin, login_client, django_assert_max_num_queries
):
    client = login_client(node_admin)
    client.get("/directory/states/PE/")
    for i in range(45):
        OrganisationProfile.objects.create(
            organisation=make_org(f"pe-extra-{i}"), kind=OrganisationKind.CI_OPERATOR, state=peru
        )
    with django_assert_max_num_queries(10):
        assert client.get("/directory/states/PE/").status_code == 200


@pytest.fixture
def big_constituency(make_org):
    org = make_org("csirt-big")
    ConstituencyNetwork.objects.bulk_create(
        ConstituencyNetwork(organisation=org, cidr=f"8.8.{i}.0/24", version=4) for i in range(3)
    )
    ConstituencyASN.objects.create(organisation=org, asn=15169)
    ConstituencyDomain.objects.bulk_create(
        ConstituencyDomain(organisation=org, domain=d) for d in ("a.example.org", "b.example.org")
    )
    return org


def test_the_constituency_is_one_sequence_of_networks_then_asns_then_domains(big_constituency):
    rows = queries.Constituency(big_constituency)
    everything = [
        ("network", "8.8.0.0/24"),
        ("network", "8.8.1.0/24"),
        ("network", "8.8.2.0/24"),
        ("asn", "15169"),
        ("domain", "a.example.org"),
        ("domain", "b.example.org"),
    ]
    assert rows.count() == len(rows) == 6
    assert rows[0:6] == everything
    for start in range(7):
        for stop in range(start, 8):
            assert rows[start:stop] == everything[start:stop], (start, stop)


def test_a_profile_shows_its_constituency_a_page_at_a_time(
    big_constituency, node_admin, login_client, monkeypatch
):
    monkeypatch.setattr(views, "CONSTITUENCY_PER_PAGE", 4)
    client = login_client(node_admin)
    first = client.get("/directory/organisations/csirt-big/").content.decode()
    assert "8.8.0.0/24" in first and "AS15169" in first and "a.example.org" not in first
    assert "Page 1 of 2" in first
    assert 'name="value" value="8.8.2.0/24"' in first  # the admin's remove buttons are there
    second = client.get("/directory/organisations/csirt-big/?page=2").content.decode()
    assert "a.example.org" in second and "b.example.org" in second and "8.8.0.0/24" not in second
    empty = client.get("/directory/organisations/hub/").content.decode()
    assert "No network, AS number or domain yet." in empty
    loner = User.objects.create_user("loner", password="x" * 20)
    assert login_client(loner).get("/directory/organisations/csirt-big/?page=2").status_code == 404


def test_the_profile_form_lists_every_other_organisation_as_a_possible_parent(peru, node_admin, login_client):
    parent = Organisation.objects.get(short_name="pe-national")
    child = OrganisationProfile.objects.get(organisation__short_name="pe-uni")
    services.update_profile(None, child.organisation, kind=child.kind, state=peru, sectors=[], parent=parent)
    html = login_client(node_admin).get("/directory/organisations/pe-uni/").content.decode()
    select = html.split('name="parent"')[1].split("</select>")[0]
    assert f'<option value="{parent.pk}" selected>Organisation pe-national</option>' in select
    assert select.count("<option") == 6  # the empty choice and the five others (not pe-uni itself)
    assert "Organisation pe-uni<" not in select


def test_the_parent_chosen_in_the_form_is_saved_and_a_hidden_one_refused(peru, node_admin, login_client):
    client = login_client(node_admin)
    bank = Organisation.objects.get(short_name="pe-bank-a")
    form = {"kind": OrganisationKind.ACADEMIA, "state": peru.pk, "hosting_node": ""}
    saved = client.post("/directory/organisations/pe-uni/", {**form, "parent": bank.pk})
    assert saved.status_code == 302
    assert OrganisationProfile.objects.get(organisation__short_name="pe-uni").parent == bank
    uni = Organisation.objects.get(short_name="pe-uni")
    refused = client.post("/directory/organisations/pe-uni/", {**form, "parent": uni.pk})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert 'aria-invalid="true"' in refused.content.decode().split('name="parent"')[1].split(">")[0]
    assert OrganisationProfile.objects.get(organisation__short_name="pe-uni").parent == bank


@pytest.fixture
def stale_contacts(peru, node_admin):
    long_ago = timezone.now() - timedelta(days=400)
    for i, short_name in enumerate(["pe-bank-a", "pe-bank-b", "pe-uni"]):
        PointOfContact.objects.create(
            organisation=Organisation.objects.get(short_name=short_name),
            role="duty",
            name=f"Stale {i}",
            email=f"stale{i}@example.org",
            last_verified_at=long_ago + timedelta(days=i),
        )


def test_the_coordinator_pages_through_stale_contacts(stale_contacts, node_admin, login_client, monkeypatch):
    monkeypatch.setattr(views, "CONTACTS_PER_PAGE", 2)
    client = login_client(node_admin)
    first = client.get("/directory/coordination/").content.decode()
    assert "Stale 0" in first and "Stale 1" in first and "Stale 2" not in first
    second = client.get("/directory/coordination/?page=2").content.decode()
    assert "Stale 2" in second and "Stale 0" not in second
    # Asking a contact of page 2 to confirm brings the coordinator back to page 2.
    asked = PointOfContact.objects.get(name="Stale 2")
    back = client.post(
        f"/directory/contacts/{asked.pk}/", {"action": "request", "back": "coordination", "page": "2"}
    )
    assert back.status_code == 302 and back["Location"] == "/directory/coordination/?page=2"
    odd = client.post(
        f"/directory/contacts/{asked.pk}/", {"action": "request", "back": "coordination", "page": "x"}
    )
    assert odd["Location"] == "/directory/coordination/"


def test_the_stale_contacts_api_pages_with_limit_and_offset(
    stale_contacts, node_admin, make_user, bearer, django_assert_max_num_queries
):
    headers = bearer(node_admin)
    client = Client()
    with django_assert_max_num_queries(8):
        first = client.get("/api/v1/directory/stale-contacts?limit=2", headers=headers).json()
    assert first["count"] == 3 and [c["name"] for c in first["items"]] == ["Stale 0", "Stale 1"]
    assert first["items"][0]["organisation"] == "pe-bank-a" and first["items"][0]["is_stale"]
    rest = client.get("/api/v1/directory/stale-contacts?limit=2&offset=2", headers=headers).json()
    assert [c["name"] for c in rest["items"]] == ["Stale 2"]
    assert client.get("/api/v1/directory/stale-contacts?limit=0", headers=headers).status_code == 422
    never = PointOfContact.objects.create(
        organisation=Organisation.objects.get(short_name="pe-uni"), role="duty", name="Never", email="n@x.org"
    )
    listed = client.get("/api/v1/directory/stale-contacts?limit=2", headers=headers).json()
    assert [c["name"] for c in listed["items"]] == ["Never", "Stale 0"]  # never confirmed: most overdue
    never.delete()
    analyst = make_user("ana", Organisation.objects.get(short_name="pe-uni"))
    assert client.get("/api/v1/directory/stale-contacts", headers=bearer(analyst)).status_code == 403
    loner = User.objects.create_user("loner", password="x" * 20)
    assert client.get("/api/v1/directory/stale-contacts", headers=bearer(loner)).status_code == 403


def test_listing_contacts_does_not_query_once_per_contact(
    stale_contacts, make_user, bearer, django_assert_max_num_queries
):
    org = Organisation.objects.get(short_name="pe-uni")
    PointOfContact.objects.bulk_create(
        PointOfContact(organisation=org, role="technical", name=f"Tech {i}", email=f"t{i}@example.org")
        for i in range(20)
    )
    headers = bearer(make_user("boss", org, Role.ORG_ADMIN))
    with django_assert_max_num_queries(8):
        listed = Client().get("/api/v1/directory/organisations/pe-uni/contacts", headers=headers).json()
    assert len(listed) == 21 and {c["organisation"] for c in listed} == {"pe-uni"}


def test_the_organisation_filter_admits_exactly_the_visible_organisations(
    stale_contacts, make_org, make_user
):
    """The directory filters its tables with ``access.organisation_filter`` (no subquery over
    every organisation); it must admit what ``organisations_visible_to`` admits, for everyone."""
    outside = make_org("outside", member=False)
    lapsed = make_user("lapsed", Organisation.objects.get(short_name="pe-uni"))
    lapsed.memberships.update(is_active=False)
    readers = [
        make_user("member", Organisation.objects.get(short_name="pe-bank-a")),
        make_user("guest", outside),
        lapsed,
        User.objects.create_user("loner", password="x" * 20),
        AnonymousUser(),
    ]
    for reader in readers:
        visible = set(access.organisations_visible_to(reader))
        expected = {c.pk for c in PointOfContact.objects.all() if c.organisation in visible}
        assert (
            set(
                PointOfContact.objects.filter(access.organisation_filter(reader)).values_list("pk", flat=True)
            )
            == expected
        )
        assert bool(expected) == bool(access.reader_for(reader).organisation_ids)
