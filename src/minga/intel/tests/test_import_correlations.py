"""An analyst uploads a file, marks it TLP:AMBER for named organisations, and the import's page
(and its REST answer) shows which objects they may read share an observable with it, and how
often it was sighted: never an object, a count or a sighting they may not read."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.intel import queries, services
from minga.intel.choices import ImportStatus
from minga.intel.models import ImportJob, StixObject
from minga.intel.tasks import run_import
from minga.intel.tests.bundles import bundle, indicator, sighting, stream

pytestmark = pytest.mark.django_db


@dataclass
class Store:
    source: Organisation  # imports the file
    partners: list[Organisation]  # named on the import
    analyst: User  # of ``source``
    colleague: User  # of ``source`` too: follows the same jobs
    outsider: User  # of an organisation that shares nothing with ``source``
    readable: dict[str, Any]  # a partner's indicator for 198.51.100.7, shared with ``source``
    hidden: dict[str, Any]  # the outsider's indicator for 198.51.100.7 and 203.0.113.9, not shared
    hidden_only: dict[str, Any]  # the outsider's indicator for 203.0.113.9 alone


@pytest.fixture
def store(make_org: Callable[..., Organisation], make_user: Callable[..., User]) -> Store:
    source = make_org("csirt-cl")
    partners = [make_org("csirt-pe"), make_org("csirt-co"), make_org("csirt-ec")]
    outsider_org = make_org("csirt-bo")
    analyst, colleague = make_user("analyst", source), make_user("colleague", source)
    partner, outsider = make_user("partner", partners[0]), make_user("outsider", outsider_org)
    readable = indicator("198.51.100.7", name="Partner's C2 address")
    services.import_bundle(partner, partners[0], stream(readable), TLP.AMBER, [source])
    hidden = indicator("198.51.100.7", name="Outsider's own C2 address")
    hidden_only = indicator("203.0.113.9", name="Outsider's scanner")
    services.import_bundle(outsider, outsider_org, stream(hidden, hidden_only), TLP.AMBER)
    return Store(source, partners, analyst, colleague, outsider, readable, hidden, hidden_only)


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _upload(client: Client, store: Store, name: str, data: bytes, **fields: Any) -> ImportJob:
    response = client.post(
        "/intel/imports/",
        {
            "file": SimpleUploadedFile(name, data),
            "organisation": store.source.pk,
            "tlp": "amber",
            "recipients": [p.pk for p in store.partners],
            **fields,
        },
    )
    assert response.status_code == 302, response.content.decode()
    job = ImportJob.objects.get(file_name=name)
    assert run_import.call(job.pk) == f"import {job.pk}: done"  # what the worker runs
    job.refresh_from_db()
    return job


def test_the_stix_import_page_lists_readable_correlations_and_sightings_only(
    store: Store, make_org: Callable[..., Organisation], make_user: Callable[..., User]
) -> None:
    c2 = indicator("198.51.100.7", name="Imported C2 address")
    scanner = indicator("203.0.113.9", name="Imported scanner")
    seen = sighting(c2["id"], 5, "2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z")
    client = _client(store.analyst)
    queued = client.post(
        "/intel/imports/",
        {
            "file": SimpleUploadedFile("worm.json", json.dumps(bundle(c2, scanner, seen)).encode()),
            "organisation": store.source.pk,
            "tlp": "amber",
            "recipients": [p.pk for p in store.partners],
        },
    )
    job = ImportJob.objects.get()
    # Before the import has run, the page shows its progress and no correlation.
    queued_page = client.get(queued["Location"]).content.decode()
    assert "Queued" in queued_page and 'id="correlations"' not in queued_page
    run_import.call(job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.DONE and job.accepted == 3
    # The job knows the rows it stored, as ranges of pks.
    stored = StixObject.objects.filter(stix_id__in=[c2["id"], scanner["id"], seen["id"]])
    assert sorted(job.stored_pks()) == sorted(stored.values_list("pk", flat=True))

    # An outsider of the same sighting, not shared with the source: neither listed nor counted.
    services.import_bundle(
        store.outsider,
        store.outsider.active_memberships()[0].organisation,
        stream(sighting(c2["id"], 100)),
        TLP.AMBER,
    )
    page = client.get(f"/intel/imports/{job.uuid}/").content.decode()
    assert 'id="correlations"' in page
    # The partner's indicator shares the address: listed, with its TLP, origin and the value.
    assert f'href="/intel/objects/{store.readable["id"]}/"' in page
    assert "Partner&#x27;s C2 address" in page and "Organisation csirt-pe" in page
    assert "<code>198.51.100.7</code>" in page and "TLP:AMBER" in page
    assert f'href="/intel/objects/{c2["id"]}/"' in page
    # The outsider's indicators share values too but are not readable: absent, and uncounted
    # (the scanner correlates with nothing the analyst may read).
    assert store.hidden["id"] not in page and store.hidden_only["id"] not in page
    assert "Outsider" not in page
    assert "1 of the 3 imported objects you may read shares an observable" in page
    # Sightings: the imported one (5 times), not the outsider's (100 times).
    assert "1 imported object was sighted" in page
    assert "<td>1</td><td>5</td><td>2026-01-09 00:00</td>" in page
    # A colleague in the same organisation sees the same; an outsider does not see the job.
    assert _client(store.colleague).get(f"/intel/imports/{job.uuid}/").content.decode().count(
        store.readable["id"]
    ) == page.count(store.readable["id"])
    assert _client(store.outsider).get(f"/intel/imports/{job.uuid}/").status_code == 404

    # Once the outsider shares its scanner with the source, it is listed and counted.
    services.import_bundle(
        store.outsider,
        store.outsider.active_memberships()[0].organisation,
        stream(store.hidden_only | {"modified": "2026-02-01T00:00:00.000Z"}),
        TLP.AMBER,
        [store.source],
    )
    page = client.get(f"/intel/imports/{job.uuid}/").content.decode()
    assert "2 of the 3 imported objects you may read share an observable" in page
    assert store.hidden_only["id"] in page and store.hidden["id"] not in page


def test_the_csv_import_page_lists_correlations(store: Store) -> None:
    feed = "ioc,note\n198.51.100.7,C2\nfresh.example,Nothing known\n"
    job = _upload(_client(store.analyst), store, "feed.csv", feed.encode(), format="csv", csv_value="ioc")
    # Each row gives an indicator and the observable it names: four objects.
    assert job.accepted == 4 and len(job.stored_pks()) == 4
    page = _client(store.analyst).get(f"/intel/imports/{job.uuid}/").content.decode()
    # The address's indicator and observable both meet the partner's indicator; the import's
    # objects are not listed as correlations of one another (fresh.example meets nothing).
    assert "2 of the 4 imported objects you may read share an observable" in page
    assert store.readable["id"] in page and store.hidden["id"] not in page
    assert "No imported object was sighted in a sighting you may read." in page


def test_the_api_answers_an_import_job_with_its_correlations(
    store: Store, bearer: Callable[[User], dict[str, str]]
) -> None:
    c2 = indicator("198.51.100.7", name="Imported C2 address")
    scanner = indicator("203.0.113.9", name="Imported scanner")
    data = json.dumps(bundle(c2, scanner, sighting(c2["id"], 7), {"type": "nope"})).encode()
    job = _upload(_client(store.analyst), store, "api.json", data)
    response = Client().get(f"/api/v1/intel/imports/{job.uuid}", headers=bearer(store.analyst))
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["status"], answer["accepted"], answer["rejected"]) == ("done", 3, 1)
    assert answer["organisation"] == "csirt-cl" and answer["percent"] == 100
    found = answer["correlations"]
    assert (found["stored"], found["asked"], found["examined"]) == (3, 3, 3)
    assert (found["correlated"], found["sighted_total"]) == (1, 1)
    [match] = found["matches"]
    assert match["object"]["id"] == c2["id"] and match["total"] == 1
    [other] = match["others"]
    assert other["object"]["id"] == store.readable["id"] and other["object"]["origin"] == "csirt-pe"
    assert other["shared"] == [{"kind": "ipv4-addr", "value": "198.51.100.7"}]
    assert store.hidden["id"] not in response.content.decode()
    assert store.hidden_only["id"] not in response.content.decode()
    [seen] = found["sighted"]
    assert (seen["object"]["id"], seen["sightings"], seen["count"]) == (c2["id"], 1, 7)
    # Another organisation's member: no such job; an unknown job: 404 too.
    assert (
        Client().get(f"/api/v1/intel/imports/{job.uuid}", headers=bearer(store.outsider)).status_code == 404
    )
    assert (
        Client()
        .get("/api/v1/intel/imports/00000000-0000-4000-8000-000000000000", headers=bearer(store.analyst))
        .status_code
        == 404
    )
    # A queued job answers with its progress and no correlations yet.
    queued = services.queue_import(store.analyst, store.source, [b"{}"], "later.json", TLP.GREEN)
    answer = Client().get(f"/api/v1/intel/imports/{queued.uuid}", headers=bearer(store.analyst)).json()
    assert answer["status"] == "queued" and answer["correlations"] is None


def test_a_retried_job_keeps_the_rows_its_first_run_stored(store: Store) -> None:
    data = json.dumps(bundle(indicator("198.51.100.7", name="Imported C2 address"))).encode()
    job = _upload(_client(store.analyst), store, "retry.json", data)
    first = job.stored_ranges
    assert len(job.stored_pks()) == 1
    # The worker crashed after the chunk was written: the retry finds it already stored.
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.QUEUED)
    Path(job.path).write_bytes(data)
    run_import.call(job.pk)
    job.refresh_from_db()
    assert (job.accepted, job.duplicates, job.stored_ranges) == (0, 1, first)
    page = _client(store.analyst).get(f"/intel/imports/{job.uuid}/").content.decode()
    assert store.readable["id"] in page


def test_chunks_are_recorded_as_ranges_of_the_pks_they_stored(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "CHUNK_SIZE", 4)  # several chunks from a small file
    objects = [indicator(f"192.0.2.{n}") for n in range(11)]
    job = _upload(_client(store.analyst), store, "chunks.json", json.dumps(bundle(*objects)).encode())
    stored = sorted(
        StixObject.objects.filter(stix_id__in=[o["id"] for o in objects]).values_list("pk", flat=True)
    )
    assert job.accepted == 11 and job.stored_pks() == stored
    # Each chunk's pks come from one insert under the chunk lock: the chunks continue one another.
    assert job.stored_ranges == [[stored[0], stored[-1]]]


def test_ranges_hold_any_pks_contiguous_or_not() -> None:
    ranges: list[list[int]] = []
    services.add_ranges(ranges, [5, 3, 4, 9])
    services.add_ranges(ranges, [10, 11, 20])
    assert ranges == [[3, 5], [9, 11], [20, 20]]
    result = services.ImportResult()
    for chunk in ([1, 2], [3], [7, 8]):
        part = services.ImportResult()
        part.add_stored(chunk)
        result.merge(part)
    assert result.stored_ranges == [[1, 3], [7, 8]]


def test_import_correlations_are_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    second = indicator("198.51.100.7", name="Partner's second sight")
    services.import_bundle(None, store.partners[0], stream(second), TLP.AMBER, [store.source])
    objects = [indicator("198.51.100.7", name=f"Copy {n}") for n in range(5)]
    job = _upload(_client(store.analyst), store, "copies.json", json.dumps(bundle(*objects)).encode())
    pks = job.stored_pks()
    found = queries.import_correlations(store.analyst, job, limit=2, per_object=1)
    # Each copy correlates with the partner's two indicators, not with the four other copies;
    # two copies are listed, each with the newest of its two.
    assert (found.stored, found.asked, found.examined, found.correlated) == (5, 5, 5, 5)
    assert [m.total for m in found.matches] == [2, 2]
    assert [[c.obj.stix_id for c in m.others] for m in found.matches] == [[second["id"]]] * 2
    assert [m.obj.pk for m in found.matches] == pks[:2]  # in import order
    # Asked without the import's own objects in view, the copies meet each other too.
    together = queries.correlate_many(store.analyst, pks)
    assert all(len(others) == 6 for others in together.links.values())
    # A larger import than the page examines says so.
    monkeypatch.setattr(queries, "IMPORT_EXAMINED", 3)
    found = queries.import_correlations(store.analyst, job)
    assert (found.stored, found.asked, found.examined, found.correlated) == (5, 3, 3, 3)
    page = _client(store.analyst).get(f"/intel/imports/{job.uuid}/").content.decode()
    assert "The first 3 of the 5 objects this import stored were examined." in page
    assert "3 of the 3 imported objects you may read share an observable" in page


def test_stored_pks_read_the_ranges_in_order_up_to_a_limit() -> None:
    job = ImportJob(stored_ranges=[[10, 12], [20, 20], [30, 33]])
    assert job.stored_pks() == [10, 11, 12, 20, 30, 31, 32, 33] and job.stored_count == 8
    assert job.stored_pks(4) == [10, 11, 12, 20] and job.stored_pks(5) == [10, 11, 12, 20, 30]
    assert job.stored_pks(2) == [10, 11] and ImportJob().stored_pks() == []


def test_sightings_are_added_up_however_many_there_are(store: Store) -> None:
    # More sightings of one object than one IN (...) takes on SQLite (900): counted in batches.
    c2 = indicator("198.51.100.7", name="Imported C2 address")
    seen = [
        sighting(c2["id"], 2, "2026-01-01T00:00:00Z", f"2026-01-{1 + n % 28:02d}T00:00:00Z")
        for n in range(950)
    ]
    job = _upload(_client(store.analyst), store, "seen.json", json.dumps(bundle(c2, *seen)).encode())
    found = queries.import_correlations(store.analyst, job)
    assert found.sighted_total == 1
    [sighted] = found.sighted
    assert (sighted.obj.stix_id, sighted.sightings, sighted.count) == (c2["id"], 950, 1900)
    assert sighted.last_seen is not None and sighted.last_seen.day == 28


def test_a_file_uploaded_again_says_its_objects_were_stored_already(store: Store) -> None:
    """The second upload of the same file stores nothing: its page says where the correlations
    of those objects are, rather than showing an empty section as if nothing correlated."""
    client = _client(store.analyst)
    data = json.dumps(bundle(indicator("198.51.100.7", name="Our C2 address"))).encode()
    first = _upload(client, store, "first.json", data)
    page = client.get(f"/intel/imports/{first.uuid}/").content.decode()
    assert "Partner&#x27;s C2 address" in page and "stored already" not in page
    again = _upload(client, store, "again.json", data)
    assert (again.accepted, again.duplicates) == (0, 1)
    page = client.get(f"/intel/imports/{again.uuid}/").content.decode()
    assert "1 object of the file was stored already, by an earlier import" in page
