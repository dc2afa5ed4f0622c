"""Stories of a team's tooling that speaks TAXII 2.1 through the OASIS client (taxii2-client)
to a real server (pytest-django's live server), with the team's API token."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import requests
from django.db import connection, connections
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from minga.core.choices import TLP
from minga.intel import observables, stix
from minga.intel.models import Observable, StixObject
from minga.intel.tests.bundles import TS, indicator, sco
from minga.taxii import services
from minga.taxii.tests.conftest import Cast, store, validate_stix

pytestmark = pytest.mark.django_db(transaction=True)

GREEN = [stix.TLP2_MARKING_IDS[TLP.GREEN]]


class Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def server(live_server: Any, token: str, *, basic: bool = False) -> Server:
    url = f"{live_server.url}/taxii2/"
    if basic:
        return Server(url, user="tooling", password=token)
    return Server(url, auth=Bearer(token))


def collections_by_alias(root: ApiRoot) -> dict[str, Collection]:
    return {c.alias: c for c in root.collections}


def test_a_teams_tooling_pushes_an_envelope_and_pulls_what_it_may_read(live_server: Any, cast: Cast) -> None:
    theirs = indicator("203.0.113.50")
    store(cast.caribe, theirs, tlp=TLP.AMBER, recipients=(cast.andina,))
    taxii = server(live_server, cast.ana.token, basic=True)

    root = taxii.default
    assert root is not None and [r.url for r in taxii.api_roots] == [root.url]
    assert root.max_content_length == services.max_content_length()
    found = collections_by_alias(root)
    assert set(found) == {"readable", "inbox-andina", "events-andina"}
    inbox, readable = found["inbox-andina"], found["readable"]
    assert (inbox.can_read, inbox.can_write, readable.can_write) == (True, True, False)

    good, address = indicator(object_marking_refs=GREEN), sco("ipv4-addr", "198.51.100.20")
    bad = indicator(pattern="[ipv4-addr:value = 'x' AND")
    status = inbox.add_objects({"objects": [good, bad, address]})

    assert status.status == "complete"
    counts = (status.total_count, status.success_count, status.failure_count, status.pending_count)
    assert counts == (3, 2, 1, 0)
    assert {s["id"] for s in status.successes} == {good["id"], address["id"]}
    assert status.failures[0]["id"] == bad["id"] and status.failures[0]["version"] == TS
    assert status.failures[0]["message"]
    again = root.get_status(status.id)
    assert again.success_count == 2 and again.failures == status.failures

    pulled: list[dict[str, Any]] = []
    for envelope in as_pages(readable.get_objects, per_request=1):
        pulled += envelope.get("objects", [])
    assert {o["id"] for o in pulled} == {theirs["id"], good["id"], address["id"]}
    assert len(pulled) == 3
    validate_stix(pulled)
    assert [o["id"] for o in inbox.get_objects()["objects"]] == [good["id"], address["id"]]

    one = readable.get_object(theirs["id"])["objects"]
    assert one[0]["object_marking_refs"][0] == stix.TLP2_MARKING_IDS[TLP.AMBER]
    validate_stix(one)
    assert readable.object_versions(theirs["id"])["versions"] == [TS]
    manifest = readable.get_manifest(type="indicator")["objects"]
    assert {m["id"] for m in manifest} == {theirs["id"], good["id"]}


def test_an_outsider_sees_nothing_through_any_endpoint(live_server: Any, cast: Cast) -> None:
    amber = indicator()
    store(cast.andina, amber, tlp=TLP.AMBER, recipients=(cast.caribe,))
    ana = server(live_server, cast.ana.token).default
    assert ana is not None
    status = collections_by_alias(ana)["inbox-andina"].add_objects({"objects": [indicator()]})

    olga = server(live_server, cast.olga.token).default
    assert olga is not None
    found = collections_by_alias(olga)
    assert set(found) == {"readable", "inbox-outside", "events-outside"}
    readable = found["readable"]
    assert "objects" not in readable.get_objects()
    assert "objects" not in readable.get_manifest()
    assert "objects" not in readable.get_objects(id=amber["id"], version="all")
    for attempt in (
        lambda: readable.get_object(amber["id"]),
        lambda: readable.object_versions(amber["id"]),
        lambda: olga.get_status(status.id),
    ):
        with pytest.raises(requests.HTTPError) as caught:
            attempt()
        assert caught.value.response.status_code == 404
        assert caught.value.response.json()["http_status"] == "404"

    carlos = server(live_server, cast.carlos.token).default
    assert carlos is not None
    assert collections_by_alias(carlos)["readable"].get_object(amber["id"])["objects"][0]["id"] == amber["id"]


def test_paging_with_the_client_while_objects_arrive(live_server: Any, cast: Cast) -> None:
    store(cast.andina, *[indicator(f"198.51.100.{i}") for i in range(5)], tlp=TLP.GREEN)
    readable = collections_by_alias(server(live_server, cast.carlos.token).default)["readable"]  # type: ignore[arg-type]
    seen: list[str] = []
    for number, envelope in enumerate(as_pages(readable.get_objects, per_request=2)):
        seen += [o["id"] for o in envelope.get("objects", [])]
        if number == 0:
            store(cast.andina, *[indicator(f"203.0.113.{i}") for i in range(3)], tlp=TLP.GREEN)
    added = list(StixObject.objects.order_by("date_added", "pk").values_list("stix_id", flat=True))
    assert seen == added and len(set(seen)) == 8


def test_a_team_deletes_an_object_it_shared(live_server: Any, cast: Cast) -> None:
    mine = indicator(object_marking_refs=GREEN)
    ana = collections_by_alias(server(live_server, cast.ana.token).default)  # type: ignore[arg-type]
    ana["inbox-andina"].add_objects({"objects": [mine]})
    # (The client itself refuses to delete from the readable collection: it cannot be written.)
    ana["inbox-andina"].delete_object(mine["id"])
    assert not StixObject.objects.filter(stix_id=mine["id"]).exists()


def _waiting_on(lock: str) -> int:
    """How many sessions of this database wait for a lock of kind ``lock`` (read outside any
    transaction: pg_stat_activity stays as it was for the rest of a transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = %s",
            [lock],
        )
        return int(cursor.fetchone()[0])


def _wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_polling_misses_no_import_that_commits_after_a_later_one_began(live_server: Any, cast: Cast) -> None:
    """Two imports overlap: the first has stored its version but not committed (held up by a
    third transaction), the second starts meanwhile. A client that polls then, and again
    afterwards from the last date_added it was given, receives both versions, in commit order:
    neither is skipped (the second import waits for the first, and its date_added is later)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent writers: on SQLite one write lock already orders them")
    url = f"{live_server.url}/taxii2/api/collections/{services.READABLE_ID}/objects/"
    headers = {"Accept": services.MEDIA_TAXII, "Authorization": f"Bearer {cast.carlos.token}"}
    seen: list[str] = []
    last_added = ""

    def poll() -> None:
        nonlocal last_added
        answer = requests.get(
            url, params={"added_after": last_added} if last_added else {}, headers=headers, timeout=30
        )
        answer.raise_for_status()
        seen.extend(o["id"] for o in answer.json().get("objects", []))
        last_added = answer.headers.get("X-TAXII-Date-Added-Last", last_added)

    store(cast.andina, indicator("198.51.100.1"), tlp=TLP.GREEN)
    poll()
    slow, quick = indicator("198.51.100.2"), indicator("198.51.100.3")
    ((kind, value),) = observables.extract(slow)
    errors: list[BaseException] = []

    def importing(obj: dict[str, Any]) -> None:
        try:
            store(cast.andina, obj, tlp=TLP.GREEN)
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    database = connection.settings_dict
    with (
        psycopg.connect(
            host=database["HOST"],
            port=database["PORT"] or 5432,
            user=database["USER"],
            dbname=database["NAME"],
        ) as blocker,
        blocker.cursor() as cursor,
    ):
        # An uncommitted row of the slow object's observable: its import stores the version,
        # then waits on this row's unique key until the blocker's transaction ends.
        cursor.execute(
            f'INSERT INTO "{Observable._meta.db_table}" (kind, value) VALUES (%s, %s)',  # noqa: S608
            [kind, value],
        )
        first = threading.Thread(target=importing, args=(slow,))
        first.start()
        _wait_for(
            lambda: not first.is_alive() or _waiting_on("transactionid") >= 1, "the first import to wait"
        )
        second = threading.Thread(target=importing, args=(quick,))
        second.start()
        _wait_for(
            lambda: not second.is_alive() or _waiting_on("advisory") >= 1,
            "the second import to wait or to finish",
        )
        poll()  # while the first import is still open
        blocker.rollback()
    first.join(20)
    second.join(20)
    assert not errors, errors
    assert not first.is_alive() and not second.is_alive()
    poll()
    assert seen == list(StixObject.objects.order_by("date_added", "pk").values_list("stix_id", flat=True))
    assert seen[1:] == [slow["id"], quick["id"]]
