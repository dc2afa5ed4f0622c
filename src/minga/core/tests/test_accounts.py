"""Accounts: argon2 hashes, login throttling, the TOTP second factor, memberships and roles."""

from __future__ import annotations

import time

import pyotp
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client

from conftest import PASSWORD
from minga import settings as production_settings
from minga.core import services
from minga.core.choices import Role
from minga.core.models import AuditEntry, User


def test_production_hashes_passwords_with_argon2(make_org, make_user):
    assert production_settings.PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher")
    user = make_user("ana", make_org())
    assert user.password.startswith("argon2$")
    assert PASSWORD not in user.password


def test_login_with_password_and_logout(make_org, make_user):
    make_user("ana", make_org())
    client = Client()
    response = client.post("/login/", {"username": "ana", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert AuditEntry.objects.filter(action="auth.login", actor_label="ana").exists()
    client.post("/logout/")
    assert client.get("/").status_code == 302


def test_repeated_failures_lock_the_login(make_org, make_user, settings):
    make_user("ana", make_org())
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post("/login/", {"username": "ana", "password": "wrong password!"})
        assert response.status_code in (200, 429)
    locked = client.post("/login/", {"username": "ana", "password": PASSWORD})
    assert locked.status_code == 429
    assert b"Too many" in locked.content
    assert "_auth_user_id" not in client.session
    assert AuditEntry.objects.filter(action="auth.login_failed").count() >= settings.AXES_FAILURE_LIMIT


def test_second_factor_is_asked_after_the_password(make_org, make_user):
    user = make_user("ana", make_org())
    secret = pyotp.random_base32()
    with pytest.raises(ValidationError):
        services.enable_totp(user, secret, "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    enabled_at = time.time()
    services.enable_totp(user, secret, pyotp.TOTP(secret).at(enabled_at))
    assert secret not in User.objects.get(pk=user.pk).totp_secret  # encrypted at rest

    client = Client()
    response = client.post("/login/", {"username": "ana", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"].startswith("/login/verify/")
    assert client.get("/").status_code == 302  # not signed in yet
    wrong = client.post("/login/verify/", {"code": "12345x"})
    assert wrong.status_code == 200 and b"not valid" in wrong.content
    # The code that turned the factor on is used up; the next one is valid (clock drift window).
    replayed = client.post("/login/verify/", {"code": pyotp.TOTP(secret).at(enabled_at)})
    assert replayed.status_code == 200 and b"not valid" in replayed.content
    next_code = pyotp.TOTP(secret).at(time.time() + 30)
    ok = client.post("/login/verify/", {"code": next_code})
    assert ok.status_code == 302
    assert client.get("/").status_code == 200
    assert not services.check_totp(User.objects.get(pk=user.pk), next_code)  # good only once


def test_roles_bound_what_organisation_admins_may_do(make_org, make_user, node_admin):
    org, other = make_org("a"), make_org("b")
    org_admin = make_user("boss", org, Role.ORG_ADMIN)
    analyst = make_user("ana", org)
    newcomer = make_user("newcomer", other)
    membership = services.add_membership(org_admin, org, newcomer, Role.ANALYST)
    services.change_membership_role(org_admin, membership, Role.LIAISON)
    with pytest.raises(PermissionDenied):
        services.change_membership_role(org_admin, membership, Role.NODE_ADMIN)
    with pytest.raises(PermissionDenied):
        services.add_membership(analyst, org, newcomer, Role.ANALYST)
    with pytest.raises(PermissionDenied):
        services.add_membership(org_admin, other, analyst, Role.ANALYST)
    services.remove_membership(org_admin, membership)
    assert not newcomer.memberships.get(organisation=org).is_active
    actions = list(
        AuditEntry.objects.filter(object_type="core.membership", actor=org_admin)
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == ["membership.add", "membership.change_role", "membership.remove"]


def test_the_last_node_admin_cannot_be_removed(node_admin):
    membership = node_admin.memberships.get()
    with pytest.raises(ValidationError, match="at least one node admin"):
        services.remove_membership(node_admin, membership)


def test_weak_passwords_are_refused(make_org):
    with pytest.raises(ValidationError):
        services.create_user(
            None, username="weak", email="w@example.org", password="12345", organisation=make_org()
        )


def test_organisation_admins_create_accounts_in_their_organisation(make_org, make_user, login_client):
    org = make_org("a")
    boss = make_user("boss", org, Role.ORG_ADMIN)
    client = login_client(boss)
    data = {
        "username": "newbie",
        "email": "newbie@example.org",
        "organisation": org.pk,
        "role": Role.NODE_ADMIN,
        "password": "a long and unusual passphrase",
    }
    refused = client.post("/users/new/", data)
    assert refused.status_code == 200 and b"Only node admins may grant this role" in refused.content
    created = client.post("/users/new/", {**data, "role": Role.ANALYST})
    assert created.status_code == 302
    assert User.objects.get(username="newbie").memberships.get().organisation == org
    other = make_org("b")
    outside = client.post("/users/new/", {**data, "username": "elsewhere", "organisation": other.pk})
    assert outside.status_code == 200 and not User.objects.filter(username="elsewhere").exists()
