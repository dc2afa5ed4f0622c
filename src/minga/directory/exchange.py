"""Bulk exchange of the directory: organisations, points of contact and constituencies, as CSV
or JSON, for the CLI (``minga directory export|import``), the exchange page and the REST API.

Exports neutralise spreadsheet formulas (a cell starting with = + - @ or a control character
gets a leading apostrophe), since these files are opened in spreadsheets. Imports check every
row first and report each bad row with its line and field; then they apply every row in one
transaction, so a row refused late (a parent loop, a permission) still leaves nothing written.

``actor=None`` is the operator at the command line: everything is visible and allowed, as for
the other services.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from minga.core import access, audit
from minga.core import services as core_services
from minga.core.demo import is_demo_organisation
from minga.core.models import Organisation, User
from minga.core.spreadsheet import neutralise, unneutralise
from minga.directory import constituency, contacts, queries, services
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState, OrganisationProfile, PointOfContact, Sector

LIST_SEPARATOR = ";"  # inside one CSV cell; JSON uses arrays

ORGANISATIONS, CONTACTS, CONSTITUENCY = "organisations", "contacts", "constituency"
DATASETS = (ORGANISATIONS, CONTACTS, CONSTITUENCY)
FORMATS = ("csv", "json")

COLUMNS = {
    ORGANISATIONS: [
        "short_name",
        "name",
        "kind",
        "state",
        "sectors",
        "parent",
        "hosting_node",
        "network_member",
    ],
    # last_verified_at is exported for the reader; an import never sets it: only the contact
    # (by the signed link) or an admin's action confirms details.
    CONTACTS: [
        "organisation",
        "role",
        "name",
        "email",
        "phone_numbers",
        "languages",
        "hours",
        "time_zone",
        "pgp_fingerprint",
        "pgp_key",
        "last_verified_at",
    ],
    CONSTITUENCY: ["organisation", "kind", "value"],
}
REQUIRED = {
    ORGANISATIONS: {"short_name", "name"},
    CONTACTS: {"organisation", "role", "name", "email"},
    CONSTITUENCY: {"organisation", "kind", "value"},
}
LIST_COLUMNS = {"sectors", "phone_numbers", "languages"}
SHORT_NAME = re.compile(r"^[a-z0-9][-a-z0-9]{1,39}$")
TRUE, FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


# --- export ----------------------------------------------------------------------------------


def _organisations(actor: User | None) -> QuerySet[Organisation]:
    visible = Organisation.objects.all() if actor is None else access.organisations_visible_to(actor)
    return visible.order_by("short_name")


def _contacts(actor: User | None) -> QuerySet[PointOfContact]:
    visible = PointOfContact.objects.all() if actor is None else queries.contacts_visible_to(actor)
    return visible.select_related("organisation").order_by("organisation__short_name", "role", "email")


def export_rows(actor: User | None, dataset: str, organisations: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The rows of one dataset that ``actor`` may read; only these organisations (short names)
    when some are named."""
    wanted = set(organisations)
    orgs = _organisations(actor)
    if wanted:
        orgs = orgs.filter(short_name__in=wanted)
    if dataset == ORGANISATIONS:
        profiles = {
            p.organisation_id: p
            for p in OrganisationProfile.objects.filter(organisation__in=orgs)
            .select_related("state", "parent")
            .prefetch_related("sectors")
        }
        rows = []
        for org in orgs:
            profile = profiles.get(org.pk)
            rows.append(
                {
                    "short_name": org.short_name,
                    "name": org.name,
                    "kind": profile.kind if profile else "",
                    "state": profile.state.code if profile and profile.state else "",
                    "sectors": sorted(s.slug for s in profile.sectors.all()) if profile else [],
                    "parent": profile.parent.short_name if profile and profile.parent else "",
                    "hosting_node": profile.hosting_node if profile else "",
                    "network_member": org.is_network_member,
                }
            )
        return rows
    if dataset == CONTACTS:
        return [
            {
                "organisation": c.organisation.short_name,
                "role": c.role,
                "name": c.name,
                "email": c.email,
                "phone_numbers": list(c.phone_numbers),
                "languages": list(c.languages),
                "hours": c.hours,
                "time_zone": c.time_zone,
                "pgp_fingerprint": c.pgp_fingerprint,
                "pgp_key": c.pgp_key,
                "last_verified_at": c.last_verified_at.isoformat() if c.last_verified_at else "",
            }
            for c in _contacts(actor).filter(organisation__in=orgs)
        ]
    if dataset == CONSTITUENCY:
        rows = []
        for org in orgs.prefetch_related("networks", "asns", "domains"):
            rows += [
                {"organisation": org.short_name, "kind": constituency.NETWORK, "value": n.cidr}
                for n in org.networks.all()  # type: ignore[attr-defined]
            ]
            rows += [
                {"organisation": org.short_name, "kind": constituency.ASN, "value": str(a.asn)}
                for a in org.asns.all()  # type: ignore[attr-defined]
            ]
            rows += [
                {"organisation": org.short_name, "kind": constituency.DOMAIN, "value": d.domain}
                for d in org.domains.all()  # type: ignore[attr-defined]
            ]
        return rows
    raise ValueError(f"unknown dataset {dataset!r}")


def _csv_cell(value: Any) -> str:
    if isinstance(value, list):
        value = LIST_SEPARATOR.join(value)
    elif isinstance(value, bool):
        value = "true" if value else "false"
    return neutralise(str(value))


def export(actor: User | None, dataset: str, fmt: str, organisations: Iterable[str] = ()) -> str:
    """One dataset as CSV or JSON text. Audited: exports carry personal data (contacts)."""
    rows = export_rows(actor, dataset, organisations)
    if fmt == "json":
        text = json.dumps({dataset: rows}, indent=1, ensure_ascii=False) + "\n"
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS[dataset], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})
        text = out.getvalue()
    audit.record(
        "directory.export", actor=actor, details={"dataset": dataset, "format": fmt, "rows": len(rows)}
    )
    return text


# --- import ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    reason: str
    unit: str = "line"  # CSV lines; items of the list in JSON

    def __str__(self) -> str:
        where = _("line %(n)d") if self.unit == "line" else _("item %(n)d")
        return f"{where % {'n': self.line}}, {self.field}: {self.reason}"


class ImportRejected(Exception):
    """Nothing was imported; ``errors`` names each bad row."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors[:20]))


@dataclass
class ImportResult:
    dataset: str
    created: int = 0
    updated: int = 0
    details: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return _("%(created)d created, %(updated)d updated.") % {
            "created": self.created,
            "updated": self.updated,
        }


@dataclass
class Row:
    line: int
    unit: str
    values: dict[str, Any]

    def text(self, name: str) -> str:
        value = self.values.get(name)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return LIST_SEPARATOR.join(str(v) for v in value)
        return unneutralise(str(value).strip())

    def items(self, name: str) -> list[str]:
        value = self.values.get(name)
        parts = value if isinstance(value, list) else self.text(name).split(LIST_SEPARATOR)
        return [unneutralise(str(p).strip()) for p in parts if str(p).strip()]

    def error(self, name: str, reason: str) -> RowError:
        return RowError(self.line, name, reason, self.unit)


def read_rows(text: str, fmt: str, dataset: str) -> list[Row]:
    """Rows of a CSV file (header first) or of a JSON document ``{"<dataset>": [{...}, ...]}``."""
    if fmt == "json":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            line = getattr(exc, "lineno", 1)
            raise ImportRejected([RowError(line, "file", _("not valid JSON: %(e)s") % {"e": exc})]) from None
        items = data.get(dataset) if isinstance(data, dict) else None
        if not isinstance(items, list):
            reason = _('expected an object with a "%(dataset)s" list') % {"dataset": dataset}
            raise ImportRejected([RowError(1, "file", reason)])
        rows, errors = [], []
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                errors.append(RowError(number, "item", _("each item must be an object"), "item"))
                continue
            # An escaped NUL (\u0000) becomes a character no database text column holds.
            for name, value in item.items():
                if "\x00" in name or "\x00" in str(value):
                    errors.append(
                        RowError(
                            number, name.replace("\x00", ""), _("NUL characters are not allowed"), "item"
                        )
                    )
            rows.append(Row(number, "item", item))
        if errors:
            raise ImportRejected(errors)
        return rows
    if "\x00" in text:
        raise ImportRejected([RowError(1, "file", _("the file contains NUL characters"))])
    reader = csv.DictReader(io.StringIO(text))
    try:
        missing = REQUIRED[dataset] - set(reader.fieldnames or [])
        if missing:
            reason = _("missing columns: %(columns)s") % {"columns": ", ".join(sorted(missing))}
            raise ImportRejected([RowError(1, "header", reason)])
        rows, first_line = [], reader.line_num + 1
        for row in reader:  # a quoted cell may span lines: name the line where the row starts
            rows.append(Row(first_line, "line", dict(row)))
            first_line = reader.line_num + 1
        return rows
    except csv.Error as exc:
        raise ImportRejected([RowError(reader.line_num, "file", str(exc))]) from None


def import_text(actor: User | None, dataset: str, text: str, fmt: str) -> ImportResult:
    """Import one dataset, all or nothing. Raises ImportRejected naming every bad row."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}")
    rows = read_rows(text, fmt, dataset)
    if not rows:
        raise ImportRejected([RowError(1, "file", _("the file has no rows"))])
    check, apply = _IMPORTERS[dataset]
    plans, errors = check(actor, rows)
    if errors:
        raise ImportRejected(errors)
    try:
        with transaction.atomic():
            result = apply(actor, plans)
            audit.record(
                "directory.import",
                actor=actor,
                details={"dataset": dataset, "created": result.created, "updated": result.updated},
            )
    except _LateRejection as exc:
        raise ImportRejected(exc.errors) from None
    return result


class _LateRejection(Exception):
    """Raised inside the import transaction to roll it back."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors


def _service_errors(row: Row, exc: ValidationError | PermissionDenied) -> list[RowError]:
    if isinstance(exc, PermissionDenied):
        return [row.error("organisation", str(exc) or _("not allowed"))]
    if hasattr(exc, "error_dict"):
        return [
            row.error(name, " ".join(str(m) for m in ValidationError(msgs).messages))
            for name, msgs in exc.error_dict.items()
        ]
    return [row.error("row", " ".join(exc.messages))]


def _managed(actor: User | None, row: Row, organisations: dict[str, Organisation]) -> Organisation | None:
    """The row's organisation if it exists and the actor may change it; else None, with the
    reason appended by the caller from ``_why_not``."""
    organisation = organisations.get(row.text("organisation").lower())
    if organisation is None or not core_services.can_manage_organisation(actor, organisation):
        return None
    return organisation


def _why_not(actor: User | None, row: Row, organisations: dict[str, Organisation]) -> RowError:
    short_name = row.text("organisation")
    if short_name.lower() not in organisations:
        return row.error("organisation", _("no organisation is called %(name)r") % {"name": short_name})
    return row.error("organisation", _("you may not change %(name)s") % {"name": short_name})


def _visible_by_short_name(actor: User | None) -> dict[str, Organisation]:
    return {o.short_name: o for o in _organisations(actor)}


# Organisations: created (node admins) or updated (their admins), then their profiles, once
# every organisation of the file exists, so a parent may come later in the file.


@dataclass
class _OrganisationPlan:
    row: Row
    existing: Organisation | None
    short_name: str
    name: str
    kind: str
    state: MemberState | None
    sectors: list[Sector]
    parent: str
    hosting_node: str
    network_member: bool | None


def _check_organisations(
    actor: User | None, rows: list[Row]
) -> tuple[list[_OrganisationPlan], list[RowError]]:
    known = {o.short_name: o for o in Organisation.objects.all()}
    visible = _visible_by_short_name(actor)
    states = {s.code: s for s in MemberState.objects.all()}
    sectors = {s.slug: s for s in Sector.objects.all()}
    in_file = {row.text("short_name").lower() for row in rows}
    plans, errors, seen = [], [], set()
    for row in rows:
        row_errors = []
        short_name = row.text("short_name").lower()
        existing = known.get(short_name)
        if not SHORT_NAME.match(short_name):
            row_errors.append(
                row.error("short_name", _("use 2 to 40 lower-case letters, digits and hyphens"))
            )
        elif short_name in seen:
            row_errors.append(
                row.error("short_name", _("%(name)s appears twice in the file") % {"name": short_name})
            )
        seen.add(short_name)
        if existing is None and not core_services.is_node_admin(actor):
            row_errors.append(row.error("short_name", _("only node admins may create organisations")))
        elif existing is not None and not core_services.can_manage_organisation(actor, existing):
            if short_name in visible:
                row_errors.append(
                    row.error("short_name", _("you may not change %(name)s") % {"name": short_name})
                )
            else:  # do not confirm that an organisation the reader cannot see exists
                row_errors.append(row.error("short_name", _("only node admins may create organisations")))
        name = row.text("name")
        if existing is None and not 2 <= len(name) <= 200:
            row_errors.append(row.error("name", _("give the organisation's name (2 to 200 characters)")))
        elif len(name) > 200:
            row_errors.append(row.error("name", _("at most 200 characters")))
        kind = row.text("kind")
        profile_given = any(row.text(name) for name in ("state", "sectors", "parent", "hosting_node"))
        if not kind and not profile_given:
            pass  # the organisation only, without a directory profile (as exported)
        elif kind not in OrganisationKind.values:
            row_errors.append(
                row.error(
                    "kind",
                    _("%(kind)r is not one of %(kinds)s")
                    % {"kind": kind, "kinds": ", ".join(OrganisationKind.values)},
                )
            )
        code = row.text("state").upper()
        if code and code not in states:
            row_errors.append(
                row.error("state", _("%(code)r is not a member state's ISO code") % {"code": code})
            )
        slugs = row.items("sectors")
        unknown = [s for s in slugs if s not in sectors]
        if unknown:
            row_errors.append(row.error("sectors", _("unknown sectors: %(s)s") % {"s": ", ".join(unknown)}))
        parent = row.text("parent").lower()
        if parent and parent not in visible and parent not in in_file:
            row_errors.append(row.error("parent", _("no organisation is called %(name)r") % {"name": parent}))
        member_text = row.text("network_member").lower()
        if member_text and member_text not in TRUE | FALSE:
            row_errors.append(row.error("network_member", _("write true or false")))
        hosting_node = row.text("hosting_node")
        if len(hosting_node) > 200:
            row_errors.append(row.error("hosting_node", _("at most 200 characters")))
        if row_errors:
            errors += row_errors
            continue
        plans.append(
            _OrganisationPlan(
                row=row,
                existing=existing,
                short_name=short_name,
                name=name,
                kind=kind,
                state=states.get(code),
                sectors=[sectors[s] for s in slugs],
                parent=parent,
                hosting_node=hosting_node,
                network_member=(member_text in TRUE) if member_text else None,
            )
        )
    return plans, errors


def _apply_organisations(actor: User | None, plans: list[_OrganisationPlan]) -> ImportResult:
    result = ImportResult(ORGANISATIONS)
    errors: list[RowError] = []
    organisations: dict[str, Organisation] = {}
    for plan in plans:
        try:
            if plan.existing is None:
                organisations[plan.short_name] = core_services.create_organisation(
                    actor,
                    name=plan.name,
                    short_name=plan.short_name,
                    is_network_member=True if plan.network_member is None else plan.network_member,
                )
                result.created += 1
            else:
                changes: dict[str, Any] = {"name": plan.name} if plan.name else {}
                if plan.network_member is not None:
                    changes["is_network_member"] = plan.network_member
                organisations[plan.short_name] = core_services.update_organisation(
                    actor, plan.existing, **changes
                )
                result.updated += 1
        except (ValidationError, PermissionDenied) as exc:
            errors += _service_errors(plan.row, exc)
    if not errors:
        parents = {**_visible_by_short_name(actor), **organisations}
        for plan in (p for p in plans if p.kind):
            try:
                services.update_profile(
                    actor,
                    organisations[plan.short_name],
                    kind=plan.kind,
                    state=plan.state,
                    sectors=plan.sectors,
                    parent=parents[plan.parent] if plan.parent else None,
                    hosting_node=plan.hosting_node,
                )
            except (ValidationError, PermissionDenied) as exc:
                errors += _service_errors(plan.row, exc)
    if errors:
        raise _LateRejection(errors)
    return result


# Points of contact: a row matches an existing contact by organisation, role and e-mail.


@dataclass
class _ContactPlan:
    row: Row
    organisation: Organisation
    existing: PointOfContact | None
    fields: dict[str, Any]


CONTACT_FIELDS = ("role", "name", "email", "hours", "time_zone", "pgp_fingerprint", "pgp_key")


def _check_contacts(actor: User | None, rows: list[Row]) -> tuple[list[_ContactPlan], list[RowError]]:
    organisations = _visible_by_short_name(actor)
    plans, errors, seen = [], [], set()
    for row in rows:
        organisation = _managed(actor, row, organisations)
        if organisation is None:
            errors.append(_why_not(actor, row, organisations))
            continue
        fields: dict[str, Any] = {name: row.text(name) for name in CONTACT_FIELDS}
        fields["time_zone"] = fields["time_zone"] or "UTC"
        fields["phone_numbers"] = row.items("phone_numbers")
        fields["languages"] = row.items("languages")
        try:
            cleaned = contacts.clean_contact(**fields)
        except ValidationError as exc:
            errors += _service_errors(row, exc)
            continue
        key = (organisation.pk, cleaned.role, cleaned.email.lower())
        if key in seen:
            errors.append(row.error("email", _("this contact appears twice in the file")))
            continue
        seen.add(key)
        existing = organisation.contacts.filter(role=cleaned.role, email__iexact=cleaned.email).first()  # type: ignore[attr-defined]
        plans.append(_ContactPlan(row, organisation, existing, fields))
    return plans, errors


def _apply_contacts(actor: User | None, plans: list[_ContactPlan]) -> ImportResult:
    result = ImportResult(CONTACTS)
    errors: list[RowError] = []
    for plan in plans:
        try:
            services.save_contact(actor, plan.organisation, plan.existing, **plan.fields)
        except (ValidationError, PermissionDenied) as exc:
            errors += _service_errors(plan.row, exc)
            continue
        if plan.existing is None:
            result.created += 1
        else:
            result.updated += 1
    if errors:
        raise _LateRejection(errors)
    return result


# Constituencies: entries are added to what an organisation has; nothing is removed.


@dataclass
class _ConstituencyPlan:
    organisation: Organisation
    values: list[str]


def _check_constituency(
    actor: User | None, rows: list[Row]
) -> tuple[list[_ConstituencyPlan], list[RowError]]:
    organisations = _visible_by_short_name(actor)
    by_org: dict[Organisation, list[str]] = {}
    errors = []
    for row in rows:
        organisation = _managed(actor, row, organisations)
        if organisation is None:
            errors.append(_why_not(actor, row, organisations))
            continue
        kind, value = row.text("kind"), row.text("value")
        if kind not in (constituency.NETWORK, constituency.ASN, constituency.DOMAIN):
            errors.append(row.error("kind", _("%(kind)r is not network, asn or domain") % {"kind": kind}))
            continue
        try:
            entry = constituency.classify(value, demo=is_demo_organisation(organisation))
        except ValueError as exc:
            errors.append(row.error("value", str(exc)))
            continue
        if entry.kind != kind:
            errors.append(
                row.error(
                    "value",
                    _("%(value)r is a %(actual)s, not a %(kind)s")
                    % {"value": value, "actual": entry.kind, "kind": kind},
                )
            )
            continue
        by_org.setdefault(organisation, []).append(value)
    return [_ConstituencyPlan(org, values) for org, values in by_org.items()], errors


def _apply_constituency(actor: User | None, plans: list[_ConstituencyPlan]) -> ImportResult:
    result = ImportResult(CONSTITUENCY)
    for plan in plans:
        result.created += len(services.add_constituency(actor, plan.organisation, plan.values))
    return result


_IMPORTERS: dict[str, tuple[Callable[..., Any], Callable[..., ImportResult]]] = {
    ORGANISATIONS: (_check_organisations, _apply_organisations),
    CONTACTS: (_check_contacts, _apply_contacts),
    CONSTITUENCY: (_check_constituency, _apply_constituency),
}
