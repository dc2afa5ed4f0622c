"""Domain operations of the directory. Each checks who may act, changes rows in one transaction
and writes its audit entry there."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from minga.core import audit
from minga.core.demo import is_demo_organisation
from minga.core.models import Organisation, User
from minga.core.services import can_manage_organisation, is_node_admin
from minga.directory import contacts, webhooks
from minga.directory.choices import OrganisationKind, ProposalStatus
from minga.directory.constituency import ASN, DOMAIN, NETWORK, Entry, classify
from minga.directory.models import (
    ConstituencyASN,
    ConstituencyDomain,
    ConstituencyGeneration,
    ConstituencyNetwork,
    ConstituencyProposal,
    MemberState,
    OrganisationProfile,
    PointOfContact,
    Sector,
    TeamProfile,
    Webhook,
)


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


# --- constituency ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LineError:
    line: int
    text: str
    reason: str


class ConstituencyRejected(ValidationError):
    """Some lines were not valid: nothing was saved. ``errors`` names each bad line."""

    def __init__(self, errors: list[LineError]) -> None:
        self.line_errors = errors
        super().__init__(
            [
                _("Line %(line)d (%(text)s): %(reason)s")
                % {"line": e.line, "text": e.text[:80], "reason": e.reason}
                for e in errors
            ]
        )


def _bump_generation() -> None:
    ConstituencyGeneration.objects.update_or_create(pk=1, defaults={"token": uuid.uuid4().hex})


@transaction.atomic
def add_constituency(actor: User | None, organisation: Organisation, lines: Iterable[str]) -> list[Entry]:
    """Add networks, AS numbers and domains (one per line) to an organisation's constituency:
    its own admins or node admins. Every line is checked first; if any is bad, nothing is saved
    and each bad line is reported. Audited as ``constituency.add``."""
    if not can_manage_organisation(actor, organisation):
        raise PermissionDenied(_("You may not change this organisation."))
    entries: list[Entry] = []
    errors: list[LineError] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            entries.append(classify(text, demo=is_demo_organisation(organisation)))
        except ValueError as exc:
            errors.append(LineError(number, text.strip(), str(exc)))
    if errors:
        raise ConstituencyRejected(errors)
    if not entries:
        raise ValidationError(_("Give at least one network, AS number or domain."))
    for entry in entries:
        if entry.kind == NETWORK:
            ConstituencyNetwork.objects.get_or_create(
                organisation=organisation,
                cidr=entry.value,
                defaults={"version": 6 if ":" in entry.value else 4},
            )
        elif entry.kind == ASN:
            ConstituencyASN.objects.get_or_create(organisation=organisation, asn=int(entry.value))
        else:
            ConstituencyDomain.objects.get_or_create(organisation=organisation, domain=entry.value)
    _bump_generation()
    audit.record(
        "constituency.add",
        actor=actor,
        obj=organisation,
        details={"entries": [f"{e.kind}:{e.value}" for e in entries][:500], "count": len(entries)},
    )
    return entries


@transaction.atomic
def remove_constituency(actor: User | None, organisation: Organisation, kind: str, value: str) -> None:
    """Remove one network, AS number or domain from an organisation's constituency."""
    if not can_manage_organisation(actor, organisation):
        raise PermissionDenied(_("You may not change this organisation."))
    models = {
        NETWORK: (ConstituencyNetwork, "cidr"),
        ASN: (ConstituencyASN, "asn"),
        DOMAIN: (ConstituencyDomain, "domain"),
    }
    if kind not in models:
        raise ValidationError(_("Unknown kind of constituency entry."))
    model, field_name = models[kind]
    deleted, _rows = model.objects.filter(organisation=organisation, **{field_name: value}).delete()  # type: ignore[attr-defined]
    if not deleted:
        raise ValidationError(_("%(value)s is not in this constituency.") % {"value": value})
    _bump_generation()
    audit.record("constituency.remove", actor=actor, obj=organisation, details={"entry": f"{kind}:{value}"})


# --- points of contact -----------------------------------------------------------------------


@transaction.atomic
def save_contact(
    actor: User | None, organisation: Organisation, contact: PointOfContact | None = None, **fields: Any
) -> PointOfContact:
    """Create or change a point of contact: the organisation's admins or node admins. Fields
    are validated together (E.164 phones, OpenPGP fingerprint against the key). The audit
    entry names the changed fields, not their values: contacts are personal data."""
    if not can_manage_organisation(actor, organisation):
        raise PermissionDenied(_("You may not change this organisation."))
    data = contacts.clean_contact(**fields)
    created = contact is None
    if contact is None:
        contact = PointOfContact(organisation=organisation)
    elif contact.organisation_id != organisation.pk:
        raise PermissionDenied(_("This contact belongs to another organisation."))
    changed = [name for name, value in vars(data).items() if getattr(contact, name, None) != value]
    for name, value in vars(data).items():
        setattr(contact, name, value)
    contact.save()
    audit.record(
        "contact.create" if created else "contact.update",
        actor=actor,
        obj=contact,
        organisation=organisation,
        details={"fields": changed},
    )
    return contact


@transaction.atomic
def remove_contact(actor: User | None, contact: PointOfContact) -> None:
    if not can_manage_organisation(actor, contact.organisation):
        raise PermissionDenied(_("You may not change this organisation."))
    audit.record(
        "contact.remove",
        actor=actor,
        obj=contact,
        organisation=contact.organisation,
        details={"role": contact.role},
    )
    contact.delete()


@transaction.atomic
def confirm_contact(
    contact: PointOfContact, *, actor: User | None = None, via: str = "link"
) -> PointOfContact:
    """Record that the contact's details are current (from the signed link, or by an admin)."""
    if actor is not None and not can_manage_organisation(actor, contact.organisation):
        raise PermissionDenied(_("You may not change this organisation."))
    contact.last_verified_at = timezone.now()
    contact.save(update_fields=["last_verified_at", "updated_at"])
    audit.record(
        "contact.confirm", actor=actor, obj=contact, organisation=contact.organisation, details={"via": via}
    )
    return contact


@transaction.atomic
def request_confirmation(actor: User | None, contact: PointOfContact, *, via: str = "admin") -> None:
    """Ask the contact to confirm their details: an e-mail with a signed one-click link, sent
    by a background task enqueued in this transaction. Node admins and the organisation's admins,
    or the daily schedule (``via="schedule"``)."""
    if not can_manage_organisation(actor, contact.organisation):
        raise PermissionDenied(_("You may not change this organisation."))
    from minga.directory.tasks import send_confirmation_request

    send_confirmation_request.enqueue(contact.pk)
    contact.confirmation_requested_at = timezone.now()
    contact.save(update_fields=["confirmation_requested_at"])
    audit.record(
        "contact.confirmation_requested",
        actor=actor,
        obj=contact,
        organisation=contact.organisation,
        details={"via": via},
    )


@transaction.atomic
def save_team_profile(actor: User | None, organisation: Organisation, **fields: str) -> TeamProfile:
    """Set the RFC 2350 sections of a team: its own admins or node admins. Audited with the
    names of the sections changed."""
    if not can_manage_organisation(actor, organisation):
        raise PermissionDenied(_("You may not change this organisation."))
    unknown = set(fields) - set(TeamProfile.EDITABLE)
    if unknown:
        raise ValidationError(_("Unknown fields: %(fields)s") % {"fields": ", ".join(sorted(unknown))})
    team, _created = TeamProfile.objects.get_or_create(organisation=organisation)
    changed = [name for name, value in fields.items() if getattr(team, name) != value.strip()]
    for name, value in fields.items():
        setattr(team, name, value.strip())
    team.full_clean(exclude=["organisation"])
    team.save()
    if changed:
        audit.record("team_profile.update", actor=actor, obj=organisation, details={"sections": changed})
    return team


# --- registry proposals ----------------------------------------------------------------------

MAX_DECISIONS = 10_000  # proposals decided in one call: each accepted one is a constituency row


@transaction.atomic
def decide_proposals(
    actor: User | None,
    ids: Iterable[int],
    decision: str,
    organisation: Organisation | None = None,
) -> list[ConstituencyProposal]:
    """Accept or reject pending constituency proposals (``registries.seed_proposals``): node
    admins only. Accepting adds each resource to ``organisation``, or else to the organisation
    the proposal names, through ``add_constituency`` (which checks and audits it); rejecting
    keeps the proposal so that re-running the load does not propose it again. All or nothing:
    an unknown, already decided or ownerless proposal is named and nothing changes. Audited as
    ``constituency_proposal.accept`` (one entry per organisation) or ``.reject``."""
    if not is_node_admin(actor):
        raise PermissionDenied(_("Only node admins may decide on proposals."))
    if decision not in ("accept", "reject"):
        raise ValidationError({"decision": _("Decide accept or reject.")})
    wanted = sorted(set(ids))
    if not wanted:
        raise ValidationError({"ids": _("Choose at least one proposal.")})
    if len(wanted) > MAX_DECISIONS:
        raise ValidationError(
            {"ids": _("Decide at most %(max)d proposals at a time.") % {"max": MAX_DECISIONS}}
        )
    proposals = list(ConstituencyProposal.objects.select_for_update().filter(pk__in=wanted).order_by("pk"))
    missing = sorted(set(wanted) - {p.pk for p in proposals})
    errors = [_("Proposal %(id)d does not exist.") % {"id": pk} for pk in missing[:20]]
    errors += [
        _("Proposal %(id)d (%(value)s) was %(status)s already.")
        % {"id": p.pk, "value": p.value, "status": p.get_status_display().lower()}
        for p in proposals
        if p.status != ProposalStatus.PENDING
    ][:20]
    if decision == "accept" and organisation is None:
        errors += [
            _("Proposal %(id)d (%(value)s) names no organisation: choose one.")
            % {"id": p.pk, "value": p.value}
            for p in proposals
            if p.organisation_id is None
        ][:20]
    if errors:
        raise ValidationError({"ids": errors})
    now = timezone.now()
    if decision == "reject":
        ConstituencyProposal.objects.filter(pk__in=wanted).update(
            status=ProposalStatus.REJECTED, decided_by=actor, decided_at=now
        )
        audit.record(
            "constituency_proposal.reject",
            actor=actor,
            details={"ids": wanted[:500], "values": [p.value for p in proposals][:500], "count": len(wanted)},
        )
        return proposals
    groups: dict[int, list[ConstituencyProposal]] = {}
    targets: dict[int, Organisation] = {}
    for proposal in proposals:
        target = organisation or proposal.organisation
        assert target is not None
        targets[target.pk] = target
        groups.setdefault(target.pk, []).append(proposal)
    for org_id, group in groups.items():
        target = targets[org_id]
        try:
            add_constituency(actor, target, [f"AS{p.value}" if p.kind == ASN else p.value for p in group])
        except ConstituencyRejected as exc:
            raise ValidationError(
                {
                    "ids": [
                        _("Proposal %(id)d (%(value)s): %(reason)s")
                        % {"id": group[e.line - 1].pk, "value": e.text, "reason": e.reason}
                        for e in exc.line_errors
                    ]
                }
            ) from exc
        ConstituencyProposal.objects.filter(pk__in=[p.pk for p in group]).update(
            status=ProposalStatus.ACCEPTED, decided_by=actor, decided_at=now, accepted_for=target
        )
        audit.record(
            "constituency_proposal.accept",
            actor=actor,
            obj=target,
            details={
                "ids": [p.pk for p in group][:500],
                "values": [p.value for p in group][:500],
                "count": len(group),
                "reassigned": sum(1 for p in group if p.organisation_id != org_id),
            },
        )
    return proposals


# --- webhooks --------------------------------------------------------------------------------


@transaction.atomic
def set_webhook(
    actor: User | None,
    organisation: Organisation,
    *,
    url: str,
    secret: str = "",
    new_secret: bool = False,
) -> tuple[Webhook, str | None]:
    """Register or change an organisation's webhook: its admins or node admins. ``secret``, if
    given, becomes the signing secret; otherwise the node draws one when there is none yet or
    ``new_secret`` asks for another. Returns the webhook and the new secret, to be shown once
    (``None`` when it was kept). The secret is sealed at rest and never audited; the audit entry
    (``organisation.webhook_set``) names the URL and whether the secret changed."""
    if not can_manage_organisation(actor, organisation):
        raise PermissionDenied(_("You may not change this organisation."))
    url = webhooks.clean_url(url)
    shown = webhooks.clean_secret(secret) if secret.strip() else None
    webhook = Webhook.objects.select_for_update().filter(organisation=organisation).first()
    if shown is None and (webhook is None or new_secret):
        shown = webhooks.new_secret()
    created = webhook is None
    if webhook is None:
        webhook = Webhook(organisation=organisation)
    before = webhook.url
    webhook.url = url
    if shown is not None:
        webhook.sealed_secret = webhooks.seal_secret(shown)
    webhook.save()
    audit.record(
        "organisation.webhook_set",
        actor=actor,
        obj=organisation,
        details={
            "url": url,
            "previous_url": None if created else before,
            "secret": "new" if shown is not None else "kept",
        },
    )
    return webhook, shown


@transaction.atomic
def remove_webhook(actor: User | None, organisation: Organisation) -> None:
    """Stop POSTing to the organisation's webhook: its admins or node admins. Notifications
    still pending for it stay pending (nothing accepted is dropped) until a webhook is set
    again. Audited as ``organisation.webhook_remove``."""
    if not can_manage_organisation(actor, organisation):
        raise PermissionDenied(_("You may not change this organisation."))
    webhook = Webhook.objects.filter(organisation=organisation).first()
    if webhook is None:
        raise ValidationError(_("%(org)s has no webhook.") % {"org": organisation.short_name})
    audit.record("organisation.webhook_remove", actor=actor, obj=organisation, details={"url": webhook.url})
    webhook.delete()
