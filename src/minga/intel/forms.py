"""Forms of the intel pages: the object list's filters and the bundle upload."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from minga.core.choices import TLP
from minga.core.forms import ModelChoiceField, ModelMultipleChoiceField
from minga.core.models import Organisation, User
from minga.intel.services import IMPORTING_ROLES


class ObjectFilterForm(forms.Form):
    """The list's filters; a value that is not valid is ignored, not an error page."""

    value = forms.CharField(
        label=_("Observable value"),
        required=False,
        max_length=2048,
        help_text=_("An IP, network, domain, URL, e-mail address or hash, in any usual spelling."),
    )
    q = forms.CharField(label=_("Name contains"), required=False, max_length=200)
    type = forms.RegexField(label=_("Type"), required=False, max_length=250, regex=r"^[a-z0-9][a-z0-9-]*$")
    tlp = forms.ChoiceField(label=_("TLP"), required=False, choices=[("", _("Any")), *TLP.choices])
    origin = forms.RegexField(label=_("Originator"), required=False, max_length=40, regex=r"^[-a-zA-Z0-9_]+$")
    since = forms.DateField(
        label=_("Added since"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label=_("Added before"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    include_revoked = forms.BooleanField(label=_("Include revoked"), required=False)


class UploadForm(forms.Form):
    file = forms.FileField(
        label=_("STIX 2.1 bundle"),
        help_text=_("A JSON file. Larger files than the web takes: minga intel import FILE."),
    )
    organisation = ModelChoiceField(label=_("Import for"), queryset=Organisation.objects.none())
    tlp = forms.ChoiceField(
        label=_("TLP"),
        choices=TLP.choices,
        initial=TLP.AMBER,
        help_text=_("For objects that carry no TLP marking of their own."),
    )
    recipients = ModelMultipleChoiceField(
        label=_("Recipient organisations"),
        queryset=Organisation.objects.all(),
        required=False,
        help_text=_("Who may read TLP:AMBER objects besides your organisation."),
    )

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        mine = Organisation.objects.filter(
            memberships__user=user, memberships__is_active=True, memberships__role__in=IMPORTING_ROLES
        )
        field: Any = self.fields["organisation"]
        field.queryset = mine
        if mine.count() == 1:
            field.initial = mine.first()

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > settings.MINGA_MAX_REQUEST_BYTES:
            raise forms.ValidationError(_("The file is too large for the web: use minga intel import."))
        return upload
