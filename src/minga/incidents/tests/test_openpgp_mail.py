"""E-mail to a 24/7 contact with an OpenPGP key goes encrypted (PGP/MIME), through a real SMTP
server; the test holds the private key, decrypts what arrived and reads it."""

from __future__ import annotations

import warnings
from email import message_from_bytes, message_from_string
from pathlib import Path

import pgpy
import pytest
from pgpy.constants import (
    CompressionAlgorithm,
    EllipticCurveOID,
    HashAlgorithm,
    KeyFlags,
    PubKeyAlgorithm,
    SymmetricKeyAlgorithm,
)

from minga.core.choices import TLP
from minga.core.models import AuditEntry
from minga.directory import openpgp
from minga.directory import services as directory
from minga.incidents import services, tasks
from minga.incidents.choices import Channel
from minga.incidents.models import Notification

pytestmark = pytest.mark.django_db

SIGN_ONLY_KEY = Path(__file__).parents[2] / "directory" / "tests" / "data" / "rsa-test-key.asc"


@pytest.fixture(scope="module")
def desk_key() -> pgpy.PGPKey:
    """A fresh key pair for the Chilean desk: Ed25519 to certify, Curve25519 to encrypt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = pgpy.PGPKey.new(PubKeyAlgorithm.EdDSA, EllipticCurveOID.Ed25519)
        key.add_uid(
            pgpy.PGPUID.new("CSIRT Chile duty desk", email="duty@csirt-cl.example.org"),
            usage={KeyFlags.Sign, KeyFlags.Certify},
            hashes=[HashAlgorithm.SHA256],
            ciphers=[SymmetricKeyAlgorithm.AES256],
            compression=[CompressionAlgorithm.Uncompressed],
        )
        key.add_subkey(
            pgpy.PGPKey.new(PubKeyAlgorithm.ECDH, EllipticCurveOID.Curve25519),
            usage={KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage},
        )
    return key


def _contact(network, email, key=""):
    directory.save_contact(
        None,
        network.cl,
        role="duty",
        name=email,
        email=email,
        phone_numbers=[],
        languages=["en"],
        hours="24/7",
        time_zone="UTC",
        pgp_key=key,
    )


def _decrypt(key: pgpy.PGPKey, armoured: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(key.decrypt(pgpy.PGPMessage.from_blob(armoured)).message)


def test_the_desk_with_a_key_gets_it_encrypted_the_others_in_clear(
    open_incident, network, smtp_server, desk_key
):
    network.cl.contacts.all().delete()
    _contact(network, "duty@csirt-cl.example.org", str(desk_key.pubkey))
    _contact(network, "night@csirt-cl.example.org")  # no key
    _contact(network, "signer@csirt-cl.example.org", SIGN_ONLY_KEY.read_text())  # cannot encrypt
    assert openpgp.can_encrypt(str(desk_key.pubkey)) and not openpgp.can_encrypt(SIGN_ONLY_KEY.read_text())
    incident = open_incident(title="Ransomware at Hospital San José")
    services.add_participant(network.ana, incident, network.cl)
    mail = Notification.objects.get(channel=Channel.EMAIL)
    assert tasks.deliver_notification.call(mail.pk) == "sent to 3 address(es), 1 encrypted"
    by_rcpt = {tuple(e.rcpt_tos): message_from_bytes(e.content) for e in smtp_server}
    sealed = by_rcpt[("duty@csirt-cl.example.org",)]
    assert sealed.get_content_type() == "multipart/encrypted"
    assert sealed.get_param("protocol") == "application/pgp-encrypted"
    control, data = sealed.get_payload()
    assert control.get_content_type() == "application/pgp-encrypted" and "Version: 1" in control.get_payload()
    armoured = data.get_payload()
    assert armoured.startswith("-----BEGIN PGP MESSAGE-----")
    raw = sealed.as_string()
    assert "San José" not in raw and "Severity" not in raw  # nothing readable on the way
    assert incident.reference in sealed["Subject"]  # the subject travels in clear
    inner = message_from_string(_decrypt(desk_key, armoured))
    text = inner.get_payload(decode=True).decode(inner.get_content_charset())
    assert f"Reference: {incident.reference}" in text and "Title: Ransomware at Hospital San José" in text
    assert f"/incidents/{incident.reference}/" in text
    clear = by_rcpt[("night@csirt-cl.example.org", "signer@csirt-cl.example.org")]
    plain = clear.get_payload(decode=True).decode()
    assert incident.reference in plain and "San José" not in plain
    delivered = AuditEntry.objects.get(action="incident.notification_delivered")
    assert delivered.details["encrypted"] == ["duty@csirt-cl.example.org"]


def test_a_red_incident_is_not_named_even_encrypted(open_incident, network, smtp_server, desk_key):
    network.cl.contacts.all().delete()
    _contact(network, "duty@csirt-cl.example.org", str(desk_key.pubkey))
    incident = open_incident(title="Named people only", tlp=TLP.RED)
    services.add_participant(network.ana, incident, network.cl)
    tasks.deliver_notification.call(Notification.objects.get(channel=Channel.EMAIL).pk)
    (envelope,) = smtp_server
    _control, data = message_from_bytes(envelope.content).get_payload()
    inner = message_from_string(_decrypt(desk_key, data.get_payload()))
    text = inner.get_payload(decode=True).decode()
    assert incident.reference in text and "Named people only" not in text
