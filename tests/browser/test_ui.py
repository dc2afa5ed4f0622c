"""User stories driven through the real UI in chromium: sign-in, languages, API tokens,
organisations and the second factor."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyotp
import pytest
from django.utils import translation
from playwright.sync_api import expect

from minga.core import services
from minga.core.models import Organisation, User

pytestmark = [pytest.mark.browser]

NAVIGATION = ("Organisations", "People", "API tokens")
ROOT = Path(__file__).resolve().parents[2]
LOCALE_DIR = ROOT / "src" / "minga" / "locale"


def _nav(page: Any) -> Any:
    """The sidebar's navigation (by place, not by its name: that is translated too)."""
    return page.get_by_role("complementary").get_by_role("navigation")


def _translations(messages: Iterable[str], code: str) -> dict[str, str]:
    """The node's own translations of ``messages``: the test follows the catalogue's wording.
    Some may equal the English (French "Organisations"), but not all of them."""
    with translation.override(code):
        translated = {message: translation.gettext(message) for message in messages}
    if all(translated[message] == message for message in translated):
        catalogue = LOCALE_DIR / code / "LC_MESSAGES"
        po, mo = catalogue / "django.po", catalogue / "django.mo"
        if not po.exists():
            hint = f"{po.relative_to(ROOT)} does not exist"
        elif not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            hint = f"{mo.relative_to(ROOT)} is missing or older than django.po (run compilemessages)"
        else:
            hint = f"{po.relative_to(ROOT)} does not translate them"
        pytest.fail(f"the {code} UI shows {sorted(translated)} in English: {hint}")
    return translated


def _call_api(url: str, token: str) -> tuple[int, dict[str, Any]]:
    """GET ``url`` with a bearer token and no cookies: only the token can authenticate."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  (the live server)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


# --- (1) sign in ---------------------------------------------------------------------------------


def test_sign_in_lands_on_the_overview(
    live_server: Any,
    page: Any,
    login: Callable[..., None],
    make_user: Callable[..., User],
    save_doc_screenshot: Callable[[Any, str], None],
) -> None:
    andina = services.create_organisation(None, name="CSIRT Andina (demo)", short_name="demo-csirt-andina")
    make_user("ana", andina, first_name="Ana")

    login(page, "ana")

    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ana")
    nav = _nav(page)
    for label in NAVIGATION:
        expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()
    expect(page.locator("main").get_by_role("link", name="CSIRT Andina (demo)")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    save_doc_screenshot(page, "overview.png")


def test_wrong_password_shows_an_error_and_stays_on_the_login_page(
    live_server: Any,
    page: Any,
    login: Callable[..., None],
    make_org: Callable[..., Organisation],
    make_user: Callable[..., User],
) -> None:
    make_user("ana", make_org("csirt-ar"))

    login(page, "ana", "not the password at all")

    expect(page).to_have_url(re.compile(r"/login/"))
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(_nav(page)).to_have_count(0)


# --- (2) languages -------------------------------------------------------------------------------


def test_language_selector_translates_the_navigation(
    live_server: Any,
    page: Any,
    login: Callable[..., None],
    make_org: Callable[..., Organisation],
    make_user: Callable[..., User],
) -> None:
    make_user("ana", make_org("csirt-ar"))
    login(page, "ana")
    nav = _nav(page)
    shown = {  # the English text of each element, and where it is shown
        "Overview": nav.locator("a[href='/']"),
        "Organisations": nav.locator("a[href='/organisations/']"),
        "People": nav.locator("a[href='/users/']"),
        "API tokens": nav.locator("a[href='/account/tokens/']"),
        "Sign out": page.locator("header form[action='/logout/'] button"),
    }
    expect(page.locator("html")).to_have_attribute("lang", "en")
    for message, element in shown.items():
        expect(element).to_have_text(message)

    for code, name in (("es", "Español"), ("pt-br", "Português Brasileiro"), ("fr", "Français")):
        page.locator("#language").select_option(label=name)  # its label is translated too

        expect(page.locator("html")).to_have_attribute("lang", code)
        expect(page).to_have_url(f"{live_server.url}/")  # back where the switch was made
        expect(page.locator("#language")).to_have_value(code)
        expected = _translations(shown, code)
        for message, element in shown.items():
            expect(element).to_have_text(expected[message])


# --- (3) API tokens ------------------------------------------------------------------------------


def test_create_use_and_revoke_an_api_token(
    live_server: Any,
    page: Any,
    login: Callable[..., None],
    make_org: Callable[..., Organisation],
    make_user: Callable[..., User],
) -> None:
    make_user("ana", make_org("csirt-ar"))
    login(page, "ana")
    _nav(page).get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("API tokens")

    page.get_by_label("Name").fill("SIEM pull")
    page.get_by_role("button", name="Create token").click()

    new_token = page.locator("[data-testid=new-token]")
    expect(new_token).to_be_visible()
    raw = new_token.inner_text().strip()
    assert raw.startswith("mng_"), raw
    row = page.locator("tbody tr", has_text="SIEM pull")
    expect(row).to_contain_text("active")

    status, body = _call_api(f"{live_server.url}/api/v1/me", raw)
    assert status == 200, body
    assert body["username"] == "ana"

    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    row.get_by_role("button", name="Revoke").click()

    expect(row).to_contain_text("revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    assert dialogs and "Revoke this token?" in dialogs[0]
    status, body = _call_api(f"{live_server.url}/api/v1/me", raw)
    assert status == 401, body


# --- (4) organisations ---------------------------------------------------------------------------


def test_node_admin_creates_an_organisation_and_searches_the_list(
    live_server: Any,
    page: Any,
    login: Callable[..., None],
    node_admin: User,
    save_doc_screenshot: Callable[[Any, str], None],
) -> None:
    for name, short_name in (
        ("CSIRT Andina (demo)", "demo-csirt-andina"),
        ("CERT Caribe (demo)", "demo-cert-caribe"),
    ):
        services.create_organisation(node_admin, name=name, short_name=short_name)
    login(page, node_admin.username)
    _nav(page).get_by_role("link", name="Organisations").click()
    page.get_by_role("button", name="New organisation").click()  # a link styled as a button
    expect(page.get_by_role("heading", level=1)).to_have_text("New organisation")

    page.get_by_label("Name", exact=True).fill("CSIRT Istmo (demo)")
    page.get_by_label("Short name").fill("demo-csirt-istmo")
    page.locator("main").get_by_role("button", name="Save").click()

    expect(page).to_have_url(f"{live_server.url}/organisations/demo-csirt-istmo/")
    expect(page.get_by_text("Organisation CSIRT Istmo (demo) created.")).to_be_visible()

    _nav(page).get_by_role("link", name="Organisations").click()
    rows = page.locator("#organisation-rows tbody tr")
    expect(rows.filter(has_text="CSIRT Istmo (demo)")).to_have_count(1)
    expect(rows).to_have_count(4)  # the admin's hub, Andina, Caribe and Istmo
    save_doc_screenshot(page, "organisations.png")

    search = page.get_by_role("searchbox", name="Search")
    search.press_sequentially("csirt")  # as typed: HTMX asks after a pause in the typing
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="CSIRT Istmo (demo)")).to_have_count(1)
    expect(rows.filter(has_text="CSIRT Andina (demo)")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"[?&]q=csirt\b"))

    search.fill("istmo")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("CSIRT Istmo (demo)")

    search.fill("no-such-organisation")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("No organisation matches.")


# --- (5) second factor ---------------------------------------------------------------------------


def test_second_factor_is_asked_at_the_next_sign_in(
    live_server: Any,
    page: Any,
    login: Callable[..., None],
    make_org: Callable[..., Organisation],
    make_user: Callable[..., User],
) -> None:
    make_user("ana", make_org("csirt-ar"))
    login(page, "ana")
    _nav(page).get_by_role("link", name="Second factor").click()

    secret = page.locator("[data-testid=totp-secret]").inner_text().strip()
    totp = pyotp.TOTP(secret)
    enable_code = totp.now()
    page.get_by_label("Six-digit code").fill(enable_code)
    page.get_by_role("button", name="Turn on the second factor").click()
    expect(page.get_by_role("status")).to_contain_text("Second factor turned on")
    expect(page.get_by_role("button", name="Turn off the second factor")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_server.url}/login/")
    expect(page.get_by_role("status")).to_contain_text("You are signed out.")

    login(page, "ana")
    expect(page).to_have_url(re.compile(r"/login/verify/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Second factor")
    expect(_nav(page)).to_have_count(0)  # not signed in yet

    # A fresh code; if the clock has not moved on since the code that turned the factor on, the
    # next time step's (within the allowed drift): a node refusing a code used twice accepts it.
    code = totp.now()
    if code == enable_code:
        code = totp.at(time.time() + totp.interval)
    page.get_by_label("Six-digit code").fill(code)
    page.get_by_role("button", name="Verify").click()

    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, ana")
    expect(_nav(page).get_by_role("link", name="Organisations")).to_be_visible()


# --- (6) directory: bulk import ----------------------------------------------------------------


def test_coordinator_imports_a_constituency_file_after_fixing_its_bad_row(
    live_server: Any,
    page: Any,
    login: Callable[..., None],
    node_admin: User,
    save_doc_screenshot: Callable[[Any, str], None],
) -> None:
    services.create_organisation(node_admin, name="CSIRT Istmo", short_name="csirt-istmo")
    login(page, node_admin.username)
    page.goto(f"{live_server.url}/directory/")
    page.get_by_role("button", name="Import and export").click()  # a link styled as a button
    expect(page.get_by_role("heading", level=1)).to_have_text("Import and export")

    def upload(text: str) -> None:
        page.get_by_label("What the file holds").select_option("constituency")
        page.get_by_label("File", exact=True).set_input_files(
            files=[{"name": "istmo.csv", "mimeType": "text/csv", "buffer": text.encode()}]
        )
        page.get_by_role("button", name="Check and import").click()

    upload("organisation,kind,value\ncsirt-istmo,network,9.9.9.0/24\ncsirt-istmo,network,10.1.0.0/16\n")
    errors = page.locator("#import-errors li")
    expect(errors).to_have_count(1)
    expect(errors).to_contain_text(
        "line 3, value: 10.1.0.0/16 is a private, reserved or special-purpose range."
    )
    expect(page.get_by_text("Nothing was imported: 1 bad row.")).to_be_visible()
    save_doc_screenshot(page, "directory-import.png")

    upload("organisation,kind,value\ncsirt-istmo,network,9.9.9.0/24\ncsirt-istmo,asn,AS19281\n")
    expect(page.get_by_text("Imported: 2 created, 0 updated.")).to_be_visible()
    page.goto(f"{live_server.url}/directory/?who=9.9.9.9")
    expect(page.locator("main")).to_contain_text("CSIRT Istmo")
