"""Federation: this node and its peers exchange intelligence over TAXII 2.1.

**What travels.** A peer receives what the distribution rule lets this node send it
(``minga.core.access.distribution_filter``: CLEAR to all, GREEN to member nodes, AMBER to the
nodes hosting a recipient, AMBER+STRICT never onward, RED never). The same rule answers a peer
that pulls (the *federation collection*, offered to a peer's account only) and chooses what this
node pushes to a peer.

**Provenance.** Between Minga nodes every object carries a property extension
(``EXTENSION_ID``) with the node where it was first shared, its originating organisation and its
recipient organisations, by their network-wide short names. The receiving node stores the version
in the name of that organisation, for those recipients, with ``origin_node`` and
``received_from`` set; versions are kept per originating organisation, so a copy that comes
round a ring again is a replay (counted, not stored twice), and the rule never sends a version
back to the node it came from or where it was first shared. Foreign servers (medallion, any
TAXII 2.1 server) get plain STIX and give plain STIX, stored in the name of the organisation
registered for them.

**Sync.** ``sync`` pulls, then pushes, with cursors saved only once what they cover is
committed: a pull saves the position after each page it stored; a push saves it after the peer
has answered with its status. A peer that is down or answers garbage is retried with backoff
(``backoff``), and the next sync resumes at the saved cursors.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

import ijson
import orjson
import requests
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from minga.core import access, audit, sealed
from minga.core import services as core_services
from minga.core.choices import TLP
from minga.core.models import ApiToken, Organisation, User
from minga.intel import services as intel_services
from minga.intel import stix
from minga.intel.convert import Rejected
from minga.intel.models import StixObject
from minga.taxii import mispfeed
from minga.taxii.models import Direction, Peer, PeerKind, TaxiiStatus
from minga.taxii.services import MEDIA_TAXII, NAMESPACE, Filters, Page, emitted_json, encode_next, page

logger = logging.getLogger(__name__)

FEDERATION_ID = str(uuid.uuid5(NAMESPACE, "federation"))
EXTENSION_ID = f"extension-definition--{uuid.uuid5(NAMESPACE, 'provenance')}"
CREDENTIAL_PURPOSE = "minga-peer-credential"
PAGE_SIZE = 1000  # objects per page pulled and per envelope pushed
TIMEOUT = 30  # seconds per HTTP request to a peer
MAX_BACKOFF = timedelta(hours=1)
FIRST_BACKOFF = timedelta(seconds=30)
CLAIM = timedelta(minutes=10)  # how long one sync may hold a peer before another may take it
TOKEN_DAYS = 366


def node_id() -> str:
    return str(settings.MINGA_NODE_ID)


def peer_node(peer: Peer) -> access.PeerNode:
    return access.PeerNode(
        node_id=peer.name,
        hosted_organisation_ids=frozenset(peer.hosted_organisations.values_list("pk", flat=True)),
        is_member_node=peer.is_member_node,
    )


def peer_for(user: User) -> Peer | None:
    """The active peer whose account ``user`` is, if any."""
    return Peer.objects.filter(account_id=user.pk, is_active=True).first()


# --- registering peers -------------------------------------------------------------------------


@dataclass
class NewPeer:
    peer: Peer
    token: str  # what the peer presents here: shown once


def _require_admin(actor: User | None) -> None:
    if not core_services.is_node_admin(actor):
        raise PermissionDenied(_("Only node admins manage peers."))


def _organisations(short_names: Iterable[str], field_name: str) -> list[Organisation]:
    wanted = [name.strip() for name in short_names if name.strip()]
    found = {org.short_name: org for org in Organisation.objects.filter(short_name__in=wanted)}
    unknown = [name for name in wanted if name not in found]
    if unknown:
        raise ValidationError(
            {field_name: _("Unknown organisations: %(names)s.") % {"names": ", ".join(sorted(unknown))}}
        )
    return [found[name] for name in wanted]


def add_peer(
    actor: User | None,
    *,
    name: str,
    url: str,
    kind: str = PeerKind.MINGA,
    direction: str = Direction.BOTH,
    hosts: Iterable[str] = (),
    credential: str = "",
    username: str = "",
    collection_id: str = "",
    interval: int = 300,
    organisation: str = "",
    default_tlp: str = TLP.AMBER,
    is_member_node: bool = True,
) -> NewPeer:
    """Register a peer, with an account for it on this node and an API token that the peer's
    operator gives their node (``minga peer add`` there, or ``minga peer set-token``). Node
    admins (or the operator). Audited as ``federation.peer_added``; the credential never is."""
    _require_admin(actor)
    errors: dict[str, str] = {}
    if slugify(name) != name or not name:
        errors["name"] = _("A peer's name is its node id: lower-case letters, digits and hyphens.")
    elif name == node_id():
        errors["name"] = _("This is this node's own id (MINGA_NODE_ID).")
    elif Peer.objects.filter(name=name).exists():
        errors["name"] = _("A peer with this name exists already.")
    if not url.startswith(("http://", "https://")):
        errors["url"] = _(
            "Give the peer's TAXII API root (or a MISP feed's folder) as an http:// or https:// URL."
        )
    if kind not in PeerKind.values:
        errors["kind"] = _("Kind is minga, taxii or misp.")
    elif kind == PeerKind.MISP and direction != Direction.PULL:
        errors["direction"] = _("A MISP feed is only read: its direction is pull.")
    if direction not in Direction.values:
        errors["direction"] = _("Direction is pull, push or both.")
    if not 10 <= interval <= 86400:
        errors["interval"] = _("Sync between every 10 seconds and once a day (86400).")
    if default_tlp not in (TLP.CLEAR, TLP.GREEN, TLP.AMBER, TLP.AMBER_STRICT):
        errors["default_tlp"] = _("Unmarked objects of a peer are CLEAR, GREEN, AMBER or AMBER+STRICT.")
    if kind == PeerKind.TAXII and not collection_id:
        errors["collection_id"] = _("Name the foreign server's collection to exchange with.")
    if kind in (PeerKind.TAXII, PeerKind.MISP) and not organisation:
        errors["organisation"] = _(
            "Name the organisation in whose name the foreign server's objects are stored."
        )
    if errors:
        raise ValidationError(errors)
    hosted = _organisations(hosts, "hosts")
    owner = _organisations([organisation], "organisation")[0] if organisation else None
    with transaction.atomic():
        account = User(username=f"peer-{name}"[:150], is_active=True)
        account.set_unusable_password()
        if User.objects.filter(username=account.username).exists():
            raise ValidationError(
                {"name": _("An account named %(user)s exists already.") % {"user": account.username}}
            )
        account.save()
        peer = Peer.objects.create(
            name=name,
            kind=kind,
            url=url.rstrip("/") + "/",
            direction=direction,
            interval=interval,
            collection_id=collection_id.strip(),
            username=username.strip(),
            credential=sealed.seal(credential, CREDENTIAL_PURPOSE) if credential else "",
            organisation=owner,
            default_tlp=default_tlp,
            is_member_node=is_member_node,
            account=account,
            next_attempt_at=timezone.now(),
        )
        peer.hosted_organisations.set(hosted)
        issued = core_services.create_api_token(
            None, account, name=f"federation: {name}", expires_in_days=TOKEN_DAYS
        )
        audit.record(
            "federation.peer_added",
            actor=actor,
            obj=peer,
            details={
                "name": name,
                "kind": kind,
                "url": peer.url,
                "direction": direction,
                "hosts": [org.short_name for org in hosted],
                "token_prefix": issued.token.prefix,
            },
        )
    return NewPeer(peer, issued.raw)


def set_credential(actor: User | None, peer: Peer, credential: str, username: str = "") -> Peer:
    """Keep (sealed) the token this node presents to ``peer``. Audited, without the secret."""
    _require_admin(actor)
    if not credential.strip():
        raise ValidationError({"credential": _("Give the token the peer issued for this node.")})
    peer.credential = sealed.seal(credential.strip(), CREDENTIAL_PURPOSE)
    peer.username = username.strip()
    peer.next_attempt_at = timezone.now()
    peer.failures = 0
    with transaction.atomic():
        peer.save(update_fields=["credential", "username", "next_attempt_at", "failures"])
        audit.record("federation.peer_credential_set", actor=actor, obj=peer, details={"name": peer.name})
    return peer


def remove_peer(actor: User | None, peer: Peer) -> None:
    """Stop exchanging with ``peer``: its account is disabled and its tokens revoked, so it can
    no longer pull or push here. What it sent stays, with its provenance. Audited."""
    _require_admin(actor)
    with transaction.atomic():
        account = peer.account
        if account is not None:
            ApiToken.objects.filter(user=account, revoked_at__isnull=True).update(revoked_at=timezone.now())
            User.objects.filter(pk=account.pk).update(is_active=False)
        audit.record("federation.peer_removed", actor=actor, obj=peer, details={"name": peer.name})
        peer.delete()


# --- serving a peer ------------------------------------------------------------------------------


def distributable(peer: Peer) -> QuerySet[StixObject]:
    """Every version this node may send to ``peer``: the start of what it pulls and of what is
    pushed to it."""
    return StixObject.objects.filter(access.distribution_filter(StixObject, peer_node(peer))).select_related(
        None
    )


def served(peer: Peer, filters: Filters) -> QuerySet[StixObject]:
    """What ``peer`` pulls: every version the rule lets it have (all versions, each
    organisation's copy: the peer keeps them per origin too), narrowed by the spec's filters."""
    objects = distributable(peer)
    if filters.added_after is not None:
        objects = objects.filter(date_added__gt=filters.added_after)
    if filters.ids:
        objects = objects.filter(stix_id__in=filters.ids)
    if filters.types:
        objects = objects.filter(type__in=filters.types)
    return objects


def _provenance_extension(origin_node: str, origin: str, recipients: list[str]) -> dict[str, Any]:
    return {
        "extension_type": "property-extension",
        "origin_node": origin_node or node_id(),
        "origin_organisation": origin,
        "recipient_organisations": recipients,
    }


def _with_provenance(raw: str, tlp: str, extension: dict[str, Any]) -> bytes:
    obj = orjson.loads(emitted_json(raw, tlp))
    obj.setdefault("extensions", {})[EXTENSION_ID] = extension
    return orjson.dumps(obj)


def emitted_page(peer: Peer, objects: QuerySet[StixObject], filters: Filters) -> tuple[Page, list[bytes]]:
    """One page of ``objects`` (already narrowed by the rule) for ``peer``, as the JSON of each
    object: with the provenance extension for a Minga node, plain STIX for a foreign server.
    Audited (``federation.served``) with the counts per TLP level, like any page read."""
    result = page(objects, filters, "tlp", "raw", "origin_organisation__short_name", "origin_node")
    pks = [row[0] for row in result.rows]
    recipients: dict[int, list[str]] = {}
    if peer.kind == PeerKind.MINGA and pks:
        through = StixObject.recipient_organisations.through
        for object_pk, short_name in (
            through.objects.filter(stixobject_id__in=pks)
            .order_by("organisation__short_name")
            .values_list("stixobject_id", "organisation__short_name")
        ):
            recipients.setdefault(object_pk, []).append(short_name)
    emitted: list[bytes] = []
    levels: dict[str, int] = {}
    for pk, _added, tlp, raw, origin, origin_node in result.rows:
        levels[tlp] = levels.get(tlp, 0) + 1
        if peer.kind == PeerKind.MINGA:
            extension = _provenance_extension(origin_node, origin, recipients.get(pk, []))
            emitted.append(_with_provenance(raw, tlp, extension))
        else:
            emitted.append(emitted_json(raw, tlp).encode())
    if result.rows:
        audit.record(
            "federation.served",
            actor=peer.account,
            details={"peer": peer.name, "objects": len(result.rows), "tlp": levels},
        )
    return result, emitted


def envelope_bytes(result: Page, emitted: list[bytes], *, with_next: bool) -> bytes:
    """A TAXII envelope of emitted objects. The federation collection names the position after
    its last object even on the last page (``with_next``): a Minga peer keeps it as its cursor."""
    head: dict[str, Any] = {"more": result.more}
    if result.rows and (result.more or with_next):
        head["next"] = result.next or _position(result)
    body = orjson.dumps(head)
    if emitted:
        body = body[:-1] + b',"objects":[' + b",".join(emitted) + b"]}"
    return body


def _position(result: Page) -> str:
    last = result.rows[-1]
    return encode_next(last[1], last[0])


# --- receiving ---------------------------------------------------------------------------------


@dataclass
class Received:
    """What a peer sent, and what became of it."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    successes: list[dict[str, str]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    error: str = ""

    def add(self, result: intel_services.ImportResult) -> None:
        self.accepted += result.accepted
        self.duplicates += result.duplicates
        self.rejected += result.rejected
        for stored in result.stored or []:
            self.successes.append({"id": stored.stix_id, "version": stored.modified.isoformat()})
        for failed in result.failed or []:
            self.failures.append({"id": failed.stix_id, "version": failed.version, "message": failed.reason})
        if result.error and not self.error:
            self.error = result.error


# (origin node, organisation pk, recipient pks), or a refusal's reason
_Key = tuple[str, int, tuple[int, ...]] | str


def _keyed(peer: Peer, items: Iterable[tuple[int, Any]]) -> Iterator[tuple[_Key, int, Any]]:
    """Each object with the provenance it is to be stored under: from the extension for a Minga
    peer (stripped from the object), from the peer's registration for a foreign server."""
    organisations: dict[str, int | None] = {}

    def organisation_pk(short_name: Any) -> int | None:
        if not isinstance(short_name, str):
            return None
        if short_name not in organisations:
            found = Organisation.objects.filter(short_name=short_name).values_list("pk", flat=True).first()
            organisations[short_name] = found
        return organisations[short_name]

    for index, obj in items:
        if not isinstance(obj, dict):
            yield _("An object must be a JSON object."), index, obj
            continue
        if peer.kind != PeerKind.MINGA:
            assert peer.organisation_id is not None
            yield (peer.name, peer.organisation_id, ()), index, obj
            continue
        extensions = obj.get("extensions")
        extension = extensions.pop(EXTENSION_ID, None) if isinstance(extensions, dict) else None
        if isinstance(extensions, dict) and not extensions:
            del obj["extensions"]
        if not isinstance(extension, dict):
            yield _("The object carries no provenance (Minga's federation extension)."), index, obj
            continue
        if stix.tlp_of(obj) == TLP.RED:
            yield _("TLP:RED never travels between nodes."), index, obj
            continue
        origin_node = extension.get("origin_node")
        if not isinstance(origin_node, str) or not origin_node or len(origin_node) > 100:
            yield _("The provenance names no origin node."), index, obj
            continue
        origin = organisation_pk(extension.get("origin_organisation"))
        if origin is None:
            yield (
                (
                    _("The originating organisation %(name)s is not in this node's directory.")
                    % {"name": str(extension.get("origin_organisation"))[:60]}
                ),
                index,
                obj,
            )
            continue
        names = extension.get("recipient_organisations") or []
        # Recipients this node does not know are not named here: no one here belongs to them.
        recipients = sorted(
            {pk for pk in map(organisation_pk, names if isinstance(names, list) else []) if pk}
        )
        yield (origin_node, origin, tuple(recipients)), index, obj


def receive(peer: Peer, items: Iterable[tuple[int, Any]]) -> Received:
    """Store the objects a peer sent (pulled or pushed), run by run of the same provenance, each
    through the intel import (same checks, chunks, observables, audit). Objects that were first
    shared here come back as replays of what is stored and are counted as such."""
    received = Received()
    own = node_id()
    keyed = _keyed(peer, items)
    for key, run in itertools.groupby(keyed, key=lambda item: item[0]):
        if isinstance(key, str):  # a refusal: every object of the run is rejected with it
            rejected = [
                (index, Rejected(key, obj.get("id", "") if isinstance(obj, dict) else ""))
                for _k, index, obj in run
            ]
            result = intel_services.ImportResult(stored=[], failed=[])
            for index, rejection in rejected:
                result.reject(index, rejection.stix_id, rejection.reason)
            received.add(result)
            continue
        origin_node, origin_pk, recipient_pks = key
        if origin_node == own:
            objects = [obj for _k, _index, obj in run]
            received.duplicates += len(objects)
            received.successes.extend(
                {
                    "id": str(obj.get("id", "")),
                    "version": str(obj.get("modified") or obj.get("created") or ""),
                }
                for obj in objects
            )
            continue
        organisation = Organisation.objects.get(pk=origin_pk)
        recipients = list(Organisation.objects.filter(pk__in=recipient_pks))
        result = intel_services.import_objects(
            None,
            organisation,
            ((index, obj) for _k, index, obj in run),
            peer.default_tlp if peer.kind != PeerKind.MINGA else TLP.AMBER,
            recipients,
            fmt="stix",
            source=f"peer {peer.name}",
            track=True,
            provenance=intel_services.Provenance(origin_node=origin_node, received_from=peer.name),
        )
        received.add(result)
        _apply_retractions(peer, organisation, origin_node, result)
    return received


def _apply_retractions(
    peer: Peer, organisation: Organisation, origin_node: str, result: intel_services.ImportResult
) -> None:
    """Retractions among the versions just stored (not replays) are applied at once."""
    from minga.taxii import retraction

    fresh = [
        s.stix_id
        for s in result.stored or []
        if s.fresh and s.stix_id.startswith(retraction.RETRACTION + "--")
    ]
    for row in StixObject.objects.filter(
        stix_id__in=fresh, origin_organisation=organisation, origin_node=origin_node, received_from=peer.name
    ).select_related("origin_organisation"):
        retraction.apply_received(peer, row)


def objects_of(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    """The objects of an envelope, streamed."""
    return enumerate(ijson.items(stream, "objects.item", use_float=True))


def receive_envelope(peer: Peer, stream: IO[bytes]) -> TaxiiStatus:
    """An envelope POSTed by ``peer`` to the federation collection, stored, and its status."""
    requested = timezone.now()
    try:
        received = receive(peer, objects_of(stream))
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError) as exc:
        raise ValidationError(
            _("The envelope is not valid JSON: %(error)s") % {"error": str(exc)[:200]}
        ) from None
    failures = list(received.failures)
    if received.error:
        failures.append({"id": "", "version": requested.isoformat(), "message": received.error})
    Peer.objects.filter(pk=peer.pk).update(rejected=F("rejected") + received.rejected)
    return TaxiiStatus.objects.create(
        peer=peer,
        requested_by=peer.account,
        collection_id=FEDERATION_ID,
        request_timestamp=requested,
        status="complete",
        total_count=len(received.successes) + len(failures),
        success_count=len(received.successes),
        failure_count=len(failures),
        successes=received.successes,
        failures=failures,
    )


# --- syncing with a peer -------------------------------------------------------------------------


class PeerUnavailable(Exception):
    """The peer could not be reached, or answered something that is not TAXII 2.1."""


def _unreachable(exc: Exception) -> PeerUnavailable:
    return PeerUnavailable(_("The peer cannot be reached: %(error)s") % {"error": str(exc)[:300]})


def _session(peer: Peer) -> requests.Session:
    session = requests.Session()
    session.headers["Accept"] = MEDIA_TAXII
    secret = sealed.unseal(peer.credential, CREDENTIAL_PURPOSE) if peer.credential else None
    if peer.credential and secret is None:
        raise PeerUnavailable(_("The peer's credential cannot be unsealed: was MINGA_SECRET_KEY changed?"))
    if secret:
        if peer.username:
            session.auth = (peer.username, secret)
        else:
            session.headers["Authorization"] = f"Bearer {secret}"
    return session


def _collection_url(peer: Peer) -> str:
    collection = peer.collection_id or FEDERATION_ID
    return f"{peer.url}collections/{collection}/objects/"


def _answer(response: requests.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            detail = response.json()
            text = f"{detail.get('title', '')}: {detail.get('description', '')}".strip(": ")
        except ValueError:
            text = response.text[:200]
        raise PeerUnavailable(
            _("The peer answered HTTP %(status)d: %(detail)s")
            % {"status": response.status_code, "detail": text}
        )
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind not in ("application/taxii+json", "application/stix+json"):
        raise PeerUnavailable(
            _("The peer answered %(type)s, not TAXII 2.1.") % {"type": kind or _("no content type")}
        )
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise PeerUnavailable(
            _("The peer's answer is not valid JSON: %(error)s") % {"error": str(exc)[:200]}
        ) from None
    if not isinstance(body, dict):
        raise PeerUnavailable(_("The peer's answer is not a TAXII resource."))
    return body


def pull(peer: Peer, session: requests.Session) -> int:
    """Pull what the peer offers after the saved cursor, page by page; each page is stored, then
    its position saved. From a Minga node the position is the ``next`` token of its federation
    collection; from a foreign server, ``added_after`` set to the page's
    ``X-TAXII-Date-Added-Last``. Returns how many objects were received."""
    total = 0
    cursor = peer.pull_cursor
    following = ""
    while True:
        params: dict[str, Any] = {"limit": PAGE_SIZE, "match[version]": "all"}
        if peer.kind == PeerKind.MINGA:
            if cursor:
                params["next"] = cursor
        else:
            if following:
                params["next"] = following
            elif cursor:
                params["added_after"] = cursor
        try:
            response = session.get(_collection_url(peer), params=params, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise PeerUnavailable(
                _("The peer cannot be reached: %(error)s") % {"error": str(exc)[:300]}
            ) from None
        body = _answer(response)
        objects = body.get("objects", [])
        if not isinstance(objects, list):
            raise PeerUnavailable(_("The peer's envelope holds no list of objects."))
        with transaction.atomic():
            received = receive(peer, enumerate(objects))
            new_cursor = cursor
            if peer.kind == PeerKind.MINGA:
                new_cursor = str(body.get("next") or cursor)
            else:
                new_cursor = response.headers.get("X-TAXII-Date-Added-Last", cursor)
            Peer.objects.filter(pk=peer.pk).update(
                pull_cursor=new_cursor[:200],
                pulled=F("pulled") + received.accepted,
                rejected=F("rejected") + received.rejected,
                last_pulled_added=timezone.now() if objects else peer.last_pulled_added,
            )
        cursor = new_cursor
        total += received.accepted
        more = bool(body.get("more"))
        if not more or not objects:
            break
        following = str(body.get("next") or "")
        if peer.kind != PeerKind.MINGA and not following:
            break
    peer.pull_cursor = cursor
    return total


def push(peer: Peer, session: requests.Session) -> int:
    """Push what the rule lets this node send to ``peer`` and it has not had yet, envelope by
    envelope; the position is saved after the peer has answered each with its status. Objects
    it refused are counted in its status, not sent again. Returns how many were sent."""
    total = 0
    objects = distributable(peer)
    while True:
        filters = Filters(limit=PAGE_SIZE)
        if peer.push_after is not None:
            filters.after = (peer.push_after, peer.push_after_pk)
        result, emitted = emitted_page(peer, objects, filters)
        if not result.rows:
            break
        body = envelope_bytes(result, emitted, with_next=False)
        try:
            response = session.post(
                _collection_url(peer),
                data=body,
                headers={"Content-Type": MEDIA_TAXII},
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise PeerUnavailable(
                _("The peer cannot be reached: %(error)s") % {"error": str(exc)[:300]}
            ) from None
        status = _answer(response)
        if "success_count" not in status:
            raise PeerUnavailable(_("The peer did not answer with a status resource."))
        last_pk, last_added = result.rows[-1][0], result.rows[-1][1]
        Peer.objects.filter(pk=peer.pk).update(
            push_after=last_added, push_after_pk=last_pk, pushed=F("pushed") + len(result.rows)
        )
        peer.push_after, peer.push_after_pk = last_added, last_pk
        total += len(result.rows)
        if not result.more:
            break
    return total


@dataclass
class SyncResult:
    peer: str
    pulled: int = 0
    pushed: int = 0
    error: str = ""
    skipped: bool = False


def backoff(failures: int) -> timedelta:
    """The wait after ``failures`` failed syncs in a row: 30 s, doubling, at most an hour."""
    return min(FIRST_BACKOFF * (2 ** max(failures - 1, 0)), MAX_BACKOFF)


def sync(peer: Peer, *, now: datetime | None = None) -> SyncResult:
    """Pull from and push to ``peer`` as its direction says. One sync at a time per peer (a
    conditional UPDATE claims it). A failure is recorded on the peer with the next attempt
    after ``backoff``; success resets the count. Audited (``federation.synced`` or
    ``federation.sync_failed``)."""
    now = now or timezone.now()
    claimed = Peer.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now), pk=peer.pk, is_active=True
    ).update(claimed_until=now + CLAIM, last_attempt_at=now)
    outcome = SyncResult(peer.name)
    if not claimed:
        outcome.skipped = True
        return outcome
    peer.refresh_from_db()
    try:
        session = _session(peer)
        if peer.kind == PeerKind.MISP:
            outcome.pulled = mispfeed.pull(peer, session)  # a feed is only read
        else:
            if peer.pulls:
                outcome.pulled = pull(peer, session)
            if peer.pushes:
                outcome.pushed = push(peer, session)
    except (PeerUnavailable, ValidationError) as exc:
        outcome.error = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
    finished = timezone.now()
    with transaction.atomic():
        if outcome.error:
            failures = peer.failures + 1
            Peer.objects.filter(pk=peer.pk).update(
                claimed_until=None,
                failures=failures,
                last_error=outcome.error[:2000],
                next_attempt_at=finished + backoff(failures),
            )
            audit.record(
                "federation.sync_failed",
                obj=peer,
                details={"peer": peer.name, "error": outcome.error[:500], "failures": failures},
            )
        else:
            Peer.objects.filter(pk=peer.pk).update(
                claimed_until=None,
                failures=0,
                last_error="",
                last_success_at=finished,
                next_attempt_at=finished + timedelta(seconds=peer.interval),
            )
            if outcome.pulled or outcome.pushed:
                audit.record(
                    "federation.synced",
                    obj=peer,
                    details={"peer": peer.name, "pulled": outcome.pulled, "pushed": outcome.pushed},
                )
    return outcome


def due_peers(now: datetime | None = None) -> QuerySet[Peer]:
    now = now or timezone.now()
    return Peer.objects.filter(is_active=True).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
