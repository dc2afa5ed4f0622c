"""CSV indicators in and out.

In: the operator maps columns to what Minga needs (``Mapping``): the value (required), its type
(a column, one type for every row, or detected from the value), and optionally the name,
description, valid_from, valid_until, confidence and labels; with the delimiter and whether the
first line names the columns (then the mapping names columns by header, else by number from 1).
Each row becomes a STIX 2.1 ``indicator`` whose pattern compares the value (quotes and
backslashes escaped), and the cyber-observable of the value. A bad row (a value that is not of
its type, a type Minga does not know, a bad date, a confidence outside 0-100) is rejected with
its line number and reason; the others are stored.

Ids: the indicator's id is derived from the organisation, the type, the value and valid_from,
so importing the same file again (or a background job running again) is a replay, while the
same value valid from another time is another indicator. Without a valid_from column, the
import's start time is valid_from.

Out: the indicators of a search as CSV (value, type, pattern, tlp, origin, valid_from, id); the
value and type filled for patterns that compare one value of a known type. Cells that a
spreadsheet would run as formulas are neutralised (``minga.core.spreadsheet``), and an import
takes the neutralisation off again.
"""

from __future__ import annotations

import codecs
import csv
import io
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from minga.core.models import Organisation
from minga.core.spreadsheet import neutralise, unneutralise
from minga.intel import convert, misp, observables, stix
from minga.intel.convert import Rejected, Unreadable

# Types a CSV may name, and the MISP attribute type whose STIX form (``misp.observe``) it has.
TYPES: dict[str, str] = {
    "ipv4-addr": "ip-dst",
    "ipv6-addr": "ip-dst",
    "domain-name": "domain",
    "url": "url",
    "email-addr": "email",
    "md5": "md5",
    "sha-1": "sha1",
    "sha-256": "sha256",
    "sha-512": "sha512",
    "file-name": "filename",
}
# Other spellings accepted (MISP's, and the usual short ones).
ALIASES: dict[str, str] = {
    "ip": "ip",
    "ip-src": "ip",
    "ip-dst": "ip",
    "ipv4": "ipv4-addr",
    "ipv6": "ipv6-addr",
    "domain": "domain-name",
    "hostname": "domain-name",
    "email": "email-addr",
    "email-src": "email-addr",
    "email-dst": "email-addr",
    "sha1": "sha-1",
    "sha256": "sha-256",
    "sha512": "sha-512",
    "filename": "file-name",
}
HASH_BY_LENGTH = {32: "md5", 40: "sha-1", 64: "sha-256", 128: "sha-512"}
HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_FIELD = 100_000  # characters in one cell


@dataclass
class Mapping:
    """Which column holds what. Columns are header names, or numbers from 1 without a header."""

    value: str = ""
    type: str = ""  # a column holding each row's type
    fixed_type: str = ""  # one type for every row; neither: detected from the value
    name: str = ""
    description: str = ""
    valid_from: str = ""
    valid_until: str = ""
    confidence: str = ""
    labels: str = ""  # several separated by ; or ,
    delimiter: str = ","
    header: bool = True

    COLUMNS = ("value", "type", "name", "description", "valid_from", "valid_until", "confidence", "labels")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mapping:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(
                {"mapping": _("Unknown mapping fields: %(names)s.") % {"names": ", ".join(unknown)}}
            )
        mapping = cls(**{k: v for k, v in data.items() if v is not None})
        mapping.check()
        return mapping

    @classmethod
    def parse(cls, pairs: list[str], **options: Any) -> Mapping:
        """From ``field=column`` pairs (the CLI's ``--map``) and the other options."""
        data: dict[str, Any] = dict(options)
        for pair in pairs:
            name, sep, column = pair.partition("=")
            if not sep or name.strip() not in cls.COLUMNS:
                raise ValidationError(
                    {
                        "mapping": _("%(pair)s: write FIELD=COLUMN, FIELD one of %(fields)s.")
                        % {"pair": pair[:60], "fields": ", ".join(cls.COLUMNS)}
                    }
                )
            data[name.strip()] = column.strip()
        return cls.from_dict(data)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def check(self) -> None:
        if not self.value:
            raise ValidationError({"mapping": _("Name the column that holds the values.")})
        if self.type and self.fixed_type:
            raise ValidationError({"mapping": _("Either a type column or one type for every row, not both.")})
        if self.fixed_type and _type_name(self.fixed_type) is None:
            raise ValidationError({"mapping": unknown_type(self.fixed_type)})
        if len(self.delimiter) != 1 or self.delimiter in "\r\n\"'":
            raise ValidationError({"delimiter": _("The delimiter is one character (a comma, ; or a tab).")})
        for name in self.COLUMNS:
            column = getattr(self, name)
            if column and not self.header and not re.fullmatch(r"[1-9][0-9]{0,3}", column):
                raise ValidationError(
                    {
                        "mapping": _(
                            "Without a header line, columns are numbers from 1: %(name)s=%(column)s."
                        )
                        % {"name": name, "column": column[:40]}
                    }
                )


def unknown_type(text: str) -> str:
    return _("Unknown type %(type)s: use one of %(types)s (or leave it empty to detect it).") % {
        "type": stix._clip(text, 40),
        "types": ", ".join(TYPES),
    }


def _type_name(text: str) -> str | None:
    name = text.strip().lower()
    name = ALIASES.get(name, name)
    return name if name in TYPES or name == "ip" else None


def detect(value: str) -> str | None:
    """The type of a bare value: an address, a URL, an e-mail address, a hash, a domain name."""
    text = value.strip()
    try:
        network = ipaddress.ip_network(text, strict=False)
        return f"ipv{network.version}-addr"
    except ValueError:
        pass
    if "://" in text:
        return "url" if observables.normalise("url", text) else None
    if "@" in text:
        return "email-addr" if observables.normalise("email-addr", text) else None
    if HEX_RE.match(text) and len(text) in HASH_BY_LENGTH:
        return HASH_BY_LENGTH[len(text)]
    if observables.normalise("domain-name", text):
        return "domain-name"
    return None


def _datetime(text: str, name: str) -> datetime:
    value = text.strip()
    try:
        if DATE_RE.match(value):
            moment = datetime.fromisoformat(value + "T00:00:00+00:00")
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T", 1))
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(
            _("%(name)s %(value)s is not a date (write 2026-01-31 or 2026-01-31T12:00:00Z).")
            % {"name": name, "value": stix._clip(value, 40)}
        ) from None
    if moment.year < 1000:
        raise ValueError(_("%(name)s %(value)s is too long ago.") % {"name": name, "value": value[:40]})
    return moment


class Reader:
    """A CSV file opened against a mapping: the header is checked at once (``ValidationError``),
    the rows are read as they are needed."""

    def __init__(
        self, stream: IO[bytes], mapping: Mapping, organisation: Organisation, now: datetime
    ) -> None:
        self.mapping, self.organisation, self.now = mapping, organisation, now
        self.text = codecs.getreader("utf-8-sig")(stream, "strict")
        self.rows = csv.reader(self.text, delimiter=mapping.delimiter)
        self.columns: dict[str, int] = {}
        first: list[str] | None = None
        try:
            first = next(self.rows, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ValidationError(
                _("The file is not CSV text in UTF-8: %(error)s") % {"error": str(exc)[:200]}
            ) from None
        if first is None:
            raise ValidationError(_("The file is empty."))
        self.pending = None if mapping.header else first
        names = [c.strip().lower() for c in first] if mapping.header else []
        for field_name in Mapping.COLUMNS:
            column = getattr(mapping, field_name)
            if not column:
                continue
            if mapping.header:
                if column.strip().lower() not in names:
                    raise ValidationError(
                        {
                            "mapping": _("The file has no column %(column)s (its columns: %(names)s).")
                            % {"column": column[:60], "names": ", ".join(first)[:300]}
                        }
                    )
                self.columns[field_name] = names.index(column.strip().lower())
            else:
                self.columns[field_name] = int(column) - 1

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        line = 1
        try:
            if self.pending is not None:
                yield from self._row(1, self.pending)
            for row in self.rows:
                line = self.rows.line_num
                if not any(cell.strip() for cell in row):
                    continue
                yield from self._row(line, row)
        except UnicodeDecodeError:
            raise Unreadable(_("The file is not UTF-8 text after line %(line)d.") % {"line": line}) from None
        except csv.Error as exc:
            raise Unreadable(
                _("The file is not valid CSV after line %(line)d: %(error)s") % {"line": line, "error": exc}
            ) from None

    def _cell(self, row: list[str], name: str) -> str:
        position = self.columns.get(name)
        if position is None or position >= len(row):
            return ""
        return unneutralise(row[position].strip())

    def _row(self, line: int, row: list[str]) -> Iterator[tuple[int, Any]]:
        try:
            objects = self._objects(row)
        except ValueError as exc:
            yield line, Rejected(_("line %(line)d: %(reason)s") % {"line": line, "reason": exc})
            return
        for obj in objects:
            yield line, obj

    def _objects(self, row: list[str]) -> list[dict[str, Any]]:
        value = self._cell(row, "value")
        if not value:
            raise ValueError(_("no value."))
        if len(value) > MAX_FIELD:
            raise ValueError(_("the value is too long."))
        typed = self.mapping.fixed_type or self._cell(row, "type")
        if typed:
            kind = _type_name(typed)
            if kind is None:
                raise ValueError(unknown_type(typed))
        else:
            kind = detect(value)
            if kind is None:
                raise ValueError(
                    _("cannot tell what %(value)s is: not an address, URL, e-mail address, hash or domain.")
                    % {"value": stix._clip(value, 60)}
                )
        if kind in ("ipv4-addr", "ipv6-addr", "ip"):
            detected = detect(value)
            if detected not in ("ipv4-addr", "ipv6-addr") or kind not in ("ip", detected):
                raise ValueError(
                    _("%(value)s is not a valid %(type)s value.")
                    % {"value": stix._clip(value, 60), "type": kind}
                )
            kind = detected
        try:
            observation = misp.observe(TYPES[kind], value)
        except misp.Unmapped as exc:
            raise ValueError(str(exc).replace(TYPES[kind], kind)) from None
        valid_from = self.now
        if self._cell(row, "valid_from"):
            valid_from = _datetime(self._cell(row, "valid_from"), "valid_from")
        stamp = convert.timestamp(valid_from)
        indicator: dict[str, Any] = {
            "type": "indicator",
            "spec_version": "2.1",
            "id": convert.derived_id(
                "indicator", "csv", str(self.organisation.uuid), observation.pattern, stamp
            ),
            "created": stamp,
            "modified": stamp,
            "name": (self._cell(row, "name") or value)[:1000],
            "pattern": observation.pattern,
            "pattern_type": "stix",
            "valid_from": stamp,
        }
        if self._cell(row, "valid_until"):
            until = _datetime(self._cell(row, "valid_until"), "valid_until")
            if until <= valid_from:
                raise ValueError(_("valid_until is not later than valid_from."))
            indicator["valid_until"] = convert.timestamp(until)
        if self._cell(row, "description"):
            indicator["description"] = self._cell(row, "description")[:MAX_FIELD]
        if self._cell(row, "confidence"):
            text = self._cell(row, "confidence")
            if not re.fullmatch(r"[0-9]{1,3}", text) or int(text) > 100:
                raise ValueError(
                    _("confidence %(value)s is not a whole number from 0 to 100.")
                    % {"value": stix._clip(text, 20)}
                )
            indicator["confidence"] = int(text)
        if self._cell(row, "labels"):
            labels = [p.strip() for p in re.split(r"[;,]", self._cell(row, "labels")) if p.strip()]
            if labels:
                indicator["labels"] = labels
        return [*observation.scos, indicator]


# --- export -----------------------------------------------------------------------------------

EXPORT_COLUMNS = ("value", "type", "pattern", "tlp", "origin", "valid_from", "id")
TYPE_OF_PATH: dict[tuple[str, str], str] = {
    ("ipv4-addr", "value"): "ipv4-addr",
    ("ipv6-addr", "value"): "ipv6-addr",
    ("domain-name", "value"): "domain-name",
    ("url", "value"): "url",
    ("email-addr", "value"): "email-addr",
    ("file", "name"): "file-name",
    ("file", "hashes.MD5"): "md5",
    ("file", "hashes.SHA-1"): "sha-1",
    ("file", "hashes.SHA-256"): "sha-256",
    ("file", "hashes.SHA-512"): "sha-512",
}


@dataclass
class CsvExport:
    document: str
    indicators: int
    skipped: int  # objects that are not indicators


def indicators_csv(rows: list[Any]) -> CsvExport:
    """The indicators among stored object versions as CSV text, formulas neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = skipped = 0
    for row in rows:
        if row.type != "indicator":
            skipped += 1
            continue
        obj = row.data
        value = kind = ""
        if obj.get("pattern_type") == "stix":
            comparisons = misp._comparisons(str(obj.get("pattern", "")))
            if len(comparisons) == 1:
                sco_type, path, literal = comparisons[0]
                kind = TYPE_OF_PATH.get((sco_type, path), "")
                value = literal if kind else ""
        cells = [
            value,
            kind,
            str(obj.get("pattern", "")),
            stix.TLP_NAMES.get(row.tlp, row.tlp),
            row.origin_organisation.short_name,
            str(obj.get("valid_from", "")),
            row.stix_id,
        ]
        writer.writerow([neutralise(cell) for cell in cells])
        count += 1
    return CsvExport(out.getvalue(), count, skipped)
