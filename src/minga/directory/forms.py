from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from minga.core.forms import ModelChoiceField, ModelMultipleChoiceField
from minga.core.models import Organisation
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState, Sector


class ProfileForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=OrganisationKind.choices)
    state = ModelChoiceField(label=_("State"), queryset=MemberState.objects.all(), required=False)
    sectors = ModelMultipleChoiceField(
        label=_("Sectors"),
        queryset=Sector.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    parent = ModelChoiceField(
        label=_("Parent organisation"), queryset=Organisation.objects.none(), required=False
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
