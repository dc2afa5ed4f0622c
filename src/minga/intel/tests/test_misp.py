"""MISP JSON events: read through PyMISP's model, stored as STIX 2.1 (valid for the OASIS
validator), written back as events that PyMISP loads."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from pymisp import MISPEvent
from stix2validator import ValidationOptions, validate_instance

from minga.core.choices import TLP
from minga.core.models import AuditEntry, Organisation, User
from minga.intel import queries, services
from minga.intel.models import Observable, StixObject

pytestmark = pytest.mark.django_db

EVENT_UUID = "5e7a1c2d-3b4f-4a6e-8c9d-0a1b2c3d4e5f"


@pytest.fixture
def team(make_org: Callable[..., Organisation]) -> Organisation:
    return make_org("csirt-uy")


@pytest.fixture
def analyst(make_user: Callable[..., User], team: Organisation) -> User:
    return make_user("ana", team)


def attribute(kind: str, value: str, *, to_ids: bool = False, n: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "uuid": f"0000{n:04d}-1111-4222-8333-444455556666",
        "type": kind,
        "value": value,
        "to_ids": to_ids,
        "timestamp": "1768471200",
        "category": "Network activity",
        **extra,
    }


def event(*attributes: dict[str, Any], tags: tuple[str, ...] = ("tlp:amber+strict",), **extra: Any) -> dict:
    return {
        "Event": {
            "uuid": EVENT_UUID,
            "info": "Phishing wave against ministries",
            "date": "2026-01-15",
            "timestamp": "1768471200",
            "publish_timestamp": "1768471200",
            "distribution": "1",
            "Tag": [{"name": name} for name in tags],
            "Attribute": list(attributes),
            **extra,
        }
    }


def misp_file(document: Any) -> io.BytesIO:
    return io.BytesIO(json.dumps(document).encode())


def test_an_event_becomes_a_report_with_indicators_and_observations(
    analyst: User, team: Organisation
) -> None:
    document = event(
        attribute("ip-dst", "198.51.100.7", to_ids=True, n=1, comment="C2 server"),
        attribute("domain", "Evil.Example", n=2),
        attribute("url", "http://evil.example/login?a='b'", to_ids=True, n=3),
        attribute("email-src", "boss@evil.example", to_ids=True, n=4),
        attribute("sha256", "AB" * 32, to_ids=True, n=5),
        attribute("filename|md5", "invoice.pdf.exe|" + "cd" * 16, n=6),
        attribute("domain|ip", "c2.evil.example|203.0.113.5", to_ids=True, n=7),
        attribute("AS", "AS64500", n=8),
        attribute("yara", "rule demo { condition: true }", to_ids=True, n=9),
        attribute("vulnerability", "CVE-2026-1234", n=10),
        attribute("ip-src", "2001:db8::1", n=11, Tag=[{"name": "tlp:red"}]),
        attribute("text", "free text", n=12),
        attribute("ip-dst", "not-an-ip", to_ids=True, n=13),
        attribute("md5", "0" * 32, n=14, deleted=True),
        attribute("ip-dst|port", "198.51.100.20|8443", to_ids=True, n=17),
        attribute("ip-src|port", "2001:db8::20|22", n=18),
        attribute(
            "ssdeep",
            "96:s4Ud1Lj96tHHlZDrwciQmA+4uy1I0G4HYuL8N3TzS8QsO/wqWXLcMSx:sF1LjEtHHlZDrwciQmA+4uy1I0G4HYuL8N3TzS8QsO/wqWXLcMSx",
            n=19,
        ),
        attribute("x509-fingerprint-sha1", "12" * 20, to_ids=True, n=20),
        attribute("ip-dst|port", "198.51.100.20|http", n=21),
        Object=[
            {
                "name": "file",
                "uuid": "99999999-1111-4222-8333-444455556666",
                "Attribute": [
                    attribute("filename", "dropper.exe", to_ids=True, n=15, object_relation="filename"),
                    attribute("size-in-bytes", "1024", n=16, object_relation="size-in-bytes"),
                ],
            }
        ],
        tags=("tlp:amber+strict", 'misp-galaxy:threat-actor="Demo"'),
    )
    result = services.import_file(analyst, team, misp_file(document), TLP.GREEN, fmt="misp")
    assert result.error == ""
    reasons = {r.index: r.reason for r in result.rejections}
    assert sorted(reasons) == [11, 12, 13, 18, 20]  # attribute positions through the file, from 0
    assert "198.51.100.20|http is not a valid ip-dst|port value" in reasons[18]
    assert "text has no STIX 2.1 mapping" in reasons[11]
    assert "not-an-ip is not a valid ip-dst value" in reasons[12]
    assert "deleted in MISP" in reasons[13]
    assert "size-in-bytes has no STIX 2.1 mapping" in reasons[20]

    stored = {row.stix_id: row for row in StixObject.objects.all()}
    report = stored[f"report--{EVENT_UUID}"]
    assert report.label == "Phishing wave against ministries"
    assert report.data["labels"] == ['misp-galaxy:threat-actor="Demo"']
    indicator = stored["indicator--00000001-1111-4222-8333-444455556666"]
    assert indicator.data["pattern"] == "[ipv4-addr:value = '198.51.100.7']"
    assert indicator.data["description"] == "C2 server"
    assert stored["indicator--00000003-1111-4222-8333-444455556666"].data["pattern"] == (
        "[url:value = 'http://evil.example/login?a=\\'b\\'']"
    )
    assert stored["indicator--00000009-1111-4222-8333-444455556666"].data["pattern_type"] == "yara"
    assert stored["indicator--00000017-1111-4222-8333-444455556666"].data["pattern"] == (
        "[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '198.51.100.20' "
        "AND network-traffic:dst_port = 8443]"
    )
    assert any(row.type == "network-traffic" and row.data["src_port"] == 22 for row in stored.values())
    assert "observed-data--00000002-1111-4222-8333-444455556666" in stored
    assert stored["vulnerability--00000010-1111-4222-8333-444455556666"].label == "CVE-2026-1234"
    assert set(report.data["object_refs"]) <= set(stored)
    # TLP: the event's tag wins over the importer's choice; an attribute's stricter tag wins.
    assert report.tlp == indicator.tlp == TLP.AMBER_STRICT
    assert stored["observed-data--00000011-1111-4222-8333-444455556666"].tlp == TLP.RED
    # Addresses behind references (domain|ip, ip-dst|port) correlate too.
    assert {
        "198.51.100.7",
        "evil.example",
        "ab" * 32,
        "cd" * 16,
        "c2.evil.example",
        "203.0.113.5",
        "198.51.100.20",
    } <= set(Observable.objects.values_list("value", flat=True))
    for row in stored.values():
        outcome = validate_instance(queries.emitted(row), ValidationOptions())
        assert outcome.is_valid, (row.type, [str(e) for e in outcome.errors])
    entry = AuditEntry.objects.get(action="intel.misp_imported")
    assert entry.details["format"] == "misp" and entry.details["rejected"] == 5
    # Importing the same event again is a replay.
    again = services.import_file(analyst, team, misp_file(document), TLP.GREEN, fmt="misp")
    assert again.accepted == 0 and again.duplicates == result.accepted


def test_without_a_tlp_tag_the_importers_choice_applies_within_what_the_distribution_allows(
    analyst: User, team: Organisation
) -> None:
    plain = event(attribute("ip-dst", "198.51.100.8", to_ids=True, n=1), tags=())
    private = event(attribute("ip-dst", "198.51.100.9", to_ids=True, n=2), tags=())
    private["Event"]["uuid"] = "6e7a1c2d-3b4f-4a6e-8c9d-0a1b2c3d4e5f"
    private["Event"]["distribution"] = "0"
    group = event(
        attribute("ip-dst", "198.51.100.10", to_ids=True, n=3, distribution="4", sharing_group_id="1"),
        tags=(),
    )
    group["Event"]["uuid"] = "7e7a1c2d-3b4f-4a6e-8c9d-0a1b2c3d4e5f"
    result = services.import_file(analyst, team, misp_file([plain, private, group]), TLP.GREEN, fmt="misp")
    assert (result.accepted, result.rejected) == (6, 0)
    tlps = dict(StixObject.objects.filter(type="indicator").values_list("label", "tlp"))
    assert tlps == {"198.51.100.8": TLP.GREEN, "198.51.100.9": TLP.AMBER_STRICT, "198.51.100.10": TLP.AMBER}


def test_a_misp_search_answer_is_read_too(analyst: User, team: Organisation) -> None:
    answer = {"response": [event(attribute("domain", "evil.example", to_ids=True, n=1))]}
    result = services.import_file(analyst, team, misp_file(answer), TLP.GREEN, fmt="misp")
    assert result.accepted == 2


def test_what_is_not_a_misp_event_gets_a_clear_error(analyst: User, team: Organisation) -> None:
    for content, message in (
        (b"", "empty"),
        (b"hello", "not a JSON object or list"),
        (b'{"type": "bundle"}', "This is not a MISP event"),
    ):
        with pytest.raises(ValidationError, match=message):
            services.import_file(analyst, team, io.BytesIO(content), TLP.GREEN, fmt="misp")
    broken = services.import_file(
        analyst, team, misp_file([{"Event": {"Attribute": []}}, {"Event": []}]), TLP.GREEN, fmt="misp"
    )
    assert broken.accepted == 0 and broken.rejected == 2
    assert "info field" in broken.rejections[0].reason
    nothing = services.import_file(
        analyst, team, misp_file(event(attribute("text", "x", n=1))), TLP.GREEN, fmt="misp"
    )
    assert nothing.accepted == 0 and "no attribute that Minga could map" in nothing.rejections[-1].reason
    truncated = misp_file([event(attribute("domain", "a.example", to_ids=True, n=1)), event()]).getvalue()
    cut = services.import_file(analyst, team, io.BytesIO(truncated[:-30]), TLP.GREEN, fmt="misp")
    assert cut.accepted == 2 and "not valid JSON after event 1" in cut.error


def test_a_search_exports_as_a_misp_event_that_pymisp_loads(
    analyst: User, team: Organisation, make_org: Callable[..., Organisation], make_user: Callable[..., User]
) -> None:
    document = event(
        attribute("ip-dst", "198.51.100.7", to_ids=True, n=1),
        attribute("domain", "evil.example", n=2),
        attribute("filename|sha256", "a.exe|" + "ef" * 32, to_ids=True, n=3),
        attribute("x509-fingerprint-sha1", "12" * 20, n=4),
        attribute("ssdeep", "3:abc:def", to_ids=True, n=5),
        tags=("tlp:amber",),
    )
    services.import_file(analyst, team, misp_file(document), TLP.GREEN, fmt="misp")
    exported = services.export_objects(
        analyst, queries.search(analyst, queries.Search()), scope="", fmt="misp"
    )
    loaded = MISPEvent()
    loaded.load(exported.decode())
    assert [tag.name for tag in loaded.tags] == ["tlp:amber"]
    found = {(a.type, a.value, bool(a.to_ids)) for a in loaded.attributes}
    assert {
        ("ip-dst", "198.51.100.7", True),
        ("domain", "evil.example", False),
        ("filename", "a.exe", True),
        ("sha256", "ef" * 32, True),
        ("x509-fingerprint-sha1", "12" * 20, False),
        ("ssdeep", "3:abc:def", True),
    } <= found
    assert all([t.name for t in a.tags] == ["tlp:amber"] for a in loaded.attributes)
    entry = AuditEntry.objects.get(action="intel.exported")
    assert entry.details["format"] == "misp" and entry.details["skipped"] >= 2  # report, observed-data
    # And Minga reads its own export back: the team imports it again, nothing rejected. The
    # indicators and observables come back as the versions already stored (same ids, same
    # times); new are the export's report, the observed-data around the observables, and the
    # hash that the export split from its filename|sha256 pair.
    again = services.import_file(analyst, team, io.BytesIO(exported), TLP.GREEN, fmt="misp")
    assert again.rejected == 0, again.rejections
    assert (again.duplicates, again.accepted) == (5, 4)
    # Another team importing it keeps copies of its own: versions are kept per organisation,
    # and nothing in its result says that the team holds them already.
    other = make_org("csirt-py")
    theirs = services.import_file(make_user("pia", other), other, io.BytesIO(exported), TLP.GREEN, fmt="misp")
    assert (theirs.rejected, theirs.duplicates, theirs.accepted) == (0, 0, 9)
