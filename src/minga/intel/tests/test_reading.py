"""Reading the store: API, pages, correlation and sightings, all under the access policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from stix2validator import ValidationOptions, validate_instance, validate_string

from minga.core.choices import TLP
from minga.core.models import AuditEntry, Organisation, User
from minga.core.testing import assert_invisible_to
from minga.intel import services, stix
from minga.intel.choices import ImportStatus
from minga.intel.models import ImportJob, StixObject
from minga.intel.tests.bundles import bundle, indicator, sco, sighting, stream

pytestmark = pytest.mark.django_db


@dataclass
class Story:
    source: Organisation  # imports AMBER intel for three named partners
    partners: list[Organisation]
    outsider_org: Organisation  # a member of the network, not named
    analyst: User  # of ``source``
    partner: User  # of partners[0]
    outsider: User  # of ``outsider_org``: sees GREEN, not the AMBER objects
    amber: dict  # an AMBER indicator for 198.51.100.7
    hidden: dict  # an AMBER indicator of the outsider's organisation, same IP, partners not named
    green: dict  # a GREEN domain-name SCO sharing nothing


@pytest.fixture
def story(make_org: Callable[..., Organisation], make_user: Callable[..., User]) -> Story:
    source = make_org("csirt-cl")
    partners = [make_org("csirt-pe"), make_org("csirt-co"), make_org("csirt-ec")]
    outsider_org = make_org("csirt-bo")
    analyst, partner = make_user("analyst", source), make_user("partner", partners[0])
    outsider = make_user("outsider", outsider_org)
    amber, green = indicator("198.51.100.7"), sco("domain-name", "phish.example")
    services.import_bundle(
        analyst, source, stream(amber, sco("ipv4-addr", "198.51.100.7")), TLP.AMBER, partners
    )
    services.import_bundle(analyst, source, stream(green), TLP.GREEN)
    hidden = indicator("198.51.100.7/32", name="The outsider's own")
    services.import_bundle(outsider, outsider_org, stream(hidden), TLP.AMBER)
    return Story(source, partners, outsider_org, analyst, partner, outsider, amber, hidden, green)


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_correlation_lists_only_what_the_reader_may_see(story: Story) -> None:
    # The partner sees the AMBER indicator and its SCO, never the outsider's indicator.
    response = _client(story.partner).get(f"/api/v1/intel/objects/{story.amber['id']}/correlations")
    assert response.status_code == 200
    ids = [c["object"]["id"] for c in response.json()]
    assert len(ids) == 1 and ids[0].startswith("ipv4-addr--")
    assert response.json()[0]["shared"] == [{"kind": "ipv4-addr", "value": "198.51.100.7"}]
    # The outsider's indicator correlates with nothing it may see: not even a count leaks.
    response = _client(story.outsider).get(f"/api/v1/intel/objects/{story.hidden['id']}/correlations")
    assert response.json() == []
    page = _client(story.outsider).get(f"/intel/objects/{story.hidden['id']}/")
    assert page.status_code == 200
    assert story.amber["id"] not in page.content.decode()
    # Whereas the source, which may read both... does not see the outsider's either.
    page = _client(story.analyst).get(f"/intel/objects/{story.amber['id']}/").content.decode()
    assert story.hidden["id"] not in page and "ipv4-addr--" in page


def test_objects_outside_the_policy_are_invisible_everywhere(story: Story, bearer: Callable) -> None:
    for stix_id in (story.amber["id"],):
        row = StixObject.objects.get(stix_id=stix_id)
        urls = [
            "/intel/",
            f"/intel/?value={'198.51.100.7'}",
            f"/intel/objects/{stix_id}/",
            f"/intel/objects/{stix_id}/bundle.json",
            "/api/v1/intel/objects",
            "/api/v1/intel/objects?value=198.51.100.7",
            f"/api/v1/intel/objects/{stix_id}",
            f"/api/v1/intel/objects/{stix_id}/versions",
            f"/api/v1/intel/objects/{stix_id}/bundle",
            f"/api/v1/intel/objects/{stix_id}/correlations",
            f"/api/v1/intel/objects/{stix_id}/sightings",
            "/api/v1/intel/export?value=198.51.100.7",
            "/intel/export.json?value=198.51.100.7",
        ]
        assert_invisible_to(story.outsider, row, urls=urls)
        assert_invisible_to(story.outsider, row, urls=urls, headers=bearer(story.outsider))
        client = _client(story.outsider)
        for url in urls:
            response = client.get(url)
            assert response.status_code == 404 or stix_id not in response.content.decode(), url


def test_search_by_value_type_tlp_and_origin(story: Story) -> None:
    client = _client(story.partner)
    found = client.get("/api/v1/intel/objects", {"value": "198.51.100.7/32"}).json()["items"]
    assert {o["type"] for o in found} == {"indicator", "ipv4-addr"}
    assert {o["type"]: o["modified"] for o in found}["ipv4-addr"] is None  # SCOs have no versions
    assert client.get("/api/v1/intel/objects", {"type": "domain-name"}).json()["count"] == 1
    assert client.get("/api/v1/intel/objects", {"tlp": "green"}).json()["items"][0]["id"] == story.green["id"]
    assert client.get("/api/v1/intel/objects", {"origin": "csirt-bo"}).json()["count"] == 0
    page = client.get("/intel/", {"value": "PHISH.example."}).content.decode()
    assert "phish.example" in page


def test_object_detail_api_emits_valid_stix_with_its_tlp_marking(story: Story) -> None:
    client = _client(story.partner)
    before = AuditEntry.objects.filter(action="object.read").count()
    detail = client.get(f"/api/v1/intel/objects/{story.amber['id']}").json()
    assert detail["tlp"] == "amber" and detail["recipients"] == ["csirt-co", "csirt-ec", "csirt-pe"]
    assert detail["object"]["object_marking_refs"] == [stix.TLP2_MARKING_IDS[TLP.AMBER]]
    assert validate_instance(detail["object"], ValidationOptions()).is_valid
    assert AuditEntry.objects.filter(action="object.read").count() == before + 1  # AMBER reads are audited
    exported = client.get(f"/api/v1/intel/objects/{story.amber['id']}/bundle").content.decode()
    results = validate_string(exported, ValidationOptions())
    assert results.is_valid, [str(e) for r in results.object_results for e in r.errors]
    page = client.get(f"/intel/objects/{story.amber['id']}/bundle.json").content.decode()
    assert validate_string(page, ValidationOptions()).is_valid


def test_every_stored_object_is_emitted_as_valid_stix(story: Story) -> None:
    target = story.amber["id"]
    extra = [
        sighting(target, 2),
        sco("url", "http://phish.example/login"),
        sco("email-addr", "a@phish.example"),
    ]
    services.import_bundle(story.analyst, story.source, stream(*extra), TLP.CLEAR)
    from minga.intel import queries

    for row in StixObject.objects.all():
        result = validate_instance(queries.emitted(row), ValidationOptions(strict=False))
        assert result.is_valid, (row.type, [str(e) for e in result.errors])


def test_versions_and_revocation_through_the_api(story: Story) -> None:
    v2 = {**story.amber, "modified": "2026-02-01T00:00:00.000Z", "revoked": True}
    services.import_bundle(story.analyst, story.source, stream(v2), TLP.AMBER, story.partners)
    client = _client(story.partner)
    versions = client.get(f"/api/v1/intel/objects/{story.amber['id']}/versions").json()["items"]
    assert [v["revoked"] for v in versions] == [True, False]
    assert client.get(f"/api/v1/intel/objects/{story.amber['id']}").json()["revoked"] is True
    # A revoked object no longer correlates, and the default search leaves it out.
    sco_id = StixObject.objects.get(type="ipv4-addr").stix_id
    assert client.get(f"/api/v1/intel/objects/{sco_id}/correlations").json() == []
    assert client.get("/api/v1/intel/objects", {"type": "indicator"}).json()["count"] == 0
    assert (
        client.get("/api/v1/intel/objects", {"type": "indicator", "include_revoked": True}).json()["count"]
        == 1
    )


def test_sightings_are_counted_per_reader(story: Story) -> None:
    target = story.amber["id"]
    services.import_bundle(
        story.analyst,
        story.source,
        stream(sighting(target, 3, "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z")),
        TLP.AMBER,
        story.partners,
    )
    # The outsider saw it too, but keeps that to itself (AMBER, no recipients).
    services.import_bundle(
        story.outsider,
        story.outsider_org,
        stream(sighting(target, 10, "2025-12-01T00:00:00Z", "2026-03-01T00:00:00Z")),
        TLP.AMBER,
    )
    answer = _client(story.partner).get(f"/api/v1/intel/objects/{target}/sightings").json()
    assert (answer["sightings"], answer["count"]) == (1, 3)
    assert answer["first_seen"].startswith("2026-01-01") and answer["last_seen"].startswith("2026-01-05")
    page = _client(story.partner).get(f"/intel/objects/{target}/").content.decode()
    assert "Sighted 3 times" in page


def test_import_through_the_api(story: Story, bearer: Callable) -> None:
    headers = bearer(story.analyst)
    body = bundle(indicator("203.0.113.9"), {"type": "indicator", "id": "bad"})
    response = Client().post(
        "/api/v1/intel/bundles?tlp=amber&recipient=csirt-pe",
        json.dumps(body),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 1)
    assert answer["rejections"][0]["index"] == 1
    response = Client().post(
        "/api/v1/intel/bundles?recipient=nobody",
        json.dumps(body),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 400 and "nobody" in response.json()["detail"]
    response = Client().post(
        "/api/v1/intel/bundles",
        json.dumps(bundle(indicator("203.0.113.10"))),
        content_type="application/json",
        headers=bearer(story.partner),
    )
    assert response.status_code == 200, response.content  # the partner imports for its own organisation
    assert response.json()["accepted"] == 1, response.content
    assert StixObject.objects.filter(origin_organisation=story.partners[0]).count() == 1


def test_upload_page_queues_a_job_and_shows_its_progress(story: Story) -> None:
    client = _client(story.analyst)
    assert client.get("/intel/imports/").status_code == 200
    data = json.dumps(bundle(indicator("192.0.2.44"), {"type": "nope"})).encode()
    response = client.post(
        "/intel/imports/",
        {
            "file": SimpleUploadedFile("feed.json", data, content_type="application/json"),
            "organisation": story.source.pk,
            "tlp": "amber",
            "recipients": [story.partners[1].pk],
        },
    )
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/intel/imports/{job.uuid}/"
    assert job.status == ImportStatus.QUEUED
    assert "Queued" in client.get(response["Location"]).content.decode()
    from minga.intel.tasks import run_import

    assert run_import.call(job.pk) == f"import {job.pk}: done"  # what the worker runs
    job.refresh_from_db()
    assert (job.status, job.accepted, job.rejected, job.percent) == (ImportStatus.DONE, 1, 1, 100)
    page = client.get(f"/intel/imports/{job.uuid}/").content.decode()
    assert "is not a STIX identifier" in page
    # Other organisations do not see the job.
    assert _client(story.outsider).get(f"/intel/imports/{job.uuid}/").status_code == 404
    row = StixObject.objects.get(label__contains="192.0.2.44")
    assert list(row.recipient_organisations.all()) == [story.partners[1]]


def test_command_line_import(story: Story, tmp_path) -> None:
    from django.core.management import call_command

    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle(indicator("192.0.2.99"))))
    call_command("intel", "import", str(path), "--organisation", "csirt-cl", "--tlp", "green")
    assert StixObject.objects.get(label__contains="192.0.2.99").tlp == TLP.GREEN


def test_exports_are_valid_stix_audited_and_hold_only_what_the_reader_may_see(story: Story) -> None:
    client = _client(story.outsider)
    before = AuditEntry.objects.filter(action="intel.exported").count()
    response = client.get("/api/v1/intel/export", {"value": "198.51.100.7"})
    assert response.status_code == 200 and response["Content-Type"].startswith("application/stix+json")
    document = json.loads(response.content)
    ids = {o["id"] for o in document["objects"]}
    assert story.hidden["id"] in ids and story.amber["id"] not in ids
    assert stix.TLP2_MARKING_IDS[TLP.AMBER] in ids  # the marking definition travels with the objects
    results = validate_string(response.content.decode(), ValidationOptions())
    assert results.is_valid, [str(e) for r in results.object_results for e in r.errors]
    entry = AuditEntry.objects.filter(action="intel.exported").order_by("-seq").first()
    assert AuditEntry.objects.filter(action="intel.exported").count() == before + 1
    assert entry is not None and entry.details["objects"] == 1 and entry.actor == story.outsider
