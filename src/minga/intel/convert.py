"""What the format readers (STIX 2.0, MISP, CSV) share: how they report a record they cannot
turn into STIX 2.1, how they say the input became unreadable, and the pieces of STIX they build
(deterministic ids, pattern literals).

A reader yields ``(index, item)`` pairs to ``services.import_objects``: ``item`` is a STIX 2.1
object (a dict, checked by the same fast path as a bundle's objects), or a ``Rejected`` with the
reason a person can act on. The index is what the import reports names: the position in a
bundle, the attribute's position in a MISP file, the line of a CSV file.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Ids that Minga derives from the input, so that importing the same file again is a replay:
# UUIDv5 in a namespace of Minga's own (SCOs use the STIX 2.1 namespace, through stix2).
MINGA_NAMESPACE = uuid.UUID("5d1f3c5e-8a57-4c4e-9a52-7f8f5c8f2a11")


@dataclass(frozen=True)
class Rejected:
    """A record of the input that does not become a STIX object, and why."""

    reason: str
    stix_id: str = ""


class Unreadable(ValueError):
    """The input cannot be read from some point on (bad JSON, a CSV that is not text): what came
    before is kept, the import reports this as its error."""


def derived_id(type_name: str, *parts: str) -> str:
    """A STIX id for ``type_name`` that depends only on ``parts``."""
    return f"{type_name}--{uuid.uuid5(MINGA_NAMESPACE, '|'.join(parts))}"


def pattern_literal(value: str) -> str:
    """``value`` as a quoted STIX pattern string: backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def timestamp(moment: datetime) -> str:
    """A STIX timestamp (UTC, milliseconds) of an aware or naive-UTC datetime."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # an offset at the very edge of the calendar: keep the wall time
        moment = moment.replace(tzinfo=UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
        f"{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


# The STIX 2.1 namespace of cyber-observable ids (section 2.9), and the types whose id comes
# from ``value`` alone: their ids are computed here, as the OASIS library does, without the
# cost of building its objects (most of a CSV row's time otherwise).
SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
VALUE_SCOS = frozenset({"ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr", "mac-addr"})


def sco(type_name: str, **properties: Any) -> dict[str, Any]:
    """A STIX 2.1 cyber-observable with its deterministic id (UUIDv5 of its id-contributing
    properties, as the OASIS library computes it), so the same observable has one id everywhere."""
    if type_name in VALUE_SCOS and properties.keys() == {"value"}:
        from stix2.canonicalization.Canonicalize import canonicalize

        name = canonicalize({"value": properties["value"]}, utf8=False)
        return {
            "type": type_name,
            "spec_version": "2.1",
            "id": f"{type_name}--{uuid.uuid5(SCO_NAMESPACE, name)}",
            "value": properties["value"],
        }
    import orjson
    import stix2

    obj = stix2.parse({"type": type_name, "spec_version": "2.1", **properties}, version="2.1")
    data: dict[str, Any] = orjson.loads(obj.serialize())
    return data
