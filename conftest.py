"""Shared fixtures: organisations, users and clients, as the stories in the tests need them."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.test import Client
from django.utils import translation

from minga.core import services
from minga.core.choices import Role
from minga.core.models import Organisation, User

PASSWORD = "correct horse battery staple 42"  # noqa: S105  (test accounts only)
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True)
def _english_by_default() -> Any:
    """Each test starts in English: a request through LocaleMiddleware leaves its language
    active in the thread, which would otherwise leak into the next test."""
    translation.activate("en")
    yield
    translation.deactivate()


@pytest.fixture
def reference_data(transactional_db: Any) -> None:
    """The member states and sectors that the directory's data migration seeds, put back: the
    flush after each transactional test (live servers, other nodes, workers) empties those
    tables too (an upsert: a test that finds them there changes nothing)."""
    import importlib

    from django.apps import apps

    importlib.import_module("minga.directory.migrations.0002_seed_states_and_sectors").seed(apps, None)


@pytest.fixture
def make_org(db: Any) -> Callable[..., Organisation]:
    counter = {"n": 0}

    def make(short_name: str | None = None, *, member: bool = True) -> Organisation:
        counter["n"] += 1
        short = short_name or f"org-{counter['n']}"
        return services.create_organisation(
            None, name=f"Organisation {short}", short_name=short, is_network_member=member
        )

    return make


@pytest.fixture
def make_user(db: Any) -> Callable[..., User]:
    def make(username: str, organisation: Organisation, role: str = Role.ANALYST, **extra: Any) -> User:
        return services.create_user(
            None,
            username=username,
            email=f"{username}@example.org",
            password=PASSWORD,
            organisation=organisation,
            role=role,
            **extra,
        )

    return make


@pytest.fixture
def hub(make_org: Callable[..., Organisation]) -> Organisation:
    return make_org("hub")


@pytest.fixture
def node_admin(make_user: Callable[..., User], hub: Organisation) -> User:
    return make_user("admin", hub, Role.NODE_ADMIN)


@pytest.fixture
def login_client() -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def bearer() -> Callable[[User], dict[str, str]]:
    """Headers carrying a fresh API token of ``user``."""

    def make(user: User) -> dict[str, str]:
        issued = services.create_api_token(None, user, name="test")
        return {"Authorization": f"Bearer {issued.raw}"}

    return make


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[list[Any]]:
    """A real SMTP server (aiosmtpd) on a free loopback port, with Django's SMTP back end pointed
    at it; yields the envelopes it received."""
    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    try:
        yield received
    finally:
        controller.stop()
