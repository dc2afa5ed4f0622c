"""Constituencies and the resolution service: parsing, all-or-nothing imports, the most
specific network winning (checked against brute force), reloads after changes, and the access
policy on answers."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from minga.core.choices import Role
from minga.core.models import AuditEntry, User
from minga.directory import constituency, resolution, services
from minga.directory.resolution import Index


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("192.0.2.1/24", "host bits set; did you mean 192.0.2.0/24"),
        ("10.0.0.0/8", "private, reserved"),
        ("300.1.1.0/24", "not an IP network"),
        ("AS64500", "documentation"),
        ("AS65000", "private use"),
        ("AS0", "reserved"),
        ("4294967296", "not an AS number"),
        ("com", "top-level domain"),
        ("bad_domain..org", "not a valid domain"),
    ],
)
def test_bad_entries_are_explained(text, message):
    with pytest.raises(ValueError, match=message):
        constituency.classify(text)


def test_entries_are_normalised():
    assert constituency.classify("8.8.8.8") == constituency.Entry("network", "8.8.8.8/32")
    assert constituency.classify("2800:1::/32").value == "2800:1::/32"
    assert constituency.classify("as 1".replace(" ", "")) == constituency.Entry("asn", "1")
    assert constituency.classify("Bücher.Example.").value == "xn--bcher-kva.example"


def _brute_force(rows: list[tuple[str, int]], address: int, version: int) -> tuple[int, ...]:
    best: tuple[int, set[int]] | None = None
    for cidr, org in rows:
        net = ipaddress.ip_network(cidr)
        if net.version == version and int(net.network_address) <= address <= int(net.broadcast_address):
            if best is None or net.prefixlen > best[0]:
                best = (net.prefixlen, {org})
            elif net.prefixlen == best[0]:
                best[1].add(org)
    return tuple(sorted(best[1])) if best else ()


blocks = st.lists(st.tuples(st.integers(0, 1023), st.integers(20, 32), st.integers(1, 4)), max_size=15)


@settings(max_examples=120, deadline=None)
@given(blocks, st.lists(st.integers(0, 2**32 - 1), max_size=5))
def test_the_most_specific_network_wins_ipv4(spec, extra):
    rows = [
        (str(ipaddress.ip_network((0xC6330000 + host * 61, length), strict=False)), org)
        for host, length, org in spec
    ]
    index = Index.build(rows, [], [])
    probes = [0xC6330000 + i * 193 for i in range(350)] + extra
    got = index.resolve_ipv4_ints(np.array(probes, dtype=np.uint64))
    for probe, owner_id in zip(probes, got, strict=True):
        assert index.owner_sets[owner_id] == _brute_force(rows, probe, 4), ipaddress.ip_address(probe)
    texts = [str(ipaddress.ip_address(p)) for p in probes]
    assert index.resolve_ips(texts) == [index.owner_sets[i] for i in got]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(28, 48), st.integers(1, 3)), max_size=10))
def test_the_most_specific_network_wins_ipv6(spec):
    base = int(ipaddress.ip_address("2800::"))
    rows = [
        (str(ipaddress.ip_network((base + (host << 84), length), strict=False)), org)
        for host, length, org in spec
    ]
    index = Index.build(rows, [], [])
    probes = [base + (i << 83) for i in range(550)]
    answers = index.resolve_ips([str(ipaddress.ip_address(p)) for p in probes])
    for probe, owners in zip(probes, answers, strict=True):
        assert owners == _brute_force(rows, probe, 6)


def test_domains_cover_subdomains_and_asns_resolve():
    index = Index.build([], [(64496 + 100000, 7)], [("example.org", 1), ("cert.example.org", 2)])
    assert index.resolve_domains(["a.b.cert.EXAMPLE.org.", "www.example.org", "example.com", "x..y"]) == [
        (2,),
        (1,),
        (),
        None,
    ]
    assert index.resolve_asns([164496, 1]) == [(7,), ()]
    assert index.resolve_ips(["not an ip", "192.0.2.1"]) == [None, ()]


@pytest.fixture
def csirt(make_org, make_user):
    org = make_org("csirt-x")
    return org, make_user("boss", org, Role.ORG_ADMIN)


def test_imports_are_all_or_nothing_with_each_bad_line_named(csirt):
    org, boss = csirt
    with pytest.raises(services.ConstituencyRejected) as rejected:
        services.add_constituency(boss, org, ["8.8.8.0/24", "10.1.0.0/16", "# comment", "AS1", "AS65001"])
    assert [(e.line, e.text) for e in rejected.value.line_errors] == [(2, "10.1.0.0/16"), (5, "AS65001")]
    assert not org.networks.exists() and not org.asns.exists()
    services.add_constituency(boss, org, ["8.8.8.0/24", "2800:1::/32", "AS1", "Example.ORG"])
    assert list(org.networks.values_list("cidr", flat=True)) == ["8.8.8.0/24", "2800:1::/32"]
    assert AuditEntry.objects.filter(action="constituency.add", actor=boss).count() == 1


def test_the_index_reloads_when_the_constituency_changes(csirt, make_org, make_user):
    org, boss = csirt
    assert resolution.current().resolve_ips(["8.8.8.8"]) == [()]
    services.add_constituency(boss, org, ["8.8.8.0/24"])
    assert resolution.current().resolve_ips(["8.8.8.8"]) == [(org.pk,)]
    other = make_org("isp")
    services.add_constituency(make_user("isp-admin", other, Role.ORG_ADMIN), other, ["8.8.8.0/28"])
    assert resolution.current().resolve_ips(["8.8.8.8", "8.8.8.100"]) == [(other.pk,), (org.pk,)]
    services.remove_constituency(boss, org, "network", "8.8.8.0/24")
    assert resolution.current().resolve_ips(["8.8.8.100"]) == [()]


def test_resolve_api_answers_members_and_hides_everything_from_outsiders(csirt, bearer):
    org, boss = csirt
    services.add_constituency(boss, org, ["8.8.8.0/24", "AS15169", "example.org"])
    body = {"ips": ["8.8.8.8", "1.1.1.1", "nonsense"], "asns": [15169], "domains": ["www.example.org"]}
    answer = (
        Client()
        .post("/api/v1/directory/resolve", body, content_type="application/json", headers=bearer(boss))
        .json()
    )
    assert [a["owners"] for a in answer["ips"]] == [
        [{"organisation": "csirt-x", "name": org.name, "duty_contacts": []}],
        [],
        [],
    ]
    assert answer["ips"][2]["valid"] is False
    assert answer["asns"][0]["owners"][0]["organisation"] == "csirt-x"
    assert answer["domains"][0]["owners"][0]["organisation"] == "csirt-x"
    loner = User.objects.create_user("loner", password="x" * 20)
    hidden = (
        Client()
        .post("/api/v1/directory/resolve", body, content_type="application/json", headers=bearer(loner))
        .json()
    )
    assert all(not a["owners"] for group in hidden.values() for a in group)
    assert (
        Client()
        .get("/api/v1/directory/organisations/csirt-x/constituency", headers=bearer(loner))
        .status_code
        == 404
    )


def test_constituency_pages(csirt, login_client):
    org, boss = csirt
    client = login_client(boss)
    bad = client.post(
        "/directory/organisations/csirt-x/constituency/",
        {"entries": "8.8.4.0/24\n192.168.0.0/16"},
        follow=True,
    )
    assert b"Line 2 (192.168.0.0/16)" in bad.content and b"Nothing was saved" in bad.content
    good = client.post(
        "/directory/organisations/csirt-x/constituency/", {"entries": "8.8.4.0/24\nAS15169"}, follow=True
    )
    assert b"8.8.4.0/24" in good.content and b"AS15169" in good.content
    who = client.get("/directory/?who=8.8.4.4")
    assert b"is in the constituency of" in who.content and org.name.encode() in who.content
    assert b"not a valid" in client.get("/directory/?who=...").content
