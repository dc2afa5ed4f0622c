"""STIX 2.1 on the fast path: TLP markings, per-object validation, timestamps.

Bulk import must not pay the OASIS library's per-object cost (``stix2.parse`` builds and checks
a class per object), so objects are checked here against what the store and the queries rely
on: the common properties, the id format, RFC 3339 timestamps, references, the properties each
type requires, and indicator patterns (the OASIS ``stix2-patterns`` grammar, skipped only for
the simple comparison expressions that ``SIMPLE_PATTERN`` proves well-formed). Everything Minga
emits is checked by ``stix2-validator`` in the tests.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from django.utils.translation import gettext as _

from minga.core.choices import TLP

# The TLP 2.0 marking definitions of the OASIS extension (extension-definition--60a3c5c5-…),
# the ids every STIX 2.1 producer uses.
TLP_EXTENSION_ID = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_MARKING_IDS: dict[str, str] = {
    TLP.CLEAR: "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    TLP.GREEN: "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    TLP.AMBER: "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    TLP.AMBER_STRICT: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    TLP.RED: "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
# TLP 1.0 markings predefined by STIX 2.1 (WHITE is CLEAR under TLP 2.0).
TLP1_MARKING_IDS: dict[str, str] = {
    TLP.CLEAR: "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    TLP.GREEN: "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    TLP.AMBER: "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    TLP.RED: "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}
TLP_BY_MARKING_ID = {v: k for k, v in TLP1_MARKING_IDS.items()} | {v: k for k, v in TLP2_MARKING_IDS.items()}
TLP_ORDER: list[str] = [TLP.CLEAR, TLP.GREEN, TLP.AMBER, TLP.AMBER_STRICT, TLP.RED]  # from open to strict
TLP_NAMES: dict[str, str] = {
    TLP.CLEAR: "TLP:CLEAR",
    TLP.GREEN: "TLP:GREEN",
    TLP.AMBER: "TLP:AMBER",
    TLP.AMBER_STRICT: "TLP:AMBER+STRICT",
    TLP.RED: "TLP:RED",
}


def tlp_marking_definition(level: str) -> dict[str, Any]:
    """The official TLP 2.0 marking-definition object of ``level``."""
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP2_MARKING_IDS[level],
        "created": "2022-10-01T00:00:00.000Z",
        "name": TLP_NAMES[level],
        "extensions": {TLP_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": level}},
    }


def tlp_of(obj: dict[str, Any]) -> str | None:
    """The strictest TLP marking among the object's ``object_marking_refs``, or None."""
    refs = obj.get("object_marking_refs")
    if not isinstance(refs, list):
        return None
    levels = [TLP_BY_MARKING_ID[r] for r in refs if isinstance(r, str) and r in TLP_BY_MARKING_ID]
    if not levels:
        return None
    return max(levels, key=TLP_ORDER.index)


def with_tlp_marking(obj: dict[str, Any], level: str) -> dict[str, Any]:
    """``obj`` as Minga emits it: carrying the TLP 2.0 marking of the level it is stored under.
    Marking definitions and SCOs of no version are left as they are only when they already
    carry a TLP marking; the TLP markings themselves are never marked."""
    if obj.get("type") == "marking-definition" and obj.get("id") in TLP_BY_MARKING_ID:
        return obj
    refs = [r for r in obj.get("object_marking_refs") or [] if r not in TLP_BY_MARKING_ID]
    return {**obj, "object_marking_refs": [TLP2_MARKING_IDS[level], *refs]}


# --- identifiers and timestamps ----------------------------------------------------------------

TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,248}[a-z0-9]$")
ID_RE = re.compile(
    r"^([a-z0-9][a-z0-9-]{1,248}[a-z0-9])--"
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
TIMESTAMP_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?Z$")


class Invalid(ValueError):
    """An object that cannot be stored, with the reason a person can act on."""


# Timestamps already parsed, text to instant: an import sees the same few again and again
# (``created`` equal to ``modified``, a feed's objects written in the same second). Only valid
# text is kept, and the memo starts over once it holds TIMESTAMP_MEMO_SIZE of them.
TIMESTAMP_MEMO_SIZE = 10_000
_parsed_timestamps: dict[str, datetime] = {}


def parse_timestamp(value: Any, name: str) -> datetime:
    """An RFC 3339 timestamp in UTC as STIX requires (``2026-01-31T12:00:00.000Z``)."""
    if type(value) is str:
        known = _parsed_timestamps.get(value)
        if known is not None:
            return known
        parsed = _parse_timestamp(value, name)
        if len(_parsed_timestamps) >= TIMESTAMP_MEMO_SIZE:
            _parsed_timestamps.clear()
        _parsed_timestamps[value] = parsed
        return parsed
    return _parse_timestamp(value, name)


def _parse_timestamp(value: Any, name: str) -> datetime:
    match = TIMESTAMP_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid(
            _("%(name)s is not a STIX timestamp (RFC 3339 in UTC, e.g. 2026-01-31T12:00:00Z): %(value)s")
            % {"name": name, "value": _clip(value)}
        )
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            # A leap second (60) is valid RFC 3339; the database holds :59.
            min(int(second), 59),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise Invalid(_("%(name)s is not a valid date: %(value)s") % {"name": name, "value": value}) from exc


def pad_to_milliseconds(obj: dict[str, Any]) -> None:
    """Write ``created`` and ``modified`` (already valid) with at least millisecond digits, as
    STIX 2.1 requires and stix2-validator checks: ``…:00Z`` becomes ``…:00.000Z``, the same
    instant, so the version it names is unchanged. STIX 2.0 producers often omit them."""
    for name in ("created", "modified"):
        value = obj.get(name)
        if value is None:
            continue
        dot = value.rfind(".")
        if dot == -1:
            obj[name] = value[:-1] + ".000Z"
        elif len(value) - dot - 2 < 3:
            obj[name] = value[:-1].ljust(dot + 4, "0") + "Z"


def _clip(value: Any, limit: int = 80) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "…"


def check_identifier(value: Any, name: str, *, expected_type: str | None = None) -> str:
    match = ID_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid(
            _("%(name)s is not a STIX identifier (type--UUID): %(value)s")
            % {"name": name, "value": _clip(value)}
        )
    if expected_type is not None and match.group(1) != expected_type:
        raise Invalid(
            _("%(name)s %(value)s does not start with the object's type %(type)s.")
            % {"name": name, "value": value, "type": expected_type}
        )
    return value


# --- the properties each type requires ---------------------------------------------------------

COMMON = ("type", "spec_version", "id", "created", "modified")
SDO_REQUIRED: dict[str, tuple[str, ...]] = {
    "attack-pattern": ("name",),
    "campaign": ("name",),
    "course-of-action": ("name",),
    "grouping": ("context", "object_refs"),
    "identity": ("name",),
    "incident": ("name",),
    "indicator": ("pattern", "pattern_type", "valid_from"),
    "infrastructure": ("name",),
    "intrusion-set": ("name",),
    "location": (),
    "malware": ("is_family",),
    "malware-analysis": ("product",),
    "note": ("content", "object_refs"),
    "observed-data": ("first_observed", "last_observed", "number_observed"),
    "opinion": ("opinion", "object_refs"),
    "report": ("name", "published", "object_refs"),
    "threat-actor": ("name",),
    "tool": ("name",),
    "vulnerability": ("name",),
    "relationship": ("relationship_type", "source_ref", "target_ref"),
    "sighting": ("sighting_of_ref",),
    "language-content": ("object_ref", "contents"),
    "extension-definition": ("created_by_ref", "name", "schema", "version", "extension_types"),
}
SCO_REQUIRED: dict[str, tuple[str, ...]] = {
    "artifact": (),
    "autonomous-system": ("number",),
    "directory": ("path",),
    "domain-name": ("value",),
    "email-addr": ("value",),
    "email-message": ("is_multipart",),
    "file": (),
    "ipv4-addr": ("value",),
    "ipv6-addr": ("value",),
    "mac-addr": ("value",),
    "mutex": ("name",),
    "network-traffic": ("protocols",),
    "process": (),
    "software": ("name",),
    "url": ("value",),
    "user-account": (),
    "windows-registry-key": (),
    "x509-certificate": (),
}
TIMESTAMP_PROPERTIES = (
    "valid_from",
    "valid_until",
    "first_seen",
    "last_seen",
    "first_observed",
    "last_observed",
    "published",
)


def is_sco(type_name: str) -> bool:
    return type_name in SCO_REQUIRED


def validate(obj: Any) -> dict[str, Any]:
    """Check one object; return it, or raise ``Invalid`` with the first problem found.

    STIX 2.0 objects (no ``spec_version`` on an SDO or SRO) are refused: imports upgrade them
    first (``minga.intel.stix20``)."""
    if not isinstance(obj, dict):
        raise Invalid(_("An entry of 'objects' is not a JSON object."))
    type_name = obj.get("type")
    if not isinstance(type_name, str) or not TYPE_RE.match(type_name):
        raise Invalid(_("type is missing or not a STIX type name: %(value)s") % {"value": _clip(type_name)})
    if type_name == "bundle":
        raise Invalid(_("A bundle may not contain another bundle."))
    check_identifier(obj.get("id"), "id", expected_type=type_name)
    sco = is_sco(type_name)
    spec_version = obj.get("spec_version")
    if spec_version is None and not sco:
        # Imports upgrade 2.0 objects first (minga.intel.stix20); one that reaches here was not.
        raise Invalid(_("No spec_version: this is a STIX 2.0 object, and Minga stores STIX 2.1."))
    if spec_version is not None and spec_version != "2.1":
        raise Invalid(
            _("spec_version is %(value)s; Minga stores STIX 2.1 only.") % {"value": _clip(spec_version)}
        )
    if sco:
        required: tuple[str, ...] = SCO_REQUIRED[type_name]
    elif type_name == "marking-definition":
        required = ("created",)
    else:
        required = ("created", "modified", *SDO_REQUIRED.get(type_name, ()))
    missing = [name for name in required if obj.get(name) is None]
    if missing:
        raise Invalid(
            _("%(type)s lacks required properties: %(names)s.")
            % {"type": type_name, "names": ", ".join(missing)}
        )
    created = parse_timestamp(obj["created"], "created") if "created" in obj else None
    modified = parse_timestamp(obj["modified"], "modified") if "modified" in obj else None
    if created is not None and modified is not None and modified < created:
        raise Invalid(_("modified is earlier than created."))
    for name in TIMESTAMP_PROPERTIES:
        if name in obj:
            parse_timestamp(obj[name], name)
    for name, value in obj.items():
        if name.endswith("_ref"):
            check_identifier(value, name)
        elif name.endswith("_refs"):
            if not isinstance(value, list):
                raise Invalid(_("%(name)s is not a list of identifiers.") % {"name": name})
            for item in value:
                check_identifier(item, name)
    if "revoked" in obj and not isinstance(obj["revoked"], bool):
        raise Invalid(_("revoked must be true or false."))
    if type_name == "indicator":
        check_pattern(obj)
    elif type_name == "sighting" and "count" in obj:
        count = obj["count"]
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 999_999_999:
            raise Invalid(_("count must be an integer from 0 to 999999999."))
    return obj


# ``[type:path = 'value']``: one comparison, which the OASIS grammar accepts whenever this
# matches (a property test holds the two to agreement). Anything else goes to the OASIS
# pattern validator.
SIMPLE_PATTERN = re.compile(
    r"^\[[ \t]*([a-z][a-z0-9-]*[a-z0-9]):"
    r"([a-z_][a-z0-9_]*(?:\.(?:[a-z_][a-z0-9_]*|'[^'\\]+'))*)"
    r"[ \t]*=[ \t]*'((?:[^'\\]|\\['\\])*)'[ \t]*\]$"
)
# What stix2-patterns requires of hash values in patterns, by algorithm (upper case, no hyphen).
HASH_VALUE_RE = {
    name: re.compile(rf"^[a-fA-F0-9]{{{length}}}$")
    for name, length in {
        "MD5": 32,
        "RIPEMD160": 40,
        "SHA1": 40,
        "SHA224": 56,
        "SHA256": 64,
        "SHA384": 96,
        "SHA512": 128,
        "SHA3224": 56,
        "SHA3256": 64,
        "SHA3384": 96,
        "SHA3512": 128,
        "WHIRLPOOL": 128,
    }.items()
} | {"SSDEEP": re.compile(r"^[a-zA-Z0-9/+:.]{1,128}$")}
PATH_PART_RE = re.compile(r"'[^']*'|[^.]+")


def _simple_pattern_verdict(pattern: str) -> bool | None:
    """True if ``pattern`` is a simple comparison that is valid, False if it is one with a bad
    hash value, None if it is not simple (the OASIS validator decides)."""
    match = SIMPLE_PATTERN.match(pattern)
    if match is None:
        return None
    parts = PATH_PART_RE.findall(match.group(2))
    if "hashes" not in parts:
        return True
    algorithm = parts[-1].upper().replace("-", "").replace("'", "")
    if algorithm == "MD6":
        return None
    check = HASH_VALUE_RE.get(algorithm)
    return check is None or bool(check.match(match.group(3).replace("'", "")))


def check_pattern(obj: dict[str, Any]) -> None:
    pattern = obj["pattern"]
    if not isinstance(pattern, str):
        raise Invalid(_("pattern is not text."))
    if obj.get("pattern_type") != "stix":
        return  # Snort, YARA, Sigma...: not STIX patterns, stored as they are.
    if _simple_pattern_verdict(pattern):
        return
    from stix2patterns.validator import run_validator

    try:
        errors = run_validator(pattern, stix_version="2.1")
    except Exception as exc:  # the ANTLR runtime raises assorted errors on garbage
        errors = [str(exc)]
    if errors:
        raise Invalid(_("pattern is not a valid STIX pattern: %(error)s") % {"error": _clip(errors[0], 200)})
