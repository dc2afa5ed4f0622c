"""Read helpers of the directory, behind the access policy."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from minga.core import access
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState, OrganisationProfile


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
