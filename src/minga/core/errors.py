"""What a page tells a person when a service refuses: the messages of an exception or a form,
as one line of text for ``django.contrib.messages``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.translation import gettext as _


def messages_of(exc: ValidationError | PermissionDenied) -> str:
    """The refusal's messages, joined (field names left out: the page shows the form)."""
    if isinstance(exc, PermissionDenied):
        return str(exc) or _("You are not allowed to do this.")
    if hasattr(exc, "error_dict"):
        return " ".join(str(m) for found in exc.message_dict.values() for m in found)
    return " ".join(exc.messages)


def form_errors(form: Any) -> str:
    """A bound form's errors, each after its field's label."""
    return " ".join(
        f"{form.fields[f].label if f in form.fields else ''}: {' '.join(e)}".lstrip(": ")
        for f, e in form.errors.items()
    )
