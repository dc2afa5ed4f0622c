"""Monthly partitions of the event tables on PostgreSQL (SQLite keeps plain tables).

``pipeline_event`` and ``pipeline_eventrecipient`` are partitioned by RANGE of ``time`` (the
event's time, copied on its recipients), one partition a calendar month in UTC, named
``<table>_pYYYY_MM``, plus a DEFAULT partition ``<table>_default`` for any time outside the
months created (feeds carry old and future-dated times). Migration 0008 made them so.

Why: an organisation's recent events and the filtered counts read the recent months' indexes
only, each partition's indexes stay the size of a month, and an expired month goes with one
DROP TABLE instead of a DELETE of millions of rows (``drop_expired``).

``maintain`` (the periodic job ``pipeline.maintain_partitions``) creates the months from the
oldest any feed keeps to ``AHEAD`` months after the current one. PostgreSQL refuses to create a
month that the DEFAULT partition holds rows of, so those rows move to the new month first, in
the same transaction, with the DEFAULT partitions locked so no writer adds rows of that month
in between. Both tables always have the same months: a month is created, and dropped, for both
in one transaction.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Max

from minga.core import audit
from minga.pipeline.models import Event, EventRecipient, Feed

AHEAD = 2  # months created after the current one
# Months kept before the current one at most, whatever a feed's retention: every partition costs
# each query that cannot prune (an organisation's newest events) one more index probe, and
# planning time. Older events stay in DEFAULT, purged by DELETE.
MOST_MONTHS_BACK = 36
DEFAULT_RETENTION_DAYS = 365  # when no feed exists yet: Feed.retention_days' default
_MONTH = re.compile(r"_p(\d{4})_(\d{2})$")


def enabled() -> bool:
    """Whether the event tables are partitioned: on PostgreSQL, always (migration 0008)."""
    return connection.vendor == "postgresql"


def tables() -> tuple[str, str]:
    """The partitioned tables, events first: the order writers take their locks in (an event,
    then its recipients), so the maintenance and the purge lock them in that order too and
    never deadlock with a writer."""
    return Event._meta.db_table, EventRecipient._meta.db_table


def month_of(moment: datetime) -> datetime:
    """The first instant (UTC) of the month ``moment`` falls in."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month(month: datetime) -> datetime:
    return datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)


def partition_name(table: str, month: datetime) -> str:
    return f"{table}_p{month:%Y_%m}"


def months(table: str) -> dict[datetime, str]:
    """The month partitions of ``table`` that exist: first instant -> partition name."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [table],
        )
        names = [row[0] for row in cursor.fetchall()]
    found = {}
    for name in names:
        match = _MONTH.search(name)
        if match and name == f"{table}{match.group(0)}":
            found[datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=UTC)] = name
    return found


def wanted_months(now: datetime) -> list[datetime]:
    """From the month of the oldest time any feed keeps (at most ``MOST_MONTHS_BACK`` months
    back) to ``AHEAD`` months after ``now``'s."""
    longest = Feed.objects.aggregate(days=Max("retention_days"))["days"] or DEFAULT_RETENTION_DAYS
    month, last = month_of(now - timedelta(days=longest)), month_of(now)
    if (last.year - month.year) * 12 + last.month - month.month > MOST_MONTHS_BACK:
        month = datetime(last.year - MOST_MONTHS_BACK // 12, last.month, 1, tzinfo=UTC)
        for _ in range(MOST_MONTHS_BACK % 12):
            month = datetime(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1, tzinfo=UTC)
    for _ in range(AHEAD):
        last = next_month(last)
    wanted = []
    while month <= last:
        wanted.append(month)
        month = next_month(month)
    return wanted


def maintain(now: datetime | None = None) -> dict[str, int]:
    """Create the months ``wanted_months`` names that are missing, moving the rows the DEFAULT
    partitions hold for them; one transaction a month, audited (``pipeline.partition_created``,
    by the node, with the rows moved). Returns partition name -> events moved. No-op on SQLite."""
    if not enabled():
        return {}
    now = now or datetime.now(UTC)
    created: dict[str, int] = {}
    existing = [months(table) for table in tables()]
    for month in wanted_months(now):
        if all(month in found for found in existing):
            continue
        moved = create_month(month)
        created[partition_name(Event._meta.db_table, month)] = moved
    return created


def create_month(month: datetime) -> int:
    """Create ``month``'s partition of both tables (those missing), moving into them the rows
    the DEFAULT partitions hold for it. Returns the events moved."""
    lower, upper = month, next_month(month)
    quote = connection.ops.quote_name
    moved = {}
    with transaction.atomic(), connection.cursor() as cursor:
        # Writers of rows routed to DEFAULT wait until the month exists: none can slip a row of
        # this month in between the move and the ATTACH (which would then refuse).
        defaults = ", ".join(quote(f"{table}_default") for table in tables())
        cursor.execute(f"LOCK TABLE {defaults} IN ACCESS EXCLUSIVE MODE")
        for table in tables():
            name = partition_name(table, month)
            cursor.execute("SELECT to_regclass(%s)", [quote(name)])
            if cursor.fetchone()[0] is not None:
                continue
            default = quote(f"{table}_default")
            # A table like the parent (same columns in the same order, without the identity),
            # filled, then attached: ATTACH builds its indexes, and, unlike CREATE TABLE ...
            # PARTITION OF, locks the parent in a mode that lets writers go on.
            cursor.execute(f"CREATE TABLE {quote(name)} (LIKE {quote(table)} INCLUDING DEFAULTS)")
            cursor.execute(
                f'INSERT INTO {quote(name)} SELECT * FROM {default} WHERE "time" >= %s AND "time" < %s',  # noqa: S608
                [lower, upper],
            )
            moved[table] = cursor.rowcount
            if cursor.rowcount:
                cursor.execute(
                    f'DELETE FROM {default} WHERE "time" >= %s AND "time" < %s',  # noqa: S608
                    [lower, upper],
                )
            cursor.execute(
                f"ALTER TABLE {quote(table)} ATTACH PARTITION {quote(name)} FOR VALUES FROM (%s) TO (%s)",
                [lower, upper],
            )
        events = moved.get(Event._meta.db_table, 0)
        audit.record(
            "pipeline.partition_created",
            details={
                "month": f"{month:%Y-%m}",
                "events_moved": events,
                "recipients_moved": moved.get(EventRecipient._meta.db_table, 0),
            },
        )
    return events


def drop_expired(cutoffs: dict[int, datetime]) -> dict[int, int]:
    """Drop the month partitions (of both tables) that end before every feed's cutoff
    (``cutoffs``: feed id -> the time before which its events expire, for every feed), so all
    their rows have expired. Counts each feed's events first and records them in the audit
    (``pipeline.events_purged``, one entry a feed, with the months dropped), in the same
    transaction as the drop. Returns feed id -> events dropped. No-op on SQLite."""
    if not enabled() or not cutoffs:
        return {}
    limit = min(cutoffs.values())
    events, recipients = tables()
    both = months(events).keys() & months(recipients).keys()
    expired = sorted(month for month in both if next_month(month) <= limit)
    if not expired:
        return {}
    quote = connection.ops.quote_name
    counts: dict[int, int] = {}
    through = Event.recipient_users.through._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        for month in expired:
            name = quote(partition_name(events, month))
            recipient_name = quote(partition_name(recipients, month))
            # No writer adds rows to these months (a feed may carry old times) between the
            # count and the drop.
            cursor.execute(f"LOCK TABLE {name}, {recipient_name} IN SHARE MODE")
            cursor.execute(f'SELECT "feed_id", COUNT(*) FROM {name} GROUP BY "feed_id"')  # noqa: S608
            for feed_id, count in cursor.fetchall():
                counts[feed_id] = counts.get(feed_id, 0) + count
            # The rows Django would delete with the events (no database key ties them).
            cursor.execute(f'DELETE FROM {quote(through)} WHERE "event_id" IN (SELECT "id" FROM {name})')  # noqa: S608
            cursor.execute(f"DROP TABLE {name}")
            cursor.execute(f"DROP TABLE {recipient_name}")
        dropped = [f"{month:%Y-%m}" for month in expired]
        for feed in Feed.objects.select_related("owner").filter(pk__in=counts):
            audit.record(
                "pipeline.events_purged",
                obj=feed,
                organisation=feed.owner,
                details={
                    "events": counts[feed.pk],
                    "older_than": cutoffs[feed.pk],
                    "retention_days": feed.retention_days,
                    "partitions_dropped": dropped,
                },
            )
    return counts
