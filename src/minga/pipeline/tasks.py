"""Background work of the pipeline: one task per chunk, and the periodic jobs."""

from __future__ import annotations

from minga.core.tasks import background_task


@background_task(max_attempts=3, backoff_seconds=30)
def process_chunk(chunk_id: int) -> str:
    """Parse, normalise, classify, de-duplicate and route one chunk, and write it in one
    transaction (``processing.process_chunk``): idempotent, so a retry neither loses nor
    duplicates an event."""
    from minga.pipeline import processing

    return processing.process_chunk(chunk_id)
