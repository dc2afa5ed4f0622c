"""Assistance pages: the requests of my organisations (incoming and outgoing) with their deadline
clocks, the new-request form, the request page (thread, attachments, actions, deadlines with the
time left) and the coordinators' SLA view. Views parse, call a query helper or a service, and
render; a service's refusal comes back as a message.

Times are stored in UTC and shown in the reader's time zone (``User.time_zone``, set under My
account, Preferences), whatever the browser says."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from minga.assistance import queries, services
from minga.assistance.choices import CLOSABLE, OPEN_STATUSES, WITHDRAWABLE, RequestStatus
from minga.assistance.forms import (
    AnswerForm,
    AttachmentForm,
    DeadlineForm,
    MessageForm,
    ReasonForm,
    RequestForm,
)
from minga.core import access
from minga.core.errors import form_errors, messages_of
from minga.core.forms import attach_service_errors
from minga.core.models import User


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def reader_time_zone(user: Any) -> str:
    """The reader's time zone for showing times; UTC if unset or unknown."""
    name = getattr(user, "time_zone", "") or "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return name


@login_required
def request_list(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    context = {
        "incoming": queries.inbox(user)[:200],
        "outgoing": queries.outbox(user)[:200],
        "may_request": bool(services.working_organisation_ids(user)),
        "is_coordinator": access.is_network_coordinator(user),
        "reader_tz": reader_time_zone(user),
        "open_statuses": OPEN_STATUSES,
    }
    return render(request, "assistance/request_list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def request_create(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    initial = {"requested_state": request.GET.get("state", "")[:2].upper() or None}
    form = RequestForm(user, request.POST or None, initial=initial)
    if initial["requested_state"]:
        state = form.fields["requested_state"].queryset.filter(code=initial["requested_state"]).first()  # type: ignore[attr-defined]
        form.initial["requested_state"] = state.pk if state else None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            item = services.create_request(
                user,
                data["organisation"],
                requested_state=data["requested_state"],
                requested_organisation=data["requested_organisation"],
                kind=data["kind"],
                priority=data["priority"],
                subject=data["subject"],
                description=data["description"],
                legal_basis=data["legal_basis"],
                legal_reference=data["legal_reference"],
            )
        except (ValidationError, PermissionDenied) as exc:
            attach_service_errors(
                form, exc if isinstance(exc, ValidationError) else ValidationError(str(exc))
            )
        else:
            if not request.POST.get("submit_now"):
                messages.success(request, _("Draft %(ref)s saved.") % {"ref": item.reference})
                return redirect("assistance:detail", reference=item.reference)
            # Refused at submission (no confirmed 24/7 desk): the draft is kept, the reason shown.
            return _done(
                request,
                item.reference,
                lambda: services.submit(user, item),
                _("Request %(ref)s submitted; the 24/7 desk of %(org)s is told.")
                % {"ref": item.reference, "org": item.requested_organisation.name},
            )
    return render(request, "assistance/request_form.html", {"form": form, "deadlines": _deadline_rows()})


@login_required
@require_http_methods(["GET", "POST"])
def request_edit(request: HttpRequest, reference: str) -> HttpResponse:
    """Change a draft, its target included (e.g. after a refused submission)."""
    user = _user(request)
    item = _content(request, reference)
    if not services.may_request(user, item) or item.status != RequestStatus.DRAFT:
        raise PermissionDenied(
            _("Only the requesting organisation changes a request, and only while a draft.")
        )
    initial = {f: getattr(item, f) for f in services.CONTENT_FIELDS}
    initial["requested_state"] = item.requested_state_id
    if item.requested_organisation != services.designated_organisation(item.requested_state):
        initial["requested_organisation"] = item.requested_organisation.short_name
    form = RequestForm(user, request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.update_draft(
                user,
                item,
                requested_state=data["requested_state"],
                requested_organisation=data["requested_organisation"],
                **{f: data[f] for f in services.CONTENT_FIELDS},
            )
        except (ValidationError, PermissionDenied) as exc:
            attach_service_errors(
                form, exc if isinstance(exc, ValidationError) else ValidationError(str(exc))
            )
        else:
            messages.success(request, _("Draft %(ref)s changed.") % {"ref": item.reference})
            return redirect("assistance:detail", reference=item.reference)
    context = {"form": form, "item": item, "deadlines": _deadline_rows()}
    return render(request, "assistance/request_form.html", context)


def _deadline_rows() -> list[dict[str, Any]]:
    from minga.assistance.choices import Priority

    return [
        {"priority": Priority(p).label, "value": p, "acknowledge": ack, "respond": respond}
        for p, (ack, respond) in services.all_deadlines().items()
    ]


@login_required
def request_detail(request: HttpRequest, reference: str) -> HttpResponse:
    user = _user(request)
    found = queries.get_or_404(user, reference)
    item = found.request
    context: dict[str, Any] = {
        "item": item,
        "content": found.content,
        "reader_tz": reader_time_zone(user),
        "acknowledge_left": queries.duration_text(item.acknowledge_left),
        "respond_left": queries.duration_text(item.respond_left),
    }
    if found.content:
        may_request = services.may_request(user, item)
        may_answer = services.may_answer(user, item)
        context.update(
            {
                "thread": queries.thread(item),
                "attachments": queries.attachments(item),
                "may_request": may_request,
                "may_answer": may_answer,
                "may_write": (may_request or may_answer)
                and item.status != RequestStatus.CLOSED
                and (item.status != RequestStatus.DRAFT or may_request),
                "can_submit": may_request and item.status == RequestStatus.DRAFT,
                "can_withdraw": may_request and item.status in WITHDRAWABLE,
                "can_acknowledge": may_answer and item.status == RequestStatus.SUBMITTED,
                "can_start": may_answer
                and item.status in (RequestStatus.SUBMITTED, RequestStatus.ACKNOWLEDGED),
                "can_answer": may_answer and item.status in OPEN_STATUSES,
                "can_close": (may_request or may_answer) and item.status in CLOSABLE,
                "answer_form": AnswerForm(),
                "message_form": MessageForm(auto_id="message-%s"),
                "attachment_form": AttachmentForm(),
                "max_attachment_bytes": services.max_attachment_bytes(),
            }
        )
    return render(request, "assistance/request_detail.html", context)


def _content(request: HttpRequest, reference: str) -> Any:
    return queries.get_content_or_404(request.user, reference)


def _done(request: HttpRequest, reference: str, action: Any, done: str) -> HttpResponse:
    try:
        action()
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, messages_of(exc))
    else:
        messages.success(request, done)
    return redirect("assistance:detail", reference=reference)


@login_required
@require_POST
def request_act(request: HttpRequest, reference: str) -> HttpResponse:
    """Submit, acknowledge, start, withdraw or close (the ``action`` field)."""
    user = _user(request)
    item = _content(request, reference)
    action = request.POST.get("action", "")
    reason = ReasonForm(request.POST)
    actions = {
        "submit": (lambda: services.submit(user, item), _("Request submitted; the 24/7 desk is told.")),
        "acknowledge": (lambda: services.acknowledge(user, item), _("Request acknowledged.")),
        "start": (lambda: services.start(user, item), _("Work on the request started.")),
        "withdraw": (
            lambda: services.withdraw(user, item, reason.cleaned_data["reason"] if reason.is_valid() else ""),
            _("Request withdrawn."),
        ),
        "close": (lambda: services.close(user, item), _("Request closed.")),
    }
    if action not in actions:
        messages.error(request, _("Unknown action."))
        return redirect("assistance:detail", reference=item.reference)
    run, done = actions[action]
    return _done(request, item.reference, run, done)


@login_required
@require_POST
def request_answer(request: HttpRequest, reference: str) -> HttpResponse:
    item = _content(request, reference)
    form = AnswerForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect("assistance:detail", reference=item.reference)
    data = form.cleaned_data
    return _done(
        request,
        item.reference,
        lambda: services.answer(_user(request), item, data["outcome"], data["text"]),
        _("Answer sent."),
    )


@login_required
@require_POST
def request_message(request: HttpRequest, reference: str) -> HttpResponse:
    item = _content(request, reference)
    form = MessageForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect("assistance:detail", reference=item.reference)
    return _done(
        request,
        item.reference,
        lambda: services.post_message(_user(request), item, form.cleaned_data["text"]),
        _("Message added."),
    )


@login_required
@require_POST
def request_attach(request: HttpRequest, reference: str) -> HttpResponse:
    item = _content(request, reference)
    form = AttachmentForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect("assistance:detail", reference=item.reference)
    upload = form.cleaned_data["file"]
    return _done(
        request,
        item.reference,
        lambda: services.add_attachment(
            _user(request),
            item,
            filename=upload.name or "attachment",
            content_type=upload.content_type or "",
            chunks=upload.chunks(),
        ),
        _("File attached."),
    )


@login_required
def attachment_download(
    request: HttpRequest, reference: str, attachment_id: int
) -> HttpResponse | FileResponse:
    attachment = queries.attachment_or_404(request.user, reference, attachment_id)
    try:
        handle = services.open_attachment(request.user, attachment)
    except ValidationError as exc:
        messages.error(request, messages_of(exc))
        return redirect("assistance:detail", reference=attachment.request.reference)
    return FileResponse(
        handle, as_attachment=True, filename=attachment.filename, content_type="application/octet-stream"
    )


@login_required
@require_http_methods(["GET", "POST"])
def sla(request: HttpRequest) -> HttpResponse:
    """The coordinators' view: open requests with their time left, compliance per state, the
    metrics per state and priority, and the network's deadlines (which node admins change)."""
    user = _user(request)
    if not access.is_network_coordinator(user):
        raise PermissionDenied(_("The SLA view is for the network's coordinators."))
    form = DeadlineForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.set_deadlines(
                    user,
                    data["priority"],
                    acknowledge_within=timedelta(hours=float(Decimal(data["acknowledge_hours"]))),
                    respond_within=timedelta(hours=float(Decimal(data["respond_hours"]))),
                )
            except (ValidationError, PermissionDenied) as exc:
                messages.error(request, messages_of(exc))
            else:
                messages.success(request, _("Deadlines changed; requests submitted from now on use them."))
                return redirect("assistance:sla")
        else:
            messages.error(request, form_errors(form))
    open_rows = [
        (item, queries.duration_text(item.acknowledge_left), queries.duration_text(item.respond_left))
        for item in queries.open_requests(user)[:500]
    ]
    context = {
        "open_rows": open_rows,
        "per_state": queries.response_metrics(user, by_priority=False),
        "per_priority": queries.response_metrics(user, by_priority=True),
        "deadlines": _deadline_rows(),
        "form": form,
        "reader_tz": reader_time_zone(user),
    }
    return render(request, "assistance/sla.html", context)
