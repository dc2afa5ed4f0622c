"""Feed sources: URLs pulled on a schedule from a real local HTTP server (conditional requests,
errors, garbage, size cap, backoff), and watched directories in a real temporary folder."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from minga.core.models import AuditEntry
from minga.pipeline import services
from minga.pipeline.choices import RunSource, RunStatus
from minga.pipeline.models import Event, Feed, Run
from minga.pipeline.tests.helpers import HEADER, constituency, scan_feed

pytestmark = pytest.mark.django_db

FEED_BODY = (
    HEADER + "2026-01-10T10:00:00Z,192.0.2.10,22,,,,scan\n2026-01-10T10:00:00Z,192.0.2.11,22,,,,bot\n"
).encode()


class Source(BaseHTTPRequestHandler):
    """A feed publisher: /feed.csv with an ETag and Last-Modified, /error (500), /garbage
    (binary), /big (larger than the cap), /slow (answers after the timeout), /moved (redirect)."""

    body = FEED_BODY
    etag = '"v1"'
    last_modified = "Sat, 10 Jan 2026 10:00:00 GMT"
    requests: list[dict[str, str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        if self.path == "/feed.csv":
            if self.headers.get("If-None-Match") == self.etag:
                self.send_response(304)
                self.end_headers()
                return
            self._send(200, self.body, {"ETag": self.etag, "Last-Modified": self.last_modified})
        elif self.path == "/error":
            self._send(500, b"internal error")
        elif self.path == "/garbage":
            self._send(200, b"\x00\x01\x02\xff" * 100)
        elif self.path == "/big":
            self._send(200, b"x" * 5000)
        elif self.path == "/streamed":  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"x" * 5000)
        elif self.path == "/slow":
            time.sleep(1.5)
            self._send(200, self.body)
        elif self.path == "/moved":
            self._send(302, b"", {"Location": "/feed.csv"})
        else:
            self._send(404, b"not found")

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server():
    Source.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Source)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def pulls(settings, tmp_path):
    settings.MINGA_PIPELINE_PULL_PRIVATE = True
    settings.MINGA_PIPELINE_PULL_TIMEOUT = 1
    settings.MINGA_PIPELINE_PULL_MAX_BYTES = 4096
    settings.MINGA_PIPELINE_INBOX = tmp_path / "inbox"
    return settings


def _pull(name: str) -> Run | None:
    return services.pull_feed(Feed.objects.select_related("owner").get(name=name))


def test_a_url_feed_is_pulled_conditionally_and_its_body_kept_before_processing(make_org, server, pulls):
    team = constituency(make_org("demo-a"), "192.0.2.0/24")
    feed = scan_feed(make_org("hub"), source="url", url=f"{server}/moved", pull_every=3600)
    assert services.claim_due_pulls() == [feed.pk]  # due at once
    assert services.claim_due_pulls() == []  # claimed: not twice
    run = _pull(feed.name)
    assert run is not None and run.source == RunSource.URL and run.file_name == "feed.csv"
    assert Path(run.path).read_bytes() == FEED_BODY  # the raw input is kept first
    run = services.run_inline(run)
    assert (run.status, run.parsed, run.routed) == (RunStatus.DONE, 2, 2)
    assert Event.objects.filter(run=run, recipient_organisations=team).count() == 2
    feed.refresh_from_db()
    assert (feed.etag, feed.last_modified, feed.failures, feed.last_error) == (
        '"v1"',
        Source.last_modified,
        0,
        "",
    )
    assert timedelta(minutes=59) < feed.next_pull_at - timezone.now() <= timedelta(hours=1)
    services.change_feed(None, feed, url=f"{server}/feed.csv")  # a new URL: due now, unconditional
    feed.refresh_from_db()
    assert feed.etag == "" and feed.next_pull_at is None
    assert _pull(feed.name) is not None  # the first pull of the new URL
    assert _pull(feed.name) is None  # not modified: the ETag was sent, no run
    assert Source.requests[-1]["if-none-match"] == '"v1"'
    assert Source.requests[-1]["if-modified-since"] == Source.last_modified
    assert Run.objects.filter(feed=feed).count() == 2
    results = list(
        AuditEntry.objects.filter(action="pipeline.feed_pulled")
        .order_by("pk")
        .values_list("details__result", flat=True)
    )
    assert results == ["new", "new", "not modified"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/error", "answered 500"),
        ("/garbage", "NUL bytes"),
        ("/big", "this node takes"),
        ("/streamed", "this node takes"),
        ("/slow", "timed out"),
        ("/nowhere", "answered 404"),
    ],
)
def test_a_failing_source_is_recorded_and_retried_with_backoff(make_org, server, pulls, path, reason):
    feed = scan_feed(make_org("hub"), source="url", url=f"{server}{path}")
    delays = []
    for failures in (1, 2, 3):
        _pull(feed.name)
        feed.refresh_from_db()
        assert feed.failures == failures and reason in feed.last_error, feed.last_error
        delays.append(round((feed.next_pull_at - feed.pulled_at).total_seconds()))
    assert delays == [60, 120, 240]
    assert services.claim_due_pulls() == []  # not due before its next attempt
    assert services.claim_due_pulls(timezone.now() + timedelta(seconds=241)) == [feed.pk]
    entry = AuditEntry.objects.filter(action="pipeline.feed_pull_failed").latest("pk")
    assert entry.details["failures"] == 3 and reason in entry.details["reason"]
    assert Event.objects.count() == 0
    if path == "/garbage":  # the body was kept as a run, which failed with the reason
        assert Run.objects.filter(feed=feed, status=RunStatus.FAILED).count() == 3
    else:
        assert not Run.objects.exists()
    # the source recovers: one good pull clears the failures
    services.change_feed(None, feed, url=f"{server}/feed.csv")
    assert _pull(feed.name) is not None
    feed.refresh_from_db()
    assert (feed.failures, feed.last_error) == (0, "")


def test_private_addresses_are_refused_unless_the_node_allows_them(make_org, server, pulls):
    pulls.MINGA_PIPELINE_PULL_PRIVATE = False
    feed = scan_feed(make_org("hub"), source="url", url=f"{server}/feed.csv")
    assert _pull(feed.name) is None
    feed.refresh_from_db()
    assert "not a public address" in feed.last_error and not Source.requests


def test_url_and_directory_settings_are_checked(make_org, pulls):
    hub = make_org("hub")
    for fields, field in (
        ({"source": "url"}, "url"),
        ({"source": "url", "url": "ftp://example.org/x"}, "url"),
        ({"source": "url", "url": "https://user:secret@example.org/x"}, "url"),
        ({"source": "url", "url": "https://example.org/x", "pull_every": 5}, "pull_every"),
        ({"source": "directory"}, "directory"),
        ({"source": "directory", "directory": "/etc"}, "directory"),
        ({"source": "directory", "directory": "a/../../etc"}, "directory"),
        ({"source": "directory", "directory": "scan/done"}, "directory"),
    ):
        with pytest.raises(ValidationError) as caught:
            scan_feed(hub, **fields)
        assert field in caught.value.message_dict, (fields, caught.value.message_dict)
    scan_feed(hub, source="directory", directory="shadow/scan")
    with pytest.raises(ValidationError) as caught:
        scan_feed(hub, name="other", source="directory", directory="shadow/scan")
    assert "Another feed watches" in str(caught.value)


# --- watched directories -----------------------------------------------------------------------


def _age(path: Path, seconds: float) -> None:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


def test_a_watched_directory_reads_each_settled_file_once(
    make_org, pulls, django_capture_on_commit_callbacks
):
    constituency(make_org("demo-a"), "192.0.2.0/24")
    pulls.MINGA_PIPELINE_SETTLE_SECONDS = 0
    feed = scan_feed(make_org("hub"), source="directory", directory="shadow/scan")
    folder = Path(pulls.MINGA_PIPELINE_INBOX) / "shadow" / "scan"
    assert services.watch_directories() == {}  # creates the folders
    (folder / "one.csv").write_bytes(FEED_BODY)
    (folder / "two.csv").write_bytes(HEADER.encode() + b"2026-01-10T10:00:00Z,192.0.2.12,22,,,,scan\n")
    (folder / "three.csv.part").write_bytes(FEED_BODY)  # still downloading
    (folder / ".hidden").write_bytes(FEED_BODY)
    (folder / "bad.csv").write_bytes("x\n".encode("utf-16"))
    with django_capture_on_commit_callbacks(execute=False):
        assert services.watch_directories() == {"scan-report": 3}
    runs = {r.file_name: r for r in Run.objects.filter(feed=feed)}
    assert set(runs) == {"one.csv", "two.csv", "bad.csv"}
    assert {r.source for r in runs.values()} == {RunSource.DIRECTORY}
    assert runs["bad.csv"].status == RunStatus.FAILED
    for run in runs.values():
        services.run_inline(run)
    assert Event.objects.filter(feed=feed).count() == 3
    done = sorted(p.name for p in (folder / "done").iterdir())
    assert [n.split("-", 1)[1] for n in done] == ["one.csv", "two.csv"]
    failed = sorted(p.name for p in (folder / "failed").iterdir())
    assert [n.split("-", 1)[1] for n in failed] == ["bad.csv", "bad.csv.reason.txt"]
    assert "UTF-16" in (folder / "failed" / failed[1]).read_text()
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [".hidden", "three.csv.part"]
    assert not list((folder / "processing").iterdir())
    # a second sweep reads nothing again; a new file is a new run
    assert services.watch_directories() == {}
    (folder / "one.csv").write_bytes(FEED_BODY)
    assert services.watch_directories() == {"scan-report": 1}
    assert Run.objects.filter(feed=feed).count() == 4


def test_a_file_still_being_written_waits_and_a_crash_does_not_read_it_twice(make_org, pulls):
    pulls.MINGA_PIPELINE_SETTLE_SECONDS = 30
    pulls.MINGA_PIPELINE_STALLED_SECONDS = 600
    feed = scan_feed(make_org("hub"), source="directory", directory="drop")
    folder = Path(pulls.MINGA_PIPELINE_INBOX) / "drop"
    services.watch_directories()
    fresh = folder / "fresh.csv"
    fresh.write_bytes(FEED_BODY)
    assert services.watch_directories() == {}  # changed less than 30 s ago
    assert services.watch_directories(time.time() + 31) == {"scan-report": 1}
    # a worker died after the run started but before the file left processing/
    run = Run.objects.get(feed=feed)
    crashed = folder / "processing" / "fresh.csv"
    (folder / "done" / next((folder / "done").iterdir()).name).rename(crashed)
    assert services.watch_directories() == {}  # another worker may still be reading it
    assert services.watch_directories(time.time() + 601) == {"scan-report": 1}
    assert Run.objects.filter(feed=feed).count() == 1 and Run.objects.get(feed=feed) == run
    assert not crashed.exists() and len(list((folder / "done").iterdir())) == 1
    # one left there before its run was recorded is read
    (folder / "processing" / "lost.csv").write_bytes(FEED_BODY)
    assert services.watch_directories(time.time() + 601) == {"scan-report": 1}
    assert Run.objects.filter(feed=feed, file_name="lost.csv").count() == 1


def test_a_watched_folder_that_leads_outside_the_inbox_is_refused(make_org, pulls, tmp_path):
    feed = scan_feed(make_org("hub"), source="directory", directory="linked")
    inbox = Path(pulls.MINGA_PIPELINE_INBOX)
    inbox.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_bytes(FEED_BODY)
    (inbox / "linked").symlink_to(outside)
    assert services.watch_directories(time.time() + 60) == {}
    feed.refresh_from_db()
    assert "outside the node's feed inbox" in feed.last_error
    assert (outside / "secret.csv").exists() and not Run.objects.exists()


def test_the_schedule_queues_the_pulls_and_sweeps_the_directories(make_org, server, pulls):
    from django_tasks_db.models import DBTaskResult

    from minga.core import schedule
    from minga.pipeline import tasks

    names = {job.name for job in schedule.jobs()}
    assert {"pipeline.pull_sources", "pipeline.watch_directories"} <= names
    feed = scan_feed(make_org("hub"), source="url", url=f"{server}/feed.csv")
    scan_feed(make_org("other"), name="idle", source="url", url=f"{server}/feed.csv", is_active=False)
    assert tasks.pull_sources.call() == "queued 1 pulls"
    queued = DBTaskResult.objects.get(task_path=tasks.pull_feed.module_path)
    assert queued.args_kwargs["args"] == [feed.pk]
    assert tasks.pull_feed.call(feed.pk).startswith("feed scan-report: run ")
    assert tasks.pull_feed.call(feed.pk) == "feed scan-report: not modified"
    assert tasks.watch_directories.call() == "read 0 files"


# --- TAXII collections -------------------------------------------------------------------------

TAXII_TOKEN = "s3cret-token"
TAXII_OBJECTS = [
    {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-00000000000{n}",
        "created": "2026-01-09T00:00:00.000Z",
        "modified": "2026-01-09T00:00:00.000Z",
        "valid_from": "2026-01-10T08:00:00Z",
        "pattern_type": "stix",
        "pattern": f"[ipv4-addr:value = '192.0.2.{n}']",
    }
    for n in (1, 2, 3)
]
ADDED = ["2026-01-10T08:00:00.000Z", "2026-01-10T08:00:01.000Z", "2026-01-10T08:00:02.000Z"]


class Collection(BaseHTTPRequestHandler):
    """A TAXII 2.1 collection: its objects two a page (``next``), each page naming the date
    added of its last object; a bearer token required; ``added_after`` honoured."""

    requests: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        from urllib.parse import parse_qs, urlsplit

        type(self).requests.append(self.path)
        parts = urlsplit(self.path)
        if parts.path != "/api1/collections/c1/objects/":
            return self._send(404, {"title": "no such collection"})
        if self.headers.get("Authorization") != f"Bearer {TAXII_TOKEN}":
            return self._send(401, {"title": "unauthorised"})
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        start = (
            int(query["next"])
            if "next" in query
            else sum(1 for a in ADDED if a <= query.get("added_after", ""))
        )
        page = list(range(start, min(start + 2, len(TAXII_OBJECTS))))
        if not page:
            return self._send(200, {})
        more = page[-1] + 1 < len(TAXII_OBJECTS)
        envelope = {"more": more, "objects": [TAXII_OBJECTS[i] for i in page]}
        if more:
            envelope["next"] = str(page[-1] + 1)
        self._send(200, envelope, {"X-TAXII-Date-Added-Last": ADDED[page[-1]]})

    def _send(self, status: int, document: dict, headers: dict[str, str] | None = None) -> None:
        import json

        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/taxii+json;version=2.1")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def taxii(pulls):
    Collection.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Collection)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api1/collections/c1/"
    httpd.shutdown()
    httpd.server_close()


def test_a_taxii_collection_is_pulled_page_by_page_from_where_it_stopped(make_org, taxii):
    team = constituency(make_org("demo-a"), "192.0.2.0/24")
    hub = make_org("hub")
    with pytest.raises(ValidationError) as caught:
        scan_feed(hub, source="taxii", url=taxii)  # a CSV feed cannot read STIX
    assert "format" in caught.value.message_dict
    feed = services.register_feed(
        None,
        hub,
        name="peer-c1",
        format="stix",
        classification_type="c2-server",
        source="taxii",
        url=taxii,
        token="wrong",
    )
    assert feed.credential and TAXII_TOKEN not in feed.credential and "wrong" not in feed.credential
    assert _pull(feed.name) is None  # refused: the wrong token
    feed.refresh_from_db()
    assert "refused the feed's credentials (401)" in feed.last_error and feed.failures == 1
    services.change_feed(None, feed, token=TAXII_TOKEN)
    assert AuditEntry.objects.filter(action="pipeline.feed_changed").latest("pk").details == {
        "token": ["…", "set"]
    }
    run = _pull(feed.name)
    assert run is not None and run.source == RunSource.TAXII
    run = services.run_inline(run)
    assert (run.status, run.read, run.parsed, run.routed) == (RunStatus.DONE, 3, 3, 3)
    assert Event.objects.filter(run=run, recipient_organisations=team).count() == 3
    feed.refresh_from_db()
    assert (feed.cursor, feed.failures, feed.last_error) == (ADDED[2], 0, "")
    assert Collection.requests[-2:] == [
        "/api1/collections/c1/objects/?limit=1000",
        "/api1/collections/c1/objects/?limit=1000&next=2",
    ]
    assert _pull(feed.name) is None  # nothing added since: no run
    assert "added_after=2026-01-10T08%3A00%3A02.000Z" in Collection.requests[-1]
    TAXII_OBJECTS.append({**TAXII_OBJECTS[0], "id": "indicator--00000000-0000-4000-8000-000000000004",
                          "pattern": "[ipv4-addr:value = '192.0.2.4']"})  # fmt: skip
    ADDED.append("2026-01-10T09:00:00.000Z")
    try:
        later = _pull(feed.name)
        assert later is not None and services.run_inline(later).parsed == 1
        assert Event.objects.filter(source_ip="192.0.2.4").exists()
    finally:
        TAXII_OBJECTS.pop()
        ADDED.pop()
    assert Run.objects.filter(feed=feed).count() == 2


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "feeds.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_an_https_source_is_verified_and_pulled(make_org, pulls, tmp_path, monkeypatch):
    import ssl

    cert, key = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Source)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{httpd.server_address[1]}/feed.csv"
        feed = scan_feed(make_org("hub"), source="url", url=url)
        assert _pull(feed.name) is None  # a certificate no authority vouches for
        feed.refresh_from_db()
        assert "CERTIFICATE_VERIFY_FAILED" in feed.last_error
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now the node trusts it
        run = _pull(feed.name)
        assert run is not None and Path(run.path).read_bytes() == FEED_BODY
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_download_a_dead_worker_left_is_removed_after_an_hour(pulls):
    folder = services.runs_folder()
    old, fresh, other = folder / ".pull-1-2.part", folder / ".taxii-3-4.part", folder / ".keep.part"
    for path in (old, fresh, other):
        path.write_bytes(b"x")
    _age(old, 3601)
    _age(other, 3601)
    assert services.remove_stale_downloads(timedelta(hours=1)) == 1
    assert not old.exists() and fresh.exists() and other.exists()
