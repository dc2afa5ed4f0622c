"""The chain of a run: parse, normalise, classify, de-duplicate, route, write; bad lines kept."""

from __future__ import annotations

import pytest

from minga.core import access
from minga.core.choices import TLP
from minga.pipeline import services
from minga.pipeline.choices import RunStatus
from minga.pipeline.models import Chunk, DeadLetter, Event, EventRecipient
from minga.pipeline.tests.helpers import HEADER, constituency, ingest, scan_feed

pytestmark = pytest.mark.django_db


def test_a_csv_run_lands_normalised_classified_and_routed(make_org):
    hub = make_org("hub")
    team = constituency(make_org("demo-a"), "192.0.2.0/24", "64500", "bank.example")
    inner = constituency(make_org("demo-b"), "192.0.2.128/25")
    feed = scan_feed(hub)
    run = ingest(
        feed,
        HEADER
        + "2026-01-10T10:00:00Z,192.0.2.10,22,,,,scan\n"
        + "2026-01-10 10:00:00+02:00,192.0.2.200,80,,,,bot\n"  # most specific network wins
        + "1768039200,198.51.100.7,,AS64500,,,\n"  # by AS, epoch seconds
        + "2026-01-10T11:00:00,,,,,HTTPS://WWW.Bank.Example/login?x=1,phishing\n"  # by domain of the URL
        + "2026-01-10T11:00:00,203.0.113.9,,,,,scan\n",  # nobody's
    )
    assert run.status == RunStatus.DONE
    assert (run.read, run.parsed, run.invalid, run.duplicates, run.routed, run.unrouted) == (5, 5, 0, 0, 4, 1)
    assert run.chunk_count == 2 and Chunk.objects.filter(run=run, done=True).count() == 2
    events = {e.line: e for e in Event.objects.all()}
    assert (
        events[2].classification_type == "scanner"
        and events[2].classification_taxonomy == "information-gathering"
    )
    assert events[2].tlp == TLP.AMBER and events[2].origin_organisation == hub
    assert events[3].time.isoformat() == "2026-01-10T08:00:00+00:00"
    assert events[3].classification_type == "infected-system"
    assert events[4].source_asn == 64500 and events[4].classification_type == "scanner"
    assert events[5].source_url == "https://www.bank.example/login?x=1"
    assert events[5].source_fqdn == "www.bank.example" and events[5].classification_taxonomy == "fraud"
    routed = {
        line: sorted(
            EventRecipient.objects.filter(event=e).values_list("organisation__short_name", flat=True)
        )
        for line, e in events.items()
    }
    assert routed == {2: ["demo-a"], 3: ["demo-b"], 4: ["demo-a"], 5: ["demo-a"], 6: []}
    assert not events[6].is_routed and events[2].is_routed
    assert {inner.pk, team.pk} >= set(EventRecipient.objects.values_list("organisation_id", flat=True))


def test_bad_lines_become_dead_letters_and_the_rest_lands(make_org):
    hub = make_org("hub")
    feed = scan_feed(hub)
    lines = [
        "2026-01-10T10:00:00Z,192.0.2.10,22,,,,scan",
        "2026-01-10T10:00:00Z,999.1.1.1,22,,,,scan",  # impossible IP
        "1899-01-01T00:00:00Z,192.0.2.11,22,,,,scan",  # impossible time
        "2999-01-01T00:00:00Z,192.0.2.11,22,,,,scan",  # the future
        "yesterday,192.0.2.11,22,,,,scan",
        "2026-01-10T10:00:00Z,192.0.2.12,70000,,,,scan",  # port
        '2026-01-10T10:00:00Z,192.0.2.13,22,,,,=HYPERLINK("http://x")',  # formula as a category
        "2026-01-10T10:00:00Z,=1+1,22,,,,scan",  # formula as an IP
        "2026-01-10T10:00:00Z,192.0.2.14,22,,,,weird",  # not mapped
        "2026-01-10T10:00:00Z,192.0.2.15",  # short line
        '2026-01-10T10:00:00Z,"192.0.2.16,22,,,,scan',  # an unclosed quote
        "2026-01-10T10:00:00Z,192.0.2.17,22,,not a host!,,scan",
        "2026-01-10T10:00:00Z,192.0.2.18,22,,,javascript:alert(1),scan",
        "",
        "2026-01-10T10:00:00Z,192.0.2.19,22,,,,scan",
    ]
    data = (HEADER + "\n".join(lines) + "\n").encode() + b"2026-01-10T10:00:00Z,192.0.2.20,\xff\xfe,,,,scan\n"
    data += b"2026-01-10T10:00:00Z,192.0.2.21,22,,,," + b"x" * 70_000 + b"\n"
    run = ingest(feed, data, chunk_lines=4)
    dead = {d.line: (d.field, d.reason) for d in DeadLetter.objects.filter(run=run)}
    assert set(Event.objects.values_list("source_ip", flat=True)) == {"192.0.2.10", "192.0.2.19"}
    assert sorted(dead) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 17, 18]
    assert dead[3][0] == "source_ip" and "not an IP address" in dead[3][1]
    assert dead[4][0] == "time" and "impossible" in dead[4][1]
    assert dead[5][0] == "time" and dead[6][0] == "time"
    assert dead[7][0] == "source_port"
    assert dead[8][0] == "classification_type" and dead[10][0] == "classification_type"
    assert "columns" in dead[11][1]
    assert "Malformed CSV" in dead[12][1] or "columns" in dead[12][1]
    assert dead[13][0] == "source_fqdn" and dead[14][0] == "source_url"
    assert "UTF-8" in dead[17][1] or "utf-8" in dead[17][1]
    assert "longer than" in dead[18][1]
    assert (run.read, run.invalid, run.parsed) == (16, 14, 2)
    assert DeadLetter.objects.get(run=run, line=18).raw.startswith("2026-01-10T10:00:00Z,192.0.2.21")


def test_duplicates_in_the_window_are_stored_once_across_chunks_and_runs(make_org):
    feed = scan_feed(make_org("hub"), dedup_window=3600)
    body = (
        HEADER
        + "".join(
            f"2026-01-10T10:{minute:02d}:00Z,192.0.2.{ip},22,,,,scan\n"
            for minute, ip in [(0, 1), (5, 2), (10, 1), (20, 1), (59, 2)]
        )
        + "2026-01-10T11:00:00Z,192.0.2.1,22,,,,scan\n"
    )  # the next window
    run = ingest(feed, body, chunk_lines=2)
    assert (run.parsed, run.duplicates, run.unrouted) == (6, 3, 3)
    again = ingest(feed, body, chunk_lines=4)
    assert (again.parsed, again.duplicates, again.unrouted) == (6, 6, 0)
    assert Event.objects.count() == 3


def test_a_chunk_run_twice_is_written_once(make_org):
    feed = scan_feed(make_org("hub"), dedup_window=0)
    body = HEADER + "2026-01-10T10:00:00Z,192.0.2.1,22,,,,scan\n" * 5
    run = services.start_run(None, feed, [body.encode()], "x.csv", queue=False, chunk_lines=2)
    from minga.pipeline import processing

    chunk = run.chunks.order_by("number").first()
    outcome = processing.Chain(run.options, run.header, run.created_at).run(b"", 1, run.pk)
    processing.process_chunk(chunk.pk)
    assert processing.write_chunk(chunk, run, outcome, []) == "already done"
    assert processing.process_chunk(chunk.pk).endswith("already done")
    services.run_inline(run)
    run.refresh_from_db()
    assert Event.objects.count() == 5 and (run.parsed, run.duplicates, run.status) == (5, 0, RunStatus.DONE)


def test_json_lines_with_intelmq_names(make_org):
    team = constituency(make_org("demo-a"), "2001:db8::/32")
    feed = services.register_feed(
        None, make_org("hub"), name="drones", format="jsonl", classification_type="infected-system"
    )
    run = ingest(
        feed,
        '{"time.source": "2026-01-10T10:00:00+00:00", "source.ip": "2001:DB8::1", "source.port": 443}\n'
        '{"time": "2026-01-10T10:00:00Z", "source_ip": "2001:db8::2", "classification.type": "c2-server"}\n'
        "[1, 2]\n"
        "{not json\n"
        '{"source.ip": {"nested": 1}}\n',
    )
    assert (run.parsed, run.invalid, run.routed) == (2, 3, 2)
    assert set(Event.objects.values_list("source_ip", "classification_type")) == {
        ("2001:db8::1", "infected-system"),
        ("2001:db8::2", "c2-server"),
    }
    assert set(EventRecipient.objects.values_list("organisation", flat=True)) == {team.pk}


def test_a_utf16_file_fails_its_run_with_the_reason(make_org):
    feed = scan_feed(make_org("hub"))
    run = ingest(feed, HEADER.encode("utf-16"))
    assert run.status == RunStatus.FAILED and "UTF-16" in run.message


def test_events_are_read_through_the_access_policy(make_org, make_user):
    hub = make_org("hub")
    team = constituency(make_org("demo-a"), "192.0.2.0/24")
    other = make_org("csirt-c")
    ingest(
        scan_feed(hub),
        HEADER + "2026-01-10T10:00:00Z,192.0.2.1,22,,,,scan\n2026-01-10T10:00:00Z,203.0.113.1,22,,,,scan\n",
    )
    hub_analyst, team_analyst, outsider = make_user("h", hub), make_user("t", team), make_user("o", other)
    assert Event.objects.visible_to(hub_analyst).count() == 2  # the feed's owner: unrouted too
    assert list(Event.objects.visible_to(team_analyst).values_list("source_ip", flat=True)) == ["192.0.2.1"]
    assert Event.objects.visible_to(outsider).count() == 0
    event = Event.objects.get(source_ip="192.0.2.1")
    assert access.can_read(team_analyst, event) and not access.can_read(outsider, event)


def _outcome(run):
    from minga.pipeline.models import Run

    run = Run.objects.get(pk=run.pk)
    events = set(
        Event.objects.filter(run=run).values_list("line", "source_ip", "source_port", "classification_type")
    )
    routes = set(EventRecipient.objects.filter(event__run=run).values_list("event__line", "organisation_id"))
    counts = tuple(getattr(run, c) for c in ("read", "parsed", "invalid", "duplicates", "routed", "unrouted"))
    chunk_sums = tuple(
        sum(run.chunks.values_list(c, flat=True))
        for c in ("read", "parsed", "invalid", "duplicates", "routed", "unrouted")
    )
    return events, routes, counts, chunk_sums


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_chunks_written_in_any_order_keep_the_first_line_of_each_duplicate(make_org, order):
    import random

    from minga.pipeline import processing

    hub = make_org("hub")
    constituency(make_org("demo-a"), "198.18.0.0/25")
    rng = random.Random(order)
    body = HEADER + "".join(
        f"2026-01-10T{rng.randrange(3):02d}:00:00Z,198.18.0.{rng.randrange(200)},{rng.choice((22, 80))},,,,"
        f"{rng.choice(('scan', 'bot'))}\n"
        for _ in range(400)
    )
    reference = ingest(scan_feed(hub, name="in-order"), body, chunk_lines=25)
    feed = scan_feed(hub, name="out-of-order")
    run = services.start_run(None, feed, [body.encode()], "f.csv", queue=False, chunk_lines=25)
    chunks = list(run.chunks.order_by("number").values_list("pk", flat=True))
    chunks = chunks[::-1] if order == "reversed" else rng.sample(chunks, len(chunks))
    for chunk_id in chunks:
        processing.process_chunk(chunk_id)
    expected, got = _outcome(reference), _outcome(run)
    assert expected[2] == expected[3] and got[2] == got[3]  # the run's counts are its chunks' sums
    assert got == expected
    assert reference.duplicates > 50


def test_stalled_chunks_are_queued_again(make_org, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    feed = scan_feed(make_org("hub"))
    with django_capture_on_commit_callbacks(execute=True):
        run = services.start_run(
            None,
            feed,
            [(HEADER + "2026-01-10T10:00:00Z,192.0.2.1,22,,,,scan\n" * 6).encode()],
            "f.csv",
            chunk_lines=2,
        )
    first, second, _third = run.chunks.order_by("number")
    long_ago = timezone.now() - timedelta(hours=1)
    # The first chunk's worker was killed: its task stays running for ever.
    DBTaskResult.objects.filter(pk=first.task_id).update(status="RUNNING", started_at=long_ago)
    Chunk.objects.filter(pk=first.pk).update(started_at=long_ago)
    # The second is running now; the third waits in the queue.
    DBTaskResult.objects.filter(pk=second.task_id).update(status="RUNNING", started_at=timezone.now())
    Chunk.objects.filter(pk=second.pk).update(started_at=timezone.now())
    assert services.resume_stalled(timedelta(minutes=10)) == 1
    first.refresh_from_db()
    assert DBTaskResult.objects.get(pk=first.task_id).status == "READY"
    assert services.resume_stalled(timedelta(minutes=10)) == 0  # now it waits in the queue
    from minga.pipeline import processing

    for chunk in run.chunks.all():
        assert "read" in processing.process_chunk(chunk.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.DONE and run.parsed == 6 and Event.objects.count() == 1


def test_a_chunk_that_fails_every_time_fails_its_run_instead_of_looping(
    make_org, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    from minga.core.models import AuditEntry
    from minga.pipeline.tasks import process_chunk

    feed = scan_feed(make_org("hub"))
    with django_capture_on_commit_callbacks(execute=True):
        run = services.start_run(
            None, feed, [(HEADER + "2026-01-10T10:00:00Z,192.0.2.1,22,,,,scan\n").encode()], "f.csv"
        )
    chunk = run.chunks.get()
    long_ago = timezone.now() - timedelta(hours=1)
    DBTaskResult.objects.filter(pk=chunk.task_id).update(status="FAILED", started_at=long_ago)
    for _ in range(services.GIVE_UP_AFTER_FAILURES - 1):
        process_chunk.enqueue(chunk.pk)
    DBTaskResult.objects.filter(status="READY").update(status="FAILED", started_at=long_ago)
    Chunk.objects.filter(pk=chunk.pk).update(started_at=long_ago)
    assert services.resume_stalled(timedelta(minutes=10)) == 0
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "failed 6 times" in run.message
    assert AuditEntry.objects.filter(action="pipeline.run_failed").count() == 1
