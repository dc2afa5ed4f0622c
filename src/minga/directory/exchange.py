"""Bulk exchange of the directory: organisations with their constituencies, as CSV or JSON.

Exports neutralise spreadsheet formulas (a cell starting with = + - @ or a control character
gets a leading apostrophe), since these files are opened in spreadsheets. Imports check every
row first, report each bad row with its line and field, and apply all or nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from minga.core.models import Organisation, User
from minga.directory import constituency, services

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ["organisation", "kind", "value"]


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def unneutralise(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


def export_rows(organisations: Iterable[Organisation]) -> list[dict[str, str]]:
    rows = []
    for org in organisations:
        for cidr in org.networks.values_list("cidr", flat=True):  # type: ignore[attr-defined]
            rows.append({"organisation": org.short_name, "kind": constituency.NETWORK, "value": cidr})
        for asn in org.asns.values_list("asn", flat=True):  # type: ignore[attr-defined]
            rows.append({"organisation": org.short_name, "kind": constituency.ASN, "value": str(asn)})
        for domain in org.domains.values_list("domain", flat=True):  # type: ignore[attr-defined]
            rows.append({"organisation": org.short_name, "kind": constituency.DOMAIN, "value": domain})
    return rows


def export_csv(organisations: Iterable[Organisation]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in export_rows(organisations):
        writer.writerow({k: neutralise(v) for k, v in row.items()})
    return out.getvalue()


def export_json(organisations: Iterable[Organisation]) -> str:
    return json.dumps({"constituency": export_rows(organisations)}, indent=1, ensure_ascii=False)


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.field}: {self.reason}"


class ImportRejected(Exception):
    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors[:20]))


def _rows(text: str, fmt: str) -> list[tuple[int, dict[str, Any]]]:
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportRejected([RowError(exc.lineno, "file", f"not valid JSON: {exc.msg}")]) from exc
        items = data.get("constituency") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ImportRejected([RowError(1, "file", 'expected an object with a "constituency" list')])
        return [(i, item if isinstance(item, dict) else {}) for i, item in enumerate(items, start=1)]
    reader = csv.DictReader(io.StringIO(text))
    missing = set(CSV_COLUMNS) - set(reader.fieldnames or [])
    if missing:
        raise ImportRejected([RowError(1, "header", f"missing columns: {', '.join(sorted(missing))}")])
    return [(reader.line_num, row) for row in reader]


def import_constituency(actor: User | None, text: str, fmt: str) -> int:
    """Add the constituency entries of a CSV or JSON export. Every row is checked before any
    is saved; returns how many entries were added."""
    errors: list[RowError] = []
    by_org: dict[Organisation, list[str]] = {}
    organisations = {o.short_name: o for o in Organisation.objects.all()}
    for line, row in _rows(text, fmt):
        short_name, kind, value = (unneutralise(str(row.get(k) or "").strip()) for k in CSV_COLUMNS)
        organisation = organisations.get(short_name)
        if organisation is None:
            errors.append(RowError(line, "organisation", f"no organisation is called {short_name!r}"))
            continue
        if kind not in (constituency.NETWORK, constituency.ASN, constituency.DOMAIN):
            errors.append(RowError(line, "kind", f"{kind!r} is not network, asn or domain"))
            continue
        try:
            entry = constituency.classify(value)
        except ValueError as exc:
            errors.append(RowError(line, "value", str(exc)))
            continue
        if entry.kind != kind:
            errors.append(RowError(line, "value", f"{value!r} is a {entry.kind}, not a {kind}"))
            continue
        by_org.setdefault(organisation, []).append(value)
    if errors:
        raise ImportRejected(errors)
    with transaction.atomic():
        return sum(len(services.add_constituency(actor, org, values)) for org, values in by_org.items())
