"""Forms of the incident pages. They validate input; every change goes through ``services``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from minga.core import access
from minga.core.choices import TLP
from minga.core.forms import ModelChoiceField, ModelMultipleChoiceField
from minga.core.models import Organisation, User
from minga.directory.models import MemberState, Sector
from minga.incidents import services
from minga.incidents.choices import PAP, RECORDED_BY_HAND, EventType, IncidentStatus, Severity, TaskStatus

SHORT_NAMES_HELP = _("Short names, separated by commas or spaces.")


def _any(choices: Any) -> list[tuple[str, Any]]:
    return [("", _("Any")), *choices]


class BoardFilterForm(forms.Form):
    """The board's filters; a value that is not valid is ignored, not an error page."""

    q = forms.CharField(label=_("Title or reference"), required=False, max_length=200)
    status = forms.ChoiceField(label=_("Status"), required=False, choices=_any(IncidentStatus.choices))
    severity = forms.ChoiceField(label=_("Severity"), required=False, choices=_any(Severity.choices))
    state = forms.ChoiceField(label=_("Affected state"), required=False)
    tlp = forms.ChoiceField(label=_("TLP"), required=False, choices=_any(TLP.choices))
    open_only = forms.BooleanField(label=_("Open only"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        states = [(s.code, s.name) for s in MemberState.objects.all()]
        self.fields["state"].choices = _any(sorted(states, key=lambda s: str(s[1])))  # type: ignore[attr-defined]


class MetricsForm(forms.Form):
    """The metrics page's choices; a value that is not valid is ignored."""

    by_priority = forms.BooleanField(label=_("Per severity too"), required=False, initial=True)
    since = forms.DateField(
        label=_("Opened from"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label=_("Opened before"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    node_wide = forms.BooleanField(label=_("Whole node"), required=False)
    min_group_size = forms.IntegerField(
        label=_("Hide groups with fewer incidents than"), required=False, min_value=1, max_value=1000
    )


class OrganisationNamesField(forms.CharField):
    """Organisations typed by their short names: a list of thousands would not fit a select."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 4000)
        kwargs.setdefault("help_text", SHORT_NAMES_HELP)
        super().__init__(*args, **kwargs)
        self.user: Any = None

    def clean(self, value: Any) -> list[Organisation]:  # type: ignore[override]
        text = super().clean(value)
        names = [n for n in text.replace(",", " ").split() if n]
        if not names:
            return []
        found = list(access.organisations_visible_to(self.user).filter(short_name__in=names))
        missing = sorted(set(names) - {o.short_name for o in found})
        if missing:
            raise forms.ValidationError(
                _("No organisation is called %(names)s.") % {"names": ", ".join(m[:40] for m in missing[:5])}
            )
        return found


class OrganisationNameField(OrganisationNamesField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 40)
        kwargs.setdefault("help_text", _("Its short name, e.g. csirt-cl."))
        super().__init__(*args, **kwargs)

    def clean(self, value: Any) -> Organisation | None:  # type: ignore[override]
        found = super().clean(value)
        if len(found) > 1:
            raise forms.ValidationError(_("Name one organisation."))
        return found[0] if found else None


class IncidentForm(forms.Form):
    organisation = ModelChoiceField(label=_("Reported by"), queryset=Organisation.objects.none())
    title = forms.CharField(label=_("Title"), max_length=200)
    description = forms.CharField(
        label=_("Description"),
        required=False,
        max_length=services.MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    type = forms.ChoiceField(
        label=_("Classification (RSIT type)"),
        choices=EventType.choices,
        help_text=_("The taxonomy follows from the type."),
    )
    severity = forms.ChoiceField(label=_("Severity"), choices=Severity.choices, initial=Severity.MEDIUM)
    tlp = forms.ChoiceField(label=_("TLP"), choices=TLP.choices, initial=TLP.AMBER)
    pap = forms.ChoiceField(label=_("PAP"), choices=PAP.choices, initial=PAP.AMBER)
    coordinator = OrganisationNameField(label=_("Coordinating organisation"), required=False)
    affected_states = ModelMultipleChoiceField(
        label=_("Affected states"), queryset=MemberState.objects.all(), required=False
    )
    affected_sectors = ModelMultipleChoiceField(
        label=_("Affected sectors"), queryset=Sector.objects.all(), required=False
    )
    affected_organisations = OrganisationNamesField(label=_("Affected organisations"), required=False)
    observables = forms.CharField(
        label=_("Observables"),
        required=False,
        max_length=50_000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_(
            "IP addresses, AS numbers and domains, one per line: they find the constituencies concerned."
        ),
    )
    links = forms.CharField(
        label=_("Linked intelligence"),
        required=False,
        max_length=30_000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("STIX ids of objects you may read, one per line (an incident opened from them)."),
    )

    def __init__(self, user: User, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("coordinator", "affected_organisations"):
            self.fields[name].user = user  # type: ignore[attr-defined]
        if editing:
            del self.fields["organisation"]
            del self.fields["observables"]
            del self.fields["links"]
        else:
            own = services.working_organisation_ids(user)
            self.fields["organisation"].queryset = Organisation.objects.filter(pk__in=own)  # type: ignore[attr-defined]
            if len(own) == 1:
                self.fields["organisation"].initial = next(iter(own))


class StatusForm(forms.Form):
    status = forms.ChoiceField(label=_("New status"), choices=IncidentStatus.choices)
    reason = forms.CharField(label=_("Reason"), required=False, max_length=services.MAX_TEXT)


class CommentForm(forms.Form):
    text = forms.CharField(
        label=_("Comment"), max_length=services.MAX_TEXT, widget=forms.Textarea(attrs={"rows": 3})
    )


class ObservablesForm(forms.Form):
    values = forms.CharField(
        label=_("Observables"),
        max_length=50_000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("IP addresses, AS numbers and domains, one per line."),
    )


class ParticipantForm(forms.Form):
    organisation = OrganisationNameField(label=_("Organisation"))
    reason = forms.CharField(label=_("Reason"), required=False, max_length=services.MAX_TEXT)

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["organisation"].user = user  # type: ignore[attr-defined]


class AnswerForm(forms.Form):
    answer = forms.ChoiceField(choices=[("acknowledge", _("Acknowledge")), ("decline", _("Decline"))])
    reason = forms.CharField(label=_("Reason (to decline)"), required=False, max_length=services.MAX_TEXT)


class TaskForm(forms.Form):
    title = forms.CharField(label=_("Task"), max_length=200)
    organisation = OrganisationNameField(label=_("Assigned to"))
    due = forms.DateField(label=_("Due"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["organisation"].user = user  # type: ignore[attr-defined]


class TaskStatusForm(forms.Form):
    status = forms.ChoiceField(label=_("Status"), choices=TaskStatus.choices)


class LinkForm(forms.Form):
    stix_id = forms.RegexField(
        label=_("STIX id"), max_length=300, regex=r"^[a-z0-9][a-z0-9-]*--[0-9a-fA-F-]{36}$"
    )
    action = forms.ChoiceField(choices=[("add", _("Link")), ("remove", _("Unlink"))], initial="add")


class EventsForm(forms.Form):
    events = forms.CharField(
        label=_("Feed event ids"), max_length=20_000, help_text=_("Separated by commas or spaces.")
    )

    def clean_events(self) -> list[int]:
        parts = self.cleaned_data["events"].replace(",", " ").split()
        if not parts or not all(p.isdigit() and 0 < int(p) < 2**63 for p in parts):
            raise forms.ValidationError(_("Give event ids: whole numbers separated by commas or spaces."))
        if len(parts) > services.MAX_EVENTS:
            raise forms.ValidationError(_("At most %(n)d events at a time.") % {"n": services.MAX_EVENTS})
        return [int(p) for p in parts]


class MergeForm(forms.Form):
    survivor = forms.RegexField(
        label=_("Merge into (reference)"), max_length=20, regex=r"^MNG-\d{4}-\d{6,9}$"
    )
    reason = forms.CharField(label=_("Reason"), required=False, max_length=services.MAX_TEXT)


class EvidenceForm(forms.Form):
    file = forms.FileField(label=_("File"), allow_empty_file=True)
    title = forms.CharField(label=_("Title"), max_length=200)
    description = forms.CharField(
        label=_("Description"),
        required=False,
        max_length=services.MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    acquired_at = forms.DateTimeField(
        label=_("Acquired (UTC)"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    acquired_by = forms.CharField(label=_("Acquired by"), required=False, max_length=200)
    source = forms.CharField(
        label=_("Source"),
        required=False,
        max_length=500,
        help_text=_("Where it comes from: a host, a device, a person."),
    )
    custodian = OrganisationNameField(
        label=_("Held by (organisation)"),
        required=False,
        help_text=_("Its short name; empty: your organisation."),
    )
    custodian_person = forms.CharField(
        label=_("Held by (person)"), required=False, max_length=200, help_text=_("Empty: you.")
    )
    reason = forms.CharField(label=_("Why it is registered"), required=False, max_length=services.MAX_TEXT)

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["custodian"].user = user  # type: ignore[attr-defined]


class CustodyForm(forms.Form):
    action = forms.ChoiceField(
        label=_("What happened"),
        choices=[(a.value, a.label) for a in RECORDED_BY_HAND],
    )
    to_organisation = OrganisationNameField(
        label=_("To (organisation)"), required=False, help_text=_("For a transfer or a return.")
    )
    to_person = forms.CharField(label=_("To (person)"), required=False, max_length=200)
    reason = forms.CharField(label=_("Why"), max_length=services.MAX_TEXT)

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["to_organisation"].user = user  # type: ignore[attr-defined]
