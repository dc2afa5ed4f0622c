"""Forms of the federation pages: adding a peer, keeping its token, and retracting an object
everywhere it went."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from minga.core.choices import TLP
from minga.core.forms import ModelMultipleChoiceField
from minga.core.models import Organisation
from minga.taxii import retraction
from minga.taxii.models import Direction, PeerKind

ACTION_CHOICES = [
    ("narrow", _("Narrow its TLP or recipients")),
    ("revoke", _("Revoke it")),
    ("delete", _("Delete it")),
]
assert {value for value, _label in ACTION_CHOICES} == set(retraction.ACTIONS)


class PeerForm(forms.Form):
    """A peer as ``minga peer add`` registers it; ``federation.add_peer`` checks the rest."""

    name = forms.SlugField(
        label=_("Name"), max_length=100, help_text=_("For a Minga node: its MINGA_NODE_ID, e.g. csirt-cl.")
    )
    url = forms.CharField(
        label=_("TAXII API root URL"),
        max_length=500,
        help_text=_("e.g. https://minga.csirt-cl.example.org/taxii2/api/"),
    )
    kind = forms.ChoiceField(label=_("Kind"), choices=PeerKind.choices, initial=PeerKind.MINGA)
    direction = forms.ChoiceField(label=_("Direction"), choices=Direction.choices, initial=Direction.BOTH)
    hosts = forms.CharField(
        label=_("Organisations it hosts"),
        required=False,
        max_length=4000,
        help_text=_("Short names, separated by commas: they decide what TLP:AMBER the peer receives."),
    )
    is_member_node = forms.BooleanField(
        label=_("Member node (receives TLP:GREEN)"), required=False, initial=True
    )
    interval = forms.IntegerField(label=_("Sync every (seconds)"), min_value=10, max_value=86400, initial=300)
    token = forms.CharField(
        label=_("Token the peer issued for this node"),
        required=False,
        max_length=500,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("If you have it already; otherwise set it later on this page."),
    )
    collection_id = forms.CharField(
        label=_("Collection (foreign TAXII server)"), required=False, max_length=100
    )
    organisation = forms.RegexField(
        label=_("Store a foreign server's objects in the name of (short name)"),
        required=False,
        max_length=40,
        regex=r"^[-a-zA-Z0-9_]+$",
    )

    def host_names(self) -> list[str]:
        return [name.strip() for name in self.cleaned_data["hosts"].split(",") if name.strip()]


class CredentialForm(forms.Form):
    token = forms.CharField(
        label=_("Token the peer issued for this node"),
        max_length=500,
        widget=forms.PasswordInput(render_value=False),
    )
    username = forms.CharField(label=_("User name (HTTP Basic, optional)"), required=False, max_length=150)


class RetractForm(forms.Form):
    """Retract, everywhere it went, an object an organisation shared on this node."""

    stix_id = forms.CharField(widget=forms.HiddenInput, max_length=300)
    organisation = forms.ModelChoiceField(
        queryset=Organisation.objects.none(), widget=forms.HiddenInput, to_field_name="short_name"
    )
    action = forms.ChoiceField(label=_("Action"), choices=ACTION_CHOICES)
    tlp = forms.ChoiceField(
        label=_("New TLP (narrow)"),
        required=False,
        choices=[("", "—"), *[(v, label) for v, label in TLP.choices if v != TLP.RED]],
    )
    recipients = ModelMultipleChoiceField(
        label=_("Recipient organisations that stay (narrow)"),
        queryset=Organisation.objects.none(),
        required=False,
        to_field_name="short_name",
        widget=forms.CheckboxSelectMultiple,
    )
    reason = forms.CharField(
        label=_("Reason"), required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args: Any, organisations: Any, recipients: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["organisation"].queryset = organisations  # type: ignore[attr-defined]
        self.fields["recipients"].queryset = recipients  # type: ignore[attr-defined]
