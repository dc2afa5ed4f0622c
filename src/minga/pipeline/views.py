"""Pipeline pages: feeds and their settings, uploads, a run's counts and dead letters, and the
events an organisation may read, with filters, counts and exports."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from minga.core.forms import attach_service_errors
from minga.core.models import Organisation, User
from minga.pipeline import digests, queries, services
from minga.pipeline.choices import RunSource
from minga.pipeline.forms import DigestForm, EventFilterForm, FeedForm, UploadForm
from minga.pipeline.models import Feed, Run

EVENTS_PER_PAGE = 50
DEAD_LETTERS_PER_PAGE = 100


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def _as_validation_error(exc: ValidationError | PermissionDenied) -> ValidationError:
    return exc if isinstance(exc, ValidationError) else ValidationError(str(exc))


def _errors(form: Any, exc: ValidationError | PermissionDenied) -> None:
    attach_service_errors(form, _as_validation_error(exc))


@login_required
def feed_list(request: HttpRequest) -> HttpResponse:
    feeds = services.feeds_visible_to(_user(request)).select_related("owner").order_by("name")
    return render(request, "pipeline/feed_list.html", {"feeds": feeds})


@login_required
@require_http_methods(["GET", "POST"])
def feed_create(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = FeedForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            feed = services.register_feed(user, form.cleaned_data["owner"], **form.settings())
        except (ValidationError, PermissionDenied) as exc:
            _errors(form, exc)
        else:
            messages.success(request, _("The feed is registered."))
            return redirect("pipeline:feed_detail", name=feed.name)
    return render(request, "pipeline/feed_form.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def feed_detail(request: HttpRequest, name: str) -> HttpResponse:
    """A feed's settings and runs, and the upload of a new file."""
    user = _user(request)
    feed = queries.feed_visible_to(user, name)
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            run = services.start_run(
                user,
                feed,
                upload.chunks(),
                (upload.name or "upload").replace("\x00", ""),
                source=RunSource.UPLOAD,
            )
        except (ValidationError, PermissionDenied) as exc:
            _errors(form, exc)
        else:
            messages.success(request, _("The file is kept and queued for processing."))
            return redirect("pipeline:run_detail", uuid=run.uuid)
    page = Paginator(Run.objects.filter(feed=feed).order_by("-created_at", "-pk"), 50).get_page(
        request.GET.get("page")
    )
    context = {
        "feed": feed,
        "form": form,
        "page": page,
        "may_manage": services.may_manage(user, feed.owner_id),
    }
    return render(request, "pipeline/feed_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def feed_edit(request: HttpRequest, name: str) -> HttpResponse:
    user = _user(request)
    feed = queries.feed_visible_to(user, name)
    form = FeedForm(user, request.POST or None, instance=Feed.objects.get(pk=feed.pk))
    if request.method == "POST" and form.is_valid():
        try:
            services.change_feed(user, feed, **form.settings())
        except (ValidationError, PermissionDenied) as exc:
            _errors(form, exc)
        else:
            messages.success(request, _("The feed is changed."))
            return redirect("pipeline:feed_detail", name=feed.name)
    return render(request, "pipeline/feed_form.html", {"form": form, "feed": feed})


@login_required
def run_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    """A run's progress and counts, and its dead letters with line, field and reason."""
    run = get_object_or_404(services.runs_visible_to(_user(request)), uuid=uuid)
    page = Paginator(run.dead_letters.order_by("line"), DEAD_LETTERS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {"run": run, "page": page, "may_manage": services.may_manage(_user(request), run.feed.owner_id)}
    return render(request, "pipeline/run_detail.html", context)


@login_required
@require_POST
def run_reprocess(request: HttpRequest, uuid: UUID) -> HttpResponse:
    run = get_object_or_404(services.runs_visible_to(_user(request)), uuid=uuid)
    try:
        result = services.reprocess_dead_letters(_user(request), run)
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, " ".join(_as_validation_error(exc).messages))
    else:
        messages.success(
            request,
            _("%(stored)s dead letters became events; %(still)s are still invalid.")
            % {"stored": result["stored"], "still": result["still_invalid"]},
        )
    return redirect("pipeline:run_detail", uuid=run.uuid)


@login_required
@require_POST
def run_rerun(request: HttpRequest, uuid: UUID) -> HttpResponse:
    run = get_object_or_404(services.runs_visible_to(_user(request)), uuid=uuid)
    try:
        services.rerun(_user(request), run)
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, " ".join(_as_validation_error(exc).messages))
    else:
        messages.success(request, _("The file is queued for processing again."))
    return redirect("pipeline:run_detail", uuid=run.uuid)


def _day(value: Any) -> datetime | None:
    return timezone.make_aware(datetime.combine(value, time.min)) if value else None


def _criteria(form: EventFilterForm) -> queries.EventFilter | None:
    """The filter the form asks for; None when it names an organisation that does not exist
    (then nothing matches: the form says so, as the API answers 404)."""
    data: dict[str, Any] = {}
    if form.is_bound and not form.is_valid():  # ignore what is not valid, keep the rest
        data = {k: v for k, v in form.cleaned_data.items() if k not in form.errors}
    elif form.is_bound:
        data = form.cleaned_data
    organisation = None
    if data.get("organisation"):
        organisation = Organisation.objects.filter(short_name=data["organisation"]).first()
        if organisation is None:
            form.add_error("organisation", _("No organisation has this short name."))
            return None
    routed = {"yes": True, "no": False}.get(data.get("routed") or "")
    return queries.EventFilter(
        organisation=organisation,
        feed=data.get("feed") or None,
        classification_type=data.get("type") or None,
        classification_taxonomy=data.get("taxonomy") or None,
        ip=data.get("ip") or None,
        fqdn=(data.get("fqdn") or "").strip().lower().rstrip(".") or None,
        since=_day(data.get("since")),
        until=_day(data.get("until")),
        routed=routed,
    )


@login_required
def event_list(request: HttpRequest) -> HttpResponse:
    """The events the user may read, newest first, with filters and counts by type."""
    user = _user(request)
    form = EventFilterForm(request.GET or None)
    criteria = _criteria(form)
    events = queries.events_visible_to(user, criteria or queries.EventFilter())
    if criteria is None:
        events = events.none()
    counts = queries.counts(events)
    paginator = Paginator(events, EVENTS_PER_PAGE)
    # Counted once, with the types, rather than a second time by the paginator.
    paginator.count = counts["total"]  # type: ignore[misc]
    page = paginator.get_page(request.GET.get("page"))
    rows = queries.export_rows(page.object_list)  # type: ignore[arg-type]
    query = urlencode({k: v for k, v in request.GET.items() if k != "page" and v})
    context = {"form": form, "page": page, "rows": rows, "counts": counts, "query": query}
    return render(request, "pipeline/event_list.html", context)


@login_required
def event_export(request: HttpRequest, fmt: str) -> HttpResponse:
    """The filtered events as CSV (formulas neutralised) or JSON; audited."""
    if fmt not in ("csv", "json"):
        raise Http404
    user = _user(request)
    form = EventFilterForm(request.GET or None)
    criteria = _criteria(form)
    if criteria is None:
        raise Http404  # as the API: an organisation that does not exist
    events = queries.events_visible_to(user, criteria)
    document = services.export_events(user, events, fmt=fmt, scope=request.META.get("QUERY_STRING", ""))
    response = HttpResponse(
        document, content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    )
    response["Content-Disposition"] = f'attachment; filename="events.{fmt}"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
def digest_list(request: HttpRequest) -> HttpResponse:
    """The digests of the organisations the user administers, and a form to subscribe one. A
    webhook's signing secret is shown on the answer to its creation, once."""
    user = _user(request)
    organisations = digests.manageable_organisations(user)
    form = DigestForm(organisations, request.POST or None)
    secret = ""
    created = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            created, secret = digests.create_digest(
                user,
                data["organisation"],
                schedule=data["schedule"],
                channel=data["channel"],
                recipients=data["recipients"],
                url=data["url"],
                send_empty=data["send_empty"],
            )
        except (ValidationError, PermissionDenied) as exc:
            _errors(form, exc)
        else:
            if not secret:
                messages.success(request, _("The organisation is subscribed to the digest."))
                return redirect("pipeline:digest_list")
            form = DigestForm(organisations)
    context = {
        "form": form,
        "digests": digests.digests_visible_to(user).order_by("organisation__short_name", "created_at"),
        "may_subscribe": organisations.exists(),
        "secret": secret,
        "created": created,
    }
    return render(request, "pipeline/digest_list.html", context)


@login_required
@require_POST
def digest_action(request: HttpRequest, uuid: UUID, action: str) -> HttpResponse:
    """Pause, resume or remove a digest, or give a webhook digest a new secret (shown once)."""
    user = _user(request)
    digest = get_object_or_404(digests.digests_visible_to(user), uuid=uuid)
    try:
        if action == "pause":
            digests.change_digest(user, digest, is_active=False)
            messages.success(request, _("The digest is paused."))
        elif action == "resume":
            digests.change_digest(user, digest, is_active=True)
            messages.success(request, _("The digest is active again."))
        elif action == "delete":
            digests.delete_digest(user, digest)
            messages.success(request, _("The digest is removed."))
        elif action == "secret":
            secret = digests.new_secret(user, digest)
            context = {
                "form": DigestForm(digests.manageable_organisations(user)),
                "digests": digests.digests_visible_to(user).order_by(
                    "organisation__short_name", "created_at"
                ),
                "may_subscribe": True,
                "secret": secret,
                "created": digest,
            }
            return render(request, "pipeline/digest_list.html", context)
        else:
            raise Http404
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, " ".join(_as_validation_error(exc).messages))
    return redirect("pipeline:digest_list")
