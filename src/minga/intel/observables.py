"""Observable values, normalised so that equal things compare equal.

Two objects correlate when they share a normalised value: ``198.51.100.7`` and
``198.51.100.7/32``, ``Example.COM.`` and ``example.com``, an upper- and a lower-case SHA-256.
Values come from cyber-observable objects and from the comparisons of indicator patterns.
A value that does not normalise (a malformed address) is simply not indexed: the object is
still stored, it just correlates through nothing.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from minga.directory.constituency import normalise_domain
from minga.intel.choices import ObservableKind as K
from minga.intel.stix import SIMPLE_PATTERN

MAX_VALUE_LENGTH = 2048  # longer values are not indexed (they would not fit a portable index)

HASH_KINDS = {
    "md5": (K.MD5, 32),
    "sha-1": (K.SHA1, 40),
    "sha1": (K.SHA1, 40),
    "sha-256": (K.SHA256, 64),
    "sha256": (K.SHA256, 64),
    "sha-512": (K.SHA512, 128),
    "sha512": (K.SHA512, 128),
    "sha3-256": (K.SHA3_256, 64),
    "sha3-512": (K.SHA3_512, 128),
}
HEX_RE = re.compile(r"^[0-9a-f]+$")


# A name of ASCII letters, digits and hyphens is its own IDNA form once lower-cased: the IDNA
# codec (tens of microseconds a name) is needed only for the others and for A-labels (xn--).
LDH_NAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")


def _domain(text: str) -> str:
    name = text.strip().rstrip(".").lower()
    if len(name) <= 253 and "xn--" not in name and LDH_NAME.match(name):
        return name
    return normalise_domain(text)


def _ip(text: str, version: int) -> str:
    network = ipaddress.ip_network(text.strip(), strict=False)
    if network.version != version:
        raise ValueError(text)
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


def _url(text: str) -> str:
    parts = urlsplit(text.strip())
    if not parts.scheme or not parts.hostname:
        raise ValueError(text)
    host = parts.hostname
    try:
        host = str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        host = _domain(host)
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, parts.fragment))


def _email(text: str) -> str:
    local, at, domain = text.strip().rpartition("@")
    if not at or not local:
        raise ValueError(text)
    return f"{local}@{_domain(domain)}"


def normalise(kind: str, value: Any) -> str | None:
    """The canonical text of ``value`` as an observable of ``kind``, or None if it is not one."""
    if not isinstance(value, str) or not value or len(value) > MAX_VALUE_LENGTH:
        return None
    normalised = _normalise(kind, value)
    # Punycode makes some names longer than they came: such a value is not indexed either.
    return normalised if normalised is None or len(normalised) <= MAX_VALUE_LENGTH else None


@functools.lru_cache(maxsize=65_536)  # feeds repeat their values; IDNA encoding is the costly part
def _normalise(kind: str, value: str) -> str | None:
    try:
        if kind == K.IPV4:
            return _ip(value, 4)
        if kind == K.IPV6:
            return _ip(value, 6)
        if kind == K.DOMAIN:
            return _domain(value)
        if kind == K.URL:
            return _url(value)
        if kind == K.EMAIL:
            return _email(value)
    except ValueError:
        return None
    text = value.strip().lower()
    for _name, (hash_kind, length) in HASH_KINDS.items():
        if hash_kind == kind:
            return text if len(text) == length and HEX_RE.match(text) else None
    return None


def guess(value: str) -> list[tuple[str, str]]:
    """Every (kind, normalised value) a searched text may be, for search by value alone."""
    found: list[tuple[str, str]] = []
    for kind in (K.IPV4, K.IPV6, K.URL, K.EMAIL, K.DOMAIN, K.MD5, K.SHA1, K.SHA256, K.SHA512):
        normalised = normalise(kind, value)
        if normalised is not None:
            found.append((kind, normalised))
    return found


def _hash_kind(algorithm: str) -> str | None:
    entry = HASH_KINDS.get(algorithm.lower())
    return entry[0] if entry else None


# Paths to an address through a reference: where traffic went (or came from), what a domain
# resolved to. MISP's ip-dst|port and domain|ip attributes become such patterns.
ADDRESS_PATHS = {
    ("network-traffic", "src_ref.value"),
    ("network-traffic", "dst_ref.value"),
    ("domain-name", "resolves_to_refs.*.value"),
}


def _from_path(type_name: str, path: list[str], value: str) -> tuple[str, str] | None:
    if type_name in (K.IPV4, K.IPV6, K.DOMAIN, K.URL, K.EMAIL) and path == ["value"]:
        kind = type_name
    elif type_name in ("file", "artifact") and len(path) == 2 and path[0] == "hashes":
        kind = _hash_kind(path[1])  # type: ignore[assignment]
        if kind is None:
            return None
    elif (type_name, ".".join(path)) in ADDRESS_PATHS:
        for kind in (K.IPV4, K.IPV6):
            normalised = normalise(kind, value)
            if normalised is not None:
                return (kind, normalised)
        return None
    else:
        return None
    normalised = normalise(kind, value)
    return (kind, normalised) if normalised is not None else None


def _unquote(literal: str) -> str:
    return literal[1:-1].replace("\\'", "'").replace("\\\\", "\\")


def _split_path(path: str) -> list[str]:
    return [p.strip("'") for p in re.findall(r"'[^']*'|[^.]+", path)]


def from_pattern(pattern: str) -> Iterator[tuple[str, str]]:
    """The values an indicator's STIX pattern compares for equality."""
    simple = SIMPLE_PATTERN.match(pattern)
    if simple is not None:
        type_name, path, literal = simple.groups()
        found = _from_path(type_name, _split_path(path), _unquote(f"'{literal}'"))
        if found:
            yield found
        return
    from stix2patterns.inspector import INDEX_STAR
    from stix2patterns.v21.pattern import Pattern

    try:
        comparisons = Pattern(pattern).inspect().comparisons
    except Exception:  # validated already; a pattern the inspector cannot walk indexes nothing
        return
    for type_name, entries in comparisons.items():
        for path, operator, literal in entries:
            if operator != "=" or not isinstance(literal, str) or not literal.startswith("'"):
                continue
            found = _from_path(
                type_name, ["*" if p is INDEX_STAR else str(p) for p in path], _unquote(literal)
            )
            if found:
                yield found


def extract(obj: dict[str, Any]) -> set[tuple[str, str]]:
    """The normalised observables of one (valid) STIX object."""
    type_name = obj["type"]
    if type_name == "indicator" and obj.get("pattern_type") == "stix":
        return set(from_pattern(obj["pattern"]))
    if type_name in (K.IPV4, K.IPV6, K.DOMAIN, K.URL, K.EMAIL):
        normalised = normalise(type_name, obj.get("value"))
        return {(type_name, normalised)} if normalised is not None else set()
    if type_name in ("file", "artifact"):
        hashes = obj.get("hashes")
        found = set()
        if isinstance(hashes, dict):
            for algorithm, value in hashes.items():
                kind = _hash_kind(algorithm)
                normalised = normalise(kind, value) if kind else None
                if kind and normalised:
                    found.add((kind, normalised))
        return found
    return set()
