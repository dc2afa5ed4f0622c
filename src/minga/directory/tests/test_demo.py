"""The demo network's directory: every member state has a national CSIRT with a 24/7 contact,
some stale, and constituencies drawn only from documentation ranges, enough to route by."""

from __future__ import annotations

import ipaddress

import pytest

from minga.core import demo as core_demo
from minga.core.models import AuditEntry, User
from minga.directory import demo as directory_demo
from minga.directory import queries, services
from minga.directory.choices import OrganisationKind
from minga.directory.constituency import DEMO_NETWORKS
from minga.directory.models import ConstituencyNetwork, MemberState, OrganisationProfile


@pytest.fixture
def demo(db, monkeypatch):
    monkeypatch.setenv("MINGA_DEMO_PASSWORD", "demo-password-for-the-test-suite-only")
    core_demo.load()
    directory_demo.load()


def test_every_member_state_has_a_national_csirt_and_some_contacts_are_stale(demo):
    national = OrganisationProfile.objects.filter(kind=OrganisationKind.NATIONAL_CSIRT)
    assert set(national.values_list("state__code", flat=True)) == set(
        MemberState.objects.values_list("code", flat=True)
    )
    assert national.count() == MemberState.objects.count() == 35
    coordinator = User.objects.get(username="demo-coordinator")
    assert queries.stale_contacts(coordinator).exists()
    assert queries.states_without_confirmed_duty_contact(coordinator).exists()
    assert {"sector_csirt", "law_enforcement", "ci_operator"} <= set(
        OrganisationProfile.objects.values_list("kind", flat=True)
    )


def test_demo_constituencies_route_and_hold_only_documentation_ranges(demo):
    for cidr in ConstituencyNetwork.objects.values_list("cidr", flat=True):
        network = ipaddress.ip_network(cidr)
        assert any(network.version == d.version and network.subnet_of(d) for d in DEMO_NETWORKS), cidr
    analyst = User.objects.get(username="demo-analyst")
    chile = ConstituencyNetwork.objects.get(organisation__short_name="demo-csirt-cl", version=4).cidr
    sector = ConstituencyNetwork.objects.get(organisation__short_name="demo-csirt-salud-cl").cidr
    inside_sector = str(ipaddress.ip_network(sector)[7])
    outside_sector = str(ipaddress.ip_network(chile)[-2])
    answers = queries.resolve(analyst, ips=[inside_sector, outside_sector, "8.8.8.8"], asns=[], domains=[])[
        "ips"
    ]
    assert [[o["organisation"] for o in a["owners"]] for a in answers] == [
        ["demo-csirt-salud-cl"],
        ["demo-csirt-cl"],
        [],
    ]
    assert answers[1]["owners"][0]["duty_contacts"][0]["phone_numbers"][0].startswith("+56")
    domain = queries.resolve_text(analyst, "portal.salud.cl.demo.example")
    assert [o["organisation"] for o in domain["owners"]] == ["demo-csirt-salud-cl"]


def test_demo_organisations_never_claim_real_networks_nor_others_documentation_ranges(demo, make_org):
    chile = OrganisationProfile.objects.get(organisation__short_name="demo-csirt-cl").organisation
    with pytest.raises(services.ConstituencyRejected) as rejected:
        services.add_constituency(None, chile, ["8.8.8.0/24", "AS15169", "example.org"])
    assert len(rejected.value.line_errors) == 3
    assert "not a documentation range" in rejected.value.line_errors[0].reason
    real = make_org("csirt-real")
    with pytest.raises(services.ConstituencyRejected):
        services.add_constituency(None, real, ["198.51.100.0/24"])


def test_loading_the_demo_twice_changes_nothing(demo):
    entries = AuditEntry.objects.count()
    directory_demo.load()
    assert AuditEntry.objects.count() == entries
