"""Directory pages: member states, a state's organisations, an organisation's profile, sectors."""

from __future__ import annotations

import re
import tempfile
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from minga.core import access
from minga.core.forms import attach_service_errors
from minga.core.models import Organisation, User
from minga.core.services import can_manage_organisation
from minga.directory import contacts, exchange, queries, registries, rfc2350, securitytxt, services
from minga.directory.choices import OrganisationKind, ProposalBasis, ProposalStatus
from minga.directory.forms import (
    ContactForm,
    ImportForm,
    ProfileForm,
    ProposalFilterForm,
    RegistryUploadForm,
    SectorForm,
    TeamProfileForm,
    WebhookForm,
)
from minga.directory.models import (
    ConstituencyProposal,
    MemberState,
    OrganisationProfile,
    PointOfContact,
    Sector,
    TeamProfile,
)

# Rows per page where a list runs into thousands: a big state, the stale contacts, a constituency.
PROFILES_PER_PAGE = CONTACTS_PER_PAGE = CONSTITUENCY_PER_PAGE = 100


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def _page(request: HttpRequest, rows: Any, per_page: int) -> Page:
    return Paginator(rows, per_page).get_page(request.GET.get("page"))


def _organisation(request: HttpRequest, short_name: str, *, members_only: bool = False) -> Organisation:
    """An organisation the reader may see (else 404); ``members_only`` pages also need the
    reader to belong to a member organisation of the network (else 403)."""
    organisation = get_object_or_404(access.organisations_visible_to(request.user), short_name=short_name)
    if members_only and not access.reader_for(request.user).is_network_member:
        raise PermissionDenied(_("Only members of the network may see this page."))
    return organisation


@login_required
def state_list(request: HttpRequest) -> HttpResponse:
    states = sorted(queries.states_with_counts(request.user), key=lambda s: s.name)
    query = request.GET.get("who", "").strip()[:253]
    answer = queries.resolve_text(request.user, query) if query else None
    return render(request, "directory/state_list.html", {"states": states, "who": query, "answer": answer})


@login_required
def state_detail(request: HttpRequest, code: str) -> HttpResponse:
    state = get_object_or_404(MemberState, code=code.upper())
    # A big state has a thousand organisations: one page of them, still grouped by kind.
    page = _page(request, queries.state_profiles(request.user, state), PROFILES_PER_PAGE)
    labels = dict(OrganisationKind.choices)
    by_kind = [(labels[kind], list(group)) for kind, group in groupby(page.object_list, attrgetter("kind"))]
    return render(
        request,
        "directory/state_detail.html",
        {"state": state, "by_kind": by_kind, "count": page.paginator.count, "page": page},
    )


@login_required
@require_POST
def state_participation(request: HttpRequest, code: str) -> HttpResponse:
    state = get_object_or_404(MemberState, code=code.upper())
    services.set_state_participation(_user(request), state, request.POST.get("participating") == "1")
    messages.success(request, _("Saved."))
    return redirect("directory:state_detail", code=state.code)


@login_required
@require_http_methods(["GET", "POST"])
def profile_edit(request: HttpRequest, short_name: str) -> HttpResponse:
    organisation = _organisation(request, short_name)
    profile = (
        OrganisationProfile.objects.select_related("state", "parent")
        .prefetch_related("sectors")
        .filter(organisation=organisation)
        .first()
    )
    can_edit = can_manage_organisation(_user(request), organisation)
    initial = {}
    if profile is not None:
        initial = {
            "kind": profile.kind,
            "state": profile.state,
            "sectors": list(profile.sectors.all()),
            "parent": profile.parent,
            "hosting_node": profile.hosting_node,
        }
    others = access.organisations_visible_to(request.user).exclude(pk=organisation.pk)
    form = ProfileForm(
        request.POST if request.method == "POST" else None, initial=initial, organisations=others
    )
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied(_("You may not change this organisation."))
        if form.is_valid():
            try:
                services.update_profile(_user(request), organisation, **form.cleaned_data)
            except ValidationError as exc:
                attach_service_errors(form, exc)
            else:
                messages.success(request, _("Profile saved."))
                return redirect("directory:profile", short_name=organisation.short_name)
    return render(
        request,
        "directory/profile.html",
        {
            "organisation": organisation,
            "profile": profile,
            "form": form,
            "can_edit": can_edit,
            # A national CSIRT may answer for thousands of networks: one page of them at a time.
            "page": _page(request, queries.Constituency(organisation), CONSTITUENCY_PER_PAGE),
            "contacts": queries.contacts_visible_to(request.user).filter(organisation=organisation),
            "contact_form": ContactForm() if can_edit else None,
            "contact_actions": [
                ("confirm", _("Confirm now")),
                ("request", _("Ask to confirm")),
                ("remove", _("Remove")),
            ],
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def webhook_edit(request: HttpRequest, short_name: str) -> HttpResponse:
    """The organisation's webhook, for its admins and node admins (404 for anyone else): the URL,
    and a new secret shown on this page once, after it is set."""
    organisation = _organisation(request, short_name)
    if not can_manage_organisation(_user(request), organisation):
        raise Http404
    webhook = queries.webhook_for(request.user, organisation)
    form = WebhookForm(request.POST or None, initial={"url": webhook.url if webhook else ""})
    shown_secret = None
    if request.method == "POST":
        if request.POST.get("action") == "remove":
            try:
                services.remove_webhook(_user(request), organisation)
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
            else:
                messages.success(request, _("Webhook removed."))
            return redirect("directory:webhook", short_name=organisation.short_name)
        if form.is_valid():
            try:
                webhook, shown_secret = services.set_webhook(
                    _user(request), organisation, **form.cleaned_data
                )
            except ValidationError as exc:
                attach_service_errors(form, exc)
            else:
                messages.success(request, _("Webhook saved."))
                form = WebhookForm(initial={"url": webhook.url})
    return render(
        request,
        "directory/webhook.html",
        {"organisation": organisation, "webhook": webhook, "form": form, "shown_secret": shown_secret},
    )


def _contact(request: HttpRequest, pk: int) -> PointOfContact:
    return get_object_or_404(queries.contacts_visible_to(request.user).select_related("organisation"), pk=pk)


@login_required
@require_POST
def contact_add(request: HttpRequest, short_name: str) -> HttpResponse:
    organisation = _organisation(request, short_name)
    form = ContactForm(request.POST)
    if form.is_valid():
        try:
            services.save_contact(_user(request), organisation, **form.service_fields())
        except ValidationError as exc:
            attach_service_errors(form, exc)
    if form.errors:
        for field, errors in form.errors.items():
            label = form.fields[field].label if field in form.fields else ""
            text = " ".join(str(error) for error in errors)
            messages.error(request, f"{label}: {text}" if label else text)
    else:
        messages.success(request, _("Contact added."))
    return redirect("directory:profile", short_name=organisation.short_name)


@login_required
@require_POST
def contact_action(request: HttpRequest, pk: int) -> HttpResponse:
    """Remove a contact, confirm it now, or e-mail it a confirmation link."""
    contact = _contact(request, pk)
    action = request.POST.get("action")
    if action == "remove":
        services.remove_contact(_user(request), contact)
        messages.success(request, _("Contact removed."))
    elif action == "confirm":
        services.confirm_contact(contact, actor=_user(request), via="admin")
        messages.success(request, _("Contact confirmed."))
    elif action == "request":
        services.request_confirmation(_user(request), contact)
        messages.success(
            request, _("A confirmation request will be e-mailed to %(email)s.") % {"email": contact.email}
        )
    else:
        messages.error(request, _("Unknown action."))
    if request.POST.get("back") == "coordination":
        back = redirect("directory:coordination")
        page = request.POST.get("page", "")
        if page.isdigit():  # the coordinator goes on from the page they were reading
            back["Location"] += f"?page={page}"
        return back
    return redirect("directory:profile", short_name=contact.organisation.short_name)


@login_required
def coordination(request: HttpRequest) -> HttpResponse:
    """The coordinator's view: stale contacts and states without a confirmed 24/7 contact."""
    if not _user(request).is_node_admin:
        raise PermissionDenied(_("Only node admins may see this page."))
    stale = _page(request, queries.stale_contacts(request.user), CONTACTS_PER_PAGE)
    return render(
        request,
        "directory/coordination.html",
        {
            "stale": stale,
            "page": stale,
            "uncovered": sorted(
                queries.states_without_confirmed_duty_contact(request.user), key=lambda s: s.name
            ),
            "stale_days": settings.MINGA_CONTACT_STALE_DAYS,
        },
    )


@require_http_methods(["GET", "POST"])
def confirm_contact(request: HttpRequest, token: str) -> HttpResponse:
    """The one-click link e-mailed to a contact: no account needed, the signed token is the key."""
    contact = contacts.contact_for_token(token)
    if contact is None:
        return render(request, "directory/confirm.html", {"invalid": True}, status=404)
    if request.method == "POST":
        services.confirm_contact(contact, via="link")
        return render(request, "directory/confirm.html", {"contact": contact, "done": True})
    return render(request, "directory/confirm.html", {"contact": contact})


@login_required
@require_POST
def constituency_add(request: HttpRequest, short_name: str) -> HttpResponse:
    organisation = _organisation(request, short_name)
    lines = request.POST.get("entries", "")[:1_000_000].splitlines()
    try:
        entries = services.add_constituency(_user(request), organisation, lines)
    except services.ConstituencyRejected as exc:
        for error in exc.line_errors:
            messages.error(
                request,
                _("Line %(line)d (%(text)s): %(reason)s")
                % {"line": error.line, "text": error.text[:80], "reason": error.reason},
            )
        messages.error(request, _("Nothing was saved: correct these lines and try again."))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("%(count)d entries added.") % {"count": len(entries)})
    return redirect("directory:profile", short_name=organisation.short_name)


@login_required
@require_POST
def constituency_remove(request: HttpRequest, short_name: str) -> HttpResponse:
    organisation = _organisation(request, short_name)
    try:
        services.remove_constituency(
            _user(request), organisation, request.POST.get("kind", ""), request.POST.get("value", "")[:300]
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("directory:profile", short_name=organisation.short_name)


@login_required
@require_http_methods(["GET", "POST"])
def sector_list(request: HttpRequest) -> HttpResponse:
    form = SectorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.add_sector(_user(request), form.cleaned_data["name"])
        except ValidationError as exc:
            attach_service_errors(form, exc)
        else:
            messages.success(request, _("Sector added."))
            return redirect("directory:sector_list")
    return render(
        request,
        "directory/sector_list.html",
        {
            "sectors": Sector.objects.all(),
            "form": form,
            "can_add": _user(request).is_node_admin,
        },
    )


def _security_txt(organisation: Organisation, canonical: str) -> HttpResponse:
    return HttpResponse(securitytxt.render(organisation, canonical), content_type="text/plain; charset=utf-8")


@require_http_methods(["GET", "HEAD"])
def well_known_security_txt(request: HttpRequest) -> HttpResponse:
    """The node's own security.txt: public by design (RFC 9116)."""
    organisation = Organisation.objects.filter(short_name=settings.MINGA_NODE_ORGANISATION).first()
    if not settings.MINGA_NODE_ORGANISATION or organisation is None:
        return HttpResponse(
            "# This node has not named its organisation (MINGA_NODE_ORGANISATION).\n",
            content_type="text/plain; charset=utf-8",
            status=404,
        )
    return _security_txt(organisation, settings.MINGA_PUBLIC_URL + "/.well-known/security.txt")


@login_required
def organisation_security_txt(request: HttpRequest, short_name: str) -> HttpResponse:
    """Any organisation's security.txt, for members of the network to copy or compare."""
    organisation = _organisation(request, short_name, members_only=True)
    url = settings.MINGA_PUBLIC_URL + request.path
    return _security_txt(organisation, url)


@login_required
@require_http_methods(["GET", "POST"])
def team_profile(request: HttpRequest, short_name: str) -> HttpResponse:
    """Edit the RFC 2350 sections (the organisation's admins), or read them (members)."""
    organisation = _organisation(request, short_name)
    team = TeamProfile.objects.filter(organisation=organisation).first() or TeamProfile(
        organisation=organisation
    )
    can_edit = can_manage_organisation(_user(request), organisation)
    form = TeamProfileForm(request.POST if request.method == "POST" else None, instance=team)
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied(_("You may not change this organisation."))
        if form.is_valid():
            data = {name: form.cleaned_data[name] for name in TeamProfile.EDITABLE}
            services.save_team_profile(_user(request), organisation, **data)
            messages.success(request, _("Team profile saved."))
            return redirect("directory:team_profile", short_name=organisation.short_name)
    return render(
        request,
        "directory/team_profile.html",
        {
            "organisation": organisation,
            "form": form,
            "can_edit": can_edit,
        },
    )


@login_required
def rfc2350_text(request: HttpRequest, short_name: str) -> HttpResponse:
    organisation = _organisation(request, short_name, members_only=True)
    text = rfc2350.render(organisation, settings.MINGA_PUBLIC_URL + request.path)
    return HttpResponse(text, content_type="text/plain; charset=utf-8")


# --- bulk exchange ---------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def exchange_page(request: HttpRequest) -> HttpResponse:
    """Download a dataset, or upload one: every bad row is listed and nothing is saved."""
    form = ImportForm(request.POST or None, request.FILES or None)
    rejected: list[exchange.RowError] = []
    if request.method == "POST" and form.is_valid():
        try:
            result = exchange.import_text(
                _user(request),
                form.cleaned_data["dataset"],
                form.cleaned_data["file"],
                form.cleaned_data["format"],
            )
        except exchange.ImportRejected as exc:
            rejected = exc.errors
        else:
            messages.success(request, _("Imported: %(result)s") % {"result": result})
            return redirect("directory:exchange")
    return render(
        request,
        "directory/exchange.html",
        {
            "form": form,
            "rejected": rejected[:1000],
            "rejected_count": len(rejected),
            "datasets": [
                (name, label, exchange.COLUMNS[name])
                for name, label in (
                    (exchange.ORGANISATIONS, _("Organisations")),
                    (exchange.CONTACTS, _("Points of contact")),
                    (exchange.CONSTITUENCY, _("Constituencies")),
                )
            ],
        },
    )


@login_required
@require_http_methods(["GET"])
def exchange_export(request: HttpRequest) -> HttpResponse:
    dataset, fmt = request.GET.get("dataset", ""), request.GET.get("format", "csv")
    if dataset not in exchange.DATASETS or fmt not in exchange.FORMATS:
        return HttpResponse(
            _("Unknown dataset or format."), status=400, content_type="text/plain; charset=utf-8"
        )
    text = exchange.export(_user(request), dataset, fmt)
    content_type = "application/json" if fmt == "json" else "text/csv; charset=utf-8"
    response = HttpResponse(text, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="minga-{dataset}.{fmt}"'
    return response


# --- registry proposals ----------------------------------------------------------------------

PROPOSALS_PER_PAGE = 100
SEED_REPORT = "directory.seed_report"  # the last upload's report, shown once
NO_OWNER = "-"  # the owner filter's value for proposals that name no organisation
_SHORT_NAME = re.compile(r"^[-a-zA-Z0-9_]{1,40}$")


def _require_node_admin(request: HttpRequest) -> None:
    if not _user(request).is_node_admin:
        raise PermissionDenied(_("Only node admins may see this page."))


def _proposal_filters(data: Any) -> dict[str, str]:
    """The request's valid filters; a value not offered is dropped rather than answered with an
    error page."""
    form = ProposalFilterForm(data)
    form.is_valid()
    return {
        "status": form.cleaned_data.get("status") or ProposalStatus.PENDING,
        "state": (form.cleaned_data.get("state") or "").upper(),
        "owner": form.cleaned_data.get("owner") or "",
    }


def _filter_query(filters: dict[str, str]) -> str:
    return urlencode({k: v for k, v in filters.items() if v})


def _named(short_name: str) -> Organisation | None:
    if not _SHORT_NAME.match(short_name):
        return None
    return Organisation.objects.filter(short_name=short_name).first()


def _proposal_page(request: HttpRequest) -> HttpResponse:
    filters = _proposal_filters(request.GET)
    owner = _named(filters["owner"]) if filters["owner"] not in ("", NO_OWNER) else None
    proposals = registries.proposals_for(
        request.user,
        status="" if filters["status"] == "all" else filters["status"],
        state=filters["state"],
        organisation=owner,
        unassigned=filters["owner"] == NO_OWNER,
    )
    if filters["owner"] not in ("", NO_OWNER) and owner is None:
        proposals = proposals.none()
    pending = ConstituencyProposal.objects.filter(status=ProposalStatus.PENDING)
    by_state = dict(
        pending.order_by().values_list("country").annotate(n=Count("pk")).values_list("country", "n")
    )
    states = sorted(MemberState.objects.filter(code__in=by_state), key=lambda s: s.name)
    owners = list(registries.pending_owners())
    csirts = Organisation.objects.filter(profile__kind=OrganisationKind.NATIONAL_CSIRT).order_by("name")
    return render(
        request,
        "directory/proposals.html",
        {
            "page": Paginator(proposals, PROPOSALS_PER_PAGE).get_page(request.GET.get("page")),
            "filters": filters,
            "query": _filter_query(filters),
            "statuses": [*ProposalStatus.choices, ("all", _("All"))],
            "states": [(s, by_state[s.code]) for s in states],
            "owners": owners,
            "unassigned": pending.filter(organisation__isnull=True).count(),
            "owner": owner,
            "owner_pending": pending.filter(organisation=owner).count() if owner else 0,
            "choices": sorted({*owners, *csirts}, key=attrgetter("name")),
            "bases": dict(ProposalBasis.choices),
            "no_owner": NO_OWNER,
            "upload_form": RegistryUploadForm(),
            "report": request.session.pop(SEED_REPORT, None),
            "max_upload_mb": settings.MINGA_MAX_REQUEST_BYTES // (1024 * 1024),
        },
    )


@login_required
def proposal_list(request: HttpRequest) -> HttpResponse:
    """The coordinator's review of networks and AS numbers proposed from registry data."""
    _require_node_admin(request)
    return _proposal_page(request)


@login_required
@require_POST
def proposal_upload(request: HttpRequest) -> HttpResponse:
    """Load a registry file of modest size, then show the list with the load's report (kept in
    the session for that one page, so that reloading it does not post the file again)."""
    _require_node_admin(request)
    form = RegistryUploadForm(request.POST, request.FILES)
    if form.is_valid():
        upload = form.cleaned_data["file"]
        name = (upload.name or "upload").replace("\x00", "")[:200]
        with tempfile.TemporaryDirectory(prefix="minga-seed-") as folder:
            path = Path(folder) / "registry-data"
            with path.open("wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
            try:
                report = registries.seed_proposals(
                    _user(request),
                    [path],
                    form.cleaned_data["format"],
                    max_chars=registries.MAX_UPLOAD_TEXT_CHARS,
                    names=[name],
                )
            except ValidationError as exc:
                attach_service_errors(form, exc)
            else:
                request.session[SEED_REPORT] = report.for_display()
                messages.success(request, _("%(count)d proposals added.") % {"count": report.proposed})
    for field, errors in form.errors.items():
        label = form.fields[field].label if field in form.fields else ""
        text = " ".join(str(error) for error in errors)
        messages.error(request, f"{label}: {text}" if label else text)
    return redirect("directory:proposals")


@login_required
@require_POST
def proposal_decide(request: HttpRequest) -> HttpResponse:
    """Accept or reject the chosen proposals, or all pending ones of an organisation; accepting
    may name another organisation than the proposed one."""
    _require_node_admin(request)
    filters = _proposal_filters(request.POST)
    back = redirect(f"{reverse('directory:proposals')}?{_filter_query(filters)}")
    target = None
    target_name = request.POST.get("organisation", "").strip()
    if target_name:
        target = _named(target_name)
        if target is None:
            messages.error(request, _("No organisation is called %(name)s.") % {"name": target_name[:40]})
            return back
    all_for = request.POST.get("all_for", "")
    if all_for:
        owner = _named(all_for)
        pending = ConstituencyProposal.objects.filter(status=ProposalStatus.PENDING, organisation=owner)
        ids = list(pending.values_list("pk", flat=True)[: services.MAX_DECISIONS]) if owner else []
    else:
        ids = [int(v) for v in request.POST.getlist("ids") if v.isascii() and v.isdigit() and len(v) < 19]
    decision = request.POST.get("decision", "")
    try:
        decided = services.decide_proposals(_user(request), ids, decision, target)
    except ValidationError as exc:
        for text in exc.messages[:50]:
            messages.error(request, text)
    else:
        if decision == "accept":
            messages.success(request, _("%(count)d proposals accepted.") % {"count": len(decided)})
        else:
            messages.success(request, _("%(count)d proposals rejected.") % {"count": len(decided)})
    return back
