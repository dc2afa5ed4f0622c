"""A node admin registers a peer node in chromium, copies the token for the peer's operator
(shown once), and watches the peers' sync state: one peer in step, one failing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from minga.core.models import AuditEntry, Organisation, User
from minga.taxii import federation
from minga.taxii.models import Peer

pytestmark = [pytest.mark.browser]


def test_node_admin_adds_a_peer_and_sees_its_token_once(
    live_server: Any,
    page: Any,
    login: Callable[..., None],
    make_org: Callable[..., Organisation],
    node_admin: User,
    settings: Any,
    save_doc_screenshot: Callable[[Any, str], None],
) -> None:
    settings.MINGA_NODE_ID = "demo-hub"
    make_org("demo-cert-ar")
    make_org("demo-csirt-cl")
    in_step = federation.add_peer(
        None, name="demo-cert-ar", url="https://cert-ar.demo.example/taxii2/api/", hosts=["demo-cert-ar"]
    ).peer
    federation.set_credential(None, in_step, "mng_token-cert-ar-issued-for-this-node")
    now = timezone.now()
    Peer.objects.filter(pk=in_step.pk).update(
        last_success_at=now - timedelta(minutes=2),
        last_attempt_at=now - timedelta(minutes=2),
        next_attempt_at=now + timedelta(minutes=3),
        pulled=18_240,
        pushed=9_731,
        rejected=4,
    )

    login(page, node_admin.username)
    page.get_by_role("link", name="Peers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Peers")
    page.get_by_label("Name", exact=True).fill("demo-csirt-cl")
    page.get_by_label("TAXII API root URL").fill("http://127.0.0.1:9/taxii2/api/")
    page.get_by_label("Organisations it hosts").fill("demo-csirt-cl")
    page.get_by_role("button", name="Add the peer").click()

    token = page.get_by_test_id("new-token")
    expect(token).to_contain_text("mng_")
    shown = token.inner_text().strip()
    expect(page.locator("main")).to_contain_text("shown only once")
    peer = Peer.objects.get(name="demo-csirt-cl")
    assert AuditEntry.objects.filter(action="federation.peer_added", object_id=str(peer.pk)).exists()

    # The peer is down: its sync fails and is retried later; the page says so.
    assert federation.sync(peer).error
    page.get_by_role("link", name="Peers").click()
    main = page.locator("main")
    expect(main).not_to_contain_text(shown)  # shown once, never again
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    failing = main.get_by_role("row").filter(has_text="demo-csirt-cl")
    expect(failing).to_contain_text("failing")
    expect(failing).to_contain_text("1 failure in a row")
    in_step_row = main.get_by_role("row").filter(has_text="demo-cert-ar")
    expect(in_step_row).to_contain_text("ok")
    expect(in_step_row).to_contain_text("18240 / 9731 / 4")
    expect(in_step_row).to_contain_text("lag 2\xa0minutes")

    in_step_row.get_by_role("button", name="Sync now").click()
    expect(page.locator("main")).to_contain_text("Sync of demo-cert-ar queued.")
    save_doc_screenshot(page, "federation-peers.png")
