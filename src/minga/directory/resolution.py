"""The resolution service: who answers for an IP address, an AS number or a domain.

Networks are flattened into disjoint address intervals, each labelled with the owners of the
most specific network covering it (CIDR blocks either nest or are disjoint, so one sweep with
a stack does it). A batch of IPv4 addresses is then resolved with one vectorised binary search
(numpy); IPv6 uses the same intervals with Python integers. The index lives in memory in each
process and is rebuilt when the constituency generation in the database moves.
"""

from __future__ import annotations

import bisect
import functools
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from minga.directory.constituency import normalise_domain

Owners = tuple[int, ...]  # organisation ids, sorted
NO_OWNER: Owners = ()
_pton4 = functools.partial(socket.inet_pton, socket.AF_INET)


def _flatten(prefixes: list[tuple[int, int, int, int]], top: int) -> tuple[list[int], list[Owners]]:
    """Disjoint intervals from (start, end, prefixlen, organisation) rows: returns the start of
    each interval and its owners (the most specific prefix's organisations)."""
    by_block: dict[tuple[int, int], set[int]] = {}
    for start, end, _length, org in prefixes:
        by_block.setdefault((start, end), set()).add(org)
    blocks = sorted(by_block, key=lambda b: (b[0], -b[1]))  # outer blocks first
    starts: list[int] = [0]
    owners: list[Owners] = [NO_OWNER]
    stack: list[tuple[int, Owners]] = []  # (end, owners) of the open blocks

    def emit(at: int, label: Owners) -> None:
        if starts[-1] == at:
            owners[-1] = label
        elif owners[-1] != label:
            starts.append(at)
            owners.append(label)

    for start, end in blocks:
        while stack and stack[-1][0] < start:  # close blocks that end before this one
            closed_end, _ = stack.pop()
            emit(closed_end + 1, stack[-1][1] if stack else NO_OWNER)
        label = tuple(sorted(by_block[(start, end)]))
        emit(start, label)
        stack.append((end, label))
    while stack:
        closed_end, _ = stack.pop()
        if closed_end < top:
            emit(closed_end + 1, stack[-1][1] if stack else NO_OWNER)
    return starts, owners


@dataclass
class Index:
    generation: str = "(not built)"
    v4_starts: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.uint32))
    v4_owner_ids: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int32))
    v6_starts: list[int] = field(default_factory=lambda: [0])
    v6_owner_ids: list[int] = field(default_factory=lambda: [0])
    owner_sets: list[Owners] = field(default_factory=lambda: [NO_OWNER])
    asns: dict[int, Owners] = field(default_factory=dict)
    domains: dict[str, Owners] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        networks: Iterable[tuple[str, int]],
        asns: Iterable[tuple[int, int]],
        domains: Iterable[tuple[str, int]],
        generation: str = "",
    ) -> Index:
        """From (cidr, organisation id), (asn, organisation id) and (domain, organisation id)."""
        v4: list[tuple[int, int, int, int]] = []
        v6: list[tuple[int, int, int, int]] = []
        # Stored networks are canonical (validated on the way in), so they are parsed with
        # inet_pton rather than ipaddress: ten times faster on a large constituency.
        for cidr, org in networks:
            address, _slash, length_text = cidr.partition("/")
            length = int(length_text)
            if ":" in address:
                start = int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
                v6.append((start, start | ((1 << (128 - length)) - 1), length, org))
            else:
                start = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
                v4.append((start, start | ((1 << (32 - length)) - 1), length, org))
        index = cls(generation=generation)
        owner_ids: dict[Owners, int] = {NO_OWNER: 0}

        def intern(label: Owners) -> int:
            if label not in owner_ids:
                owner_ids[label] = len(index.owner_sets)
                index.owner_sets.append(label)
            return owner_ids[label]

        starts, labels = _flatten(v4, 2**32 - 1)
        index.v4_starts = np.array(starts, dtype=np.uint32)
        index.v4_owner_ids = np.array([intern(label) for label in labels], dtype=np.int32)
        index.v6_starts, v6_labels = _flatten(v6, 2**128 - 1)
        index.v6_owner_ids = [intern(label) for label in v6_labels]
        asn_sets: dict[int, set[int]] = {}
        for asn, org in asns:
            asn_sets.setdefault(int(asn), set()).add(org)
        index.asns = {asn: tuple(sorted(orgs)) for asn, orgs in asn_sets.items()}
        domain_sets: dict[str, set[int]] = {}
        for domain, org in domains:
            domain_sets.setdefault(domain, set()).add(org)
        index.domains = {domain: tuple(sorted(orgs)) for domain, orgs in domain_sets.items()}
        return index

    # --- lookups -----------------------------------------------------------------------------

    def resolve_ipv4_ints(self, addresses: np.ndarray) -> np.ndarray:
        """Owner-set ids (into ``owner_sets``) for an array of IPv4 addresses as integers."""
        positions = np.searchsorted(self.v4_starts, addresses.astype(np.uint32, copy=False), side="right") - 1
        return self.v4_owner_ids[positions]

    def resolve_ips(self, addresses: Sequence[str]) -> list[Owners | None]:
        """Owners per address; ``None`` for text that is not an IP address."""
        results: list[Owners | None] = [NO_OWNER] * len(addresses)
        try:  # the fast path: every address is dotted-quad IPv4
            packed = b"".join(map(_pton4, addresses))
        except (OSError, TypeError):
            packed = b""
        if len(packed) == 4 * len(addresses):
            ids = self.resolve_ipv4_ints(np.frombuffer(packed, dtype=">u4"))
            sets = self.owner_sets
            return [sets[i] for i in ids.tolist()]
        v6_starts, v6_owner_ids, sets = self.v6_starts, self.v6_owner_ids, self.owner_sets
        for i, text in enumerate(addresses):
            text = str(text).strip()
            try:
                if ":" in text:
                    value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
                    results[i] = sets[v6_owner_ids[bisect.bisect_right(v6_starts, value) - 1]]
                else:
                    value = int.from_bytes(_pton4(text), "big")
                    results[i] = sets[int(self.resolve_ipv4_ints(np.array([value]))[0])]
            except (OSError, ValueError):
                results[i] = None
        return results

    def resolve_asns(self, numbers: Sequence[int]) -> list[Owners | None]:
        return [self.asns.get(int(n), NO_OWNER) for n in numbers]

    def resolve_domains(self, names: Sequence[str]) -> list[Owners | None]:
        """A domain is covered by itself and by every parent domain in the constituency; the
        most specific one wins."""
        results: list[Owners | None] = []
        for name in names:
            try:
                labels = normalise_domain(name).split(".")
            except ValueError:
                results.append(None)
                continue
            found = NO_OWNER
            for i in range(len(labels) - 1):
                owners = self.domains.get(".".join(labels[i:]))
                if owners:
                    found = owners
                    break
            results.append(found)
        return results


_lock = threading.Lock()
_current = Index()


def current() -> Index:
    """The index for this process, rebuilt if the constituency changed since it was built."""
    global _current
    from minga.directory.models import (
        ConstituencyASN,
        ConstituencyDomain,
        ConstituencyGeneration,
        ConstituencyNetwork,
    )

    generation = ConstituencyGeneration.objects.values_list("token", flat=True).first() or ""
    if _current.generation == generation:
        return _current
    with _lock:
        if _current.generation != generation:
            _current = Index.build(
                ConstituencyNetwork.objects.values_list("cidr", "organisation_id").iterator(chunk_size=10000),
                ConstituencyASN.objects.values_list("asn", "organisation_id").iterator(chunk_size=10000),
                ConstituencyDomain.objects.values_list("domain", "organisation_id").iterator(
                    chunk_size=10000
                ),
                generation=generation,
            )
    return _current
