"""Background work of federation: syncing with each peer when it is due."""

from __future__ import annotations

from datetime import timedelta

from minga.core import schedule
from minga.core.tasks import background_task


@background_task(max_attempts=1)
def sync_peer(peer_id: int) -> str:
    """Pull from and push to one peer (``federation.sync``). A failure is not retried here: the
    peer keeps its failure count and next attempt, which the sweep below honours (backoff)."""
    from minga.taxii import federation
    from minga.taxii.models import Peer

    peer = Peer.objects.filter(pk=peer_id, is_active=True).first()
    if peer is None:
        return "no such active peer"
    outcome = federation.sync(peer)
    if outcome.skipped:
        return "a sync of this peer is running elsewhere"
    if outcome.error:
        return f"failed: {outcome.error}"
    return f"pulled {outcome.pulled}, pushed {outcome.pushed}"


@schedule.every(timedelta(seconds=10), name="taxii.sync_peers")
@background_task()
def sync_due_peers() -> str:
    """Every ten seconds: queue a sync of each active peer whose next attempt is due (its
    interval after a success, its backoff after a failure)."""
    from minga.taxii import federation

    ids = list(federation.due_peers().values_list("pk", flat=True))
    for pk in ids:
        sync_peer.enqueue(pk)
    return f"queued {len(ids)} peer sync(s)"
