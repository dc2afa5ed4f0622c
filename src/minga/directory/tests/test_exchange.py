"""Bulk exchange of organisations, contacts and constituencies: exports that spreadsheets cannot
turn into formulas and that show only what the reader may read; imports that name each bad row
and save all or nothing, from the CLI, the exchange page and the REST API."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError

from minga.core.choices import Role
from minga.core.models import AuditEntry, Organisation
from minga.directory import exchange, services
from minga.directory.choices import OrganisationKind
from minga.directory.models import (
    ConstituencyASN,
    ConstituencyDomain,
    ConstituencyNetwork,
    MemberState,
    OrganisationProfile,
    PointOfContact,
    Sector,
)

KEY = Path(__file__).parent / "data" / "ed25519-test-key.asc"


@pytest.fixture
def two_teams(make_org, make_user):
    a, b = make_org("csirt-a"), make_org("csirt-b")
    boss_a = make_user("boss-a", a, Role.ORG_ADMIN)
    services.update_profile(
        None,
        a,
        kind=OrganisationKind.NATIONAL_CSIRT,
        state=MemberState.objects.get(code="CL"),
        sectors=Sector.objects.filter(slug__in=["health", "energy"]),
    )
    services.update_profile(None, b, kind=OrganisationKind.SECTOR_CSIRT, state=None, sectors=[], parent=a)
    services.add_constituency(boss_a, a, ["8.8.8.0/24", "AS15169", "example.org"])
    services.add_constituency(make_user("boss-b", b, Role.ORG_ADMIN), b, ["2800:1::/32"])
    services.save_contact(
        None,
        a,
        role="duty",
        name="=cmd|' /C calc'!A0",  # a spreadsheet payload, kept as text
        email="duty@csirt-a.example",
        phone_numbers=["+56 2 2123 4567"],
        languages=["es", "en"],
        hours="24/7",
        time_zone="America/Santiago",
        pgp_key=KEY.read_text(),
    )
    services.save_contact(None, b, role="technical", name="SOC", email="soc@csirt-b.example")
    return a, b


def _export(dataset: str, fmt: str) -> str:
    out = io.StringIO()
    call_command("directory", "export", dataset, "--format", fmt, stdout=out)
    return out.getvalue()


def _import(path: Path, dataset: str) -> str:
    out = io.StringIO()
    call_command("directory", "import", dataset, str(path), stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_every_dataset_survives_export_wipe_and_import(two_teams, tmp_path, fmt):
    files = {}
    for dataset in exchange.DATASETS:
        files[dataset] = tmp_path / f"{dataset}.{fmt}"
        files[dataset].write_text(_export(dataset, fmt))
    before = {d: exchange.export_rows(None, d) for d in exchange.DATASETS}
    PointOfContact.objects.all().delete()
    for model in (ConstituencyNetwork, ConstituencyASN, ConstituencyDomain):
        model.objects.all().delete()
    OrganisationProfile.objects.all().delete()
    Organisation.objects.filter(short_name="csirt-b").delete()

    assert "1 created, 1 updated" in _import(files["organisations"], "organisations")
    assert "2 created, 0 updated" in _import(files["contacts"], "contacts")
    assert "4 created" in _import(files["constituency"], "constituency")

    after = {d: exchange.export_rows(None, d) for d in exchange.DATASETS}
    # Organisations that only the import knows about (none here) would differ; the rest is equal,
    # except that imported contacts are unconfirmed until they confirm.
    assert after["organisations"] == before["organisations"]
    assert after["constituency"] == before["constituency"]
    assert [{**c, "last_verified_at": ""} for c in before["contacts"]] == after["contacts"]
    assert PointOfContact.objects.get(email="duty@csirt-a.example").pgp_key.startswith("-----BEGIN PGP")


def test_csv_exports_neutralise_formulas_and_imports_restore_them(two_teams):
    text = _export("contacts", "csv")
    row = next(r for r in csv.DictReader(io.StringIO(text)) if r["role"] == "duty")
    assert row["name"] == "'=cmd|' /C calc'!A0"
    assert row["phone_numbers"] == "'+56221234567" and row["languages"] == "es;en"
    assert exchange.neutralise("=1+1") == "'=1+1"
    assert exchange.neutralise("@SUM(A1)") == "'@SUM(A1)"
    assert exchange.neutralise("-2+3") == "'-2+3"
    assert exchange.neutralise("example.org") == "example.org"
    assert exchange.unneutralise("'=1+1") == "=1+1" and exchange.unneutralise("'quoted") == "'quoted"


def test_bad_constituency_rows_are_named_and_nothing_is_imported(two_teams, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "organisation,kind,value\n"
        "csirt-a,network,9.9.9.0/24\n"
        'csirt-a,domain,"=HYPERLINK(""http://evil.example"",""x"")"\n'
        "nobody,asn,64500\n"
        "csirt-b,asn,8.8.4.0/24\n"
        "csirt-b,network,192.168.0.0/16\n"
        "csirt-b,network,10.0.0.1/8\n"
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="5 bad row"):
        call_command("directory", "import", "constituency", str(path), stderr=err)
    report = err.getvalue().splitlines()
    assert report[0].startswith("line 3, value: =HYPERLINK")
    assert report[1] == "line 4, organisation: no organisation is called 'nobody'"
    assert report[2] == "line 5, value: '8.8.4.0/24' is a network, not a asn"
    assert report[3] == "line 6, value: 192.168.0.0/16 is a private, reserved or special-purpose range."
    assert report[4].startswith("line 7, value: 10.0.0.1/8 has host bits set")
    assert not ConstituencyNetwork.objects.filter(cidr="9.9.9.0/24").exists()


def test_organisations_import_creates_updates_and_links_parents(two_teams, node_admin, tmp_path):
    path = tmp_path / "orgs.json"
    path.write_text(
        json.dumps(
            {
                "organisations": [
                    {
                        "short_name": "cert-child",
                        "name": "Child CERT",
                        "kind": "sector_csirt",
                        "parent": "cert-new",
                    },
                    {
                        "short_name": "cert-new",
                        "name": "New CERT",
                        "kind": "national_csirt",
                        "state": "ar",
                        "sectors": ["health", "financial"],
                        "network_member": False,
                    },
                    {
                        "short_name": "csirt-a",
                        "name": "CSIRT A renamed",
                        "kind": "national_csirt",
                        "state": "CL",
                    },
                ]
            }
        )
    )
    assert "2 created, 1 updated" in _import(path, "organisations")
    child = OrganisationProfile.objects.get(organisation__short_name="cert-child")
    assert child.parent.short_name == "cert-new"
    new = Organisation.objects.get(short_name="cert-new")
    assert not new.is_network_member and new.profile.state.code == "AR"
    assert sorted(s.slug for s in new.profile.sectors.all()) == ["financial", "health"]
    assert Organisation.objects.get(short_name="csirt-a").name == "CSIRT A renamed"
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {
        "organisation.create",
        "organisation.update",
        "organisation.update_profile",
        "directory.import",
    } <= actions


def test_organisation_rows_are_checked_before_anything_is_written(two_teams, tmp_path):
    path = tmp_path / "orgs.csv"
    path.write_text(
        "short_name,name,kind,state,sectors,parent,hosting_node,network_member\n"
        "fine-org,Fine,academia,,,,,\n"
        "Bad Name!,X,academia,,,,,\n"
        "other,Other,wizards,ZZ,health;magic,nobody,,maybe\n"
        "fine-org,Again,academia,,,,,\n"
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("directory", "import", "organisations", str(path), stderr=err)
    report = err.getvalue()
    assert "line 3, short_name: use 2 to 40 lower-case letters" in report
    assert "line 4, kind: 'wizards' is not one of" in report
    assert "line 4, state: 'ZZ' is not a member state's ISO code" in report
    assert "line 4, sectors: unknown sectors: magic" in report
    assert "line 4, parent: no organisation is called 'nobody'" in report
    assert "line 4, network_member: write true or false" in report
    assert "line 5, short_name: fine-org appears twice in the file" in report
    assert not Organisation.objects.filter(short_name="fine-org").exists()


def test_a_parent_loop_found_while_applying_rolls_back_every_row(two_teams, tmp_path):
    # csirt-b's parent is csirt-a; making csirt-a a child of csirt-b is refused late, by the service.
    path = tmp_path / "loop.csv"
    path.write_text(
        "short_name,name,kind,parent\nbrand-new,Brand new,academia,\ncsirt-a,CSIRT A,national_csirt,csirt-b\n"
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 bad row"):
        call_command("directory", "import", "organisations", str(path), stderr=err)
    assert "line 3, parent: An organisation cannot be its own parent or ancestor." in err.getvalue()
    assert not Organisation.objects.filter(short_name="brand-new").exists()
    assert not AuditEntry.objects.filter(action="directory.import").exists()


def test_contact_rows_name_each_bad_field_and_existing_contacts_are_updated(two_teams, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text(
        "organisation,role,name,email,phone_numbers,languages,time_zone,pgp_fingerprint,pgp_key\n"
        "csirt-a,wizard,,not-an-address,+1 555 0100,spanish,Mars/Olympus,,\n"
        f'csirt-a,duty,Duty,duty@csirt-a.example,,,,{"A" * 40},"{KEY.read_text()}"\n'
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("directory", "import", "contacts", str(path), stderr=err)
    report = err.getvalue()
    for field in ("role", "name", "email", "phone_numbers", "languages", "time_zone"):
        assert f"line 2, {field}: " in report
    assert "line 3, pgp_fingerprint: The key's fingerprint is E44E222A" in report

    path.write_text(
        "organisation,role,name,email,phone_numbers,languages,last_verified_at\n"
        "csirt-a,duty,Night desk,DUTY@csirt-a.example,+56 2 2123 4567,es,2026-01-01T00:00:00+00:00\n"
        "csirt-a,legal,Counsel,legal@csirt-a.example,,,\n"
    )
    assert "1 created, 1 updated" in _import(path, "contacts")
    duty = PointOfContact.objects.get(organisation__short_name="csirt-a", role="duty")
    assert duty.name == "Night desk" and duty.last_verified_at is None
    assert PointOfContact.objects.filter(role="legal", email="legal@csirt-a.example").exists()


def test_org_admins_import_only_into_their_own_organisation(two_teams):
    boss_a = Organisation.objects.get(short_name="csirt-a").memberships.get(user__username="boss-a").user
    rows = (
        "organisation,role,name,email\ncsirt-a,policy,Policy,p@a.example\ncsirt-b,policy,Policy,p@b.example\n"
    )
    with pytest.raises(exchange.ImportRejected) as rejected:
        exchange.import_text(boss_a, "contacts", rows, "csv")
    assert [str(e) for e in rejected.value.errors] == ["line 3, organisation: you may not change csirt-b"]
    with pytest.raises(exchange.ImportRejected) as rejected:
        exchange.import_text(boss_a, "organisations", "short_name,name,kind\nmine,Mine,academia\n", "csv")
    assert "only node admins may create organisations" in str(rejected.value)
    assert not PointOfContact.objects.filter(role="policy").exists()


def test_exports_hold_only_what_the_reader_may_read(two_teams, make_org, make_user, login_client):
    outsider = make_user("outsider", make_org("not-member", member=False))
    assert exchange.export_rows(outsider, "contacts") == []
    # Organisations and constituencies are readable by anyone with a membership; contacts are not.
    assert len(exchange.export_rows(outsider, "organisations")) == 3
    client = login_client(outsider)
    response = client.get("/directory/exchange/export/?dataset=contacts&format=json")
    assert response.status_code == 200 and json.loads(response.content) == {"contacts": []}
    assert AuditEntry.objects.filter(action="directory.export", actor=outsider).exists()
    member = make_user("member", make_org("member-org"))
    emails = {r["email"] for r in exchange.export_rows(member, "contacts")}
    assert emails == {"duty@csirt-a.example", "soc@csirt-b.example"}


def test_the_exchange_page_lists_bad_rows_then_imports_a_good_file(two_teams, node_admin, login_client):
    client = login_client(node_admin)
    page = client.get("/directory/exchange/")
    assert page.status_code == 200 and b"?dataset=contacts&amp;format=csv" in page.content
    bad = SimpleUploadedFile("c.csv", b"organisation,kind,value\ncsirt-a,network,300.1.1.0/24\n")
    response = client.post("/directory/exchange/", {"dataset": "constituency", "file": bad})
    assert response.status_code == 200
    assert b"line 2, value: 300.1.1.0/24 is not an IP network" in response.content
    good = SimpleUploadedFile(
        "c.json",
        json.dumps(
            {"constituency": [{"organisation": "csirt-b", "kind": "asn", "value": "AS7018"}]}
        ).encode(),
    )
    response = client.post("/directory/exchange/", {"dataset": "constituency", "file": good}, follow=True)
    assert b"Imported: 1 created, 0 updated." in response.content
    assert ConstituencyASN.objects.filter(organisation__short_name="csirt-b", asn=7018).exists()
    latin1 = SimpleUploadedFile(
        "c.csv", "organisation,kind,value\ncsirt-b,domain,caf\xe9.example\n".encode("latin-1")
    )
    response = client.post("/directory/exchange/", {"dataset": "constituency", "file": latin1})
    assert b"The file is not UTF-8 text." in response.content
    download = client.get("/directory/exchange/export/?dataset=constituency&format=csv")
    assert download["Content-Disposition"] == 'attachment; filename="minga-constituency.csv"'
    assert b"csirt-b,asn,7018" in download.content
    assert client.get("/directory/exchange/export/?dataset=users&format=csv").status_code == 400


def test_rest_import_answers_201_or_422_with_every_bad_row(two_teams, node_admin, bearer, client):
    headers = bearer(node_admin)
    body = {
        "format": "csv",
        "content": "organisation,kind,value\ncsirt-a,asn,AS0\ncsirt-a,domain,ok.example\n",
    }
    response = client.post(
        "/api/v1/directory/import/constituency", body, content_type="application/json", headers=headers
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"line": 2, "unit": "line", "field": "value", "message": "AS0 is reserved (RFC 7607)."}
    ]
    assert not ConstituencyDomain.objects.filter(domain="ok.example").exists()
    body = {
        "format": "json",
        "content": json.dumps(
            {"constituency": [{"organisation": "csirt-a", "kind": "domain", "value": "Bücher.example"}]}
        ),
    }
    response = client.post(
        "/api/v1/directory/import/constituency", body, content_type="application/json", headers=headers
    )
    assert response.status_code == 201 and response.json() == {
        "dataset": "constituency",
        "created": 1,
        "updated": 0,
    }
    assert ConstituencyDomain.objects.filter(domain="xn--bcher-kva.example").exists()
    export = client.get("/api/v1/directory/export/contacts?format=csv", headers=headers)
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    assert "'=cmd|' /C calc'!A0" in export.content.decode()
    assert client.get("/api/v1/directory/export/users", headers=headers).status_code == 422


def test_nul_characters_and_non_objects_are_refused_with_their_place(two_teams):
    contact = {"organisation": "csirt-a", "role": "duty", "name": "a\x00b", "email": "x@y.example"}
    escaped = json.dumps({"contacts": [contact, 7]})  # the NUL travels escaped, as \\u0000
    assert "\\u0000" in escaped
    with pytest.raises(exchange.ImportRejected) as rejected:
        exchange.import_text(None, "contacts", escaped, "json")
    assert [str(e) for e in rejected.value.errors] == [
        "item 1, name: NUL characters are not allowed",
        "item 2, item: each item must be an object",
    ]
    with pytest.raises(exchange.ImportRejected, match="NUL"):
        exchange.import_text(
            None, "contacts", "organisation,role,name,email\ncsirt-a,duty,a\x00b,x@y.example\n", "csv"
        )
