"""Read helpers of the directory, behind the access policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Case, Count, F, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone
from django.utils.functional import cached_property

from minga.core import access
from minga.core.models import Organisation
from minga.directory import resolution
from minga.directory.choices import ContactRole, OrganisationKind
from minga.directory.constituency import ASN, DOMAIN, NETWORK
from minga.directory.models import (
    ConstituencyASN,
    ConstituencyDomain,
    ConstituencyNetwork,
    MemberState,
    OrganisationProfile,
    PointOfContact,
    Webhook,
)


def states_with_counts(user: Any) -> QuerySet[MemberState]:
    """Member states with how many organisations of each kind the reader may see. The directory
    is network-internal: a reader without a membership sees the states but counts nothing."""
    counted = access.organisation_filter(user, "profiles__organisation")
    return MemberState.objects.annotate(
        organisation_count=Count("profiles", filter=counted),
        national_csirt_count=Count(
            "profiles", filter=counted & Q(profiles__kind=OrganisationKind.NATIONAL_CSIRT)
        ),
    )


def profiles_visible_to(user: Any) -> QuerySet[OrganisationProfile]:
    return OrganisationProfile.objects.filter(access.organisation_filter(user)).select_related(
        "organisation", "state", "parent"
    )


def state_profiles(user: Any, state: MemberState) -> QuerySet[OrganisationProfile]:
    """A state's organisations that the reader may see, in the order its page groups them: by
    kind (in the order of ``OrganisationKind``), then by name. Loads only what the page shows,
    so a page of a big state stays cheap."""
    kind_order = Case(
        *[When(kind=kind, then=Value(i)) for i, kind in enumerate(OrganisationKind.values)],
        output_field=IntegerField(),
    )
    return (
        OrganisationProfile.objects.filter(access.organisation_filter(user), state=state)
        .select_related("organisation")
        .only("kind", "organisation__name", "organisation__short_name")
        .prefetch_related("sectors")
        .order_by(kind_order, "organisation__name")
    )


class Constituency:
    """An organisation's networks, AS numbers and domains as one sequence of ``(kind, value)``
    rows, networks first, for ``Paginator``: a page reads only its own slice of each table, so a
    national CSIRT's thousands of networks are never all loaded for one page."""

    TABLES = (
        (NETWORK, ConstituencyNetwork, "cidr"),
        (ASN, ConstituencyASN, "asn"),
        (DOMAIN, ConstituencyDomain, "domain"),
    )

    def __init__(self, organisation: Organisation) -> None:
        self.parts = [
            (kind, model.objects.filter(organisation=organisation).values_list(column, flat=True))
            for kind, model, column in self.TABLES
        ]

    @cached_property
    def counts(self) -> list[int]:
        return [rows.count() for _kind, rows in self.parts]

    def count(self) -> int:
        return sum(self.counts)

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, window: slice) -> list[tuple[str, str]]:
        start, stop = window.start or 0, window.stop if window.stop is not None else self.count()
        rows: list[tuple[str, str]] = []
        for (kind, values), size in zip(self.parts, self.counts, strict=True):
            if stop > 0 and start < size:
                rows += [(kind, str(v)) for v in values[max(start, 0) : min(stop, size)]]
            start, stop = start - size, stop - size
        return rows


def resolve(user: Any, *, ips: list[str], asns: list[int], domains: list[str]) -> dict[str, list[dict]]:
    """Resolve a batch against the constituency index. Owners the reader may not see are left
    out (the directory is network-internal)."""
    index = resolution.current()
    found: dict[str, list[tuple[int, ...] | None]] = {
        "ips": index.resolve_ips(ips),
        "asns": index.resolve_asns(asns),
        "domains": index.resolve_domains(domains),
    }
    owner_ids = {o for answers in found.values() for owners in answers for o in owners or ()}
    organisations = {org.pk: org for org in access.organisations_visible_to(user).filter(pk__in=owner_ids)}
    # Whom to call: each owner's 24/7 contacts, for readers allowed to see contacts.
    duty: dict[int, list[dict[str, Any]]] = {}
    for contact in contacts_visible_to(user).filter(role=ContactRole.DUTY, organisation_id__in=organisations):
        duty.setdefault(contact.organisation_id, []).append(
            {"name": contact.name, "email": contact.email, "phone_numbers": contact.phone_numbers}
        )

    def answer(query: Any, owners: tuple[int, ...] | None) -> dict:
        return {
            "query": str(query),
            "valid": owners is not None,
            "owners": [
                {
                    "organisation": organisations[o].short_name,
                    "name": organisations[o].name,
                    "duty_contacts": duty.get(o, []),
                }
                for o in owners or ()
                if o in organisations
            ],
        }

    queries: dict[str, list[Any]] = {"ips": ips, "asns": asns, "domains": domains}
    return {
        kind: [answer(q, o) for q, o in zip(queries[kind], answers, strict=True)]
        for kind, answers in found.items()
    }


def resolve_text(user: Any, text: str) -> dict[str, Any]:
    """Resolve one value typed by a person: an AS number ("AS64500" or "64500"), an IP address,
    or else a domain."""
    number = text.upper().removeprefix("AS")
    if number.isdigit():
        return resolve(user, ips=[], asns=[min(int(number), 2**32)], domains=[])["asns"][0]
    if ":" in text or text.replace(".", "").isdigit():
        return resolve(user, ips=[text], asns=[], domains=[])["ips"][0]
    return resolve(user, ips=[], asns=[], domains=[text])["domains"][0]


def contacts_visible_to(user: Any) -> QuerySet[PointOfContact]:
    """Contacts are personal data: members of the network read them, nobody else."""
    if not access.reader_for(user).is_network_member:
        return PointOfContact.objects.none()
    return PointOfContact.objects.filter(access.organisation_filter(user))


def stale_contacts(user: Any) -> QuerySet[PointOfContact]:
    limit = timezone.now() - timedelta(days=settings.MINGA_CONTACT_STALE_DAYS)
    return (
        contacts_visible_to(user)
        .filter(Q(last_verified_at__isnull=True) | Q(last_verified_at__lt=limit))
        .select_related("organisation")
        # Never confirmed is the most overdue, on every backend (PostgreSQL sorts NULL last).
        .order_by(F("last_verified_at").asc(nulls_first=True), "organisation__name", "pk")
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


def webhook_for(user: Any, organisation: Organisation) -> Webhook | None:
    """The organisation's webhook, for its admins and node admins only: a webhook's URL is
    the organisation's own business, not the directory's."""
    from minga.core.services import can_manage_organisation

    if user is None or not user.is_authenticated or not can_manage_organisation(user, organisation):
        return None
    return Webhook.objects.filter(organisation=organisation).first()
