"""Forms of the assistance pages. They validate input; every change goes through ``services``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from minga.assistance import services
from minga.assistance.choices import Outcome, Priority, RequestKind
from minga.core import access
from minga.core.forms import ModelChoiceField
from minga.core.models import Organisation, User
from minga.directory.models import MemberState


class RequestForm(forms.Form):
    organisation = ModelChoiceField(label=_("Requesting organisation"), queryset=Organisation.objects.none())
    requested_state = ModelChoiceField(
        label=_("Requested state"),
        queryset=MemberState.objects.filter(participating=True),
        required=False,
        help_text=_("Its national CSIRT, the state's designated point of contact, receives the request."),
    )
    requested_organisation = forms.CharField(
        label=_("Or a named organisation"),
        required=False,
        max_length=40,
        help_text=_("Its short name, e.g. csirt-cl: instead of the state's national CSIRT."),
    )
    kind = forms.ChoiceField(label=_("Kind"), choices=RequestKind.choices)
    priority = forms.ChoiceField(label=_("Priority"), choices=Priority.choices, initial=Priority.ROUTINE)
    subject = forms.CharField(label=_("Subject"), max_length=services.MAX_SUBJECT)
    description = forms.CharField(
        label=_("Description"),
        required=False,
        max_length=services.MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 5}),
    )
    legal_basis = forms.CharField(
        label=_("Legal basis"),
        required=False,
        max_length=300,
        help_text=_("E.g. a treaty, convention or national law the request rests on."),
    )
    legal_reference = forms.CharField(label=_("Legal reference"), required=False, max_length=200)

    def __init__(self, user: User, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        if editing:  # a draft keeps its requesting organisation
            del self.fields["organisation"]
            return
        own = services.working_organisation_ids(user)
        field = self.fields["organisation"]
        field.queryset = Organisation.objects.filter(pk__in=own)  # type: ignore[attr-defined]
        if len(own) == 1:
            field.initial = next(iter(own))

    def clean_requested_organisation(self) -> Organisation | None:
        name = self.cleaned_data.get("requested_organisation", "").strip()
        if not name:
            return None
        found = access.organisations_visible_to(self.user).filter(short_name=name).first()
        if found is None:
            raise forms.ValidationError(_("No organisation is called %(name)s.") % {"name": name[:40]})
        return found


class AnswerForm(forms.Form):
    outcome = forms.ChoiceField(label=_("Outcome"), choices=Outcome.choices)
    text = forms.CharField(
        label=_("Answer"),
        max_length=services.MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("What you provide, or why the request is declined."),
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), required=False, max_length=services.MAX_TEXT)


class MessageForm(forms.Form):
    text = forms.CharField(
        label=_("Message"), max_length=services.MAX_TEXT, widget=forms.Textarea(attrs={"rows": 3})
    )


class AttachmentForm(forms.Form):
    file = forms.FileField(label=_("File"))


class DeadlineForm(forms.Form):
    priority = forms.ChoiceField(label=_("Priority"), choices=Priority.choices)
    acknowledge_hours = forms.DecimalField(
        label=_("Acknowledge within (hours)"), min_value=0.1, max_value=8784, decimal_places=2
    )
    respond_hours = forms.DecimalField(
        label=_("Answer within (hours)"), min_value=0.1, max_value=8784, decimal_places=2
    )
