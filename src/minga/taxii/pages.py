"""Federation pages: the peers page (node admins) with sync state, lag, errors and counts, where
peers are added, synced, given their token and removed; the retractions issued here with their
status per node; and the "Retract everywhere" form of an object's page. (``views.py`` holds
the TAXII protocol endpoints.)"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from minga.core import access
from minga.core.forms import attach_service_errors
from minga.core.models import Organisation, User
from minga.intel import queries as intel_queries
from minga.intel.models import StixObject
from minga.intel.services import IMPORTING_ROLES
from minga.taxii import federation, peering, queries, retraction
from minga.taxii.forms import CredentialForm, PeerForm, RetractForm


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def _rows(user: User) -> list[dict[str, Any]]:
    now = timezone.now()
    return [
        {
            "peer": peer,
            "state": queries.state(peer),
            "lag": queries.lag_seconds(peer, now),
            "hosts": queries.hosts(peer),
            "due": peer.next_attempt_at is None or peer.next_attempt_at <= now,
        }
        for peer in queries.peers(user)
    ]


@login_required
@require_http_methods(["GET", "POST"])
def peer_list(request: HttpRequest) -> HttpResponse:
    """The peers and their sync state; the "Add a peer" form, whose answer shows the token for
    the peer's node once (it is not kept in clear anywhere)."""
    user = _user(request)
    queries.require_node_admin(user)
    form = PeerForm(request.POST or None)
    issued = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            issued = federation.add_peer(
                user,
                name=data["name"],
                url=peering.check_url(data["url"]),
                kind=data["kind"],
                direction=data["direction"],
                hosts=form.host_names(),
                credential=data["token"],
                collection_id=data["collection_id"],
                interval=data["interval"],
                organisation=data["organisation"],
                is_member_node=data["is_member_node"],
            )
        except ValidationError as exc:
            attach_service_errors(form, exc)
        else:
            form = PeerForm()
    status = 400 if request.method == "POST" and issued is None else 200
    context = {"rows": _rows(user), "form": form, "issued": issued, "credential_form": CredentialForm()}
    return render(request, "taxii/peer_list.html", context, status=status)


@login_required
@require_POST
def peer_sync(request: HttpRequest, name: str) -> HttpResponse:
    peer = queries.peer_or_404(request.user, name)
    try:
        peering.request_sync(_user(request), peer)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("Sync of %(name)s queued.") % {"name": peer.name})
    return redirect("federation:peers")


@login_required
@require_POST
def peer_token(request: HttpRequest, name: str) -> HttpResponse:
    peer = queries.peer_or_404(request.user, name)
    form = CredentialForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Give the token the peer issued for this node."))
        return redirect("federation:peers")
    try:
        federation.set_credential(
            _user(request), peer, form.cleaned_data["token"], form.cleaned_data["username"]
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("Token for %(name)s kept (sealed).") % {"name": peer.name})
    return redirect("federation:peers")


@login_required
@require_http_methods(["GET", "POST"])
def peer_remove(request: HttpRequest, name: str) -> HttpResponse:
    """Asks first; removing disables the peer's account here and revokes its tokens."""
    peer = queries.peer_or_404(request.user, name)
    if request.method == "POST":
        federation.remove_peer(_user(request), peer)
        messages.success(request, _("Peer %(name)s removed; its account here is disabled.") % {"name": name})
        return redirect("federation:peers")
    return render(request, "taxii/peer_remove.html", {"peer": peer, "hosts": queries.hosts(peer)})


@login_required
def retraction_list(request: HttpRequest) -> HttpResponse:
    """Retractions issued on this node that the user may read, with, per node, whether each
    was applied, held nothing, was refused, or is pending."""
    return render(request, "taxii/retraction_list.html", {"retractions": queries.issued_here(request.user)})


# --- "Retract everywhere" on an object's page --------------------------------------------------


def importing_organisations(user: User) -> QuerySet[Organisation]:
    """The organisations ``user`` may import (and so retract) in the name of."""
    return Organisation.objects.filter(
        memberships__user=user, memberships__is_active=True, memberships__role__in=IMPORTING_ROLES
    ).distinct()


def retract_form(user: User, obj: StixObject, data: Any = None) -> RetractForm | None:
    """The "Retract everywhere" form for ``obj``, or None if it is not for ``user``: only an
    object shared on this node (not a copy received from a peer), not TLP:RED (which never
    left), for whoever may import for its originating organisation."""
    if obj.origin_node or obj.received_from or obj.tlp == "red":
        return None
    organisations = importing_organisations(user)
    if not organisations.filter(pk=obj.origin_organisation_id).exists():  # type: ignore[attr-defined]
        return None
    current = _recipients_of(obj)
    # Narrowing an AMBER object may only remove recipients: offer those it has. A GREEN or
    # CLEAR one may be narrowed to AMBER for any organisations of the network.
    choices = current if obj.tlp in access.AMBER_LEVELS else access.organisations_visible_to(user)
    return RetractForm(
        data,
        organisations=organisations,
        recipients=choices.order_by("short_name"),
        initial={
            "stix_id": obj.stix_id,
            "organisation": obj.origin_organisation.short_name,
            "recipients": list(current.values_list("short_name", flat=True)),
        },
    )


def _recipients_of(obj: StixObject) -> QuerySet[Organisation]:
    """The recipients of every version the organisation shared of ``obj`` here: what a
    retraction narrows from."""
    through = StixObject.recipient_organisations.through
    versions = StixObject.objects.filter(
        stix_id=obj.stix_id,
        origin_organisation_id=obj.origin_organisation_id,  # type: ignore[attr-defined]
        origin_node="",
        received_from="",
    )
    return Organisation.objects.filter(
        pk__in=through.objects.filter(stixobject__in=versions).values("organisation_id")
    )


@login_required
@require_POST
def retract(request: HttpRequest) -> HttpResponse:
    """Issue a retraction from an object's page (``retraction.retract`` checks who may, and
    audits it), then go back to the page with what happened."""
    user = _user(request)
    obj = intel_queries.get_latest_or_404(user, str(request.POST.get("stix_id", ""))[:300])
    back = reverse("intel:object_detail", args=[obj.stix_id])
    form = retract_form(user, obj, request.POST)
    if form is None:
        messages.error(
            request, _("You may not retract this object: it was not shared here by your organisation.")
        )
        return redirect(back)
    if not form.is_valid():
        problems = [
            f"{form.fields[f].label}: {' '.join(map(str, e))}" if f in form.fields else " ".join(map(str, e))
            for f, e in form.errors.items()
        ]
        messages.error(request, " ".join(problems))
        return redirect(back)
    data = form.cleaned_data
    try:
        issued = retraction.retract(
            user,
            data["organisation"],
            obj.stix_id,
            data["action"],
            tlp=data["tlp"],
            recipients=list(data["recipients"]),
            reason=data["reason"],
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(back)
    messages.success(
        request,
        _(
            "Retraction issued: %(copies)d version(s) changed here; every node that received a copy "
            "applies it at its next sync. Follow it under Retractions."
        )
        % {"copies": issued.copies_here},
    )
    if data["action"] == "delete":
        return redirect("federation:retractions")
    return redirect(back)
