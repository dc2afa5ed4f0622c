"""The chain a chunk runs through, in one process: parse, normalise, classify, de-duplicate,
route, then write its events, its dead letters and its completion in one transaction.

Batch, not per-event messages: nothing here makes an ORM object or a query per line. Lines are
parsed into tuples, addresses are routed with one vectorised lookup per chunk (the directory's
resolution index), duplicates are found with one indexed lookup per few hundred keys, and rows
are written with multi-row INSERTs (COPY on PostgreSQL).

Idempotency: the chunk's ``done`` flag is checked inside the writing transaction (SQLite takes
its write lock at BEGIN; PostgreSQL locks the chunk's row), and the writers of a feed look its
keys up one at a time (``lock_feed``; SQLite's unique (feed, dedup_key) index backs it, which
PostgreSQL's time partitions cannot): re-running a chunk after a crash neither loses nor
duplicates an event.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gc
import hashlib
import logging
import mmap
import operator
import re
import socket
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import orjson
from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from minga.core import audit
from minga.directory import resolution
from minga.directory.constituency import normalise_domain
from minga.intel import bulk
from minga.pipeline import formats
from minga.pipeline.choices import TAXONOMY_OF, FeedFormat, RunStatus
from minga.pipeline.formats import Bad
from minga.pipeline.models import COUNTS, EVENT_FIELDS, Chunk, DeadLetter, Event, EventRecipient, Feed, Run

logger = logging.getLogger(__name__)

CHUNK_LINES = 50_000  # lines per chunk: one task, one transaction
MAX_LINE_BYTES = 65_536  # a longer line is a dead letter, not a memory problem
RAW_KEPT = 4_096  # characters of a bad line kept in its dead letter
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)  # before any feed this network receives
FUTURE_SLACK = timedelta(days=1)  # clocks differ; more than a day ahead is impossible
SQLITE_CACHE_KB = 131_072
EVENT_ID_LOCK = 0x6D696E6761_01  # PostgreSQL advisory lock key: reserving event ids
# IntelMQ's dotted names, accepted in JSON lines beside Minga's own.
INTELMQ_NAMES = {name: name.replace("_", ".", 1) for name in EVENT_FIELDS if "_" in name}
INTELMQ_NAMES["time"] = "time.source"
ROUTING_FIELDS = ("ip", "asn", "fqdn")


# --- splitting a file into chunks -----------------------------------------------------------


@dataclass(frozen=True)
class Split:
    header: list[str]
    ranges: list[tuple[int, int, int, int]]  # (start byte, end byte, first line, line count)


def sniff_problem(head: bytes) -> str:
    """Why a file cannot be read as text lines at all, or ''."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _("The file is UTF-16 text: convert it to UTF-8 (or the feed's encoding) and upload it again.")
    if b"\x00" in head[:4096]:
        return _("The file holds NUL bytes: it is binary or UTF-16/32 text, not lines of text.")
    return ""


def split_file(path: Path, options: dict[str, Any], chunk_lines: int = CHUNK_LINES) -> Split:
    """Where each chunk of ``chunk_lines`` lines starts and ends, and the CSV header's columns.
    Raises ``ValueError`` with a message for a file that is not text lines at all."""
    size = path.stat().st_size
    if size == 0:
        return Split([], [])
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        problem = sniff_problem(data[:4096])
        if problem:
            raise ValueError(problem)
        position, line = 0, 1
        if data[:3] == b"\xef\xbb\xbf":
            position = 3
        header: list[str] = []
        if options["format"] == "csv" and options["has_header"]:
            end = data.find(b"\n", position)
            end = size if end < 0 else end + 1
            text = _decode(data[position:end], options["encoding"]).rstrip("\r\n")
            if len(text) > MAX_LINE_BYTES:
                raise ValueError(_("The header line is longer than %(n)s bytes.") % {"n": MAX_LINE_BYTES})
            header = [name.strip() for name in next(csv.reader([text], **_dialect(options)), [])]
            position, line = end, 2
        ranges = []
        while position < size:
            end, count = position, 0
            while count < chunk_lines and end < size:
                found = data.find(b"\n", end)
                end = size if found < 0 else found + 1
                count += 1
            ranges.append((position, end, line, count))
            position, line = end, line + count
    return Split(header, ranges)


def _decode(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(
            _("The header is not valid %(encoding)s: %(error)s") % {"encoding": encoding, "error": exc.reason}
        ) from exc


def _dialect(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "delimiter": options["delimiter"] or ",",
        "quotechar": options["quotechar"] or '"',
        "strict": True,
    }


# --- normalising fields ------------------------------------------------------------------------

_ip_text_cache: dict[str, str] = {}
_LDH = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


def normalise_ip(name: str, value: str) -> str:
    text = value.strip()
    try:
        socket.inet_pton(socket.AF_INET, text)
    except OSError:
        try:
            text = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text))
        except (OSError, ValueError):
            raise Bad(name, _("%(value)s is not an IP address.") % {"value": value[:60]}) from None
        if text == "::":
            raise Bad(name, _(":: is not a host address.")) from None
        return text
    if text in ("0.0.0.0", "255.255.255.255"):  # noqa: S104  (a value read, not an address bound)
        raise Bad(name, _("%(value)s is not a host address.") % {"value": text})
    return text


def normalise_port(name: str, value: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or not text.isascii() or int(text) > 65535:
        raise Bad(name, _("%(value)s is not a port number (0 to 65535).") % {"value": str(value)[:40]})
    return int(text)


def normalise_asn(name: str, value: str) -> int:
    text = str(value).strip()
    if text[:2].upper() == "AS":
        text = text[2:]
    if not text.isdigit() or not text.isascii() or not 0 < int(text) < 2**32:
        raise Bad(name, _("%(value)s is not an AS number.") % {"value": str(value)[:40]})
    return int(text)


def normalise_fqdn(name: str, value: str) -> str:
    text = value.strip().rstrip(".").lower()
    if _LDH.match(text):
        return text
    try:
        text = normalise_domain(value)
    except ValueError:
        raise Bad(name, _("%(value)s is not a domain name.") % {"value": value[:80]}) from None
    if len(text) > 253:
        raise Bad(name, _("The domain name is longer than 253 characters."))
    return text


def normalise_url(name: str, value: str) -> tuple[str, str, str]:
    """The URL with its scheme and host in lower case (the host in IDNA), and its host as an IP
    address or a domain name (for routing when the line names neither)."""
    text = value.strip()

    def bad() -> Bad:
        return Bad(name, _("%(value)s is not a URL.") % {"value": value[:80]})

    if len(text) > 2048:
        raise Bad(name, _("The URL is longer than 2048 characters."))
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise bad() from None
    if not parts.scheme or not parts.netloc or not host or any(c.isspace() for c in text):
        raise bad()
    ip, fqdn = "", ""
    try:
        ip = normalise_ip(name, host)
    except Bad:
        try:
            fqdn = host = normalise_fqdn(name, host)
        except Bad:
            raise bad() from None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username or parts.password:
        netloc = parts.netloc.rpartition("@")[0] + "@" + netloc
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment)), ip, fqdn


def normalise_country(name: str, value: str) -> str:
    text = value.strip().upper()
    if len(text) != 2 or not text.isascii() or not text.isalpha():
        raise Bad(name, _("%(value)s is not a two-letter country code.") % {"value": value[:40]})
    return text


class TimeReader:
    """Timestamps to UTC: ISO 8601 (naive means UTC) or seconds since 1970 (milliseconds when
    larger than any second count could be). Memoised: a feed repeats its timestamps."""

    def __init__(self, now: datetime) -> None:
        self.latest = now + FUTURE_SLACK
        self.memo: dict[str, datetime] = {}

    def __call__(self, value: Any) -> datetime:
        text = str(value).strip()
        found = self.memo.get(text)
        if found is not None:
            return found
        moment = self._parse(text)
        if not EARLIEST <= moment <= self.latest:
            raise Bad(
                "time",
                _("%(value)s is impossible: before 1990 or more than a day ahead.") % {"value": text[:40]},
            )
        if len(self.memo) < 100_000:
            self.memo[text] = moment
        return moment

    def _parse(self, text: str) -> datetime:
        def bad() -> Bad:
            return Bad("time", _("%(value)s is not a timestamp.") % {"value": text[:40]})

        if not text or not text.isascii():
            raise bad()
        try:
            if text.replace(".", "", 1).isdigit():
                seconds = float(text)
                if seconds > 1e11:
                    seconds /= 1000
                return datetime.fromtimestamp(seconds, UTC)
            moment = datetime.fromisoformat(text)
        except (ValueError, OverflowError, OSError):
            raise bad() from None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise bad() from None


# The normaliser of each field a line may hold (time, URLs and the classification apart).
NORMALISERS: dict[str, Callable[[str, str], Any]] = {}
for _side in ("source", "destination"):
    NORMALISERS |= {
        f"{_side}_ip": normalise_ip,
        f"{_side}_port": normalise_port,
        f"{_side}_asn": normalise_asn,
        f"{_side}_fqdn": normalise_fqdn,
        f"{_side}_country": normalise_country,
    }
BLANK_EVENT: dict[str, Any] = {
    name: None if name.endswith(("_port", "_asn")) else "" for name in EVENT_FIELDS if name != "time"
}

# --- reading lines -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one chunk produced, before it is written."""

    read: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    dead: list[tuple[int, str, str, str]] = field(default_factory=list)  # line, field, reason, raw
    duplicates: int = 0
    window: int = 0  # the de-duplication window the keys were made with (0: every event kept, or unknown)
    # Fields no event of it can hold (none of the feed's columns fills them): neither routed on
    # nor bound one by one when written.
    blank: tuple[str, ...] = ()

    def reject(self, line: int, field_name: str, reason: str, raw: str) -> None:
        self.dead.append((line, field_name[:40], reason[:300], raw[:RAW_KEPT].replace("\x00", "")))


class Chain:
    """Reads lines of a feed with a run's options into normalised, classified events."""

    def __init__(self, options: dict[str, Any], header: Sequence[str], now: datetime) -> None:
        self.options = options
        self.time = TimeReader(now)
        self.now = now
        self.taxonomy_mapping = {str(k).strip().lower(): v for k, v in options["taxonomy_mapping"].items()}
        self.default_type = options["classification_type"]
        self.intelmq = options["format"] == FeedFormat.INTELMQ
        self.window = int(options["dedup_window"])
        self.key_fields = [f for f in options["dedup_fields"] if f in EVENT_FIELDS and f != "time"]
        self.columns = self._columns(header)
        self.source_keys = self._json_keys()
        # What a line may hold: the mapped columns of a CSV, any field of a JSON line.
        present = set(self.columns) if options["format"] == "csv" else set(EVENT_FIELDS)
        self.plan = [(name, normalise) for name, normalise in NORMALISERS.items() if name in present]
        self.urls = bool(present & {"source_url", "destination_url"})
        self.key_of = operator.itemgetter(*self.key_fields) if self.key_fields else None
        filled = {name for name, _normalise in self.plan}
        if self.urls:
            filled |= {
                f"{side}_{part}" for side in ("source", "destination") for part in ("url", "ip", "fqdn")
            }
        self.blank = tuple(
            name for name in BLANK_EVENT if name not in filled and not name.startswith("class")
        )
        # A feed repeats its classifications and timestamps: each is classified, or cut into
        # its de-duplication window, once (the memos bounded as the time reader's).
        self.kinds: dict[Any, str | Bad] = {}
        self.windows: dict[datetime, str] = {}  # time -> its window's number and a separator
        self.key_text = "\x1f".join(["{}"] * len(self.key_fields)).format  # str() of each, joined

    # Where each field comes from: a CSV column index, or JSON keys to try.
    def _columns(self, header: Sequence[str]) -> dict[str, int]:
        if self.options["format"] != "csv":
            return {}
        mapping = self.options["mapping"]
        columns: dict[str, int] = {}
        positions = {name: i for i, name in enumerate(header)}
        for name in (*EVENT_FIELDS, "classification"):
            wanted = mapping.get(name)
            if wanted in (None, ""):
                if name in positions:
                    columns[name] = positions[name]
                continue
            if header:
                if str(wanted) not in positions:
                    raise ValueError(
                        _("The column %(column)s mapped to %(field)s is not in the header.")
                        % {"column": str(wanted)[:60], "field": name}
                    )
                columns[name] = positions[str(wanted)]
            else:
                columns[name] = int(wanted) - 1
        if "classification" in columns and "classification_type" not in columns:
            columns["classification_type"] = columns.pop("classification")
        columns.pop("classification", None)
        return columns

    def _json_keys(self) -> dict[str, tuple[str, ...]]:
        mapping = self.options["mapping"]
        keys: dict[str, tuple[str, ...]] = {}
        for name in EVENT_FIELDS:
            if mapping.get(name):
                keys[name] = (str(mapping[name]),)
            else:
                keys[name] = (name, INTELMQ_NAMES[name]) if name in INTELMQ_NAMES else (name,)
                if self.intelmq:
                    keys[name] += formats.INTELMQ_KEYS.get(name, ())
        keys["classification_type"] = (*keys["classification_type"], "classification")
        return keys

    def lines(self, data: bytes, first_line: int, outcome: Outcome) -> list[tuple[int, str]]:
        """(line number, text) of the non-blank lines; undecodable, NUL-holding and huge lines
        become dead letters."""
        encoding = self.options["encoding"]
        pieces = data.split(b"\n")
        if pieces and pieces[-1] == b"":
            pieces.pop()
        out: list[tuple[int, str]] = []
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            text = None
        if text is not None and "\x00" not in text:
            decoded = text.split("\n")
            if decoded and decoded[-1] == "":
                decoded.pop()
            if all(len(p) <= MAX_LINE_BYTES for p in pieces):
                for number, line in enumerate(decoded, first_line):
                    if line.endswith("\r"):
                        line = line[:-1]
                    if line.strip():
                        out.append((number, line))
                outcome.read = len(out)
                return out
        for number, raw in enumerate(pieces, first_line):
            raw = raw.removesuffix(b"\r")
            if not raw.strip():
                continue
            outcome.read += 1
            shown = raw[:RAW_KEPT].decode(encoding, errors="replace")
            if len(raw) > MAX_LINE_BYTES:
                outcome.reject(
                    number, "", _("The line is longer than %(n)s bytes.") % {"n": MAX_LINE_BYTES}, shown
                )
                continue
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                outcome.reject(
                    number,
                    "",
                    _(
                        "The line is not valid %(encoding)s (byte %(byte)s at position %(at)s): "
                        "set the feed's encoding."
                    )
                    % {"encoding": encoding, "byte": f"0x{raw[exc.start]:02x}", "at": exc.start + 1},
                    shown,
                )
                continue
            if "\x00" in line:
                outcome.reject(number, "", _("The line holds NUL characters."), shown)
                continue
            out.append((number, line))
        return out

    def records(
        self, lines: list[tuple[int, str]], outcome: Outcome
    ) -> Iterable[tuple[int, str, dict[str, Any]]]:
        """(line, raw text, field -> raw value) of each line that parses."""
        fmt = self.options["format"]
        if fmt == FeedFormat.CSV:
            yield from self._csv_records(lines, outcome)
        elif fmt == FeedFormat.STIX:
            yield from self._document_records(lines, outcome, formats.stix_values)
        elif fmt == FeedFormat.MISP:
            yield from self._document_records(lines, outcome, formats.misp_values)
        else:
            yield from self._json_records(lines, outcome)

    def _csv_records(
        self, lines: list[tuple[int, str]], outcome: Outcome
    ) -> Iterable[tuple[int, str, dict[str, Any]]]:
        dialect = _dialect(self.options)
        rows: list[list[str]] | None = None
        if not any("\r" in text or "\n" in text for _n, text in lines):
            reader = csv.reader((text for _n, text in lines), **dialect)
            try:
                rows = list(reader)
            except csv.Error:
                rows = None
            if rows is not None and (len(rows) != len(lines) or reader.line_num != len(lines)):
                rows = None  # a quoted field ran over a line end: read line by line
        if rows is None:
            rows = []
            for number, text in lines:
                try:
                    rows.append(next(csv.reader([text], **dialect), []))
                except csv.Error as exc:
                    outcome.reject(number, "", _("Malformed CSV: %(error)s") % {"error": exc}, text)
                    rows.append([])
        names = list(self.columns)
        positions = list(self.columns.values())
        needed = max(positions, default=-1) + 1
        # One C call picks a row's mapped cells (a lone column comes back bare, not in a tuple).
        pick = operator.itemgetter(*positions) if len(positions) > 1 else lambda row: (row[positions[0]],)
        for (number, text), row in zip(lines, rows, strict=True):
            if not row:
                continue
            if len(row) < needed:
                outcome.reject(
                    number,
                    "",
                    _("The line has %(found)s columns; the mapping reads column %(needed)s.")
                    % {"found": len(row), "needed": needed},
                    text,
                )
                continue
            yield number, text, dict(zip(names, pick(row) if positions else (), strict=True))

    def _json_records(
        self, lines: list[tuple[int, str]], outcome: Outcome
    ) -> Iterable[tuple[int, str, dict[str, Any]]]:
        keys = list(self.source_keys.items())
        for number, text in lines:
            try:
                data = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                outcome.reject(number, "", _("Not valid JSON: %(error)s") % {"error": str(exc)[:200]}, text)
                continue
            if not isinstance(data, dict):
                outcome.reject(number, "", _("The line is not a JSON object."), text)
                continue
            if self.intelmq:
                data = formats.flatten(data)
            values: dict[str, Any] = {}
            problem = ""
            for name, candidates in keys:
                for key in candidates:
                    value = data.get(key)
                    if value is None:
                        continue
                    if isinstance(value, dict | list | bool):
                        problem = name
                    else:
                        values[name] = value if isinstance(value, str) else str(value)
                    break
                if problem:
                    break
            if problem:
                outcome.reject(number, problem, _("A text or number is expected here."), text)
                continue
            yield number, text, values

    def _document_records(
        self,
        lines: list[tuple[int, str]],
        outcome: Outcome,
        parse: Callable[[dict[str, Any], dict[str, Any], dict[str, str]], dict[str, Any]],
    ) -> Iterable[tuple[int, str, dict[str, Any]]]:
        """The records of a STIX bundle or a MISP feed, one JSON object a line (``formats``)."""
        for number, text in lines:
            try:
                data = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                outcome.reject(number, "", _("Not valid JSON: %(error)s") % {"error": str(exc)[:200]}, text)
                continue
            if not isinstance(data, dict):
                outcome.reject(number, "", _("The record is not a JSON object."), text)
                continue
            try:
                values = parse(data, self.options, self.taxonomy_mapping)
            except Bad as bad:
                outcome.reject(number, bad.field, bad.reason, text)
                continue
            yield number, text, values

    def event(self, values: dict[str, Any]) -> dict[str, Any]:
        """A normalised, classified event from a line's raw values; raises ``Bad``."""
        out = BLANK_EVENT.copy()
        for name, normalise in self.plan:
            value = values.get(name)
            if value:
                out[name] = normalise(name, value)
        if self.urls:
            for side in ("source", "destination"):
                url = values.get(f"{side}_url")
                if url:
                    out[f"{side}_url"], host_ip, host_name = normalise_url(f"{side}_url", url)
                    if not out[f"{side}_ip"] and host_ip:
                        out[f"{side}_ip"] = host_ip
                    if not out[f"{side}_fqdn"] and host_name:
                        out[f"{side}_fqdn"] = host_name
        raw_time = values.get("time")
        if raw_time:  # the reader's memo first: a feed repeats its timestamps
            moment = self.time.memo.get(raw_time)
            out["time"] = moment if moment is not None else self.time(raw_time)
        else:
            out["time"] = self.now
        raw_kind = values.get("classification_type")
        kind = self.kinds.get(raw_kind)
        if not isinstance(kind, str):
            kind = self.classify(raw_kind)
        out["classification_type"] = kind
        out["classification_taxonomy"] = TAXONOMY_OF[kind]
        if self.intelmq:
            taxonomy = str(values.get("classification_taxonomy") or "").strip().lower()
            if taxonomy and taxonomy != TAXONOMY_OF[kind]:
                raise Bad(
                    "classification_taxonomy",
                    _(
                        "The taxonomy %(taxonomy)s does not hold the type %(type)s "
                        "(RSIT puts it under %(rsit)s)."
                    )
                    % {"taxonomy": taxonomy[:60], "type": kind, "rsit": TAXONOMY_OF[kind]},
                )
        return out

    def classify(self, raw: Any) -> str:
        if raw in (None, ""):
            return self.default_type
        known = self.kinds.get(raw) if isinstance(raw, str) else None
        if known is None:
            try:
                known = self._classify(raw)
            except Bad as bad:
                known = bad
            if isinstance(raw, str) and len(self.kinds) < 10_000:
                self.kinds[raw] = known
        if isinstance(known, Bad):
            raise Bad(known.field, known.reason)
        return known

    def _classify(self, raw: Any) -> str:
        text = str(raw).strip().lower()
        kind = self.taxonomy_mapping.get(text, text)
        if kind not in TAXONOMY_OF and self.intelmq:
            kind = formats.INTELMQ_TYPES.get(kind, kind)
        if kind not in TAXONOMY_OF:
            raise Bad(
                "classification_type",
                _("%(value)s is not an RSIT type: map it in the feed's taxonomy mapping.")
                % {"value": str(raw)[:60]},
            )
        return kind

    def dedup_key(self, event: dict[str, Any], run_id: int, line: int) -> int:
        if self.window <= 0:
            material = f"line\x1f{run_id}\x1f{line}"
        else:
            moment = event["time"]
            window = self.windows.get(moment)
            if window is None:
                window = f"{int(moment.timestamp()) // self.window}\x1f"
                if len(self.windows) < 100_000:
                    self.windows[moment] = window
            values = self.key_of(event) if self.key_of is not None else ()
            if len(self.key_fields) == 1:
                values = (values,)
            material = window + self.key_text(*values)
        return int.from_bytes(hashlib.blake2b(material.encode(), digest_size=8).digest(), "big", signed=True)

    def run(self, data: bytes, first_line: int, run_id: int) -> Outcome:
        """Every line of a chunk's bytes through parse, normalise, classify and de-duplicate."""
        outcome = Outcome(window=self.window, blank=self.blank)
        lines = self.lines(data, first_line, outcome)
        seen: set[int] = set()
        events = outcome.events
        event_of, key_of = self.event, self.dedup_key
        for number, text, values in self.records(lines, outcome):
            try:
                event = event_of(values)
            except Bad as bad:
                outcome.reject(number, bad.field, bad.reason, text)
                continue
            key = key_of(event, run_id, number)
            if key in seen:
                outcome.duplicates += 1
                continue
            seen.add(key)
            event["line"], event["dedup_key"] = number, key
            events.append(event)
        return outcome


# --- routing ---------------------------------------------------------------------------------------


def route(events: list[dict[str, Any]], blank: Collection[str] = ()) -> list[tuple[int, ...]]:
    """The organisations each event goes to, in one batch per kind of lookup: the most specific
    network holding its source IP, else the AS of its source, else its source domain; the same
    with the destination when the source names no one. The fields in ``blank`` (which no event
    holds) are not looked at."""
    index = resolution.current()
    owners: list[tuple[int, ...]] = [()] * len(events)
    for side in ("source", "destination"):
        pending = [i for i, owner in enumerate(owners) if not owner]
        if not pending:
            break
        for name, resolve in (
            (f"{side}_ip", index.resolve_ips),
            (f"{side}_asn", index.resolve_asns),
            (f"{side}_fqdn", index.resolve_domains),
        ):
            if pending and name not in blank:
                pending = _route_by(resolve, events, pending, owners, name, ipv4_first=name.endswith("_ip"))
    return owners


def _route_by(
    resolve: Callable[[Sequence[Any]], list[tuple[int, ...] | None]],
    events: list[dict[str, Any]],
    pending: list[int],
    owners: list[tuple[int, ...]],
    name: str,
    *,
    ipv4_first: bool = False,
) -> list[int]:
    """Route the ``pending`` events by their ``name`` (each distinct value asked once); return
    the ones still without an owner."""
    values = [events[i][name] for i in pending]
    distinct = dict.fromkeys(values)
    distinct.pop("", None)
    distinct.pop(None, None)
    if not distinct:
        return pending
    asked = list(distinct)
    # The index resolves a list of IPv4 addresses alone in one vectorised step.
    groups = [[v for v in asked if ":" not in v], [v for v in asked if ":" in v]] if ipv4_first else [asked]
    found: dict[Any, tuple[int, ...] | None] = {}
    for group in groups:
        if group:
            found.update(zip(group, resolve(group), strict=True))
    still = []
    for i, value in zip(pending, values, strict=True):
        owner = found.get(value)
        if owner:
            owners[i] = owner
        else:
            still.append(i)
    return still


# --- writing a chunk --------------------------------------------------------------------------------

EVENT_COLUMNS = (
    "id",
    "created_at",
    "origin_organisation",
    "tlp",
    "feed",
    "run",
    "is_routed",
    "time",
    "line",
    "dedup_key",
    *EVENT_FIELDS[1:],
)


@functools.cache
def _sql(model: type[Any], columns: tuple[str, ...]) -> str:
    """A one-row INSERT of ``columns`` (field names) of ``model``, for executemany on SQLite."""
    quote = connection.ops.quote_name
    names = [quote(str(model._meta.get_field(name).column)) for name in columns]
    return "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608  (names from the model, values bound)
        quote(model._meta.db_table), ", ".join(names), ", ".join(["%s"] * len(names))
    )


def _time_for_database() -> Callable[[datetime], Any]:
    """SQLite keeps datetimes as text, naive in UTC (as Django writes them); the other
    databases take them as they are. Every time here is already in UTC."""
    if connection.vendor != "sqlite":
        return lambda moment: moment
    # str() of an aware UTC datetime ends in "+00:00": the rest is Django's text. A chunk
    # repeats its times, and str() of a datetime costs twenty dictionary look-ups: each text
    # is made once per chunk.
    texts: dict[datetime, str] = {}

    def text(moment: datetime) -> str:
        found = texts.get(moment)
        if found is None:
            found = texts[moment] = str(moment)[:-6]
        return found

    return text


def _sqlite_insert(head: tuple[Any, ...], blank: Collection[str]) -> tuple[str, tuple[str, ...]]:
    """The INSERT of a chunk's events on SQLite, and the event fields its rows bind after
    (id, routed, time, line, dedup key): ``head`` (creation time, originator, TLP, feed, run)
    and the ``blank`` fields, the same in every row, are literals of the statement, quoted by
    SQLite itself."""
    fields = tuple(name for name in EVENT_FIELDS[1:] if name not in blank)
    blank = tuple(name for name in EVENT_FIELDS[1:] if name in blank)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(["quote(%s)"] * len(head)), head)
        literals = [str(value).replace("%", "%%") for value in cursor.fetchone()]
    literals += ["NULL" if BLANK_EVENT[name] is None else "''" for name in blank]
    names = ("id", "is_routed", "time", "line", "dedup_key", *fields, *EVENT_COLUMNS[1:6], *blank)
    quote = connection.ops.quote_name
    columns = [quote(str(cast(models.Field, Event._meta.get_field(name)).column)) for name in names]
    bound = ["%s"] * (5 + len(fields))
    statement = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608  (names from the model, literals quoted by SQLite)
        quote(Event._meta.db_table), ", ".join(columns), ", ".join(bound + literals)
    )
    return statement, fields


def _reserve_ids(count: int) -> Sequence[int]:
    """``count`` consecutive event ids this transaction may use. SQLite: the transaction holds
    the database's one write lock (BEGIN IMMEDIATE), so the ids after the highest ever given are
    free. PostgreSQL: the table's sequence moved on by ``count`` at once, under an advisory lock
    that every writer of events takes for that moment (where drawing the ids one by one took a
    second per 200,000)."""
    if not count:
        return []
    table = Event._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_lock(%s)", [EVENT_ID_LOCK])
            try:
                cursor.execute(
                    "SELECT setval(seq, nextval(seq) + %s - 1) - %s + 1 "
                    "FROM pg_get_serial_sequence(%s, 'id') seq",
                    [count, count, table],
                )
                first = cursor.fetchone()[0]
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [EVENT_ID_LOCK])
            return range(first, first + count)
        cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
        given = cursor.fetchone()
        cursor.execute(f'SELECT MAX("id") FROM "{table}"')  # noqa: S608  (the model's table)
        first = max(given[0] if given else 0, cursor.fetchone()[0] or 0) + 1
    return range(first, first + count)


def _key_times(events: list[dict[str, Any]], window: int) -> tuple[datetime, datetime] | None:
    """Where the stored events sharing a key with ``events`` can lie in time: a key holds its
    window, so a duplicate falls in the same window as the new event. None when the keys are
    runs and lines (``window`` 0): no bound then, as the time was not part of the key."""
    if window <= 0 or not events:
        return None
    seconds = [int(event["time"].timestamp()) for event in events]
    return (
        datetime.fromtimestamp(min(seconds) // window * window, UTC),
        datetime.fromtimestamp((max(seconds) // window + 1) * window, UTC),
    )


def _stored(
    feed_id: int, keys: list[int], times: tuple[datetime, datetime] | None = None
) -> dict[int, tuple[int, int, int, bool]]:
    """The feed's stored events that have one of ``keys``: key -> (id, run, line, routed). One
    probe of the (feed, dedup_key) index per key, in one statement. On PostgreSQL, ``times``
    (from ``_key_times``) limits the probes to the months that can hold them."""
    if not keys:
        return {}
    table = Event._meta.db_table
    columns = '"dedup_key", "id", "run_id", "line", "is_routed"'
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The bounds are sent as literals (client-side binding), so the planner prunes the
            # partitions outside them.
            within = ' AND "time" >= %s AND "time" < %s' if times else ""
            cursor.execute(
                f'SELECT {columns} FROM "{table}" WHERE "feed_id" = %s AND "dedup_key" = ANY(%s){within}',  # noqa: S608
                [feed_id, keys, *(times or ())],
            )
            return {row[0]: (row[1], row[2], row[3], bool(row[4])) for row in cursor.fetchall()}
        # The keys as one JSON array: a statement of tens of thousands of parameters took
        # longer to compile and bind than the look-ups themselves (four times as long in all).
        cursor.execute(
            f'SELECT {columns} FROM "{table}" WHERE "feed_id" = %s '  # noqa: S608  (the model's table)
            'AND "dedup_key" IN (SELECT "value" FROM json_each(%s))',
            [feed_id, orjson.dumps(keys).decode()],
        )
        return {row[0]: (row[1], row[2], row[3], bool(row[4])) for row in cursor.fetchall()}


def process_chunk(chunk_id: int) -> str:
    """Run one chunk through the chain and write it. Safe to run again at any time."""
    chunk = Chunk.objects.select_related("run__feed").filter(pk=chunk_id).first()
    if chunk is None:
        return f"chunk {chunk_id}: gone"
    if chunk.done:
        return f"chunk {chunk_id}: already done"
    run = chunk.run
    if connection.vendor == "sqlite":
        # Inserting into the event indexes touches pages all over them: a page cache of
        # 128 MB (SQLite's default is 2 MB) keeps them in memory rather than re-reading them.
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KB}")
    now = timezone.now()
    Chunk.objects.filter(pk=chunk.pk).update(started_at=now)
    Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(status=RunStatus.RUNNING)
    path = Path(run.lines_path or run.path)
    if not path.is_file():
        fail_run(run, _("The run's file is gone from the node's var folder; upload it again."))
        return f"chunk {chunk_id}: file gone"
    with path.open("rb") as handle:
        handle.seek(chunk.start_byte)
        data = handle.read(chunk.end_byte - chunk.start_byte)
    try:
        chain = Chain(run.options, run.header, run.created_at)
    except (ValueError, KeyError) as exc:
        fail_run(run, str(exc))
        return f"chunk {chunk_id}: {exc}"
    with _no_cycle_collection():
        outcome = chain.run(data, chunk.first_line, run.pk)
        del data
        owners = route(outcome.events, outcome.blank)
        written = write_chunk(chunk, run, outcome, owners)
    return f"chunk {chunk_id}: {written}"


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Hold the cyclic garbage collector off while a chunk runs: its hundreds of thousands of
    new tuples, dicts and strings (none in a cycle, all freed by reference counting) would
    otherwise set off full collections of the whole heap, a quarter of the parsing time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def write_events(run: Run, outcome: Outcome, owners: list[tuple[int, ...]]) -> dict[str, int]:
    """Write the events of ``outcome`` that no earlier line stored (with their recipients) and
    its dead letters. Call inside the transaction that records the work done.

    Of the lines that share a key in a window, the first one (the earliest run, then the
    earliest line) is the event kept, whatever order chunks are written in: a chunk written
    after a later one (a retry, another worker) takes over the event that the later line
    stored, and that line's chunk counts it as a duplicate instead. So a run ends with the
    same events however its chunks were scheduled."""
    feed = run.feed
    db_time = _time_for_database()
    events = outcome.events
    keys = [event["dedup_key"] for event in events]
    stored = _stored(
        feed.pk, keys, _key_times(events, outcome.window) if connection.vendor == "postgresql" else None
    )
    takeovers: list[tuple[int, dict[str, Any], tuple[int, ...], int, int, bool]] = []
    duplicates = outcome.duplicates
    fresh: Iterable[int] = range(len(events))
    if stored:
        fresh = []
        for i, key in enumerate(keys):
            found = stored.get(key)
            if found is None:
                fresh.append(i)
            elif (run.pk, events[i]["line"]) < (found[1], found[2]):
                takeovers.append((found[0], events[i], owners[i], *found[1:]))
            else:
                duplicates += 1
    # In key order, the (feed, dedup_key) index is written page after page rather than
    # all over (a sixth less time on a large table); the chunk's ids follow that order.
    order = sorted(fresh, key=keys.__getitem__)
    ids = _reserve_ids(len(order))
    created = db_time(timezone.now())
    head: tuple[Any, ...] = (created, feed.owner_id, feed.default_tlp, feed.pk, run.pk)
    fields: Sequence[str] = EVENT_FIELDS[1:]
    if connection.vendor == "sqlite":
        # What every row of the chunk shares is written into the statement, not bound in each
        # of its rows: a third of the values, and the costliest to bind (NULLs and booleans).
        statement, fields = _sqlite_insert(head, outcome.blank)
        head = ()
    values = operator.itemgetter("line", "dedup_key", *fields)
    rows, recipients = [], []
    routed = 0
    for event_id, i in zip(ids, order, strict=True):
        event, owner = events[i], owners[i]
        time = db_time(event["time"])
        rows.append((event_id, *head, bool(owner), time, *values(event)))
        if owner:
            routed += 1
            for organisation_id in owner:
                recipients.append((event_id, organisation_id, time))
    dead = [(run.pk, *d) for d in outcome.dead]
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.executemany(statement, rows)
            cursor.executemany(_sql(EventRecipient, ("event", "organisation", "time")), recipients)
            cursor.executemany(_sql(DeadLetter, ("run", "line", "field", "reason", "raw")), dead)
    else:
        bulk.insert(Event, EVENT_COLUMNS, rows)
        bulk.insert(EventRecipient, ("event", "organisation", "time"), recipients)
        bulk.insert(DeadLetter, ("run", "line", "field", "reason", "raw"), dead)
    if takeovers:
        _take_over(run, takeovers, created, db_time)
    routed += sum(1 for t in takeovers if t[2])
    return {
        "duplicates": duplicates,
        "routed": routed,
        "unrouted": len(order) + len(takeovers) - routed,
    }


def _take_over(
    run: Run,
    takeovers: list[tuple[int, dict[str, Any], tuple[int, ...], int, int, bool]],
    created: Any,
    db_time: Callable[[datetime], Any],
) -> None:
    """Replace stored events by the earlier lines that share their keys, and count the lines
    they came from as duplicates in their chunks and runs. Rare: only chunks written out of
    order get here."""
    names = ("created_at", "run", "line", "is_routed", *EVENT_FIELDS)
    columns = [cast(models.Field, Event._meta.get_field(n)).column for n in names]
    assignments = ", ".join(f"{connection.ops.quote_name(str(c))} = %s" for c in columns)
    statement = f'UPDATE "{Event._meta.db_table}" SET {assignments} WHERE "id" = %s'  # noqa: S608
    fields = operator.itemgetter(*EVENT_FIELDS[1:])
    updates: list[tuple[Any, ...]] = []
    recipients: list[EventRecipient] = []
    for event_id, event, owner, *_rest in takeovers:
        time = db_time(event["time"])
        updates.append((created, run.pk, event["line"], bool(owner), time, *fields(event), event_id))
        recipients.extend(
            EventRecipient(event_id=event_id, organisation_id=o, time=event["time"]) for o in owner
        )
    with connection.cursor() as cursor:
        cursor.executemany(statement, updates)
    EventRecipient.objects.filter(event_id__in=[t[0] for t in takeovers]).delete()
    EventRecipient.objects.bulk_create(recipients)
    for _event_id, _event, _owner, other_run, other_line, other_routed in takeovers:
        change = {"duplicates": F("duplicates") + 1}
        if other_routed:
            change["routed"] = F("routed") - 1
        else:
            change["unrouted"] = F("unrouted") - 1
        chunk = (
            Chunk.objects.filter(run_id=other_run, first_line__lte=other_line, done=True)
            .order_by("-first_line")
            .values_list("pk", flat=True)
            .first()
        )
        if chunk is not None:
            Chunk.objects.filter(pk=chunk).update(**change)
        Run.objects.filter(pk=other_run).update(**change)


def lock_feed(feed_id: int) -> None:
    """Take the feed's row lock for the rest of the transaction: the chunks of one feed are
    written one at a time (their parsing, normalising and routing still run side by side), so
    each sees the keys the others stored and none fails on the unique key. SQLite's one write
    lock does the same already."""
    list(Feed.objects.select_for_update().filter(pk=feed_id).values_list("pk", flat=True))


def write_chunk(chunk: Chunk, run: Run, outcome: Outcome, owners: list[tuple[int, ...]]) -> str:
    """Write a chunk's events, dead letters and completion in one transaction, unless another
    attempt wrote it first."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # The chunk's events and its done flag commit together or not at all, so a commit
            # lost in a server crash is a chunk done again, never half a chunk: no need to wait
            # for the WAL to reach the disk (a third of the writing time).
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        lock_feed(run.feed_id)
        if not Chunk.objects.select_for_update().filter(pk=chunk.pk, done=False).exists():
            return "already done"
        written = write_events(run, outcome, owners)
        counts = {
            "read": outcome.read,
            "invalid": len(outcome.dead),
            "parsed": outcome.read - len(outcome.dead),
            **written,
        }
        Chunk.objects.filter(pk=chunk.pk).update(done=True, finished_at=timezone.now(), **counts)
        # The run's row is locked last, so chunks written at the same time on PostgreSQL queue
        # here and the last one sees every other chunk done.
        locked = Run.objects.select_for_update().get(pk=run.pk)
        Run.objects.filter(pk=run.pk).update(
            chunks_done=F("chunks_done") + 1, **{name: F(name) + value for name, value in counts.items()}
        )
        if locked.chunks_done + 1 >= locked.chunk_count:
            finish_run(run)
    return ", ".join(f"{name} {value}" for name, value in counts.items())


def finish_run(run: Run) -> None:
    """Mark a run whose chunks are all written as done, with one audit entry of its counts."""
    Run.objects.filter(pk=run.pk).update(status=RunStatus.DONE, finished_at=timezone.now())
    run.refresh_from_db()
    audit.record(
        "pipeline.run_finished",
        obj=run,
        organisation=run.feed.owner,
        details={
            "feed": run.feed.name,
            "file": run.file_name,
            **{name: getattr(run, name) for name in COUNTS},
        },
    )


def fail_run(run: Run, message: str) -> None:
    """Mark an unfinished run as failed with the reason, audited (``pipeline.run_failed``)."""
    with transaction.atomic():
        updated = (
            Run.objects.filter(pk=run.pk)
            .exclude(status=RunStatus.DONE)
            .update(status=RunStatus.FAILED, message=message[:2000], finished_at=timezone.now())
        )
        if updated:
            audit.record(
                "pipeline.run_failed",
                obj=run,
                organisation=run.feed.owner,
                details={"feed": run.feed.name, "file": run.file_name, "reason": message[:300]},
            )
