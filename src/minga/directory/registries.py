"""Seeding constituencies from the registries' own data files.

Two formats, as the registries publish them and the operator downloads them:

* **RIR statistics, delegated-extended** (LACNIC, ARIN, RIPE NCC, APNIC, AFRINIC):
  ``registry|cc|type|start|value|date|status[|opaque-id[|extensions]]``, one delegation a line.
* **RPSL dumps** (``inetnum``, ``inet6num``, ``aut-num`` objects, with their abuse contacts
  found through ``abuse-mailbox``, ``abuse-c``, ``org`` or ``mnt-irt``).

Files are read line by line (``.gz`` transparently), so a multi-gigabyte dump needs little
memory. A bad record never aborts the load: it becomes a :class:`Problem` naming its line and
field, and the rest goes on. The resources of participating member states then become
:class:`~minga.directory.models.ConstituencyProposal` rows, each with a proposed owner, for a
coordinator to accept or reject (``services.decide_proposals``).
"""

from __future__ import annotations

import gzip
import ipaddress
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from minga.core import audit
from minga.core.demo import DEMO_PREFIX
from minga.core.models import Organisation, User
from minga.core.services import is_node_admin
from minga.directory.choices import OrganisationKind, ProposalBasis, ProposalStatus, RegistryFormat
from minga.directory.constituency import ASN, MAX_ASN, NETWORK, parse_asn, parse_network
from minga.directory.models import (
    ConstituencyASN,
    ConstituencyDomain,
    ConstituencyGeneration,
    ConstituencyNetwork,
    ConstituencyProposal,
    MemberState,
    OrganisationProfile,
    PointOfContact,
)

DELEGATED, RPSL = RegistryFormat.DELEGATED.value, RegistryFormat.RPSL.value
FORMATS = (DELEGATED, RPSL)

MAX_PROBLEMS_KEPT = 1000  # the rest are counted: a broken 4 GB file must not fill the memory
MAX_ASN_RUN = 65_536  # one line delegating more AS numbers than this is a typo, not a delegation
BATCH = 1000
# Uploads through the UI: the request body is capped by MINGA_MAX_REQUEST_BYTES; a compressed
# upload is also capped once decompressed, so a small gzip bomb cannot keep a web process busy.
MAX_UPLOAD_TEXT_CHARS = 64 * 1024 * 1024

# Why resources were passed over: stable codes (audited) with labels for people.
SKIP_REASONS = {
    "comment": gettext_lazy("comment lines"),
    "header": gettext_lazy("version and summary lines"),
    "not_delegated": gettext_lazy("not delegated (available or reserved)"),
    "other_object": gettext_lazy("RPSL objects of other classes"),
    "not_member": gettext_lazy("country is not a participating member state"),
    "no_country": gettext_lazy("no country given"),
    "duplicate": gettext_lazy("repeated in the file"),
    "in_constituency": gettext_lazy("already in the owner's constituency"),
    "already_proposed": gettext_lazy("already proposed by an earlier load"),
}

# Shared mailbox providers: a contact at one of them says nothing about who runs a network.
FREEMAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "yahoo.com",
        "yahoo.com.br",
        "yahoo.com.mx",
        "yahoo.com.ar",
        "icloud.com",
        "aol.com",
        "protonmail.com",
        "proton.me",
        "uol.com.br",
        "bol.com.br",
        "terra.com.br",
    }
)


# --- what a pass reads -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resource:
    """One network (canonical CIDR) or AS number (digits) a registry says was delegated."""

    kind: str  # constituency.NETWORK or constituency.ASN
    value: str
    country: str  # ISO 3166 alpha-2, upper case; "" when the record names none
    registry: str  # lacnic, arin, ripe, ...
    holder: str
    abuse_email: str
    line: int
    file: str = ""


@dataclass(frozen=True)
class Problem:
    """A record that could not be read, or a resource that may not be in a constituency."""

    line: int
    field: str
    reason: str
    file: str = ""

    def __str__(self) -> str:
        values = {"file": self.file, "line": self.line, "field": self.field, "reason": self.reason}
        if self.file:
            return _("%(file)s, line %(line)d, %(field)s: %(reason)s") % values
        return _("line %(line)d, %(field)s: %(reason)s") % values


@dataclass
class Report:
    """What a load read: counts, what was passed over and why, and the first problems."""

    lines: int = 0
    records: int = 0  # delegation lines or RPSL objects of the three classes
    resources: int = 0  # networks and AS numbers they hold
    skipped: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    proposed: int = 0
    by_basis: Counter[str] = field(default_factory=Counter)

    def problem(self, line: int, field_name: str, reason: str, file: str = "") -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(Problem(line, field_name, reason, file))

    def skipped_labels(self) -> list[tuple[str, int]]:
        """(label, count) of each reason, for people."""
        return [(str(SKIP_REASONS.get(code, code)), count) for code, count in self.skipped.most_common()]

    def for_display(self, problems: int = 200) -> dict[str, Any]:
        """The counts, the reasons in words and the first problems: plain values (JSON) that a
        page can show after a redirect."""
        return {
            "lines": self.lines,
            "records": self.records,
            "resources": self.resources,
            "proposed": self.proposed,
            "skipped": self.skipped_labels(),
            "problems": [str(p) for p in self.problems[:problems]],
            "problem_count": self.problem_count,
        }

    def summary(self) -> dict[str, Any]:
        """The counts, with stable codes: the audit entry's details."""
        return {
            "lines": self.lines,
            "records": self.records,
            "resources": self.resources,
            "proposed": self.proposed,
            "by_basis": dict(self.by_basis),
            "skipped": dict(self.skipped),
            "problems": self.problem_count,
        }


class TooLarge(ValueError):
    """An upload that is larger, once decompressed, than the UI accepts."""


def open_lines(path: str | Path, max_chars: int | None = None) -> Iterator[str]:
    """The lines of a text file, gzip-compressed or not (told by its first bytes, not its
    name). Undecodable bytes become U+FFFD rather than an exception in the middle of a dump."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    opener: Any = gzip.open if compressed else open
    seen = 0
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if max_chars is not None:
                seen += len(line)
                if seen > max_chars:
                    raise TooLarge(
                        _("The file holds more than %(size)d MB of text; load it with the command line.")
                        % {"size": max_chars // (1024 * 1024)}
                    )
            # PostgreSQL text cannot hold NUL: a stray one must not fail the write at the end.
            yield line.replace("\x00", "") if "\x00" in line else line


def _country(text: str) -> str | None:
    code = text.strip().upper()
    return code if len(code) == 2 and code.isascii() and code.isalpha() else None


def _number(text: str) -> int | None:
    # ASCII digits only, and not so many that int() refuses them ("²" is a digit to str.isdigit).
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 20 else None


def _networks(first: ipaddress.IPv4Address, last: ipaddress.IPv4Address) -> list[str]:
    return [str(n) for n in ipaddress.summarize_address_range(first, last)]


# --- RIR statistics exchange format (delegated-extended) -----------------------------------------

_VERSION = re.compile(r"^\d+(\.\d+)*$")
DELEGATED_STATUSES = frozenset({"allocated", "assigned"})
UNDELEGATED_STATUSES = frozenset({"available", "reserved"})


def parse_delegated(
    paths: Sequence[str | Path], report: Report, *, max_chars: int | None = None
) -> Iterator[Resource]:
    """The networks and AS numbers of RIR statistics files. IPv4 ``value`` is an address count,
    not always a power of two (split into CIDRs); IPv6 ``value`` is a prefix length; ``asn``
    ``value`` is a count of consecutive numbers. Only allocated and assigned records delegate."""
    named = len(paths) > 1
    for path in paths:
        file = Path(path).name if named else ""
        for number, raw in enumerate(open_lines(path, max_chars), start=1):
            report.lines += 1
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                report.skipped["comment"] += 1
                continue
            fields = [f.strip() for f in line.split("|")]
            if _VERSION.match(fields[0]) or (len(fields) >= 6 and fields[5] == "summary"):
                report.skipped["header"] += 1
                continue
            yield from _delegation(fields, number, file, report)


def _delegation(fields: list[str], number: int, file: str, report: Report) -> Iterator[Resource]:
    if len(fields) < 7:
        report.problem(
            number,
            "record",
            _("expected registry|cc|type|start|value|date|status, found %(n)d fields") % {"n": len(fields)},
            file,
        )
        return
    registry, cc, kind, start, value, _date, status = fields[:7]
    report.records += 1
    status = status.lower()
    if status in UNDELEGATED_STATUSES:
        report.skipped["not_delegated"] += 1
        return
    if status not in DELEGATED_STATUSES:
        report.problem(number, "status", _("unknown status %(status)r") % {"status": status[:40]}, file)
        return
    country = _country(cc)
    if country is None:
        report.problem(number, "cc", _("%(cc)r is not a two-letter country code") % {"cc": cc[:40]}, file)
        return
    count = _number(value)
    if count is None:
        report.problem(number, "value", _("%(value)r is not a number") % {"value": value[:40]}, file)
        return
    holder = fields[7][:200] if len(fields) > 7 else ""
    try:
        values = _delegated_values(kind, start, count)
    except ValueError as exc:
        report.problem(number, exc.args[1] if len(exc.args) > 1 else "start", str(exc.args[0]), file)
        return
    resource_kind = ASN if kind == "asn" else NETWORK
    registry = registry.lower()[:40]
    for text in values:
        report.resources += 1
        yield Resource(resource_kind, text, country, registry, holder, "", number, file)


def _delegated_values(kind: str, start: str, count: int) -> list[str]:
    """The CIDRs or AS numbers of one record; ``ValueError(message, field)`` when it is wrong."""
    if kind == "ipv4":
        try:
            first = ipaddress.IPv4Address(start)
        except ValueError:
            raise ValueError(_("%(start)r is not an IPv4 address") % {"start": start[:60]}, "start") from None
        if count < 1 or int(first) + count - 1 > 2**32 - 1:
            raise ValueError(
                _("%(count)d addresses from %(start)s run past 255.255.255.255 or are none")
                % {"count": count, "start": first},
                "value",
            )
        return _networks(first, first + (count - 1))
    if kind == "ipv6":
        if count > 128:
            raise ValueError(_("%(count)d is not an IPv6 prefix length") % {"count": count}, "value")
        try:
            network = ipaddress.IPv6Network(f"{start}/{count}", strict=True)
        except ValueError as exc:
            raise ValueError(
                _("%(start)s/%(count)d is not an IPv6 network: %(error)s")
                % {"start": start[:60], "count": count, "error": exc},
                "start",
            ) from None
        return [str(network)]
    if kind == "asn":
        first_asn = _number(start)
        if first_asn is None:
            raise ValueError(_("%(start)r is not an AS number") % {"start": start[:40]}, "start")
        if count < 1 or count > MAX_ASN_RUN or first_asn + count - 1 > MAX_ASN:
            raise ValueError(
                _("%(count)d AS numbers from AS%(start)d is not a plausible delegation")
                % {"count": count, "start": first_asn},
                "value",
            )
        return [str(n) for n in range(first_asn, first_asn + count)]
    raise ValueError(_("unknown type %(type)r (ipv4, ipv6 or asn)") % {"type": kind[:40]}, "type")


# --- RPSL dumps ----------------------------------------------------------------------------------

RESOURCE_CLASSES = ("inetnum", "inet6num", "aut-num")
CONTACT_CLASSES = ("role", "irt", "person", "organisation")
# Only these attributes are kept while an object is read: the rest (remarks, descr, ...) cost
# nothing but the time to skip them.
KEPT = frozenset(
    {
        *RESOURCE_CLASSES,
        *CONTACT_CLASSES,
        "country",
        "netname",
        "as-name",
        "org",
        "abuse-mailbox",
        "abuse-c",
        "mnt-irt",
        "nic-hdl",
        "source",
    }
)
_ATTRIBUTE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]*):(.*)$")
MAX_OBJECT_LINES = 10_000


@dataclass
class _Object:
    line: int
    cls: str
    attributes: dict[str, list[str]]

    def first(self, name: str) -> str:
        values = self.attributes.get(name)
        return values[0] if values else ""


def _rpsl_objects(
    path: str | Path, report: Report | None, file: str, max_chars: int | None
) -> Iterator[_Object]:
    """The objects of one dump, with the attributes in ``KEPT``; comments and end-of-line
    ``#`` remarks removed, continuation lines joined. ``report`` (the second pass only) counts
    lines and notes malformed ones."""
    current: _Object | None = None
    attribute = ""  # the attribute a continuation line continues, kept or not
    size = 0
    for number, raw in enumerate(open_lines(path, max_chars), start=1):
        if report is not None:
            report.lines += 1
        line = raw.rstrip("\r\n")
        if not line.strip():
            if current is not None:
                yield current
            current, attribute = None, ""
            continue
        if line[0] in "%#":
            continue
        if line[0] in " \t+":
            if current is None:
                if report is not None:
                    report.problem(number, "continuation", _("a continuation line outside any object"), file)
                continue
            if attribute in current.attributes:
                values = current.attributes[attribute]
                values[-1] = f"{values[-1]} {_value(line[1:])}".strip()
            continue
        match = _ATTRIBUTE.match(line)
        if match is None:
            if report is not None:
                report.problem(
                    number,
                    "attribute",
                    _("%(text)r is not an 'attribute: value' line") % {"text": line[:60]},
                    file,
                )
            continue
        attribute = match.group(1).lower()
        if current is None:
            current, size = _Object(number, attribute, {}), 0
        size += 1
        if size > MAX_OBJECT_LINES:
            continue
        if attribute in KEPT:
            current.attributes.setdefault(attribute, []).append(_value(match.group(2)))
    if current is not None:
        yield current


def _value(text: str) -> str:
    # RPSL allows "# remarks" at the end of a value; no attribute read here holds a "#".
    return text.split("#", 1)[0].strip()


@dataclass
class _Contacts:
    """What the first pass remembers: small next to the dump (handles and mailboxes only)."""

    mailbox: dict[str, str] = field(default_factory=dict)  # nic-hdl or irt name -> abuse-mailbox
    org_abuse_c: dict[str, str] = field(default_factory=dict)  # organisation -> its abuse-c
    org_mailbox: dict[str, str] = field(default_factory=dict)  # organisation -> its abuse-mailbox
    org_country: dict[str, str] = field(default_factory=dict)

    def remember(self, obj: _Object) -> None:
        mailbox = obj.first("abuse-mailbox")
        if obj.cls == "organisation":
            handle = obj.first("organisation").upper()
            if mailbox:
                self.org_mailbox[handle] = mailbox
            if obj.first("abuse-c"):
                self.org_abuse_c[handle] = obj.first("abuse-c").upper()
            country = _country(obj.first("country"))
            if country:
                self.org_country[handle] = country
        elif mailbox:
            for name in ("nic-hdl", obj.cls):  # an irt is named by its own key
                if obj.first(name):
                    self.mailbox[obj.first(name).upper()] = mailbox

    def abuse_for(self, obj: _Object) -> str:
        """The object's own abuse-mailbox, else its abuse-c's, else its organisation's, else its
        incident response team's."""
        if obj.first("abuse-mailbox"):
            return obj.first("abuse-mailbox")
        for handle in obj.attributes.get("abuse-c", []):
            if handle.upper() in self.mailbox:
                return self.mailbox[handle.upper()]
        org = obj.first("org").upper()
        if org:
            if org in self.org_mailbox:
                return self.org_mailbox[org]
            if self.org_abuse_c.get(org, "") in self.mailbox:
                return self.mailbox[self.org_abuse_c[org]]
        for irt in obj.attributes.get("mnt-irt", []):
            if irt.upper() in self.mailbox:
                return self.mailbox[irt.upper()]
        return ""


def parse_rpsl(
    paths: Sequence[str | Path], report: Report, *, max_chars: int | None = None
) -> Iterator[Resource]:
    """The networks and AS numbers of RPSL dumps. Two passes over the files: the first keeps
    only contact handles and their abuse mailboxes (a role may come after the inetnum that
    names it, or sit in another file of a split dump), the second reads the resources."""
    named = len(paths) > 1
    contacts = _Contacts()
    for path in paths:
        for obj in _rpsl_objects(path, None, "", max_chars):
            if obj.cls in CONTACT_CLASSES:
                contacts.remember(obj)
    for path in paths:
        file = Path(path).name if named else ""
        for obj in _rpsl_objects(path, report, file, max_chars):
            if obj.cls not in RESOURCE_CLASSES:
                report.skipped["other_object"] += 1
                continue
            report.records += 1
            yield from _rpsl_resources(obj, contacts, report, file)


def _rpsl_resources(obj: _Object, contacts: _Contacts, report: Report, file: str) -> Iterator[Resource]:
    key = obj.first(obj.cls)
    try:
        if obj.cls == "inetnum":
            values, kind = _inetnum(key), NETWORK
        elif obj.cls == "inet6num":
            values, kind = [str(ipaddress.IPv6Network(key, strict=True))], NETWORK
        else:
            number = _number(key.upper().removeprefix("AS"))
            if number is None or number > MAX_ASN:
                raise ValueError(_("%(text)r is not an AS number") % {"text": key[:40]})
            values, kind = [str(number)], ASN
    except ValueError as exc:
        report.problem(obj.line, obj.cls, str(exc), file)
        return
    org = obj.first("org").upper()
    country = obj.first("country")
    code = _country(country) if country else contacts.org_country.get(org, "")
    if code is None:
        report.problem(
            obj.line, "country", _("%(cc)r is not a two-letter country code") % {"cc": country[:40]}, file
        )
        return
    holder = (org or obj.first("netname") or obj.first("as-name"))[:200]
    abuse = contacts.abuse_for(obj)[:254]
    registry = (obj.first("source").lower() or "rpsl")[:40]
    for value in values:
        report.resources += 1
        yield Resource(kind, value, code, registry, holder, abuse, obj.line, file)


def _inetnum(text: str) -> list[str]:
    if "/" in text:  # some registries write a prefix rather than a range
        return [str(ipaddress.IPv4Network(text, strict=True))]
    parts = [p.strip() for p in text.split("-")]
    if len(parts) != 2:
        raise ValueError(_("%(text)r is not a range 'first - last'") % {"text": text[:80]})
    try:
        first, last = ipaddress.IPv4Address(parts[0]), ipaddress.IPv4Address(parts[1])
    except ValueError as exc:
        raise ValueError(
            _("%(text)r is not a range of IPv4 addresses: %(error)s") % {"text": text[:80], "error": exc}
        ) from None
    if first > last:
        raise ValueError(
            _("the range %(text)s is reversed (its first address is after its last)") % {"text": text[:80]}
        )
    return _networks(first, last)


def parse(
    paths: Sequence[str | Path], fmt: str, report: Report, *, max_chars: int | None = None
) -> Iterator[Resource]:
    if fmt == DELEGATED:
        return parse_delegated(paths, report, max_chars=max_chars)
    if fmt == RPSL:
        return parse_rpsl(paths, report, max_chars=max_chars)
    raise ValidationError({"format": _("Unknown format: use delegated or rpsl.")})


# --- proposing owners ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Owner:
    organisation_id: int | None
    basis: str
    matched_domain: str = ""


class OwnerFinder:
    """Who should answer for a resource: (a) the organisation whose constituency domains or
    contacts' e-mail domains hold the abuse mailbox's domain, (b) else the state's national
    CSIRT when it has exactly one, (c) else nobody (the coordinator assigns)."""

    def __init__(self) -> None:
        self.participating = set(
            MemberState.objects.filter(participating=True).values_list("code", flat=True)
        )
        # Demo organisations hold documentation ranges only (constituency.classify): never owners.
        real = ~Q(organisation__short_name__startswith=DEMO_PREFIX)
        csirts: dict[str, list[int]] = {}
        for code, org_id in OrganisationProfile.objects.filter(
            real, kind=OrganisationKind.NATIONAL_CSIRT, state__isnull=False
        ).values_list("state__code", "organisation_id"):
            csirts.setdefault(code, []).append(org_id)
        self.national_csirt = {code: ids[0] for code, ids in csirts.items() if len(ids) == 1}
        self.domains: dict[str, set[int]] = {}
        for domain, org_id in ConstituencyDomain.objects.filter(real).values_list(
            "domain", "organisation_id"
        ):
            self.domains.setdefault(domain, set()).add(org_id)
        for email, org_id in PointOfContact.objects.filter(real).values_list("email", "organisation_id"):
            domain = email.rpartition("@")[2].strip().lower().rstrip(".")
            if domain and domain not in FREEMAIL:
                self.domains.setdefault(domain, set()).add(org_id)
        self._cache: dict[tuple[str, str], _Owner] = {}

    def owner(self, resource: Resource) -> _Owner:
        key = (resource.abuse_email.lower(), resource.country)
        if key not in self._cache:
            self._cache[key] = self._find(*key)
        return self._cache[key]

    def _find(self, email: str, country: str) -> _Owner:
        domain = email.rpartition("@")[2].strip().rstrip(".") if "@" in email else ""
        labels = domain.split(".") if domain else []
        # Most specific first: abuse@noc.example.net.br is covered by example.net.br. A domain
        # shared by several organisations names none of them.
        for i in range(len(labels) - 1):
            suffix = ".".join(labels[i:])
            owners = self.domains.get(suffix)
            if owners:
                if len(owners) == 1:
                    return _Owner(next(iter(owners)), ProposalBasis.ABUSE_DOMAIN, suffix)
                break
        if country in self.national_csirt:
            return _Owner(self.national_csirt[country], ProposalBasis.NATIONAL_CSIRT)
        return _Owner(None, ProposalBasis.NO_OWNER)


def _field(resource: Resource, fmt: str) -> str:
    """The field a refused resource came from, as the file names it."""
    if fmt == DELEGATED:
        return "start"
    if resource.kind == ASN:
        return "aut-num"
    return "inet6num" if ":" in resource.value else "inetnum"


def _checked(resource: Resource) -> str:
    """The canonical value; ``ValueError`` for private, reserved and special-purpose ranges and
    AS numbers, which belong to no one's constituency."""
    if resource.kind == NETWORK:
        return str(parse_network(resource.value))
    return str(parse_asn(resource.value))


# (kind, canonical value, proposed organisation): a resource is proposed once per owner.
Key = tuple[str, str, int | None]


@dataclass(frozen=True, slots=True)
class _Candidate:
    # Plain values until written: a model instance per resource would cost ten times the memory.
    country: str
    registry: str
    holder: str
    abuse_email: str
    basis: str
    matched_domain: str


@transaction.atomic
def _store(candidates: dict[Key, _Candidate], fmt: str, report: Report) -> None:
    """Write the new proposals: those not yet in their owner's constituency (or, without an
    owner, in anyone's) and not proposed by an earlier load."""
    # Serialises with constituency changes and other loads: both bump or lock this row.
    ConstituencyGeneration.objects.select_for_update().filter(pk=1).first()
    created_at = connection.ops.adapt_datetimefield_value(timezone.now())
    keys = list(candidates)
    for start in range(0, len(keys), BATCH):
        batch = keys[start : start + BATCH]
        nets = [v for k, v, _o in batch if k == NETWORK]
        asns = [int(v) for k, v, _o in batch if k == ASN]
        present: set[tuple[str, str, int | None]] = set()
        for org_id, cidr in ConstituencyNetwork.objects.filter(cidr__in=nets).values_list(
            "organisation_id", "cidr"
        ):
            present.update({(NETWORK, cidr, org_id), (NETWORK, cidr, None)})
        for org_id, asn in ConstituencyASN.objects.filter(asn__in=asns).values_list("organisation_id", "asn"):
            present.update({(ASN, str(asn), org_id), (ASN, str(asn), None)})
        proposed = set(
            ConstituencyProposal.objects.filter(
                Q(kind=NETWORK, value__in=nets) | Q(kind=ASN, value__in=[str(a) for a in asns])
            ).values_list("kind", "value", "organisation_id")
        )
        rows: list[tuple[Any, ...]] = []
        for key in batch:
            if key in present:
                report.skipped["in_constituency"] += 1
            elif key in proposed:
                report.skipped["already_proposed"] += 1
            else:
                kind, value, owner_id = key
                c = candidates[key]
                row = (kind, value, c.country, c.registry, fmt, c.holder, c.abuse_email, owner_id)
                rows.append((*row, c.basis, c.matched_domain, ProposalStatus.PENDING.value, created_at))
                report.by_basis[c.basis] += 1
        _insert(rows)
        report.proposed += len(rows)


_INSERTED = (
    "kind",
    "value",
    "country",
    "source",
    "source_format",
    "holder",
    "abuse_email",
    "organisation",
    "basis",
    "matched_domain",
    "status",
    "created_at",
)


def _insert(rows: list[tuple[Any, ...]]) -> None:
    """One prepared INSERT run over the batch. bulk_create prepares every field of every row in
    Python and, on SQLite, splits a batch into statements of 999 parameters: five times slower
    for a load of 100,000 proposals. The values here are plain strings and numbers already."""
    if not rows:
        return
    meta = ConstituencyProposal._meta
    quote = connection.ops.quote_name
    column = {field.name: str(field.column) for field in meta.concrete_fields}
    columns = ", ".join(quote(column[name]) for name in _INSERTED)
    placeholders = ", ".join(["%s"] * len(_INSERTED))
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608 (names from the model)
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def seed_proposals(
    actor: User | None,
    paths: Sequence[str | Path],
    fmt: str,
    *,
    max_chars: int | None = None,
    names: Sequence[str] | None = None,
) -> Report:
    """Read registry files and propose owners for the networks and AS numbers of participating
    member states. Node admins only (``actor=None``: the operator's command line). Bad records
    are reported, not fatal; resources already in their owner's constituency or proposed by an
    earlier load are skipped, so re-running a load adds nothing. The proposals are written in
    one transaction with one ``constituency_proposal.seed`` audit entry holding the counts.
    ``names`` are how the files are called in that entry (an upload's own name)."""
    if not is_node_admin(actor):
        raise PermissionDenied(_("Only node admins may load registry data."))
    if fmt not in FORMATS:
        raise ValidationError({"format": _("Unknown format: use delegated or rpsl.")})
    report = Report()
    owners = OwnerFinder()
    candidates: dict[Key, _Candidate] = {}
    # The file is read before the transaction opens: a long read must not hold the write lock.
    try:
        for resource in parse(paths, fmt, report, max_chars=max_chars):
            if not resource.country:
                report.skipped["no_country"] += 1
                continue
            if resource.country not in owners.participating:
                report.skipped["not_member"] += 1
                continue
            try:
                value = _checked(resource)
            except ValueError as exc:
                report.problem(resource.line, _field(resource, fmt), str(exc), resource.file)
                continue
            owner = owners.owner(resource)
            key = (resource.kind, value, owner.organisation_id)
            if key in candidates:
                report.skipped["duplicate"] += 1
                continue
            candidates[key] = _Candidate(
                resource.country,
                resource.registry,
                resource.holder,
                resource.abuse_email,
                owner.basis,
                owner.matched_domain,
            )
    except TooLarge as exc:
        raise ValidationError({"file": str(exc)}) from exc
    except (OSError, EOFError, zlib.error) as exc:  # a corrupt or truncated .gz
        raise ValidationError(
            {"file": _("The file could not be read: %(error)s") % {"error": str(exc)[:200]}}
        ) from exc
    with transaction.atomic():
        _store(candidates, fmt, report)
        audit.record(
            "constituency_proposal.seed",
            actor=actor,
            details={
                "files": [str(n) for n in (names or [Path(p).name for p in paths])][:20],
                "format": fmt,
                **report.summary(),
            },
        )
    return report


# --- reading proposals ---------------------------------------------------------------------------


def proposals_for(
    user: Any,
    *,
    status: str = ProposalStatus.PENDING,
    state: str = "",
    organisation: Organisation | None = None,
    unassigned: bool = False,
) -> QuerySet[ConstituencyProposal]:
    """The proposals a coordinator reviews (node admins only: they are the network's map of
    who answers for what, before anyone confirmed it)."""
    if not getattr(user, "is_node_admin", False):
        raise PermissionDenied(_("Only node admins may see proposals."))
    proposals = ConstituencyProposal.objects.select_related("organisation", "accepted_for")
    if status:
        proposals = proposals.filter(status=status)
    if state:
        proposals = proposals.filter(country=state.upper())
    if organisation is not None:
        proposals = proposals.filter(organisation=organisation)
    elif unassigned:
        proposals = proposals.filter(organisation__isnull=True)
    return proposals


def pending_owners() -> QuerySet[Organisation]:
    """The organisations that pending proposals name, each with ``pending`` (how many): the
    review page's filter."""
    return (
        Organisation.objects.annotate(
            pending=Count(
                "constituency_proposals", filter=Q(constituency_proposals__status=ProposalStatus.PENDING)
            )
        )
        .filter(pending__gt=0)
        .order_by("name")
    )


def describe(report: Report) -> tuple[list[str], list[str]]:
    """The report in lines a person reads: what was read and passed over, then what was
    proposed (the command line prints the problems between the two)."""
    read = [
        _("Read %(lines)d lines: %(records)d records holding %(resources)d networks and AS numbers.")
        % {"lines": report.lines, "records": report.records, "resources": report.resources}
    ]
    read += [
        _("Skipped %(count)d: %(reason)s.") % {"count": count, "reason": label}
        for label, count in report.skipped_labels()
    ]
    basis = dict(ProposalBasis.choices)
    proposed = [_("Proposed %(count)d.") % {"count": report.proposed}]
    proposed += [f"  {basis.get(code, code)}: {count}" for code, count in report.by_basis.most_common()]
    return read, proposed
