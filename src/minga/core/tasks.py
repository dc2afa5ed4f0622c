"""Background work on django-tasks with its database backend.

The queue lives in the node's database, so a task enqueued inside a transaction exists only
if that transaction commits, and survives restarts; any number of ``minga worker`` processes,
on any machine that reaches the database, share it. django-tasks does not retry, so
``background_task`` adds that: a failing run is kept as failed with its traceback (node admins
see it under Node, Background tasks) and a new attempt is enqueued after an exponential backoff, until
``MINGA_TASK_MAX_ATTEMPTS`` is reached.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django_tasks import task
from django_tasks.base import Task

logger = logging.getLogger(__name__)

ATTEMPT_KWARG = "_attempt"


def backoff_delay(attempt: int, base_seconds: float) -> timedelta:
    """Delay before attempt ``attempt + 1``: base, 2 * base, 4 * base... capped at six hours."""
    return timedelta(seconds=min(base_seconds * 2 ** (attempt - 1), 6 * 3600))


def background_task(
    *, max_attempts: int | None = None, backoff_seconds: float = 30, queue_name: str = "default"
) -> Callable[[Callable[..., Any]], Task]:
    """Declare a retried background task. Arguments must be JSON-serialisable."""

    def decorate(func: Callable[..., Any]) -> Task:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            attempt = int(kwargs.pop(ATTEMPT_KWARG, 1))
            try:
                return func(*args, **kwargs)
            except Exception:
                limit = max_attempts or settings.MINGA_TASK_MAX_ATTEMPTS
                if attempt < limit:
                    delay = backoff_delay(attempt, backoff_seconds)
                    wrapped.using(run_after=timezone.now() + delay).enqueue(
                        *args, **kwargs, **{ATTEMPT_KWARG: attempt + 1}
                    )
                    logger.warning(
                        "%s failed (attempt %d of %d), retrying in %s",
                        func.__qualname__,
                        attempt,
                        limit,
                        delay,
                    )
                else:
                    logger.error("%s failed for the last time (attempt %d)", func.__qualname__, attempt)
                raise

        wrapped = task(queue_name=queue_name)(run)
        return wrapped

    return decorate
