"""Background work of the intel app."""

from __future__ import annotations

from minga.core.tasks import background_task


@background_task(max_attempts=3, backoff_seconds=60)
def run_import(job_id: int) -> str:
    """Import an uploaded bundle (``services.run_import_job``); idempotent, so a retry after a
    crash neither loses nor duplicates a version."""
    from minga.intel import services

    job = services.run_import_job(job_id)
    return f"import {job_id}: {job.status if job else 'gone'}"
