"""The audit log: every change leaves an entry in the same transaction, the chain verifies, and
any altered, removed, inserted or reordered entry is caught."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from minga.core import audit, services
from minga.core.models import AuditEntry, Organisation


@pytest.fixture
def chain(make_org, make_user):
    org = make_org("alpha")
    make_user("ana", org)
    make_org("beta")
    make_org("gamma")
    assert AuditEntry.objects.count() >= 4
    assert audit.verify().ok
    return AuditEntry.objects.order_by("seq")


def test_services_write_entries_with_actor_and_details(node_admin):
    org = services.create_organisation(node_admin, name="CSIRT Test", short_name="csirt-test")
    services.update_organisation(node_admin, org, name="CSIRT Test Renamed")
    entries = list(
        AuditEntry.objects.filter(object_type="core.organisation", object_id=str(org.pk)).order_by("seq")
    )
    assert [e.action for e in entries] == ["organisation.create", "organisation.update"]
    assert entries[1].actor == node_admin and entries[1].actor_label == "admin"
    assert entries[1].details == {"changed": {"name": ["CSIRT Test", "CSIRT Test Renamed"]}}


def test_a_rolled_back_change_leaves_no_entry(node_admin):
    before = AuditEntry.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.create_organisation(node_admin, name="Ghost", short_name="ghost")
        raise RuntimeError("the caller fails after the service")
    assert AuditEntry.objects.count() == before
    assert not Organisation.objects.filter(short_name="ghost").exists()
    assert audit.verify().ok


def test_entries_cannot_be_changed_through_the_model(chain):
    entry = chain.first()
    entry.action = "forged"
    with pytest.raises(RuntimeError):
        entry.save()
    with pytest.raises(RuntimeError):
        entry.delete()


def _problems() -> str:
    return " ".join(p.message for p in audit.verify().problems)


def test_altered_entry_is_caught(chain):
    target = chain[1]
    AuditEntry.objects.filter(pk=target.pk).update(details={"name": "something else"})
    result = audit.verify()
    assert not result.ok
    assert any(p.seq == target.seq and "altered" in p.message for p in result.problems)


def test_removed_entry_is_caught(chain):
    AuditEntry.objects.filter(pk=chain[1].pk)._raw_delete(connection.alias)
    assert "removed or inserted" in _problems()


def test_truncated_tail_is_caught(chain):
    AuditEntry.objects.filter(pk=chain.last().pk)._raw_delete(connection.alias)
    assert "removed from the end" in _problems()


def test_reordered_entries_are_caught(chain):
    first, second = chain[0], chain[1]
    AuditEntry.objects.filter(pk=first.pk).update(seq=10_000)
    AuditEntry.objects.filter(pk=second.pk).update(seq=first.seq)
    AuditEntry.objects.filter(pk=first.pk).update(seq=second.seq)
    assert not audit.verify().ok


def test_forged_entry_with_recomputed_hash_is_caught(chain):
    """An attacker who rewrites an entry and its own hash still breaks the link to the next."""
    target = chain[1]
    target.action = "organisation.delete"
    target.hash = audit.compute_hash(target)
    AuditEntry.objects.filter(pk=target.pk).update(action=target.action, hash=target.hash)
    assert "chain broken" in _problems()


def test_cli_verify_reports_success_and_tampering(chain, capsys):
    call_command("audit", "verify")
    assert "intact" in capsys.readouterr().out
    AuditEntry.objects.filter(pk=chain[0].pk).update(actor_label="mallory")
    with pytest.raises(CommandError, match="broken"):
        call_command("audit", "verify")


def test_node_admins_browse_and_filter_the_log(node_admin, make_org, make_user, login_client):
    services.create_organisation(node_admin, name="CSIRT Filter", short_name="csirt-filter")
    client = login_client(node_admin)
    page = client.get("/audit/?action=organisation.create&actor=admin")
    assert page.status_code == 200
    assert b"CSIRT Filter" in page.content and b"user.create" not in page.content
    empty = client.get("/audit/?since=2999-01-01")
    assert b"CSIRT Filter" not in empty.content
    verified = client.post("/audit/")
    assert b"The chain is intact" in verified.content
    analyst = make_user("ana", make_org("team"))
    assert login_client(analyst).get("/audit/").status_code == 403
