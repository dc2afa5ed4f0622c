"""Background work of mutual assistance: the escalation sweep and the outbox's e-mail."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from minga.core import schedule
from minga.core.tasks import background_task

MAX_ATTEMPTS = 12  # one minute apart at first, doubling up to six hours: about a day
STALLED_AFTER = timedelta(hours=6)


@background_task(max_attempts=MAX_ATTEMPTS, backoff_seconds=60)
def deliver_request_mail(mail_id: int) -> str:
    """E-mail one message of a request's outbox (``services.deliver_mail``); retried on failure."""
    from minga.assistance import services

    return services.deliver_mail(mail_id)


@schedule.every(timedelta(minutes=1), name="assistance.escalate_overdue")
@background_task()
def escalate_overdue() -> str:
    """Every minute (emergency requests are due within the hour): escalate the submitted requests
    whose acknowledgement is overdue, and give a new series of attempts to e-mails still pending
    after their retries ran out."""
    from minga.assistance import services
    from minga.assistance.choices import DeliveryStatus
    from minga.assistance.models import RequestMail

    escalated = services.escalate_overdue()
    stalled = list(
        RequestMail.objects.filter(
            status=DeliveryStatus.PENDING, updated_at__lt=timezone.now() - STALLED_AFTER
        ).values_list("pk", flat=True)[:1000]
    )
    for pk in stalled:
        deliver_request_mail.enqueue(pk)
    RequestMail.objects.filter(pk__in=stalled).update(updated_at=timezone.now())
    return f"escalated {len(escalated)} request(s); queued {len(stalled)} pending e-mail(s) again"
