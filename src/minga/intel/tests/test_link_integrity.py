"""The rows linking an object to its recipient organisations and to its observables: written
by the import without database foreign keys on PostgreSQL (``StixObject.recipient_organisations``,
``ObjectObservable``), so what the keys guaranteed is held by the code, and proved here: no link
row outlives its object, its organisation or its observable, and a chunk never names an
organisation that is gone."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import IntegrityError, connection, models

from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.intel import services
from minga.intel.models import ObjectObservable, Observable, StixObject
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
    """Link rows whose object, organisation or observable no longer exists."""
    objects, organisations = StixObject.objects.values("pk"), Organisation.objects.values("pk")
    return (
        LINKS.objects.exclude(stixobject_id__in=objects).count()
        + LINKS.objects.exclude(organisation_id__in=organisations).count()
        + ObjectObservable.objects.exclude(stix_object_id__in=objects).count()
        + ObjectObservable.objects.exclude(observable_id__in=Observable.objects.values("pk")).count()
    )


def test_deleting_versions_removes_their_link_rows_and_leaves_no_orphan(
    analyst: User, team: Organisation, make_org: Callable[..., Organisation], monkeypatch: pytest.MonkeyPatch
) -> None:
    partners = [make_org("csirt-py"), make_org("csirt-ar")]
    monkeypatch.setattr(services, "CHUNK_SIZE", 2)  # links written by several chunks
    objects = [indicator(f"198.51.100.{n}") for n in range(5)]
    services.import_bundle(analyst, team, stream(*objects), TLP.AMBER, partners)
    assert LINKS.objects.count() == 10 and ObjectObservable.objects.count() == 5
    doomed = StixObject.objects.filter(stix_id__in=[o["id"] for o in objects[:3]])
    doomed_pks = list(doomed.values_list("pk", flat=True))

    assert services.delete_versions(analyst, team, doomed) == 3

    assert not LINKS.objects.filter(stixobject_id__in=doomed_pks).exists()
    assert not ObjectObservable.objects.filter(stix_object_id__in=doomed_pks).exists()
    assert _orphans() == 0
    kept = LINKS.objects.values_list("stixobject__stix_id", "organisation")
    assert sorted(kept) == sorted((o["id"], p.pk) for o in objects[3:] for p in partners)
    indexed = ObjectObservable.objects.values_list("stix_object__stix_id", "observable__value")
    assert sorted(indexed) == sorted((o["id"], f"198.51.100.{n}") for n, o in enumerate(objects) if n >= 3)


def test_deleting_an_observable_removes_its_link_rows(analyst: User, team: Organisation) -> None:
    objects = [
        indicator("198.51.100.1"),
        sco("ipv4-addr", "198.51.100.1"),
        sco("domain-name", "evil.example"),
    ]
    services.import_bundle(analyst, team, stream(*objects), TLP.GREEN)
    assert ObjectObservable.objects.count() == 3
    Observable.objects.filter(value="198.51.100.1").delete()
    assert _orphans() == 0
    assert list(ObjectObservable.objects.values_list("observable__value", flat=True)) == ["evil.example"]


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


@pytest.mark.parametrize("model", [LINKS, ObjectObservable], ids=["recipients", "observables"])
def test_the_link_tables_have_foreign_keys_on_sqlite_only(model: type[models.Model]) -> None:
    """The migrations drop them on PostgreSQL, where they cost the import most; SQLite keeps
    them, rather than rebuild the tables (``0008_recipient_links_unchecked``, ``0009``)."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    keys = {c["columns"][0] for c in constraints.values() if c["foreign_key"]}
    columns = {str(f.column) for f in model._meta.fields if f.is_relation}
    assert keys == (set() if connection.vendor == "postgresql" else columns)
    if model is ObjectObservable:  # no single-column index: the two-column ones cover both
        indexed = {tuple(c["columns"]) for c in constraints.values() if c["index"] or c["unique"]}
        assert {("observable_id", "stix_object_id"), ("stix_object_id", "observable_id")} <= indexed
        assert not indexed & {("observable_id",), ("stix_object_id",)}
