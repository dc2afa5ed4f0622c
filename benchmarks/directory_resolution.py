"""Benchmark of the directory's resolution index (issue 3's performance targets).

Prints: the time to build the index from 100,000 networks and 20,000 AS numbers, and the rate
of resolving 1,000,000 IPv4 addresses (as integers and as text) against it, plus IPv6.
Runs in memory (no database): ``python benchmarks/directory_resolution.py``.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from minga.directory.resolution import Index

NETWORKS, ASNS, ORGANISATIONS, LOOKUPS, V6_LOOKUPS = 100_000, 20_000, 5_000, 1_000_000, 100_000


def generated_networks(rng: random.Random) -> list[tuple[str, int]]:
    """Public IPv4 blocks of /16 to /28 (with nesting, as real constituencies have) and some IPv6."""
    rows: list[tuple[str, int]] = []
    while len(rows) < NETWORKS * 9 // 10:
        length = rng.randint(16, 28)
        address = rng.getrandbits(32)
        network = ipaddress.IPv4Network((address, length), strict=False)
        if network.is_global:
            rows.append((str(network), rng.randrange(ORGANISATIONS)))
    while len(rows) < NETWORKS:
        network = ipaddress.IPv6Network(
            ((0x2800 << 112) | (rng.getrandbits(32) << 80), rng.randint(32, 48)), strict=False
        )
        rows.append((str(network), rng.randrange(ORGANISATIONS)))
    return rows


def main() -> None:
    rng = random.Random(2026)
    networks = generated_networks(rng)
    asns = [(rng.randint(1, 64000), rng.randrange(ORGANISATIONS)) for _ in range(ASNS)]

    started = time.perf_counter()
    index = Index.build(networks, asns, [])
    build = time.perf_counter() - started
    print(f"build index: {NETWORKS:,} networks + {ASNS:,} ASNs in {build:.2f} s (target < 2 s)")

    as_ints = np.frombuffer(rng.randbytes(4 * LOOKUPS), dtype=np.uint32)
    started = time.perf_counter()
    owner_ids = index.resolve_ipv4_ints(as_ints)
    elapsed = time.perf_counter() - started
    routed = int((owner_ids != 0).sum())
    print(f"resolve IPv4 (integers): {LOOKUPS / elapsed:,.0f} addresses/s ({routed:,} of {LOOKUPS:,} routed)")

    as_text = [socket.inet_ntoa(a.to_bytes(4, "big")) for a in as_ints.tolist()]
    started = time.perf_counter()
    index.resolve_ips(as_text)
    elapsed = time.perf_counter() - started
    print(f"resolve IPv4 (text, parsed): {LOOKUPS / elapsed:,.0f} addresses/s (target >= 1,000,000/s)")

    v6_text = [
        str(ipaddress.IPv6Address((0x2800 << 112) | (rng.getrandbits(32) << 80) | rng.getrandbits(64)))
        for _ in range(V6_LOOKUPS)
    ]
    started = time.perf_counter()
    index.resolve_ips(v6_text)
    elapsed = time.perf_counter() - started
    print(f"resolve IPv6 (text, parsed): {V6_LOOKUPS / elapsed:,.0f} addresses/s")


if __name__ == "__main__":
    main()
