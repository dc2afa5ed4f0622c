"""The tamper-evident audit log.

Each entry carries the SHA-256 of its own content and of the entry before it, and a sequence
number without gaps. ``verify`` recomputes the chain: an altered, removed, inserted or
reordered entry breaks it, and the chain head (updated with every append) catches a
truncated tail. Entries are written by service functions inside their own transaction, so an
audit entry exists exactly when the change it describes was committed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from minga.core.models import AuditChainHead, AuditEntry, Organisation

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from minga.core.models import User

GENESIS_HASH = "0" * 64


def _canonical(entry: AuditEntry) -> bytes:
    payload = {
        "seq": entry.seq,
        "timestamp": entry.timestamp.astimezone(UTC).isoformat(),
        "actor_id": entry.actor_id,
        "actor": entry.actor_label,
        "organisation_id": entry.organisation_id,
        "organisation": entry.organisation_label,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "object_repr": entry.object_repr,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_hash(entry: AuditEntry) -> str:
    return hashlib.sha256(_canonical(entry)).hexdigest()


def _normalise_details(details: dict[str, Any] | None) -> dict[str, Any]:
    # Round-trip through JSON now, so the hash covers exactly what the database will return.
    return json.loads(json.dumps(details or {}, cls=DjangoJSONEncoder, sort_keys=True))


def record(
    action: str,
    *,
    actor: User | AnonymousUser | None = None,
    obj: models.Model | None = None,
    organisation: Organisation | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry. Call it inside the transaction of the change it describes."""
    if actor is not None and not actor.is_authenticated:
        actor = None
    if organisation is None and isinstance(obj, Organisation):
        organisation = obj
    with transaction.atomic():
        head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
        if head is None:
            head = AuditChainHead.objects.create(pk=1, seq=0, hash=GENESIS_HASH)
            head = AuditChainHead.objects.select_for_update().get(pk=1)
        entry = AuditEntry(
            seq=head.seq + 1,
            timestamp=timezone.now(),
            actor=actor,
            actor_label=actor.get_username() if actor is not None else "",
            organisation=organisation,
            organisation_label=organisation.short_name if organisation is not None else "",
            action=action,
            object_type=obj._meta.label_lower if obj is not None else "",
            object_id=str(obj.pk) if obj is not None else "",
            object_repr=str(obj)[:300] if obj is not None else "",
            details=_normalise_details(details),
            prev_hash=head.hash,
        )
        entry.hash = compute_hash(entry)
        entry.save()
        head.seq, head.hash = entry.seq, entry.hash
        head.save(update_fields=["seq", "hash"])
    return entry


@dataclass(frozen=True)
class Problem:
    seq: int | None
    message: str


@dataclass(frozen=True)
class VerifyResult:
    entries: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _walk(entries: Iterator[AuditEntry]) -> Iterator[Problem]:
    expected_seq, prev_hash = 1, GENESIS_HASH
    for entry in entries:
        if entry.seq != expected_seq:
            yield Problem(
                entry.seq,
                _("expected entry #%(expected)d, found #%(found)d: entries were removed or inserted")
                % {"expected": expected_seq, "found": entry.seq},
            )
        if entry.prev_hash != prev_hash:
            yield Problem(entry.seq, _("does not follow the entry before it (chain broken)"))
        if compute_hash(entry) != entry.hash:
            yield Problem(entry.seq, _("content does not match its hash (entry altered)"))
        expected_seq, prev_hash = entry.seq + 1, entry.hash


def verify() -> VerifyResult:
    """Recompute the whole chain, streaming it in order of sequence number."""
    problems: list[Problem] = []
    count = 0
    last_seq, last_hash = 0, GENESIS_HASH

    def counted() -> Iterator[AuditEntry]:
        nonlocal count, last_seq, last_hash
        for entry in AuditEntry.objects.order_by("seq").iterator(chunk_size=2000):
            count += 1
            last_seq, last_hash = entry.seq, entry.hash
            yield entry

    for problem in _walk(counted()):
        problems.append(problem)
        if len(problems) >= 100:
            problems.append(Problem(None, _("more problems not listed")))
            break
    head = AuditChainHead.objects.filter(pk=1).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    if len(problems) < 100 and (head_seq, head_hash) != (last_seq, last_hash):
        problems.append(
            Problem(
                None,
                _(
                    "the chain ends at #%(last)d but its head records #%(head)d: "
                    "entries were removed from the end or the head was altered"
                )
                % {"last": last_seq, "head": head_seq},
            )
        )
    return VerifyResult(entries=count, problems=tuple(problems))
