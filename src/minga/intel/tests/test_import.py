"""Importing STIX 2.1 bundles: validation with reasons, versions, revocation, TLP, idempotence."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from minga.core.choices import TLP, Role
from minga.core.models import AuditEntry, Organisation, User
from minga.intel import services, stix
from minga.intel.models import ObjectObservable, Observable, StixObject
from minga.intel.tests.bundles import TS, bundle, indicator, sco, sid, sighting, stream

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_org: Callable[..., Organisation]) -> Organisation:
    return make_org("csirt-uy")


@pytest.fixture
def analyst(make_user: Callable[..., User], team: Organisation) -> User:
    return make_user("ana", team)


def test_valid_objects_are_stored_and_bad_ones_rejected_with_reasons(
    analyst: User, team: Organisation
) -> None:
    good = indicator()
    no_id = {**indicator(), "id": "indicator--not-a-uuid"}
    bad_time = {**indicator(), "created": "yesterday"}
    bad_pattern = {**indicator(), "pattern": "[ipv4-addr:value = '1.2.3.4'"}
    future = {**indicator(), "spec_version": "2.2"}
    missing = {k: v for k, v in indicator().items() if k != "valid_from"}
    bad_ref = {**sighting(good["id"]), "sighting_of_ref": "nope"}
    result = services.import_bundle(
        analyst, team, stream(good, no_id, bad_time, bad_pattern, future, missing, bad_ref, "text"), TLP.GREEN
    )
    assert (result.accepted, result.rejected) == (1, 7)
    reasons = {r.index: r.reason for r in result.rejections}
    assert "type--UUID" in reasons[1]
    assert "created is not a STIX timestamp" in reasons[2]
    assert "not a valid STIX pattern" in reasons[3]
    assert "spec_version is 2.2" in reasons[4]
    assert "valid_from" in reasons[5]
    assert "sighting_of_ref" in reasons[6]
    assert "not a JSON object" in reasons[7]
    stored = StixObject.objects.get()
    assert stored.stix_id == good["id"] and stored.tlp == TLP.GREEN and stored.origin_organisation == team
    entry = AuditEntry.objects.filter(action="intel.bundle_imported").get()
    assert entry.details["accepted"] == 1 and entry.details["rejected"] == 7


def test_reimport_is_idempotent(analyst: User, team: Organisation) -> None:
    objects = [indicator(), sco("domain-name", "evil.example")]
    first = services.import_bundle(analyst, team, stream(*objects), TLP.GREEN)
    again = services.import_bundle(analyst, team, stream(*objects), TLP.GREEN)
    assert (first.accepted, again.accepted, again.duplicates) == (2, 0, 2)
    assert StixObject.objects.count() == 2
    assert ObjectObservable.objects.count() == 2


def test_date_added_never_goes_back_when_a_clock_is_behind(analyst: User, team: Organisation) -> None:
    """A version stored by a worker whose clock ran ahead (or before this clock was stepped
    back) is not overtaken: what is stored next is dated no earlier, so a TAXII client polling
    with added_after from the newest date it saw still receives it."""
    services.import_bundle(analyst, team, stream(indicator("198.51.100.1")), TLP.GREEN)
    ahead = timezone.now() + timedelta(minutes=5)
    StixObject.objects.update(date_added=ahead)
    services.import_bundle(analyst, team, stream(indicator("198.51.100.2")), TLP.GREEN)
    added = list(StixObject.objects.order_by("pk").values_list("date_added", flat=True))
    assert added[0] == ahead and added[1] >= ahead
    later = list(StixObject.objects.filter(date_added__gte=ahead).order_by("date_added", "pk"))
    assert [o.pk for o in later] == sorted(o.pk for o in later) and len(later) == 2


def test_versions_keep_one_latest_and_revocation_is_final(analyst: User, team: Organisation) -> None:
    v1 = indicator()
    v2 = {**v1, "modified": "2026-02-01T00:00:00Z", "name": "second"}
    v3 = {**v1, "modified": "2026-03-01T00:00:00Z", "revoked": True}
    services.import_bundle(analyst, team, stream(v2), TLP.GREEN)
    services.import_bundle(analyst, team, stream(v1), TLP.GREEN)  # an older version arrives late
    latest = StixObject.objects.get(stix_id=v1["id"], is_latest=True)
    assert latest.label == "second"
    services.import_bundle(analyst, team, stream(v3), TLP.GREEN)
    latest = StixObject.objects.get(stix_id=v1["id"], is_latest=True)
    assert latest.revoked
    v4 = {**v1, "modified": "2026-04-01T00:00:00Z"}
    result = services.import_bundle(analyst, team, stream(v4), TLP.GREEN)
    assert result.rejected == 1 and "revoked" in result.rejections[0].reason
    assert StixObject.objects.filter(stix_id=v1["id"]).count() == 3


def test_several_versions_in_one_bundle(analyst: User, team: Organisation) -> None:
    v1 = indicator()
    v2 = {**v1, "modified": "2026-02-01T00:00:00Z"}
    services.import_bundle(analyst, team, stream(v2, v1), TLP.GREEN)
    assert list(
        StixObject.objects.filter(stix_id=v1["id"]).order_by("modified").values_list("is_latest", flat=True)
    ) == [False, True]


def test_tlp_markings_of_the_object_win_over_the_import_default(
    analyst: User, team: Organisation, make_org: Callable[..., Organisation]
) -> None:
    partner = make_org("csirt-py")
    marked = indicator(object_marking_refs=[stix.TLP2_MARKING_IDS[TLP.AMBER_STRICT]])
    tlp1 = indicator(object_marking_refs=[stix.TLP1_MARKING_IDS[TLP.CLEAR]])
    plain = indicator()
    services.import_bundle(analyst, team, stream(marked, tlp1, plain), TLP.AMBER, [partner])
    tlps = {o.stix_id: o.tlp for o in StixObject.objects.all()}
    assert tlps == {marked["id"]: TLP.AMBER_STRICT, tlp1["id"]: TLP.CLEAR, plain["id"]: TLP.AMBER}
    for obj in StixObject.objects.all():
        assert list(obj.recipient_organisations.all()) == [partner]


def test_what_is_not_a_bundle_is_refused_with_the_reason(analyst: User, team: Organisation) -> None:
    with pytest.raises(ValidationError, match="not a STIX bundle"):
        services.import_bundle(analyst, team, io.BytesIO(b'{"type": "indicator"}'), TLP.GREEN)
    with pytest.raises(ValidationError, match="not valid JSON"):
        services.import_bundle(analyst, team, io.BytesIO(b"\xff\xfe garbage"), TLP.GREEN)


def test_truncated_bundle_keeps_what_came_before(analyst: User, team: Organisation) -> None:
    text = stream(indicator(), indicator()).getvalue()
    result = services.import_bundle(analyst, team, io.BytesIO(text[:-40]), TLP.GREEN)
    assert result.accepted == 1 and "not valid JSON" in result.error


def test_only_members_who_analyse_may_import(
    team: Organisation, make_user: Callable[..., User], make_org: Callable[..., Organisation]
) -> None:
    reader = make_user("reader", team, Role.READ_ONLY)
    outsider = make_user("outsider", make_org("other"))
    for user in (reader, outsider):
        with pytest.raises(PermissionDenied):
            services.import_bundle(user, team, stream(indicator()), TLP.GREEN)
    with pytest.raises(ValidationError):
        services.import_bundle(None, team, stream(indicator()), TLP.RED)


def test_observables_are_normalised_and_shared(analyst: User, team: Organisation) -> None:
    services.import_bundle(
        analyst,
        team,
        stream(
            indicator("198.51.100.7/32"),
            sco("ipv4-addr", "198.51.100.7"),
            indicator("EXAMPLE.example.", kind="domain-name"),
            sco("domain-name", "example.EXAMPLE"),
            indicator(
                pattern="[file:hashes.'SHA-256' = '" + "AB" * 32 + "' OR url:value = 'HTTP://Evil.Example/x']"
            ),
            {"type": "file", "spec_version": "2.1", "id": sid("file"), "hashes": {"SHA-256": "ab" * 32}},
            sco("email-addr", "Boss@Evil.EXAMPLE"),
            sco("ipv6-addr", "2001:DB8:0::1"),
        ),
        TLP.GREEN,
    )
    values = set(Observable.objects.values_list("kind", "value"))
    assert values == {
        ("ipv4-addr", "198.51.100.7"),
        ("domain-name", "example.example"),
        ("sha-256", "ab" * 32),
        ("url", "http://evil.example/x"),
        ("email-addr", "Boss@evil.example"),
        ("ipv6-addr", "2001:db8::1"),
    }
    assert ObjectObservable.objects.count() == 9


def test_sighting_columns(analyst: User, team: Organisation) -> None:
    target = indicator()
    services.import_bundle(
        analyst, team, stream(target, sighting(target["id"], 3, TS, "2026-02-01T00:00:00Z")), TLP.GREEN
    )
    row = StixObject.objects.get(type="sighting")
    assert (row.sighting_of_ref, row.sighting_count) == (target["id"], 3)


def test_bundle_helper_is_a_bundle() -> None:
    assert bundle()["type"] == "bundle"


def test_every_kind_of_stix_object_is_stored(analyst: User, team: Organisation) -> None:
    from stix2validator import ValidationOptions, validate_instance

    from minga.intel import queries

    identity = {
        "type": "identity",
        "spec_version": "2.1",
        "id": sid("identity"),
        "created": TS,
        "modified": TS,
        "name": "Fictional CSIRT",
        "identity_class": "organization",
    }
    malware = {
        "type": "malware",
        "spec_version": "2.1",
        "id": sid("malware"),
        "created": TS,
        "modified": TS,
        "name": "Demo worm",
        "is_family": True,
        "x_minga_custom": "a custom property",
    }
    relationship = {
        "type": "relationship",
        "spec_version": "2.1",
        "id": sid("relationship"),
        "created": TS,
        "modified": TS,
        "relationship_type": "related-to",
        "source_ref": identity["id"],
        "target_ref": malware["id"],
    }
    marking = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": sid("marking-definition"),
        "created": TS,
        "definition_type": "statement",
        "definition": {"statement": "Copyright 2026 Fictional CSIRT"},
    }
    language = {
        "type": "language-content",
        "spec_version": "2.1",
        "id": sid("language-content"),
        "created": TS,
        "modified": TS,
        "object_ref": malware["id"],
        "object_modified": TS,
        "contents": {"es": {"name": "Gusano de demostración"}},
    }
    extension = {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": sid("extension-definition"),
        "created": TS,
        "modified": TS,
        "created_by_ref": identity["id"],
        "name": "Demo extension",
        "schema": "https://example.org/schema.json",
        "version": "1.0.0",
        "extension_types": ["property-extension"],
    }
    custom = {
        "type": "x-minga-note",
        "spec_version": "2.1",
        "id": sid("x-minga-note"),
        "created": TS,
        "modified": TS,
        "x_text": "a custom object",
    }
    report = {
        "type": "report",
        "spec_version": "2.1",
        "id": sid("report"),
        "created": TS,
        "modified": TS,
        "name": "Weekly",
        "published": TS,
        "object_refs": [malware["id"], relationship["id"]],
    }
    objects = [identity, malware, relationship, marking, language, extension, custom, report]
    result = services.import_bundle(analyst, team, stream(*objects), TLP.GREEN)
    assert (result.accepted, result.rejected) == (len(objects), 0), result.rejections
    for row in StixObject.objects.all():
        emitted = queries.emitted(row)
        assert emitted["id"] == row.stix_id
        outcome = validate_instance(emitted, ValidationOptions())
        assert outcome.is_valid, (row.type, [str(e) for e in outcome.errors])


def test_command_line_says_what_is_wrong(team: Organisation, tmp_path) -> None:
    from django.core.management import CommandError, call_command

    path = tmp_path / "old.json"
    path.write_bytes(stream(indicator(), spec_version="1.2").getvalue())
    with pytest.raises(CommandError, match=r"Minga reads STIX 2\.0 and 2\.1 bundles"):
        call_command("intel", "import", str(path), "--organisation", team.short_name)
    with pytest.raises(CommandError, match="No organisation is called 'nobody'"):
        call_command("intel", "import", str(path), "--organisation", "nobody")
    with pytest.raises(CommandError, match="is not a file"):
        call_command("intel", "import", str(tmp_path / "missing.json"), "--organisation", team.short_name)
    path.write_bytes(stream(indicator(), {"type": "indicator"}).getvalue())
    call_command("intel", "import", str(path), "--organisation", team.short_name, "--tlp", "green")
    assert StixObject.objects.get().tlp == TLP.GREEN


def test_the_command_line_imports_tlp_red_as_a_named_user(
    analyst: User,
    team: Organisation,
    make_org: Callable[..., Organisation],
    make_user: Callable[..., User],
    tmp_path,
) -> None:
    from django.core.management import CommandError, call_command

    path = tmp_path / "red.json"
    path.write_bytes(stream(indicator()).getvalue())
    with pytest.raises(CommandError, match="import them as a user"):
        call_command("intel", "import", str(path), "--organisation", team.short_name, "--tlp", "red")
    outsider = make_user("olga-cli", make_org("elsewhere"))
    with pytest.raises(CommandError, match="may import in its name"):
        call_command(
            "intel",
            "import",
            str(path),
            "--organisation",
            team.short_name,
            "--tlp",
            "red",
            "--as",
            "olga-cli",
        )
    with pytest.raises(CommandError, match="No active user"):
        call_command("intel", "import", str(path), "--organisation", team.short_name, "--as", "nobody")
    call_command(
        "intel",
        "import",
        str(path),
        "--organisation",
        team.short_name,
        "--tlp",
        "red",
        "--as",
        analyst.username,
    )
    stored = StixObject.objects.get()
    assert stored.tlp == TLP.RED and list(stored.recipient_users.all()) == [analyst]
    assert not StixObject.objects.visible_to(outsider).exists()


def test_two_versions_flagged_latest_by_racing_imports_are_read_and_repaired(
    analyst: User, team: Organisation
) -> None:
    from minga.intel import queries

    v1 = indicator()
    v2 = {**v1, "modified": "2026-02-01T00:00:00Z", "name": "second"}
    services.import_bundle(analyst, team, stream(v1, v2), TLP.GREEN)
    # What two concurrent imports, each seeing no other version, would leave behind:
    StixObject.objects.filter(stix_id=v1["id"]).update(is_latest=True)
    assert queries.get_latest_or_404(analyst, v1["id"]).label == "second"
    v3 = {**v1, "modified": "2026-03-01T00:00:00Z", "name": "third"}
    services.import_bundle(analyst, team, stream(v3), TLP.GREEN)
    assert list(
        StixObject.objects.filter(stix_id=v1["id"], is_latest=True).values_list("label", flat=True)
    ) == ["third"]


def test_every_recipient_is_linked_to_every_object_of_every_chunk(
    analyst: User, team: Organisation, make_org: Callable[..., Organisation], monkeypatch: pytest.MonkeyPatch
) -> None:
    partners = [make_org("csirt-py"), make_org("csirt-ar"), make_org("csirt-cl")]
    monkeypatch.setattr(services, "CHUNK_SIZE", 2)
    objects = [indicator(f"198.51.100.{n}") for n in range(5)]
    result = services.import_bundle(analyst, team, stream(*objects), TLP.AMBER, partners)
    assert result.accepted == 5
    links = StixObject.recipient_organisations.through.objects.values_list(
        "stixobject__stix_id", "organisation"
    )
    assert sorted(links) == sorted((o["id"], p.pk) for o in objects for p in partners)


def test_timestamps_read_again_give_the_same_instant_and_bad_ones_are_still_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stix, "TIMESTAMP_MEMO_SIZE", 3)
    first = stix.parse_timestamp("2026-01-31T12:00:00.5Z", "created")
    assert stix.parse_timestamp("2026-01-31T12:00:00.5Z", "modified") == first
    assert first.microsecond == 500_000
    for second in range(10):  # more than the memo holds: it starts over, and still answers right
        assert stix.parse_timestamp(f"2026-01-31T12:00:{second:02d}Z", "created").second == second
    assert len(stix._parsed_timestamps) <= 3
    for bad in ("2026-02-30T12:00:00Z", "yesterday", 20260131):
        with pytest.raises(stix.Invalid):
            stix.parse_timestamp(bad, "created")
