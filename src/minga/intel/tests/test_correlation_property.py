"""Correlation never reveals an object outside the reader's policy, for any mix of TLP levels,
originators, recipients and copies of one id held by several organisations: what it lists is
exactly the readable others, one row per id (the object check of
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
from minga.intel.tests.test_origins_property import expected_latest

pytestmark = pytest.mark.django_db

LEVELS = [TLP.CLEAR, TLP.GREEN, TLP.AMBER, TLP.AMBER_STRICT]
counter = itertools.count(1)

shares = st.lists(
    st.tuples(
        st.integers(0, 2),  # originating organisation
        st.sampled_from(LEVELS),
        st.sets(st.integers(0, 2), max_size=2),  # recipient organisations
        # A copy of an earlier share's object (its index), as is or as a newer version, or None:
        # organisations keep their own versions of one id.
        st.one_of(st.none(), st.tuples(st.integers(0, 4), st.booleans())),
    ),
    min_size=2,
    max_size=6,
)

NEWER = "2026-02-01T00:00:00.000Z"


def _share(cast: dict, shares: list, value: str) -> list[str]:
    """Import the shares' objects, all carrying ``value``; the ids, in order, repeated for copies."""
    orgs, users = cast["orgs"], cast["users"]
    made: list[dict] = []
    for origin, level, recipients, copy in shares:
        if copy is not None and copy[0] < len(made):
            obj = {**made[copy[0]], "modified": NEWER} if copy[1] else made[copy[0]]
        else:
            obj = indicator(value, kind="domain-name")
        services.import_bundle(
            users[origin], orgs[origin], stream(obj), level, [orgs[r] for r in sorted(recipients)]
        )
        made.append(obj)
    return list(dict.fromkeys(obj["id"] for obj in made))


def _expected_others(reader: User, ids: list[str], stix_id: str) -> set[int]:
    """The other ids' rows the reader is shown: per id, the rule of ``test_origins_property``."""
    found = set()
    for other in ids:
        if other != stix_id:
            chosen = expected_latest(reader, list(StixObject.objects.filter(stix_id=other)))
            if chosen is not None:
                found.add(chosen.pk)
    return found


@pytest.fixture
def cast(make_org: Callable[..., Organisation], make_user: Callable[..., User]) -> dict:
    orgs = [make_org(f"prop-{n}") for n in range(3)] + [make_org("prop-outside", member=False)]
    users = [make_user(f"prop-user-{n}", org) for n, org in enumerate(orgs)]
    return {"orgs": orgs, "users": users}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shares=shares, reader_index=st.integers(0, 3))
def test_correlations_are_exactly_the_readable_others(cast: dict, shares: list, reader_index: int) -> None:
    ids = _share(cast, shares, f"corr-{next(counter)}.prop.example")
    reader = User.objects.get(pk=cast["users"][reader_index].pk)
    for row in StixObject.objects.filter(stix_id__in=ids, is_latest=True):
        found = [c.obj.pk for c in queries.correlations(reader, row)]
        # One row per other id (never a copy of the object itself), the one the reader is shown.
        assert len(found) == len({StixObject.objects.get(pk=pk).stix_id for pk in found})
        assert set(found) == _expected_others(reader, ids, row.stix_id)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shares=shares, reader_index=st.integers(0, 3))
def test_batch_correlation_agrees_with_the_object_check(cast: dict, shares: list, reader_index: int) -> None:
    """``correlate_many`` (an import's objects at once) answers what ``correlations`` answers
    per object, and says nothing about the asked objects the reader may not see."""
    ids = _share(cast, shares, f"batch-{next(counter)}.prop.example")
    rows = {row.pk: row for row in StixObject.objects.filter(stix_id__in=ids)}
    reader = User.objects.get(pk=cast["users"][reader_index].pk)
    batch = queries.correlate_many(reader, list(rows))
    # Any organisation's latest version the reader may read may be asked about.
    assert set(batch.links) == {
        pk for pk, row in rows.items() if row.is_latest and access.can_read(reader, row)
    }
    for pk, others in batch.links.items():
        assert set(others) == _expected_others(reader, ids, rows[pk].stix_id)
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
