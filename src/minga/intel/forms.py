"""Forms of the intel pages: the object list's filters and the upload (STIX, MISP, CSV)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from minga.core.choices import TLP
from minga.core.forms import ModelChoiceField, ModelMultipleChoiceField
from minga.core.models import Organisation, User
from minga.intel.choices import ImportFormat
from minga.intel.csvio import TYPES
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
        label=_("File"),
        help_text=_(
            "A STIX bundle, MISP events (JSON) or CSV indicators. "
            "Larger files than the web takes: minga intel import FILE."
        ),
    )
    format = forms.ChoiceField(
        label=_("Format"), choices=ImportFormat.choices, initial=ImportFormat.STIX, required=False
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

    # The CSV column mapping (minga.intel.csvio.Mapping): header names, or numbers from 1.
    csv_value = forms.CharField(
        label=_("CSV: value column"), required=False, max_length=100, help_text=_("Required for CSV.")
    )
    csv_type = forms.CharField(
        label=_("CSV: type column"),
        required=False,
        max_length=100,
        help_text=_("Empty: one type for every row (below), or detected from each value."),
    )
    csv_fixed_type = forms.ChoiceField(
        label=_("CSV: type of every row"),
        required=False,
        choices=[("", _("Detect from the value")), *((t, t) for t in TYPES)],
    )
    csv_name = forms.CharField(label=_("CSV: name column"), required=False, max_length=100)
    csv_description = forms.CharField(label=_("CSV: description column"), required=False, max_length=100)
    csv_valid_from = forms.CharField(
        label=_("CSV: valid from column"),
        required=False,
        max_length=100,
        help_text=_("Empty: the time of the upload."),
    )
    csv_valid_until = forms.CharField(label=_("CSV: valid until column"), required=False, max_length=100)
    csv_confidence = forms.CharField(
        label=_("CSV: confidence column (0-100)"), required=False, max_length=100
    )
    csv_labels = forms.CharField(label=_("CSV: labels column"), required=False, max_length=100)
    csv_delimiter = forms.ChoiceField(
        label=_("CSV: delimiter"),
        required=False,
        choices=[(",", _("comma")), (";", _("semicolon")), ("tab", _("tab")), ("|", _("vertical bar"))],
        initial=",",
    )
    csv_no_header = forms.BooleanField(
        label=_("CSV: the first line is data, not column names (columns are then numbers from 1)"),
        required=False,
    )

    def mapping(self) -> dict[str, Any]:
        """The CSV mapping from the cleaned form (empty for the other formats)."""
        data = self.cleaned_data
        if data.get("format") != ImportFormat.CSV:
            return {}
        mapping: dict[str, Any] = {
            name: data.get(f"csv_{name}", "").strip()
            for name in ("value", "type", "fixed_type", "name", "description", "valid_from", "valid_until")
        }
        mapping |= {
            "confidence": data.get("csv_confidence", "").strip(),
            "labels": data.get("csv_labels", "").strip(),
            "delimiter": {"tab": "\t", "": ","}.get(data.get("csv_delimiter", ""), data.get("csv_delimiter")),
            "header": not data.get("csv_no_header"),
        }
        return mapping

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        mine = Organisation.objects.filter(
            memberships__user=user, memberships__is_active=True, memberships__role__in=IMPORTING_ROLES
        )
        field: Any = self.fields["organisation"]
        field.queryset = mine
        if mine.count() == 1:
            field.initial = mine.first()

    def clean_format(self) -> str:
        return self.cleaned_data.get("format") or ImportFormat.STIX

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > settings.MINGA_MAX_REQUEST_BYTES:
            raise forms.ValidationError(_("The file is too large for the web: use minga intel import."))
        return upload
