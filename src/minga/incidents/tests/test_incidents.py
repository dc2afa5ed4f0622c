"""Incidents: references, lifecycle, access through participants, links and merges."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from minga.core import access
from minga.core.choices import TLP
from minga.core.models import AuditEntry
from minga.incidents import queries, services
from minga.incidents.choices import IncidentStatus, ParticipantStatus
from minga.incidents.models import Incident, ReferenceCounter

pytestmark = pytest.mark.django_db


def test_references_count_up_per_year_without_gaps(open_incident):
    first, second = open_incident(), open_incident()
    year = first.created_at.year
    assert first.reference == f"MNG-{year}-000001"
    assert second.reference == f"MNG-{year}-000002"
    with pytest.raises(ValidationError):
        open_incident(title="")  # refused after validation: no number is used up
    assert open_incident().reference == f"MNG-{year}-000003"


def test_a_rolled_back_opening_gives_its_number_back(open_incident, network, monkeypatch):
    open_incident()

    def boom(*args, **kwargs):
        raise RuntimeError("crash after the number was taken")

    monkeypatch.setattr(services, "_timeline", boom)
    with pytest.raises(RuntimeError):
        open_incident()
    monkeypatch.undo()
    assert open_incident().reference.endswith("-000002")


@pytest.fixture
def reference_data(transactional_db):
    """The member states and sectors the directory's data migration seeds: another transactional
    test's flush may have emptied those tables."""
    import importlib

    from django.apps import apps

    importlib.import_module("minga.directory.migrations.0002_seed_states_and_sectors").seed(apps, None)


@pytest.mark.django_db(transaction=True)
def test_concurrent_openings_get_distinct_consecutive_references(reference_data, network):
    """Eight threads, each with its own database connection, open incidents at once."""
    errors: list[BaseException] = []
    references: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work() -> None:
        try:
            start.wait()
            for _ in range(3):
                incident = services.open_incident(network.ana, network.pe, title="Same time", type="ddos")
                with lock:
                    references.append(incident.reference)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    numbers = sorted(int(r.rsplit("-", 1)[1]) for r in references)
    assert numbers == list(range(1, 25))
    assert ReferenceCounter.objects.get().last == 24


def test_opening_checks_the_classification_and_who_opens(open_incident, network):
    incident = open_incident(type="phishing")
    assert (incident.taxonomy, incident.type) == ("fraud", "phishing")
    with pytest.raises(ValidationError) as wrong:
        open_incident(type="phishing", taxonomy="availability")
    assert "fraud" in str(wrong.value)
    with pytest.raises(ValidationError):
        open_incident(type="not-a-type")
    with pytest.raises(PermissionDenied):
        services.open_incident(network.carlos, network.pe, title="x", type="ddos")  # not of csirt-pe
    assert AuditEntry.objects.filter(action="incident.open").count() == 1


def test_status_moves_along_allowed_transitions_with_reasons(open_incident, network):
    incident = open_incident()
    services.change_status(network.ana, incident, IncidentStatus.TRIAGE)
    services.change_status(network.ana, incident, IncidentStatus.IN_PROGRESS)
    with pytest.raises(ValidationError) as missing:
        services.change_status(network.ana, incident, IncidentStatus.RESOLVED)
    assert "reason" in missing.value.message_dict
    services.change_status(network.ana, incident, IncidentStatus.RESOLVED, "Backups restored")
    assert incident.resolved_at is not None
    with pytest.raises(ValidationError):
        services.change_status(network.ana, incident, IncidentStatus.NEW)
    services.change_status(network.ana, incident, IncidentStatus.CLOSED, "Done")
    services.change_status(network.ana, incident, IncidentStatus.IN_PROGRESS, "It came back")
    assert incident.closed_at is None
    moves = [e.details for e in queries.timeline(incident) if e.kind == "status"]
    assert [m["to"] for m in moves] == ["triage", "in_progress", "resolved", "closed", "in_progress"]
    assert AuditEntry.objects.filter(action="incident.status").count() == 5
    with pytest.raises(PermissionDenied):
        services.change_status(network.carlos, incident, IncidentStatus.RESOLVED, "not mine")


def test_adding_a_participant_grants_what_the_tlp_allows(open_incident, network):
    incident = open_incident(tlp=TLP.AMBER)
    assert access.can_read(network.ana, incident)
    assert not access.can_read(network.carlos, incident)
    services.add_participant(network.ana, incident, network.cl)
    assert access.can_read(network.carlos, incident)
    assert not access.can_read(network.olga, incident)  # outside the participants
    assert not queries.visible(network.olga).filter(pk=incident.pk).exists()
    services.remove_participant(network.ana, incident, network.cl, "wrong constituency")
    assert not access.can_read(network.carlos, incident)


def test_a_red_incident_is_read_by_named_people_only(open_incident, network):
    incident = open_incident(tlp=TLP.RED)
    assert access.can_read(network.ana, incident)  # the author is named
    services.add_participant(network.ana, incident, network.cl)
    assert not access.can_read(network.carlos, incident)  # RED: the organisation is not enough
    green = open_incident(tlp=TLP.GREEN)
    assert access.can_read(network.olga, green)  # every member reads GREEN


def test_a_coordinator_other_than_the_reporter_takes_part_and_coordinates(open_incident, network):
    incident = open_incident(coordinating_organisation=network.cl)
    (participant,) = incident.participants.all()
    assert participant.organisation == network.cl and participant.status == ParticipantStatus.ACKNOWLEDGED
    assert access.can_read(network.carlos, incident)
    services.change_status(network.carlos, incident, IncidentStatus.TRIAGE)


def test_participants_acknowledge_or_decline_for_their_own_organisation(open_incident, network):
    incident = open_incident()
    services.add_participant(network.ana, incident, network.cl)
    services.add_participant(network.ana, incident, network.br)
    with pytest.raises(PermissionDenied):
        services.acknowledge(network.olga, incident)
    participant = services.acknowledge(network.carlos, incident)
    assert participant.status == ParticipantStatus.ACKNOWLEDGED
    assert participant.time_to_acknowledge is not None
    with pytest.raises(ValidationError):
        services.decline(network.bruna, incident, "")
    declined = services.decline(network.bruna, incident, "Not our constituency")
    assert declined.status == ParticipantStatus.DECLINED
    assert access.can_read(network.bruna, incident)  # told already: keeps reading
    audit = AuditEntry.objects.get(action="incident.acknowledge")
    assert audit.details["participant"] == network.cl.short_name
    assert audit.details["time_to_acknowledge_seconds"] >= 0


def test_comments_and_tasks_on_the_shared_timeline(open_incident, network):
    incident = open_incident()
    services.add_participant(network.ana, incident, network.cl)
    services.comment(network.carlos, incident, "We see the C2 traffic too.")
    with pytest.raises(PermissionDenied):
        services.comment(network.olga, incident, "let me in")
    with pytest.raises(ValidationError):
        services.add_task(network.ana, incident, title="Block", organisation=network.br)  # not a participant
    task = services.add_task(network.ana, incident, title="Block the C2 address", organisation=network.cl)
    with pytest.raises(PermissionDenied):
        services.set_task_status(network.bruna, task, "done")
    services.set_task_status(network.carlos, task, "done")
    assert task.completed_at is not None
    kinds = [e.kind for e in queries.timeline(incident)]
    assert kinds == ["opened", "participant", "comment", "task", "task"]


def test_links_only_to_intelligence_the_user_may_read(open_incident, network):
    import io
    import json

    from minga.intel.services import import_bundle

    def indicator(n: int) -> dict:
        return {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--6f1d3a62-3c39-4b8e-9d0c-4d8c5b0e7a0{n}",
            "created": "2026-01-01T00:00:00Z",
            "modified": "2026-01-01T00:00:00Z",
            "name": f"C2 {n}",
            "pattern": f"[ipv4-addr:value = '198.18.4.{n}']",
            "pattern_type": "stix",
            "valid_from": "2026-01-01T00:00:00Z",
        }

    bundle = {
        "type": "bundle",
        "id": "bundle--6f1d3a62-3c39-4b8e-9d0c-4d8c5b0e7a00",
        "objects": [indicator(1)],
    }
    import_bundle(network.ana, network.pe, io.BytesIO(json.dumps(bundle).encode()), "amber")
    bundle["objects"] = [indicator(2)]
    import_bundle(network.bruna, network.br, io.BytesIO(json.dumps(bundle).encode()), "amber")
    incident = open_incident()
    services.link_object(network.ana, incident, indicator(1)["id"])
    with pytest.raises(ValidationError):
        services.link_object(network.ana, incident, indicator(2)["id"])  # BR's, AMBER: hidden from ana
    services.add_participant(network.ana, incident, network.br)
    services.link_object(network.bruna, incident, indicator(2)["id"])
    assert [o.stix_id for o in queries.linked_objects(network.ana, incident)] == [indicator(1)["id"]]
    assert len(queries.linked_objects(network.bruna, incident)) == 1  # pe's indicator is not shared with br


def test_merging_a_duplicate_points_it_to_the_survivor(open_incident, network):
    survivor, duplicate = open_incident(), open_incident(title="Same ransomware, reported twice")
    services.add_observables(network.ana, duplicate, ["198.18.5.10", "evil.cl.demo.example"])
    services.add_observables(network.ana, survivor, ["198.18.5.10"])
    services.merge_incident(network.ana, duplicate, survivor)
    duplicate.refresh_from_db()
    assert duplicate.merged_into == survivor and duplicate.status == IncidentStatus.CLOSED
    assert sorted(survivor.observables.values_list("value", flat=True)) == [
        "198.18.5.10",
        "evil.cl.demo.example",
    ]
    assert AuditEntry.objects.filter(action="incident.merge").count() == 2
    with pytest.raises(ValidationError):
        services.merge_incident(network.ana, duplicate, survivor)
    with pytest.raises(ValidationError):
        services.change_status(network.ana, duplicate, IncidentStatus.IN_PROGRESS, "reopen")


def test_observables_are_checked_all_or_nothing(open_incident, network):
    incident = open_incident()
    with pytest.raises(ValidationError) as bad:
        services.add_observables(network.ana, incident, ["198.18.5.10", "999.1.1.1", "AS99999999999"])
    assert len(bad.value.message_dict["observables"]) == 2
    assert not incident.observables.exists()
    added = services.add_observables(
        network.ana, incident, ["198.18.5.10", "AS4200000002", "Salud.CL.demo.example."]
    )
    assert sorted((o.kind, o.value) for o in added) == [
        ("asn", "4200000002"),
        ("domain", "salud.cl.demo.example"),
        ("ip", "198.18.5.10"),
    ]
    assert services.add_observables(network.ana, incident, ["198.18.5.10"]) == []


def test_the_board_filters_what_the_reader_may_see(open_incident, network):
    from minga.directory.models import MemberState

    a = open_incident(severity="critical", affected_states=[MemberState.objects.get(code="CL")])
    b = open_incident(severity="low", tlp=TLP.GREEN)
    assert set(queries.board(network.ana, queries.Board())) == {a, b}
    assert list(queries.board(network.ana, queries.Board(severity="critical"))) == [a]
    assert list(queries.board(network.ana, queries.Board(state="cl"))) == [a]
    assert list(queries.board(network.olga, queries.Board())) == [b]
    assert list(queries.board(network.ana, queries.Board(q=a.reference))) == [a]
    assert Incident.objects.count() == 2


def test_an_incident_opened_from_an_intelligence_object(open_incident, network):
    import io
    import json

    from minga.intel.services import import_bundle

    stix_id = "indicator--6f1d3a62-3c39-4b8e-9d0c-4d8c5b0e7a09"
    indicator = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": stix_id,
        "created": "2026-01-01T00:00:00Z",
        "modified": "2026-01-01T00:00:00Z",
        "pattern": "[domain-name:value = 'c2.br.demo.example']",
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
    }
    bundle = {"type": "bundle", "id": "bundle--6f1d3a62-3c39-4b8e-9d0c-4d8c5b0e7a10", "objects": [indicator]}
    import_bundle(network.bruna, network.br, io.BytesIO(json.dumps(bundle).encode()), "amber")
    with pytest.raises(ValidationError):
        open_incident(links=[stix_id])  # ana may not read Brazil's AMBER indicator
    assert not Incident.objects.exists()
    incident = services.open_incident(
        network.bruna, network.br, title="From an indicator", type="c2-server", links=[stix_id]
    )
    assert list(incident.links.values_list("stix_id", flat=True)) == [stix_id]
    assert incident.reference.endswith("-000001")  # the refused opening gave its number back
