"""The REST API: token authentication, the caller, organisations and tokens, as users see them."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from minga.core import services
from minga.core.choices import Role
from minga.core.models import ApiToken, AuditEntry


@pytest.fixture
def team(make_org, make_user, node_admin):
    org = make_org("csirt-a")
    return {
        "org": org,
        "admin": node_admin,
        "analyst": make_user("analyst", org),
        "org_admin": make_user("orgadmin", org, Role.ORG_ADMIN),
    }


def test_bearer_and_basic_tokens_authenticate(team):
    issued = services.create_api_token(None, team["analyst"], name="siem")
    client = Client()
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {issued.raw}"})
    assert me.status_code == 200
    assert me.json()["username"] == "analyst"
    assert me.json()["memberships"] == [
        {"organisation": "csirt-a", "organisation_name": "Organisation csirt-a", "role": "analyst"}
    ]
    basic = base64.b64encode(f"taxii-client:{issued.raw}".encode()).decode()
    assert client.get("/api/v1/me", headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_tokens_are_stored_only_as_hashes(team):
    issued = services.create_api_token(None, team["analyst"], name="siem")
    stored = ApiToken.objects.get(pk=issued.token.pk)
    assert stored.key_hash == hashlib.sha256(issued.raw.encode()).hexdigest()
    assert issued.raw not in {stored.key_hash, stored.prefix, stored.name}
    assert issued.raw.startswith(stored.prefix)
    assert not AuditEntry.objects.filter(details__icontains=issued.raw).exists()


@pytest.mark.parametrize("spoil", ["revoke", "expire", "disable_user", "garbage"])
def test_unusable_tokens_get_401_with_a_clear_message(team, spoil):
    issued = services.create_api_token(None, team["analyst"], name="siem")
    raw = issued.raw
    if spoil == "revoke":
        services.revoke_api_token(team["analyst"], issued.token)
    elif spoil == "expire":
        ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif spoil == "disable_user":
        services.set_user_active(team["admin"], team["analyst"], False)
    else:
        raw = raw[:-4] + "AAAA"
    response = Client().get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 401
    assert "token" in response.json()["detail"]


def test_anonymous_requests_are_refused():
    response = Client().get("/api/v1/organisations")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_organisations_list_is_paginated(team, bearer):
    for i in range(5):
        services.create_organisation(None, name=f"Extra {i}", short_name=f"extra-{i}")
    response = Client().get("/api/v1/organisations?limit=3&offset=0", headers=bearer(team["analyst"]))
    body = response.json()
    assert response.status_code == 200
    assert body["count"] == 7 and len(body["items"]) == 3
    filtered = Client().get("/api/v1/organisations?q=extra-4", headers=bearer(team["analyst"])).json()
    assert [o["short_name"] for o in filtered["items"]] == ["extra-4"]


def test_user_without_membership_sees_no_organisation(team, bearer):
    from minga.core.models import User

    loner = User.objects.create_user("loner", password="x" * 20)
    headers = bearer(loner)
    assert Client().get("/api/v1/organisations", headers=headers).json()["count"] == 0
    assert Client().get("/api/v1/organisations/csirt-a", headers=headers).status_code == 404


def test_only_node_admins_create_organisations(team, bearer):
    body = {"name": "CSIRT New", "short_name": "csirt-new"}
    refused = Client().post(
        "/api/v1/organisations", body, content_type="application/json", headers=bearer(team["analyst"])
    )
    assert refused.status_code == 403
    created = Client().post(
        "/api/v1/organisations", body, content_type="application/json", headers=bearer(team["admin"])
    )
    assert created.status_code == 201
    assert created.json()["short_name"] == "csirt-new"
    duplicate = Client().post(
        "/api/v1/organisations", body, content_type="application/json", headers=bearer(team["admin"])
    )
    assert duplicate.status_code == 400
    assert "already exists" in duplicate.json()["detail"]


def test_organisation_admin_renames_but_cannot_change_membership_of_network(team, bearer):
    headers = bearer(team["org_admin"])
    renamed = Client().patch(
        "/api/v1/organisations/csirt-a",
        {"name": "CSIRT A (renamed)"},
        content_type="application/json",
        headers=headers,
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "CSIRT A (renamed)"
    refused = Client().patch(
        "/api/v1/organisations/csirt-a",
        {"is_network_member": False},
        content_type="application/json",
        headers=headers,
    )
    assert refused.status_code == 403
    analyst = Client().patch(
        "/api/v1/organisations/csirt-a",
        {"name": "Hijacked"},
        content_type="application/json",
        headers=bearer(team["analyst"]),
    )
    assert analyst.status_code == 403


def test_unknown_fields_are_rejected(team, bearer):
    response = Client().post(
        "/api/v1/organisations",
        {"name": "X Org", "short_name": "x-org", "colour": "red"},
        content_type="application/json",
        headers=bearer(team["admin"]),
    )
    assert response.status_code == 422
    assert "colour" in response.json()["detail"]


def test_token_lifecycle_through_the_api(team, bearer):
    headers = bearer(team["analyst"])
    created = Client().post(
        "/api/v1/tokens",
        {"name": "opencti", "expires_in_days": 7},
        content_type="application/json",
        headers=headers,
    )
    assert created.status_code == 201
    secret = created.json()["token"]
    listed = Client().get("/api/v1/tokens", headers=headers).json()["items"]
    assert secret not in str(listed)
    assert {t["name"] for t in listed} == {"test", "opencti"}
    token_id = created.json()["id"]
    assert Client().delete(f"/api/v1/tokens/{token_id}", headers=headers).status_code == 200
    assert Client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    other = bearer(team["org_admin"])
    assert Client().delete(f"/api/v1/tokens/{token_id}", headers=other).status_code == 404


def test_openapi_and_interactive_docs_are_served():
    schema = Client().get("/api/v1/openapi.json")
    assert schema.status_code == 200
    assert "/api/v1/organisations" in schema.json()["paths"]
    docs = Client().get("/api/v1/docs")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content and b"cdn" not in docs.content.lower()
