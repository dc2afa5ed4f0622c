"""Pages of the core UI. Thin: parse the request, call a service or a query helper, render."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import DatabaseError, connection
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_tasks_db.models import DBTaskResult

from minga.core import access, audit, services, totp
from minga.core.choices import ORG_MANAGER_ROLES
from minga.core.forms import (
    AuditFilterForm,
    LoginForm,
    MembershipAddForm,
    OrganisationForm,
    ProfileForm,
    RoleForm,
    TokenCreateForm,
    TotpCodeForm,
    UserCreateForm,
    attach_service_errors,
)
from minga.core.models import ApiToken, AuditEntry, Membership, Organisation, User

PENDING_LOGIN = "minga_pending_login"
PENDING_TOTP_SECRET = "minga_pending_totp_secret"  # noqa: S105  (a session key)
MAX_SECOND_FACTOR_TRIES = 5
SECOND_FACTOR_WINDOW = timedelta(minutes=5)
TASK_STATUS_LABELS = {
    "READY": gettext_lazy("waiting"),
    "RUNNING": gettext_lazy("running"),
    "SUCCESSFUL": gettext_lazy("done"),
    "FAILED": gettext_lazy("failed"),
}


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def _require_node_admin(request: HttpRequest) -> None:
    if not _user(request).is_node_admin:
        raise PermissionDenied(_("Only node admins may see this page."))


def _page(request: HttpRequest, queryset: Any, per_page: int = 50) -> Any:
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def _safe_next(request: HttpRequest, fallback: str = "core:home") -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    # Only a path on this node: anything else would be taken for a view name or leave the site.
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse(fallback)


# --- health ----------------------------------------------------------------------------------


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """The database answers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return JsonResponse({"status": "unavailable", "database": str(exc)[:200]}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


# --- login -----------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(_safe_next(request))
    form = LoginForm(request, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.get_user()
        if user.has_totp:
            request.session[PENDING_LOGIN] = {
                "user": user.pk,
                "backend": user.backend,
                "since": timezone.now().isoformat(),
                "tries": 0,
            }
            return redirect(f"{reverse('core:login_verify')}?{urlencode({'next': _safe_next(request)})}")
        login(request, user)
        return redirect(_safe_next(request))
    return render(request, "core/login.html", {"form": form, "next": request.GET.get("next", "")})


@require_http_methods(["GET", "POST"])
def login_verify(request: HttpRequest) -> HttpResponse:
    """Second step of a login for accounts with TOTP."""
    pending = request.session.get(PENDING_LOGIN)
    expired = pending is None or (
        timezone.now() - datetime.fromisoformat(pending["since"]) > SECOND_FACTOR_WINDOW
    )
    if expired:
        request.session.pop(PENDING_LOGIN, None)
        messages.error(request, _("Your sign-in expired. Please enter your password again."))
        return redirect("core:login")
    assert pending is not None
    user = get_object_or_404(User, pk=pending["user"], is_active=True)
    form = TotpCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if services.check_totp(user, form.cleaned_data["code"]):
            del request.session[PENDING_LOGIN]
            login(request, user, backend=pending["backend"])
            return redirect(_safe_next(request))
        # Counted by the login throttle like a wrong password.
        user_login_failed.send(
            sender=__name__, credentials={"username": user.get_username()}, request=request
        )
        pending["tries"] += 1
        if pending["tries"] >= MAX_SECOND_FACTOR_TRIES:
            request.session.pop(PENDING_LOGIN, None)
            messages.error(request, _("Too many wrong codes. Please sign in again."))
            return redirect("core:login")
        request.session[PENDING_LOGIN] = pending
        form.add_error("code", _("This code is not valid. Check the time on your device."))
    return render(request, "core/login_verify.html", {"form": form, "next": request.GET.get("next", "")})


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    messages.info(request, _("You are signed out."))
    return redirect("core:login")


# --- home ------------------------------------------------------------------------------------


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    context = {
        "memberships": user.active_memberships(),
        "organisation_count": access.organisations_visible_to(user).count(),
        "token_count": ApiToken.objects.filter(
            user=user, revoked_at__isnull=True, expires_at__gt=timezone.now()
        ).count(),
    }
    if user.is_node_admin:
        context["user_count"] = User.objects.filter(is_active=True).count()
        context["failed_tasks"] = DBTaskResult.objects.failed().count()
        context["audit_entries"] = AuditEntry.objects.count()
    return render(request, "core/home.html", context)


# --- organisations ---------------------------------------------------------------------------


@login_required
def organisation_list(request: HttpRequest) -> HttpResponse:
    organisations = access.organisations_visible_to(request.user)
    query = request.GET.get("q", "").strip()[:100]
    if query:
        organisations = organisations.filter(Q(name__icontains=query) | Q(short_name__icontains=query))
    context = {
        "page": _page(request, organisations),
        "q": query,
        "can_create": services.is_node_admin(_user(request)),
    }
    template = (
        "core/_organisation_rows.html" if request.headers.get("HX-Request") else "core/organisation_list.html"
    )
    return render(request, template, context)


def _visible_organisation(request: HttpRequest, short_name: str) -> Organisation:
    return get_object_or_404(access.organisations_visible_to(request.user), short_name=short_name)


def _can_see_members(user: User, organisation: Organisation) -> bool:
    return user.is_node_admin or user.memberships.filter(organisation=organisation, is_active=True).exists()


@login_required
def organisation_detail(request: HttpRequest, short_name: str) -> HttpResponse:
    user = _user(request)
    organisation = _visible_organisation(request, short_name)
    can_manage = services.can_manage_organisation(user, organisation)
    memberships = None
    if _can_see_members(user, organisation):
        memberships = organisation.memberships.select_related("user").order_by("-is_active", "user__username")
    return render(
        request,
        "core/organisation_detail.html",
        {
            "organisation": organisation,
            "memberships": memberships,
            "member_count": organisation.memberships.filter(is_active=True).count(),
            "can_manage": can_manage,
            "membership_form": MembershipAddForm() if can_manage else None,
            "role_form": RoleForm(),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def organisation_create(request: HttpRequest) -> HttpResponse:
    _require_node_admin(request)
    form = OrganisationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            organisation = services.create_organisation(_user(request), **form.cleaned_data)
        except ValidationError as exc:
            attach_service_errors(form, exc)
        else:
            messages.success(request, _("Organisation %(name)s created.") % {"name": organisation.name})
            return redirect("core:organisation_detail", short_name=organisation.short_name)
    return render(request, "core/organisation_form.html", {"form": form, "title": _("New organisation")})


@login_required
@require_http_methods(["GET", "POST"])
def organisation_edit(request: HttpRequest, short_name: str) -> HttpResponse:
    user = _user(request)
    organisation = _visible_organisation(request, short_name)
    if not services.can_manage_organisation(user, organisation):
        raise PermissionDenied(_("You may not change this organisation."))
    form = OrganisationForm(
        request.POST or None,
        instance=Organisation(pk=organisation.pk) if request.method == "POST" else organisation,
    )
    if not user.is_node_admin:
        form.fields["is_network_member"].disabled = True
        form.fields["is_network_member"].initial = organisation.is_network_member
    if request.method == "POST" and form.is_valid():
        try:
            organisation = services.update_organisation(user, organisation, **form.cleaned_data)
        except ValidationError as exc:
            attach_service_errors(form, exc)
        else:
            messages.success(request, _("Changes saved."))
            return redirect("core:organisation_detail", short_name=organisation.short_name)
    return render(
        request,
        "core/organisation_form.html",
        {
            "form": form,
            "organisation": organisation,
            "title": _("Edit %(name)s") % {"name": organisation.name},
        },
    )


@login_required
@require_POST
def membership_add(request: HttpRequest, short_name: str) -> HttpResponse:
    organisation = _visible_organisation(request, short_name)
    form = MembershipAddForm(request.POST)
    if form.is_valid():
        try:
            services.add_membership(
                _user(request), organisation, form.cleaned_data["username"], form.cleaned_data["role"]
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, _("Member added."))
    else:
        for errors in form.errors.values():
            messages.error(request, " ".join(str(e) for e in errors))
    return redirect("core:organisation_detail", short_name=organisation.short_name)


def _membership_for(request: HttpRequest, pk: int) -> Membership:
    membership = get_object_or_404(Membership.objects.select_related("organisation", "user"), pk=pk)
    if not services.can_manage_organisation(_user(request), membership.organisation):
        raise PermissionDenied(_("You may not change this membership."))
    return membership


def _membership_row(request: HttpRequest, membership: Membership, error: str = "") -> HttpResponse:
    return render(
        request,
        "core/_membership_row.html",
        {
            "m": membership,
            "can_manage": True,
            "role_form": RoleForm(),
            "row_error": error,
        },
    )


@login_required
@require_POST
def membership_role(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _membership_for(request, pk)
    form = RoleForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            membership = services.change_membership_role(
                _user(request), membership, form.cleaned_data["role"]
            )
        except ValidationError as exc:
            error = " ".join(exc.messages)
            membership.refresh_from_db()
    else:
        error = _("Choose a valid role.")
    if request.headers.get("HX-Request"):
        return _membership_row(request, membership, error)
    if error:
        messages.error(request, error)
    return redirect("core:organisation_detail", short_name=membership.organisation.short_name)


@login_required
@require_POST
def membership_remove(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _membership_for(request, pk)
    error = ""
    try:
        services.remove_membership(_user(request), membership)
    except ValidationError as exc:
        error = " ".join(exc.messages)
    membership.refresh_from_db()
    if request.headers.get("HX-Request"):
        return _membership_row(request, membership, error)
    if error:
        messages.error(request, error)
    return redirect("core:organisation_detail", short_name=membership.organisation.short_name)


# --- users -----------------------------------------------------------------------------------


def _managed_organisations(user: User) -> QuerySet[Organisation]:
    if user.is_node_admin:
        return Organisation.objects.all()
    return Organisation.objects.filter(
        memberships__user=user, memberships__is_active=True, memberships__role__in=ORG_MANAGER_ROLES
    ).distinct()


@login_required
def user_list(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    users = access.users_visible_to(user).prefetch_related("memberships__organisation")
    query = request.GET.get("q", "").strip()[:100]
    if query:
        users = users.filter(
            Q(username__icontains=query)
            | Q(email__icontains=query)
            | Q(first_name__icontains=query)
            | Q(last_name__icontains=query)
        )
    return render(
        request,
        "core/user_list.html",
        {
            "page": _page(request, users),
            "q": query,
            "can_create": _managed_organisations(user).exists(),
        },
    )


@login_required
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    subject = get_object_or_404(access.users_visible_to(_user(request)), pk=pk)
    return render(
        request,
        "core/user_detail.html",
        {
            "subject": subject,
            "memberships": subject.memberships.select_related("organisation"),
            "tokens": ApiToken.objects.filter(user=subject) if _user(request).is_node_admin else None,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def user_create(request: HttpRequest) -> HttpResponse:
    organisations = _managed_organisations(_user(request))
    if not organisations.exists():
        raise PermissionDenied(_("Only node and organisation admins may create accounts."))
    form = UserCreateForm(request.POST or None, organisations=organisations)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.create_user(_user(request), **form.cleaned_data)
        except ValidationError as exc:
            attach_service_errors(form, exc)
        except PermissionDenied:
            form.add_error("role", _("Only node admins may grant this role."))
        else:
            messages.success(request, _("Account %(name)s created.") % {"name": created.username})
            return redirect("core:user_detail", pk=created.pk)
    return render(request, "core/user_form.html", {"form": form})


@login_required
@require_POST
def user_set_active(request: HttpRequest, pk: int) -> HttpResponse:
    _require_node_admin(request)
    subject = get_object_or_404(User, pk=pk)
    try:
        services.set_user_active(_user(request), subject, request.POST.get("active") == "1")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    if request.POST.get("disable_totp") == "1":
        services.disable_totp(_user(request), subject)
        messages.success(request, _("Second factor removed."))
    return redirect("core:user_detail", pk=subject.pk)


# --- the user's own account ------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def account(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    profile_form = ProfileForm(
        request.POST if request.POST.get("form") == "profile" else None,
        initial={"preferred_language": user.preferred_language, "time_zone": user.time_zone},
    )
    password_form = PasswordChangeForm(user, request.POST if request.POST.get("form") == "password" else None)
    if request.method == "POST" and request.POST.get("form") == "profile" and profile_form.is_valid():
        services.update_profile(user, **profile_form.cleaned_data)
        response = redirect("core:account")
        # The explicit choice replaces any earlier pick of the language switcher.
        response.delete_cookie(settings.LANGUAGE_COOKIE_NAME)
        messages.success(request, _("Preferences saved."))
        return response
    if request.method == "POST" and request.POST.get("form") == "password" and password_form.is_valid():
        try:
            services.set_password(user, user, password_form.cleaned_data["new_password1"])
        except ValidationError as exc:
            attach_service_errors(password_form, exc)
        else:
            update_session_auth_hash(request, user)
            messages.success(request, _("Password changed."))
            return redirect("core:account")
    return render(
        request, "core/account.html", {"profile_form": profile_form, "password_form": password_form}
    )


@login_required
@require_http_methods(["GET", "POST"])
def account_security(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = TotpCodeForm(request.POST or None)
    if user.has_totp:
        if request.method == "POST" and form.is_valid():
            if services.check_totp(user, form.cleaned_data["code"]):
                services.disable_totp(user, user)
                messages.success(request, _("Second factor turned off."))
                return redirect("core:account_security")
            form.add_error("code", _("This code is not valid. Check the time on your device."))
        return render(request, "core/account_security.html", {"form": form, "enabled": True})

    secret = request.session.get(PENDING_TOTP_SECRET) or totp.new_secret()
    request.session[PENDING_TOTP_SECRET] = secret
    if request.method == "POST" and form.is_valid():
        try:
            services.enable_totp(user, secret, form.cleaned_data["code"])
        except ValidationError as exc:
            attach_service_errors(form, exc)
        else:
            del request.session[PENDING_TOTP_SECRET]
            messages.success(
                request, _("Second factor turned on. You will be asked for a code at each sign-in.")
            )
            return redirect("core:account_security")
    uri = totp.provisioning_uri(secret, user.get_username())
    return render(
        request,
        "core/account_security.html",
        {
            "form": form,
            "enabled": False,
            "secret": secret,
            "qr_svg": totp.qr_svg(uri),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = TokenCreateForm(request.POST or None)
    issued = None
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.create_api_token(
                user,
                user,
                name=form.cleaned_data["name"],
                expires_in_days=form.cleaned_data["expires_in_days"],
            )
        except ValidationError as exc:
            attach_service_errors(form, exc)
        else:
            form = TokenCreateForm()
    response = render(
        request,
        "core/token_list.html",
        {
            "form": form,
            "issued": issued,
            "tokens": ApiToken.objects.filter(user=user),
            "now": timezone.now(),
        },
    )
    if issued is not None:
        response["Cache-Control"] = "no-store"  # the secret must not linger in a cache
    return response


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=_user(request))
    services.revoke_api_token(_user(request), token)
    if request.headers.get("HX-Request"):
        return render(request, "core/_token_row.html", {"token": token, "now": timezone.now()})
    messages.success(request, _("Token revoked."))
    return redirect("core:token_list")


# --- node administration ---------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def audit_log(request: HttpRequest) -> HttpResponse:
    _require_node_admin(request)
    verification = audit.verify() if request.method == "POST" else None
    form = AuditFilterForm(request.GET or None)
    entries = AuditEntry.objects.all()
    if form.is_valid():
        data = form.cleaned_data
        if data["action"]:
            entries = entries.filter(action__icontains=data["action"])
        if data["actor"]:
            entries = entries.filter(actor_label__iexact=data["actor"])
        if data["object_type"]:
            entries = entries.filter(object_type__icontains=data["object_type"])
        if data["since"]:
            entries = entries.filter(timestamp__date__gte=data["since"])
        if data["until"]:
            entries = entries.filter(timestamp__date__lte=data["until"])
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "core/audit_log.html",
        {
            "form": form,
            "page": _page(request, entries, 100),
            "verification": verification,
            "query": query.urlencode(),
        },
    )


@login_required
def task_list(request: HttpRequest) -> HttpResponse:
    _require_node_admin(request)
    status = request.GET.get("status", "")
    results = DBTaskResult.objects.order_by("-enqueued_at")
    if status:
        results = results.filter(status=status)
    page = _page(request, results)
    for result in page.object_list:
        result.status_label = TASK_STATUS_LABELS.get(result.status, result.status)
    return render(
        request,
        "core/task_list.html",
        {
            "page": page,
            "status": status,
            "statuses": list(TASK_STATUS_LABELS.items()),
        },
    )


# --- error pages -----------------------------------------------------------------------------


def _error(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=status)
    return render(request, "core/error.html", {"title": title, "message": message}, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 400, _("Bad request"), _("The request could not be understood."))


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    message = str(exception) if exception and str(exception) else _("You are not allowed to see this page.")
    return _error(request, 403, _("Not allowed"), message)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 404, _("Not found"), _("There is nothing here, or you may not see it."))


def server_error(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "core/error.html",
        {
            "title": _("Something went wrong"),
            "message": _("The error was logged. Please try again, and tell your node admin if it persists."),
        },
        status=500,
    )
