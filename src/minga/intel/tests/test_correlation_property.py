"""Correlation never reveals an object outside the reader's policy, for any mix of TLP levels,
originators and recipients: what it lists is exactly the readable others (the object check of
``minga.core.access`` decides, independently of the queryset filter that correlation uses)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minga.core import access
from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.intel import queries, services
from minga.intel.models import StixObject
from minga.intel.tests.bundles import indicator, stream

pytestmark = pytest.mark.django_db

LEVELS = [TLP.CLEAR, TLP.GREEN, TLP.AMBER, TLP.AMBER_STRICT]
counter = itertools.count(1)

shares = st.lists(
    st.tuples(
        st.integers(0, 2),  # originating organisation
        st.sampled_from(LEVELS),
        st.sets(st.integers(0, 2), max_size=2),  # recipient organisations
    ),
    min_size=2,
    max_size=6,
)


@pytest.fixture
def cast(make_org: Callable[..., Organisation], make_user: Callable[..., User]) -> dict:
    orgs = [make_org(f"prop-{n}") for n in range(3)] + [make_org("prop-outside", member=False)]
    users = [make_user(f"prop-user-{n}", org) for n, org in enumerate(orgs)]
    return {"orgs": orgs, "users": users}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shares=shares, reader_index=st.integers(0, 3))
def test_correlations_are_exactly_the_readable_others(cast: dict, shares: list, reader_index: int) -> None:
    orgs, users = cast["orgs"], cast["users"]
    value = f"corr-{next(counter)}.prop.example"
    ids = []
    for origin, level, recipients in shares:
        obj = indicator(value, kind="domain-name")
        services.import_bundle(
            users[origin], orgs[origin], stream(obj), level, [orgs[r] for r in sorted(recipients)]
        )
        ids.append(obj["id"])
    rows = {row.stix_id: row for row in StixObject.objects.filter(stix_id__in=ids)}
    reader = users[reader_index]
    for stix_id in ids:
        found = {c.obj.stix_id for c in queries.correlations(reader, rows[stix_id])}
        expected = {other for other in ids if other != stix_id and access.can_read(reader, rows[other])}
        assert found == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shares=shares, reader_index=st.integers(0, 3))
def test_batch_correlation_agrees_with_the_object_check(cast: dict, shares: list, reader_index: int) -> None:
    """``correlate_many`` (an import's objects at once) answers what ``correlations`` answers
    per object, and says nothing about the asked objects the reader may not see."""
    orgs, users = cast["orgs"], cast["users"]
    value = f"batch-{next(counter)}.prop.example"
    ids = []
    for origin, level, recipients in shares:
        obj = indicator(value, kind="domain-name")
        services.import_bundle(
            users[origin], orgs[origin], stream(obj), level, [orgs[r] for r in sorted(recipients)]
        )
        ids.append(obj["id"])
    rows = {row.pk: row for row in StixObject.objects.filter(stix_id__in=ids)}
    reader = users[reader_index]
    batch = queries.correlate_many(reader, list(rows))
    assert set(batch.links) == {pk for pk, row in rows.items() if access.can_read(reader, row)}
    for pk, others in batch.links.items():
        expected = {o for o, row in rows.items() if o != pk and access.can_read(reader, row)}
        assert set(others) == expected
        assert set(others) == {c.obj.pk for c in queries.correlations(reader, rows[pk])}
    assert batch.correlated == sum(1 for others in batch.links.values() if others)


def test_batch_correlation_takes_the_newest_links_of_a_hot_observable(
    cast: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An observable linked to more objects than ``MAX_CANDIDATES`` (a public resolver) gives
    its newest links only, in the batch as in the per-object answer."""
    monkeypatch.setattr(queries, "MAX_CANDIDATES", 3)
    orgs, users = cast["orgs"], cast["users"]
    made = [indicator("hot.prop.example", kind="domain-name") for _ in range(6)]
    for obj in made:
        services.import_bundle(users[0], orgs[0], stream(obj), TLP.GREEN)
    cold = indicator("cold.prop.example", kind="domain-name")
    services.import_bundle(users[0], orgs[0], stream(cold), TLP.GREEN)
    pks = list(
        StixObject.objects.filter(stix_id__in=[o["id"] for o in made])
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    batch = queries.correlate_many(users[1], [pks[0]])
    assert set(batch.links[pks[0]]) == set(pks[-3:])
    assert set(batch.links[pks[0]]) == {
        c.obj.pk for c in queries.correlations(users[1], StixObject.objects.get(pk=pks[0]))
    }
