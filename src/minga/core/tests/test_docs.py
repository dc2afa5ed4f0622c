"""The configuration table in docs/operators.md cannot drift from ``minga.conf.SETTINGS``."""

from __future__ import annotations

from pathlib import Path

import pytest

from minga.conf import SETTINGS

OPERATORS_MD = Path(__file__).resolve().parents[4] / "docs" / "operators.md"
HEADER = ("variable", "default", "meaning")
EMPTY = "(empty)"  # how the table writes an empty default
# Variables the table documents although they are not node settings.
NOT_IN_SETTINGS = {
    "MINGA_ADMIN_PASSWORD",
    "MINGA_DEMO_PASSWORD",
    "MINGA_TEST_DATABASE_URL",
    "MINGA_TEST_POSTGRES_URL",
    "MINGA_CHROMIUM",
}


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _unquote(cell: str) -> str:
    if len(cell) >= 2 and cell.startswith("`") and cell.endswith("`") and cell.count("`") == 2:
        return cell[1:-1]
    return cell


def configuration_table() -> dict[str, tuple[str, str]]:
    """Rows of the one table headed ``| variable | default | meaning |``: name -> (default, meaning)."""
    lines = OPERATORS_MD.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if tuple(c.lower() for c in _cells(line)) == HEADER]
    assert len(starts) == 1, "docs/operators.md must have exactly one configuration table"
    rows: dict[str, tuple[str, str]] = {}
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == 3, f"a configuration row needs three cells: {line}"
        name, default, meaning = cells
        name = _unquote(name)
        assert name not in rows, f"{name} appears twice in the configuration table"
        default = "" if default == EMPTY else _unquote(default)
        rows[name] = (default, meaning)
    return rows


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_has_a_row_with_its_default(setting):
    rows = configuration_table()
    assert setting.name in rows, f"{setting.name} is missing from the table in docs/operators.md"
    documented_default, _ = rows[setting.name]
    assert documented_default == setting.default, (
        f"docs/operators.md gives {setting.name} the default {documented_default!r}, "
        f"the code {setting.default!r}"
    )


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_row_copies_its_meaning(setting):
    _, meaning = configuration_table()[setting.name]
    assert meaning == setting.meaning, f"the meaning of {setting.name} differs from minga.conf"


def test_the_table_documents_no_unknown_setting():
    declared = {s.name for s in SETTINGS}
    unknown = set(configuration_table()) - declared - NOT_IN_SETTINGS
    assert not unknown, f"docs/operators.md documents settings the code does not declare: {sorted(unknown)}"
