"""The record formats beside CSV and JSON lines: IntelMQ events, STIX 2.1 bundles, MISP feeds.

They keep the chunked design (``processing``) in two steps:

- ``prepare``: a document (a STIX bundle, a MISP feed, an IntelMQ JSON array) is streamed from
  the run's kept file (ijson: a large file is never held whole) and each record that may become
  an event is written as one JSON line of the run's lines file. The chunks are ranges of those
  lines, numbered from 1: an event's or a dead letter's "line" is its record's number. IntelMQ
  events one a line need no preparing.
- the parse step of a chunk (``stix_values``, ``misp_values``; IntelMQ events go through the
  JSON-lines reader with IntelMQ's field names): one record (a decoded JSON object) becomes the
  raw values of Minga's event fields, or raises ``Bad`` with the field and the reason, and the
  record is a dead letter.

Every record becomes one event or one dead letter: a STIX indicator whose pattern compares
several values (``[ipv4-addr:value = 'a'] OR [ipv4-addr:value = 'b']``) is written once per
value (``x_minga_part`` names which). Objects that can never be an event (identities,
relationships, reports, marking definitions...) are counted in the run's message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import ijson
import orjson
from django.utils.translation import gettext as _

from minga.intel import misp, stix
from minga.pipeline.choices import DOCUMENT_FORMATS, FeedFormat

# --- IntelMQ -----------------------------------------------------------------------------------

# IntelMQ's harmonisation names of Minga's fields, tried in order after Minga's own names.
INTELMQ_KEYS: dict[str, tuple[str, ...]] = {
    "time": ("time.source", "time.observation"),
    "source_country": ("source.geolocation.cc",),
    "destination_country": ("destination.geolocation.cc",),
}
# IntelMQ's types of its taxonomy "other" that the RSIT does not have: RSIT's other/undetermined.
INTELMQ_TYPES = {
    "blacklist": "other",
    "dga-domain": "other",
    "malware": "other",
    "proxy": "other",
    "sinkhole": "other",
    "tor": "other",
    "unknown": "undetermined",
}


def flatten(data: dict[str, Any]) -> dict[str, Any]:
    """IntelMQ's hierarchical output (``{"source": {"ip": ...}}``) as its dotted names."""
    if not any(isinstance(v, dict) for v in data.values()):
        return data
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and prefix.split(".", 1)[0] != "extra":
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = value

    walk("", data)
    return flat


# --- preparing documents ------------------------------------------------------------------------


@dataclass
class Prepared:
    records: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # kind of object -> how many
    error: str = ""  # where the document broke off, after some records

    def note(self) -> str:
        """What the run's page says of the document: where it broke off, what was not read."""
        notes = []
        if not self.records and not self.error:
            notes.append(_("The document holds nothing that could be an event."))
        if self.error:
            notes.append(self.error + " " + _("The %(n)s records before it are read.") % {"n": self.records})
        if self.skipped:
            kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.skipped.items()))
            notes.append(_("Not events, so not read: %(kinds)s.") % {"kinds": kinds})
        return " ".join(notes)


def _first_byte(path: Path) -> bytes:
    with path.open("rb") as handle:
        head = handle.read(4096)
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]


def needs_preparing(fmt: str, path: Path) -> bool:
    """Whether the run's kept file is a document to write out as lines first."""
    if fmt in DOCUMENT_FORMATS:
        return True
    return fmt == FeedFormat.INTELMQ and _first_byte(path) == b"["


def prepare(fmt: str, source: Path, target: Path) -> Prepared:
    """Write the records of the document ``source`` as JSON lines to ``target``. Raises
    ``ValueError`` with a message when the file is not a document of ``fmt`` at all (or breaks
    off before its first record); a document that breaks off later keeps the records before the
    break, and the break is in ``error``."""
    prepared = Prepared()
    readers: dict[str, Callable[[IO[bytes], Prepared], Iterator[Any]]] = {
        FeedFormat.STIX: _stix_records,
        FeedFormat.MISP: _misp_records,
    }
    reader = readers.get(fmt, _intelmq_records)
    with source.open("rb") as stream, target.open("wb") as out:
        try:
            for record in reader(stream, prepared):
                out.write(_line(record, prepared.records + 1) + b"\n")
                prepared.records += 1
        except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError) as exc:
            prepared.error = _("The file is not valid JSON after record %(n)s: %(error)s") % {
                "n": prepared.records,
                "error": str(exc)[:200],
            }
            if not prepared.records:
                raise ValueError(prepared.error) from None
    return prepared


def _line(record: Any, number: int) -> bytes:
    """One record as a line of JSON; one that JSON cannot hold (nested too deep, a number out of
    range) as a line that is not JSON, which the parse step keeps as a dead letter that says so."""
    try:
        return orjson.dumps(record, default=str)
    except orjson.JSONEncodeError:
        try:
            return json.dumps(record, default=str, ensure_ascii=False).encode()
        except (ValueError, TypeError, RecursionError) as exc:
            reason = _("Record %(n)s cannot be read: %(error)s") % {"n": number, "error": str(exc)[:200]}
            return reason.replace("\n", " ").encode()


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _intelmq_records(stream: IO[bytes], prepared: Prepared) -> Iterator[Any]:
    # What is not an object is a dead letter of the parse step.
    yield from ijson.items(stream, "item", use_float=True)


def _stix_records(stream: IO[bytes], prepared: Prepared) -> Iterator[Any]:
    envelope: dict[str, Any] = {}
    for prefix, event, value in ijson.parse(stream):
        if prefix == "" and event == "end_map":
            break
        if prefix == "" and event not in ("start_map", "map_key"):
            raise ValueError(_("This is not a STIX bundle: the document is not a JSON object."))
        if prefix == "" and event == "map_key" and value == "objects":
            envelope["objects"] = True
            break
        if prefix == "type" and event == "string":
            envelope["type"] = value
    # Producers put the type first; a bundle whose objects come first is still read.
    if envelope.get("type", "bundle" if envelope.get("objects") else None) != "bundle":
        raise ValueError(_('This is not a STIX bundle: a bundle is {"type": "bundle", "objects": [...]}.'))
    stream.seek(0)
    for obj in ijson.items(stream, "objects.item", use_float=True):
        kind = obj.get("type") if isinstance(obj, dict) else None
        if isinstance(kind, str) and kind != "indicator" and not stix.is_sco(kind):
            prepared.skipped[kind[:40]] = prepared.skipped.get(kind[:40], 0) + 1
            continue
        parts = len(_comparisons(obj["pattern"])) if kind == "indicator" and _is_simple(obj) else 1
        if parts <= 1:
            yield obj
        else:
            for part in range(1, parts + 1):
                yield {**obj, "x_minga_part": part}


def _misp_records(stream: IO[bytes], prepared: Prepared) -> Iterator[Any]:
    from django.core.exceptions import ValidationError

    try:
        shape = misp.check_shape(stream)
    except ValidationError as exc:
        raise ValueError(" ".join(exc.messages)) from None
    prefix = {"list": "item", "response": "response.item", "event": ""}[shape]
    for item in ijson.items(stream, prefix, use_float=True):
        data = item.get("Event", item) if isinstance(item, dict) else None
        if not isinstance(data, dict):
            prepared.skipped[_("not a MISP event")] = prepared.skipped.get(_("not a MISP event"), 0) + 1
            continue
        context = {
            key: data[key] for key in ("uuid", "info", "date", "timestamp", "distribution") if key in data
        }
        context["Tag"] = _tag_names(data)
        attributes = list(_listed(data.get("Attribute")))
        for obj in _listed(data.get("Object")):
            if isinstance(obj, dict):
                attributes += [
                    {**a, "object": obj.get("name")} if isinstance(a, dict) else a
                    for a in _listed(obj.get("Attribute"))
                ]
        if not attributes:
            prepared.skipped[_("events without attributes")] = (
                prepared.skipped.get(_("events without attributes"), 0) + 1
            )
        for attribute in attributes:
            yield {"event": context, "attribute": attribute}


def _tag_names(entity: dict[str, Any]) -> list[str]:
    tags = _listed(entity.get("Tag"))
    return [str(t.get("name") if isinstance(t, dict) else t) for t in tags if t]


# --- the parse step: a record's values ------------------------------------------------------------


class Bad(Exception):
    """Raised by the parse step: the record becomes a dead letter (``processing.Bad``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


# (STIX type, property) compared or held -> the event field it fills (email: its domain).
STIX_FIELDS = {
    "ipv4-addr": "source_ip",
    "ipv6-addr": "source_ip",
    "domain-name": "source_fqdn",
    "url": "source_url",
    "email-addr": "email",
}
_CMP = (
    r"([a-z0-9-]+):([A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|'[^'\\]+'))*)"
    r"[ \t]*=[ \t]*'((?:[^'\\]|\\['\\])*)'"
)
_OBSERVATION = rf"\[[ \t]*{_CMP}(?:[ \t]+OR[ \t]+{_CMP})*[ \t]*\]"
_UNION = re.compile(rf"^[ \t]*{_OBSERVATION}(?:[ \t]+OR[ \t]+{_OBSERVATION})*[ \t]*$")
_COMPARISON = re.compile(_CMP)


def _is_simple(obj: dict[str, Any]) -> bool:
    pattern = obj.get("pattern")
    return (
        isinstance(pattern, str)
        and obj.get("pattern_type", "stix") == "stix"
        and _UNION.match(pattern) is not None
    )


def _comparisons(pattern: str) -> list[tuple[str, str, str]]:
    """(type, property, value) of a pattern of equality comparisons joined by OR."""
    return [
        (m.group(1), m.group(2), m.group(3).replace("\\'", "'").replace("\\\\", "\\"))
        for m in _COMPARISON.finditer(pattern)
    ]


def _text(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Bad(name, _("A text or number is expected here."))
    return str(value)


def _put(values: dict[str, Any], target: str, value: str, name: str) -> None:
    if target == "email":
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain:
            raise Bad(name, _("%(value)s is not an e-mail address.") % {"value": value[:80]})
        values["source_fqdn"] = domain
        return
    if target == "source_ip" and value.endswith(("/32", "/128")):
        value = value.rpartition("/")[0]
    values[target] = value


def _tlp_check(level: str | None, options: dict[str, Any], name: str) -> None:
    """A record marked stricter than the feed's TLP is not shared as one of its events."""
    feed_level = options.get("default_tlp")
    if level is None or feed_level not in stix.TLP_ORDER:
        return
    if stix.TLP_ORDER.index(level) > stix.TLP_ORDER.index(feed_level):
        raise Bad(
            name,
            _("Marked %(record)s, stricter than the feed's %(feed)s: not shared as one of its events.")
            % {"record": stix.TLP_NAMES[level], "feed": stix.TLP_NAMES[feed_level]},
        )


def _classification(candidates: list[str], mapping: dict[str, str]) -> str | None:
    """The first candidate the feed's taxonomy mapping knows, else the first RSIT type."""
    from minga.pipeline.choices import TAXONOMY_OF

    for candidate in candidates:
        if candidate.strip().lower() in mapping:
            return candidate
    for candidate in candidates:
        if candidate.strip().lower() in TAXONOMY_OF:
            return candidate
    return None


def stix_values(obj: dict[str, Any], options: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """The event values of a STIX indicator or cyber-observable; raises ``Bad``."""
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise Bad("type", _("The object has no type."))
    _tlp_check(stix.tlp_of(obj), options, "object_marking_refs")
    values: dict[str, Any] = {}
    if kind != "indicator":
        target = STIX_FIELDS.get(kind)
        if target is None:
            raise Bad(
                "type",
                _("A %(type)s object names no address, domain or URL: it cannot become an event.")
                % {"type": kind[:40]},
            )
        _put(values, target, _text(obj.get("value"), "value"), "value")
        return values
    if obj.get("revoked") is True:
        raise Bad("revoked", _("The indicator is revoked."))
    pattern_type = obj.get("pattern_type", "stix")
    if pattern_type != "stix":
        raise Bad(
            "pattern_type",
            _("A %(type)s rule is not a STIX pattern: it cannot become an event.")
            % {"type": str(pattern_type)[:40]},
        )
    pattern = obj.get("pattern")
    if not isinstance(pattern, str):
        raise Bad("pattern", _("The indicator has no pattern."))
    if not _is_simple(obj):
        try:
            stix.check_pattern({**obj, "pattern_type": "stix"})
        except stix.Invalid as exc:
            raise Bad("pattern", str(exc)) from None
        raise Bad(
            "pattern",
            _(
                "Only patterns of equality comparisons joined by OR on the values of ipv4-addr, "
                "ipv6-addr, domain-name, url or email-addr become events: %(pattern)s"
            )
            % {"pattern": pattern[:120]},
        )
    comparisons = _comparisons(pattern)
    part = obj.get("x_minga_part", 1)
    if not isinstance(part, int) or not 1 <= part <= len(comparisons):
        raise Bad("x_minga_part", _("The pattern has no comparison %(n)s.") % {"n": str(part)[:10]})
    sco_type, prop, value = comparisons[part - 1]
    target = STIX_FIELDS.get(sco_type)
    if target is None or prop != "value":
        raise Bad(
            "pattern",
            _(
                "The pattern compares %(path)s: only the values of ipv4-addr, ipv6-addr, domain-name, url "
                "or email-addr become events."
            )
            % {"path": f"{sco_type}:{prop}"[:80]},
        )
    _put(values, target, value, "pattern")
    for name in ("valid_from", "modified", "created"):
        if isinstance(obj.get(name), str):
            values["time"] = obj[name]
            break
    labels = [str(v) for key in ("indicator_types", "labels") for v in obj.get(key) or [] if v]
    classification = _classification(labels, mapping)
    if classification is not None:
        values["classification_type"] = classification
    return values


# MISP attribute type -> the event fields its value (split at "|") fills.
MISP_FIELDS: dict[str, tuple[str, ...]] = {
    "ip-src": ("source_ip",),
    "ip-dst": ("source_ip",),
    "ip-src|port": ("source_ip", "source_port"),
    "ip-dst|port": ("source_ip", "source_port"),
    "domain": ("source_fqdn",),
    "hostname": ("source_fqdn",),
    "domain|ip": ("source_fqdn", "source_ip"),
    "hostname|port": ("source_fqdn", "source_port"),
    "url": ("source_url",),
    "email": ("email",),
    "email-src": ("email",),
    "email-dst": ("email",),
    "email-reply-to": ("email",),
    "AS": ("source_asn",),
}
_RSIT_TAG = re.compile(r'^rsit:[a-z-]+="([a-z-]+)"$')


def misp_values(record: dict[str, Any], options: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """The event values of one MISP attribute (with its event's context); raises ``Bad``."""
    event = record.get("event")
    attribute = record.get("attribute")
    if not isinstance(event, dict) or not isinstance(attribute, dict):
        raise Bad("", _("Not a MISP attribute with its event."))
    kind = _text(attribute.get("type", ""), "type")
    if attribute.get("deleted") in (True, 1, "1", "true"):
        raise Bad("deleted", _("The attribute is deleted in MISP."))
    targets = MISP_FIELDS.get(kind)
    if targets is None:
        raise Bad(
            "type",
            _("MISP attribute type %(type)s names no address, domain or URL: it cannot become an event.")
            % {"type": kind[:40]},
        )
    value = _text(attribute.get("value", ""), "value").strip()
    if not value:
        raise Bad("value", _("The attribute has no value."))
    pieces = value.rsplit("|", 1) if len(targets) == 2 else [value]
    if len(pieces) != len(targets):
        raise Bad("value", _("%(value)s is not a %(type)s value.") % {"value": value[:80], "type": kind})
    tags = _tag_names(attribute) + [str(t) for t in _listed(event.get("Tag"))]
    level = misp.tlp_of_tags(tags)
    if level is None:
        distribution = attribute.get("distribution", event.get("distribution"))
        try:
            level = misp.DISTRIBUTION_FLOOR.get(int(str(distribution)))
        except (TypeError, ValueError):
            level = None
    _tlp_check(level, options, "Tag")
    values: dict[str, Any] = {}
    for target, piece in zip(targets, pieces, strict=True):
        _put(values, target, piece.strip(), "value")
    for moment in (attribute.get("timestamp"), event.get("timestamp"), event.get("date")):
        if isinstance(moment, str | int) and not isinstance(moment, bool) and str(moment):
            values["time"] = str(moment)
            break
    rsit = [m.group(1) for m in map(_RSIT_TAG.match, tags) if m is not None]
    if rsit:
        values["classification_type"] = rsit[0]
    else:
        candidates = [*tags, str(attribute.get("category") or "")]
        classification = _classification([c for c in candidates if c], mapping)
        if classification is not None:
            values["classification_type"] = classification
    return values
