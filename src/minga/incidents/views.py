"""Incident pages: the board with filters, the incident page (timeline, participants and their
acknowledgements, tasks, linked intelligence) and the forms that act on it. Views parse, call a
query helper or a service, and render; a service's refusal comes back as a message."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from minga.core import access
from minga.core.errors import form_errors, messages_of
from minga.core.forms import attach_service_errors
from minga.core.models import User
from minga.incidents import metrics, queries, services
from minga.incidents.choices import AWAITING_ACK, READING_STATUSES, TRANSITIONS, IncidentStatus, Severity
from minga.incidents.forms import (
    AnswerForm,
    BoardFilterForm,
    CommentForm,
    CustodyForm,
    EventsForm,
    EvidenceForm,
    IncidentForm,
    LinkForm,
    MergeForm,
    MetricsForm,
    ObservablesForm,
    ParticipantForm,
    StatusForm,
    TaskForm,
    TaskStatusForm,
)
from minga.incidents.models import Incident

PER_PAGE = 50


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


@login_required
def board(request: HttpRequest) -> HttpResponse:
    form = BoardFilterForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {}
    criteria = queries.Board(**{k: v for k, v in data.items() if v not in ("", None)})
    page = Paginator(queries.board(request.user, criteria), PER_PAGE).get_page(request.GET.get("page"))
    kept = {k: v for k, v in data.items() if v not in ("", None, False)}
    context = {
        "form": form,
        "page": page,
        "query": urlencode(kept),
        "notifications": queries.notifications_for(request.user)[:10],
        "may_open": bool(services.working_organisation_ids(_user(request))),
        "may_measure": bool(services.working_organisation_ids(_user(request)))
        or access.is_network_coordinator(_user(request)),
    }
    return render(request, "incidents/board.html", context)


@login_required
def metrics_page(request: HttpRequest) -> HttpResponse:
    """Time to acknowledge, to first response and to resolve per affected state and severity:
    for the network's coordinators (node admins, who may also ask for the whole node, above a
    privacy threshold) and the analysts who work on incidents (over what they may read)."""
    user = _user(request)
    coordinator = access.is_network_coordinator(user)
    if not coordinator and not services.working_organisation_ids(user):
        raise PermissionDenied(_("The incident metrics are for coordinators and analysts."))
    form = MetricsForm(request.GET or None, initial={"by_priority": True})
    data: dict[str, Any] = form.cleaned_data if form.is_bound and form.is_valid() else {"by_priority": True}
    since, until = data.get("since"), data.get("until")
    error = ""
    try:
        result = metrics.incident_metrics(
            user,
            by_priority=bool(data.get("by_priority")),
            since=datetime.combine(since, time.min, tzinfo=UTC) if since else None,
            until=datetime.combine(until, time.min, tzinfo=UTC) if until else None,
            node_wide=bool(data.get("node_wide")) and coordinator,
            min_group_size=data.get("min_group_size"),
        )
    except ValidationError as exc:
        error = messages_of(exc)
        result = metrics.Metrics(rows=[], node_wide=False, min_group_size=1)
    severities = dict(Severity.choices)
    rows = [
        {
            "state": row.state,
            "priority": severities.get(row.priority, row.priority),
            "incidents": row.incidents,
            "measures": [
                (count, (metrics.duration_text(median), metrics.duration_text(p90)))
                for count, median, p90 in (
                    (row.acknowledged, row.median_to_acknowledge, row.p90_to_acknowledge),
                    (row.responded, row.median_to_first_response, row.p90_to_first_response),
                    (row.resolved, row.median_to_resolve, row.p90_to_resolve),
                )
            ],
        }
        for row in result.rows
    ]
    context = {"form": form, "result": result, "rows": rows, "coordinator": coordinator, "error": error}
    return render(request, "incidents/metrics.html", context)


def _form_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": data["title"],
        "description": data["description"],
        "type": data["type"],
        "severity": data["severity"],
        "tlp": data["tlp"],
        "pap": data["pap"],
        "affected_states": data["affected_states"],
        "affected_sectors": data["affected_sectors"],
        "affected_organisations": data["affected_organisations"],
    }


@login_required
@require_http_methods(["GET", "POST"])
def incident_create(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    # ?link=<STIX id>: opened from an intelligence object's page.
    initial = {"links": request.GET.get("link", "")[:300]}
    form = IncidentForm(user, request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            incident = services.open_incident(
                user,
                data["organisation"],
                coordinating_organisation=data["coordinator"],
                observables=data["observables"].splitlines(),
                links=[line.strip() for line in data["links"].splitlines() if line.strip()],
                **_form_kwargs(data),
            )
        except (ValidationError, PermissionDenied) as exc:
            attach_service_errors(
                form, exc if isinstance(exc, ValidationError) else ValidationError(str(exc))
            )
        else:
            messages.success(request, _("Incident %(ref)s opened.") % {"ref": incident.reference})
            return redirect("incidents:detail", reference=incident.reference)
    return render(request, "incidents/incident_form.html", {"form": form, "incident": None})


def _incident(request: HttpRequest, reference: str) -> Incident:
    return queries.get_or_404(request.user, reference[:20])


@login_required
@require_http_methods(["GET", "POST"])
def incident_edit(request: HttpRequest, reference: str) -> HttpResponse:
    user = _user(request)
    incident = _incident(request, reference)
    if not services.may_coordinate(user, incident):
        raise PermissionDenied(
            _("Only the reporting and coordinating organisations may change the incident.")
        )
    initial = {
        "title": incident.title,
        "description": incident.description,
        "type": incident.type,
        "severity": incident.severity,
        "tlp": incident.tlp,
        "pap": incident.pap,
        "coordinator": incident.coordinating_organisation.short_name,
        "affected_states": list(incident.affected_states.all()),
        "affected_sectors": list(incident.affected_sectors.all()),
        "affected_organisations": " ".join(
            incident.affected_organisations.values_list("short_name", flat=True)
        ),
    }
    form = IncidentForm(user, request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        changes = _form_kwargs(data)
        if data["coordinator"] is not None:
            changes["coordinating_organisation"] = data["coordinator"]
        try:
            services.update_incident(user, incident, **changes)
        except (ValidationError, PermissionDenied) as exc:
            attach_service_errors(
                form, exc if isinstance(exc, ValidationError) else ValidationError(str(exc))
            )
        else:
            messages.success(request, _("Incident %(ref)s changed.") % {"ref": incident.reference})
            return redirect("incidents:detail", reference=incident.reference)
    return render(request, "incidents/incident_form.html", {"form": form, "incident": incident})


@login_required
def incident_detail(request: HttpRequest, reference: str) -> HttpResponse:
    user = _user(request)
    incident = _incident(request, reference)
    participants = list(queries.participants(incident))
    own = services.working_organisation_ids(user)
    answering = [p for p in participants if p.organisation_id in own and p.status in READING_STATUSES]
    context = {
        "incident": incident,
        "participants": participants,
        "proposed": [p for p in participants if p.status == "proposed"],
        "answering": answering,
        "awaiting": AWAITING_ACK,
        "tasks": queries.tasks(incident),
        "timeline": queries.timeline(incident),
        "linked": queries.linked_objects(user, incident),
        "events": queries.linked_events(user, incident),
        "events_form": EventsForm(),
        "observables": incident.observables.all(),
        "affected_states": incident.affected_states.all(),
        "affected_sectors": incident.affected_sectors.all(),
        "affected_organisations": incident.affected_organisations.all(),
        "may_coordinate": services.may_coordinate(user, incident),
        "may_contribute": services.may_contribute(user, incident),
        "evidence": (queries.evidence_of(incident) if services.may_handle_evidence(user, incident) else None),
        "status_form": StatusForm(),
        "next_statuses": [
            (s, IncidentStatus(s).label) for s in IncidentStatus.values if s in TRANSITIONS[incident.status]
        ],
        "comment_form": CommentForm(),
        "observables_form": ObservablesForm(),
        "participant_form": ParticipantForm(user),
        "task_form": TaskForm(user),
        "link_form": LinkForm(),
        "merge_form": MergeForm(),
        "task_statuses": TaskStatusForm().fields["status"].choices,  # type: ignore[attr-defined]
    }
    return render(request, "incidents/incident_detail.html", context)


def _act(request: HttpRequest, reference: str, form: Any, action: Any, done: str) -> HttpResponse:
    """Run one action of the incident page: a valid form calls the service; a refusal or an
    invalid form comes back as a message on the page."""
    if not form.is_valid():
        messages.error(request, form_errors(form) or _("The form is not valid."))
    else:
        try:
            action(form.cleaned_data)
        except (ValidationError, PermissionDenied) as exc:
            messages.error(request, messages_of(exc))
        else:
            messages.success(request, done)
    return redirect("incidents:detail", reference=reference)


@login_required
@require_POST
def incident_status(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _incident(request, reference)
    return _act(
        request,
        incident.reference,
        StatusForm(request.POST),
        lambda d: services.change_status(_user(request), incident, d["status"], d["reason"]),
        _("Status changed."),
    )


@login_required
@require_POST
def incident_comment(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _incident(request, reference)
    return _act(
        request,
        incident.reference,
        CommentForm(request.POST),
        lambda d: services.comment(_user(request), incident, d["text"]),
        _("Comment added."),
    )


@login_required
@require_POST
def incident_observables(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _incident(request, reference)
    return _act(
        request,
        incident.reference,
        ObservablesForm(request.POST),
        lambda d: services.add_observables(_user(request), incident, d["values"].splitlines()),
        _("Observables added."),
    )


@login_required
@require_POST
def incident_propose(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _incident(request, reference)
    try:
        proposed = services.propose_participants(_user(request), incident)
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, messages_of(exc))
    else:
        if proposed:
            messages.success(
                request, _("%(n)d organisation(s) proposed: add those you choose.") % {"n": len(proposed)}
            )
        else:
            messages.info(request, _("The observables name no other organisation."))
    return redirect("incidents:detail", reference=incident.reference)


@login_required
@require_POST
def incident_participant(request: HttpRequest, reference: str) -> HttpResponse:
    """Add an organisation as a participant, or (``action=remove``) take it out."""
    incident = _incident(request, reference)
    user = _user(request)
    form = ParticipantForm(user, request.POST)
    if request.POST.get("action") == "remove":
        return _act(
            request,
            incident.reference,
            form,
            lambda d: services.remove_participant(user, incident, d["organisation"], d["reason"]),
            _("Participant removed."),
        )
    return _act(
        request,
        incident.reference,
        form,
        lambda d: services.add_participant(user, incident, d["organisation"]),
        _("Participant added; its 24/7 contact will be notified."),
    )


@login_required
@require_POST
def incident_answer(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _incident(request, reference)
    user = _user(request)

    def answer(data: dict[str, Any]) -> None:
        if data["answer"] == "acknowledge":
            services.acknowledge(user, incident)
        else:
            services.decline(user, incident, data["reason"])

    return _act(request, incident.reference, AnswerForm(request.POST), answer, _("Answer recorded."))


@login_required
@require_POST
def incident_task(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _incident(request, reference)
    user = _user(request)

    def add(data: dict[str, Any]) -> None:
        due = datetime.combine(data["due"], time(23, 59), tzinfo=UTC) if data["due"] else None
        services.add_task(user, incident, title=data["title"], organisation=data["organisation"], due_at=due)

    return _act(request, incident.reference, TaskForm(user, request.POST), add, _("Task assigned."))


@login_required
@require_POST
def incident_task_status(request: HttpRequest, reference: str, task_id: int) -> HttpResponse:
    incident = _incident(request, reference)
    task = get_object_or_404(incident.tasks.select_related("incident"), pk=min(task_id, 2**53))
    return _act(
        request,
        incident.reference,
        TaskStatusForm(request.POST),
        lambda d: services.set_task_status(_user(request), task, d["status"]),
        _("Task changed."),
    )


@login_required
@require_POST
def incident_link(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _incident(request, reference)
    user = _user(request)

    def link(data: dict[str, Any]) -> None:
        if data["action"] == "remove":
            services.unlink_object(user, incident, data["stix_id"])
        else:
            services.link_object(user, incident, data["stix_id"])

    return _act(request, incident.reference, LinkForm(request.POST), link, _("Links changed."))


@login_required
@require_POST
def incident_events(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _incident(request, reference)
    return _act(
        request,
        incident.reference,
        EventsForm(request.POST),
        lambda d: services.link_events(_user(request), incident, d["events"]),
        _("Feed events linked."),
    )


@login_required
@require_POST
def incident_merge(request: HttpRequest, reference: str) -> HttpResponse:
    duplicate = _incident(request, reference)
    form = MergeForm(request.POST)
    if form.is_valid():
        survivor = queries.visible(request.user).filter(reference=form.cleaned_data["survivor"]).first()
        if survivor is None:
            messages.error(
                request, _("No incident you may read is %(ref)s.") % {"ref": form.cleaned_data["survivor"]}
            )
            return redirect("incidents:detail", reference=duplicate.reference)
        try:
            services.merge_incident(_user(request), duplicate, survivor, form.cleaned_data["reason"])
        except (ValidationError, PermissionDenied) as exc:
            messages.error(request, messages_of(exc))
            return redirect("incidents:detail", reference=duplicate.reference)
        messages.success(
            request,
            _("%(dup)s merged into %(ref)s.") % {"dup": duplicate.reference, "ref": survivor.reference},
        )
        return redirect("incidents:detail", reference=survivor.reference)
    messages.error(request, form_errors(form))
    return redirect("incidents:detail", reference=duplicate.reference)


@login_required
def incident_stix(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _incident(request, reference)
    response = HttpResponse(
        services.export_stix(request.user, incident), content_type="application/stix+json;version=2.1"
    )
    response["Content-Disposition"] = f'attachment; filename="{incident.reference}.json"'
    return response


@login_required
def incident_pdf(request: HttpRequest, reference: str) -> HttpResponse:
    """The PDF summary, for readers of the incident (404 for anyone else); audited as an export."""
    incident = _incident(request, reference)
    response = HttpResponse(services.export_pdf(request.user, incident), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{incident.reference}.pdf"'
    return response


# --- evidence --------------------------------------------------------------------------------
#
# Every evidence page starts from ``queries.evidence_incident_or_404``: who does not take part
# in the incident gets 404, for the register form as for an item.


@login_required
@require_http_methods(["GET", "POST"])
def evidence_create(request: HttpRequest, reference: str) -> HttpResponse:
    user = _user(request)
    incident = queries.evidence_incident_or_404(user, reference[:20])
    form = EvidenceForm(user, request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        upload = data["file"]
        try:
            evidence = services.register_evidence(
                user,
                incident,
                chunks=upload.chunks(),
                file_name=upload.name or "",
                media_type=upload.content_type or "",
                title=data["title"],
                description=data["description"],
                acquired_at=data["acquired_at"],
                acquired_by=data["acquired_by"],
                source=data["source"],
                custodian_organisation=data["custodian"],
                custodian_person=data["custodian_person"] or None,
                reason=data["reason"],
                limit=settings.MINGA_MAX_REQUEST_BYTES,
            )
        except services.EvidenceTooLarge as exc:
            attach_service_errors(form, exc)
            status = 413
        except (ValidationError, PermissionDenied) as exc:
            attach_service_errors(
                form, exc if isinstance(exc, ValidationError) else ValidationError(str(exc))
            )
        else:
            messages.success(request, _("Evidence registered: SHA-256 %(sha)s.") % {"sha": evidence.sha256})
            return redirect("incidents:evidence", reference=incident.reference, evidence_id=evidence.pk)
    elif request.method == "POST":
        status = 400
    context = {
        "incident": incident,
        "form": form,
        "max_bytes": min(services.evidence_limit(), settings.MINGA_MAX_REQUEST_BYTES),
    }
    return render(request, "incidents/evidence_form.html", context, status=status)


@login_required
def evidence_detail(request: HttpRequest, reference: str, evidence_id: int) -> HttpResponse:
    user = _user(request)
    incident = queries.evidence_incident_or_404(user, reference[:20])
    evidence = queries.evidence_or_404(incident, evidence_id)
    context = {
        "incident": incident,
        "evidence": evidence,
        "custody": queries.custody_log(evidence),
        "custody_form": CustodyForm(user),
        "may_record": services.may_coordinate(user, incident)
        or evidence.custodian_organisation_id in services.working_organisation_ids(user),
    }
    return render(request, "incidents/evidence_detail.html", context)


@login_required
@require_POST
def evidence_custody(request: HttpRequest, reference: str, evidence_id: int) -> HttpResponse:
    user = _user(request)
    incident = queries.evidence_incident_or_404(user, reference[:20])
    evidence = queries.evidence_or_404(incident, evidence_id)
    form = CustodyForm(user, request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form) or _("The form is not valid."))
    else:
        data = form.cleaned_data
        try:
            services.record_custody(
                user,
                evidence,
                data["action"],
                reason=data["reason"],
                to_organisation=data["to_organisation"],
                to_person=data["to_person"],
            )
        except (ValidationError, PermissionDenied) as exc:
            messages.error(request, messages_of(exc))
        else:
            messages.success(request, _("Custody recorded."))
    return redirect("incidents:evidence", reference=incident.reference, evidence_id=evidence.pk)


@login_required
@require_POST
def evidence_verify(request: HttpRequest, reference: str, evidence_id: int) -> HttpResponse:
    user = _user(request)
    incident = queries.evidence_incident_or_404(user, reference[:20])
    evidence = queries.evidence_or_404(incident, evidence_id)
    try:
        check = services.verify_evidence(user, evidence)
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, messages_of(exc))
    else:
        if check.ok:
            messages.success(request, _("The stored file matches its SHA-256."))
        elif not check.found:
            messages.error(request, _("The stored file is missing. Tell the node's operator."))
        else:
            messages.error(
                request,
                _(
                    "The stored file does not match its SHA-256: it hashes to %(sha)s. "
                    "Tell the node's operator."
                )
                % {"sha": check.sha256},
            )
    return redirect("incidents:evidence", reference=incident.reference, evidence_id=evidence.pk)


@login_required
def evidence_download(request: HttpRequest, reference: str, evidence_id: int) -> HttpResponseBase:
    from minga.incidents.api import evidence_response

    user = _user(request)
    incident = queries.evidence_incident_or_404(user, reference[:20])
    evidence = queries.evidence_or_404(incident, evidence_id)
    try:
        handle = services.open_evidence(user, evidence)
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, messages_of(exc))
        return redirect("incidents:evidence", reference=incident.reference, evidence_id=evidence.pk)
    return evidence_response(handle, evidence)
