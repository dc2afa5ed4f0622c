"""Benchmark of seeding constituencies from registry data (issue 3).

Writes, in a temporary folder, a synthetic RIR statistics file (delegated-extended, ~100,000
lines, like LACNIC's and ARIN's together) and an RPSL dump (~20,000 objects: inetnum, inet6num
and aut-num with their roles and organisations), then loads both into a fresh SQLite database
through ``registries.seed_proposals``, as ``minga directory seed`` does. Prints lines/s parsed
(parsing alone, no database), the whole load's time with proposals/s stored, a re-run (which
must add nothing), and accepting 5,000 proposals for one organisation.

    python benchmarks/directory_seeding.py
"""

from __future__ import annotations

import ipaddress
import random
import time
from pathlib import Path

from scratch import scratch_node  # beside this script; it puts src/ on the path

DELEGATED_LINES, RPSL_OBJECTS, ACCEPTED = 100_000, 20_000, 5_000
# Mostly the Americas, as LACNIC's and ARIN's files are; a few states that take no part.
COUNTRIES = ["BR"] * 30 + ["US"] * 30 + ["MX"] * 8 + ["AR"] * 8 + ["CO", "CL", "CA", "UY", "PE", "EC"] * 3
OUTSIDERS = ["CU", "DE", "JP"]


def _global_block(rng: random.Random, size: int) -> ipaddress.IPv4Address:
    while True:
        start = ipaddress.IPv4Address(rng.getrandbits(32) & ~(size - 1) & 0xFFFFFF00)
        if ipaddress.IPv4Network(f"{start}/{32 - (size.bit_length() - 1)}").is_global:
            return start


def write_delegated(path: Path, rng: random.Random) -> None:
    lines = [
        "2|lacnic|20260601|100000|19870101|20260531|-0300",
        "lacnic|*|ipv4|*|60000|summary",
        "lacnic|*|ipv6|*|20000|summary",
        "lacnic|*|asn|*|20000|summary",
    ]
    next_asn = 262_144  # 32-bit AS numbers, as LACNIC hands out now
    while len(lines) < DELEGATED_LINES:
        roll = rng.random()
        country = rng.choice(OUTSIDERS) if rng.random() < 0.05 else rng.choice(COUNTRIES)
        status = "allocated" if rng.random() < 0.9 else rng.choice(["assigned", "available", "reserved"])
        holder = f"h{rng.getrandbits(40):010x}"
        if roll < 0.6:
            # Often not a power of two: 256 to 16,384 addresses in steps of 256.
            count = 256 * rng.randint(1, 64)
            start = _global_block(rng, 1 << (count - 1).bit_length())
            lines.append(f"lacnic|{country}|ipv4|{start}|{count}|20100101|{status}|{holder}")
        elif roll < 0.8:
            prefix = (0x2800 << 112) | (rng.getrandbits(16) << 96)
            lines.append(
                f"lacnic|{country}|ipv6|{ipaddress.IPv6Address(prefix)}|32|20100101|{status}|{holder}"
            )
        else:
            count = 1 if rng.random() < 0.9 else rng.randint(2, 4)
            lines.append(f"lacnic|{country}|asn|{next_asn}|{count}|20100101|{status}|{holder}")
            next_asn += count
    path.write_text("\n".join(lines) + "\n")


def write_rpsl(path: Path, rng: random.Random) -> None:
    blocks = ["% synthetic RPSL dump for the benchmark\n"]
    roles = 500
    for n in range(roles):
        blocks.append(
            f"role:           Abuse desk {n}\nnic-hdl:        AB{n}-LACNIC\n"
            f"abuse-mailbox:  abuse@noc.isp{n}.example.net\nsource:         LACNIC\n"
        )
    objects = 0
    while objects < RPSL_OBJECTS - roles:
        country = rng.choice(COUNTRIES)
        role = rng.randrange(roles)
        roll = rng.random()
        if roll < 0.7:
            size = 256 * rng.randint(1, 16)
            start = _global_block(rng, 1 << (size - 1).bit_length())
            head = f"inetnum:        {start} - {start + size - 1}"
        elif roll < 0.85:
            head = (
                f"inet6num:       {ipaddress.IPv6Address((0x2801 << 112) | (rng.getrandbits(16) << 96))}/32"
            )
        else:
            head = f"aut-num:        AS{rng.randint(1_000_000, 2_000_000)}"
        blocks.append(
            f"{head}\nnetname:        NET-{objects}\ndescr:          Synthetic network\n"
            f"+               continued\ncountry:        {country}\nabuse-c:        AB{role}-LACNIC\n"
            "source:         LACNIC # synthetic\n"
        )
        objects += 1
    path.write_text("\n".join(blocks))


def main() -> None:
    rng = random.Random(2026)
    with scratch_node("minga-seed-bench-", sqlite_only=True) as node:
        scratch = node.folder
        from minga.core import services as core_services
        from minga.directory import registries, services
        from minga.directory.choices import OrganisationKind
        from minga.directory.models import ConstituencyProposal, MemberState

        # A national CSIRT for most states; 100 providers whose domains hold the abuse mailboxes.
        for code in ["BR", "US", "MX", "CO", "CL", "UY", "PE"]:
            org = core_services.create_organisation(
                None, name=f"CSIRT {code}", short_name=f"csirt-{code.lower()}"
            )
            services.update_profile(
                None,
                org,
                kind=OrganisationKind.NATIONAL_CSIRT,
                state=MemberState.objects.get(code=code),
                sectors=[],
            )
        for n in range(100):
            org = core_services.create_organisation(None, name=f"ISP {n}", short_name=f"isp-{n}")
            services.add_constituency(None, org, [f"isp{n}.example.net"])

        delegated, rpsl = scratch / "delegated-lacnic-extended-latest", scratch / "ripe.db"
        write_delegated(delegated, rng)
        write_rpsl(rpsl, rng)
        print(
            f"files: {delegated.stat().st_size / 1e6:.1f} MB delegated, "
            f"{rpsl.stat().st_size / 1e6:.1f} MB RPSL"
        )

        for path, fmt in ((delegated, "delegated"), (rpsl, "rpsl")):
            report = registries.Report()
            started = time.perf_counter()
            resources = sum(1 for _ in registries.parse([path], fmt, report))
            elapsed = time.perf_counter() - started
            print(
                f"parse {fmt}: {report.lines:,} lines, {resources:,} resources in {elapsed:.2f} s "
                f"= {report.lines / elapsed:,.0f} lines/s"
            )

        for path, fmt in ((delegated, "delegated"), (rpsl, "rpsl")):
            started = time.perf_counter()
            report = registries.seed_proposals(None, [path], fmt)
            elapsed = time.perf_counter() - started
            print(
                f"load {fmt}: {report.proposed:,} proposals stored in {elapsed:.2f} s "
                f"= {report.proposed / elapsed:,.0f} proposals/s "
                f"({report.lines / elapsed:,.0f} lines/s overall; "
                f"{report.problem_count:,} problems, skipped {dict(report.skipped)})"
            )
            started = time.perf_counter()
            again = registries.seed_proposals(None, [path], fmt)
            print(
                f"re-run {fmt}: {again.proposed} new in {time.perf_counter() - started:.2f} s "
                f"({again.skipped['already_proposed']:,} already proposed)"
            )

        ids = list(
            ConstituencyProposal.objects.filter(
                organisation__short_name="csirt-br", kind="network"
            ).values_list("pk", flat=True)[:ACCEPTED]
        )
        started = time.perf_counter()
        services.decide_proposals(None, ids, "accept")
        elapsed = time.perf_counter() - started
        print(
            f"accept {len(ids):,} proposals for one organisation: {elapsed:.2f} s "
            f"= {len(ids) / elapsed:,.0f}/s"
        )


if __name__ == "__main__":
    main()
