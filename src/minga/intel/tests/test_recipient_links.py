"""The link rows naming an object's recipient organisations: written by the import without
database foreign keys on PostgreSQL (``StixObject.recipient_organisations``), so what the keys
guaranteed is held by the code, and proved here: no link row outlives its object or its
organisation, and a chunk never names an organisation that is gone."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import IntegrityError, connection

from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.intel import services
from minga.intel.models import ObjectObservable, StixObject
from minga.intel.tests.bundles import indicator, sco, stream

pytestmark = pytest.mark.django_db

LINKS = StixObject.recipient_organisations.through


@pytest.fixture
def team(make_org: Callable[..., Organisation]) -> Organisation:
    return make_org("csirt-uy")


@pytest.fixture
def analyst(make_user: Callable[..., User], team: Organisation) -> User:
    return make_user("ana", team)


def _orphans() -> int:
    """Link rows whose object or organisation no longer exists."""
    return (
        LINKS.objects.exclude(stixobject_id__in=StixObject.objects.values("pk"))
        .union(LINKS.objects.exclude(organisation_id__in=Organisation.objects.values("pk")))
        .count()
    )


def test_deleting_versions_removes_their_link_rows_and_leaves_no_orphan(
    analyst: User, team: Organisation, make_org: Callable[..., Organisation], monkeypatch: pytest.MonkeyPatch
) -> None:
    partners = [make_org("csirt-py"), make_org("csirt-ar")]
    monkeypatch.setattr(services, "CHUNK_SIZE", 2)  # links written by several chunks
    objects = [indicator(f"198.51.100.{n}") for n in range(5)]
    services.import_bundle(analyst, team, stream(*objects), TLP.AMBER, partners)
    assert LINKS.objects.count() == 10
    doomed = StixObject.objects.filter(stix_id__in=[o["id"] for o in objects[:3]])
    doomed_pks = list(doomed.values_list("pk", flat=True))

    assert services.delete_versions(analyst, team, doomed) == 3

    assert not LINKS.objects.filter(stixobject_id__in=doomed_pks).exists()
    assert not ObjectObservable.objects.filter(stix_object_id__in=doomed_pks).exists()
    assert _orphans() == 0
    kept = LINKS.objects.values_list("stixobject__stix_id", "organisation")
    assert sorted(kept) == sorted((o["id"], p.pk) for o in objects[3:] for p in partners)


def test_deleting_a_recipient_organisation_removes_its_link_rows(
    analyst: User, team: Organisation, make_org: Callable[..., Organisation]
) -> None:
    leaving, staying = make_org("csirt-py"), make_org("csirt-ar")
    objects = [indicator("198.51.100.1"), sco("domain-name", "evil.example")]
    services.import_bundle(analyst, team, stream(*objects), TLP.AMBER, [leaving, staying])
    Organisation.objects.filter(pk=leaving.pk).delete()
    assert _orphans() == 0
    assert set(LINKS.objects.values_list("organisation_id", flat=True)) == {staying.pk}
    assert LINKS.objects.count() == 2


def test_a_chunk_naming_an_organisation_that_is_gone_is_refused_whole(
    analyst: User, team: Organisation, make_org: Callable[..., Organisation]
) -> None:
    partner, gone = make_org("csirt-py"), make_org("csirt-ar")
    Organisation.objects.filter(pk=gone.pk).delete()  # the import still holds the instance
    with pytest.raises(IntegrityError, match="no longer exist"):
        services.import_bundle(analyst, team, stream(indicator()), TLP.AMBER, [partner, gone])
    assert not StixObject.objects.exists()
    assert not LINKS.objects.exists()


def test_the_link_table_has_foreign_keys_on_sqlite_only() -> None:
    """The migration drops them on PostgreSQL, where they cost the import most; SQLite keeps
    them, rather than rebuild the table (``0007_recipient_links_unchecked``)."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, LINKS._meta.db_table)
    keys = {c["columns"][0] for c in constraints.values() if c["foreign_key"]}
    if connection.vendor == "postgresql":
        assert keys == set()
    else:
        assert keys == {"stixobject_id", "organisation_id"}
