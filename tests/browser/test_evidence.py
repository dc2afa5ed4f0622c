"""A law-enforcement liaison registers a packet capture as evidence of an incident in chromium,
hands it to the forensic lab of another state's CSIRT, and the lab downloads it: each step is a
line of the chain of custody, read from the audit log."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from minga.core.choices import Role
from minga.core.models import Organisation, User
from minga.incidents import services
from minga.incidents.models import Evidence

pytestmark = [pytest.mark.browser]

CAPTURE = b"\xd4\xc3\xb2\xa1" + b"TLS client hello to c2.br.demo.example " * 500


def test_a_liaison_registers_evidence_and_hands_it_to_a_lab(
    live_server: Any,
    browser: Any,
    page: Any,
    login: Callable[..., None],
    make_org: Callable[..., Organisation],
    make_user: Callable[..., User],
    save_doc_screenshot: Callable[[Any, str], None],
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.VAR_DIR = tmp_path
    peru, brazil = make_org("demo-csirt-peru"), make_org("demo-csirt-brasil")
    liaison = make_user("liaison", peru, Role.LIAISON, first_name="Lucía", last_name="Quispe")
    make_user("lab", brazil)
    incident = services.open_incident(
        liaison, peru, title="Ransomware in a hospital network", type="system-compromise"
    )
    services.add_participant(liaison, incident, brazil)

    login(page, "liaison")
    page.goto(f"{live_server.url}/incidents/{incident.reference}/")
    main = page.locator("main")
    expect(main).to_contain_text("No evidence registered.")
    page.get_by_role("button", name="Register evidence").click()
    page.get_by_label("File").set_input_files(
        {"name": "hospital-edge.pcap", "mimeType": "application/vnd.tcpdump.pcap", "buffer": CAPTURE}
    )
    page.get_by_label("Title").fill("Traffic from the hospital's edge router to the C2 server")
    page.get_by_label("Acquired by").fill("Lucía Quispe")
    page.get_by_label("Source").fill("edge router, Hospital Central")
    page.get_by_label("Why it is registered").fill("seized under prosecutor's order 2026-118")
    page.get_by_role("button", name="Register").click()
    sha256 = hashlib.sha256(CAPTURE).hexdigest()
    expect(main).to_contain_text(sha256)
    expect(main).to_contain_text("Registered")

    page.get_by_label("What happened").select_option("transferred")
    page.get_by_label("To (organisation)").fill(brazil.short_name)
    page.get_by_label("To (person)").fill("Forensic lab, CSIRT Brasil")
    page.get_by_label("Why").fill("analysis of the TLS sessions")
    page.get_by_role("button", name="Record").click()
    expect(main).to_contain_text("Custody recorded.")

    other = browser.new_context(
        locale="en-US", viewport={"width": 1280, "height": 800}, accept_downloads=True
    )
    lab = other.new_page()
    login(lab, "lab")
    lab.goto(f"{live_server.url}/incidents/{incident.reference}/")
    lab.get_by_role("link", name="Traffic from the hospital's edge router").click()
    with lab.expect_download() as download_info:
        lab.get_by_role("button", name="Download").click()
    download = download_info.value
    assert download.suggested_filename == "hospital-edge.pcap"
    assert Path(download.path()).read_bytes() == CAPTURE
    lab.get_by_role("button", name="Hash the stored file again").click()
    expect(lab.locator("main")).to_contain_text("The stored file matches its SHA-256.")
    other.close()

    page.reload()
    rows = main.locator("table").first.get_by_role("row")
    expect(rows).to_have_count(5)  # the header and four lines: registered, transferred, downloaded, verified
    expect(main).to_contain_text("Forensic lab, CSIRT Brasil")
    expect(main).to_contain_text("Downloaded")
    evidence = Evidence.objects.get()
    assert evidence.custodian_organisation == brazil
    save_doc_screenshot(page, "evidence.png")
