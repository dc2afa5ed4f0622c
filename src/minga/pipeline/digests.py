"""Digests: each organisation receives, on its schedule (hourly, daily, weekly), the events routed
to it since the last digest, by e-mail (a CSV attached, the counts per classification in the
body) or by webhook (the same as signed JSON, ``minga.core.webhooks``).

How a window is delivered once and nothing is lost:

* ``claim_due`` (the periodic job ``pipeline.queue_digests``, every minute) claims each due
  digest with one conditional UPDATE (a random token and a lease): however many workers look,
  one ``pipeline.send_digest`` task is queued per digest and window.
* ``send`` fixes the window's end at its first attempt (``pending_end``): the events *stored*
  (``created_at``) from the last window's end up to then, never past the start of a chunk still
  being written (its events commit later with earlier times), so none falls between two
  windows. Every retry sends the same window.
* the window moves (``window_end``) only after the e-mail server or the receiver accepted the
  digest, in the transaction of its audit entry (``pipeline.digest_sent``). A failure is
  audited (``pipeline.digest_failed``) and tried again with backoff. A worker dying between the
  send and the move sends the window again (e-mail carries ``X-Minga-Delivery``, a webhook the
  same delivery id, so a receiver can tell).

The events are read through the access policy as the organisation reads them (any active
member of it), narrowed to those routed to it (``queries.events_visible_to`` with
``EventFilter(organisation=...)``): another organisation's events are never in its digest.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import orjson
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Min, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from minga.core import access, audit, sealed, webhooks
from minga.core.choices import ORG_MANAGER_ROLES
from minga.core.models import Organisation, User
from minga.core.services import can_manage_organisation
from minga.pipeline import queries, services
from minga.pipeline.choices import DigestChannel, DigestSchedule, EventType, RunStatus
from minga.pipeline.models import Chunk, Digest, Event

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

logger = logging.getLogger(__name__)

PERIODS = {
    DigestSchedule.HOURLY: timedelta(hours=1),
    DigestSchedule.DAILY: timedelta(days=1),
    DigestSchedule.WEEKLY: timedelta(days=7),
}
LEASE = timedelta(minutes=15)  # a claimed digest is someone's for this long
RETRY_FIRST_SECONDS = 60  # the first retry after a failed delivery; each next waits twice as long
RETRY_MAX_SECONDS = 3600
MAX_RECIPIENTS = 20
MAX_EVENTS = 20_000  # events listed in one digest (the counts are always complete)
SEAL_PURPOSE = "pipeline.digest-webhook"
WEBHOOK_EVENT = "events.digest"
NAMESPACE = uuid.UUID("0c8d5a2e-4f1b-4c3e-8a77-6d696e676164")


# --- who manages digests ------------------------------------------------------------------------


def may_manage(actor: User | AnonymousUser | None, organisation: Organisation) -> bool:
    """An organisation's admins (and node admins, and the operator on the command line)."""
    if actor is not None and (not actor.is_authenticated or not actor.is_active):
        return False
    return can_manage_organisation(cast("User | None", actor), organisation)


def _check(actor: User | AnonymousUser | None, organisation: Organisation) -> None:
    if not may_manage(actor, organisation):
        raise PermissionDenied(_("Only the organisation's admins manage its digests."))


def digests_visible_to(user: User | AnonymousUser | None) -> QuerySet[Digest]:
    """The digests of the organisations ``user`` administers (all of them for node admins)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Digest.objects.none()
    digests = Digest.objects.select_related("organisation")
    if cast(User, user).is_node_admin:
        return digests
    return digests.filter(
        organisation__memberships__user_id=user.pk,
        organisation__memberships__is_active=True,
        organisation__memberships__role__in=ORG_MANAGER_ROLES,
    ).distinct()


def manageable_organisations(user: User | AnonymousUser | None) -> QuerySet[Organisation]:
    if user is None or not user.is_authenticated or not user.is_active:
        return Organisation.objects.none()
    if cast(User, user).is_node_admin:
        return Organisation.objects.order_by("name")
    return (
        Organisation.objects.filter(
            memberships__user_id=user.pk, memberships__is_active=True, memberships__role__in=ORG_MANAGER_ROLES
        )
        .distinct()
        .order_by("name")
    )


# --- subscriptions ------------------------------------------------------------------------------


def duty_addresses(organisation: Organisation) -> list[str]:
    """The e-mail addresses of the organisation's 24/7 duty contacts in the directory."""
    from minga.directory.choices import ContactRole
    from minga.directory.models import PointOfContact

    rows = PointOfContact.objects.filter(organisation=organisation, role=ContactRole.DUTY)
    return sorted(set(rows.values_list("email", flat=True)))


def addresses(digest: Digest) -> list[str]:
    return list(digest.recipients) or duty_addresses(digest.organisation)


def _clean_recipients(recipients: list[str] | str | None) -> list[str]:
    if recipients is None:
        return []
    if isinstance(recipients, str):
        recipients = [r for r in recipients.replace(",", " ").split()]
    cleaned: list[str] = []
    for address in recipients:
        address = str(address).strip()
        if not address:
            continue
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(
                {"recipients": _("%(value)s is not an e-mail address.") % {"value": address[:100]}}
            ) from None
        if address.lower() not in (c.lower() for c in cleaned):
            cleaned.append(address)
    if len(cleaned) > MAX_RECIPIENTS:
        raise ValidationError({"recipients": _("At most %(n)d addresses.") % {"n": MAX_RECIPIENTS}})
    return cleaned


def _validate(digest: Digest) -> None:
    if digest.schedule not in DigestSchedule.values:
        raise ValidationError({"schedule": _("The schedule is hourly, daily or weekly.")})
    if digest.channel not in DigestChannel.values:
        raise ValidationError({"channel": _("The channel is email or webhook.")})
    if digest.channel == DigestChannel.WEBHOOK:
        digest.url = webhooks.clean_url(digest.url)
    elif not addresses(digest):
        raise ValidationError(
            {
                "recipients": _(
                    "The organisation has no 24/7 duty contact in the directory: give the addresses."
                )
            }
        )


def create_digest(
    actor: User | AnonymousUser | None,
    organisation: Organisation,
    *,
    schedule: str = DigestSchedule.DAILY,
    channel: str = DigestChannel.EMAIL,
    recipients: list[str] | str | None = None,
    url: str = "",
    send_empty: bool = False,
) -> tuple[Digest, str]:
    """Subscribe ``organisation`` to a digest; the first holds the events stored from now on.
    Returns the digest and, for a webhook, its signing secret (shown once, sealed at rest).
    Audited (``pipeline.digest_created``)."""
    _check(actor, organisation)
    digest = Digest(
        organisation=organisation,
        schedule=schedule,
        channel=channel,
        recipients=_clean_recipients(recipients),
        url=(url or "").strip(),
        send_empty=bool(send_empty),
        window_end=timezone.now(),
        created_by=actor if isinstance(actor, User) else None,
    )
    _validate(digest)
    secret = ""
    if digest.channel == DigestChannel.WEBHOOK:
        secret = webhooks.new_secret()
        digest.sealed_secret = sealed.seal(secret, SEAL_PURPOSE)
    else:
        digest.url = ""
    with transaction.atomic():
        digest.save()
        audit.record(
            "pipeline.digest_created",
            actor=actor,
            obj=digest,
            organisation=organisation,
            details=_settings(digest),
        )
    return digest, secret


def _settings(digest: Digest) -> dict[str, Any]:
    return {
        "digest": str(digest.uuid),
        "schedule": digest.schedule,
        "channel": digest.channel,
        "recipients": list(digest.recipients),
        "url": digest.url,
        "send_empty": digest.send_empty,
        "is_active": digest.is_active,
    }


CHANGEABLE = ("schedule", "recipients", "url", "send_empty", "is_active")


def change_digest(actor: User | AnonymousUser | None, digest: Digest, **changes: Any) -> Digest:
    """Change a digest's schedule, recipients, URL, empty-digest choice or activity (the channel
    stays: subscribe again for another). Audited (``pipeline.digest_changed``)."""
    _check(actor, digest.organisation)
    unknown = set(changes) - set(CHANGEABLE)
    if unknown:
        raise ValidationError(_("Unknown settings: %(names)s.") % {"names": ", ".join(sorted(unknown))})
    before = _settings(digest)
    for name, value in changes.items():
        if value is None:
            continue
        if name == "recipients":
            value = _clean_recipients(value)
        if name in ("send_empty", "is_active"):
            value = bool(value)
        setattr(digest, name, value)
    _validate(digest)
    with transaction.atomic():
        # Only the settings: the delivery state (window, claim) is the workers', who may have
        # moved it since this copy was read.
        digest.save(update_fields=[*CHANGEABLE, "updated_at"])
        audit.record(
            "pipeline.digest_changed",
            actor=actor,
            obj=digest,
            organisation=digest.organisation,
            details={"before": before, "after": _settings(digest)},
        )
    return digest


def new_secret(actor: User | AnonymousUser | None, digest: Digest) -> str:
    """A new signing secret for a webhook digest (the old one stops working); shown once.
    Audited (``pipeline.digest_secret_changed``)."""
    _check(actor, digest.organisation)
    if digest.channel != DigestChannel.WEBHOOK:
        raise ValidationError(_("Only a webhook digest has a signing secret."))
    secret = webhooks.new_secret()
    with transaction.atomic():
        Digest.objects.filter(pk=digest.pk).update(sealed_secret=sealed.seal(secret, SEAL_PURPOSE))
        audit.record(
            "pipeline.digest_secret_changed",
            actor=actor,
            obj=digest,
            organisation=digest.organisation,
            details={"digest": str(digest.uuid)},
        )
    digest.refresh_from_db()
    return secret


def delete_digest(actor: User | AnonymousUser | None, digest: Digest) -> None:
    """Unsubscribe. Audited (``pipeline.digest_deleted``)."""
    _check(actor, digest.organisation)
    with transaction.atomic():
        audit.record(
            "pipeline.digest_deleted",
            actor=actor,
            organisation=digest.organisation,
            details=_settings(digest),
        )
        digest.delete()


# --- what a digest holds ------------------------------------------------------------------------


def events_for(organisation: Organisation, start: datetime, end: datetime) -> QuerySet[Event]:
    """The events routed to ``organisation`` that it may read, stored in [start, end), oldest
    first."""
    reader = cast("User", access.organisation_reader(organisation))  # the policy takes a Reader as is
    events = queries.events_visible_to(reader, queries.EventFilter(organisation=organisation))
    return events.filter(created_at__gte=start, created_at__lt=end).order_by("id")


def settled_until(now: datetime) -> datetime:
    """The latest time up to which every event is committed: ``now``, or the start of the
    oldest chunk still being written (its events are stored later with earlier times)."""
    writing = Chunk.objects.filter(
        done=False, started_at__isnull=False, run__status__in=(RunStatus.QUEUED, RunStatus.RUNNING)
    ).aggregate(oldest=Min("started_at"))["oldest"]
    return min(now, writing) if writing is not None else now


@dataclass
class Content:
    digest: Digest
    start: datetime
    end: datetime
    counts: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def truncated(self) -> bool:
        return len(self.rows) < self.counts["total"]

    @property
    def delivery(self) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{self.digest.uuid}:{self.start.isoformat()}"))


def content(digest: Digest, start: datetime, end: datetime) -> Content:
    events = events_for(digest.organisation, start, end)
    counts = queries.counts(events)
    rows = queries.export_rows(events[:MAX_EVENTS]) if counts["total"] else []
    return Content(digest, start, end, counts, rows)


def _when(value: datetime) -> str:
    return value.astimezone(timezone.get_current_timezone()).strftime("%Y-%m-%d %H:%M %Z")


def email_message(item: Content, to: list[str]) -> EmailMessage:
    """The e-mail of a digest: counts per classification in the body, the events as CSV."""
    org = item.digest.organisation
    total = item.counts["total"]
    labels = dict(EventType.choices)
    window = {"organisation": org.name, "start": _when(item.start), "end": _when(item.end)}
    if total == 0:
        subject = _("Minga digest for %(organisation)s: no events") % {"organisation": org.name}
        body = _("No events were routed to %(organisation)s between %(start)s and %(end)s.") % window
    else:
        subject = ngettext(
            "Minga digest for %(organisation)s: %(n)d event",
            "Minga digest for %(organisation)s: %(n)d events",
            total,
        ) % {"organisation": org.name, "n": total}
        lines = [
            ngettext(
                "%(n)d event was routed to %(organisation)s between %(start)s and %(end)s.",
                "%(n)d events were routed to %(organisation)s between %(start)s and %(end)s.",
                total,
            )
            % {**window, "n": total},
            "",
        ]
        lines.append(_("By classification:"))
        for kind, n in item.counts["by_type"].items():
            lines.append(f"  {kind} ({labels.get(kind, kind)}): {n}")
        lines.append("")
        if item.truncated:
            lines.append(
                _("The attached file holds the first %(n)d; the events page lists them all.")
                % {"n": len(item.rows)}
            )
        else:
            lines.append(_("The attached file lists them."))
        if settings.MINGA_PUBLIC_URL:
            lines.append(f"{settings.MINGA_PUBLIC_URL}/pipeline/?organisation={org.short_name}")
        body = "\n".join(str(line) for line in lines)
    message = EmailMessage(
        subject=str(subject),
        body=str(body) + "\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=to,
        headers={webhooks.DELIVERY_HEADER: item.delivery},
    )
    if total:
        stamp = item.start.strftime("%Y%m%dT%H%M")
        message.attach(f"events-{org.short_name}-{stamp}.csv", services.events_csv(item.rows), "text/csv")
    return message


def webhook_body(item: Content) -> bytes:
    org = item.digest.organisation
    return orjson.dumps(
        {
            "type": WEBHOOK_EVENT,
            "delivery": item.delivery,
            "digest": str(item.digest.uuid),
            "organisation": org.short_name,
            "window_start": item.start.isoformat(),
            "window_end": item.end.isoformat(),
            "counts": item.counts,
            "truncated": item.truncated,
            "events": item.rows,
        }
    )


# --- sending ------------------------------------------------------------------------------------


def _due(now: datetime) -> Q:
    return (
        Q(is_active=True)
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    )


def claim_due(now: datetime | None = None) -> list[tuple[int, str]]:
    """Claim each digest that is due (its period has passed since its window's end, and its
    retry, if any, is due): one conditional UPDATE each, so a digest is claimed once however
    many workers look. Returns (digest id, claim token) pairs."""
    now = now or timezone.now()
    claimed = []
    for pk, schedule, window_end in Digest.objects.filter(_due(now)).values_list(
        "pk", "schedule", "window_end"
    ):
        if window_end + PERIODS[DigestSchedule(schedule)] > now:
            continue
        token = uuid.uuid4().hex
        if Digest.objects.filter(_due(now), pk=pk, window_end=window_end).update(
            claim=token, claimed_until=now + LEASE
        ):
            claimed.append((pk, token))
    return claimed


def retry_delay(failures: int) -> timedelta:
    return timedelta(seconds=min(RETRY_FIRST_SECONDS * 2 ** max(failures - 1, 0), RETRY_MAX_SECONDS))


def send(digest_id: int, token: str, now: datetime | None = None) -> str:
    """Deliver the window of a digest claimed with ``token`` (see the module's docstring)."""
    now = now or timezone.now()
    digest = (
        Digest.objects.select_related("organisation")
        .filter(pk=digest_id, claim=token, claimed_until__gt=now, is_active=True)
        .first()
    )
    if digest is None:
        return f"digest {digest_id}: not claimed with this token (any more)"
    start = digest.window_end
    end = digest.pending_end
    if end is None:
        end = settled_until(now)
        if end <= start:
            Digest.objects.filter(pk=digest.pk, claim=token).update(claim="", claimed_until=None)
            return f"digest {digest_id}: nothing settled yet"
        Digest.objects.filter(pk=digest.pk, claim=token).update(pending_end=end)
    item = content(digest, start, end)
    total = item.counts["total"]
    if total == 0 and not digest.send_empty:
        _advanced(digest, token, item, now, sent=False)
        return f"digest {digest_id}: no events"
    try:
        target = _deliver(digest, item)
    except webhooks.DeliveryFailed as exc:
        _failed(digest, token, item, now, str(exc))
        return f"digest {digest_id}: failed: {exc}"
    _advanced(digest, token, item, now, sent=True, target=target)
    return f"digest {digest_id}: sent {total} events"


def _deliver(digest: Digest, item: Content) -> dict[str, Any]:
    """Send the digest; ``webhooks.DeliveryFailed`` with the reason when it did not go."""
    if digest.channel == DigestChannel.WEBHOOK:
        secret = sealed.unseal(digest.sealed_secret, SEAL_PURPOSE)
        if secret is None:
            raise webhooks.DeliveryFailed(
                _("The signing secret was sealed under another node key: set a new secret.")
            )
        delivered = webhooks.post(
            digest.url, secret, webhook_body(item), delivery=item.delivery, event=WEBHOOK_EVENT
        )
        return {"url": digest.url, "status": delivered.status}
    to = addresses(digest)
    if not to:
        raise webhooks.DeliveryFailed(_("No recipients: the organisation has no 24/7 duty contact."))
    try:
        email_message(item, to).send(fail_silently=False)
    except (OSError, ValueError) as exc:  # smtplib's errors are OSErrors
        raise webhooks.DeliveryFailed(
            _("The e-mail server refused it: %(reason)s") % {"reason": exc}
        ) from None
    return {"recipients": to}


def _window(item: Content) -> dict[str, Any]:
    return {
        "digest": str(item.digest.uuid),
        "channel": item.digest.channel,
        "window_start": item.start.isoformat(),
        "window_end": item.end.isoformat(),
        "events": item.counts["total"],
        "listed": len(item.rows),
        "tlp": sorted({r["tlp"] for r in item.rows}),
        "delivery": item.delivery,
    }


def _advanced(
    digest: Digest,
    token: str,
    item: Content,
    now: datetime,
    *,
    sent: bool,
    target: dict[str, Any] | None = None,
) -> None:
    """Move the window past what was delivered (or found empty), in one transaction with its
    audit entry; only if the window is still the one this claim read."""
    change: dict[str, Any] = {
        "window_end": item.end,
        "pending_end": None,
        "claim": "",
        "claimed_until": None,
        "failures": 0,
        "next_attempt_at": None,
        "last_error": "",
    }
    if sent:
        change.update(last_sent_at=now, last_count=item.counts["total"])
    with transaction.atomic():
        moved = Digest.objects.filter(pk=digest.pk, claim=token, window_end=item.start).update(**change)
        if moved and sent:
            audit.record(
                "pipeline.digest_sent",
                obj=digest,
                organisation=digest.organisation,
                details={**_window(item), **(target or {})},
            )
    if not moved:
        logger.warning("digest %s: the window moved under this claim; left as it is", digest.pk)


def _failed(digest: Digest, token: str, item: Content, now: datetime, reason: str) -> None:
    failures = digest.failures + 1
    with transaction.atomic():
        Digest.objects.filter(pk=digest.pk, claim=token).update(
            claim="",
            claimed_until=None,
            failures=failures,
            next_attempt_at=now + retry_delay(failures),
            last_error=reason[:1000],
        )
        audit.record(
            "pipeline.digest_failed",
            obj=digest,
            organisation=digest.organisation,
            details={**_window(item), "reason": reason[:300], "failures": failures},
        )
