"""CSV indicators with a column mapping: rows become indicators and observables (valid STIX
2.1), bad rows are rejected with their line; exports neutralise spreadsheet formulas."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from stix2validator import ValidationOptions, validate_instance

from minga.core.choices import TLP
from minga.core.models import AuditEntry, Organisation, User
from minga.intel import csvio, queries, services
from minga.intel.models import Observable, StixObject

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 1, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def team(make_org: Callable[..., Organisation]) -> Organisation:
    return make_org("csirt-uy")


@pytest.fixture
def analyst(make_user: Callable[..., User], team: Organisation) -> User:
    return make_user("ana", team)


def load(user: User, org: Organisation, text: str, **mapping: Any) -> services.ImportResult:
    return services.import_file(
        user, org, io.BytesIO(text.encode()), TLP.AMBER, fmt="csv", mapping=mapping, now=NOW
    )


FEED = """indicator;kind;comment;first_seen;score;tags
198.51.100.7;ip;C2 server;2026-01-15;80;c2,botnet
http://evil.example/a'b;;Phishing page;2026-01-15T10:00:00Z;;
EVIL.example;domain;;;;
ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB;;;;;
boss@evil.example;;;;;
2001:db8::1;ipv4-addr;;;;
=HYPERLINK("http://evil.example","click");;;;;
198.51.100.8;ip;;yesterday;;
198.51.100.9;ip;;;150;
198.51.100.10;fax;;;;
"""


def test_rows_become_indicators_and_observables_and_bad_rows_are_rejected_by_line(
    analyst: User, team: Organisation
) -> None:
    result = load(
        analyst,
        team,
        FEED,
        value="indicator",
        type="kind",
        description="comment",
        valid_from="first_seen",
        confidence="score",
        labels="tags",
        delimiter=";",
    )
    assert result.error == ""
    reasons = {r.index: r.reason for r in result.rejections}
    assert sorted(reasons) == [7, 8, 9, 10, 11]
    assert "2001:db8::1 is not a valid ipv4-addr value" in reasons[7]
    assert reasons[8].startswith("line 8: cannot tell what =HYPERLINK")
    assert "valid_from yesterday is not a date" in reasons[9]
    assert "confidence 150" in reasons[10]
    assert "Unknown type fax" in reasons[11]
    assert result.accepted == 10  # five indicators, five observables
    indicators = {row.label: row.data for row in StixObject.objects.filter(type="indicator")}
    first = indicators["198.51.100.7"]
    assert first["pattern"] == "[ipv4-addr:value = '198.51.100.7']"
    assert (first["confidence"], first["labels"], first["description"]) == (80, ["c2", "botnet"], "C2 server")
    assert first["valid_from"] == "2026-01-15T00:00:00.000Z"
    assert indicators["http://evil.example/a'b"]["pattern"] == "[url:value = 'http://evil.example/a\\'b']"
    assert indicators["EVIL.example"]["pattern"] == "[domain-name:value = 'EVIL.example']"
    assert indicators["boss@evil.example"]["valid_from"] == "2026-01-20T08:00:00.000Z"  # the import's time
    assert "file:hashes.'SHA-256'" in indicators["AB" * 32]["pattern"]
    assert {"198.51.100.7", "evil.example", "ab" * 32, "boss@evil.example"} <= set(
        Observable.objects.values_list("value", flat=True)
    )
    for row in StixObject.objects.all():
        assert row.tlp == TLP.AMBER
        outcome = validate_instance(queries.emitted(row), ValidationOptions())
        assert outcome.is_valid, (row.type, [str(e) for e in outcome.errors])
    assert AuditEntry.objects.get(action="intel.csv_imported").details["format"] == "csv"
    again = load(
        analyst,
        team,
        FEED,
        value="indicator",
        type="kind",
        valid_from="first_seen",
        confidence="score",
        delimiter=";",
    )
    assert again.accepted == 0 and again.duplicates == 10


def test_without_a_header_columns_are_numbers_and_one_type_may_hold_for_every_row(
    analyst: User, team: Organisation
) -> None:
    result = load(
        analyst,
        team,
        "x,198.51.100.7\ny,198.51.100.8\n",
        value="2",
        name="1",
        header=False,
        fixed_type="ipv4-addr",
    )
    assert (result.accepted, result.rejected) == (4, 0)
    assert set(StixObject.objects.filter(type="indicator").values_list("label", flat=True)) == {"x", "y"}


def test_a_bad_mapping_or_file_is_refused_before_anything_is_stored(
    analyst: User, team: Organisation
) -> None:
    for mapping, text, message in (
        ({}, "value\n1.2.3.4\n", "Name the column"),
        ({"value": "ioc"}, "value\n1.2.3.4\n", "The file has no column ioc"),
        ({"value": "value", "fixed_type": "fax"}, "value\n1.2.3.4\n", "Unknown type fax"),
        ({"value": "a", "header": False}, "1.2.3.4\n", "columns are numbers"),
        ({"value": "value", "delimiter": "::"}, "value\n", "one character"),
        ({"value": "value", "colour": "x"}, "value\n", "Unknown mapping fields: colour"),
        ({"value": "value"}, "", "empty"),
    ):
        with pytest.raises(ValidationError, match=message):
            load(analyst, team, text, **mapping)
    assert not StixObject.objects.exists()
    with pytest.raises(ValidationError, match="not CSV text in UTF-8"):
        services.import_file(
            analyst,
            team,
            io.BytesIO("value\n198.51.100.7\ncaf\xe9.example\n".encode("latin-1")),
            TLP.AMBER,
            fmt="csv",
            mapping={"value": "value"},
        )


def test_the_export_lists_indicators_with_formulas_neutralised(analyst: User, team: Organisation) -> None:
    load(
        analyst,
        team,
        'value,name\n198.51.100.7,=HYPERLINK("http://x")\n-evil.example,x\n',
        value="value",
        name="name",
    )
    exported = services.export_objects(
        analyst, queries.search(analyst, queries.Search()), scope="", fmt="csv"
    )
    rows = list(csv.DictReader(io.StringIO(exported.decode())))
    assert list(rows[0]) == list(csvio.EXPORT_COLUMNS)
    by_value = {row["value"]: row for row in rows}
    assert by_value["198.51.100.7"]["type"] == "ipv4-addr"
    assert by_value["198.51.100.7"]["tlp"] == "TLP:AMBER" and by_value["198.51.100.7"]["origin"] == "csirt-uy"
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())
    entry = AuditEntry.objects.get(action="intel.exported")
    assert entry.details["format"] == "csv" and entry.details["indicators"] == len(rows)
    # What Minga exported imports back.
    again = services.import_file(
        analyst,
        team,
        io.BytesIO(exported),
        TLP.AMBER,
        fmt="csv",
        mapping={"value": "value", "type": "type", "valid_from": "valid_from"},
    )
    assert again.rejected == 0, again.rejections


@pytest.mark.parametrize(
    ("type_name", "value"),
    [
        ("ipv4-addr", "198.51.100.7"),
        ("ipv6-addr", "2001:db8::1"),
        ("domain-name", "bücher.example"),
        ("url", 'http://evil.example/"a\\b\u2028'),
        ("email-addr", "boss@evil.example"),
        ("mac-addr", "00:00:5e:00:53:01"),
    ],
)
def test_observable_ids_are_those_the_oasis_library_computes(type_name: str, value: str) -> None:
    import stix2

    from minga.intel import convert

    expected = stix2.parse({"type": type_name, "spec_version": "2.1", "value": value}, version="2.1")
    assert convert.sco(type_name, value=value)["id"] == expected.id
