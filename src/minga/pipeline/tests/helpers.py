"""Shared test helpers: a feed, its file, and organisations with constituencies."""

from __future__ import annotations

from typing import Any

from minga.core.models import Organisation
from minga.directory import services as directory
from minga.pipeline import services
from minga.pipeline.models import Feed, Run

HEADER = "timestamp,ip,port,asn,host,url,category\n"


def constituency(organisation: Organisation, *entries: str) -> Organisation:
    directory.add_constituency(None, organisation, list(entries))
    return organisation


def scan_feed(owner: Organisation, **fields: Any) -> Feed:
    options: dict[str, Any] = {
        "name": "scan-report",
        "mapping": {
            "time": "timestamp",
            "source_ip": "ip",
            "source_port": "port",
            "source_asn": "asn",
            "source_fqdn": "host",
            "source_url": "url",
            "classification": "category",
        },
        "taxonomy_mapping": {"scan": "scanner", "bot": "infected-system"},
        "classification_type": "scanner",
    }
    options.update(fields)
    return services.register_feed(None, owner, **options)


def ingest(feed: Feed, text: str | bytes, *, chunk_lines: int = 3, name: str = "feed.csv") -> Run:
    data = text.encode() if isinstance(text, str) else text
    run = services.start_run(None, feed, [data], name, source="cli", queue=False, chunk_lines=chunk_lines)
    return services.run_inline(run)
