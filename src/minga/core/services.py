"""Domain operations of the core app. Everything that changes accounts, organisations or
tokens goes through a function here: it checks who may do it, makes the change in one
transaction and writes the audit entry in that same transaction.

``actor=None`` means the node itself acting on an operator's command line; the CLI is only
available to someone who already controls the node's configuration and database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import available_timezones

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from minga.core import audit, tokens, totp
from minga.core.choices import ORG_MANAGER_ROLES, Role
from minga.core.models import ApiToken, Membership, Organisation, User

MAX_TOKEN_DAYS = 366


# --- who may do what -------------------------------------------------------------------------


def is_node_admin(actor: User | None) -> bool:
    return actor is None or actor.is_node_admin


def can_manage_organisation(actor: User | None, organisation: Organisation) -> bool:
    if is_node_admin(actor):
        return True
    assert actor is not None
    return actor.memberships.filter(
        organisation=organisation, is_active=True, role__in=ORG_MANAGER_ROLES
    ).exists()


def _require(allowed: bool) -> None:
    if not allowed:
        raise PermissionDenied(_("You are not allowed to do this."))


# --- organisations ---------------------------------------------------------------------------


ORGANISATION_FIELDS = ("name", "short_name", "is_network_member")


@transaction.atomic
def create_organisation(
    actor: User | None, *, name: str, short_name: str, is_network_member: bool = True
) -> Organisation:
    """Create an organisation. Node admins only. Audited as ``organisation.create``."""
    _require(is_node_admin(actor))
    organisation = Organisation(
        name=name.strip(), short_name=short_name.strip().lower(), is_network_member=is_network_member
    )
    organisation.full_clean()
    organisation.save()
    audit.record(
        "organisation.create",
        actor=actor,
        obj=organisation,
        details={f: getattr(organisation, f) for f in ORGANISATION_FIELDS},
    )
    return organisation


@transaction.atomic
def update_organisation(actor: User | None, organisation: Organisation, **changes: Any) -> Organisation:
    """Change an organisation's fields. Its own admins may rename it; only node admins decide
    network membership. Audited as ``organisation.update`` with the before/after values."""
    _require(can_manage_organisation(actor, organisation))
    unknown = set(changes) - set(ORGANISATION_FIELDS)
    if unknown:
        raise ValidationError(_("Unknown fields: %(fields)s") % {"fields": ", ".join(sorted(unknown))})
    if "is_network_member" in changes and changes["is_network_member"] != organisation.is_network_member:
        _require(is_node_admin(actor))
    organisation = Organisation.objects.select_for_update().get(pk=organisation.pk)
    before = {f: getattr(organisation, f) for f in ORGANISATION_FIELDS}
    for field, value in changes.items():
        if isinstance(value, str):
            value = value.strip()
        if field == "short_name":
            value = value.lower()
        setattr(organisation, field, value)
    organisation.full_clean()
    after = {f: getattr(organisation, f) for f in ORGANISATION_FIELDS}
    changed = {f: [before[f], after[f]] for f in ORGANISATION_FIELDS if before[f] != after[f]}
    if changed:
        organisation.save()
        audit.record("organisation.update", actor=actor, obj=organisation, details={"changed": changed})
    return organisation


# --- users and memberships -------------------------------------------------------------------


def _check_role_grant(actor: User | None, role: str) -> None:
    if role not in Role.values:
        raise ValidationError(_("Unknown role: %(role)s") % {"role": role})
    if role == Role.NODE_ADMIN:
        _require(is_node_admin(actor))


@transaction.atomic
def create_user(
    actor: User | None,
    *,
    username: str,
    email: str,
    password: str,
    organisation: Organisation,
    role: str = Role.ANALYST,
    first_name: str = "",
    last_name: str = "",
) -> User:
    """Create an account and its first membership. Node admins, or admins of ``organisation``.
    The password is checked against the node's password rules. Audited as ``user.create``."""
    _require(can_manage_organisation(actor, organisation))
    _check_role_grant(actor, role)
    username = username.strip()
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": _("A user with this name already exists.")})
    user = User(username=username, email=email.strip(), first_name=first_name, last_name=last_name)
    user.full_clean(exclude=["password"])
    validate_password(password, user)
    user.set_password(password)
    user.save()
    Membership.objects.create(user=user, organisation=organisation, role=role)
    audit.record(
        "user.create",
        actor=actor,
        obj=user,
        organisation=organisation,
        details={"email": user.email, "role": role},
    )
    return user


@transaction.atomic
def set_user_active(actor: User | None, user: User, active: bool) -> User:
    """Enable or disable an account. Node admins only; nobody disables themselves."""
    _require(is_node_admin(actor))
    if actor is not None and actor.pk == user.pk and not active:
        raise ValidationError(_("You cannot disable your own account."))
    if user.is_active != active:
        user.is_active = active
        user.save(update_fields=["is_active"])
        audit.record("user.activate" if active else "user.deactivate", actor=actor, obj=user)
    return user


@transaction.atomic
def set_password(actor: User | None, user: User, password: str) -> None:
    """Set a user's password: the user themselves, or a node admin. Audited (not the value)."""
    _require(actor is None or actor.pk == user.pk or is_node_admin(actor))
    validate_password(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])
    audit.record("user.set_password", actor=actor, obj=user)


@transaction.atomic
def update_profile(user: User, *, preferred_language: str, time_zone: str) -> User:
    """A user's own preferences. Audited as ``user.update_profile``."""
    if preferred_language and preferred_language not in dict(settings.LANGUAGES):
        raise ValidationError({"preferred_language": _("Unknown language.")})
    if time_zone not in available_timezones():
        raise ValidationError({"time_zone": _("Unknown time zone.")})
    user.preferred_language, user.time_zone = preferred_language, time_zone
    user.save(update_fields=["preferred_language", "time_zone"])
    audit.record(
        "user.update_profile",
        actor=user,
        obj=user,
        details={"preferred_language": preferred_language, "time_zone": time_zone},
    )
    return user


@transaction.atomic
def add_membership(actor: User | None, organisation: Organisation, user: User, role: str) -> Membership:
    """Add ``user`` to ``organisation`` (or re-activate them) with ``role``."""
    _require(can_manage_organisation(actor, organisation))
    _check_role_grant(actor, role)
    membership, created = Membership.objects.get_or_create(
        user=user, organisation=organisation, defaults={"role": role}
    )
    if not created:
        if membership.is_active and membership.role == role:
            raise ValidationError(_("%(user)s is already a member.") % {"user": user})
        membership.role, membership.is_active = role, True
        membership.save(update_fields=["role", "is_active"])
    audit.record(
        "membership.add",
        actor=actor,
        obj=membership,
        organisation=organisation,
        details={"user": user.username, "role": role},
    )
    return membership


@transaction.atomic
def change_membership_role(actor: User | None, membership: Membership, role: str) -> Membership:
    _require(can_manage_organisation(actor, membership.organisation))
    _check_role_grant(actor, role)
    if membership.role == Role.NODE_ADMIN:
        _require(is_node_admin(actor))
    previous = membership.role
    if previous != role:
        _guard_last_node_admin(membership, removing=previous == Role.NODE_ADMIN)
        membership.role = role
        membership.save(update_fields=["role"])
        audit.record(
            "membership.change_role",
            actor=actor,
            obj=membership,
            organisation=membership.organisation,
            details={"user": membership.user.username, "role": [previous, role]},
        )
    return membership


@transaction.atomic
def remove_membership(actor: User | None, membership: Membership) -> None:
    """End a membership. The row is kept inactive so the history stays readable."""
    _require(can_manage_organisation(actor, membership.organisation))
    if membership.role == Role.NODE_ADMIN:
        _require(is_node_admin(actor))
    _guard_last_node_admin(membership, removing=membership.role == Role.NODE_ADMIN)
    if membership.is_active:
        membership.is_active = False
        membership.save(update_fields=["is_active"])
        audit.record(
            "membership.remove",
            actor=actor,
            obj=membership,
            organisation=membership.organisation,
            details={"user": membership.user.username, "role": membership.role},
        )


def _guard_last_node_admin(membership: Membership, *, removing: bool) -> None:
    if not removing:
        return
    others = Membership.objects.filter(role=Role.NODE_ADMIN, is_active=True, user__is_active=True)
    if not others.exclude(pk=membership.pk).exists():
        raise ValidationError(_("The node needs at least one node admin."))


# --- API tokens ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    raw: str  # shown to the person once, never stored


@transaction.atomic
def create_api_token(
    actor: User | None, user: User, *, name: str, expires_in_days: int | None = None
) -> IssuedToken:
    """Issue a token for ``user`` (the user themselves, or a node admin). Only its hash is
    stored. Audited as ``token.create`` with its prefix and expiry."""
    _require(actor is None or actor.pk == user.pk or is_node_admin(actor))
    days = settings.MINGA_TOKEN_DEFAULT_DAYS if expires_in_days is None else expires_in_days
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise ValidationError(
            {"expires_in_days": _("A token lives between 1 and %(max)d days.") % {"max": MAX_TOKEN_DAYS}}
        )
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": _("Give the token a name of 1 to 100 characters.")})
    if not user.is_active:
        raise ValidationError(_("This account is disabled."))
    raw = tokens.generate()
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=tokens.display_prefix(raw),
        key_hash=tokens.hash_token(raw),
        expires_at=timezone.now() + timedelta(days=days),
    )
    audit.record(
        "token.create",
        actor=actor,
        obj=token,
        details={"user": user.username, "prefix": token.prefix, "expires_at": token.expires_at},
    )
    return IssuedToken(token=token, raw=raw)


@transaction.atomic
def revoke_api_token(actor: User | None, token: ApiToken) -> ApiToken:
    """Revoke a token at once. Its owner or a node admin. Audited as ``token.revoke``."""
    _require(actor is None or actor.pk == token.user_id or is_node_admin(actor))
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(
            "token.revoke",
            actor=actor,
            obj=token,
            details={"user": token.user.username, "prefix": token.prefix},
        )
    return token


# --- second factor ---------------------------------------------------------------------------


@transaction.atomic
def enable_totp(user: User, secret: str, code: str) -> None:
    """Turn on the TOTP second factor once the user proves their app produces valid codes."""
    step = totp.matching_step(secret, code)
    if step is None:
        raise ValidationError({"code": _("This code is not valid. Check the time on your device.")})
    user.totp_secret = totp.encrypt(secret)
    user.totp_enabled_at = timezone.now()
    user.totp_last_step = step
    user.save(update_fields=["totp_secret", "totp_enabled_at", "totp_last_step"])
    audit.record("user.totp_enable", actor=user, obj=user)


@transaction.atomic
def disable_totp(actor: User | None, user: User) -> None:
    """Turn off the second factor: the user themselves or a node admin (lost device)."""
    _require(actor is None or actor.pk == user.pk or is_node_admin(actor))
    user.totp_secret, user.totp_enabled_at, user.totp_last_step = "", None, None
    user.save(update_fields=["totp_secret", "totp_enabled_at", "totp_last_step"])
    audit.record("user.totp_disable", actor=actor, obj=user)


def check_totp(user: User, code: str) -> bool:
    """Is ``code`` a valid, not yet used code of ``user``'s second factor? Accepting it uses it up:
    the conditional update lets only one of two concurrent requests with the same code pass."""
    secret = totp.decrypt(user.totp_secret) if user.totp_secret else None
    step = totp.matching_step(secret, code) if secret is not None else None
    if step is None:
        return False
    fresh = Q(totp_last_step__isnull=True) | Q(totp_last_step__lt=step)
    accepted = User.objects.filter(fresh, pk=user.pk).update(totp_last_step=step) == 1
    if accepted:
        user.totp_last_step = step
    return accepted
