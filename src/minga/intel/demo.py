"""Intelligence for the demo network: a fictional worm, its indicators and observables (only
documentation addresses, RFC 5737, and names under .example), shared TLP:AMBER by CSIRT Andina
with three named organisations, and sightings by CERT Caribe. The ids are fixed, so loading
again is a replay that stores nothing twice."""

from __future__ import annotations

import io
import uuid
from typing import Any

import orjson

from minga.core.choices import TLP
from minga.core.models import Organisation
from minga.intel import services

NAMESPACE = uuid.UUID("6c1b0a52-5d0e-4f35-9a4c-2f0d5b7e9a10")
TS = "2026-01-12T09:30:00.000Z"
C2_IP, C2_DOMAIN = "192.0.2.66", "update.worm.demo.example"
DROPPER_SHA256 = "5f2b9c3d0e7a41f6b8d2c9e0a1b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5"


def _id(type_name: str, name: str) -> str:
    return f"{type_name}--{uuid.uuid5(NAMESPACE, name)}"


def _sdo(type_name: str, key: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": type_name,
        "spec_version": "2.1",
        "id": _id(type_name, key),
        "created": TS,
        "modified": TS,
        **properties,
    }


def _indicator(name: str, pattern: str) -> dict[str, Any]:
    return _sdo(
        "indicator",
        name,
        name=name,
        description="Demo data: fictional.",
        indicator_types=["malicious-activity"],
        pattern=pattern,
        pattern_type="stix",
        valid_from=TS,
    )


def _bundle(objects: list[dict[str, Any]]) -> io.BytesIO:
    return io.BytesIO(orjson.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}))


def load() -> None:
    organisations = {o.short_name: o for o in Organisation.objects.filter(short_name__startswith="demo-")}
    andina, caribe = organisations.get("demo-csirt-andina"), organisations.get("demo-cert-caribe")
    if andina is None or caribe is None:
        return  # the core demo network is not there
    worm = _sdo("malware", "worm", name="Cóndor worm (demo)", is_family=True, malware_types=["worm"])
    by_ip = _indicator("Cóndor command server address", f"[ipv4-addr:value = '{C2_IP}']")
    by_domain = _indicator("Cóndor update domain", f"[domain-name:value = '{C2_DOMAIN}']")
    by_hash = _indicator("Cóndor dropper", f"[file:hashes.'SHA-256' = '{DROPPER_SHA256}']")
    shared = [
        worm,
        by_ip,
        by_domain,
        by_hash,
        *(
            _sdo(
                "relationship",
                f"indicates-{i['id']}",
                relationship_type="indicates",
                source_ref=i["id"],
                target_ref=worm["id"],
            )
            for i in (by_ip, by_domain, by_hash)
        ),
    ]
    recipients = [
        organisations[n] for n in ("demo-cert-caribe", "demo-hub", "demo-police-sur") if n in organisations
    ]
    services.import_bundle(None, andina, _bundle(shared), TLP.AMBER, recipients, source="demo")
    observed = [
        {"type": "ipv4-addr", "spec_version": "2.1", "id": _id("ipv4-addr", C2_IP), "value": C2_IP},
        {
            "type": "domain-name",
            "spec_version": "2.1",
            "id": _id("domain-name", C2_DOMAIN),
            "value": C2_DOMAIN.upper(),
        },
    ]
    services.import_bundle(None, caribe, _bundle(observed), TLP.GREEN, source="demo")
    # The sighting names Andina's AMBER indicator: it goes back to Andina only.
    sighting = [
        _sdo(
            "sighting",
            "caribe-sighting",
            sighting_of_ref=by_ip["id"],
            count=14,
            first_seen="2026-01-13T02:00:00Z",
            last_seen="2026-01-20T18:45:00Z",
        ),
    ]
    services.import_bundle(None, caribe, _bundle(sighting), TLP.AMBER, [andina], source="demo")
