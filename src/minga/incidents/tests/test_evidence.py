"""The evidence register: files kept once under their SHA-256 outside the database, within a size
limit; a chain of custody whose every line is an entry of the hash-chained audit log;
``minga evidence verify`` catching a damaged file and a tampered custody line; and the
organisations outside the incident seeing nothing of it, through any interface."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_for_examples
from hypothesis import strategies as st

from minga.core import audit
from minga.core import services as core_services
from minga.core.choices import TLP
from minga.core.models import AuditEntry, Organisation
from minga.incidents import queries, services, storage
from minga.incidents.models import CustodyEvent, Evidence

pytestmark = pytest.mark.django_db

PCAP = b"\xd4\xc3\xb2\xa1" + b"captured traffic to the C2 server " * 1000


@pytest.fixture(autouse=True)
def _store(settings: Any, tmp_path: Path) -> Path:
    """Each test has its own var folder, so its store starts empty."""
    settings.VAR_DIR = tmp_path
    return tmp_path / "evidence"


def _register(actor: Any, incident: Any, content: bytes = PCAP, **extra: Any) -> Evidence:
    fields: dict[str, Any] = {"file_name": "c2-traffic.pcap", "title": "Traffic to the C2 server", **extra}
    return services.register_evidence(actor, incident, chunks=[content], **fields)


def _added(network: Any, incident: Any, *organisations: Any) -> Any:
    for organisation in organisations:
        services.add_participant(network.ana, incident, organisation)
    return incident


def _stored_files(store: Path) -> list[Path]:
    return sorted(p for p in store.rglob("*") if p.is_file())


# --- the store ------------------------------------------------------------------------------


def test_content_is_stored_once_under_its_sha256_in_a_stream(_store):
    def pieces() -> Iterator[bytes]:
        # Three megabytes in 64 KiB pieces: the store never needs the whole file at once.
        for n in range(48):
            yield bytes([n]) * 65536

    expected = hashlib.sha256(b"".join(bytes([n]) * 65536 for n in range(48))).hexdigest()
    first = storage.store(pieces(), limit=4 * 1024 * 1024)
    assert (first.sha256, first.size, first.created) == (expected, 48 * 65536, True)
    path = _store / expected[:2] / expected[2:4] / expected
    assert storage.path_for(expected) == path and path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected
    assert not os.access(path, os.W_OK) or os.geteuid() == 0  # read-only once stored
    again = storage.store(pieces(), limit=4 * 1024 * 1024)
    assert (again.sha256, again.created) == (expected, False)
    assert _stored_files(_store) == [path], "stored once, and no temporary file left behind"


@settings_for_examples(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pieces=st.lists(st.binary(max_size=3000), max_size=12), limit=st.integers(0, 20_000))
def test_whatever_the_pieces_the_store_keeps_exactly_their_content_or_nothing(_store, pieces, limit):
    content = b"".join(pieces)
    sha256 = hashlib.sha256(content).hexdigest()
    if len(content) > limit:
        kept_before = storage.exists(sha256)  # an earlier example may have stored it
        with pytest.raises(storage.TooLarge):
            storage.store(iter(pieces), limit=limit)
        assert storage.exists(sha256) == kept_before
    else:
        stored = storage.store(iter(pieces), limit=limit)
        assert (stored.sha256, stored.size) == (hashlib.sha256(content).hexdigest(), len(content))
        assert storage.path_for(stored.sha256).read_bytes() == content
    assert not any((_store / "tmp").iterdir()), "no temporary file is left behind"


def test_content_over_the_limit_is_refused_and_nothing_is_kept(_store):
    with pytest.raises(storage.TooLarge):
        storage.store(iter([b"x" * 600, b"y" * 600]), limit=1000)
    assert _stored_files(_store) == []


def test_a_damaged_copy_is_replaced_by_a_whole_one_when_the_content_comes_again(_store):
    stored = storage.store([PCAP], limit=10**6)
    path = storage.path_for(stored.sha256)
    path.chmod(0o640)
    path.write_bytes(PCAP[:100])
    assert storage.store([PCAP], limit=10**6).created is True
    assert storage.rehash(stored.sha256) == (stored.sha256, len(PCAP))


# --- registering, custody and the audit chain ------------------------------------------------


def test_registering_evidence_keeps_its_metadata_and_writes_custody_into_the_audit_chain(
    network, open_incident, _store
):
    incident = open_incident()
    evidence = _register(
        network.ana,
        incident,
        media_type="application/vnd.tcpdump.pcap",
        description="Captured at the hospital's edge router.",
        acquired_by="Ana (CSIRT-PE)",
        source="edge router of the hospital",
        reason="seized for the investigation",
    )
    assert evidence.sha256 == hashlib.sha256(PCAP).hexdigest() and evidence.size == len(PCAP)
    assert (evidence.file_name, evidence.media_type) == ("c2-traffic.pcap", "application/vnd.tcpdump.pcap")
    assert evidence.custodian_organisation == network.pe and evidence.custodian_person == "ana"
    assert storage.rehash(evidence.sha256) == (evidence.sha256, evidence.size)

    event = CustodyEvent.objects.get(evidence=evidence)
    entry = AuditEntry.objects.get(pk=event.audit_entry_id)
    assert entry.action == "evidence.registered" and entry.actor_label == "ana"
    assert event.audit_hash == entry.hash and entry.object_id == str(evidence.pk)
    assert entry.details["to"] == {
        "organisation_id": network.pe.pk,
        "organisation": "demo-csirt-pe",
        "person": "ana",
    }
    assert entry.details["reason"] == "seized for the investigation"
    assert audit.verify().ok

    # The same capture registered again (on another incident) is stored once.
    other = open_incident(title="Second hospital")
    again = _register(network.ana, other, file_name="copy.pcap")
    assert again.sha256 == evidence.sha256 and len(_stored_files(_store)) == 1


def test_transfers_return_and_disposal_form_the_chain_of_custody(
    network, open_incident, _store, django_capture_on_commit_callbacks
):
    incident = _added(network, open_incident(), network.cl, network.br)
    evidence = _register(network.ana, incident)
    with pytest.raises(ValidationError, match="reason"):
        services.record_custody(network.ana, evidence, "transferred", reason="", to_organisation=network.cl)
    services.record_custody(
        network.ana,
        evidence,
        "transferred",
        reason="forensic analysis",
        to_organisation=network.cl,
        to_person="Carlos, forensic lab",
    )
    evidence.refresh_from_db()
    assert (evidence.custodian_organisation, evidence.custodian_person) == (
        network.cl,
        "Carlos, forensic lab",
    )

    # Bruna takes part but neither coordinates nor holds the item.
    with pytest.raises(PermissionDenied, match="holds the item"):
        services.record_custody(network.bruna, evidence, "sealed", reason="seal 42")
    services.record_custody(network.carlos, evidence, "sealed", reason="sealed in bag 42")
    services.record_custody(
        network.carlos, evidence, "returned", reason="analysis done", to_organisation=network.pe
    )
    handle = services.open_evidence(network.carlos, evidence)
    with handle:
        assert handle.read() == PCAP

    log = queries.custody_log(evidence)
    assert [line.action for line in log] == ["registered", "transferred", "sealed", "returned", "accessed"]
    assert [line.actor for line in log] == ["ana", "ana", "carlos", "carlos", "carlos"]
    assert log[1].from_ and log[1].from_["organisation"] == "demo-csirt-pe"
    assert log[1].to and log[1].to["person"] == "Carlos, forensic lab"
    assert log[1].reason == "forensic analysis"
    seqs = [line.seq for line in log]
    assert seqs == sorted(seqs) and all(
        AuditEntry.objects.get(seq=s).hash == line.hash for s, line in zip(seqs, log, strict=True)
    )

    with django_capture_on_commit_callbacks(execute=True):
        services.record_custody(network.ana, evidence, "disposed", reason="case closed, court order 7")
    evidence.refresh_from_db()
    assert evidence.status == "disposed" and not storage.exists(evidence.sha256)
    with pytest.raises(ValidationError, match="disposed"):
        services.open_evidence(network.ana, evidence)
    with pytest.raises(ValidationError, match="closed"):
        services.record_custody(network.ana, evidence, "sealed", reason="again")
    call_command("evidence", "verify")  # a disposed item has no file to hash, and its chain holds


def test_only_the_organisations_taking_part_register_and_read_evidence(network, open_incident):
    incident = open_incident()
    for outsider in (network.olga, network.bruna):
        with pytest.raises(PermissionDenied):
            _register(outsider, incident)
    _added(network, incident, network.br)
    evidence = _register(network.bruna, incident, custodian_person="Bruna")
    assert evidence.custodian_organisation == network.br
    with pytest.raises(PermissionDenied):
        services.open_evidence(network.olga, evidence)
    assert not Evidence.objects.filter(registered_by=network.olga).exists()


def test_a_file_over_the_limit_is_refused_with_a_clear_message_and_nothing_is_written(
    network, open_incident, settings, _store
):
    settings.MINGA_EVIDENCE_MAX_BYTES = 1000
    incident = open_incident()
    entries = AuditEntry.objects.count()
    with pytest.raises(services.EvidenceTooLarge, match="larger than 1,000 bytes"):
        _register(network.ana, incident, content=b"z" * 1001)
    assert not Evidence.objects.exists() and AuditEntry.objects.count() == entries
    assert _stored_files(_store) == []


def test_a_registration_that_fails_takes_its_new_file_away_again(network, open_incident, _store):
    incident = open_incident()
    with pytest.raises(ValidationError):
        _register(network.ana, incident, title="x" * 201)  # refused before anything is stored
    with pytest.raises(ValueError, match="unsaved"):
        # Fails once the file is stored, when the row is written: the file goes away again.
        _register(network.ana, incident, custodian_organisation=Organisation(name="x", short_name="x"))
    assert not Evidence.objects.exists() and _stored_files(_store) == []


# --- minga evidence verify ------------------------------------------------------------------


def _verify(capsys: Any) -> tuple[int, str]:
    """``minga evidence verify`` in this process: 1 and the problems when it fails."""
    try:
        call_command("evidence", "verify")
    except CommandError as exc:
        out = capsys.readouterr()
        return 1, out.out + out.err + str(exc)
    out = capsys.readouterr()
    return 0, out.out + out.err


def _two_items(network: Any, open_incident: Any) -> tuple[Evidence, Evidence]:
    incident = _added(network, open_incident(), network.cl)
    first = _register(network.ana, incident)
    second = _register(network.ana, incident, content=b"memory dump " * 100, title="Memory dump")
    services.record_custody(network.ana, second, "transferred", reason="lab", to_organisation=network.cl)
    return first, second


def test_verify_reports_an_intact_register(network, open_incident, capsys):
    _two_items(network, open_incident)
    # Renaming the custodian organisation changes nothing in the chain of custody.
    core_services.update_organisation(None, network.cl, short_name="csirt-chile")
    code, output = _verify(capsys)
    assert code == 0, output
    assert "The evidence register is intact: 2 item(s), 2 file(s) hashed again, 3 custody line(s)" in output


def test_verify_names_the_item_whose_file_was_damaged_or_lost(network, open_incident, capsys):
    first, second = _two_items(network, open_incident)
    path = storage.path_for(first.sha256)
    path.chmod(0o640)
    path.write_bytes(PCAP.replace(b"C2", b"XX"))
    storage.path_for(second.sha256).unlink()
    code, output = _verify(capsys)
    assert code == 1
    assert f"evidence #{first.pk} (Traffic to the C2 server): its file does not match its SHA-256" in output
    assert f"evidence #{second.pk} (Memory dump): its file is missing from the store" in output
    assert "The evidence register has problems: 2 in 2 item(s)" in output
    # A participant's own check says so too, and the result is a line of the chain of custody.
    check = services.verify_evidence(network.carlos, first)
    assert not check.ok and check.found and check.sha256 != first.sha256
    assert not services.verify_evidence(network.carlos, second).found
    last = queries.custody_log(first)[-1]
    assert last.action == "verified" and last.details["intact"] is False


def test_verify_catches_a_custody_line_rewritten_in_the_audit_log(network, open_incident, capsys):
    _first, second = _two_items(network, open_incident)
    transfer = CustodyEvent.objects.get(evidence=second, action="transferred")
    entry = AuditEntry.objects.get(pk=transfer.audit_entry_id)
    # Someone with database access says the item went elsewhere, for another reason.
    AuditEntry.objects.filter(pk=entry.pk).update(details={**entry.details, "reason": "no reason"})
    code, output = _verify(capsys)
    assert code == 1
    assert f"audit entry #{entry.seq}: content does not match its hash (entry altered)" in output
    assert "the audit chain is broken" in output
    assert queries.custody_log(second)[1].reason == "no reason"  # what the page shows is what is caught


def test_verify_catches_tampered_custody_rows_and_custodians(network, open_incident, capsys):
    first, second = _two_items(network, open_incident)
    # A custody row pointed at another entry of the chain, one removed, a custodian changed.
    registered = CustodyEvent.objects.get(evidence=first)
    other_entry = AuditEntry.objects.filter(action="incident.open").first()
    assert other_entry is not None
    CustodyEvent.objects.filter(pk=registered.pk).update(audit_entry=other_entry)
    transfer = CustodyEvent.objects.get(evidence=second, action="transferred")
    transfer.delete()
    Evidence.objects.filter(pk=second.pk).update(custodian_organisation=network.br)
    code, output = _verify(capsys)
    assert code == 1
    assert audit.verify().ok, "the audit chain itself is intact: only the register was altered"
    assert f"evidence #{first.pk} (Traffic to the C2 server): custody line 1" in output
    assert "the audit entry's hash is not the one recorded" in output
    assert f"evidence #{second.pk} (Memory dump): its custodian is not the one" in output
    assert "(evidence.transferred) is missing from its chain of custody" in output


REPO = Path(__file__).resolve().parents[4]


@pytest.mark.django_db(transaction=True)
def test_the_minga_command_exits_non_zero_naming_the_damaged_item(
    reference_data, network, open_incident, tmp_path
):
    """The operator's own command, in its own process, on the test database and store."""
    first, _second = _two_items(network, open_incident)
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        url = f"sqlite:///{settings_dict['NAME']}"
    else:
        url = (
            f"postgresql://{settings_dict['USER']}@{settings_dict['HOST'] or 'localhost'}:"
            f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
        )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "MINGA_TEST_DATABASE_URL": url,
        "MINGA_VAR_DIR": str(tmp_path),
        "PYTHONPATH": str(REPO),
    }

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "minga", "evidence", "verify"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    intact = run()
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "The evidence register is intact: 2 item(s)" in intact.stdout
    path = storage.path_for(first.sha256)
    path.chmod(0o640)
    with path.open("r+b") as handle:
        handle.write(b"\x00")
    broken = run()
    assert broken.returncode == 1
    assert f"{first.incident.reference} evidence #{first.pk} (Traffic to the C2 server)" in broken.stderr
    assert "its file does not match its SHA-256" in broken.stderr


def test_evidence_add_and_list_on_the_command_line(network, open_incident, tmp_path, capsys, settings):
    incident = open_incident()
    capture = tmp_path / "disk.img"
    capture.write_bytes(b"\x00" * 5000)
    call_command(
        "evidence",
        "add",
        str(capture),
        "--incident",
        incident.reference,
        "--title",
        "Disk image of the file server",
        "--custodian",
        network.pe.short_name,
        "--custodian-person",
        "Evidence officer",
        "--acquired-at",
        "2026-11-29T08:00:00Z",
    )
    evidence = Evidence.objects.get()
    assert (evidence.file_name, evidence.size, evidence.custodian_person) == (
        "disk.img",
        5000,
        "Evidence officer",
    )
    assert AuditEntry.objects.get(action="evidence.registered").actor_label == ""  # the node itself
    call_command("evidence", "list", "--incident", incident.reference)
    assert evidence.sha256 in capsys.readouterr().out
    settings.MINGA_EVIDENCE_MAX_BYTES = 4096
    with pytest.raises(CommandError, match="larger than 4,096 bytes"):
        call_command("evidence", "add", str(capture), "--incident", incident.reference, "--title", "again")
    with pytest.raises(CommandError, match="No incident"):
        call_command("evidence", "add", str(capture), "--incident", "MNG-1999-000001", "--title", "x")


# --- REST API ---------------------------------------------------------------------------------


def _upload(client: Client, url: str, headers: dict[str, str], content: bytes = PCAP, **data: Any) -> Any:
    upload = SimpleUploadedFile("c2.pcap", content, content_type="application/vnd.tcpdump.pcap")
    return client.post(url, {"file": upload, "title": "Traffic to the C2 server", **data}, headers=headers)


def test_the_api_registers_lists_transfers_verifies_and_downloads_evidence(network, open_incident, bearer):
    incident = _added(network, open_incident(), network.cl)
    ana, carlos = bearer(network.ana), bearer(network.carlos)
    client = Client()
    base = f"/api/v1/incidents/{incident.reference}/evidence"
    created = _upload(client, base, ana, source="edge router", acquired_at="2026-11-29T08:00:00Z")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["sha256"] == hashlib.sha256(PCAP).hexdigest() and body["size"] == len(PCAP)
    assert body["media_type"] == "application/vnd.tcpdump.pcap" and body["custodian"] == "demo-csirt-pe"
    assert [line["action"] for line in body["custody"]] == ["registered"]
    item = f"{base}/{body['id']}"

    listed = client.get(base, headers=carlos).json()
    assert [e["id"] for e in listed["items"]] == [body["id"]]

    moved = client.post(
        f"{item}/custody",
        {
            "action": "transferred",
            "reason": "analysis",
            "to_organisation": "demo-csirt-cl",
            "to_person": "Lab",
        },
        content_type="application/json",
        headers=ana,
    )
    assert moved.status_code == 201, moved.content
    assert moved.json()["custodian"] == "demo-csirt-cl"
    line = moved.json()["custody"][-1]
    assert (
        line["from_custodian"]["organisation"] == "demo-csirt-pe" and line["to_custodian"]["person"] == "Lab"
    )
    assert line["reason"] == "analysis" and line["actor"] == "ana"
    refused = client.post(
        f"{item}/custody",
        {"action": "accessed", "reason": "x"},
        content_type="application/json",
        headers=carlos,
    )
    assert refused.status_code == 422 and "'transferred'" in refused.json()["detail"]
    no_target = client.post(
        f"{item}/custody",
        {"action": "returned", "reason": "done"},
        content_type="application/json",
        headers=carlos,
    )
    assert no_target.status_code == 400 and "to which organisation" in no_target.json()["detail"]

    verified = client.post(f"{item}/verify", headers=carlos)
    assert verified.status_code == 200 and verified.json()["intact"] is True

    download = client.get(f"{item}/download", headers=carlos)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == PCAP
    assert download["Content-Type"] == "application/octet-stream"
    assert 'attachment; filename="c2.pcap"' in download["Content-Disposition"]
    assert download["Repr-Digest"].startswith("sha-256=:")
    actions = [c["action"] for c in client.get(item, headers=ana).json()["custody"]]
    assert actions == ["registered", "transferred", "verified", "accessed"]
    assert AuditEntry.objects.filter(action="evidence.accessed", actor_label="carlos").count() == 1


def test_the_api_refuses_bad_input_with_a_clear_message(network, open_incident, bearer):
    incident = open_incident()
    base = f"/api/v1/incidents/{incident.reference}/evidence"
    ana = bearer(network.ana)
    nul = _upload(Client(), base, ana, title="bad\x00title")
    assert nul.status_code == 422 and "NUL" in nul.json()["detail"]
    unknown = _upload(Client(), base, ana, custodian="no-such-org")
    assert unknown.status_code == 400 and "No organisation is called no-such-org" in unknown.json()["detail"]
    bad_date = _upload(Client(), base, ana, acquired_at="yesterday")
    assert bad_date.status_code == 422 and "acquired_at" in bad_date.json()["detail"]
    assert not Evidence.objects.exists()
    naive = _upload(Client(), base, ana, acquired_at="2026-11-29T08:00:00")
    assert naive.status_code == 201 and naive.json()["acquired_at"].startswith("2026-11-29T08:00:00")
    assert Client().get(f"{base}/{2**60}", headers=ana).status_code == 422
    assert Client().get(f"{base}/999999", headers=ana).status_code == 404


def test_the_api_answers_413_for_a_file_over_either_limit(network, open_incident, bearer, settings):
    incident = open_incident()
    base = f"/api/v1/incidents/{incident.reference}/evidence"
    settings.MINGA_EVIDENCE_MAX_BYTES = 1000
    over = _upload(Client(), base, bearer(network.ana), content=b"a" * 2000)
    assert over.status_code == 413 and "larger than 1,000 bytes" in over.json()["detail"]
    settings.MINGA_EVIDENCE_MAX_BYTES = 10**9
    settings.MINGA_MAX_REQUEST_BYTES = 1500
    over_request = _upload(Client(), base, bearer(network.ana), content=b"a" * 2000)
    assert over_request.status_code == 413 and "at most 1500" in over_request.json()["detail"]
    missing = Client().post(base, {"title": "no file"}, headers=bearer(network.ana))
    assert missing.status_code == 422 and "file" in missing.content.decode()
    assert not Evidence.objects.exists()


def test_outsiders_get_404_on_every_evidence_path(network, open_incident, bearer, login_client):
    # A GREEN incident: Olga's organisation, a network member, may read the incident itself, yet
    # takes no part in it; a RED one she may not read at all. Neither shows her its evidence.
    for tlp in (TLP.GREEN, TLP.AMBER, TLP.RED):
        incident = open_incident(tlp=tlp, title=f"Incident at {tlp}")
        evidence = _register(network.ana, incident)
        api = f"/api/v1/incidents/{incident.reference}/evidence"
        page = f"/incidents/{incident.reference}/evidence"
        olga_api, olga_ui = bearer(network.olga), login_client(network.olga)
        for url in (api, f"{api}/{evidence.pk}", f"{api}/{evidence.pk}/download"):
            assert Client().get(url, headers=olga_api).status_code == 404, url
        for url in (f"{api}/{evidence.pk}/verify", f"{api}/{evidence.pk}/custody"):
            answer = Client().post(
                url, {"action": "sealed", "reason": "x"}, content_type="application/json", headers=olga_api
            )
            assert answer.status_code == 404, url
        assert _upload(Client(), api, olga_api).status_code == 404
        for url in (f"{page}/{evidence.pk}/", f"{page}/{evidence.pk}/download/", f"{page}/new/"):
            assert olga_ui.get(url).status_code == 404, url
        for url in (f"{page}/{evidence.pk}/custody/", f"{page}/{evidence.pk}/verify/", f"{page}/new/"):
            assert olga_ui.post(url, {"action": "sealed", "reason": "x"}).status_code == 404, url
        incident_page = olga_ui.get(f"/incidents/{incident.reference}/")
        assert evidence.title not in incident_page.content.decode()
        assert evidence.sha256 not in incident_page.content.decode()
    # A participant that was removed no longer reaches the evidence either.
    incident = _added(network, open_incident(title="Removed participant"), network.cl)
    evidence = _register(network.carlos, incident)
    services.remove_participant(network.ana, incident, network.cl, "no longer concerned")
    carlos_api = bearer(network.carlos)
    api = f"/api/v1/incidents/{incident.reference}/evidence"
    for url in (api, f"{api}/{evidence.pk}", f"{api}/{evidence.pk}/download"):
        assert Client().get(url, headers=carlos_api).status_code == 404, url
    assert not AuditEntry.objects.filter(action__startswith="evidence.", actor_label="olga").exists()
    assert Evidence.objects.count() == 4 and CustodyEvent.objects.count() == 4


# --- pages ------------------------------------------------------------------------------------


def test_a_participant_registers_transfers_and_downloads_evidence_in_the_browser(
    network, open_incident, login_client
):
    incident = _added(network, open_incident(), network.cl)
    ana = login_client(network.ana)
    page_url = f"/incidents/{incident.reference}/"
    page = ana.get(page_url).content.decode()
    assert "Evidence" in page and "Register evidence" in page
    form = ana.get(f"{page_url}evidence/new/")
    assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.content.decode()
    upload = SimpleUploadedFile("c2.pcap", PCAP, content_type="application/vnd.tcpdump.pcap")
    created = ana.post(
        f"{page_url}evidence/new/",
        {"file": upload, "title": "Traffic to the C2 server", "source": "edge router", "reason": "seized"},
    )
    assert created.status_code == 302, created.content.decode()[:3000]
    evidence = Evidence.objects.get()
    item_url = f"{page_url}evidence/{evidence.pk}/"
    assert created["Location"] == item_url
    item = ana.get(item_url).content.decode()
    assert evidence.sha256 in item and "Chain of custody" in item and "Registered" in item
    assert "seized" in item and "edge router" in item

    moved = ana.post(
        f"{item_url}custody/",
        {
            "action": "transferred",
            "to_organisation": "demo-csirt-cl",
            "to_person": "Lab",
            "reason": "analysis",
        },
        follow=True,
    )
    assert "Custody recorded." in moved.content.decode()
    evidence.refresh_from_db()
    assert evidence.custodian_organisation == network.cl
    refused = ana.post(f"{item_url}custody/", {"action": "returned", "reason": "back"}, follow=True)
    assert "to which organisation" in refused.content.decode()

    carlos = login_client(network.carlos)
    checked = carlos.post(f"{item_url}verify/", follow=True).content.decode()
    assert "The stored file matches its SHA-256." in checked
    download = carlos.get(f"{item_url}download/")
    assert download.status_code == 200 and b"".join(download.streaming_content) == PCAP
    item = carlos.get(item_url).content.decode()
    assert "Transferred" in item and "Downloaded" in item and "analysis" in item
    assert incident.reference in carlos.get(page_url).content.decode()
    assert evidence.title in carlos.get(page_url).content.decode()


def test_the_register_form_refuses_a_file_over_the_limit_with_413(
    network, open_incident, login_client, settings
):
    incident = open_incident()
    settings.MINGA_EVIDENCE_MAX_BYTES = 100
    ana = login_client(network.ana)
    upload = SimpleUploadedFile("big.bin", b"b" * 101)
    answer = ana.post(f"/incidents/{incident.reference}/evidence/new/", {"file": upload, "title": "Big"})
    assert answer.status_code == 413 and "larger than 100 bytes" in answer.content.decode()
    assert not Evidence.objects.exists()
