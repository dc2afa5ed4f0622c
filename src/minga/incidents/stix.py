"""An incident as a STIX 2.1 bundle: an ``incident`` SDO whose Minga properties travel in a
property extension (defined by the ``extension-definition`` in the bundle), the organisations as
``identity`` objects, the TLP 2.0 marking, and the linked intelligence the exporter may read,
each related to the incident. What the bundle holds is what its exporter may read: it is built
only from an incident that passed the access policy, and the linked objects pass it again."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson

from minga.core.models import Organisation
from minga.incidents.choices import READING_STATUSES
from minga.incidents.models import Incident
from minga.intel.convert import timestamp

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from minga.core.models import User

NAMESPACE = uuid.UUID("0f7d8a3e-4b1c-5d2e-9f60-7a8b9c0d1e2f")
EXTENSION_ID = "extension-definition--3c1f0e9a-6b2d-4e57-8a41-9d0c2b7e5f13"
MINGA_IDENTITY_ID = f"identity--{uuid.uuid5(NAMESPACE, 'minga')}"
EXTENSION_CREATED = "2026-11-29T00:00:00.000Z"
MAX_LINKED = 1000


def identity_id(organisation: Organisation) -> str:
    return f"identity--{uuid.uuid5(NAMESPACE, str(organisation.uuid))}"


def _identity(organisation: Organisation) -> dict[str, Any]:
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id(organisation),
        "created": timestamp(organisation.created_at),
        "modified": timestamp(organisation.created_at),
        "name": organisation.name,
        "identity_class": "organization",
    }


def extension_definition() -> dict[str, Any]:
    return {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": EXTENSION_ID,
        "created_by_ref": MINGA_IDENTITY_ID,
        "created": EXTENSION_CREATED,
        "modified": EXTENSION_CREATED,
        "name": "Minga incident",
        "description": (
            "A Minga incident case: reference, RSIT classification, severity, status, PAP, "
            "coordinator, affected states and sectors, participants with their status."
        ),
        "schema": "https://minga.example/schemas/incident-extension.json",
        "version": "1.0.0",
        "extension_types": ["property-extension"],
    }


def _minga_identity() -> dict[str, Any]:
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": MINGA_IDENTITY_ID,
        "created": EXTENSION_CREATED,
        "modified": EXTENSION_CREATED,
        "name": "Minga",
        "identity_class": "system",
    }


def bundle(user: User | AnonymousUser | None, incident: Incident) -> bytes:
    from minga.intel import queries as intel
    from minga.intel import stix as intel_stix

    participants = list(
        incident.participants.filter(status__in=READING_STATUSES)
        .select_related("organisation")
        .order_by("pk")
    )
    organisations = {incident.origin_organisation, incident.coordinating_organisation}
    organisations |= {p.organisation for p in participants}
    marking = intel_stix.TLP2_MARKING_IDS[incident.tlp]
    extension: dict[str, Any] = {
        "extension_type": "property-extension",
        "reference": incident.reference,
        "status": incident.status,
        "severity": incident.severity,
        "rsit_taxonomy": incident.taxonomy,
        "rsit_type": incident.type,
        "pap": incident.pap,
        "coordinator_ref": identity_id(incident.coordinating_organisation),
        "affected_states": sorted(incident.affected_states.values_list("code", flat=True)),
        "affected_sectors": sorted(incident.affected_sectors.values_list("slug", flat=True)),
        "participants": [
            {
                "organisation_ref": identity_id(p.organisation),
                "status": p.status,
                **({"acknowledged": timestamp(p.acknowledged_at)} if p.acknowledged_at else {}),
            }
            for p in participants
        ],
    }
    # STIX allows no empty lists.
    extension = {k: v for k, v in extension.items() if v != []}
    if incident.status_reason:
        extension["status_reason"] = incident.status_reason
    if incident.merged_into is not None:
        extension["merged_into"] = f"incident--{incident.merged_into.uuid}"
    sdo: dict[str, Any] = {
        "type": "incident",
        "spec_version": "2.1",
        "id": f"incident--{incident.uuid}",
        "created_by_ref": identity_id(incident.origin_organisation),
        "created": timestamp(incident.created_at),
        "modified": timestamp(incident.updated_at),
        "name": incident.title,
        "object_marking_refs": [marking],
        "extensions": {EXTENSION_ID: extension},
    }
    if incident.description:
        sdo["description"] = incident.description
    objects: list[dict[str, Any]] = [
        sdo,
        extension_definition(),
        _minga_identity(),
        intel_stix.tlp_marking_definition(incident.tlp),
        *(_identity(o) for o in sorted(organisations, key=lambda o: o.pk)),
    ]
    linked_ids = list(incident.links.values_list("stix_id", flat=True)[:MAX_LINKED])
    for obj in intel.latest_visible(user).filter(stix_id__in=linked_ids).order_by("stix_id"):
        emitted = intel.emitted(obj)
        objects.append(emitted)
        if emitted.get("type") not in ("relationship", "sighting"):
            objects.append(
                {
                    "type": "relationship",
                    "spec_version": "2.1",
                    "id": f"relationship--{uuid.uuid5(NAMESPACE, incident.reference + obj.stix_id)}",
                    "created": sdo["created"],
                    "modified": sdo["created"],
                    "relationship_type": "related-to",
                    "source_ref": sdo["id"],
                    "target_ref": obj.stix_id,
                    "object_marking_refs": [marking],
                }
            )
        if emitted.get("type") != "marking-definition":
            for ref in emitted.get("object_marking_refs", []):
                level = intel_stix.TLP_BY_MARKING_ID.get(ref)
                tlp2 = level is not None and intel_stix.TLP2_MARKING_IDS[level] == ref
                if level and tlp2 and not any(o.get("id") == ref for o in objects):
                    objects.append(intel_stix.tlp_marking_definition(level))
    document = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}
    return orjson.dumps(document)
