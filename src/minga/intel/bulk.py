"""Plain multi-row INSERTs for the import's hot path.

Django's ``bulk_create`` prepares every field of every instance through the model layer, which
costs more per row than the database does (about 150 µs for a STIX object row on SQLite). The
import knows its columns and their types, so it sends the rows with ``executemany`` instead,
converting only the values the database driver cannot take as they are (datetimes on SQLite,
UUIDs). The SQL comes from Django's own operations, so it is right for SQLite and PostgreSQL.
On PostgreSQL, rows go through COPY: psycopg's client-side binding, which Django uses, would
otherwise quote every value in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import orjson
from django.db import connection, models
from django.db.models.constants import OnConflict

MAX_PARAMETERS = 30_000  # per statement: SQLite allows 32,766, PostgreSQL 65,535


class _Adapted(dict[Any, Any]):
    """Datetimes to the database's form, each adapted once: the same few instants recur on
    every row (now, created...). A hit is one dictionary look-up, with no Python call."""

    def __init__(self, adapt: Callable[[Any], Any]) -> None:
        super().__init__({None: None})
        self.adapt = adapt

    def __missing__(self, value: Any) -> Any:
        converted = self[value] = self.adapt(value)
        return converted


def _prepared(fields: Sequence[Any], rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
    """``rows`` with the values the driver cannot take as they are converted: datetimes (on
    SQLite) and UUIDs (text of hex digits passes as it is: SQLite stores it so, PostgreSQL
    parses it)."""
    datetimes = [
        (n, _Adapted(connection.ops.adapt_datetimefield_value))
        for n, f in enumerate(fields)
        if isinstance(f, models.DateTimeField)
    ]
    uuids = [
        (n, f)
        for n, f in enumerate(fields)
        if isinstance(f, models.UUIDField) and not all(type(row[n]) is str for row in rows)
    ]
    if not datetimes and not uuids:
        return rows
    prepared = []
    for row in rows:
        values = list(row)
        for n, adapted in datetimes:
            values[n] = adapted[values[n]]
        for n, field in uuids:
            if not isinstance(values[n], str):
                values[n] = field.get_db_prep_value(values[n], connection)
        prepared.append(values)
    return prepared


def insert(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    ignore_conflicts: bool = False,
) -> None:
    """INSERT ``rows`` (tuples of values in the order of ``columns``, field names) into the
    table of ``model``; ``ignore_conflicts`` skips rows that break a unique constraint."""
    if not rows:
        return
    fields = [cast(models.Field, model._meta.get_field(name)) for name in columns]
    quote = connection.ops.quote_name
    on_conflict = OnConflict.IGNORE if ignore_conflicts else None
    head = "{} {} ({}) VALUES ".format(
        connection.ops.insert_statement(on_conflict=on_conflict),
        quote(model._meta.db_table),
        ", ".join(quote(str(f.column)) for f in fields),
    )
    one = "({})".format(", ".join(["%s"] * len(fields)))
    tail = connection.ops.on_conflict_suffix_sql(fields, on_conflict, None, None) if ignore_conflicts else ""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.executemany(head + one + tail, _prepared(fields, rows))
    elif not ignore_conflicts:
        _copy(model, fields, rows)
    else:  # COPY cannot skip conflicts: one statement, one array parameter per column
        arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
        query = "INSERT INTO {} ({}) SELECT * FROM unnest({}){}".format(  # noqa: S608  (names from the model)
            quote(model._meta.db_table), ", ".join(quote(str(f.column)) for f in fields), arrays, tail
        )
        with connection.cursor() as cursor:
            cursor.execute(query, [list(column) for column in zip(*rows, strict=True)])


def insert_product(
    model: type[models.Model], columns: tuple[str, str], first: Sequence[int], second: Sequence[int]
) -> None:
    """INSERT one row for every pair of a value of ``first`` and one of ``second`` (integers),
    as ``columns``: a many-to-many link of many objects to a few recipients, built by the
    database from two arrays instead of row by row in Python."""
    if not first or not second:
        return
    fields = [cast(models.Field, model._meta.get_field(name)) for name in columns]
    quote = connection.ops.quote_name
    names = ", ".join(quote(str(f.column)) for f in fields)
    table = quote(model._meta.db_table)
    if connection.vendor == "postgresql":
        first_type, second_type = (f.db_type(connection) for f in fields)
        query = (
            f"INSERT INTO {table} ({names}) SELECT a, b"  # noqa: S608  (names from the model, values bound)
            f" FROM unnest(%s::{first_type}[]) a CROSS JOIN unnest(%s::{second_type}[]) b"
        )
        params: list[Any] = [list(first), list(second)]
    else:
        query = (
            f"INSERT INTO {table} ({names}) SELECT a.value, b.value"  # noqa: S608  (names from the model, values bound)
            " FROM json_each(%s) a, json_each(%s) b"
        )
        params = [orjson.dumps(list(first)).decode(), orjson.dumps(list(second)).decode()]
    with connection.cursor() as cursor:
        cursor.execute(query, params)


def _copy(model: type[models.Model], fields: Sequence[models.Field], rows: Iterable[Sequence[Any]]) -> None:
    from psycopg import sql

    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(model._meta.db_table),
        sql.SQL(", ").join(sql.Identifier(str(f.column)) for f in fields),
    )
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def insert_returning_ids(
    model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[int]:
    """INSERT ``rows`` and return their primary keys, in the order of ``rows``: multi-row
    ``INSERT ... RETURNING``, in order on SQLite >= 3.35 and PostgreSQL (as ``bulk_create``
    relies on too)."""
    fields = [cast(models.Field, model._meta.get_field(name)) for name in columns]
    if connection.vendor == "postgresql":
        # Ids drawn from the table's sequence first, then the rows copied with them.
        pk = cast(models.Field, model._meta.pk)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [model._meta.db_table, pk.column, len(rows)],
            )
            drawn = [row[0] for row in cursor.fetchall()]
        _copy(model, [pk, *fields], ([pk_value, *row] for pk_value, row in zip(drawn, rows, strict=True)))
        return drawn
    quote = connection.ops.quote_name
    head = "INSERT INTO {} ({}) VALUES ".format(  # noqa: S608  (names from the model, values bound)
        quote(model._meta.db_table),
        ", ".join(quote(str(f.column)) for f in fields),
    )
    one = "({})".format(", ".join(["%s"] * len(fields)))
    tail = f" RETURNING {quote(str(model._meta.pk.column))}"  # type: ignore[union-attr]
    per_statement = max(1, MAX_PARAMETERS // len(fields))
    prepared = _prepared(fields, rows)
    ids: list[int] = []
    with connection.cursor() as cursor:
        for start in range(0, len(prepared), per_statement):
            batch = prepared[start : start + per_statement]
            cursor.execute(head + ", ".join([one] * len(batch)) + tail, [v for row in batch for v in row])
            ids.extend(row[0] for row in cursor.fetchall())
    return ids


def select_in(
    model: type[models.Model],
    columns: Sequence[str],
    key: str,
    values: Sequence[Any],
    where: dict[str, Any] | None = None,
) -> list[tuple[Any, ...]]:
    """The ``columns`` (field names) of the rows whose ``key`` is one of ``values`` (and whose
    fields equal those of ``where``, field names to values). On PostgreSQL, one query with the
    values as one array parameter; elsewhere, batches of IN."""
    if not values:
        return []
    where = where or {}
    if connection.vendor != "postgresql":
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(values), 900):
            batch = values[start : start + 900]
            found = model._default_manager.filter(**{f"{key}__in": batch}, **where)
            rows.extend(found.values_list(*columns))
        return rows
    fields = [cast(models.Field, model._meta.get_field(name)) for name in columns]
    key_field = cast(models.Field, model._meta.get_field(key))
    equal = [cast(models.Field, model._meta.get_field(name)) for name in where]
    quote = connection.ops.quote_name
    query = "SELECT {} FROM {} WHERE {} = ANY(%s){}".format(  # noqa: S608  (names from the model, values bound)
        ", ".join(quote(str(f.column)) for f in fields),
        quote(model._meta.db_table),
        quote(str(key_field.column)),
        "".join(f" AND {quote(str(f.column))} = %s" for f in equal),
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [list(values), *where.values()])
        return [tuple(row) for row in cursor.fetchall()]
