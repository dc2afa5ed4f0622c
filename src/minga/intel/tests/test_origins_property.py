"""Over random holdings of one STIX id by several organisations (versions, TLP levels,
recipients, replays), every read path shows each reader what the written rule says, decided
here with the object check of ``minga.core.access`` and plain Python: the import keeps one latest
version per organisation; the reader's object is the newest readable of those, its own
organisation's copy of a version first, else the first stored; each readable version once."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import pytest
from django.http import Http404
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minga.core import access
from minga.core.choices import TLP
from minga.core.models import Membership, Organisation, User
from minga.intel import queries, services
from minga.intel.models import StixObject
from minga.intel.tests.bundles import indicator, stream
from minga.taxii import services as taxii

pytestmark = pytest.mark.django_db

VERSIONS = ["2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z"]
LEVELS = [TLP.CLEAR, TLP.GREEN, TLP.AMBER, TLP.AMBER_STRICT, TLP.RED]
counter = itertools.count(1)

holdings = st.lists(
    st.tuples(
        st.integers(0, 2),  # originating organisation
        st.integers(0, 2),  # version
        st.sampled_from(LEVELS),
        st.sets(st.integers(0, 2), max_size=2),  # recipient organisations (not on RED)
    ),
    min_size=1,
    max_size=7,
)


def organisations_of(user: User) -> set[int]:
    return set(access.reader_for(user).organisation_ids)


def preferred(reader: User, rows: Iterable[StixObject], order: str = "") -> StixObject | None:
    """The rule, plainly: by ``modified`` (newest or oldest first, or not at all), then the
    reader's own organisations' copy, then the first stored."""
    own = organisations_of(reader)
    sign = {"newest": -1, "oldest": 1, "": 0}[order]

    def key(row: StixObject) -> tuple[float, bool, int]:
        return (sign * row.modified.timestamp(), row.origin_organisation_id not in own, row.pk)

    ranked = sorted(rows, key=key)
    return ranked[0] if ranked else None


def expected_latest(reader: User, rows: list[StixObject]) -> StixObject | None:
    latest = [r for r in rows if r.is_latest and access.can_read(reader, r)]
    return preferred(reader, latest, "newest")


def taxii_pks(reader: User, stix_id: str, *versions: str) -> set[int]:
    """The rows TAXII's readable collection answers ``reader`` for ``stix_id`` and ``versions``."""
    collection = taxii.get_collection(reader, taxii.READABLE_ID)
    filters = taxii.Filters(ids=[stix_id], versions=list(versions))
    return {row[0] for row in taxii.get_objects(reader, collection, filters).rows}


@pytest.fixture
def cast(make_org: Callable[..., Organisation], make_user: Callable[..., User]) -> dict:
    orgs = [make_org(f"hold-{n}") for n in range(3)] + [make_org("hold-outside", member=False)]
    users = [make_user(f"hold-user-{n}", org) for n, org in enumerate(orgs)]
    both = make_user("hold-both", orgs[0])  # a member of two of the holders
    Membership.objects.create(user=both, organisation=orgs[1], role=both.memberships.get().role)
    return {"orgs": orgs, "users": users, "readers": [*users, both]}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(held=holdings)
def test_every_read_path_follows_the_rule(cast: dict, held: list) -> None:
    orgs, users = cast["orgs"], cast["users"]
    base = indicator(f"198.51.100.{next(counter) % 250}", name="held", created="2025-12-01T00:00:00.000Z")
    for origin, version, level, recipients in held:
        named = [] if level == TLP.RED else [orgs[r] for r in sorted(recipients)]
        obj = {**base, "modified": VERSIONS[version]}
        result = services.import_bundle(users[origin], orgs[origin], stream(obj), level, named)
        assert result.rejected == 0
    rows = list(StixObject.objects.filter(stix_id=base["id"]).select_related("origin_organisation"))

    # The import: one row per (version, origin), the newest of each origin its latest.
    assert len({(r.modified, r.origin_organisation_id) for r in rows}) == len(rows)
    assert {(o, v) for o, v, _l, _r in held} == {
        (orgs.index(r.origin_organisation), VERSIONS.index(r.modified.strftime("%Y-%m-%dT%H:%M:%S.000Z")))
        for r in rows
    }
    for origin in {r.origin_organisation_id for r in rows}:
        mine = [r for r in rows if r.origin_organisation_id == origin]
        assert [r.modified for r in mine if r.is_latest] == [max(r.modified for r in mine)]

    for reader in cast["readers"]:
        reader = User.objects.get(pk=reader.pk)
        latest = expected_latest(reader, rows)
        shown = list(queries.latest_visible(reader).filter(stix_id=base["id"]).values_list("pk", flat=True))
        assert shown == ([latest.pk] if latest else [])
        assert (
            list(queries.search(reader, queries.Search(q=base["id"])).values_list("pk", flat=True)) == shown
        )
        if latest is None:
            with pytest.raises(Http404):
                queries.get_latest_or_404(reader, base["id"])
        else:
            assert queries.get_latest_or_404(reader, base["id"]).pk == latest.pk
        readable = [r for r in rows if access.can_read(reader, r)]
        per_version = {r.modified: r for r in readable}
        each_once = [
            preferred(reader, [r for r in readable if r.modified == when])
            for when in sorted(per_version)[::-1]
        ]
        assert list(queries.versions(reader, base["id"]).values_list("pk", flat=True)) == [
            r.pk for r in each_once if r
        ]

        # TAXII's readable collection, with each keyword.
        assert taxii_pks(reader, base["id"], "last") == set(shown)
        assert taxii_pks(reader, base["id"], "all") == {r.pk for r in each_once if r}
        firsts = []
        for origin in {r.origin_organisation_id for r in rows}:
            oldest = min((r for r in rows if r.origin_organisation_id == origin), key=lambda r: r.modified)
            if access.can_read(reader, oldest):
                firsts.append(oldest)
        first = preferred(reader, firsts, "oldest")
        assert taxii_pks(reader, base["id"], "first") == ({first.pk} if first else set())
        both = taxii_pks(reader, base["id"], "first", "last")
        assert len(both) == len({StixObject.objects.get(pk=pk).modified for pk in both})
