"""Benchmark of the directory pages at network scale (issue 3's target: p95 under 200 ms).

Builds a fresh database, loads 5,000 organisations (one big state with ~1,000), 20,000 points
of contact (a third stale or never confirmed) and 20,000 constituency networks with AS numbers
and domains, then requests every directory page and the directory's API endpoints through
Django's test client, as a node admin and as an ordinary member analyst. Prints, per page and
user: p50, p95 and max latency, SQL queries per request and the response size, then whether
every p95 is under 200 ms. Exits non-zero if a page does not answer 200 (not on timing).

    python benchmarks/directory_pages.py                 # SQLite file in a temporary folder
    MINGA_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/minga_bench \\
        python benchmarks/directory_pages.py             # creates, then drops, that database
    python benchmarks/directory_pages.py --only state --profile   # pyinstrument, one page

The loading uses bulk inserts (the measurement, not the loading, has to be realistic).
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from scratch import scratch_node  # beside this script; it puts src/ on the path

ORGANISATIONS, CONTACTS, NETWORKS, ASNS, DOMAINS = 5_000, 20_000, 20_000, 5_000, 10_000
BIG_STATE, BIG_STATE_ORGANISATIONS = "BR", 1_000
TARGET_MS = 200.0
COLUMNS = [("p50 ms", 8), ("p95 ms", 8), ("max ms", 8), ("queries", 8), ("bytes", 10)]
WARM_UP = 3


@dataclass
class Page:
    name: str
    path: str
    api: bool = False
    admin_only: bool = False
    body: dict | None = None  # POSTed as JSON when given


@dataclass
class Row:
    page: str
    user: str
    timings_ms: list[float]
    queries: int
    size: int


# --- data ---------------------------------------------------------------------------------------


def _state_sizes(codes: list[str], rng: random.Random) -> dict[str, int]:
    """One big state with BIG_STATE_ORGANISATIONS, the rest spread unevenly (Zipf-like), a few
    organisations with no state (international ones)."""
    others = [c for c in codes if c != BIG_STATE]
    rng.shuffle(others)
    stateless = 40
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(others))]
    remaining = ORGANISATIONS - BIG_STATE_ORGANISATIONS - stateless
    sizes = {c: max(3, int(remaining * w / sum(weights))) for c, w in zip(others, weights, strict=True)}
    sizes[others[0]] += remaining - sum(sizes.values())
    sizes[BIG_STATE] = BIG_STATE_ORGANISATIONS
    sizes[""] = stateless
    return sizes


def _global_networks(rng: random.Random, count: int) -> list[tuple[str, int]]:
    seen: set[str] = set()
    rows: list[tuple[str, int]] = []
    while len(rows) < count:
        if rng.random() < 0.9:
            net: Any = ipaddress.IPv4Network((rng.getrandbits(32), rng.randint(16, 28)), strict=False)
        else:
            net = ipaddress.IPv6Network(((0x2800 << 112) | (rng.getrandbits(32) << 80), 48), strict=False)
        text = str(net)
        if net.is_global and text not in seen:
            seen.add(text)
            rows.append((text, net.version))
    return rows


def load(rng: random.Random) -> dict[str, Any]:
    """Bulk-load the network; returns what the page list needs (names, users, tokens)."""
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from minga.core import services as core_services
    from minga.core.choices import Role
    from minga.core.models import Membership, Organisation, User
    from minga.directory.choices import ContactRole, OrganisationKind
    from minga.directory.models import (
        ConstituencyASN,
        ConstituencyDomain,
        ConstituencyGeneration,
        ConstituencyNetwork,
        MemberState,
        OrganisationProfile,
        PointOfContact,
        Sector,
        TeamProfile,
    )

    now = timezone.now()
    stale_days = settings.MINGA_CONTACT_STALE_DAYS
    states = {s.code: s for s in MemberState.objects.all()}
    with transaction.atomic():
        Sector.objects.bulk_create(
            Sector(slug=f"sector-{i:02d}", name=f"Regional sector {i:02d}") for i in range(12)
        )
        sectors = list(Sector.objects.all())

        # Organisations: per state one national CSIRT first, then the others by weighted kind.
        kinds = [k for k in OrganisationKind.values if k != OrganisationKind.NATIONAL_CSIRT]
        kind_weights = [10, 5, 5, 25, 30, 15, 8, 2]
        plan: list[tuple[str, str]] = []  # (state code or "", kind)
        for code, size in _state_sizes(list(states), rng).items():
            for i in range(size):
                national_csirt = code and i == 0
                plan.append(
                    (
                        code,
                        OrganisationKind.NATIONAL_CSIRT
                        if national_csirt
                        else rng.choices(kinds, kind_weights)[0],
                    )
                )
        plan[-1] = ("", OrganisationKind.INTERNATIONAL)  # the secretariat: the node admin's home
        organisations = Organisation.objects.bulk_create(
            Organisation(
                name=f"{kind.replace('_', ' ').title()} {n:04d} ({code or 'intl'})",
                short_name=f"org-{n:04d}",
                is_network_member=rng.random() > 0.05,
            )
            for n, (code, kind) in enumerate(plan)
        )
        if not all(o.pk for o in organisations):  # backends that return no ids
            organisations = list(Organisation.objects.order_by("short_name"))
        national: dict[str, Organisation] = {}
        by_state: dict[str, list[Organisation]] = {}
        profiles = []
        for org, (code, kind) in zip(organisations, plan, strict=True):
            parent = None
            if kind == OrganisationKind.NATIONAL_CSIRT:
                national[code] = org
            elif code and rng.random() < 0.4:
                parent = national[code] if rng.random() < 0.5 else rng.choice(by_state[code])
            by_state.setdefault(code, []).append(org)
            profiles.append(
                OrganisationProfile(
                    organisation=org,
                    kind=kind,
                    state=states.get(code),
                    parent=parent,
                    hosting_node="" if rng.random() < 0.8 else f"node-{code.lower() or 'intl'}.example.org",
                )
            )
        profiles = OrganisationProfile.objects.bulk_create(profiles)
        if not all(p.pk for p in profiles):
            profiles = list(OrganisationProfile.objects.all())
        through = OrganisationProfile.sectors.through
        through.objects.bulk_create(
            through(organisationprofile_id=p.pk, sector_id=s.pk)
            for p in profiles
            for s in rng.sample(sectors, rng.choice([0, 1, 1, 2, 3]))
        )
        TeamProfile.objects.bulk_create(
            TeamProfile(
                organisation=org,
                address=f"Avenida {i}, Capital",
                hours="24/7",
                mission="Coordinate the response to computer security incidents in our constituency.",
                services="Incident response, alerts, vulnerability coordination.",
            )
            for i, org in enumerate(organisations)
            if i % 3 == 0
        )

        # The "rich" organisation: the big state's national CSIRT answers for much of its space.
        rich = national[BIG_STATE]
        weights = [rng.paretovariate(1.2) for _ in organisations]
        owners = rng.choices(organisations, weights, k=CONTACTS - 25)
        roles = ContactRole.values
        contacts = []
        for i, org in enumerate([rich] * 25 + owners):
            roll = i % 6
            verified = (
                None
                if roll == 0
                else now - timedelta(days=stale_days + rng.randint(1, 700))
                if roll == 1
                else now - timedelta(days=rng.randint(0, stale_days - 1))
            )
            contacts.append(
                PointOfContact(
                    organisation=org,
                    role=ContactRole.DUTY if i % 4 == 0 else rng.choice(roles),
                    name=f"Contact {i:05d}",
                    email=f"contact{i:05d}@{org.short_name}.example.org",
                    phone_numbers=[f"+5982{rng.randint(1000000, 9999999)}"],
                    languages=rng.sample(["es", "en", "pt", "fr"], rng.randint(1, 2)),
                    hours="24/7" if i % 4 == 0 else "09:00-18:00",
                    time_zone="America/Sao_Paulo",
                    last_verified_at=verified,
                )
            )
        PointOfContact.objects.bulk_create(contacts, batch_size=2000)

        rich_networks, rich_asns, rich_domains = 2_000, 200, 300
        networks = _global_networks(rng, NETWORKS)
        network_owners = [rich] * rich_networks
        network_owners += rng.choices(organisations, weights, k=NETWORKS - rich_networks)
        ConstituencyNetwork.objects.bulk_create(
            (
                ConstituencyNetwork(organisation=org, cidr=cidr, version=version)
                for (cidr, version), org in zip(networks, network_owners, strict=True)
            ),
            batch_size=2000,
        )
        asn_numbers = rng.sample(range(1, 64000), ASNS)
        asn_owners = [rich] * rich_asns + rng.choices(organisations, weights, k=ASNS - rich_asns)
        ConstituencyASN.objects.bulk_create(
            (
                ConstituencyASN(organisation=org, asn=n)
                for n, org in zip(asn_numbers, asn_owners, strict=True)
                if n != 23456
            ),
            batch_size=2000,
        )
        domain_owners = [rich] * rich_domains + rng.choices(organisations, weights, k=DOMAINS - rich_domains)
        ConstituencyDomain.objects.bulk_create(
            (
                ConstituencyDomain(organisation=org, domain=f"d{i:05d}.{org.short_name}.example.org")
                for i, org in enumerate(domain_owners)
            ),
            batch_size=2000,
        )
        ConstituencyGeneration.objects.update_or_create(pk=1, defaults={"token": "benchmark"})

        # People: the coordinator (node admin) at the secretariat, an analyst at a small team.
        secretariat = organisations[-1]
        admin = User.objects.create(username="coordinator", email="coordinator@example.org")
        Membership.objects.create(user=admin, organisation=secretariat, role=Role.NODE_ADMIN)
        analyst_home = by_state[BIG_STATE][7]
        analyst = User.objects.create(username="analyst", email="analyst@example.org")
        Membership.objects.create(user=analyst, organisation=analyst_home, role=Role.ANALYST)
        tokens = {
            "admin": core_services.create_api_token(None, admin, name="bench").raw,
            "analyst": core_services.create_api_token(None, analyst, name="bench").raw,
        }
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # what autovacuum would have done by now
            cursor.execute("ANALYZE")
    return {
        "users": {"admin": admin, "analyst": analyst},
        "tokens": tokens,
        "rich": rich,
        "typical": rng.choice(by_state[BIG_STATE][1:]),
        "small_state": min((c for c in by_state if c), key=lambda c: (len(by_state[c]), c)),
        "who": networks[0][0].split("/")[0],
    }


# --- measuring -----------------------------------------------------------------------------------


def pages(data: dict[str, Any]) -> list[Page]:
    rich, typical, small = data["rich"].short_name, data["typical"].short_name, data["small_state"]
    api = "/api/v1/directory"
    resolve = {
        "ips": [str(ipaddress.IPv4Address(random.Random(i).getrandbits(32))) for i in range(100)],
        "asns": list(range(1000, 1100)),
        "domains": [f"www.d{i:05d}.example.org" for i in range(100)],
    }
    return [
        Page("directory (member states)", "/directory/"),
        Page("directory ?who=<IP>", f"/directory/?who={data['who']}"),
        Page(f"state {BIG_STATE} (1,000 orgs)", f"/directory/states/{BIG_STATE}/"),
        Page(f"state {small} (small)", f"/directory/states/{small}/"),
        Page("profile (2,000 networks)", f"/directory/organisations/{rich}/"),
        Page("profile (typical)", f"/directory/organisations/{typical}/"),
        Page("team profile", f"/directory/organisations/{rich}/team/"),
        Page("rfc2350.txt", f"/directory/organisations/{rich}/rfc2350.txt"),
        Page("security.txt", f"/directory/organisations/{rich}/security.txt"),
        Page("coordination", "/directory/coordination/", admin_only=True),
        Page("sectors", "/directory/sectors/"),
        Page("organisations (core)", "/organisations/"),
        Page("API states", f"{api}/states", api=True),
        Page("API state", f"{api}/states/{BIG_STATE}", api=True),
        Page("API sectors", f"{api}/sectors", api=True),
        Page("API profile", f"{api}/organisations/{rich}/profile", api=True),
        Page("API contacts", f"{api}/organisations/{rich}/contacts", api=True),
        Page("API constituency", f"{api}/organisations/{rich}/constituency", api=True),
        Page("API stale-contacts", f"{api}/stale-contacts", api=True, admin_only=True),
        Page("API resolve (300 values)", f"{api}/resolve", api=True, body=resolve),
        Page("API organisations (core)", "/api/v1/organisations", api=True),
    ]


def _request(client: Any, page: Page, headers: dict[str, str]) -> Any:
    try:
        if page.body is not None:
            return client.post(page.path, page.body, content_type="application/json", headers=headers)
        return client.get(page.path, headers=headers)
    except Exception as exc:  # the test client re-raises what the view raised: a failed page
        raise RuntimeError(f"{page.path}: {type(exc).__name__}: {exc}") from exc


def measure(page: Page, user: str, client: Any, headers: dict[str, str], count: int) -> Row:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(WARM_UP):
        response = _request(client, page, headers)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code} for {page.path}")
    with CaptureQueriesContext(connection) as captured:  # counted apart: capturing costs time
        response = _request(client, page, headers)
    queries = len(captured.captured_queries)  # now: the next request resets the log
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        response = _request(client, page, headers)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code} for {page.path}")
    return Row(page.name, user, timings, queries, len(response.content))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def print_table(rows: list[Row]) -> bool:
    header = f"{'page':<28} {'user':<8} " + " ".join(f"{title:>{width}}" for title, width in COLUMNS)
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.page:<28} {r.user:<8} {statistics.median(r.timings_ms):>8.1f} "
            f"{percentile(r.timings_ms, 0.95):>8.1f} {max(r.timings_ms):>8.1f} {r.queries:>8} {r.size:>10,}"
        )
    slow = [r for r in rows if percentile(r.timings_ms, 0.95) >= TARGET_MS]
    verdict = "yes" if not slow else f"no ({', '.join(f'{r.page} as {r.user}' for r in slow)})"
    print(f"every p95 under {TARGET_MS:.0f} ms: {verdict}")
    return not slow


def profile(page: Page, client: Any, headers: dict[str, str], count: int) -> None:
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("--profile needs pyinstrument: pip install pyinstrument") from None
    profiler = Profiler(interval=0.0005)
    with profiler:
        for _ in range(count):
            _request(client, page, headers)
    print(profiler.output_text(unicode=True, color=False))
    # The flat view names the hot functions the call tree hides inside Django's frames.
    flat = profiler.output_text(unicode=True, color=False, flat=True, show_all=True)
    print("\n".join(flat.splitlines()[:30]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page and user")
    parser.add_argument("--only", default="", help="measure only pages whose name contains this text")
    parser.add_argument("--profile", action="store_true", help="profile the pages (pyinstrument)")
    args = parser.parse_args()

    with scratch_node() as node:
        return run(args, node.url)


def run(args: argparse.Namespace, url: str) -> int:
    from django.db import connection
    from django.test import Client

    started = time.perf_counter()
    data = load(random.Random(2026))
    print(
        f"loaded {ORGANISATIONS:,} organisations, {CONTACTS:,} contacts, {NETWORKS:,} networks, "
        f"{ASNS:,} ASNs, {DOMAINS:,} domains into {connection.vendor} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    clients = {}
    for label, user in data["users"].items():
        client = Client()
        client.force_login(user)
        clients[label] = (client, {"Authorization": f"Bearer {data['tokens'][label]}"})
    rows: list[Row] = []
    failed = False
    for page in pages(data):
        if args.only and args.only.lower() not in page.name.lower():
            continue
        for label, (client, bearer) in clients.items():
            if page.admin_only and label != "admin":
                continue
            headers = bearer if page.api else {}
            if args.profile:
                print(f"=== {page.name} as {label}")
                profile(page, client, headers, args.requests)
                continue
            try:
                rows.append(measure(page, label, client, headers, args.requests))
            except RuntimeError as exc:
                print(f"FAILED: {page.name} as {label}: {exc}", file=sys.stderr)
                failed = True
    if rows:
        print(f"{args.requests} timed requests per row after {WARM_UP} warm-up requests; {connection.vendor}")
        print_table(rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
