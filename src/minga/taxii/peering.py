"""What the peers page and the REST API do beside the federation services: check a peer's URL
before it is registered, and queue a sync now."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from minga.core import audit
from minga.core.models import User
from minga.taxii import queries, tasks
from minga.taxii.models import Peer


def check_url(url: str) -> str:
    """A peer's TAXII API root: an http(s) URL with a host and no spaces. Host names without a
    dot (``http://minga-b:8000/``) are fine: nodes often reach each other by such names."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in text)
        or len(text) > 500
    ):
        raise ValidationError(
            {
                "url": _(
                    "Give the peer's TAXII API root as an http:// or https:// URL, e.g. https://minga.example.org/taxii2/api/."
                )
            }
        )
    return text


def request_sync(actor: User, peer: Peer) -> str:
    """Queue a sync of ``peer`` now (``tasks.sync_peer``), for node admins. Returns the task's
    id. Audited (``federation.sync_requested``); the sync itself audits what it moved."""
    queries.require_node_admin(actor)
    if not peer.is_active:
        raise ValidationError(_("This peer is inactive: it is not synced."))
    with transaction.atomic():
        result = tasks.sync_peer.enqueue(peer.pk)
        audit.record("federation.sync_requested", actor=actor, obj=peer, details={"name": peer.name})
    return str(result.id)
