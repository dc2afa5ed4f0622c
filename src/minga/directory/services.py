"""Domain operations of the directory. Each checks who may act, changes rows in one transaction
and writes its audit entry there."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.text import slugify
from django.utils.translation import gettext as _

from minga.core import audit
from minga.core.models import Organisation, User
from minga.core.services import can_manage_organisation, is_node_admin
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState, OrganisationProfile, Sector


@transaction.atomic
def set_state_participation(actor: User | None, state: MemberState, participating: bool) -> MemberState:
    """Say whether a member state takes part in the network. Node admins only."""
    if not is_node_admin(actor):
        raise PermissionDenied(_("Only node admins may change which states take part."))
    if state.participating != participating:
        state.participating = participating
        state.save(update_fields=["participating", "updated_at"])
        audit.record(
            "state.set_participation",
            actor=actor,
            obj=state,
            details={"state": state.code, "participating": participating},
        )
    return state


@transaction.atomic
def add_sector(actor: User | None, name: str) -> Sector:
    """Add a sector beside the built-in ones. Node admins only."""
    if not is_node_admin(actor):
        raise PermissionDenied(_("Only node admins may add sectors."))
    name = name.strip()
    slug = slugify(name)[:60]
    if not slug:
        raise ValidationError({"name": _("Give the sector a name with letters or digits.")})
    if Sector.objects.filter(slug=slug).exists() or Sector.objects.filter(name__iexact=name).exists():
        raise ValidationError({"name": _("This sector exists already.")})
    sector = Sector(slug=slug, name=name)
    sector.full_clean()
    sector.save()
    audit.record("sector.create", actor=actor, obj=sector, details={"slug": slug, "name": name})
    return sector


@transaction.atomic
def update_profile(
    actor: User | None,
    organisation: Organisation,
    *,
    kind: str,
    state: MemberState | None,
    sectors: Iterable[Sector],
    parent: Organisation | None = None,
    hosting_node: str = "",
) -> OrganisationProfile:
    """Set an organisation's kind, state, sectors, parent and hosting node: its own admins or
    node admins. Audited as ``organisation.update_profile`` with the values before and after."""
    if not can_manage_organisation(actor, organisation):
        raise PermissionDenied(_("You may not change this organisation."))
    if kind not in OrganisationKind.values:
        raise ValidationError({"kind": _("Unknown kind of organisation.")})
    if parent is not None and _would_loop(organisation, parent):
        raise ValidationError({"parent": _("An organisation cannot be its own parent or ancestor.")})
    sectors = list(sectors)
    profile, _created = OrganisationProfile.objects.select_for_update().get_or_create(
        organisation=organisation, defaults={"kind": kind}
    )
    before = _snapshot(profile) if not _created else {}
    profile.kind, profile.state, profile.parent = kind, state, parent
    profile.hosting_node = hosting_node.strip()
    profile.full_clean(exclude=["organisation"])
    profile.save()
    profile.sectors.set(sectors)
    after = _snapshot(profile)
    changed = {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}
    if changed:
        audit.record(
            "organisation.update_profile", actor=actor, obj=organisation, details={"changed": changed}
        )
    return profile


def _snapshot(profile: OrganisationProfile) -> dict[str, object]:
    return {
        "kind": profile.kind,
        "state": profile.state.code if profile.state else None,
        "sectors": sorted(s.slug for s in profile.sectors.all()),
        "parent": profile.parent.short_name if profile.parent else None,
        "hosting_node": profile.hosting_node,
    }


def _would_loop(organisation: Organisation, parent: Organisation) -> bool:
    seen: set[int] = set()
    current: Organisation | None = parent
    while current is not None and current.pk not in seen:
        if current.pk == organisation.pk:
            return True
        seen.add(current.pk)
        profile = OrganisationProfile.objects.filter(organisation=current).select_related("parent").first()
        current = profile.parent if profile else None
    return False
