"""An incident exported as a STIX 2.1 bundle, checked by the OASIS validator."""

from __future__ import annotations

import io
import json

import pytest
from stix2validator import ValidationOptions, validate_string

from minga.core.models import AuditEntry
from minga.incidents import services
from minga.incidents.stix import EXTENSION_ID
from minga.intel.services import import_bundle

pytestmark = pytest.mark.django_db

INDICATOR = {
    "type": "indicator",
    "spec_version": "2.1",
    "id": "indicator--7a2e4c1b-0d3f-4e5a-8b6c-9d0e1f2a3b4c",
    "created": "2026-01-01T00:00:00.000Z",
    "modified": "2026-01-01T00:00:00.000Z",
    "name": "Ransomware C2",
    "pattern": "[ipv4-addr:value = '198.18.5.20']",
    "pattern_type": "stix",
    "valid_from": "2026-01-01T00:00:00Z",
}


def test_the_bundle_is_valid_stix_and_carries_the_case(open_incident, network):
    bundle = {"type": "bundle", "id": "bundle--7a2e4c1b-0d3f-4e5a-8b6c-9d0e1f2a3b40", "objects": [INDICATOR]}
    import_bundle(network.ana, network.pe, io.BytesIO(json.dumps(bundle).encode()), "green")
    incident = open_incident(description="Encrypted patient records.", pap="green")
    services.add_participant(network.ana, incident, network.cl)
    services.acknowledge(network.carlos, incident)
    services.link_object(network.ana, incident, INDICATOR["id"])
    document = services.export_stix(network.carlos, incident)
    results = validate_string(document.decode(), ValidationOptions())
    assert results.is_valid, [str(e) for e in results.errors]
    objects = {o["id"]: o for o in json.loads(document)["objects"]}
    sdo = objects[f"incident--{incident.uuid}"]
    extension = sdo["extensions"][EXTENSION_ID]
    assert extension["reference"] == incident.reference and extension["rsit_type"] == "system-compromise"
    assert [p["status"] for p in extension["participants"]] == ["acknowledged"]
    assert INDICATOR["id"] in objects
    assert any(o["type"] == "relationship" and o["target_ref"] == INDICATOR["id"] for o in objects.values())
    assert EXTENSION_ID in objects
    assert AuditEntry.objects.get(action="incident.export").details["format"] == "stix"


def test_a_bare_incident_is_valid_stix_too(open_incident, network):
    incident = open_incident(tlp="red")
    services.merge_incident(network.ana, open_incident(), incident)
    for exported in (incident, incident.duplicates.get()):
        results = validate_string(services.export_stix(network.ana, exported).decode(), ValidationOptions())
        assert results.is_valid, [str(e) for e in results.errors]
