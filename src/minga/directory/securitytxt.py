"""security.txt (RFC 9116) for an organisation, from its points of contact."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from minga.core.choices import ORG_MANAGER_ROLES
from minga.core.models import Organisation
from minga.directory.contacts import published_contacts

# Generated on every request, so a short expiry is always fresh and never goes stale in a cache.
LIFETIME = timedelta(days=30)


def render(organisation: Organisation, canonical_url: str) -> str:
    """The file's text. Contacts are the organisation's 24/7 and technical contacts (24/7 first);
    until it has any, the e-mail addresses of its admins, so the file is never empty."""
    contacts = list(published_contacts(organisation).values_list("email", "languages"))
    emails = list(dict.fromkeys(email for email, _languages in contacts))
    languages = list(dict.fromkeys(code for _email, codes in contacts for code in codes))
    if not emails:
        emails = list(
            dict.fromkeys(
                organisation.memberships.filter(  # type: ignore[attr-defined]
                    is_active=True, role__in=ORG_MANAGER_ROLES, user__is_active=True
                )
                .exclude(user__email="")
                .order_by("user__username")
                .values_list("user__email", flat=True)
            )
        )
    expires = (timezone.now() + LIFETIME).replace(microsecond=0)
    lines = [f"# security.txt of {organisation.name} (RFC 9116), published by its Minga node"]
    lines += [f"Contact: mailto:{email}" for email in emails]
    lines.append(f"Expires: {expires.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    if languages:
        lines.append(f"Preferred-Languages: {', '.join(languages)}")
    lines.append(f"Canonical: {canonical_url}")
    return "\n".join(lines) + "\n"
