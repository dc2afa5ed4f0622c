"""``minga feed`` and ``minga ingest``, as an operator runs them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from minga.core.models import AuditEntry
from minga.pipeline.choices import RunStatus
from minga.pipeline.models import DeadLetter, Event, Feed, Run
from minga.pipeline.tests.helpers import constituency

pytestmark = pytest.mark.django_db


def _call(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_an_operator_registers_a_feed_and_ingests_a_file(make_org, tmp_path):
    hub = make_org("hub")
    constituency(make_org("demo-team"), "198.18.0.0/24")
    out, _ = _call(
        "feed", "add", "drone-report", "--owner", "hub", "--no-header", "--delimiter", ";",
        "--map", "time=1", "--map", "source_ip=2", "--map", "classification=3",
        "--taxonomy", "drone=infected-system", "--tlp", "amber+strict", "--dedup-window", "3600",
    )  # fmt: skip
    assert "registered" in out
    feed = Feed.objects.get(name="drone-report")
    assert (feed.owner, feed.delimiter, feed.has_header, feed.default_tlp) == (
        hub,
        ";",
        False,
        "amber+strict",
    )
    assert AuditEntry.objects.filter(action="pipeline.feed_registered").count() == 1
    path = tmp_path / "drones.csv"
    path.write_text(
        "2026-01-10T10:00:00Z;198.18.0.5;drone\n2026-01-10T10:01:00Z;198.18.0.5;drone\nnoon;198.18.0.6;drone\n"
    )
    out, err = _call("ingest", str(path), "--feed", "drone-report", "--chunk-lines", "100")
    assert "read 3, parsed 2, invalid 1, duplicates 1, routed 1, unrouted 0" in out
    assert "line 3 time:" in err
    assert Event.objects.get().tlp == "amber+strict"
    assert AuditEntry.objects.filter(action="pipeline.run_started").count() == 1
    listed, _ = _call("feed", "list")
    assert listed.startswith("drone-report\thub\tcsv\tamber+strict\tactive\t1 runs")
    shown = json.loads(_call("feed", "show", "drone-report")[0])
    assert shown["runs"][0]["parsed"] == 2 and shown["mapping"]["source_ip"] == "2"


def test_dead_letters_are_reprocessed_after_the_mapping_is_fixed(make_org, tmp_path):
    make_org("hub")
    _call("feed", "add", "scans", "--owner", "hub", "--map", "source_ip=ip", "--map", "classification=kind")
    path = tmp_path / "scans.csv"
    path.write_text("ip,kind\n192.0.2.1,scan\n192.0.2.2,scanner\n192.0.2.3,scan\n")
    _call("ingest", str(path), "--feed", "scans")
    run = Run.objects.get()
    assert (run.parsed, run.invalid) == (1, 2)
    _call("feed", "change", "scans", "--taxonomy", "scan=scanner")
    out, _ = _call("feed", "reprocess", str(run.uuid))
    assert "stored 2" in out and "still_invalid 0" in out
    run.refresh_from_db()
    assert (run.read, run.parsed, run.invalid, run.unrouted) == (3, 3, 0, 3)
    assert not DeadLetter.objects.exists() and Event.objects.count() == 3
    changed = AuditEntry.objects.get(action="pipeline.feed_changed")
    assert changed.details == {"taxonomy_mapping": [{}, {"scan": "scanner"}]}


def test_mistakes_are_reported_in_plain_words(make_org, tmp_path):
    make_org("hub")
    with pytest.raises(CommandError, match="No organisation"):
        _call("feed", "add", "x", "--owner", "nobody")
    with pytest.raises(CommandError, match="mapping"):
        _call("feed", "add", "x", "--owner", "hub", "--map", "colour=1")
    with pytest.raises(CommandError, match="No feed"):
        _call("feed", "show", "x")
    path = tmp_path / "f.csv"
    path.write_bytes("ip\n192.0.2.1\n".encode("utf-16"))
    _call("feed", "add", "x", "--owner", "hub")
    with pytest.raises(CommandError, match="UTF-16"):
        _call("ingest", str(path), "--feed", "x")
    assert Run.objects.get().status == RunStatus.FAILED
    with pytest.raises(CommandError, match="not a file"):
        _call("ingest", str(tmp_path / "missing.csv"), "--feed", "x")


def test_ingest_can_queue_for_the_workers(make_org, tmp_path, django_capture_on_commit_callbacks):
    make_org("hub")
    _call("feed", "add", "x", "--owner", "hub")
    path = tmp_path / "f.csv"
    path.write_text("source_ip\n192.0.2.1\n")
    with django_capture_on_commit_callbacks(execute=True):
        out, _ = _call("ingest", str(path), "--feed", "x", "--queue")
    assert "1 chunks queued" in out
    run = Run.objects.get()
    assert run.status == RunStatus.QUEUED and run.chunks.get().task_id


def test_a_run_is_processed_again_after_the_mapping_is_fixed(make_org, tmp_path):
    make_org("hub")
    constituency(make_org("demo-team"), "192.0.2.0/24")
    _call("feed", "add", "scans", "--owner", "hub", "--map", "source_ip=address")
    path = tmp_path / "scans.csv"
    path.write_text("ip,kind\n192.0.2.1,scan\n192.0.2.2,scan\n")
    with pytest.raises(CommandError, match="not in the header"):
        _call("ingest", str(path), "--feed", "scans")
    run = Run.objects.get()
    assert run.status == RunStatus.FAILED
    _call("feed", "change", "scans", "--map", "source_ip=ip")
    out, _ = _call("feed", "rerun", str(run.uuid))
    assert "done; read 2, parsed 2, invalid 0, duplicates 0, routed 2" in out
    out, _ = _call("feed", "rerun", str(run.uuid))  # again: the same events, not twice as many
    assert "routed 2" in out and Event.objects.count() == 2
    entry = AuditEntry.objects.filter(action="pipeline.run_reprocessed").order_by("seq").last()
    assert entry.details["before"]["routed"] == 2
    with pytest.raises(CommandError, match="No run"):
        _call("feed", "rerun", "not-a-uuid")


def test_an_operator_registers_a_url_feed_and_pulls_it(make_org, settings):
    import threading
    from http.server import ThreadingHTTPServer

    from minga.pipeline.tests.test_sources import FEED_BODY, Source

    settings.MINGA_PIPELINE_PULL_PRIVATE = True
    Source.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Source)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        make_org("hub")
        _call(
            "feed", "add", "remote", "--owner", "hub", "--source", "url", "--url", f"{base}/feed.csv",
            "--pull-every", "900", "--map", "source_ip=ip", "--map", "time=timestamp",
        )  # fmt: skip
        shown = json.loads(_call("feed", "show", "remote")[0])
        assert (shown["source"], shown["url"], shown["pull_every"]) == ("url", f"{base}/feed.csv", 900)
        out, _ = _call("feed", "pull", "remote")
        assert "done; read 2, parsed 2, invalid 0" in out
        assert Path(Run.objects.get().path).read_bytes() == FEED_BODY
        out, _ = _call("feed", "pull", "remote")
        assert "not modified" in out
        _call("feed", "change", "remote", "--url", f"{base}/error")
        with pytest.raises(CommandError, match="answered 500"):
            _call("feed", "pull", "remote")
        with pytest.raises(CommandError, match="not pulled from a URL"):
            _call("feed", "add", "local", "--owner", "hub")
            _call("feed", "pull", "local")
    finally:
        httpd.shutdown()
        httpd.server_close()
