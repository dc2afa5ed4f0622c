"""STIX 2.1 objects and bundles for the tests, built by hand (documentation addresses only)."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

TS = "2026-01-15T10:00:00.000Z"


def sid(type_name: str) -> str:
    return f"{type_name}--{uuid.uuid4()}"


def indicator(value: str = "198.51.100.7", *, kind: str = "ipv4-addr", **extra: Any) -> dict[str, Any]:
    obj = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": sid("indicator"),
        "created": TS,
        "modified": TS,
        "name": f"Bad {value}",
        "pattern": f"[{kind}:value = '{value}']",
        "pattern_type": "stix",
        "valid_from": TS,
    }
    obj.update(extra)
    return obj


def sco(type_name: str, value: str) -> dict[str, Any]:
    return {"type": type_name, "spec_version": "2.1", "id": sid(type_name), "value": value}


def sighting(of: str, count: int = 1, first: str = TS, last: str = TS) -> dict[str, Any]:
    return {
        "type": "sighting",
        "spec_version": "2.1",
        "id": sid("sighting"),
        "created": TS,
        "modified": TS,
        "sighting_of_ref": of,
        "count": count,
        "first_seen": first,
        "last_seen": last,
    }


def bundle(*objects: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {"type": "bundle", "id": sid("bundle"), **envelope, "objects": list(objects)}


def stream(*objects: dict[str, Any], **envelope: Any) -> io.BytesIO:
    return io.BytesIO(json.dumps(bundle(*objects, **envelope)).encode())
