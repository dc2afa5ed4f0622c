"""STIX 2.0 input: upgraded to 2.1 where faithful, rejected with the reason otherwise."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from stix2validator import ValidationOptions, validate_instance

from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.intel import queries, services, stix
from minga.intel.models import Observable, StixObject
from minga.intel.tests.bundles import TS, sid, stream

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_org: Callable[..., Organisation]) -> Organisation:
    return make_org("csirt-uy")


@pytest.fixture
def analyst(make_user: Callable[..., User], team: Organisation) -> User:
    return make_user("ana", team)


def v20(type_name: str, **properties: Any) -> dict[str, Any]:
    return {"type": type_name, "id": sid(type_name), "created": TS, "modified": TS, **properties}


def test_a_stix_2_0_bundle_is_upgraded_and_what_minga_emits_is_valid_2_1(
    analyst: User, team: Organisation
) -> None:
    indicator = v20(
        "indicator",
        labels=["malicious-activity"],
        pattern="[ipv4-addr:value = '198.51.100.9']",
        valid_from=TS,
        object_marking_refs=[stix.TLP1_MARKING_IDS[TLP.GREEN]],
    )
    # 2.0 producers often give seconds only; 2.1 wants milliseconds: the same instant, padded.
    malware = {**v20("malware", name="Demo worm", labels=["worm"]), "created": "2026-01-15T10:00:00Z"}
    malware["modified"] = "2026-01-15T10:00:00.5Z"
    relationship = v20(
        "relationship", relationship_type="indicates", source_ref=indicator["id"], target_ref=malware["id"]
    )
    observed = v20(
        "observed-data",
        first_observed=TS,
        last_observed=TS,
        number_observed=2,
        objects={
            "0": {"type": "ipv4-addr", "value": "198.51.100.10"},
            "1": {"type": "domain-name", "value": "evil.example", "resolves_to_refs": ["0"]},
            "2": {"type": "file", "name": "dropper.exe", "hashes": {"SHA-256": "ab" * 32}},
        },
    )
    report = v20(
        "report", name="Weekly", labels=["threat-report"], published=TS, object_refs=[indicator["id"]]
    )
    result = services.import_bundle(
        analyst,
        team,
        stream(indicator, malware, relationship, observed, report, spec_version="2.0"),
        TLP.AMBER,
    )
    assert (result.accepted, result.rejected, result.error) == (8, 0, ""), result.rejections
    stored = {row.stix_id: row for row in StixObject.objects.all()}
    assert stored[indicator["id"]].tlp == TLP.GREEN  # its own TLP 1.0 marking still counts
    assert stored[indicator["id"]].data["pattern_type"] == "stix"
    worm = stored[malware["id"]].data
    assert worm["is_family"] is True and worm["malware_types"] == ["worm"]
    assert (worm["created"], worm["modified"]) == ("2026-01-15T10:00:00.000Z", "2026-01-15T10:00:00.500Z")
    upgraded = stored[observed["id"]].data
    assert "objects" not in upgraded and len(upgraded["object_refs"]) == 3
    domain = next(row.data for row in stored.values() if row.type == "domain-name")
    ip = next(row for row in stored.values() if row.type == "ipv4-addr")
    assert domain["resolves_to_refs"] == [ip.stix_id]
    assert {v for _k, v in Observable.objects.values_list("kind", "value")} >= {
        "198.51.100.9",
        "198.51.100.10",
        "evil.example",
        "ab" * 32,
    }
    for row in stored.values():
        assert row.spec_version == "2.1"
        outcome = validate_instance(queries.emitted(row), ValidationOptions())
        assert outcome.is_valid, (row.type, [str(e) for e in outcome.errors])
    # The same 2.0 bundle again is a replay: the derived observables have the same ids.
    again = services.import_bundle(
        analyst,
        team,
        stream(indicator, malware, relationship, observed, report, spec_version="2.0"),
        TLP.AMBER,
    )
    assert (again.accepted, again.duplicates) == (0, 8)


def test_what_cannot_be_upgraded_faithfully_is_rejected_with_the_reason(
    analyst: User, team: Organisation
) -> None:
    encrypted = v20(
        "observed-data",
        first_observed=TS,
        last_observed=TS,
        number_observed=1,
        objects={"0": {"type": "file", "name": "a.zip", "is_encrypted": True}},
    )
    dangling = v20(
        "observed-data",
        first_observed=TS,
        last_observed=TS,
        number_observed=1,
        objects={"0": {"type": "domain-name", "value": "a.example", "resolves_to_refs": ["7"]}},
    )
    bad_pattern = v20("indicator", labels=["x"], pattern="[ipv4-addr:value = ", valid_from=TS)
    future = {**v20("tool", name="x"), "spec_version": "2.2"}
    result = services.import_bundle(
        analyst, team, stream(encrypted, dangling, bad_pattern, future, spec_version="2.0"), TLP.GREEN
    )
    assert (result.accepted, result.rejected) == (0, 4)
    reasons = {r.index: r.reason for r in result.rejections}
    assert "cannot be expressed in STIX 2.1" in reasons[0] and "is_encrypted" in reasons[0]
    assert "refers to 7" in reasons[1]
    assert "not a valid STIX pattern" in reasons[2]
    assert "2.2" in reasons[3]
    assert result.rejections[0].stix_id == encrypted["id"]


def test_a_2_0_object_in_a_2_1_bundle_is_upgraded_too(analyst: User, team: Organisation) -> None:
    stray = v20("campaign", name="Old campaign")
    result = services.import_bundle(analyst, team, stream(stray), TLP.GREEN)
    assert result.accepted == 1
    assert StixObject.objects.get().data["spec_version"] == "2.1"


def test_bundles_of_other_versions_are_refused(analyst: User, team: Organisation) -> None:
    with pytest.raises(ValidationError, match=r"Minga reads STIX 2\.0 and 2\.1 bundles"):
        services.import_bundle(analyst, team, stream(v20("tool", name="x"), spec_version="1.2"), TLP.GREEN)


def test_every_kind_of_2_0_object_the_oasis_library_writes_is_upgraded_to_valid_2_1(
    analyst: User, team: Organisation
) -> None:
    from stix2 import v20

    identity = v20.Identity(name="CSIRT Demo", identity_class="organization")
    statement = v20.MarkingDefinition(definition_type="statement", definition={"statement": "© Demo"})
    malware = v20.Malware(name="Demo worm", labels=["worm"], created_by_ref=identity.id)
    indicator = v20.Indicator(
        labels=["malicious-activity"],
        pattern="[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e'] AND [url:value = 'http://x.example/']",
        object_marking_refs=[statement.id],
    )
    observed = v20.ObservedData(
        first_observed=TS,
        last_observed=TS,
        number_observed=3,
        objects={
            "0": {"type": "ipv4-addr", "value": "198.51.100.3"},
            "1": {"type": "ipv4-addr", "value": "203.0.113.9"},
            "2": {
                "type": "network-traffic",
                "src_ref": "0",
                "dst_ref": "1",
                "dst_port": 443,
                "protocols": ["tcp"],
            },
            "3": {"type": "email-addr", "value": "boss@evil.example"},
            "4": {"type": "email-message", "is_multipart": False, "from_ref": "3", "subject": "Invoice"},
        },
    )
    others = [
        v20.AttackPattern(name="Phishing"),
        v20.Campaign(name="Winter wave"),
        v20.CourseOfAction(name="Block the sender"),
        v20.IntrusionSet(name="Demo set"),
        v20.ThreatActor(name="Demo actor", labels=["crime-syndicate"]),
        v20.Tool(name="nmap", labels=["network-capture"]),
        v20.Vulnerability(name="CVE-2026-0001"),
        v20.Relationship(malware, "related-to", indicator),
        v20.Sighting(sighting_of_ref=indicator.id, observed_data_refs=[observed.id], count=2),
        v20.Report(name="Weekly", labels=["threat-report"], published=TS, object_refs=[indicator.id]),
    ]
    bundle = v20.Bundle(identity, statement, malware, indicator, observed, *others)
    result = services.import_bundle(analyst, team, io.BytesIO(bundle.serialize().encode()), TLP.GREEN)
    assert result.rejected == 0, result.rejections
    assert result.accepted == len(bundle.objects) + 5  # the observed-data's five observables
    for row in StixObject.objects.all():
        outcome = validate_instance(queries.emitted(row), ValidationOptions())
        assert outcome.is_valid, (row.type, [str(e) for e in outcome.errors])
