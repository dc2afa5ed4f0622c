"""``StixObject.unrivalled``: the import flags a row that no other row competes with, so that
readers skip choosing among copies; a second organisation storing the id unflags every row of
it, and the migration's backfill computes the same flag for rows stored before it."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest
from django.db import connection

from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.intel import queries, services
from minga.intel.models import StixObject
from minga.intel.tests.bundles import indicator, sco, stream

pytestmark = pytest.mark.django_db

V2 = "2026-02-01T00:00:00.000Z"
BACKFILL = importlib.import_module("minga.intel.migrations.0006_unrivalled").BACKFILL


def _flags(*stix_ids: str) -> dict[tuple[str, str, str], bool | None]:
    rows = StixObject.objects.filter(stix_id__in=stix_ids)
    return {
        (r.stix_id, r.origin_organisation.short_name, r.modified.isoformat()): r.unrivalled
        for r in rows.select_related("origin_organisation")
    }


def test_rows_of_an_id_one_organisation_holds_are_unrivalled_until_another_stores_it(
    make_org: Callable[..., Organisation], make_user: Callable[..., User]
) -> None:
    andina, caribe = make_org("andina"), make_org("caribe")
    ana, carlos = make_user("ana", andina), make_user("carlos", caribe)
    x, alone, address = indicator(), indicator("203.0.113.9"), sco("ipv4-addr", "192.0.2.80")
    services.import_bundle(ana, andina, stream(x, alone, address), TLP.GREEN)
    services.import_bundle(ana, andina, stream({**x, "modified": V2}), TLP.GREEN)
    assert set(_flags(x["id"], alone["id"], address["id"]).values()) == {True}

    # Caribe stores x and the address too: every row of both ids has a rival from now on, the
    # rows Andina stored before as well as Caribe's; Andina's other indicator keeps its flag.
    services.import_bundle(carlos, caribe, stream(x, address), TLP.GREEN)
    flags = _flags(x["id"], address["id"])
    assert len(flags) == 5 and set(flags.values()) == {False}
    assert list(_flags(alone["id"]).values()) == [True]
    # Andina's next version of x arrives rivalled too.
    services.import_bundle(ana, andina, stream({**x, "modified": "2026-03-01T00:00:00.000Z"}), TLP.GREEN)
    assert set(_flags(x["id"]).values()) == {False}

    # Readers still get one row per id, chosen among the copies: the newest version, and of one
    # version, their own organisation's copy.
    for reader, origin in ((ana, "andina"), (carlos, "caribe")):
        latest = queries.latest_visible(reader).filter(stix_id__in=[x["id"], address["id"]])
        assert sorted(latest.values_list("stix_id", "origin_organisation__short_name")) == sorted(
            [(x["id"], "andina"), (address["id"], origin)]
        )


def test_the_backfill_flags_what_the_import_would(
    make_org: Callable[..., Organisation], make_user: Callable[..., User]
) -> None:
    andina, caribe = make_org("andina"), make_org("caribe")
    ana, carlos = make_user("ana", andina), make_user("carlos", caribe)
    shared, own, twice = indicator(), indicator("203.0.113.9"), indicator("203.0.113.10")
    services.import_bundle(ana, andina, stream(shared, own, twice, {**own, "modified": V2}), TLP.GREEN)
    services.import_bundle(carlos, caribe, stream(shared), TLP.GREEN)
    # A second version of one id flagged latest beside the first (a race of old): both rivals.
    services.import_bundle(ana, andina, stream({**twice, "modified": V2}), TLP.GREEN)
    StixObject.objects.filter(stix_id=twice["id"]).update(is_latest=True)
    expected = _flags(shared["id"], own["id"])
    expected |= {key: False for key in _flags(twice["id"])}

    StixObject.objects.update(unrivalled=None)
    with connection.cursor() as cursor:
        cursor.execute(BACKFILL)
    assert _flags(shared["id"], own["id"], twice["id"]) == expected
    assert sorted(set(expected.values())) == [False, True]
