"""Forms of the pipeline pages: a feed's settings, an upload, the events list's filters."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from minga.core.choices import TLP
from minga.core.forms import ModelChoiceField
from minga.core.models import Organisation, User
from minga.pipeline.choices import Encoding, EventType, FeedFormat, FeedSource, Taxonomy
from minga.pipeline.models import EVENT_FIELDS, FEED_TLPS, Feed
from minga.pipeline.services import MANAGING_ROLES

TLP_CHOICES = [(value, label) for value, label in TLP.choices if value in FEED_TLPS]


class JSONObjectField(forms.CharField):
    """A JSON object typed in a text area (the column and taxonomy mappings)."""

    widget = forms.Textarea(attrs={"rows": 4})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return json.dumps(value, ensure_ascii=False, indent=1)
        return value

    def to_python(self, value: Any) -> dict[str, Any]:  # type: ignore[override]
        text = super().to_python(value) or ""
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise forms.ValidationError(_('Write a JSON object, e.g. {"source_ip": "ip"}.')) from None
        if not isinstance(data, dict):
            raise forms.ValidationError(_('Write a JSON object, e.g. {"source_ip": "ip"}.'))
        return data


class FeedForm(forms.ModelForm):
    owner = ModelChoiceField(label=_("Owner"), queryset=Organisation.objects.none())
    mapping = JSONObjectField(
        label=_("Column mapping"),
        required=False,
        max_length=4000,
        help_text=_(
            "Event field → column name (or number from 1 without a header) or JSON key. Fields: %(fields)s, "
            "classification. Columns named like a field need no mapping."
        )
        % {"fields": ", ".join(EVENT_FIELDS)},
    )
    taxonomy_mapping = JSONObjectField(
        label=_("Taxonomy mapping"),
        required=False,
        max_length=4000,
        help_text=_('Value of the classification column → RSIT type, e.g. {"scan": "scanner"}.'),
    )
    dedup_key = forms.CharField(
        label=_("De-duplication key"),
        max_length=400,
        help_text=_("Event fields, separated by commas."),
    )
    default_tlp = forms.ChoiceField(label=_("TLP of its events"), choices=TLP_CHOICES)
    url = forms.URLField(
        label=_("URL"),
        required=False,
        max_length=2000,
        assume_scheme="https",
        help_text=_(
            "For a feed pulled from a URL or a TAXII collection (its own URL): http:// or https://, "
            "no credentials."
        ),
    )
    token = forms.CharField(
        label=_("TAXII token"),
        required=False,
        max_length=2000,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("The collection's bearer token, kept sealed; leave blank to keep the current one."),
    )

    class Meta:
        model = Feed
        fields = [
            "name",
            "owner",
            "description",
            "format",
            "encoding",
            "has_header",
            "delimiter",
            "quotechar",
            "mapping",
            "default_tlp",
            "classification_type",
            "taxonomy_mapping",
            "dedup_window",
            "retention_days",
            "source",
            "url",
            "directory",
            "pull_every",
            "is_active",
        ]

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = Organisation.objects.filter(  # type: ignore[attr-defined]
            memberships__user=user, memberships__is_active=True, memberships__role__in=MANAGING_ROLES
        ).distinct()
        self.fields["format"].choices = FeedFormat.choices  # type: ignore[attr-defined]
        self.fields["encoding"].choices = Encoding.choices  # type: ignore[attr-defined]
        self.fields["source"].choices = FeedSource.choices  # type: ignore[attr-defined]
        self.fields["source"].required = self.fields["pull_every"].required = False  # as they are
        self.fields["dedup_key"].initial = ", ".join(self.instance.dedup_fields)
        if self.instance.pk:
            del self.fields["owner"]
            self.fields["name"].disabled = True

    def settings(self) -> dict[str, Any]:
        """The cleaned settings, as the feed services take them."""
        data = {name: self.cleaned_data[name] for name in self.Meta.fields if name in self.cleaned_data}
        data.pop("owner", None)
        for name in ("source", "pull_every"):
            if data.get(name) in (None, ""):
                data.pop(name, None)
        if self.instance.pk:
            data.pop("name", None)
        data["dedup_fields"] = [f.strip() for f in self.cleaned_data["dedup_key"].split(",") if f.strip()]
        if self.cleaned_data.get("token"):
            data["token"] = self.cleaned_data["token"]
        return data

    def _post_clean(self) -> None:
        # The service validates and saves (with its audit entry); the form only parses.
        pass


class UploadForm(forms.Form):
    file = forms.FileField(
        label=_("File"),
        help_text=_(
            "A file in the feed's format (CSV, JSON lines, IntelMQ events, a STIX 2.1 bundle or a MISP "
            "event). Larger files: minga ingest FILE --feed NAME."
        ),
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > settings.MINGA_MAX_REQUEST_BYTES:
            raise forms.ValidationError(_("The file is larger than this node accepts through the web."))
        return upload


class EventFilterForm(forms.Form):
    """The events list's filters; a value that is not valid is ignored, not an error page."""

    organisation = forms.RegexField(
        label=_("Routed to"),
        required=False,
        max_length=40,
        regex=r"^[-a-zA-Z0-9_]+$",
        help_text=_("An organisation's short name"),
    )
    feed = forms.RegexField(label=_("Feed"), required=False, max_length=80, regex=r"^[-a-zA-Z0-9_]+$")
    type = forms.ChoiceField(label=_("Type"), required=False, choices=[("", _("Any")), *EventType.choices])
    taxonomy = forms.ChoiceField(
        label=_("Taxonomy"), required=False, choices=[("", _("Any")), *Taxonomy.choices]
    )
    ip = forms.GenericIPAddressField(label=_("IP address"), required=False)
    fqdn = forms.CharField(label=_("Domain"), required=False, max_length=253)
    routed = forms.ChoiceField(
        label=_("Routing"),
        required=False,
        choices=[("", _("Any")), ("yes", _("Routed")), ("no", _("Unrouted"))],
    )
    since = forms.DateField(label=_("Since"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label=_("Before"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
