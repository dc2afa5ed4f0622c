"""Parsing and normalising constituency entries: IP networks, AS numbers and domains.

Each parser returns the canonical form or raises ``ValueError`` with a message a person can
act on; services turn those into per-line errors.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import idna
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

NETWORK, ASN, DOMAIN = "network", "asn", "domain"

# RFC 6996 / 7300 / 5398 / 6793: numbers that never identify a network on the Internet.
RESERVED_ASNS = [
    (0, 0, gettext_lazy("reserved (RFC 7607)")),
    (23456, 23456, gettext_lazy("AS_TRANS (RFC 6793)")),
    (64496, 64511, gettext_lazy("for documentation (RFC 5398)")),
    (64512, 65534, gettext_lazy("private use (RFC 6996)")),
    (65535, 65535, gettext_lazy("reserved (RFC 7300)")),
    (65536, 65551, gettext_lazy("for documentation (RFC 5398)")),
    (4200000000, 4294967294, gettext_lazy("private use (RFC 6996)")),
    (4294967295, 4294967295, gettext_lazy("reserved (RFC 7300)")),
]
MAX_ASN = 4294967295

# The demo network's constituencies use only numbers and names set aside for documentation and
# testing, which no real network uses: a demo node must never claim someone's real addresses, and
# a demo organisation holds nothing else.
DEMO_NETWORKS = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15", "2001:db8::/32")
]  # RFC 5737 documentation, RFC 2544 benchmarking, RFC 3849 documentation
DEMO_ASNS = [(64496, 64511), (65536, 65551), (4200000000, 4294967294)]  # RFC 5398, RFC 6996
DEMO_DOMAIN_SUFFIX = ".example"  # RFC 2606


@dataclass(frozen=True)
class Entry:
    kind: str
    value: str  # canonical text: "192.0.2.0/24", "64500", "example.org"


def parse_network(text: str, *, demo: bool = False) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            loose = ipaddress.ip_network(text.strip(), strict=False)
            raise ValueError(
                _("%(text)s has host bits set; did you mean %(network)s?") % {"text": text, "network": loose}
            ) from exc
        raise ValueError(_("%(text)s is not an IP network in CIDR notation.") % {"text": text}) from exc
    if demo:
        if not any(network.version == d.version and network.subnet_of(d) for d in DEMO_NETWORKS):  # type: ignore[arg-type]
            raise ValueError(
                _("%(network)s is not a documentation range; demo organisations hold only those.")
                % {"network": network}
            )
        return network
    if not network.is_global:
        raise ValueError(
            _("%(network)s is a private, reserved or special-purpose range.") % {"network": network}
        )
    return network


def parse_asn(text: str, *, demo: bool = False) -> int:
    raw = text.strip()
    digits = raw[2:] if raw[:2].upper() == "AS" else raw
    if not digits.isdigit() or int(digits) > MAX_ASN:
        raise ValueError(_("%(text)s is not an AS number (AS1 to AS4294967295).") % {"text": raw})
    number = int(digits)
    if demo:
        if not any(low <= number <= high for low, high in DEMO_ASNS):
            raise ValueError(
                _("AS%(number)d is not for documentation or private use; demo organisations hold only those.")
                % {"number": number}
            )
        return number
    for low, high, why in RESERVED_ASNS:
        if low <= number <= high:
            raise ValueError(_("AS%(number)d is %(why)s.") % {"number": number, "why": why})
    return number


def normalise_domain(text: str) -> str:
    """Lower-case ASCII (IDNA 2008, UTS 46) without a trailing dot; covers its subdomains."""
    raw = text.strip().rstrip(".")
    try:
        ascii_name = idna.encode(raw, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(
            _("%(text)s is not a valid domain name: %(error)s") % {"text": raw, "error": exc}
        ) from exc
    if "." not in ascii_name:
        raise ValueError(_("%(text)s is a top-level domain; name a registered domain.") % {"text": raw})
    return ascii_name.lower()


def classify(text: str, *, demo: bool = False) -> Entry:
    """One line of a constituency list: a network, an AS number or a domain. ``demo``: the line
    is for a demo organisation, which holds only documentation and private-use values."""
    raw = text.strip()
    if not raw:
        raise ValueError(_("The line is empty."))
    if "/" in raw or ":" in raw or (raw.replace(".", "").isdigit() and raw.count(".") == 3):
        network = parse_network(raw if "/" in raw else f"{raw}/{32 if '.' in raw else 128}", demo=demo)
        return Entry(NETWORK, str(network))
    if raw.isdigit() or (raw[:2].upper() == "AS" and raw[2:].isdigit()):
        return Entry(ASN, str(parse_asn(raw, demo=demo)))
    domain = normalise_domain(raw)
    if demo and not domain.endswith(DEMO_DOMAIN_SUFFIX):
        raise ValueError(
            _("%(domain)s is not under .example; demo organisations hold only such names.")
            % {"domain": domain}
        )
    return Entry(DOMAIN, domain)
