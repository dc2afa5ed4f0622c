"""The incident as a PDF summary (fpdf2, pure Python): reference, title, classification, status,
the TLP marking printed prominently (a banner at the top and the foot of every page, in the
TLP 2.0 colours), participants with their statuses, the timeline and the tasks.

Call ``summary`` only with an incident the reader may read (``services.export_pdf`` does, and
audits the export); what hangs from the incident is read with ``queries``, like the incident page.
Text is in the language active for the request. DejaVu Sans (Debian's fonts-dejavu-core) is used
when installed, for any script it covers; otherwise the PDF core font Helvetica, in which
characters outside Latin-1 print as "?".
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from minga.core.choices import TLP
from minga.incidents import queries
from minga.incidents.models import Incident, TimelineEntry

# fontTools logs every glyph it subsets at INFO: nothing an operator needs in the node's log.
logging.getLogger("fontTools").setLevel(logging.WARNING)

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
# TLP 2.0: the label in its colour on black.
TLP_COLOURS: dict[str, tuple[int, int, int]] = {
    TLP.CLEAR: (255, 255, 255),
    TLP.GREEN: (51, 255, 0),
    TLP.AMBER: (255, 192, 0),
    TLP.AMBER_STRICT: (255, 192, 0),
    TLP.RED: (255, 43, 43),
}


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


class _Summary(FPDF):
    def __init__(self, incident: Incident) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.incident = incident
        self.marking = str(incident.get_tlp_display())
        self.family = "Helvetica"
        self.unicode = False
        for folder in FONT_DIRS:
            regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
            if regular.is_file() and bold.is_file():
                self.add_font("DejaVu", "", str(regular))
                self.add_font("DejaVu", "B", str(bold))
                self.family, self.unicode = "DejaVu", True
                break
        self.set_auto_page_break(auto=True, margin=22)
        self.set_margins(15, 15, 15)

    def text_of(self, value: Any) -> str:
        text = str(value)
        return text if self.unicode else text.encode("latin-1", "replace").decode("latin-1")

    def _banner(self) -> None:
        colour = TLP_COLOURS.get(self.incident.tlp, (255, 255, 255))
        self.set_fill_color(0, 0, 0)
        self.set_text_color(*colour)
        self.set_font(self.family, "B", 14)
        self.cell(0, 9, self.text_of(self.marking), align="C", fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)

    def header(self) -> None:
        self._banner()
        self.ln(3)

    def footer(self) -> None:
        self.set_y(-18)
        self._banner()
        self.set_font(self.family, "", 8)
        self.cell(
            0,
            5,
            self.text_of(
                _("%(ref)s · page %(page)d · %(node)s")
                % {"ref": self.incident.reference, "page": self.page_no(), "node": settings.MINGA_NODE_NAME}
            ),
            align="C",
        )

    def heading(self, text: str) -> None:
        self.ln(3)
        self.set_font(self.family, "B", 12)
        self.cell(0, 8, self.text_of(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(160, 160, 160)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(1)

    def pair(self, label: str, value: Any) -> None:
        self.set_font(self.family, "B", 9)
        self.cell(48, 6, self.text_of(label))
        self.set_font(self.family, "", 9)
        self.multi_cell(0, 6, self.text_of(value or "—"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def grid(self, headings: list[str], rows: list[list[Any]], widths: list[int]) -> None:
        self.set_font(self.family, "B", 8)
        with self.table(
            col_widths=tuple(widths), text_align="LEFT", line_height=5, first_row_as_headings=True
        ) as table:
            row = table.row()
            for heading in headings:
                row.cell(self.text_of(heading))
            self.set_font(self.family, "", 8)
            for values in rows:
                row = table.row()
                for value in values:
                    row.cell(self.text_of(value if value not in (None, "") else "—"))


def _entry_text(entry: TimelineEntry) -> str:
    details = entry.details if isinstance(entry.details, dict) else {}
    parts = []
    if entry.kind == "status":
        parts.append(f"{details.get('from', '')} → {details.get('to', '')}")
    for key, label in (
        ("added", _("added")),
        ("removed", _("removed")),
        ("acknowledged", _("acknowledged by")),
        ("declined", _("declined by")),
        ("linked", _("linked")),
        ("into", _("into")),
        ("merged", _("merged")),
    ):
        if details.get(key):
            parts.append(f"{label}: {details[key]}")
    if details.get("proposed"):
        parts.append(f"{_('proposed')}: {', '.join(map(str, details['proposed']))}")
    if entry.text:
        parts.append(entry.text)
    return "\n".join(parts)


def summary(user: Any, incident: Incident) -> bytes:
    """The PDF bytes; ``incident`` must be one that ``user`` may read."""
    pdf = _Summary(incident)
    pdf.set_title(f"{incident.reference} {incident.title}")
    pdf.set_subject(str(incident.get_tlp_display()))
    pdf.set_creator("Minga")
    pdf.add_page()
    pdf.set_font(pdf.family, "B", 16)
    pdf.multi_cell(0, 8, pdf.text_of(incident.reference), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(pdf.family, "B", 13)
    pdf.multi_cell(0, 7, pdf.text_of(incident.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.pair(_("TLP"), incident.get_tlp_display())
    pdf.pair(_("PAP"), incident.get_pap_display())
    pdf.pair(
        _("Classification"),
        f"{incident.get_taxonomy_display()} / {incident.get_type_display()} (RSIT)",
    )
    pdf.pair(_("Severity"), incident.get_severity_display())
    status = str(incident.get_status_display())
    pdf.pair(_("Status"), f"{status} — {incident.status_reason}" if incident.status_reason else status)
    pdf.pair(_("Reported by"), incident.origin_organisation.name)
    pdf.pair(_("Coordinator"), incident.coordinating_organisation.name)
    pdf.pair(_("Affected states"), ", ".join(str(s) for s in incident.affected_states.all()))
    pdf.pair(_("Affected sectors"), ", ".join(str(s) for s in incident.affected_sectors.all()))
    pdf.pair(_("Affected organisations"), ", ".join(o.name for o in incident.affected_organisations.all()))
    pdf.pair(_("Opened"), _when(incident.created_at))
    pdf.pair(_("Resolved"), _when(incident.resolved_at))
    pdf.pair(_("Closed"), _when(incident.closed_at))
    if incident.merged_into_id is not None and incident.merged_into is not None:
        pdf.pair(_("Merged into"), incident.merged_into.reference)
    if incident.description:
        pdf.heading(_("Description"))
        pdf.set_font(pdf.family, "", 9)
        pdf.multi_cell(0, 5, pdf.text_of(incident.description), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    pdf.heading(_("Participants"))
    participants = [
        [
            p.organisation.name,
            p.get_status_display(),
            _when(p.added_at),
            _when(p.acknowledged_at),
            p.time_to_acknowledge_shown,
        ]
        for p in queries.participants(incident)
    ]
    if participants:
        pdf.grid(
            [_("Organisation"), _("Status"), _("Added"), _("Acknowledged"), _("Time to acknowledge")],
            participants,
            [52, 34, 34, 34, 26],
        )
    else:
        pdf.pair(_("Participants"), _("None yet."))

    pdf.heading(_("Tasks"))
    tasks = [
        [t.title, t.organisation.name, _when(t.due_at), t.get_status_display()]
        for t in queries.tasks(incident)
    ]
    if tasks:
        pdf.grid([_("Task"), _("Assigned to"), _("Due"), _("Status")], tasks, [70, 46, 38, 26])
    else:
        pdf.pair(_("Tasks"), _("None yet."))

    pdf.heading(_("Timeline"))
    rows = [
        [
            _when(entry.created_at),
            entry.get_kind_display(),
            (entry.actor.get_username() if entry.actor else _("the node"))
            + (f" ({entry.organisation.short_name})" if entry.organisation else ""),
            _entry_text(entry),
        ]
        for entry in queries.timeline(incident)
    ]
    pdf.grid([_("When"), _("What"), _("Who"), _("Details")], rows, [32, 28, 40, 80])
    pdf.ln(4)
    pdf.set_font(pdf.family, "", 8)
    pdf.multi_cell(
        0,
        4,
        pdf.text_of(
            _("Exported %(when)s from %(node)s. Share it only as %(tlp)s and %(pap)s allow.")
            % {
                "when": _when(timezone.now()),
                "node": settings.MINGA_NODE_NAME,
                "tlp": incident.get_tlp_display(),
                "pap": incident.get_pap_display(),
            }
        ),
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    return bytes(pdf.output())
