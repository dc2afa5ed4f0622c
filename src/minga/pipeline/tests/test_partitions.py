"""The event tables' monthly partitions on PostgreSQL: where rows land, the maintenance that
creates months and empties DEFAULT, the purge that drops expired months, de-duplication across
months, and the migration's conversion of a plain table. SQLite keeps plain tables."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from minga.core.models import AuditEntry
from minga.pipeline import partitions, processing, services
from minga.pipeline.models import Event, EventRecipient
from minga.pipeline.tests.helpers import HEADER, constituency, ingest, scan_feed

pytestmark = pytest.mark.django_db


@pytest.fixture
def postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite keeps plain event tables")


def _where(model: type[Event] | type[EventRecipient], **filters: object) -> list[str]:
    """The partition each matching row is stored in, by id."""
    ids = list(model.objects.filter(**filters).order_by("id").values_list("id", flat=True))
    with connection.cursor() as cursor:
        table = model._meta.db_table
        cursor.execute(
            f'SELECT tableoid::regclass::text FROM "{table}" WHERE "id" = ANY(%s) ORDER BY "id"',  # noqa: S608
            [ids],
        )
        return [row[0] for row in cursor.fetchall()]


def _exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [name])
        return cursor.fetchone()[0] is not None


def _line(moment: datetime, ip: str) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ},{ip},22,,,,scan\n"


def test_sqlite_keeps_plain_tables_and_a_unique_key():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA index_list('pipeline_event')")
        unique = {row[1]: bool(row[2]) for row in cursor.fetchall()}
    assert unique["pipeline_event_key"] is True
    assert partitions.maintain() == {} and partitions.drop_expired({1: timezone.now()}) == {}


def test_the_event_tables_are_partitioned_by_month_of_their_time(postgresql):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, p.partstrat, a.attname FROM pg_partitioned_table p "
            "JOIN pg_class c ON c.oid = p.partrelid "
            "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
            "WHERE c.relname LIKE 'pipeline_%%' ORDER BY c.relname"
        )
        assert cursor.fetchall() == [
            ("pipeline_event", "r", "time"),
            ("pipeline_eventrecipient", "r", "time"),
        ]
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'pipeline_event'::regclass AND contype = 'p'"
        )
        assert cursor.fetchone()[0] == 'PRIMARY KEY (id, "time")'
        # No unique (feed, dedup_key) here: a plain index, and no key of another table on the events.
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'pipeline_event_key'")
        assert "UNIQUE" not in cursor.fetchone()[0]
        cursor.execute("SELECT COUNT(*) FROM pg_constraint WHERE confrelid = 'pipeline_event'::regclass")
        assert cursor.fetchone()[0] == 0
    this_month = partitions.month_of(timezone.now())
    for table in partitions.tables():
        assert _exists(f"{table}_default")
        assert this_month in partitions.months(table)


def test_rows_land_in_their_month_and_outliers_in_default(make_org, postgresql):
    hub = make_org("hub")
    constituency(make_org("demo-a"), "192.0.2.0/24")
    now = timezone.now()
    old = datetime(2001, 5, 17, 12, tzinfo=UTC)
    ingest(scan_feed(hub), HEADER + _line(now, "192.0.2.1") + _line(old, "192.0.2.2"))
    month = partitions.partition_name("pipeline_event", partitions.month_of(now))
    assert _where(Event, source_ip="192.0.2.1") == [month]
    assert _where(Event, source_ip="192.0.2.2") == ["pipeline_event_default"]
    partition = partitions.partition_name("pipeline_eventrecipient", partitions.month_of(now))
    assert _where(EventRecipient, event__source_ip="192.0.2.1") == [partition]
    assert _where(EventRecipient, event__source_ip="192.0.2.2") == ["pipeline_eventrecipient_default"]


def test_the_maintenance_creates_the_months_and_moves_rows_out_of_default(make_org, postgresql):
    hub = make_org("hub")
    constituency(make_org("demo-a"), "192.0.2.0/24")
    feed = scan_feed(hub, retention_days=400)
    now = timezone.now()
    then = now - timedelta(days=300)
    ingest(feed, HEADER + _line(then, "192.0.2.1") + _line(now, "192.0.2.2"))
    assert _where(Event, source_ip="192.0.2.1") == ["pipeline_event_default"]

    created = partitions.maintain(now)
    month = partitions.month_of(then)
    name = partitions.partition_name("pipeline_event", month)
    assert created[name] == 1 and sum(created.values()) == 1
    assert _where(Event, source_ip="192.0.2.1") == [name]
    assert _where(EventRecipient, event__source_ip="192.0.2.1") == [
        partitions.partition_name("pipeline_eventrecipient", month)
    ]
    wanted = partitions.wanted_months(now)
    assert wanted[0] == partitions.month_of(now - timedelta(days=400)) and len(wanted) >= 16
    for table in partitions.tables():
        assert set(wanted) <= set(partitions.months(table))
    entry = AuditEntry.objects.get(action="pipeline.partition_created", details__month=f"{month:%Y-%m}")
    assert entry.details["events_moved"] == 1 and entry.details["recipients_moved"] == 1
    assert partitions.maintain(now) == {}  # nothing left to do
    assert Event.objects.count() == 2 and EventRecipient.objects.count() == 2
    # New rows of that month go to it now.
    ingest(feed, HEADER + _line(then, "192.0.2.3"), name="later.csv")
    assert _where(Event, source_ip="192.0.2.3") == [name]


def test_the_purge_drops_expired_months_whole_and_audits_each_feed(make_org, postgresql):
    hub = make_org("hub")
    constituency(make_org("demo-a"), "192.0.2.0/24")
    short = scan_feed(hub, name="short", retention_days=30)
    long = scan_feed(hub, name="long", retention_days=60)
    now = timezone.now()
    ancient, middle, recent = now - timedelta(days=100), now - timedelta(days=45), now - timedelta(days=1)
    body = HEADER + "".join(_line(t, f"192.0.2.{n}") for n, t in enumerate((ancient, middle, recent), 1))
    ingest(short, body)
    ingest(long, body + _line(ancient, "192.0.2.9"))
    partitions.maintain(now - timedelta(days=120))  # the months made while they were kept
    expired_month = partitions.month_of(ancient)
    assert (
        _where(Event, time__lt=now - timedelta(days=90))
        == [partitions.partition_name("pipeline_event", expired_month)] * 3
    )

    purged = services.purge_expired(now)
    assert purged == {"short": 2, "long": 2}  # short: ancient (dropped) + middle (deleted)
    for table in partitions.tables():
        assert not _exists(partitions.partition_name(table, expired_month))
    assert set(Event.objects.filter(feed=short).values_list("source_ip", flat=True)) == {"192.0.2.3"}
    assert set(Event.objects.filter(feed=long).values_list("source_ip", flat=True)) == {
        "192.0.2.2",
        "192.0.2.3",
    }
    assert set(EventRecipient.objects.values_list("event_id", flat=True)) == set(
        Event.objects.values_list("id", flat=True)
    )
    entries = AuditEntry.objects.filter(action="pipeline.events_purged").order_by("seq")
    counted = [(e.details["events"], "partitions_dropped" in e.details) for e in entries]
    # The drop first (short 1, long 2, counted before it), then short's middle event, deleted.
    assert sorted(counted[:2]) == [(1, True), (2, True)] and counted[2:] == [(1, False)]
    assert all(f"{expired_month:%Y-%m}" in e.details["partitions_dropped"] for e in entries[:2])
    assert services.purge_expired(now) == {}


def test_duplicates_are_found_across_months_and_chunks(make_org, postgresql):
    hub = make_org("hub")
    constituency(make_org("demo-a"), "192.0.2.0/24")
    for month in (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)):
        partitions.create_month(month)
    # A week's window (from Thursday 29 January 2026) across two months.
    week = 7 * 86400
    january, february = datetime(2026, 1, 31, 10, tzinfo=UTC), datetime(2026, 2, 1, 10, tzinfo=UTC)
    body = HEADER + _line(february, "192.0.2.1") + _line(january, "192.0.2.1") + _line(january, "192.0.2.2")
    feed = scan_feed(hub, dedup_window=week)
    run = services.start_run(None, feed, [body.encode()], "f.csv", queue=False, chunk_lines=1)
    chunks = list(run.chunks.order_by("number").values_list("pk", flat=True))
    # The later line first: January's event is stored, then the earlier line (February's)
    # takes it over, and the row moves to February's partition with its recipients.
    with CaptureQueriesContext(connection) as queries:
        for chunk_id in reversed(chunks):
            processing.process_chunk(chunk_id)
    run.refresh_from_db()
    assert (run.parsed, run.duplicates, run.routed) == (3, 1, 2)
    kept = Event.objects.get(source_ip="192.0.2.1")
    assert (kept.line, kept.time) == (2, february)
    assert _where(Event, source_ip="192.0.2.1") == ["pipeline_event_p2026_02"]
    assert _where(EventRecipient, event__source_ip="192.0.2.1") == ["pipeline_eventrecipient_p2026_02"]
    again = ingest(feed, body, chunk_lines=2, name="again.csv")
    assert (again.parsed, again.duplicates) == (3, 3) and Event.objects.count() == 2
    # The look-ups named the key's window, so PostgreSQL read the two months only.
    lookup = next(q["sql"] for q in queries.captured_queries if '"dedup_key" = ANY' in q["sql"])
    assert '"time" >=' in lookup
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + lookup)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "pipeline_event_p2026_01" in plan or "pipeline_event_p2026_02" in plan
    assert "pipeline_event_default" not in plan and "p2026_11" not in plan


def test_deleting_events_deletes_their_recipients_without_a_database_key(make_org):
    hub = make_org("hub")
    constituency(make_org("demo-a"), "192.0.2.0/24")
    feed = scan_feed(hub)
    ingest(feed, HEADER + _line(timezone.now(), "192.0.2.1") + _line(timezone.now(), "192.0.2.2"))
    assert EventRecipient.objects.count() == 2
    Event.objects.filter(source_ip="192.0.2.1").delete()
    assert list(EventRecipient.objects.values_list("event__source_ip", flat=True)) == ["192.0.2.2"]


def test_the_migration_converts_a_plain_table_keeping_rows_ids_and_keys(make_org, postgresql):
    migration = importlib.import_module("minga.pipeline.migrations.0008_event_partitions")
    feed = scan_feed(make_org("hub"))
    with connection.cursor() as cursor:
        # The test's transaction holds deferred key checks, which ALTER TABLE refuses to
        # leave pending (a migration starts without any).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            'CREATE TABLE "probe_event" ("id" bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, '
            '"time" timestamptz NOT NULL, "feed_id" bigint NOT NULL REFERENCES "pipeline_feed" ("id"), '
            "\"note\" text NOT NULL DEFAULT '')"
        )
        now = timezone.now()
        cursor.execute(
            'INSERT INTO "probe_event" ("time", "feed_id") VALUES (%s, %s), (%s, %s), (%s, %s)',
            [now, feed.pk, datetime(2003, 3, 3, tzinfo=UTC), feed.pk, now + timedelta(days=20), feed.pk],
        )
        migration._partition_table(
            cursor, "probe_event", ['CREATE INDEX "probe_note" ON "probe_event" ("note")']
        )
        cursor.execute("SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'probe_event'::regclass")
        assert cursor.fetchone()[0] == "r"
        cursor.execute('SELECT "id", tableoid::regclass::text FROM "probe_event" ORDER BY "id"')
        rows = cursor.fetchall()
        assert [r[0] for r in rows] == [1, 2, 3]
        assert rows[1][1] == "probe_event_default"
        assert rows[0][1] == partitions.partition_name("probe_event", partitions.month_of(now))
        cursor.execute(
            'INSERT INTO "probe_event" ("time", "feed_id") VALUES (%s, %s) RETURNING "id"', [now, feed.pk]
        )
        assert cursor.fetchone()[0] == 4  # the ids go on
        cursor.execute(
            "SELECT contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'probe_event'::regclass ORDER BY contype"
        )
        constraints = cursor.fetchall()
        assert ("p", 'PRIMARY KEY (id, "time")') in constraints
        assert any(kind == "f" and "REFERENCES pipeline_feed(id)" in text for kind, text in constraints)
        assert _exists("probe_note") and not _exists("probe_event_unpartitioned")


def test_the_command_line_creates_the_months_now(make_org):
    from io import StringIO

    from django.core.management import call_command

    scan_feed(make_org("hub"), retention_days=100)
    out = StringIO()
    call_command("feed", "partitions", stdout=out)
    if connection.vendor == "sqlite":
        assert "not partitioned" in out.getvalue()
        return
    oldest = partitions.month_of(timezone.now() - timedelta(days=100))
    assert partitions.partition_name("pipeline_event", oldest) in out.getvalue()
    assert oldest in partitions.months("pipeline_eventrecipient")
    again = StringIO()
    call_command("feed", "partitions", stdout=again)
    assert "created 0 monthly partitions" in again.getvalue()


def test_the_months_kept_follow_the_longest_retention_up_to_three_years(make_org):
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    hub = make_org("hub")
    assert partitions.wanted_months(now)[0] == datetime(2025, 11, 1, tzinfo=UTC)  # 365 days, no feed
    feed = scan_feed(hub, retention_days=40)
    wanted = partitions.wanted_months(now)
    assert wanted[0] == datetime(2026, 10, 1, tzinfo=UTC) and wanted[-1] == datetime(2027, 1, 1, tzinfo=UTC)
    feed.retention_days = 36_500
    feed.save()
    wanted = partitions.wanted_months(now)
    assert len(wanted) == partitions.MOST_MONTHS_BACK + 1 + partitions.AHEAD
    assert wanted[0] == datetime(2023, 11, 1, tzinfo=UTC)
