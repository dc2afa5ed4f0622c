"""Points of contact: validation, privacy, the confirmation link e-mailed through a real SMTP
server (aiosmtpd), and the coordinator's view."""

from __future__ import annotations

import re
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from minga.core.choices import Role
from minga.core.models import AuditEntry, User
from minga.directory import contacts, openpgp, services
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState, PointOfContact
from minga.directory.tasks import request_stale_confirmations, send_confirmation_request

KEYS = Path(__file__).parent / "data"
ED25519_FPR = "E44E222A244E3EF842F9D854FDF6F0DCA01AC6F9"
RSA_FPR = "E1D5B67DA583940C56BA9BF9A9AEAC3B2FC43687"


def test_fingerprints_match_gnupg():
    assert openpgp.fingerprint((KEYS / "ed25519-test-key.asc").read_text()) == ED25519_FPR
    assert openpgp.fingerprint((KEYS / "rsa-test-key.asc").read_text()) == RSA_FPR
    with pytest.raises(ValueError, match="not an ASCII-armoured"):
        openpgp.fingerprint("hello")


@pytest.fixture
def team(make_org, make_user):
    org = make_org("csirt-uy")
    services.update_profile(
        None, org, kind=OrganisationKind.NATIONAL_CSIRT, state=MemberState.objects.get(code="UY"), sectors=[]
    )
    return org, make_user("boss", org, Role.ORG_ADMIN)


def duty(**changes):
    fields = {
        "role": "duty",
        "name": "Duty officer",
        "email": "duty@csirt.example",
        "phone_numbers": ["+598 2 915 1234"],
        "languages": ["es", "EN"],
        "hours": "24/7",
        "time_zone": "America/Montevideo",
    }
    return {**fields, **changes}


def test_contacts_are_validated_and_normalised(team):
    org, boss = team
    contact = services.save_contact(boss, org, **duty(pgp_key=(KEYS / "ed25519-test-key.asc").read_text()))
    assert contact.phone_numbers == ["+59829151234"] and contact.languages == ["es", "en"]
    assert contact.pgp_fingerprint == ED25519_FPR
    with pytest.raises(ValidationError) as bad:
        services.save_contact(
            boss,
            org,
            **duty(
                email="not-an-address", phone_numbers=["12345"], time_zone="Mars/Base", languages=["spanish"]
            ),
        )
    assert set(bad.value.message_dict) == {"email", "phone_numbers", "time_zone", "languages"}
    with pytest.raises(ValidationError, match=f"fingerprint is {ED25519_FPR}"):
        services.save_contact(
            boss, org, **duty(pgp_key=(KEYS / "ed25519-test-key.asc").read_text(), pgp_fingerprint=RSA_FPR)
        )
    entry = AuditEntry.objects.get(action="contact.create")
    assert "duty@csirt.example" not in str(entry.details)  # personal data stays out of the log


def test_contacts_are_for_network_members_only(team, make_org, make_user, bearer, login_client):
    org, boss = team
    services.save_contact(boss, org, **duty())
    member = make_user("member", make_org("other"))
    guest = make_user("guest", make_org("guest-org", member=False))
    url = "/api/v1/directory/organisations/csirt-uy/contacts"
    assert [c["email"] for c in Client().get(url, headers=bearer(member)).json()] == ["duty@csirt.example"]
    assert Client().get(url, headers=bearer(guest)).json() == []
    page = login_client(guest).get("/directory/organisations/csirt-uy/")
    assert page.status_code == 200 and b"duty@csirt.example" not in page.content
    with pytest.raises(PermissionDenied):
        services.save_contact(member, org, **duty())


def test_the_emailed_link_confirms_the_contact(team, smtp_server, settings):
    org, boss = team
    contact = services.save_contact(boss, org, **duty(languages=["es"]))
    assert contact.is_stale
    services.request_confirmation(boss, contact)
    assert send_confirmation_request.call(contact.pk) == "sent"
    (envelope,) = smtp_server
    assert envelope.rcpt_tos == ["duty@csirt.example"]
    mail = message_from_bytes(envelope.content)
    body = mail.get_payload(decode=True).decode()
    assert mail["Subject"].startswith("Confirme sus datos de contacto")  # in the contact's language
    link = re.search(r"https?://\S+/directory/confirm/(\S+)/", body)
    assert link, body
    path = link.group(0).split(settings.MINGA_PUBLIC_URL, 1)[1]
    page = Client().get(path)
    assert page.status_code == 200 and b"Duty officer" in page.content
    assert Client().post(path).status_code == 200
    contact.refresh_from_db()
    assert not contact.is_stale
    assert AuditEntry.objects.filter(action="contact.confirm", details__via="link").exists()


def test_the_daily_schedule_asks_stale_contacts_and_not_every_day(team, settings):
    org, boss = team
    settings.MINGA_CONTACT_STALE_DAYS, settings.MINGA_CONTACT_REMINDER_DAYS = 180, 14
    never = services.save_contact(boss, org, **duty(email="never@csirt.example"))
    old = services.save_contact(boss, org, **duty(email="old@csirt.example"))
    fresh = services.save_contact(boss, org, **duty(email="fresh@csirt.example"))
    services.confirm_contact(fresh, actor=boss)
    PointOfContact.objects.filter(pk=old.pk).update(last_verified_at=timezone.now() - timedelta(days=181))

    assert request_stale_confirmations.call() == "asked 2 stale contacts to confirm"
    asked = AuditEntry.objects.filter(action="contact.confirmation_requested", details__via="schedule")
    assert {e.object_id for e in asked} == {str(never.pk), str(old.pk)}
    outbox = DBTaskResult.objects.filter(task_path=send_confirmation_request.module_path)
    assert sorted(r.args_kwargs["args"][0] for r in outbox) == sorted([never.pk, old.pk])

    assert request_stale_confirmations.call() == "asked 0 stale contacts to confirm"  # the next day
    PointOfContact.objects.filter(pk=never.pk).update(
        confirmation_requested_at=timezone.now() - timedelta(days=15)
    )
    assert request_stale_confirmations.call() == "asked 1 stale contacts to confirm"  # two weeks on


def test_links_expire_and_die_with_an_address_change(team):
    org, boss = team
    contact = services.save_contact(boss, org, **duty())
    token = contacts.confirmation_token(contact)
    assert contacts.contact_for_token(token) == contact
    assert contacts.contact_for_token(token + "x") is None
    services.save_contact(boss, org, contact, **duty(email="new@csirt.example"))
    assert contacts.contact_for_token(token) is None
    assert Client().get(f"/directory/confirm/{token}/").status_code == 404


def test_the_coordinator_sees_stale_contacts_and_uncovered_states(team, node_admin, login_client):
    org, boss = team
    fresh = services.save_contact(boss, org, **duty())
    services.confirm_contact(fresh, actor=boss, via="admin")
    old = services.save_contact(boss, org, **duty(role="technical", name="Old tech", email="t@csirt.example"))
    PointOfContact.objects.filter(pk=old.pk).update(last_verified_at=timezone.now() - timedelta(days=400))
    page = login_client(node_admin).get("/directory/coordination/")
    assert page.status_code == 200
    assert b"Old tech" in page.content and b"Duty officer" not in page.content
    uncovered = page.content.decode().split("Stale contacts")[0]
    assert "Uruguay" not in uncovered and "Argentina" in uncovered
    assert login_client(boss).get("/directory/coordination/").status_code == 403
    assert (
        Client().get("/api/v1/directory/stale-contacts", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )


def test_contact_pages(team, login_client):
    _org, boss = team
    client = login_client(boss)
    response = client.post(
        "/directory/organisations/csirt-uy/contacts/",
        {
            "role": "duty",
            "name": "Night shift",
            "email": "night@csirt.example",
            "phone_numbers": "+598 2 915 1234\n12",
            "languages": "es",
            "hours": "24/7",
            "time_zone": "UTC",
        },
        follow=True,
    )
    assert b"not a valid international number" in response.content
    assert not PointOfContact.objects.exists()
    response = client.post(
        "/directory/organisations/csirt-uy/contacts/",
        {
            "role": "duty",
            "name": "Night shift",
            "email": "night@csirt.example",
            "phone_numbers": "+598 2 915 1234",
            "languages": "es",
            "hours": "24/7",
            "time_zone": "UTC",
        },
        follow=True,
    )
    assert b"Night shift" in response.content and b"+59829151234" in response.content
    contact = PointOfContact.objects.get()
    client.post(f"/directory/contacts/{contact.pk}/", {"action": "confirm"})
    contact.refresh_from_db()
    assert contact.last_verified_at is not None
    client.post(f"/directory/contacts/{contact.pk}/", {"action": "remove"})
    assert not PointOfContact.objects.exists()
    assert User.objects.filter(username="boss").exists()


def test_resolution_names_whom_to_call(team, bearer, make_org, make_user):
    org, boss = team
    services.save_contact(boss, org, **duty())
    services.add_constituency(boss, org, ["8.8.8.0/24"])
    member = make_user("member", make_org("other"))
    answer = (
        Client()
        .post(
            "/api/v1/directory/resolve",
            {"ips": ["8.8.8.8"]},
            content_type="application/json",
            headers=bearer(member),
        )
        .json()
    )
    (owner,) = answer["ips"][0]["owners"]
    assert owner["duty_contacts"] == [
        {"name": "Duty officer", "email": "duty@csirt.example", "phone_numbers": ["+59829151234"]}
    ]


def test_security_txt_follows_rfc_9116(team, settings, make_org, make_user, login_client):
    org, boss = team
    assert Client().get("/.well-known/security.txt").status_code == 404  # no node organisation named
    settings.MINGA_NODE_ORGANISATION = "csirt-uy"
    before_contacts = Client().get("/.well-known/security.txt").content.decode()
    assert "Contact: mailto:boss@example.org" in before_contacts  # admins until it has contacts
    services.save_contact(boss, org, **duty(languages=["es", "en"]))
    services.save_contact(boss, org, **duty(role="technical", name="Tech", email="tech@csirt.example"))
    services.save_contact(boss, org, **duty(role="legal", name="Lawyer", email="legal@csirt.example"))
    response = Client().get("/.well-known/security.txt")
    assert response["Content-Type"].startswith("text/plain")
    fields = [
        line.split(": ", 1) for line in response.content.decode().splitlines() if not line.startswith("#")
    ]
    assert [value for name, value in fields if name == "Contact"] == [
        "mailto:duty@csirt.example",
        "mailto:tech@csirt.example",
    ]
    (expires,) = [value for name, value in fields if name == "Expires"]
    assert (
        timezone.now()
        < timezone.datetime.fromisoformat(expires.replace("Z", "+00:00"))
        < (timezone.now() + timedelta(days=366))
    )
    assert ("Preferred-Languages", "es, en") in [tuple(f) for f in fields]
    assert ("Canonical", f"{settings.MINGA_PUBLIC_URL}/.well-known/security.txt") in [
        tuple(f) for f in fields
    ]
    assert "Duty officer" not in response.content.decode() and "+598" not in response.content.decode()
    page = login_client(make_user("member", make_org("other"))).get(
        "/directory/organisations/csirt-uy/security.txt"
    )
    assert page.status_code == 200 and b"mailto:duty@csirt.example" in page.content
    assert Client().get("/directory/organisations/csirt-uy/security.txt").status_code == 302


def test_rfc2350_document_combines_the_team_text_with_the_directory(team, make_org, make_user, login_client):
    org, boss = team
    services.save_contact(boss, org, **duty(pgp_key=(KEYS / "ed25519-test-key.asc").read_text()))
    services.add_constituency(boss, org, ["8.8.8.0/24", "AS15169"])
    client = login_client(boss)
    saved = client.post(
        "/directory/organisations/csirt-uy/team/",
        {
            "mission": "Coordinate the response to incidents affecting Uruguay's networks.",
            "services": "Incident response; vulnerability coordination.",
            "hours": "24/7",
        },
    )
    assert saved.status_code == 302
    (entry,) = AuditEntry.objects.filter(action="team_profile.update")
    assert set(entry.details["sections"]) == {"mission", "services", "hours"}
    text = client.get("/directory/organisations/csirt-uy/rfc2350.txt").content.decode()
    for expected in (
        "Description of Organisation csirt-uy according to RFC 2350",
        "3.1 Mission Statement",
        "    Coordinate the response to incidents affecting",
        "    8.8.8.0/24",
        "    AS15169",
        f"duty@csirt.example: OpenPGP {ED25519_FPR}",
        "    +59829151234 (24/7 duty)",
        "7. Disclaimers\n    Not published.",
    ):
        assert expected in text, expected
    member = make_user("member", make_org("other"))
    assert (
        login_client(member).post("/directory/organisations/csirt-uy/team/", {"mission": "x"}).status_code
        == 403
    )
    guest = make_user("guest", make_org("guest-org", member=False))
    assert login_client(guest).get("/directory/organisations/csirt-uy/rfc2350.txt").status_code == 403
