"""MISP JSON events in and out, through PyMISP's model (``pymisp.MISPEvent``).

In: a file holding one event (``{"Event": {...}}``), a list of events, or the answer of a MISP
search (``{"response": [...]}``). Events are read one at a time (ijson), so a file of many
events is never held whole; each is loaded into a ``MISPEvent`` and becomes STIX 2.1:

- the event: a ``report`` (id ``report--<event uuid>``, name from ``info``, labels from its
  tags other than TLP) referring to everything made from its attributes;
- an attribute with ``to_ids``: an ``indicator`` (``indicator--<attribute uuid>``) whose STIX
  pattern compares the value (``yara``, ``snort``, ``sigma``: the rule, with that pattern_type);
- another attribute: an ``observed-data`` (``observed-data--<attribute uuid>``) and the
  cyber-observables it saw, with their deterministic ids;
- a ``vulnerability`` attribute: a ``vulnerability`` with its CVE reference.

The attribute types mapped are in ``OBSERVABLES``; attributes of MISP objects are read like the
event's own. Every other type, a value that is not what its type says, a deleted attribute, is
a rejection with the reason, never dropped in silence.

TLP: a ``tlp:`` tag (``clear``/``white``, ``green``, ``amber``, ``amber+strict``, ``red``) on
the event or the attribute sets the TLP 2.0 marking (the stricter of the two wins). Without one,
the importer's TLP applies, except that MISP's distribution "your organisation only" (0) is
never shared more widely than TLP:AMBER+STRICT, nor "sharing group" (4) than TLP:AMBER.

Out: a search's objects as one MISP event (``event_of``): indicators whose patterns compare
values of the mapped kinds, and the cyber-observables of those kinds, become attributes
(``to_ids`` for indicators), each tagged with its TLP; the event carries the strictest TLP.
Objects with no MISP attribute form (reports, relationships, malware…) are counted, not sent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import IO, Any

import ijson
from django.utils.translation import gettext as _

from minga.core.choices import TLP
from minga.intel import convert, observables, stix
from minga.intel.convert import Rejected, Unreadable, pattern_literal

TLP_TAGS: dict[str, str] = {
    "tlp:clear": TLP.CLEAR,
    "tlp:white": TLP.CLEAR,
    "tlp:green": TLP.GREEN,
    "tlp:amber": TLP.AMBER,
    "tlp:amber+strict": TLP.AMBER_STRICT,
    "tlp:red": TLP.RED,
}
TAG_OF_TLP: dict[str, str] = {
    TLP.CLEAR: "tlp:clear",
    TLP.GREEN: "tlp:green",
    TLP.AMBER: "tlp:amber",
    TLP.AMBER_STRICT: "tlp:amber+strict",
    TLP.RED: "tlp:red",
}
ORGANISATION_ONLY = 0  # MISP distribution "your organisation only"
SHARING_GROUP = 4  # MISP distribution to a named sharing group
# The most open TLP a MISP distribution allows when no tlp: tag says more.
DISTRIBUTION_FLOOR = {ORGANISATION_ONLY: TLP.AMBER_STRICT, SHARING_GROUP: TLP.AMBER}
X509_HASHES = {
    "x509-fingerprint-md5": "MD5",
    "x509-fingerprint-sha1": "SHA-1",
    "x509-fingerprint-sha256": "SHA-256",
}
HASHES = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512"}
RULES = ("yara", "snort", "sigma")
CVE_RE = re.compile(r"^CVE-\d{4}-\d{4,}$", re.IGNORECASE)
AS_RE = re.compile(r"^(?:AS)?(\d{1,10})$", re.IGNORECASE)


def _strictest(*levels: str | None) -> str | None:
    found = [level for level in levels if level]
    return max(found, key=stix.TLP_ORDER.index) if found else None


def tlp_of_tags(names: list[str]) -> str | None:
    return _strictest(*(TLP_TAGS.get(name.strip().lower()) for name in names))


# --- attribute values as STIX ------------------------------------------------------------------


class Unmapped(ValueError):
    """An attribute that has no STIX form here, with the reason."""


@dataclass
class Observation:
    pattern: str  # the STIX pattern comparing the value
    scos: list[dict[str, Any]] = field(default_factory=list)


def _bad(kind: str, value: str) -> Unmapped:
    return Unmapped(
        _("%(value)s is not a valid %(type)s value.") % {"value": stix._clip(value), "type": kind}
    )


def _ip(kind: str, value: str) -> Observation:
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise _bad(kind, value) from None
    sco_type = f"ipv{network.version}-addr"
    text = str(network.network_address) if network.num_addresses == 1 else str(network)
    return Observation(f"[{sco_type}:value = {pattern_literal(text)}]", [convert.sco(sco_type, value=text)])


def _checked(kind: str, observable_kind: str, value: str) -> str:
    if observables.normalise(observable_kind, value) is None:
        raise _bad(kind, value)
    return value.strip()


def _hash(kind: str, algorithm: str, value: str) -> str:
    text = value.strip().lower()
    if not stix.HASH_VALUE_RE[algorithm.replace("-", "")].match(text):
        raise _bad(kind, value)
    return text


def _hash_path(algorithm: str) -> str:
    return f"file:hashes.{algorithm}" if "-" not in algorithm else f"file:hashes.'{algorithm}'"


def observe(kind: str, value: str) -> Observation:
    """The STIX pattern and observables of a MISP attribute (type, value); raises ``Unmapped``."""
    if kind in ("ip-src", "ip-dst"):
        return _ip(kind, value)
    if kind in ("domain", "hostname"):
        name = _checked(kind, "domain-name", value).rstrip(".")
        return Observation(
            f"[domain-name:value = {pattern_literal(name)}]", [convert.sco("domain-name", value=name)]
        )
    if kind == "domain|ip":
        name, _sep, address = value.partition("|")
        name = _checked(kind, "domain-name", name).rstrip(".")
        ip = _ip(kind, address)
        domain = convert.sco("domain-name", value=name, resolves_to_refs=[ip.scos[0]["id"]])
        pattern = (
            f"[domain-name:value = {pattern_literal(name)} AND "
            f"domain-name:resolves_to_refs[*].value = {pattern_literal(ip.scos[0]['value'])}]"
        )
        return Observation(pattern, [ip.scos[0], domain])
    if kind == "url":
        url = _checked(kind, "url", value)
        return Observation(f"[url:value = {pattern_literal(url)}]", [convert.sco("url", value=url)])
    if kind in ("email", "email-src", "email-dst", "email-reply-to"):
        address = _checked(kind, "email-addr", value)
        return Observation(
            f"[email-addr:value = {pattern_literal(address)}]", [convert.sco("email-addr", value=address)]
        )
    if kind == "email-subject":
        return Observation(
            f"[email-message:subject = {pattern_literal(value)}]",
            [convert.sco("email-message", is_multipart=False, subject=value)],
        )
    if kind in HASHES:
        algorithm = HASHES[kind]
        digest = _hash(kind, algorithm, value)
        return Observation(
            f"[{_hash_path(algorithm)} = {pattern_literal(digest)}]",
            [convert.sco("file", hashes={algorithm: digest})],
        )
    if kind == "filename":
        return Observation(f"[file:name = {pattern_literal(value)}]", [convert.sco("file", name=value)])
    if kind.startswith("filename|") and kind[9:] in HASHES:
        algorithm = HASHES[kind[9:]]
        name, _sep, digest = value.rpartition("|")
        if not name:
            raise _bad(kind, value)
        digest = _hash(kind, algorithm, digest)
        return Observation(
            f"[file:name = {pattern_literal(name)} AND {_hash_path(algorithm)} = {pattern_literal(digest)}]",
            [convert.sco("file", name=name, hashes={algorithm: digest})],
        )
    if kind in ("ip-src|port", "ip-dst|port"):
        return _endpoint(kind, value)
    if kind == "ssdeep":
        digest = value.strip()
        if not stix.HASH_VALUE_RE["SSDEEP"].match(digest):
            raise _bad(kind, value)
        return Observation(
            f"[file:hashes.SSDEEP = {pattern_literal(digest)}]",
            [convert.sco("file", hashes={"SSDEEP": digest})],
        )
    if kind in X509_HASHES:
        algorithm = X509_HASHES[kind]
        digest = _hash(kind, algorithm, value)
        path = (
            f"x509-certificate:hashes.{algorithm}"
            if "-" not in algorithm
            else f"x509-certificate:hashes.'{algorithm}'"
        )
        return Observation(
            f"[{path} = {pattern_literal(digest)}]",
            [convert.sco("x509-certificate", hashes={algorithm: digest})],
        )
    if kind == "mutex":
        return Observation(f"[mutex:name = {pattern_literal(value)}]", [convert.sco("mutex", name=value)])
    if kind == "AS":
        match = AS_RE.match(value.strip())
        if match is None or int(match.group(1)) > 4_294_967_295:
            raise _bad(kind, value)
        number = int(match.group(1))
        return Observation(
            f"[autonomous-system:number = {number}]", [convert.sco("autonomous-system", number=number)]
        )
    if kind == "mac-address":
        text = value.strip().lower().replace("-", ":")
        if not re.match(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", text):
            raise _bad(kind, value)
        return Observation(
            f"[mac-addr:value = {pattern_literal(text)}]", [convert.sco("mac-addr", value=text)]
        )
    if kind == "regkey":
        return Observation(
            f"[windows-registry-key:key = {pattern_literal(value)}]",
            [convert.sco("windows-registry-key", key=value)],
        )
    raise Unmapped(_("MISP attribute type %(type)s has no STIX 2.1 mapping in Minga.") % {"type": kind})


def _endpoint(kind: str, value: str) -> Observation:
    """``ip-dst|port``, ``ip-src|port``: network traffic to (or from) an address and port."""
    host, _sep, port_text = value.rpartition("|")
    if not host or not re.fullmatch(r"[0-9]{1,5}", port_text.strip()) or int(port_text.strip()) > 65535:
        raise _bad(kind, value)
    port = int(port_text.strip())
    side = "src" if kind.startswith("ip-src") else "dst"
    target = _ip(kind, host).scos[0]
    protocols = [target["type"].split("-")[0]]  # ipv4 or ipv6: all that an address and port tell
    pattern = (
        f"[network-traffic:{side}_ref.type = '{target['type']}' AND "
        f"network-traffic:{side}_ref.value = {pattern_literal(target['value'])} AND "
        f"network-traffic:{side}_port = {port}]"
    )
    traffic = convert.sco(
        "network-traffic", **{f"{side}_ref": target["id"], f"{side}_port": port, "protocols": protocols}
    )
    return Observation(pattern, [target, traffic])


# The attribute types ``observe`` maps (the documentation lists them from here).
OBSERVABLES = (
    "ip-src",
    "ip-dst",
    "domain",
    "hostname",
    "domain|ip",
    "url",
    "email",
    "email-src",
    "email-dst",
    "email-reply-to",
    "email-subject",
    *HASHES,
    "filename",
    *(f"filename|{name}" for name in HASHES),
    "ssdeep",
    *X509_HASHES,
    "ip-src|port",
    "ip-dst|port",
    "mutex",
    "AS",
    "mac-address",
    "regkey",
)


# --- reading events ---------------------------------------------------------------------------


def _first_byte(stream: IO[bytes]) -> bytes:
    start = stream.tell()
    head = stream.read(4096)
    stream.seek(start)
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return stripped[:1]


def _top_keys(stream: IO[bytes]) -> set[str]:
    start = stream.tell()
    keys: set[str] = set()
    try:
        for prefix, event, value in ijson.parse(stream):
            if prefix == "" and event == "map_key":
                keys.add(value)
                if value in ("Event", "response"):
                    break
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError):
        pass
    stream.seek(start)
    return keys


def check_shape(stream: IO[bytes]) -> str:
    """How the file holds its events (``list``, ``event``, ``response``), or ``ValidationError``."""
    from django.core.exceptions import ValidationError

    first = _first_byte(stream)
    if not first:
        raise ValidationError(_("The file is empty."))
    if first == b"[":
        return "list"
    if first != b"{":
        raise ValidationError(_("This is not a MISP event: the file is not a JSON object or list."))
    keys = _top_keys(stream)
    if "response" in keys:
        return "response"
    if "Event" in keys:
        return "event"
    raise ValidationError(
        _(
            'This is not a MISP event: a MISP JSON file holds {"Event": {...}}, a list of them, '
            'or {"response": [...]}.'
        )
    )


def read(stream: IO[bytes], default_tlp: str, shape: str) -> Iterator[tuple[int, Any]]:
    """The STIX 2.1 objects of the MISP events in ``stream`` (its ``shape`` from
    ``check_shape``), as ``(index, object or Rejected)``. The index counts attributes through
    the file."""
    prefix = {"list": "item", "response": "response.item", "event": ""}[shape]
    counter = _Counter()
    number = -1
    try:
        for number, item in enumerate(ijson.items(stream, prefix, use_float=True)):
            yield from _event(item, number, default_tlp, counter)
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError) as exc:
        raise Unreadable(
            _("The file is not valid JSON after event %(number)d: %(error)s")
            % {"number": number + 1, "error": str(exc)[:200]}
        ) from None


@dataclass
class _Counter:
    next: int = 0

    def take(self) -> int:
        self.next += 1
        return self.next - 1


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _when(*candidates: Any) -> datetime:
    for value in candidates:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return datetime.now(UTC)


def _tag_names(entity: Any) -> list[str]:
    return [str(tag.name) for tag in getattr(entity, "tags", []) or [] if getattr(tag, "name", None)]


def _distribution(entity: Any) -> int | None:
    try:
        return int(entity.distribution)
    except (AttributeError, TypeError, ValueError):
        return None


def _level(tags: list[str], distribution: int | None, default_tlp: str) -> str | None:
    level = tlp_of_tags(tags)
    if level is None and distribution in DISTRIBUTION_FLOOR:
        level = _strictest(default_tlp, DISTRIBUTION_FLOOR[distribution])
    return level


def _marked(obj: dict[str, Any], level: str | None) -> dict[str, Any]:
    if level is not None:
        obj["object_marking_refs"] = [stix.TLP2_MARKING_IDS[level]]
    return obj


def _event(item: Any, number: int, default_tlp: str, counter: _Counter) -> Iterator[tuple[int, Any]]:
    from pymisp import MISPEvent
    from pymisp.exceptions import PyMISPError

    data = item.get("Event", item) if isinstance(item, dict) else item
    first = counter.next
    event = MISPEvent()
    try:
        if not isinstance(data, dict):
            raise ValueError(_("it is not a JSON object"))
        event.load({"Event": data})
    except (PyMISPError, TypeError, ValueError, KeyError, AttributeError) as exc:
        counter.take()
        yield (
            first,
            Rejected(
                _("MISP event %(n)d cannot be read: %(error)s") % {"n": number, "error": str(exc)[:200]}
            ),
        )
        return
    event_uuid = _uuid(event.get("uuid")) or str(
        uuid.uuid5(convert.MINGA_NAMESPACE, f"misp-event|{event.info}")
    )
    tags = _tag_names(event)
    event_level = _level(tags, _distribution(event), default_tlp)
    event_time = _when(event.get("timestamp"), event.get("date"))
    refs: list[str] = []
    attributes: list[tuple[Any, Any]] = [(None, a) for a in event.attributes]
    for misp_object in event.objects:
        attributes += [(misp_object, a) for a in misp_object.attributes]
    for misp_object, attribute in attributes:
        index = counter.take()
        made = _attribute(attribute, misp_object, event_level, event_time, default_tlp)
        if isinstance(made, Rejected):
            yield index, made
            continue
        for obj in made:
            refs.append(obj["id"])
            yield index, obj
    report_id = f"report--{event_uuid}"
    if not refs:
        yield (
            first,
            Rejected(
                _("MISP event %(uuid)s has no attribute that Minga could map: no report is made of it.")
                % {"uuid": event_uuid},
                report_id,
            ),
        )
        return
    published = _when(event.get("publish_timestamp"), event.get("date"), event_time)
    report: dict[str, Any] = {
        "type": "report",
        "spec_version": "2.1",
        "id": report_id,
        "created": convert.timestamp(event_time),
        "modified": convert.timestamp(event_time),
        "name": str(event.info or event_uuid)[:1000],
        "published": convert.timestamp(published),
        "report_types": ["threat-report"],
        "object_refs": list(dict.fromkeys(refs)),
        "external_references": [{"source_name": "misp", "external_id": event_uuid}],
    }
    labels = [t for t in tags if t.strip().lower() not in TLP_TAGS]
    if labels:
        report["labels"] = labels
    yield first, _marked(report, event_level)


def _attribute(
    attribute: Any, misp_object: Any, event_level: str | None, event_time: datetime, default_tlp: str
) -> list[dict[str, Any]] | Rejected:
    kind = str(attribute.get("type") or "")
    value = attribute.get("value")
    attribute_uuid = _uuid(attribute.get("uuid")) or str(uuid.uuid4())
    where = _("attribute %(uuid)s (%(type)s)") % {"uuid": attribute_uuid, "type": kind}
    if misp_object is not None:
        where = _("attribute %(uuid)s (%(type)s) of object %(object)s") % {
            "uuid": attribute_uuid,
            "type": kind,
            "object": misp_object.get("name"),
        }
    if attribute.get("deleted") in (True, 1, "1", "true"):
        return Rejected(_("%(where)s: deleted in MISP.") % {"where": where})
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
        return Rejected(_("%(where)s: no value.") % {"where": where})
    value = str(value)
    level = _strictest(event_level, _level(_tag_names(attribute), _distribution(attribute), default_tlp))
    when = _when(attribute.get("timestamp"), event_time)
    first_seen = _when(attribute.get("first_seen"), when)
    last_seen = attribute.get("last_seen")
    common: dict[str, Any] = {"spec_version": "2.1", "created": convert.timestamp(when)}
    common["modified"] = common["created"]
    extras: dict[str, Any] = {"x_misp_type": kind}
    if attribute.get("category"):
        extras["x_misp_category"] = str(attribute.get("category"))
    comment = attribute.get("comment")
    if isinstance(comment, str) and comment:
        extras["description"] = comment
    labels = [t for t in _tag_names(attribute) if t.strip().lower() not in TLP_TAGS]
    if labels:
        extras["labels"] = labels
    to_ids = attribute.get("to_ids") in (True, 1, "1", "true")
    if kind == "vulnerability":
        if not CVE_RE.match(value.strip()):
            return Rejected(
                _("%(where)s: %(value)s is not a CVE id.") % {"where": where, "value": stix._clip(value)}
            )
        cve = value.strip().upper()
        vulnerability = {
            "type": "vulnerability",
            "id": f"vulnerability--{attribute_uuid}",
            **common,
            "name": cve,
            "external_references": [{"source_name": "cve", "external_id": cve}],
            **extras,
        }
        return [_marked(vulnerability, level)]
    if kind in RULES:
        if not to_ids:
            return Rejected(_("%(where)s: a rule without to_ids has no STIX form.") % {"where": where})
        return [_marked(_indicator(attribute_uuid, common, value, kind, first_seen, value, extras), level)]
    try:
        observation = observe(kind, value)
    except Unmapped as exc:
        return Rejected(f"{where}: {exc}")
    except Exception as exc:  # stix2 refuses an observable (a property out of its range)
        return Rejected(f"{where}: {stix._clip(str(exc), 200)}")
    if to_ids:
        indicator = _indicator(attribute_uuid, common, observation.pattern, "stix", first_seen, value, extras)
        if isinstance(last_seen, datetime) and last_seen > first_seen:
            indicator["valid_until"] = convert.timestamp(last_seen)
        return [_marked(indicator, level)]
    last = last_seen if isinstance(last_seen, datetime) and last_seen >= first_seen else first_seen
    observed = {
        "type": "observed-data",
        "id": f"observed-data--{attribute_uuid}",
        **common,
        "first_observed": convert.timestamp(first_seen),
        "last_observed": convert.timestamp(last),
        "number_observed": 1,
        "object_refs": [sco["id"] for sco in observation.scos],
        **extras,
    }
    return [*(_marked(dict(sco), level) for sco in observation.scos), _marked(observed, level)]


def _indicator(
    attribute_uuid: str,
    common: dict[str, Any],
    pattern: str,
    pattern_type: str,
    valid_from: datetime,
    value: str,
    extras: dict[str, Any],
) -> dict[str, Any]:
    return {
        "type": "indicator",
        "id": f"indicator--{attribute_uuid}",
        **common,
        "name": value[:200],
        "pattern": pattern,
        "pattern_type": pattern_type,
        "valid_from": convert.timestamp(valid_from),
        **extras,
    }


# --- export -----------------------------------------------------------------------------------

# STIX (type, property path) compared in a pattern or held by an observable -> MISP type.
MISP_TYPE_OF_PATH: dict[tuple[str, str], str] = {
    ("ipv4-addr", "value"): "ip-dst",
    ("ipv6-addr", "value"): "ip-dst",
    ("domain-name", "value"): "domain",
    ("url", "value"): "url",
    ("email-addr", "value"): "email",
    ("email-message", "subject"): "email-subject",
    ("file", "name"): "filename",
    ("mutex", "name"): "mutex",
    ("mac-addr", "value"): "mac-address",
    ("windows-registry-key", "key"): "regkey",
    ("autonomous-system", "number"): "AS",
} | {("file", f"hashes.{algorithm}"): kind for kind, algorithm in {**HASHES, "ssdeep": "SSDEEP"}.items()}
MISP_TYPE_OF_PATH |= {
    ("x509-certificate", f"hashes.{algorithm}"): kind for kind, algorithm in X509_HASHES.items()
}


def _comparisons(pattern: str) -> list[tuple[str, str, str]]:
    """(type, path, value) of the equality comparisons of a STIX pattern."""
    simple = stix.SIMPLE_PATTERN.match(pattern)
    if simple is not None:
        type_name, path, literal = simple.groups()
        return [(type_name, path.replace("'", ""), literal.replace("\\'", "'").replace("\\\\", "\\"))]
    from stix2patterns.v21.pattern import Pattern

    try:
        comparisons = Pattern(pattern).inspect().comparisons
    except Exception:  # stored patterns are valid; one the inspector cannot walk gives nothing
        return []
    found = []
    for type_name, entries in comparisons.items():
        for path, operator, literal in entries:
            if operator != "=" or not isinstance(literal, str):
                continue
            text = (
                literal[1:-1].replace("\\'", "'").replace("\\\\", "\\")
                if literal.startswith("'")
                else literal
            )
            found.append((type_name, ".".join(str(p) for p in path), text))
    return found


def attributes_of(obj: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(MISP type, value, to_ids) of the attributes one STIX object becomes; none if it has no
    attribute form."""
    type_name = obj.get("type")
    if type_name == "indicator":
        if obj.get("pattern_type") in RULES:
            return [(str(obj["pattern_type"]), str(obj["pattern"]), True)]
        if obj.get("pattern_type") != "stix":
            return []
        found = []
        for sco_type, path, value in _comparisons(str(obj.get("pattern", ""))):
            kind = MISP_TYPE_OF_PATH.get((sco_type, path))
            if kind is not None:
                found.append((kind, value, True))
        return found
    if type_name == "vulnerability" and CVE_RE.match(str(obj.get("name", ""))):
        return [("vulnerability", str(obj["name"]), False)]
    if type_name in ("file", "x509-certificate"):
        found = [("filename", str(obj["name"]), False)] if isinstance(obj.get("name"), str) else []
        for algorithm, digest in (obj.get("hashes") or {}).items():
            kind = MISP_TYPE_OF_PATH.get((type_name, f"hashes.{algorithm}"))
            if kind is not None and isinstance(digest, str):
                found.append((kind, digest, False))
        return found
    for (sco_type, path), kind in MISP_TYPE_OF_PATH.items():
        if sco_type == type_name and path in obj and not isinstance(obj[path], bool):
            return [(kind, str(obj[path]), False)]
    return []


def _times(row: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """The attribute's timestamp (the version's, to the second) and first/last seen: what the
    import reads back, so an exported event imported again names the same versions."""
    times: dict[str, Any] = {}
    version = row.version_time
    if version is not None:
        times["timestamp"] = version
    for source, target in (("valid_from", "first_seen"), ("valid_until", "last_seen")):
        if isinstance(obj.get(source), str):
            with contextlib.suppress(stix.Invalid):
                times[target] = stix.parse_timestamp(obj[source], source)
    return times


@dataclass
class MispExport:
    document: str
    attributes: int
    skipped: int  # objects with no attribute form


def event_of(rows: list[Any], *, info: str) -> MispExport:
    """One MISP event (JSON text, ``{"Event": {...}}``) of stored object versions, built with
    PyMISP's model; the TLP of each object as a tag on its attributes, the strictest on the event."""
    from pymisp import MISPEvent

    event = MISPEvent()
    event.info = info[:1000] or "Minga export"
    event.distribution = ORGANISATION_ONLY  # TLP tags say who may read; MISP shares no further
    event.analysis = 2
    event.published = False
    event.set_date(datetime.now(UTC).date())
    event.threat_level_id = 4
    levels = set()
    count = skipped = 0
    for row in rows:
        obj = row.data
        found = attributes_of(obj)
        if not found:
            skipped += 1
            continue
        levels.add(row.tlp)
        base = uuid.UUID(row.stix_id.split("--", 1)[1])
        for position, (kind, value, to_ids) in enumerate(found):
            attribute: Any = event.add_attribute(
                kind,
                value,
                to_ids=to_ids,
                uuid=str(base if position == 0 else uuid.uuid5(base, str(position))),
                comment=str(obj.get("description") or obj.get("name") or "")[:1000],
                distribution=5,
                **_times(row, obj),
            )
            attribute.force_timestamp = True  # PyMISP drops timestamps it thinks edited
            attribute.add_tag(TAG_OF_TLP[row.tlp])
            count += 1
    if levels:
        event.add_tag(TAG_OF_TLP[max(levels, key=stix.TLP_ORDER.index)])
    # The envelope MISP's own exports and its import page use.
    return MispExport('{"Event":' + event.to_json() + "}", count, skipped)
