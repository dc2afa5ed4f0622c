"""A duty officer opens a cross-border incident in chromium, lets Minga propose the national
CSIRTs that answer for its observables, adds one, and the other team acknowledges it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from minga.core.models import Organisation, User
from minga.directory import services as directory
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState
from minga.incidents.models import Incident

pytestmark = [pytest.mark.browser]


def _national_csirt(
    make_org: Callable[..., Organisation], short_name: str, code: str, entries: list[str]
) -> Organisation:
    org = make_org(short_name)
    directory.update_profile(
        None, org, kind=OrganisationKind.NATIONAL_CSIRT, state=MemberState.objects.get(code=code), sectors=[]
    )
    directory.add_constituency(None, org, entries)
    return org


def test_duty_officer_coordinates_an_incident_and_a_participant_acknowledges(
    live_server: Any,
    browser: Any,
    page: Any,
    login: Callable[..., None],
    make_org: Callable[..., Organisation],
    make_user: Callable[..., User],
    save_doc_screenshot: Callable[[Any, str], None],
) -> None:
    peru = _national_csirt(make_org, "demo-csirt-peru", "PE", ["198.18.0.0/22"])
    brazil = _national_csirt(make_org, "demo-csirt-brasil", "BR", ["198.18.8.0/22", "br.demo.example"])
    jamaica = _national_csirt(make_org, "demo-csirt-jamaica", "JM", ["198.18.12.0/22"])
    make_user("officer", peru)
    make_user("responder", brazil)

    login(page, "officer")
    page.get_by_role("link", name="Incident board").click()
    page.get_by_role("button", name="Open an incident").click()
    page.get_by_label("Title").fill("Ransomware in a hospital network")
    page.get_by_label("Classification (RSIT type)").select_option("system-compromise")
    page.get_by_label("Severity").select_option("critical")
    page.get_by_label("Observables").fill("198.18.0.40\nc2.br.demo.example\n198.18.12.66")
    page.get_by_role("button", name="Open the incident").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("MNG-")
    incident = Incident.objects.get()
    expect(page.get_by_role("heading", level=1)).to_contain_text(incident.reference)

    page.get_by_role("button", name="Propose participants from the observables").click()
    main = page.locator("main")
    expect(main).to_contain_text("2 organisation(s) proposed")
    expect(main).to_contain_text(jamaica.name)
    brazil_row = main.get_by_role("row").filter(has_text=brazil.name)
    brazil_row.get_by_role("button", name="Add").click()
    expect(main).to_contain_text("Participant added")

    other = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    responder = other.new_page()
    login(responder, "responder")
    responder.goto(f"{live_server.url}/incidents/")
    responder.get_by_role("link", name=incident.reference).first.click()
    responder.get_by_role("button", name="Acknowledge").click()
    expect(responder.locator("main")).to_contain_text("Answer recorded")
    responder.get_by_role("textbox", name="Comment").fill(
        "The command server is in our constituency; we are on it."
    )
    responder.locator("main").get_by_role("button", name="Comment").click()
    other.close()

    page.reload()
    expect(brazil_row).to_contain_text("Acknowledged")
    expect(main).to_contain_text("we are on it")
    save_doc_screenshot(page, "incident.png")

    # The PDF summary downloads; the metrics page measures what the officer may read.
    with page.expect_download() as download:
        page.get_by_role("button", name="PDF summary").click()
    assert download.value.suggested_filename == f"{incident.reference}.pdf"
    page.get_by_role("link", name="Incident board").click()
    page.get_by_role("link", name="Metrics").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Incident metrics")
    table = page.locator("main table")
    expect(table).to_contain_text("Critical")
    expect(table).to_contain_text("1")
    save_doc_screenshot(page, "incident-metrics.png")
