"""The Spanish, Portuguese and French catalogues: complete, faithful to their placeholders, compiled
(the committed .mo says what the .po says) and actually used by the pages.

The .po files are read with a small parser below: the runtime and the tests need no gettext tools
and no extra dependency."""

from __future__ import annotations

import ast
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation

from minga.core.models import User

LANGUAGES = ["es", "pt-br", "fr"]

SIGN_IN = {"es": "Iniciar sesión", "pt-br": "Entrar", "fr": "Se connecter"}

# What the sidebar of a signed-in node admin shows, per language.
NAVIGATION = {
    "es": [
        "Resumen",
        "Organizaciones",
        "Personas",
        "Registro de auditoría",
        "Tokens de API",
        "Cerrar sesión",
    ],
    "pt-br": ["Visão geral", "Organizações", "Pessoas", "Registro de auditoria", "Tokens de API", "Sair"],
    "fr": [
        "Vue d'ensemble",
        "Organisations",
        "Personnes",
        "Journal d'audit",
        "Jetons d'API",
        "Se déconnecter",
    ],
}

PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]|%[sdif]|\{\{\s*\w+\s*\}\}|</?\w+[^>]*>|&\w+;")


@dataclass
class Entry:
    msgid: str
    msgid_plural: str | None = None
    msgstr: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    line: int = 0


def _catalogue(lang: str) -> Path:
    return Path(settings.LOCALE_PATHS[0]) / translation.to_locale(lang) / "LC_MESSAGES" / "django.po"


def parse_po(path: Path) -> list[Entry]:
    """Entries of a .po file, header first. Obsolete (``#~``) entries are skipped."""
    entries: list[Entry] = []
    current: Entry | None = None
    key = ""
    flags: set[str] = set()

    def string(text: str) -> str:
        return str(ast.literal_eval(text))  # a PO string is a C string; for these files, a Python one

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            continue
        if line.startswith("#,"):
            flags |= {f.strip() for f in line[2:].split(",")}
            continue
        if line.startswith("#"):
            continue
        if line.startswith("msgid "):
            current = Entry(msgid=string(line[6:]), flags=flags, line=number)
            entries.append(current)
            flags, key = set(), "msgid"
        elif line.startswith("msgid_plural "):
            assert current is not None
            current.msgid_plural, key = string(line[13:]), "msgid_plural"
        elif line.startswith("msgstr"):
            assert current is not None
            current.msgstr.append(string(line.split(" ", 1)[1]))
            key = "msgstr"
        elif line.startswith('"'):
            assert current is not None, f"{path}:{number}: string outside an entry"
            if key == "msgid":
                current.msgid += string(line)
            elif key == "msgid_plural":
                current.msgid_plural = (current.msgid_plural or "") + string(line)
            else:
                current.msgstr[-1] += string(line)
        else:
            raise AssertionError(f"{path}:{number}: cannot read {raw!r}")
    return entries


def _header(entries: list[Entry]) -> dict[str, str]:
    assert entries and entries[0].msgid == "", "the catalogue has no header"
    pairs = (line.split(":", 1) for line in entries[0].msgstr[0].splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, value in pairs}


def _messages(lang: str) -> list[Entry]:
    return parse_po(_catalogue(lang))[1:]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_catalogue_header_is_complete(lang: str) -> None:
    entries = parse_po(_catalogue(lang))
    header = _header(entries)
    assert "fuzzy" not in entries[0].flags  # msgfmt would drop a fuzzy header, charset and plurals with it
    assert header["Language"] == translation.to_locale(lang)
    assert "charset=UTF-8" in header["Content-Type"]
    assert re.fullmatch(r"nplurals=\d+; plural=.+;", header["Plural-Forms"])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_is_translated_and_none_is_fuzzy(lang: str) -> None:
    plural_forms = _header(parse_po(_catalogue(lang)))["Plural-Forms"]
    nplurals = int(re.search(r"nplurals=(\d+)", plural_forms)[1])  # type: ignore[index]
    messages = _messages(lang)
    assert len(messages) > 100  # the UI's strings are there, not an empty catalogue
    untranslated = [e.msgid for e in messages if not e.msgstr or not all(e.msgstr)]
    fuzzy = [e.msgid for e in messages if "fuzzy" in e.flags]
    wrong_plurals = [e.msgid for e in messages if e.msgid_plural is not None and len(e.msgstr) != nplurals]
    assert untranslated == []
    assert fuzzy == []
    assert wrong_plurals == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_translations_keep_placeholders_and_markup(lang: str) -> None:
    problems = []
    for entry in _messages(lang):
        sources = [entry.msgid] if entry.msgid_plural is None else [entry.msgid, entry.msgid_plural]
        expected = sorted(set().union(*(PLACEHOLDER.findall(s) for s in sources)))
        for translated in entry.msgstr:
            if sorted(set(PLACEHOLDER.findall(translated))) != expected:
                problems.append((entry.line, entry.msgid, translated))
    assert problems == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_compiled_catalogue_matches_the_po(lang: str) -> None:
    """The committed .mo is what Django loads: every message of the .po comes back from gettext
    exactly, so a .po edited without ``compilemessages`` fails here."""
    assert _catalogue(lang).with_suffix(".mo").is_file()
    stale = []
    with translation.override(lang):
        assert translation.gettext("Sign in") == SIGN_IN[lang]
        for entry in _messages(lang):
            if entry.msgid_plural is None:
                got = [translation.gettext(entry.msgid)]
                want = entry.msgstr[:1]
            else:
                got = [
                    translation.ngettext(entry.msgid, entry.msgid_plural, 1),
                    translation.ngettext(entry.msgid, entry.msgid_plural, 2),
                ]
                want = [entry.msgstr[0], entry.msgstr[-1]]
            if got != want:
                stale.append((entry.msgid, got, want))
    assert stale == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_translated_choices_and_language_names(lang: str) -> None:
    from minga.core.choices import TLP, Role

    with translation.override(lang):
        assert str(TLP.AMBER_STRICT.label) == "TLP:AMBER+STRICT"  # TLP labels are never translated
        assert str(Role.NODE_ADMIN.label) != "Node admin"
        names = {code: str(name) for code, name in settings.LANGUAGES}
    assert names["en"] != "English"
    assert names[lang] == {"es": "Español", "pt-br": "Português", "fr": "Français"}[lang]


def _text(response: object) -> str:
    return html.unescape(response.content.decode())  # type: ignore[attr-defined]


@pytest.mark.django_db
@pytest.mark.parametrize("lang", LANGUAGES)
def test_login_page_follows_the_language_cookie(lang: str) -> None:
    client = Client()
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = lang
    response = client.get("/login/")
    assert response.status_code == 200
    text = _text(response)
    assert f'<html lang="{lang}"' in text
    assert SIGN_IN[lang] in text
    if lang == "pt-br":  # Django's own form labels in Brazilian, not European, Portuguese
        assert "Senha" in text and "Palavra-passe" not in text
    assert "Sign in" not in text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_signed_in_pages_show_translated_navigation(
    lang: str, node_admin: User, login_client: Callable[[User], Client]
) -> None:
    client = login_client(node_admin)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = lang
    response = client.get("/organisations/")
    assert response.status_code == 200
    text = _text(response)
    for label in NAVIGATION[lang]:
        assert label in text
    for english in ("Overview", "People", "Audit log", "Sign out"):
        assert f">{english}<" not in text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_users_preferred_language_applies_without_a_cookie(
    lang: str, node_admin: User, login_client: Callable[[User], Client]
) -> None:
    node_admin.preferred_language = lang
    node_admin.save(update_fields=["preferred_language"])
    text = _text(login_client(node_admin).get("/organisations/"))
    assert NAVIGATION[lang][1] in text
    assert f'<html lang="{lang}"' in text
