"""Forms of the core UI. They validate input; saving goes through ``services``."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any
from zoneinfo import available_timezones

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.forms.utils import flatatt
from django.utils.html import escape
from django.utils.safestring import SafeData, SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

from minga.core.choices import Role
from minga.core.models import Organisation, User
from minga.core.services import MAX_TOKEN_DAYS


def attach_service_errors(form: forms.BaseForm, exc: ValidationError) -> None:
    """Show a service's ValidationError on the form whose input caused it."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


MAX_DATABASE_INT = 2**63 - 1


def _refuse_out_of_range(field: forms.Field, value: Any) -> None:
    # A number beyond any primary key would overflow the database driver before the lookup.
    text = str(value).strip()
    if text.lstrip("-").isdigit() and abs(int(text)) > MAX_DATABASE_INT:
        raise forms.ValidationError(
            field.error_messages["invalid_choice"], code="invalid_choice", params={"value": text[:20]}
        )


class ModelChoiceField(forms.ModelChoiceField):
    """Django's ModelChoiceField, answering a huge number as an invalid choice."""

    def to_python(self, value: Any) -> Any:
        if value not in self.empty_values:
            _refuse_out_of_range(self, value)
        return super().to_python(value)


class QuickSelect(forms.Select):
    """Django's ``<select>`` with its options written in Python instead of one template include
    per option: the same markup, but a list of the network's 5,000 organisations takes
    milliseconds instead of most of a second (``benchmarks/directory_pages.py``). Grouped
    choices fall back to Django's rendering."""

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        chosen = set(self.format_value(value))
        options = []
        for option_value, label in self.choices:
            if isinstance(label, list | tuple):
                return super().render(name, value, attrs, renderer)
            text = "" if option_value is None else str(option_value)
            selected = " selected" if text in chosen else ""
            # Escaped as the template would ({{ label }}), without Django's lazy wrapper per call.
            shown = str(label) if isinstance(label, SafeData) else html.escape(str(label))
            options.append(f'<option value="{html.escape(text)}"{selected}>{shown}</option>')
        final_attrs = flatatt(self.build_attrs(self.attrs, attrs))
        body = "\n".join(options)
        return mark_safe(f'<select name="{escape(name)}"{final_attrs}>\n{body}\n</select>')  # noqa: S308  (escaped above)


class _PairChoiceIterator(forms.models.ModelChoiceIterator):
    """Options as ``(pk, label)`` pairs straight from ``values_list``: no model instance per row."""

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        if self.field.empty_label is not None:
            yield ("", self.field.empty_label)
        label_field = self.field.label_field  # type: ignore[attr-defined]
        yield from self.queryset.values_list("pk", label_field).iterator()


class QuickModelChoiceField(ModelChoiceField):
    """A ``ModelChoiceField`` for thousands of rows (every organisation of the network): options
    read as ``(pk, label_field)`` pairs and drawn by ``QuickSelect``. Validation is unchanged."""

    iterator = _PairChoiceIterator
    widget = QuickSelect

    def __init__(self, *args: Any, label_field: str, **kwargs: Any) -> None:
        self.label_field = label_field
        super().__init__(*args, **kwargs)


class ModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    def clean(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            for item in value:
                _refuse_out_of_range(self, item)
        return super().clean(value)


class LoginForm(AuthenticationForm):
    """Django's sign-in form, with the user name's length enforced: Django only sets it on the
    widget, and a longer name would reach the login throttle's storage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = User._meta.get_field("username").max_length or 150
        self.fields["username"].validators.append(MaxLengthValidator(limit))


class OrganisationForm(forms.ModelForm):
    class Meta:
        model = Organisation
        fields = ["name", "short_name", "is_network_member"]


class UserCreateForm(forms.Form):
    username = forms.CharField(label=_("User name"), max_length=150)
    email = forms.EmailField(label=_("E-mail"))
    first_name = forms.CharField(label=_("First name"), max_length=150, required=False)
    last_name = forms.CharField(label=_("Last name"), max_length=150, required=False)
    # A node admin picks among every organisation of the network: thousands of options.
    organisation = QuickModelChoiceField(
        label=_("Organisation"), queryset=Organisation.objects.none(), label_field="name"
    )
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.ANALYST)
    password = forms.CharField(
        label=_("Initial password"),
        widget=forms.PasswordInput(render_value=False),
        help_text=_("At least 12 characters. Ask the person to change it after the first login."),
    )

    def __init__(self, *args: Any, organisations: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["organisation"].queryset = organisations  # type: ignore[attr-defined]


class MembershipAddForm(forms.Form):
    username = forms.CharField(label=_("User name"), max_length=150)
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.ANALYST)

    def clean_username(self) -> User:
        username = self.cleaned_data["username"].strip()
        user = User.objects.filter(username__iexact=username).first()
        if user is None:
            raise forms.ValidationError(_("No user is called %(name)s.") % {"name": username})
        return user


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices)


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        help_text=_("What the token is for, e.g. 'SIEM pull' or 'OpenCTI connector'."),
    )
    expires_in_days = forms.IntegerField(
        label=_("Valid for (days)"), min_value=1, max_value=MAX_TOKEN_DAYS, initial=90
    )


class ProfileForm(forms.Form):
    preferred_language = forms.ChoiceField(
        label=_("Language"),
        required=False,
        choices=[("", _("As my browser asks"))] + [(c, n) for c, n in settings.LANGUAGES],
    )
    time_zone = forms.ChoiceField(
        label=_("Time zone"), choices=[(tz, tz) for tz in sorted(available_timezones())]
    )


class TotpCodeForm(forms.Form):
    code = forms.CharField(
        label=_("Six-digit code"),
        max_length=10,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class AuditFilterForm(forms.Form):
    action = forms.CharField(label=_("Action"), required=False, max_length=80)
    actor = forms.CharField(label=_("Actor"), required=False, max_length=150)
    object_type = forms.CharField(label=_("Object type"), required=False, max_length=80)
    since = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label=_("Until"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
