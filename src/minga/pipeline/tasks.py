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
