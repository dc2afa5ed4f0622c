"""A law-enforcement liaison in Peru asks Chile, in chromium, to preserve logs as an emergency;
Chile's analyst acknowledges it, answers on the thread with a file, and the network coordinator
sees the request's clock on the SLA view without its content."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from minga.assistance.models import AssistanceRequest
from minga.core.choices import Role
from minga.core.models import Organisation, User
from minga.directory import services as directory
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState

pytestmark = [pytest.mark.browser]


def _national_csirt(make_org: Callable[..., Organisation], short_name: str, code: str) -> Organisation:
    org = make_org(short_name)
    directory.update_profile(
        None, org, kind=OrganisationKind.NATIONAL_CSIRT, state=MemberState.objects.get(code=code), sectors=[]
    )
    contact = directory.save_contact(
        None,
        org,
        role="duty",
        name=f"{short_name} duty desk",
        email=f"duty@{short_name}.example.org",
        phone_numbers=[],
        languages=["es"],
        hours="24/7",
        time_zone="UTC",
    )
    directory.confirm_contact(contact, via="test")
    return org


def test_a_liaison_asks_another_state_and_its_csirt_answers(
    live_server: Any,
    browser: Any,
    page: Any,
    login: Callable[..., None],
    make_org: Callable[..., Organisation],
    make_user: Callable[..., User],
    node_admin: User,
    save_doc_screenshot: Callable[[Any, str], None],
    tmp_path: Any,
) -> None:
    peru = _national_csirt(make_org, "demo-csirt-peru", "PE")
    _national_csirt(make_org, "demo-csirt-chile", "CL")
    make_user("liaison", peru, Role.LIAISON)
    responder = make_user("responder", Organisation.objects.get(short_name="demo-csirt-chile"))
    responder.time_zone = "America/Santiago"
    responder.save(update_fields=["time_zone"])

    login(page, "liaison")
    page.get_by_role("link", name="Requests").click()
    page.get_by_role("button", name="New request").click()
    page.get_by_label("Requested state").select_option(label="Chile")
    page.get_by_label("Kind").select_option("preservation")
    page.get_by_label("Priority").select_option("emergency")
    page.get_by_label("Subject").fill("Preserve the logs of a ransomware command server")
    page.get_by_label("Description").fill("Connection logs of 198.18.4.7, 1 to 3 December, for 90 days.")
    page.get_by_label("Legal basis").fill("Budapest Convention on Cybercrime, art. 29")
    page.get_by_role("button", name="Submit the request").click()
    main = page.locator("main")
    expect(main).to_contain_text("submitted; the 24/7 desk of")
    request = AssistanceRequest.objects.get()
    expect(page.get_by_role("heading", level=1)).to_contain_text(request.reference)
    expect(main).to_contain_text("left")

    other = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    chile = other.new_page()
    login(chile, "responder")
    chile.goto(f"{live_server.url}/assistance/")
    chile.get_by_role("link", name=request.reference).click()
    expect(chile.locator("main")).to_contain_text("America/Santiago")
    chile.get_by_role("button", name="Acknowledge").click()
    expect(chile.locator("main")).to_contain_text("Request acknowledged")
    chile.get_by_role("button", name="Start work").click()
    chile.get_by_label("Message").fill("The hosting provider confirms the logs are preserved; copy attached.")
    chile.get_by_role("button", name="Send the message").click()
    expect(chile.locator("main")).to_contain_text("Message added")
    note = tmp_path / "preservation-order.txt"
    note.write_text("Logs of 198.18.4.7 preserved until 2027-03-01.\n")
    chile.get_by_label("Attach a file").set_input_files(str(note))
    chile.get_by_role("button", name="Attach", exact=True).click()
    expect(chile.locator("main")).to_contain_text("File attached")
    other.close()

    page.reload()
    expect(main).to_contain_text("logs are preserved")
    expect(main).to_contain_text("preservation-order.txt")
    expect(main).to_contain_text("In progress")
    save_doc_screenshot(page, "assistance-request.png")

    coordinator = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    desk = coordinator.new_page()
    login(desk, node_admin.username)
    desk.get_by_role("link", name="SLA view").click()
    expect(desk.locator("main")).to_contain_text(request.reference)
    expect(desk.locator("main")).to_contain_text("Compliance per requested state")
    expect(desk.locator("main")).not_to_contain_text("ransomware command server")
    coordinator.close()
