from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from minga.core.forms import ModelChoiceField, ModelMultipleChoiceField, QuickModelChoiceField
from minga.core.models import Organisation
from minga.directory.choices import ContactRole, OrganisationKind, ProposalStatus, RegistryFormat
from minga.directory.models import MemberState, Sector, TeamProfile


class ProfileForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=OrganisationKind.choices)
    state = ModelChoiceField(label=_("State"), queryset=MemberState.objects.all(), required=False)
    sectors = ModelMultipleChoiceField(
        label=_("Sectors"),
        queryset=Sector.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    parent = QuickModelChoiceField(  # every organisation of the network: thousands of options
        label=_("Parent organisation"),
        queryset=Organisation.objects.none(),
        required=False,
        label_field="name",
    )
    hosting_node = forms.CharField(
        label=_("Hosting node"),
        max_length=200,
        required=False,
        help_text=_("The Minga node where this organisation's people work; empty for this node."),
    )

    def __init__(self, *args: Any, organisations: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["parent"].queryset = organisations  # type: ignore[attr-defined]


class SectorForm(forms.Form):
    name = forms.CharField(label=_("Name"), min_length=2, max_length=120)


class WebhookForm(forms.Form):
    url = forms.CharField(
        label=_("URL"), max_length=500, help_text=_("https; the node POSTs signed JSON notifications there.")
    )
    secret = forms.CharField(
        label=_("Signing secret"),
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Leave empty for the node to draw one (shown once), or to keep the current one."),
    )
    new_secret = forms.BooleanField(label=_("Draw a new secret"), required=False)


class ContactForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=ContactRole.choices)
    name = forms.CharField(label=_("Name"), max_length=200)
    email = forms.CharField(label=_("E-mail"), max_length=254)
    phone_numbers = forms.CharField(
        label=_("Phone numbers"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("One per line, international format: +598 2 123 4567."),
    )
    languages = forms.CharField(
        label=_("Languages"),
        required=False,
        max_length=100,
        help_text=_("ISO 639 codes separated by commas: es, en."),
    )
    hours = forms.CharField(label=_("Hours"), required=False, max_length=200)
    time_zone = forms.CharField(label=_("Time zone"), max_length=64, initial="UTC")
    pgp_key = forms.CharField(
        label=_("OpenPGP public key"),
        required=False,
        max_length=100_000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    pgp_fingerprint = forms.CharField(label=_("OpenPGP fingerprint"), required=False, max_length=100)

    def service_fields(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["phone_numbers"] = data["phone_numbers"].splitlines()
        data["languages"] = [code for code in data["languages"].split(",") if code.strip()]
        return data


class TeamProfileForm(forms.ModelForm):
    class Meta:
        model = TeamProfile
        fields = list(TeamProfile.EDITABLE)
        widgets = {
            name: forms.Textarea(attrs={"rows": 3}) for name in TeamProfile.EDITABLE if name != "hours"
        }


class ImportForm(forms.Form):
    dataset = forms.ChoiceField(
        label=_("What the file holds"),
        choices=[
            ("organisations", _("Organisations")),
            ("contacts", _("Points of contact")),
            ("constituency", _("Constituencies")),
        ],
    )
    file = forms.FileField(
        label=_("File"), help_text=_("CSV (header row first) or JSON, as the exports above write them.")
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        try:
            text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError(_("The file is not UTF-8 text.")) from exc
        self.cleaned_data["format"] = "json" if upload.name.lower().endswith(".json") else "csv"
        return text


# --- registry proposals ----------------------------------------------------------------------


class RegistryUploadForm(forms.Form):
    """A registry's data file, small enough for a web request; the command line takes the rest."""

    format = forms.ChoiceField(label=_("Format"), choices=RegistryFormat.choices)
    file = forms.FileField(
        label=_("File"),
        help_text=_(
            "RIR statistics (delegated-extended) or an RPSL dump, plain or gzip-compressed. "
            "Larger files: minga directory seed."
        ),
    )


class ProposalFilterForm(forms.Form):
    """The review page's filters; a value that is not offered is ignored, not an error page."""

    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[*ProposalStatus.choices, ("all", _("All"))]
    )
    state = forms.RegexField(label=_("State"), required=False, regex=r"^[A-Za-z]{2}$")
    owner = forms.RegexField(label=_("Proposed organisation"), required=False, regex=r"^[-a-zA-Z0-9_]{1,40}$")
