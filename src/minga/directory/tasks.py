"""Background work of the directory."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from minga.core import schedule
from minga.core.tasks import background_task


@background_task()
def send_confirmation_request(contact_id: int) -> str:
    """E-mail a point of contact the link that confirms their details. Retried on SMTP errors."""
    from minga.directory.contacts import LINK_LIFETIME, confirmation_url
    from minga.directory.models import PointOfContact

    contact = PointOfContact.objects.select_related("organisation").filter(pk=contact_id).first()
    if contact is None:
        return "contact removed meanwhile"
    language = next((code for code in contact.languages if code in ("es", "pt", "fr", "en")), "en")
    with translation.override("pt-br" if language == "pt" else language):
        subject = _("Please confirm your contact details for %(organisation)s") % {
            "organisation": contact.organisation.name
        }
        body = _(
            "Hello %(name)s,\n\nThe network's directory lists you as a point of contact of "
            "%(organisation)s. If your details are still correct, confirm them with one click "
            "(the link works for %(days)d days):\n\n%(url)s\n\nIf they changed, please tell your "
            "organisation's admins.\n"
        ) % {
            "name": contact.name,
            "organisation": contact.organisation.name,
            "days": LINK_LIFETIME.days,
            "url": confirmation_url(contact),
        }
    send_mail(subject, body, None, [contact.email])
    return "sent"


@schedule.every(timedelta(days=1), name="directory.request_stale_confirmations")
@background_task()
def request_stale_confirmations() -> str:
    """Once a day: ask every stale contact to confirm their details, at most once per
    MINGA_CONTACT_REMINDER_DAYS. Each request is its own e-mail task and audit entry."""
    from minga.directory import services
    from minga.directory.models import PointOfContact

    now = timezone.now()
    stale_before = now - timedelta(days=settings.MINGA_CONTACT_STALE_DAYS)
    asked_before = now - timedelta(days=settings.MINGA_CONTACT_REMINDER_DAYS)
    due = (
        PointOfContact.objects.filter(Q(last_verified_at__isnull=True) | Q(last_verified_at__lt=stale_before))
        .filter(Q(confirmation_requested_at__isnull=True) | Q(confirmation_requested_at__lt=asked_before))
        .select_related("organisation")
        .order_by("pk")
    )
    asked = 0
    ids = list(due.values_list("pk", flat=True))
    for start in range(0, len(ids), 500):  # one transaction per batch: a crash loses little
        with transaction.atomic():
            for contact in due.filter(pk__in=ids[start : start + 500]):
                services.request_confirmation(None, contact, via="schedule")
                asked += 1
    return f"asked {asked} stale contacts to confirm"
