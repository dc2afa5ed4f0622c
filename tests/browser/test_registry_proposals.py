"""The coordinator seeds constituencies from LACNIC's statistics in chromium: uploads the file,
reads the report, filters by state and accepts a proposal, then asks who answers for it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from minga.core import services as core_services
from minga.core.models import User
from minga.directory import services
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState

pytestmark = [pytest.mark.browser]

SAMPLE = (
    Path(__file__).resolve().parents[2] / "src/minga/directory/tests/data/delegated-lacnic-extended-sample"
)


def test_coordinator_seeds_and_accepts_proposals_from_lacnic_statistics(
    live_server: Any,
    page: Any,
    login: Callable[..., None],
    node_admin: User,
    save_doc_screenshot: Callable[[Any, str], None],
) -> None:
    certuy = core_services.create_organisation(node_admin, name="CERTuy", short_name="certuy")
    services.update_profile(
        node_admin,
        certuy,
        kind=OrganisationKind.NATIONAL_CSIRT,
        state=MemberState.objects.get(code="UY"),
        sectors=[],
    )
    login(page, node_admin.username)
    page.goto(f"{live_server.url}/directory/coordination/")
    page.get_by_role("link", name="Constituencies proposed from registry data").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Constituencies proposed from registry data")

    page.get_by_text("Load a registry file").click()
    page.get_by_label("Format").select_option("delegated")
    page.get_by_label("File", exact=True).set_input_files(str(SAMPLE))
    page.get_by_role("button", name="Load", exact=True).click()
    report = page.get_by_role("article", name="Load report")
    expect(report).to_contain_text("8 proposed.")
    expect(report).to_contain_text("line 16, start: '999.1.2.0' is not an IPv4 address")

    page.get_by_label("State (pending)").select_option("UY")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("164.73.0.0/16")
    expect(rows.first).to_contain_text("National CSIRT of the state")
    save_doc_screenshot(page, "directory-proposals.png")

    rows.first.get_by_role("checkbox").check()
    page.get_by_role("button", name="Accept the chosen").click()
    expect(page.get_by_text("1 proposals accepted.")).to_be_visible()
    page.goto(f"{live_server.url}/directory/?who=164.73.1.1")
    expect(page.locator("main")).to_contain_text("CERTuy")
