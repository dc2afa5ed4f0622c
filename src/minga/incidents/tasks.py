"""Background work of the incidents app: delivering the outbox's e-mail and webhooks."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from minga.core import schedule
from minga.core.tasks import background_task

# Twelve attempts, 1 minute apart at first and doubling up to six hours: about a day. The
# periodic sweep below starts a new series for whatever is still pending after that.
MAX_ATTEMPTS = 12
STALLED_AFTER = timedelta(hours=6)


@background_task(max_attempts=MAX_ATTEMPTS, backoff_seconds=60)
def deliver_notification(notification_id: int) -> str:
    """E-mail one notification of the outbox (``services.deliver_email``); retried on failure."""
    from minga.incidents import services

    return services.deliver_email(notification_id)


@background_task(max_attempts=MAX_ATTEMPTS, backoff_seconds=60)
def deliver_webhook(notification_id: int) -> str:
    """POST one notification to its organisation's webhook (``services.deliver_webhook``);
    retried on failure like e-mail."""
    from minga.incidents import services

    return services.deliver_webhook(notification_id)


@schedule.every(timedelta(minutes=30), name="incidents.retry_notifications")
@background_task()
def retry_notifications() -> str:
    """Every half hour: e-mail and webhook notifications still pending with no attempt for six
    hours (their series of retries ran out) get a new series, so nothing accepted is given up
    on."""
    from minga.incidents.choices import Channel, DeliveryStatus
    from minga.incidents.models import Notification

    stalled = Notification.objects.filter(
        channel__in=(Channel.EMAIL, Channel.WEBHOOK),
        status=DeliveryStatus.PENDING,
        updated_at__lt=timezone.now() - STALLED_AFTER,
    ).values_list("pk", "channel")[:1000]
    rows = list(stalled)
    for pk, channel in rows:
        (deliver_webhook if channel == Channel.WEBHOOK else deliver_notification).enqueue(pk)
    Notification.objects.filter(pk__in=[pk for pk, _channel in rows]).update(updated_at=timezone.now())
    return f"queued {len(rows)} pending e-mail or webhook notification(s) again"
