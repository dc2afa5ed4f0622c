"""Background work of the pipeline: one task per chunk, and the periodic jobs."""

from __future__ import annotations

from datetime import timedelta

from minga.core import schedule
from minga.core.tasks import background_task


@background_task(max_attempts=3, backoff_seconds=30)
def process_chunk(chunk_id: int) -> str:
    """Parse, normalise, classify, de-duplicate and route one chunk, and write it in one
    transaction (``processing.process_chunk``): idempotent, so a retry neither loses nor
    duplicates an event."""
    from minga.pipeline import processing

    return processing.process_chunk(chunk_id)


@schedule.every(timedelta(minutes=1), name="pipeline.resume_stalled_chunks")
@background_task(max_attempts=1)
def resume_stalled_chunks() -> str:
    """Queue again the chunks whose worker died in the middle of them (a task killed with its
    process stays marked running for ever): nothing accepted is lost."""
    from django.conf import settings

    from minga.pipeline import services

    count = services.resume_stalled(timedelta(seconds=settings.MINGA_PIPELINE_STALLED_SECONDS))
    return f"queued {count} stalled chunks again"


@schedule.every(timedelta(days=1), name="pipeline.purge_expired_events")
@background_task(max_attempts=3, backoff_seconds=600)
def purge_expired_events() -> str:
    """Delete the events older than their feed's retention period (each purge audited)."""
    from minga.pipeline import services

    purged = services.purge_expired()
    return f"purged {sum(purged.values())} events"


@schedule.every(timedelta(days=1), name="pipeline.maintain_partitions")
@background_task(max_attempts=3, backoff_seconds=600)
def maintain_partitions() -> str:
    """On PostgreSQL, create the events' monthly partitions from the oldest month any feed keeps
    to two months ahead, moving the rows the DEFAULT partition holds for them
    (``partitions.maintain``, each month audited). Nothing to do on SQLite."""
    from minga.pipeline import partitions

    created = partitions.maintain()
    return f"created {len(created)} monthly partitions, moved {sum(created.values())} events"


@schedule.every(timedelta(minutes=1), name="pipeline.pull_sources")
@background_task(max_attempts=1)
def pull_sources() -> str:
    """Queue one pull of each URL feed that is due (its schedule, or its retry after a failure)."""
    from minga.pipeline import services

    claimed = services.claim_due_pulls()
    for feed_id in claimed:
        pull_feed.enqueue(feed_id)
    services.remove_stale_downloads(timedelta(hours=1))
    return f"queued {len(claimed)} pulls"


@background_task(max_attempts=1)
def pull_feed(feed_id: int) -> str:
    """Pull one URL feed (``services.pull_feed``); a failure is recorded on the feed and retried
    on its backoff by ``pull_sources``, not by the task framework."""
    from minga.pipeline import services
    from minga.pipeline.choices import FeedSource
    from minga.pipeline.models import Feed

    pulled = (FeedSource.URL, FeedSource.TAXII)
    feed = Feed.objects.select_related("owner").filter(pk=feed_id, is_active=True, source__in=pulled).first()
    if feed is None:
        return f"feed {feed_id}: not an active URL or TAXII feed"
    run = services.pull_feed(feed)
    if run is not None:
        return f"feed {feed.name}: run {run.uuid} ({run.status})"
    return f"feed {feed.name}: " + (f"failed: {feed.last_error}" if feed.last_error else "not modified")


@schedule.every(timedelta(minutes=1), name="pipeline.watch_directories")
@background_task(max_attempts=1)
def watch_directories() -> str:
    """Read the new, settled files of the feeds' watched folders (``services.watch_directories``)."""
    from minga.pipeline import services

    read = services.watch_directories()
    return f"read {sum(read.values())} files"


@schedule.every(timedelta(minutes=1), name="pipeline.queue_digests")
@background_task(max_attempts=1)
def queue_digests() -> str:
    """Claim each organisation's digest that is due (its schedule, or its retry after a failed
    delivery) and queue one ``send_digest`` per digest (``digests.claim_due``)."""
    from minga.pipeline import digests

    claimed = digests.claim_due()
    for digest_id, token in claimed:
        send_digest.enqueue(digest_id, token)
    return f"queued {len(claimed)} digests"


@background_task(max_attempts=1)
def send_digest(digest_id: int, token: str) -> str:
    """Deliver one claimed digest (``digests.send``); a failed delivery is recorded on the
    digest and retried on its backoff by ``queue_digests``, not by the task framework."""
    from minga.pipeline import digests

    return digests.send(digest_id, token)
