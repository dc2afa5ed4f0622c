"""Read paths of the intel store, every one through the access policy (``visible_to``).

Correlation is answered from the observables index: the observables of one object version,
then the other latest versions linked to them that the reader may see. No count or existence
of anything outside the reader's policy leaks: hidden objects are filtered before anything is
counted or listed.

Versions are kept per originating organisation, so several organisations may hold the same id,
even the same version. A reader sees one object per id: the newest version it may read of
those flagged latest by their organisations, and of two copies of one version, its own
organisation's, else the one stored first (``preferred``). Lists, search, the object's page,
correlation, sightings and exports all answer so; an object's versions list each version once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet, Sum

from minga.core import access
from minga.intel import bulk, observables, stix
from minga.intel.models import ImportJob, ObjectObservable, Observable, StixObject

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from minga.core.models import User

    Reader = User | AnonymousUser | None

MAX_CORRELATIONS = 200  # a hot observable (a public resolver) links to thousands: show the newest
MAX_CANDIDATES = 5_000  # links read per correlation query, newest first


def visible(user: Reader) -> QuerySet[StixObject]:
    return StixObject.objects.visible_to(user).select_related("origin_organisation")  # type: ignore[attr-defined]


def outranked(user: Reader, candidates: QuerySet[StixObject], *, same: Sequence[str], order: str = "") -> Q:
    """The condition on a row that ``candidates`` (already narrowed to what ``user`` may
    read) hold a row preferred to it with the same values of ``same``: with ``order``
    "newest" ("oldest"), a newer (older) ``modified`` first; then the reader's own
    organisations' copy; then the copy stored first. Excluding it leaves one row per value of
    ``same``, chosen among rows the reader may read only, so the choice reveals nothing.

    A correlated NOT EXISTS on the rows of the same id (an index look-up), asked only of rows
    the import could not flag ``unrivalled``: a row no other row competes with is never
    outranked, and at a million rows the look-up per row cost more than the rest of a page."""
    rivals = candidates.order_by().filter(**{name: OuterRef(name) for name in same})
    first = Q(pk__lt=OuterRef("pk"))
    newer: list[Q] = []
    tie = Q()
    if order:
        lookup = "modified__gt" if order == "newest" else "modified__lt"
        newer = [Q(**{lookup: OuterRef("modified")})]
        tie = Q(modified=OuterRef("modified"))
    rivalled = ~Q(unrivalled=True)  # first, so that neither database looks further
    organisation_ids = sorted(access.reader_for(user).organisation_ids)
    if not organisation_ids:
        return rivalled & Q(Exists(rivals.filter(_any(*newer, tie & first))))
    own = Q(origin_organisation_id__in=organisation_ids)
    above_own = rivals.filter(_any(*newer, tie & own & first))
    above_other = rivals.filter(_any(*newer, tie & own, tie & ~own & first))
    return rivalled & ((own & Q(Exists(above_own))) | (~own & Q(Exists(above_other))))


def _any(*conditions: Q) -> Q:
    found = Q()
    for condition in conditions:
        found |= condition
    return found


def preferred(
    user: Reader, candidates: QuerySet[StixObject], *, same: Sequence[str], order: str = ""
) -> QuerySet[StixObject]:
    """``candidates`` (readable by ``user``) with one row per value of ``same``: see ``outranked``."""
    return candidates.exclude(outranked(user, candidates, same=same, order=order))


def latest_visible(user: Reader) -> QuerySet[StixObject]:
    """One row per id: of the versions flagged latest by their organisations, the newest the
    reader may read (its own organisation's copy of a version, else the first stored)."""
    latest = visible(user).filter(is_latest=True)
    return preferred(user, latest, same=("stix_id",), order="newest")


@dataclass
class Search:
    type: str = ""
    value: str = ""
    q: str = ""
    tlp: str = ""
    origin: str = ""
    added_after: datetime | None = None
    added_before: datetime | None = None
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    include_revoked: bool = False


def observables_matching(value: str, kind: str = "") -> QuerySet[Observable]:
    """Observables equal to ``value`` once normalised, as any kind it may be (or ``kind``)."""
    candidates = observables.guess(value) if not kind else []
    if kind:
        normalised = observables.normalise(kind, value)
        candidates = [(kind, normalised)] if normalised else []
    if not candidates:
        return Observable.objects.none()
    match = Q()
    for candidate_kind, normalised in candidates:
        match |= Q(kind=candidate_kind, value=normalised)
    return Observable.objects.filter(match)


def search(user: Reader, criteria: Search) -> QuerySet[StixObject]:
    """Latest versions the reader may see, one per id, narrowed by the criteria, newest first.
    With ``origin``, the latest versions that organisation shared (one per id already)."""
    if criteria.origin:
        objects = visible(user).filter(is_latest=True, origin_organisation__short_name=criteria.origin)
    else:
        objects = latest_visible(user)
    if criteria.type:
        objects = objects.filter(type=criteria.type)
    if criteria.value:
        linked = ObjectObservable.objects.filter(observable__in=observables_matching(criteria.value))
        objects = objects.filter(pk__in=linked.values("stix_object_id"))
    if criteria.q:
        objects = objects.filter(Q(label__icontains=criteria.q) | Q(stix_id=criteria.q))
    if criteria.tlp:
        objects = objects.filter(tlp=criteria.tlp)
    if criteria.added_after:
        objects = objects.filter(date_added__gte=criteria.added_after)
    if criteria.added_before:
        objects = objects.filter(date_added__lt=criteria.added_before)
    if criteria.modified_after:
        objects = objects.filter(modified__gte=criteria.modified_after)
    if criteria.modified_before:
        objects = objects.filter(modified__lt=criteria.modified_before)
    if not criteria.include_revoked:
        objects = objects.filter(revoked=False)
    return objects


def get_latest_or_404(user: Reader, stix_id: str) -> StixObject:
    """The reader's latest version of ``stix_id`` (as ``latest_visible`` chooses it), else 404
    (audited from TLP:AMBER up)."""
    # Two imports racing with versions of one object may each flag theirs latest: the newest
    # wins there too.
    newest = latest_visible(user).filter(stix_id=stix_id).order_by("-modified", "pk").values("pk")[:1]
    return access.get_readable_or_404(
        StixObject.objects.select_related("origin_organisation"), user, pk__in=newest
    )


def versions(user: Reader, stix_id: str) -> QuerySet[StixObject]:
    """The versions of ``stix_id`` the reader may read, newest first, each once: of copies of
    one version held by several organisations, the reader's own, else the first stored."""
    readable = visible(user).filter(stix_id=stix_id)
    return (
        preferred(user, readable, same=("stix_id", "modified"))
        .prefetch_related("recipient_organisations")
        .order_by("-modified", "pk")
    )


def holders(user: Reader, stix_id: str) -> list[str]:
    """The organisations (names) whose versions of ``stix_id`` the reader may read."""
    return sorted(
        set(visible(user).filter(stix_id=stix_id).values_list("origin_organisation__name", flat=True))
    )


def emitted(obj: StixObject) -> dict[str, Any]:
    """The STIX JSON of a stored version as Minga emits it: with its TLP 2.0 marking."""
    return stix.with_tlp_marking(obj.data, obj.tlp)


def bundle_of(objects: list[StixObject]) -> dict[str, Any]:
    """A STIX 2.1 bundle of ``objects`` with the TLP marking definitions they refer to."""
    import uuid

    levels = sorted({o.tlp for o in objects}, key=stix.TLP_ORDER.index)
    return {
        "type": "bundle",
        "id": f"bundle--{uuid.uuid4()}",
        "objects": [stix.tlp_marking_definition(level) for level in levels] + [emitted(o) for o in objects],
    }


@dataclass
class Correlation:
    obj: StixObject
    shared: list[Observable] = field(default_factory=list)


def correlations(user: Reader, obj: StixObject, limit: int = MAX_CORRELATIONS) -> list[Correlation]:
    """Other objects (latest, not revoked, one per id as ``latest_visible`` shows them; never
    another organisation's copy of ``obj``) sharing an observable with ``obj`` that the reader
    may see, newest first, with the observables they share."""
    mine = list(ObjectObservable.objects.filter(stix_object=obj).values_list("observable_id", flat=True))
    if not mine:
        return []
    # The candidates come from the index first (newest links, bounded), and only then meet the
    # access policy: the planner never walks the whole store to find them.
    linked = list(
        ObjectObservable.objects.filter(observable_id__in=mine)
        .order_by("-stix_object_id")
        .values_list("stix_object_id", flat=True)[:MAX_CANDIDATES]
    )
    others = list(
        latest_visible(user)
        .filter(pk__in=linked, revoked=False)
        .exclude(stix_id=obj.stix_id)
        .order_by("-pk")[:limit]
    )
    found = {o.pk: Correlation(o) for o in others}
    if found:
        links = ObjectObservable.objects.filter(
            stix_object_id__in=list(found), observable_id__in=mine
        ).select_related("observable")
        for link in links:
            found[link.stix_object_id].shared.append(link.observable)
    return list(found.values())


@dataclass
class BatchCorrelation:
    """What many object versions (an import's) share with the rest of the store, as the reader
    may see it: for each version's pk, the pks of the others and the observables they share."""

    links: dict[int, dict[int, set[int]]] = field(default_factory=dict)
    # The STIX id of each version asked about that the reader may see (the keys of ``links``).
    ids: dict[int, str] = field(default_factory=dict)

    @property
    def correlated(self) -> int:
        """How many of the versions share an observable with another readable object."""
        return sum(1 for others in self.links.values() if others)

    @property
    def others(self) -> set[int]:
        return {pk for others in self.links.values() for pk in others}


def _batches(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """``values`` in slices that one ``IN (...)`` may take on this database."""
    size = 20_000 if connection.vendor == "postgresql" else 900
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _visible_pks(user: Reader, pks: Sequence[int], *, one_per_id: bool) -> dict[int, str]:
    """Of ``pks``, the latest, unrevoked versions the reader may see, with their STIX ids: with
    ``one_per_id``, those ``latest_visible`` shows; otherwise any organisation's latest."""
    latest = latest_visible(user) if one_per_id else visible(user).filter(is_latest=True)
    found: dict[int, str] = {}
    for batch in _batches(pks):
        found.update(latest.filter(pk__in=batch, revoked=False).values_list("pk", "stix_id"))
    return found


def correlate_many(
    user: Reader, pks: Sequence[int], per_object: int = MAX_CORRELATIONS, *, among_others: bool = False
) -> BatchCorrelation:
    """For many object versions at once (the objects of an import), the other objects sharing
    an observable with each that the reader may see: a fixed number of batched queries on the
    observables index, then one pass of the access policy over the candidates, however many
    versions are asked about. Versions the reader may not see are left out of the answer; a
    hot observable contributes its newest ``MAX_CANDIDATES`` links, as in ``correlations``.
    Any organisation's latest version may be asked about; the others found are those
    ``latest_visible`` shows, one per id, and never a copy of the asked version's id. With
    ``among_others``, the versions asked about are not answered as others of each other (an
    import's indicator and its observable both carry the value: that is no news)."""
    asked = _visible_pks(user, sorted(set(pks)), one_per_id=False)
    result = BatchCorrelation(links={pk: {} for pk in asked}, ids=asked)
    if not asked:
        return result
    carried: dict[int, set[int]] = defaultdict(set)  # observable -> asked versions carrying it
    for stix_object, observable in bulk.select_in(
        ObjectObservable, ("stix_object", "observable"), "stix_object", list(asked)
    ):
        carried[observable].add(stix_object)
    if not carried:
        return result
    hot: set[int] = set()
    for batch in _batches(list(carried)):
        per_observable = (
            ObjectObservable.objects.filter(observable_id__in=batch)
            .values("observable_id")
            .annotate(n=Count("pk"))
            .filter(n__gt=MAX_CANDIDATES)
        )
        hot.update(per_observable.values_list("observable_id", flat=True))
    cold = [o for o in carried if o not in hot]
    linked = bulk.select_in(ObjectObservable, ("observable", "stix_object"), "observable", cold)
    for observable in hot:
        newest = (
            ObjectObservable.objects.filter(observable_id=observable)
            .order_by("-stix_object_id")
            .values_list("observable_id", "stix_object_id")[:MAX_CANDIDATES]
        )
        linked.extend(newest)
    readable = _visible_pks(user, sorted({pk for _, pk in linked}), one_per_id=True)
    for observable, other in linked:
        if other not in readable or (among_others and other in asked):
            continue
        for pk in carried[observable]:
            if readable[other] != asked[pk]:
                result.links[pk].setdefault(other, set()).add(observable)
    for pk, others in result.links.items():
        if len(others) > per_object:
            result.links[pk] = {o: others[o] for o in sorted(others, reverse=True)[:per_object]}
    return result


def observables_of(obj: StixObject) -> list[Observable]:
    return list(Observable.objects.filter(object_links__stix_object=obj).order_by("kind", "value"))


@dataclass
class SightingSummary:
    sightings: int
    count: int
    first_seen: datetime | None
    last_seen: datetime | None


def sightings(user: Reader, stix_id: str) -> tuple[SightingSummary, QuerySet[StixObject]]:
    """How often the reader's visible sightings saw ``stix_id`` (count, first and last seen),
    and those sightings. Computed per reader: a node-wide total would reveal sightings that the
    reader may not see."""
    rows = latest_visible(user).filter(type="sighting", sighting_of_ref=stix_id, revoked=False)
    totals = rows.aggregate(
        n=Count("pk"), count=Sum("sighting_count"), first=Min("first_seen"), last=Max("last_seen")
    )
    summary = SightingSummary(totals["n"], totals["count"] or 0, totals["first"], totals["last"])
    return summary, rows.order_by("-last_seen", "-pk")


# --- an import's correlations ------------------------------------------------------------------

IMPORT_MATCHES_SHOWN = 100  # imported objects listed with their correlations (all are counted)
IMPORT_OTHERS_SHOWN = 10  # correlated objects listed per imported object; its page lists them all
# Imported versions examined per answer: a 10,000-object import answers in about half a second,
# 100,000 in four (SQLite, a loaded machine); larger imports say that only these were examined.
IMPORT_EXAMINED = 20_000


@dataclass
class ImportedMatch:
    """An imported version and (the first of) the readable objects sharing an observable with it."""

    obj: StixObject
    others: list[Correlation]
    total: int  # how many readable objects share an observable with it (up to MAX_CORRELATIONS)


@dataclass
class SightedImport:
    """An imported object and what the sightings the reader may see say of it."""

    obj: StixObject
    sightings: int
    count: int
    last_seen: datetime | None


@dataclass
class ImportCorrelations:
    stored: int  # the versions the import stored
    asked: int  # of those, how many were examined (the first ``IMPORT_EXAMINED``)
    examined: int  # of those, the versions the reader may see (still latest, not revoked)
    correlated: int  # of those, how many share an observable with another readable object
    matches: list[ImportedMatch]  # the first ``IMPORT_MATCHES_SHOWN`` of them, in import order
    sighted_total: int  # imported objects sighted in sightings the reader may see
    sighted: list[SightedImport]  # the most sighted ``IMPORT_MATCHES_SHOWN`` of them


def import_correlations(
    user: Reader,
    job: ImportJob,
    *,
    limit: int = IMPORT_MATCHES_SHOWN,
    per_object: int = IMPORT_OTHERS_SHOWN,
) -> ImportCorrelations:
    """What the versions ``job`` stored (the first ``IMPORT_EXAMINED``) share with the rest of
    the store (not with each other), as ``user`` may see it: how many correlate, and the first
    ``limit`` with up to ``per_object`` of their others each (``correlate_many``: the policy
    applies to the imported versions and to the others, so nothing hidden is listed or
    counted), and the imported objects that readable sightings saw, most sighted first. A
    fixed number of batched queries, however large the import. Callers check first that
    ``user`` may follow ``job`` (``import_jobs``)."""
    pks = job.stored_pks(IMPORT_EXAMINED)
    batch = correlate_many(user, pks, among_others=True)
    correlated = sorted(pk for pk, others in batch.links.items() if others)
    shown = correlated[:limit]
    listed = {pk: sorted(batch.links[pk], reverse=True)[:per_object] for pk in shown}  # newest first
    wanted = set(shown) | {other for others in listed.values() for other in others}
    rows = _rows(user, wanted)
    shared = {
        o.pk: o
        for o in Observable.objects.filter(
            pk__in={obs for pk in shown for other in listed[pk] for obs in batch.links[pk][other]}
        )
    }
    matches = []
    for pk in shown:
        if pk not in rows:  # deleted meanwhile
            continue
        others = [
            Correlation(
                rows[other],
                sorted((shared[o] for o in batch.links[pk][other]), key=lambda o: (o.kind, o.value)),
            )
            for other in listed[pk]
            if other in rows
        ]
        matches.append(ImportedMatch(rows[pk], others, len(batch.links[pk])))
    sighted_total, sighted = _sighted(user, batch.ids, limit)
    return ImportCorrelations(
        job.stored_count, len(pks), len(batch.links), len(correlated), matches, sighted_total, sighted
    )


def _rows(user: Reader, pks: set[int]) -> dict[int, StixObject]:
    """The versions ``pks`` (already found readable), read again through the policy."""
    found: dict[int, StixObject] = {}
    for batch in _batches(sorted(pks)):
        found.update((o.pk, o) for o in visible(user).filter(pk__in=batch))
    return found


def _sighted(user: Reader, ids: dict[int, str], limit: int) -> tuple[int, list[SightedImport]]:
    """Of the versions ``ids`` (pk -> STIX id), those that sightings the reader may see saw:
    how many, and the ``limit`` most sighted with their totals."""
    first_of: dict[str, int] = {}
    for pk in sorted(ids):
        first_of.setdefault(ids[pk], pk)
    # The sightings' rows come from the index first (most imports have none), and only then
    # meet the access policy, as in ``correlations``.
    found = bulk.select_in(StixObject, ("id",), "sighting_of_ref", sorted(first_of), {"is_latest": True})
    sightings = latest_visible(user).filter(type="sighting", revoked=False)
    totals: dict[str, tuple[int, int, datetime | None]] = {}
    for batch in _batches(sorted(pk for (pk,) in found)):
        per_object = (
            sightings.filter(pk__in=batch)
            .order_by()
            .values("sighting_of_ref")
            .annotate(n=Count("pk"), count=Sum("sighting_count"), last=Max("last_seen"))
        )
        for row in per_object:  # an object's sightings may fall in several batches: add them up
            n, count, last = totals.get(row["sighting_of_ref"], (0, 0, None))
            latest = max((t for t in (last, row["last"]) if t is not None), default=None)
            totals[row["sighting_of_ref"]] = (n + row["n"], count + (row["count"] or 0), latest)
    top = sorted(totals, key=lambda i: (-totals[i][1], -totals[i][0], first_of[i]))[:limit]
    rows = _rows(user, {first_of[i] for i in top})
    shown = [SightedImport(rows[first_of[i]], *totals[i]) for i in top if first_of[i] in rows]
    return len(totals), shown


def import_jobs(user: User) -> QuerySet[ImportJob]:
    """The import jobs ``user`` may follow: those of the organisations they are an active member of."""
    return (
        ImportJob.objects.filter(
            organisation__memberships__user=user, organisation__memberships__is_active=True
        )
        .select_related("organisation", "created_by")
        .distinct()
    )
