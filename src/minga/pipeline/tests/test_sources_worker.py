"""The schedule end to end: a real ``minga worker`` (its scheduler thread and its task loop)
pulls a URL feed from a real local HTTP server and reads a watched directory, with nothing
called by hand."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from minga.core.tests.test_worker import REPO, _database_url, wait_for
from minga.pipeline.choices import RunSource, RunStatus
from minga.pipeline.models import Event, Feed, Run
from minga.pipeline.tests.helpers import HEADER, constituency, scan_feed
from minga.pipeline.tests.test_sources import FEED_BODY, Source

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_pulls_a_url_and_reads_a_watched_directory_on_its_schedule(make_org, tmp_path, settings):
    inbox = tmp_path / "inbox"
    settings.MINGA_PIPELINE_INBOX = inbox
    Source.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Source)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    team = constituency(make_org("demo-a"), "192.0.2.0/24")
    hub = make_org("hub")
    pulled = scan_feed(
        hub, name="pulled", source="url", url=f"http://127.0.0.1:{httpd.server_address[1]}/feed.csv"
    )
    watched = scan_feed(hub, name="watched", source="directory", directory="drop")
    (inbox / "drop").mkdir(parents=True)
    (inbox / "drop" / "one.csv").write_bytes(
        HEADER.encode() + b"2026-01-10T10:00:00Z,192.0.2.30,22,,,,scan\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "MINGA_TEST_DATABASE_URL": _database_url(),
        "MINGA_PIPELINE_PULL_PRIVATE": "true",
        "MINGA_PIPELINE_INBOX": str(inbox),
        "MINGA_PIPELINE_SETTLE_SECONDS": "0",
        "PYTHONPATH": str(REPO),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "minga", "worker", "--interval", "0.1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: Run.objects.filter(feed__in=[pulled, watched], status=RunStatus.DONE).count() == 2,
            timeout=120,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
        httpd.shutdown()
        httpd.server_close()
    by_url = Run.objects.get(feed=pulled)
    assert (by_url.source, by_url.parsed, by_url.routed) == (RunSource.URL, 2, 2)
    assert Path(by_url.path).read_bytes() == FEED_BODY
    pulled_feed = Feed.objects.get(pk=pulled.pk)
    assert pulled_feed.etag == '"v1"' and pulled_feed.next_pull_at is not None and not pulled_feed.last_error
    from_folder = Run.objects.get(feed=watched)
    assert (from_folder.source, from_folder.file_name, from_folder.routed) == (
        RunSource.DIRECTORY,
        "one.csv",
        1,
    )
    assert [p.name.split("-", 1)[1] for p in (inbox / "drop" / "done").iterdir()] == ["one.csv"]
    assert Event.objects.filter(recipient_organisations=team).count() == 3
    assert [r["path"] for r in Source.requests] == ["/feed.csv"]
