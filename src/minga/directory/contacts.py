"""Points of contact: validation, confirmation links and the questions a coordinator asks
(who is stale, which states have no confirmed 24/7 contact)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import available_timezones

import phonenumbers
from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.translation import gettext as _

from minga.directory import openpgp
from minga.directory.choices import ContactRole

LINK_SALT = "minga.directory.contact-confirmation"
LINK_LIFETIME = timedelta(days=14)


@dataclass(frozen=True)
class ContactData:
    role: str
    name: str
    email: str
    phone_numbers: list[str]
    languages: list[str]
    hours: str
    time_zone: str
    pgp_fingerprint: str
    pgp_key: str


def clean_contact(
    *,
    role: str,
    name: str,
    email: str,
    phone_numbers: Iterable[str] = (),
    languages: Iterable[str] = (),
    hours: str = "",
    time_zone: str = "UTC",
    pgp_fingerprint: str = "",
    pgp_key: str = "",
) -> ContactData:
    """Check every field and return the normalised contact, or raise one ValidationError that
    names each bad field."""
    errors: dict[str, list[str]] = {}
    if role not in ContactRole.values:
        errors.setdefault("role", []).append(_("Unknown role."))
    if not name.strip():
        errors.setdefault("name", []).append(_("Give the contact's name."))
    try:
        validate_email(email.strip())
    except ValidationError:
        errors.setdefault("email", []).append(
            _("%(value)s is not an e-mail address.") % {"value": email[:100]}
        )
    phones = []
    for raw in phone_numbers:
        if not raw.strip():
            continue
        try:
            number = phonenumbers.parse(raw, None)
            if not phonenumbers.is_valid_number(number):
                raise phonenumbers.NumberParseException(0, "invalid")
            phones.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
        except phonenumbers.NumberParseException:
            errors.setdefault("phone_numbers", []).append(
                _("%(value)s is not a valid international number (E.164, e.g. +598 2 123 4567).")
                % {"value": raw[:40]}
            )
    codes = [code.strip().lower() for code in languages if code.strip()]
    if any(not (code.isalpha() and 2 <= len(code) <= 3) for code in codes):
        errors.setdefault("languages", []).append(_("Languages are ISO 639 codes such as es, pt, fr, en."))
    if time_zone not in available_timezones():
        errors.setdefault("time_zone", []).append(_("Unknown time zone."))
    fingerprint = ""
    if pgp_fingerprint.strip():
        try:
            fingerprint = openpgp.normalise_fingerprint(pgp_fingerprint)
        except ValueError as exc:
            errors.setdefault("pgp_fingerprint", []).append(str(exc))
    if pgp_key.strip():
        try:
            actual = openpgp.fingerprint(pgp_key)
        except ValueError as exc:
            errors.setdefault("pgp_key", []).append(str(exc))
        else:
            if fingerprint and fingerprint != actual:
                errors.setdefault("pgp_fingerprint", []).append(
                    _("The key's fingerprint is %(actual)s, not the one given.") % {"actual": actual}
                )
            fingerprint = actual
    if errors:
        raise ValidationError(errors)
    return ContactData(
        role=role,
        name=name.strip(),
        email=email.strip(),
        phone_numbers=phones,
        languages=codes,
        hours=hours.strip(),
        time_zone=time_zone,
        pgp_fingerprint=fingerprint,
        pgp_key=pgp_key.strip(),
    )


def published_contacts(organisation: Any) -> QuerySet[Any]:
    """The contacts a team publishes (security.txt, RFC 2350): 24/7 first, then technical."""
    return organisation.contacts.filter(role__in=[ContactRole.DUTY, ContactRole.TECHNICAL]).order_by(
        "role", "name"
    )


def confirmation_token(contact: Any) -> str:
    """A signed token for the one-click confirmation link. It names the contact and its e-mail
    address, so a link sent to an address that has since changed no longer works."""
    return signing.TimestampSigner(salt=LINK_SALT).sign_object({"id": contact.pk, "email": contact.email})


def contact_for_token(token: str) -> Any:
    """The contact a valid, unexpired token names, or None."""
    from minga.directory.models import PointOfContact

    try:
        data = signing.TimestampSigner(salt=LINK_SALT).unsign_object(token, max_age=LINK_LIFETIME)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("id"), int):
        return None
    return PointOfContact.objects.filter(pk=data["id"], email=data.get("email")).first()


def confirmation_url(contact: Any) -> str:
    return settings.MINGA_PUBLIC_URL + reverse(
        "directory:confirm_contact", args=[confirmation_token(contact)]
    )
