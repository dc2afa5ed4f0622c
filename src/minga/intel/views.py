"""Intel pages: the object list with filters, an object's page, bundle imports and their progress."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import orjson
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from minga.core.forms import attach_service_errors
from minga.core.models import User
from minga.intel import queries, services, stix
from minga.intel.choices import ImportStatus
from minga.intel.forms import ObjectFilterForm, UploadForm
from minga.intel.models import StixObject

OBJECTS_PER_PAGE = 50


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def _day(value: Any) -> datetime | None:
    return timezone.make_aware(datetime.combine(value, time.min)) if value else None


def _stix_id(text: str) -> str:
    if not stix.ID_RE.match(text):
        raise Http404
    return text


def _criteria(form: ObjectFilterForm) -> queries.Search:
    if not form.is_valid():
        return queries.Search()
    data = form.cleaned_data
    return queries.Search(
        type=data["type"],
        value=data["value"].strip(),
        q=data["q"].strip(),
        tlp=data["tlp"],
        origin=data["origin"],
        added_after=_day(data["since"]),
        added_before=_day(data["until"]),
        include_revoked=data["include_revoked"],
    )


@login_required
def object_list(request: HttpRequest) -> HttpResponse:
    form = ObjectFilterForm(request.GET)
    criteria = _criteria(form)
    page = Paginator(queries.search(request.user, criteria), OBJECTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    kept = {
        k: v for k, v in (form.cleaned_data if form.is_valid() else {}).items() if v not in ("", None, False)
    }
    return render(request, "intel/object_list.html", {"form": form, "page": page, "query": urlencode(kept)})


@login_required
def object_detail(request: HttpRequest, stix_id: str) -> HttpResponse:
    obj = queries.get_latest_or_404(request.user, _stix_id(stix_id))
    summary, sightings = queries.sightings(request.user, obj.stix_id)
    context = {
        "obj": obj,
        "json": orjson.dumps(queries.emitted(obj), option=orjson.OPT_INDENT_2).decode(),
        "tlp_name": stix.TLP_NAMES.get(obj.tlp, obj.tlp),
        "recipients": obj.recipient_organisations.order_by("name"),
        "observables": queries.observables_of(obj),
        "correlations": queries.correlations(request.user, obj),
        "summary": summary,
        "sightings": sightings[:50],
        "versions": queries.versions(request.user, obj.stix_id)[:100],
        "holders": queries.holders(request.user, obj.stix_id),
        "retract_form": _retract_form(_user(request), obj),
    }
    return render(request, "intel/object_detail.html", context)


def _retract_form(user: User, obj: StixObject) -> Any:
    # Federation builds on the intel store, not the other way round: imported when needed.
    from minga.taxii.pages import retract_form

    return retract_form(user, obj)


@login_required
def object_bundle(request: HttpRequest, stix_id: str) -> HttpResponse:
    obj = queries.get_latest_or_404(request.user, _stix_id(stix_id))
    document = services.export_bundle(request.user, StixObject.objects.filter(pk=obj.pk), scope=obj.stix_id)
    response = HttpResponse(document, content_type="application/stix+json;version=2.1")
    response["Content-Disposition"] = f'attachment; filename="{obj.type}.json"'
    return response


EXPORTS = {  # format: (media type, file name)
    "stix": ("application/stix+json;version=2.1", "minga-stix-bundle.json"),
    "misp": ("application/json", "minga-misp-event.json"),
    "csv": ("text/csv; charset=utf-8", "minga-indicators.csv"),
}


@login_required
def export(request: HttpRequest) -> HttpResponse:
    """The objects the list's filters find (at most 10,000) as one STIX 2.1 bundle, one MISP
    event or CSV of indicators (``?format=``), audited."""
    form = ObjectFilterForm(request.GET)
    fmt = request.GET.get("format", "stix")
    if fmt not in EXPORTS:
        return HttpResponse(_("Unknown export format."), status=400, content_type="text/plain")
    scope = urlencode({k: v for k, v in form.cleaned_data.items() if v}) if form.is_valid() else ""
    document = services.export_objects(
        request.user, queries.search(request.user, _criteria(form)), scope=scope, fmt=fmt
    )
    media_type, file_name = EXPORTS[fmt]
    response = HttpResponse(document, content_type=media_type)
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
def imports(request: HttpRequest) -> HttpResponse:
    """Upload a file (STIX bundle, MISP events, CSV with its column mapping): it is saved and
    imported in the background; its page shows progress."""
    user = _user(request)
    form = UploadForm(user, request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            job = services.queue_import(
                user,
                form.cleaned_data["organisation"],
                upload.chunks(),
                (upload.name or "bundle.json").replace("\x00", ""),
                form.cleaned_data["tlp"],
                list(form.cleaned_data["recipients"]),
                fmt=form.cleaned_data["format"],
                mapping=form.mapping(),
            )
        except (ValidationError, PermissionDenied) as exc:
            if isinstance(exc, PermissionDenied):
                exc = ValidationError(str(exc))
            attach_service_errors(form, exc)
        else:
            messages.success(request, _("The file is queued for import."))
            return redirect("intel:import_detail", uuid=job.uuid)
    page = Paginator(queries.import_jobs(user), 50).get_page(request.GET.get("page"))
    return render(request, "intel/imports.html", {"form": form, "page": page})


@login_required
def import_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    """An import's progress and, once done, what its objects share with the objects the viewer
    may read, and how often they were sighted."""
    job = get_object_or_404(queries.import_jobs(_user(request)), uuid=uuid)
    found = None
    if job.status == ImportStatus.DONE:
        found = queries.import_correlations(request.user, job)
    context = {"job": job, "recipients": job.recipients.all(), "found": found}
    return render(request, "intel/import_detail.html", context)
