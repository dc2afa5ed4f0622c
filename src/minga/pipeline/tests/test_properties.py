"""Invariants of the chain, whatever the input: nothing raises, every non-blank line is either
an event, a duplicate or a dead letter, and de-duplication does not depend on chunking."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minga.pipeline import processing
from minga.pipeline.models import Feed

NOW = datetime(2026, 1, 11, tzinfo=UTC)
CSV = Feed(
    mapping={
        "time": "t",
        "source_ip": "ip",
        "source_port": "port",
        "source_url": "url",
        "classification": "c",
    },
    taxonomy_mapping={"scan": "scanner"},
    dedup_window=3600,
).options()
JSONL = {**CSV, "format": "jsonl", "mapping": {}}
HEADER = ["t", "ip", "port", "url", "c"]

cells = st.one_of(
    st.sampled_from(
        ["2026-01-10T10:00:00Z", "1768039200", "192.0.2.1", "2001:db8::1", "22", "scan", "bot", ""]
    ),
    st.sampled_from(["=1+1", "999.1.1.1", "http://x.example/a", "-1", "0.0.0.0", '"', "é", "\x00"]),  # noqa: S104
    st.text(max_size=20),
)
csv_lines = st.lists(st.lists(cells, min_size=0, max_size=7).map(",".join), max_size=30)


def _count(outcome: processing.Outcome) -> int:
    return len(outcome.events) + outcome.duplicates + len(outcome.dead)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_lines)
def test_every_csv_line_is_an_event_a_duplicate_or_a_dead_letter(lines):
    data = ("\n".join(lines) + "\n").encode("utf-8", errors="surrogatepass")
    chain = processing.Chain(CSV, HEADER, NOW)
    outcome = chain.run(data, 2, run_id=1)
    assert outcome.read == _count(outcome)
    assert all(
        event["classification_type"] in ("scanner", "undetermined", "infected-system")
        for event in outcome.events
    )


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_are_read_without_an_error(data):
    for options in (CSV, JSONL):
        outcome = processing.Chain(options, HEADER, NOW).run(data, 1, run_id=1)
        assert outcome.read == _count(outcome)
        assert all(len(raw) <= processing.RAW_KEPT and "\x00" not in raw for *_x, raw in outcome.dead)


@settings(max_examples=60, deadline=None)
@given(csv_lines, st.integers(min_value=1, max_value=10))
def test_duplicates_do_not_depend_on_how_the_lines_are_cut(lines, size):
    data = ("\n".join(lines) + "\n").encode("utf-8", errors="surrogatepass")
    chain = processing.Chain(CSV, HEADER, NOW)
    whole = chain.run(data, 2, run_id=1)
    pieces = data.split(b"\n")[:-1]
    keys: dict[int, int] = {}
    for start in range(0, len(pieces), size):
        part = b"".join(p + b"\n" for p in pieces[start : start + size])
        for event in processing.Chain(CSV, HEADER, NOW).run(part, 2 + start, run_id=1).events:
            keys.setdefault(event["dedup_key"], event["line"])
    assert keys == {event["dedup_key"]: event["line"] for event in whole.events}
