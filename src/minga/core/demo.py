"""The demo network: fictional organisations and people, so a newcomer sees a living node.

Everything here is labelled as demo data (names end in "(demo)", short names start with
"demo-"). Loading is idempotent: running it twice changes nothing.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from minga.core import services
from minga.core.choices import Role
from minga.core.models import Organisation, User

ORGANISATIONS = [
    ("Hemisphere Network Hub (demo)", "demo-hub"),
    ("CSIRT Andina (demo)", "demo-csirt-andina"),
    ("CERT Caribe (demo)", "demo-cert-caribe"),
    ("Southern Cybercrime Police Unit (demo)", "demo-police-sur"),
    ("Northern Power Grid Operator (demo)", "demo-grid-norte"),
]
USERS = [
    ("demo-admin", "demo-hub", Role.NODE_ADMIN, "Ada", "Admin"),
    ("demo-coordinator", "demo-hub", Role.ORG_ADMIN, "Carmen", "Coordinator"),
    ("demo-analyst", "demo-csirt-andina", Role.ANALYST, "Andrés", "Analyst"),
    ("demo-caribe", "demo-cert-caribe", Role.ORG_ADMIN, "Camille", "Caribe"),
    ("demo-liaison", "demo-police-sur", Role.LIAISON, "Luiz", "Liaison"),
    ("demo-operator", "demo-grid-norte", Role.READ_ONLY, "Olivia", "Operator"),
]


DEMO_PREFIX = "demo-"


def is_demo_organisation(organisation: Organisation) -> bool:
    """Demo organisations are known by their short name, which only the demo loader gives out
    in a fresh node; they hold demo data only (e.g. documentation ranges as constituency)."""
    return organisation.short_name.startswith(DEMO_PREFIX)


@dataclass(frozen=True)
class DemoCredentials:
    username: str
    password: str


def _credentials_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-credentials.txt"


def _new_password() -> str:
    """A random password that the node's password rules accept for every demo account: a random
    one is now and then 'too similar' to a demo user name or address, so draw again."""
    people = [
        User(username=u[0], email=f"{u[0]}@example.org", first_name=u[3], last_name=u[4]) for u in USERS
    ]
    while True:
        password = "demo-" + secrets.token_urlsafe(12)
        try:
            for person in people:
                validate_password(password, person)
        except ValidationError:
            continue
        return password


def demo_password() -> str:
    """The demo accounts' password: MINGA_DEMO_PASSWORD, else one generated at the first load
    and kept (readable only by the operator) beside the database."""
    configured = os.environ.get("MINGA_DEMO_PASSWORD", "")
    if configured:
        return configured
    path = _credentials_file()
    if path.exists():
        return path.read_text().strip()
    password = _new_password()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


@transaction.atomic
def load() -> DemoCredentials:
    password = demo_password()
    organisations = {}
    for name, short_name in ORGANISATIONS:
        organisation = Organisation.objects.filter(short_name=short_name).first()
        if organisation is None:
            organisation = services.create_organisation(None, name=name, short_name=short_name)
        organisations[short_name] = organisation
    for username, short_name, role, first, last in USERS:
        if not User.objects.filter(username=username).exists():
            services.create_user(
                None,
                username=username,
                email=f"{username}@example.org",
                password=password,
                organisation=organisations[short_name],
                role=role,
                first_name=first,
                last_name=last,
            )
    return DemoCredentials(username="demo-admin", password=password)
