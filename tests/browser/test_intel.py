"""An analyst imports a STIX bundle in chromium as TLP:AMBER for named partners, watches the
import finish, and opens an indicator: its TLP, recipients, correlations and sightings."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.intel import services
from minga.intel.models import ImportJob
from minga.intel.tests.bundles import bundle, indicator, sco, sighting, stream

pytestmark = [pytest.mark.browser]


def test_analyst_imports_a_bundle_and_sees_correlations_and_sightings(
    live_server: Any,
    page: Any,
    login: Callable[..., None],
    make_org: Callable[..., Organisation],
    make_user: Callable[..., User],
    tmp_path: Any,
    save_doc_screenshot: Callable[[Any, str], None],
) -> None:
    team = make_org("csirt-andes")
    partners = [make_org("csirt-rio"), make_org("csirt-pampa"), make_org("csirt-selva")]
    make_user("analyst", team)
    # A partner already shared what its sensors saw of the same address, with this team.
    partner_user = make_user("partner", partners[0])
    services.import_bundle(
        partner_user, partners[0], stream(sco("ipv4-addr", "198.51.100.23")), TLP.AMBER, [team]
    )
    c2 = indicator("198.51.100.23/32", name="Command server of the demo worm")
    path = tmp_path / "worm.json"
    path.write_text(
        json.dumps(bundle(c2, sighting(c2["id"], 5, "2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z")))
    )

    login(page, "analyst")
    page.get_by_role("link", name="Imports").click()
    page.get_by_label("File", exact=True).set_input_files(str(path))
    page.get_by_label("TLP").select_option("amber")
    page.get_by_label("Recipient organisations").select_option([str(p.pk) for p in partners])
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", name="Import worm.json")).to_be_visible()
    services.run_import_job(ImportJob.objects.get().pk)  # what the worker does
    page.reload()
    expect(page.locator("main")).to_contain_text("Done")
    # At once, the import's page says what the partner shared of the same address, and how
    # often the imported indicator was sighted.
    found = page.locator("section", has=page.get_by_role("heading", name="Correlations"))
    expect(found).to_contain_text("1 of the 2 imported objects you may read shares an observable")
    expect(found.get_by_role("link", name="198.51.100.23")).to_be_visible()
    expect(found).to_contain_text(partners[0].name)
    expect(found).to_contain_text("1 imported object was sighted")
    expect(found.get_by_role("row", name="Command server of the demo worm 1 5")).to_be_visible()
    save_doc_screenshot(page, "intel-import-correlations.png")

    page.get_by_role("link", name="STIX objects").click()
    page.get_by_role("link", name="Command server of the demo worm").click()
    main = page.locator("main")
    expect(main).to_contain_text("TLP:AMBER")
    for partner in partners:
        expect(main).to_contain_text(partner.name)
    expect(main).to_contain_text("198.51.100.23")
    expect(main.get_by_role("link", name="198.51.100.23").first).to_be_visible()
    expect(main).to_contain_text("Sighted 5 times")
    save_doc_screenshot(page, "intel-object.png")


def test_analyst_imports_a_csv_of_indicators_with_a_column_mapping(
    live_server: Any,
    page: Any,
    login: Callable[..., None],
    make_org: Callable[..., Organisation],
    make_user: Callable[..., User],
    tmp_path: Any,
    save_doc_screenshot: Callable[[Any, str], None],
) -> None:
    make_user("analyst", make_org("csirt-andes"))
    path = tmp_path / "feed.csv"
    path.write_text(
        "indicator;note\n198.51.100.61;Phishing kit host\nstealer.example;Drop site\n=HYPERLINK(1);\n"
    )

    login(page, "analyst")
    page.get_by_role("link", name="Imports").click()
    page.get_by_label("File", exact=True).set_input_files(str(path))
    page.get_by_label("Format").select_option("csv")
    page.get_by_label("TLP").select_option("green")
    page.get_by_text("CSV column mapping").click()
    page.get_by_label("CSV: value column").fill("indicator")
    page.get_by_label("CSV: description column").fill("note")
    page.get_by_label("CSV: delimiter").select_option(";")
    save_doc_screenshot(page, "intel-import-csv.png")
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", name="Import feed.csv")).to_be_visible()
    services.run_import_job(ImportJob.objects.get().pk)  # what the worker does
    page.reload()
    main = page.locator("main")
    expect(main).to_contain_text("Done")
    expect(main).to_contain_text("CSV indicators")
    expect(main).to_contain_text("line 4: cannot tell what =HYPERLINK(1) is")

    page.get_by_role("link", name="STIX objects", exact=True).click()
    expect(page.locator("main")).to_contain_text("stealer.example")
