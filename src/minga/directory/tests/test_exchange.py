"""Bulk exchange of constituencies: exports that spreadsheets cannot turn into formulas, and
imports that name each bad row and save all or nothing."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from minga.core.choices import Role
from minga.directory import exchange, services
from minga.directory.models import ConstituencyASN, ConstituencyDomain, ConstituencyNetwork


@pytest.fixture
def two_teams(make_org, make_user):
    a, b = make_org("csirt-a"), make_org("csirt-b")
    services.add_constituency(
        make_user("boss-a", a, Role.ORG_ADMIN), a, ["8.8.8.0/24", "AS15169", "example.org"]
    )
    services.add_constituency(make_user("boss-b", b, Role.ORG_ADMIN), b, ["2800:1::/32"])
    return a, b


def _wipe() -> None:
    for model in (ConstituencyNetwork, ConstituencyASN, ConstituencyDomain):
        model.objects.all().delete()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_then_import_restores_the_constituency(two_teams, tmp_path, fmt):
    out = io.StringIO()
    call_command("directory", "export", "--format", fmt, stdout=out)
    path = tmp_path / f"constituency.{fmt}"
    path.write_text(out.getvalue())
    if fmt == "json":
        assert len(json.loads(out.getvalue())["constituency"]) == 4
    _wipe()
    done = io.StringIO()
    call_command("directory", "import", str(path), stdout=done)
    assert "4 entries imported" in done.getvalue()
    assert set(ConstituencyNetwork.objects.values_list("cidr", flat=True)) == {"8.8.8.0/24", "2800:1::/32"}


def test_bad_rows_are_named_and_nothing_is_imported(two_teams, tmp_path):
    _wipe()
    path = tmp_path / "bad.csv"
    path.write_text(
        "organisation,kind,value\n"
        "csirt-a,network,9.9.9.0/24\n"
        'csirt-a,domain,"=HYPERLINK(""http://evil.example"",""x"")"\n'
        "nobody,asn,64500\n"
        "csirt-b,asn,10.0.0.0/8\n"
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="3 bad row"):
        call_command("directory", "import", str(path), stderr=err)
    report = err.getvalue().splitlines()
    assert report[0].startswith("line 3, value: =HYPERLINK")
    assert report[1] == "line 4, organisation: no organisation is called 'nobody'"
    assert (report[2].startswith("line 5, value: ") and "not a asn" in report[2]) or "private" in report[2]
    assert not ConstituencyNetwork.objects.exists()


def test_exports_neutralise_spreadsheet_formulas():
    assert exchange.neutralise("=1+1") == "'=1+1"
    assert exchange.neutralise("@SUM(A1)") == "'@SUM(A1)"
    assert exchange.neutralise("-2+3") == "'-2+3"
    assert exchange.neutralise("example.org") == "example.org"
    assert exchange.unneutralise("'=1+1") == "=1+1" and exchange.unneutralise("'quoted") == "'quoted"


def test_import_format_errors_are_clear(db, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("directory", "import", str(path), stderr=io.StringIO())
    headerless = tmp_path / "x.csv"
    headerless.write_text("a,b\n1,2\n")
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("directory", "import", str(headerless), stderr=err)
    assert "missing columns: kind, organisation, value" in err.getvalue()
