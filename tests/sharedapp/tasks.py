"""Tasks the worker tests enqueue."""

from django.db import transaction

from minga.core.tasks import background_task
from tests.sharedapp.models import TaskRun


@background_task(max_attempts=3, backoff_seconds=0.1)
def flaky(key: str, failures: int) -> str:
    """Fails ``failures`` times, then succeeds; each attempt leaves a row."""
    with transaction.atomic():
        attempt = TaskRun.objects.filter(key=key).count() + 1
        outcome = "failed" if attempt <= failures else "succeeded"
        TaskRun.objects.create(key=key, attempt=attempt, outcome=outcome)
    if outcome == "failed":
        raise RuntimeError(f"attempt {attempt} of {key} fails on purpose")
    return outcome
