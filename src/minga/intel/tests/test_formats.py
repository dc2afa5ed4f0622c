"""MISP and CSV wherever STIX bundles go: the REST API, the upload page and its background job,
the command line, exports and audit; and the access policy over what they import."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymisp import MISPEvent
from stix2validator import ValidationOptions, validate_string

from minga.core.choices import TLP
from minga.core.models import AuditEntry, Organisation, User
from minga.core.testing import assert_invisible_to
from minga.intel.choices import ImportStatus
from minga.intel.models import ImportJob, StixObject
from minga.intel.tests.test_misp import attribute, event

pytestmark = pytest.mark.django_db

CSV_FEED = "ioc,kind,note\n198.51.100.77,ipv4-addr,C2\nstealer.example,,Dropper site\nnot a thing,,\n"


@dataclass
class Team:
    source: Organisation
    partner_org: Organisation
    outsider_org: Organisation
    analyst: User
    partner: User
    outsider: User


@pytest.fixture
def team(make_org: Callable[..., Organisation], make_user: Callable[..., User]) -> Team:
    source, partner_org, outsider_org = make_org("csirt-cl"), make_org("csirt-pe"), make_org("csirt-bo")
    return Team(
        source,
        partner_org,
        outsider_org,
        make_user("analyst", source),
        make_user("partner", partner_org),
        make_user("outsider", outsider_org),
    )


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _post(client: Client, query: str, body: bytes, content_type: str = "application/octet-stream"):
    return client.post(f"/api/v1/intel/imports?{query}", data=body, content_type=content_type)


def test_the_api_imports_misp_and_csv_and_outsiders_see_none_of_it(team: Team, bearer: Callable) -> None:
    client = _client(team.analyst)
    misp = json.dumps(event(attribute("ip-dst", "198.51.100.66", to_ids=True, n=1), tags=())).encode()
    response = _post(client, "format=misp&tlp=amber&recipient=csirt-pe", misp, "application/json")
    assert response.status_code == 200, response.content
    assert (response.json()["accepted"], response.json()["rejected"]) == (2, 0)
    response = _post(
        client,
        "format=csv&tlp=amber&recipient=csirt-pe&value=ioc&type=kind&description=note",
        CSV_FEED.encode(),
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (4, 1)
    assert body["rejections"][0]["index"] == 4 and "line 4" in body["rejections"][0]["reason"]
    formats = AuditEntry.objects.filter(action__in=["intel.misp_imported", "intel.csv_imported"])
    assert sorted(e.details["format"] for e in formats) == ["csv", "misp"]

    partner = _client(team.partner)
    seen = {o["label"] for o in partner.get("/api/v1/intel/objects?type=indicator").json()["items"]}
    assert seen == {"198.51.100.66", "198.51.100.77", "stealer.example"}
    exported = partner.get("/api/v1/intel/export?format=misp").content.decode()
    loaded = MISPEvent()
    loaded.load(exported)
    assert {a.value for a in loaded.attributes} >= {"198.51.100.66", "198.51.100.77", "stealer.example"}
    assert [t.name for t in loaded.tags] == ["tlp:amber"]
    stix_export = partner.get("/api/v1/intel/export").content.decode()
    results = validate_string(stix_export, ValidationOptions())
    assert results.is_valid, [str(e) for r in results.object_results for e in r.errors]

    urls = [
        "/intel/",
        "/intel/?value=198.51.100.77",
        "/api/v1/intel/objects",
        "/api/v1/intel/objects?value=198.51.100.66",
        "/api/v1/intel/objects?value=stealer.example",
        "/api/v1/intel/export",
        "/api/v1/intel/export?format=misp",
        "/api/v1/intel/export?format=csv",
        "/intel/export.json?format=misp",
        "/intel/export.json?format=csv",
    ]
    rows = list(StixObject.objects.all())
    assert len(rows) == 6
    for row in rows:
        assert row.tlp == TLP.AMBER
        urls_of_row = [*urls, f"/api/v1/intel/objects/{row.stix_id}", f"/intel/objects/{row.stix_id}/"]
        assert_invisible_to(team.outsider, row, urls=urls_of_row)
        assert_invisible_to(team.outsider, row, urls=urls_of_row, headers=bearer(team.outsider))
        outsider = _client(team.outsider)
        for url in urls_of_row:
            response = outsider.get(url)
            if response.status_code == 404:
                continue
            text = response.content.decode()
            assert row.stix_id.split("--")[1] not in text, url
            assert "198.51.100.77" not in text or "198.51.100.77" in url, url


def test_bad_input_is_a_clear_4xx_and_nothing_is_written(team: Team) -> None:
    client = _client(team.analyst)
    cases = [
        ("format=misp&tlp=amber", b"not json", 400, "not a JSON object or list"),
        ("format=misp&tlp=amber", b'{"type": "bundle", "objects": []}', 400, "This is not a MISP event"),
        ("format=csv&tlp=amber", b"a,b\n1,2\n", 400, "Name the column"),
        ("format=csv&tlp=amber&value=ioc", b"a,b\n1,2\n", 400, "no column ioc"),
        ("format=csv&tlp=amber&value=a&fixed_type=fax", b"a\n1\n", 400, "Unknown type fax"),
        ("format=csv&tlp=amber&value=a&delimiter=%3B%3B", b"a\n1\n", 400, "one character"),
        ("format=yaml&tlp=amber", b"a", 422, ""),
    ]
    for query, body, status, message in cases:
        response = _post(client, query, body)
        assert response.status_code == status, (query, response.content)
        assert message in response.content.decode(), (query, response.content)
    assert not StixObject.objects.exists()
    assert client.get("/intel/export.json?format=yaml").status_code == 400
    assert client.get("/api/v1/intel/export?format=yaml").status_code == 422


def test_the_upload_page_queues_csv_with_its_mapping_and_the_job_records_the_format(team: Team) -> None:
    client = _client(team.analyst)
    refused = client.post(
        "/intel/imports/",
        {
            "file": SimpleUploadedFile("feed.csv", CSV_FEED.encode(), content_type="text/csv"),
            "organisation": team.source.pk,
            "tlp": "amber",
            "format": "csv",
        },
    )
    assert refused.status_code == 200 and "Name the column that holds the values" in refused.content.decode()
    assert not ImportJob.objects.exists()
    response = client.post(
        "/intel/imports/",
        {
            "file": SimpleUploadedFile(
                "feed.csv", CSV_FEED.replace(",", ";").encode(), content_type="text/csv"
            ),
            "organisation": team.source.pk,
            "tlp": "green",
            "format": "csv",
            "csv_value": "ioc",
            "csv_type": "kind",
            "csv_description": "note",
            "csv_delimiter": ";",
        },
    )
    job = ImportJob.objects.get()
    assert response.status_code == 302, response.content.decode()
    assert job.format == "csv" and job.mapping["value"] == "ioc" and job.mapping["delimiter"] == ";"
    queued = AuditEntry.objects.get(action="intel.import_queued")
    assert queued.details["format"] == "csv"
    from minga.intel.tasks import run_import

    assert run_import.call(job.pk) == f"import {job.pk}: done"
    job.refresh_from_db()
    assert (job.status, job.accepted, job.rejected) == (ImportStatus.DONE, 4, 1)
    page = client.get(f"/intel/imports/{job.uuid}/").content.decode()
    assert "CSV indicators" in page and "line 4" in page
    # Running the job again (a retry after a crash) is a replay: the same ids, nothing new.
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.QUEUED)
    Path(job.path).write_bytes(CSV_FEED.replace(",", ";").encode())  # the upload, kept until the import ends
    run_import.call(job.pk)
    job.refresh_from_db()
    assert (job.accepted, job.duplicates) == (0, 4)
    listing = client.get("/intel/").content.decode()
    assert "format=misp" in listing and "format=csv" in listing
    table = client.get("/intel/export.json?format=csv")
    assert table["Content-Type"].startswith("text/csv")
    assert {r["value"] for r in csv.DictReader(io.StringIO(table.content.decode()))} == {
        "198.51.100.77",
        "stealer.example",
    }


def test_the_upload_page_queues_misp(team: Team) -> None:
    client = _client(team.analyst)
    document = json.dumps(event(attribute("domain", "evil.example", to_ids=True, n=1))).encode()
    response = client.post(
        "/intel/imports/",
        {
            "file": SimpleUploadedFile("event.json", document, content_type="application/json"),
            "organisation": team.source.pk,
            "tlp": "green",
            "format": "misp",
        },
    )
    assert response.status_code == 302
    from minga.intel.tasks import run_import

    job = ImportJob.objects.get()
    run_import.call(job.pk)
    job.refresh_from_db()
    assert (job.format, job.status, job.accepted) == ("misp", ImportStatus.DONE, 2)


def test_the_command_line_reads_each_format(team: Team, tmp_path, capsys) -> None:
    feed = tmp_path / "feed.tsv"
    feed.write_text(CSV_FEED.replace(",", "\t"))
    call_command(
        "intel",
        "import",
        str(feed),
        "--organisation",
        "csirt-cl",
        "--format",
        "csv",
        "--delimiter",
        "tab",
        "--map",
        "value=ioc",
        "--map",
        "type=kind",
        "--tlp",
        "green",
    )
    captured = capsys.readouterr()
    assert "4 stored, 0 already stored, 1 rejected" in captured.out
    assert "line 4: cannot tell what not a thing is" in captured.err
    headless = tmp_path / "headless.csv"
    headless.write_text("198.51.100.90\n198.51.100.91\n")
    call_command(
        "intel",
        "import",
        str(headless),
        "--organisation",
        "csirt-cl",
        "--format",
        "csv",
        "--no-header",
        "--map",
        "value=1",
        "--type",
        "ipv4-addr",
    )
    assert "4 stored" in capsys.readouterr().out
    with pytest.raises(CommandError, match="FIELD=COLUMN"):
        call_command(
            "intel", "import", str(feed), "--organisation", "csirt-cl", "--format", "csv", "--map", "ioc"
        )
    with pytest.raises(CommandError, match="are for --format csv"):
        call_command("intel", "import", str(feed), "--organisation", "csirt-cl", "--map", "value=ioc")
    misp = tmp_path / "event.json"
    misp.write_text(
        json.dumps(
            event(attribute("url", "http://evil.example/x", to_ids=True, n=1), attribute("comment", "x", n=2))
        )
    )
    call_command("intel", "import", str(misp), "--organisation", "csirt-cl", "--format", "misp")
    captured = capsys.readouterr()
    assert "2 stored" in captured.out and "attribute 1" in captured.err and "comment" in captured.err
    with pytest.raises(CommandError, match="This is not a MISP event"):
        call_command("intel", "import", str(feed), "--organisation", "csirt-cl", "--format", "misp")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.text(alphabet=st.sampled_from(list("{}[]\",:;=\n\\'@-+ 0123456789abcdefEIAT.")), max_size=300).map(
            str.encode
        ),
        st.builds(
            lambda kind, value, extra: json.dumps(
                {
                    "Event": {
                        "info": "x",
                        "Attribute": [{"type": kind, "value": value, "to_ids": True, **extra}],
                    }
                }
            ).encode(),
            st.sampled_from(
                ["ip-dst", "domain", "url", "md5", "filename|sha1", "AS", "mac-address", "yara", "x"]
            ),
            st.text(max_size=40),
            st.dictionaries(
                st.sampled_from(["first_seen", "last_seen", "timestamp", "uuid", "Tag", "distribution"]),
                st.one_of(st.text(max_size=20), st.integers(), st.none()),
                max_size=2,
            ),
        ),
    ),
    fmt=st.sampled_from(["misp", "csv", "stix"]),
)
def test_whatever_the_body_the_answer_is_never_a_500(team: Team, body: bytes, fmt: str) -> None:
    client = _client(team.analyst)
    query = f"format={fmt}&tlp=amber" + ("&value=a&type=b&valid_from=c&confidence=d" if fmt == "csv" else "")
    response = _post(client, query, b"a,b,c,d\n" + body if fmt == "csv" else body)
    assert response.status_code in (200, 400), (response.status_code, response.content[:300])
