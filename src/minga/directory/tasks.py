"""Background work of the directory."""

from __future__ import annotations

from django.core.mail import send_mail
from django.utils import translation
from django.utils.translation import gettext as _

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
