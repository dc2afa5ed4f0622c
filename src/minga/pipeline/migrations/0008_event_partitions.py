"""Events and their recipients partitioned by month of their time on PostgreSQL.

A unique index of a partitioned table must hold the partition key: the events' key becomes
(id, time), the recipients' (id, time) and (event, organisation, time), and (feed, dedup_key) is
a plain index on PostgreSQL (unique on SQLite, step ``unique_key_on_sqlite``). Neither the
recipients nor the users' link table keep a database foreign key to the event (one would have to
name (event_id, time)); Django deletes their rows itself.

On PostgreSQL, ``partition`` turns the existing tables into partitioned ones: each is renamed,
a partitioned table like it takes its name (its DEFAULT partition and the months from the
current one to two ahead), its rows are copied in (older or later months land in DEFAULT until
the periodic ``pipeline.maintain_partitions`` creates their months and moves them), its id
sequence continues, its foreign keys are added again, and the old table is dropped. Works on an
empty database as on a full one. SQLite keeps plain tables. Self-contained SQL: later changes to
``minga.pipeline.partitions`` do not change what this migration did.
"""

from datetime import UTC, datetime

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

AHEAD = 2


def _months(now: datetime) -> list[datetime]:
    month = datetime(now.year, now.month, 1, tzinfo=UTC)
    found = [month]
    for _ in range(AHEAD):
        month = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
        found.append(month)
    found.append(datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC))
    return found


def _partition_table(cursor, table: str, indexes: list[str]) -> None:
    """Replace ``table`` by a table partitioned by RANGE of "time" holding the same rows."""
    old = f"{table}_unpartitioned"
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    old_sequence = cursor.fetchone()[0]
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
        [table],
    )
    foreign_keys = cursor.fetchall()
    cursor.execute(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint "
        "WHERE confrelid = %s::regclass AND contype = 'f'",
        [table],
    )
    referencing = cursor.fetchall()
    if referencing:  # the steps before dropped the ones this app had: another would break
        raise RuntimeError(f"{table} is referenced by foreign keys {referencing}; cannot partition it")
    for name, _definition in foreign_keys:
        cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    cursor.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s",
        [table],
    )
    for (index,) in cursor.fetchall():
        cursor.execute(f'ALTER INDEX "{index}" RENAME TO "{index[:50]}_unpartitioned"')
    cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{old}"')
    cursor.execute(
        f'CREATE TABLE "{table}" (LIKE "{old}" INCLUDING DEFAULTS INCLUDING IDENTITY) '
        'PARTITION BY RANGE ("time")'
    )
    cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY ("id", "time")')
    cursor.execute(f'CREATE TABLE "{table}_default" PARTITION OF "{table}" DEFAULT')
    bounds = _months(datetime.now(UTC))
    for lower, upper in zip(bounds, bounds[1:], strict=False):
        cursor.execute(
            f'CREATE TABLE "{table}_p{lower:%Y_%m}" PARTITION OF "{table}" FOR VALUES FROM (%s) TO (%s)',
            [lower, upper],
        )
    cursor.execute(f'INSERT INTO "{table}" SELECT * FROM "{old}"')  # noqa: S608  (LIKE: same columns)
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    new_sequence = cursor.fetchone()[0]
    cursor.execute(
        f"SELECT setval(%s, GREATEST((SELECT last_value FROM {old_sequence}), "  # noqa: S608
        f'(SELECT COALESCE(MAX("id"), 0) FROM "{old}"), 1))',
        [new_sequence],
    )
    for statement in indexes:
        cursor.execute(statement)
    for name, definition in foreign_keys:
        cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    cursor.execute(f'DROP TABLE "{old}"')
    cursor.execute(f'ALTER SEQUENCE {new_sequence} RENAME TO "{table}_id_seq"')


def partition(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        _partition_table(cursor, "pipeline_event", [])
        _partition_table(
            cursor,
            "pipeline_eventrecipient",
            [
                'CREATE INDEX "pipeline_recipient_org_event" '
                'ON "pipeline_eventrecipient" ("organisation_id", "event_id")'
            ],
        )


def unique_key_on_sqlite(apps, schema_editor) -> None:
    """SQLite's (feed, dedup_key) index stays unique, as it was: one index either way, and a
    second guard behind the writers' look-ups (SQLite's single writer makes it free of races)."""
    if schema_editor.connection.vendor != "sqlite":
        return
    schema_editor.execute('DROP INDEX "pipeline_event_key"')
    schema_editor.execute(
        'CREATE UNIQUE INDEX "pipeline_event_key" ON "pipeline_event" ("feed_id", "dedup_key")'
    )


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0003_scheduled_job"),
        ("pipeline", "0007_digests"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="event",
            name="recipient_users",
            field=models.ManyToManyField(
                blank=True,
                db_constraint=False,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="recipient users",
            ),
        ),
        migrations.AlterField(
            model_name="eventrecipient",
            name="event",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="routes",
                to="pipeline.event",
            ),
        ),
        migrations.RemoveConstraint(
            model_name="event",
            name="pipeline_event_key",
        ),
        migrations.RemoveConstraint(
            model_name="eventrecipient",
            name="pipeline_recipient_once",
        ),
        # Irreversible: the way back would be a copy into plain tables, and a unique key that
        # the rows may no longer satisfy.
        migrations.RunPython(partition),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["feed", "dedup_key"], name="pipeline_event_key"),
        ),
        migrations.AddConstraint(
            model_name="eventrecipient",
            constraint=models.UniqueConstraint(
                fields=("event", "organisation", "time"), name="pipeline_recipient_once"
            ),
        ),
        migrations.RunPython(unique_key_on_sqlite),
    ]
