"""An organisation's webhook: set by its admins, the secret sealed and shown once, hidden from
everyone else (404), bad URLs refused with a message."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from minga.core.choices import Role
from minga.core.models import AuditEntry
from minga.directory import services, webhooks
from minga.directory.models import Webhook

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_org, make_user):
    org = make_org("csirt-uy")
    other = make_org("csirt-ar")
    return {
        "org": org,
        "admin": make_user("uy-admin", org, Role.ORG_ADMIN),
        "analyst": make_user("uy-analyst", org, Role.ANALYST),
        "stranger": make_user("ar-admin", other, Role.ORG_ADMIN),
    }


def test_set_keep_rotate_and_remove(team):
    org, admin = team["org"], team["admin"]
    webhook, secret = services.set_webhook(admin, org, url="https://hooks.uy.example/minga")
    assert secret and len(secret) >= webhooks.MIN_SECRET
    assert secret not in webhook.sealed_secret
    # Changing the URL keeps the secret and does not show it again.
    webhook, again = services.set_webhook(admin, org, url="https://hooks.uy.example/v2")
    assert again is None and webhooks.unseal_secret(webhook.sealed_secret) == secret
    own = "a secret the team chose itself, long enough"
    webhook, shown = services.set_webhook(admin, org, url=webhook.url, secret=own)
    assert shown == own and webhooks.unseal_secret(webhook.sealed_secret) == own
    webhook, rotated = services.set_webhook(admin, org, url=webhook.url, new_secret=True)
    assert rotated not in (own, secret, None)
    entries = AuditEntry.objects.filter(action="organisation.webhook_set")
    assert entries.count() == 4
    assert not any(s in json.dumps(e.details) for e in entries for s in (secret, own, rotated))
    services.remove_webhook(admin, org)
    assert not Webhook.objects.exists()
    assert AuditEntry.objects.filter(action="organisation.webhook_remove").count() == 1


def test_who_may_and_bad_input(team):
    org = team["org"]
    for user in (team["analyst"], team["stranger"]):
        with pytest.raises(PermissionDenied):
            services.set_webhook(user, org, url="https://hooks.uy.example/")
    for url, message in [
        ("http://hooks.uy.example/", "must use https"),
        ("ftp://hooks.uy.example/", "full https URL"),
        ("https://user:pw@hooks.uy.example/", "no user name"),
    ]:
        with pytest.raises(ValidationError, match=message):
            services.set_webhook(team["admin"], org, url=url)
    with pytest.raises(ValidationError, match="24 to 200"):
        services.set_webhook(team["admin"], org, url="https://hooks.uy.example/", secret="short")
    assert not Webhook.objects.exists()
    services.set_webhook(team["admin"], org, url="http://127.0.0.1:9/hook")  # a receiver on this machine


def test_sign_and_verify():
    body = b'{"event": "participant_added"}'
    signature = webhooks.sign("s" * 32, 1_700_000_000, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert webhooks.verify("s" * 32, signature, "1700000000", body, now=1_700_000_100)
    assert not webhooks.verify("s" * 32, signature, "1700000000", body + b" ", now=1_700_000_100)
    assert not webhooks.verify("s" * 32, signature, "1700000000", body, now=1_700_001_000)  # stale
    assert not webhooks.verify("s" * 32, signature, "not a number", body)


def test_the_page_and_the_api_show_the_secret_once_and_to_admins_only(team, login_client, client, bearer):
    org = team["org"]
    page = login_client(team["admin"])
    answer = page.post(
        f"/directory/organisations/{org.short_name}/webhook/", {"url": "https://hooks.uy.example/"}
    )
    assert answer.status_code == 200
    webhook = Webhook.objects.get()
    secret = webhooks.unseal_secret(webhook.sealed_secret)
    assert secret in answer.content.decode()
    shown = page.get(f"/directory/organisations/{org.short_name}/webhook/").content.decode()
    assert "https://hooks.uy.example/" in shown and secret not in shown
    assert "Webhook" in page.get(f"/directory/organisations/{org.short_name}/").content.decode()
    bad = page.post(
        f"/directory/organisations/{org.short_name}/webhook/", {"url": "http://hooks.uy.example/"}
    )
    assert bad.status_code == 200 and "must use https" in bad.content.decode()
    for outsider in (team["analyst"], team["stranger"]):
        assert (
            login_client(outsider).get(f"/directory/organisations/{org.short_name}/webhook/").status_code
            == 404
        )
        api = client.get(
            f"/api/v1/directory/organisations/{org.short_name}/webhook", headers=bearer(outsider)
        )
        assert api.status_code == 404
    url = f"/api/v1/directory/organisations/{org.short_name}/webhook"
    admin = bearer(team["admin"])
    got = client.get(url, headers=admin).json()
    assert got == {
        "organisation": org.short_name,
        "url": "https://hooks.uy.example/",
        "updated_at": got["updated_at"],
    }
    put = client.put(
        url,
        json.dumps({"url": "https://hooks.uy.example/2", "new_secret": True}),
        content_type="application/json",
        headers=admin,
    )
    assert put.status_code == 200 and put.json()["secret"] not in (None, secret)
    kept = client.put(
        url, json.dumps({"url": "https://hooks.uy.example/3"}), content_type="application/json", headers=admin
    )
    assert kept.json()["secret"] is None
    refused = client.put(
        url, json.dumps({"url": "http://hooks.uy.example/"}), content_type="application/json", headers=admin
    )
    assert refused.status_code == 400 and "https" in refused.content.decode()
    stranger = client.put(
        url,
        json.dumps({"url": "https://evil.example/"}),
        content_type="application/json",
        headers=bearer(team["stranger"]),
    )
    assert stranger.status_code == 403
    assert client.delete(url, headers=admin).status_code == 204
    assert client.get(url, headers=admin).status_code == 404
