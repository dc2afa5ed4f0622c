"""The TAXII stories' cast: CSIRT Andina shares intelligence, CERT Caribe is named on some of it,
and an outsider organisation is named on none; each person holds an API token."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from minga.core import services as core_services
from minga.core.choices import TLP, Role
from minga.core.models import Organisation, User
from minga.intel import services as intel_services
from minga.intel.tests.bundles import bundle
from minga.taxii import services

MEDIA = services.MEDIA_TAXII


@dataclass
class Person:
    user: User
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token}", "HTTP_ACCEPT": MEDIA}


@dataclass
class Cast:
    andina: Organisation
    caribe: Organisation
    outside: Organisation
    ana: Person  # analyst of Andina
    carlos: Person  # analyst of Caribe
    olga: Person  # analyst of the outsider organisation
    rita: Person  # read-only member of Andina


@pytest.fixture
def cast(make_org: Callable[..., Organisation], make_user: Callable[..., User]) -> Cast:
    andina, caribe, outside = make_org("andina"), make_org("caribe"), make_org("outside", member=False)

    def person(name: str, org: Organisation, role: str = Role.ANALYST) -> Person:
        user = make_user(name, org, role)
        return Person(user, core_services.create_api_token(None, user, name="taxii").raw)

    return Cast(
        andina,
        caribe,
        outside,
        person("ana", andina),
        person("carlos", caribe),
        person("olga", outside),
        person("rita", andina, Role.READ_ONLY),
    )


def store(
    org: Organisation,
    *objects: dict[str, Any],
    tlp: str = TLP.AMBER,
    recipients: tuple[Organisation, ...] = (),
) -> None:
    """Objects shared by ``org`` (imported by the operator), as the intel store holds them."""
    result = intel_services.import_bundle(
        None, org, io.BytesIO(json.dumps(bundle(*objects)).encode()), tlp, recipients
    )
    assert result.rejected == 0, result.rejections


def inbox_url(org: Organisation) -> str:
    return f"/taxii2/api/collections/{services.inbox_id(org)}/"


READABLE_URL = f"/taxii2/api/collections/{services.READABLE_ID}/"


def get(client: Client, person: Person, url: str, **params: Any) -> Any:
    return client.get(url, params, **person.headers)


def validate_stix(objects: list[dict[str, Any]]) -> None:
    """Every object the server emits passes the OASIS validator."""
    from stix2validator import ValidationOptions, validate_instance

    for obj in objects:
        outcome = validate_instance(obj, ValidationOptions())
        assert outcome.is_valid, (obj, [str(e) for e in outcome.errors])
