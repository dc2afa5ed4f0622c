"""Read helpers of the directory, behind the access policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from minga.core import access
from minga.core.models import Organisation
from minga.directory import resolution
from minga.directory.choices import ContactRole, OrganisationKind
from minga.directory.models import MemberState, OrganisationProfile, PointOfContact


def states_with_counts(user: Any) -> QuerySet[MemberState]:
    """Member states with how many organisations of each kind the reader may see. The directory
    is network-internal: a reader without a membership sees the states but counts nothing."""
    visible = access.organisations_visible_to(user)
    counted = Q(profiles__organisation__in=visible)
    return MemberState.objects.annotate(
        organisation_count=Count("profiles", filter=counted),
        national_csirt_count=Count(
            "profiles", filter=counted & Q(profiles__kind=OrganisationKind.NATIONAL_CSIRT)
        ),
    )


def profiles_visible_to(user: Any) -> QuerySet[OrganisationProfile]:
    return OrganisationProfile.objects.filter(
        organisation__in=access.organisations_visible_to(user)
    ).select_related("organisation", "state", "parent")


def resolve(user: Any, *, ips: list[str], asns: list[int], domains: list[str]) -> dict[str, list[dict]]:
    """Resolve a batch against the constituency index. Owners the reader may not see are left
    out (the directory is network-internal)."""
    index = resolution.current()
    visible = dict(access.organisations_visible_to(user).values_list("pk", "short_name"))
    names = dict(Organisation.objects.filter(pk__in=visible).values_list("pk", "name")) if visible else {}

    def answer(query: Any, owners: tuple[int, ...] | None) -> dict:
        return {
            "query": str(query),
            "valid": owners is not None,
            "owners": [{"organisation": visible[o], "name": names[o]} for o in owners or () if o in visible],
        }

    return {
        "ips": [answer(q, o) for q, o in zip(ips, index.resolve_ips(ips), strict=True)],
        "asns": [answer(q, o) for q, o in zip(asns, index.resolve_asns(asns), strict=True)],
        "domains": [answer(q, o) for q, o in zip(domains, index.resolve_domains(domains), strict=True)],
    }


def contacts_visible_to(user: Any) -> QuerySet[PointOfContact]:
    """Contacts are personal data: members of the network read them, nobody else."""
    if not access.reader_for(user).is_network_member:
        return PointOfContact.objects.none()
    return PointOfContact.objects.filter(organisation__in=access.organisations_visible_to(user))


def stale_contacts(user: Any) -> QuerySet[PointOfContact]:
    limit = timezone.now() - timedelta(days=settings.MINGA_CONTACT_STALE_DAYS)
    return (
        contacts_visible_to(user)
        .filter(Q(last_verified_at__isnull=True) | Q(last_verified_at__lt=limit))
        .select_related("organisation")
        .order_by("last_verified_at", "organisation__name")
    )


def states_without_confirmed_duty_contact(user: Any) -> QuerySet[MemberState]:
    """Participating states where no organisation has a 24/7 contact confirmed within the
    staleness period."""
    limit = timezone.now() - timedelta(days=settings.MINGA_CONTACT_STALE_DAYS)
    covered = (
        contacts_visible_to(user)
        .filter(
            role=ContactRole.DUTY, last_verified_at__gte=limit, organisation__profile__state__isnull=False
        )
        .values("organisation__profile__state")
    )
    return MemberState.objects.filter(participating=True).exclude(pk__in=covered)
