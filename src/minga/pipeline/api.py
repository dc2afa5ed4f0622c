"""REST endpoints of the feed pipeline: feeds (their owners register and change them), runs (a
file uploaded to a feed, its status and counts, its dead letters), and events (the ones the
caller may read, through the access policy, with filters, counts and exports)."""

from datetime import datetime
from ipaddress import ip_address
from typing import Annotated, Any, Literal
from uuid import UUID

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate
from ninja.params import functions as param

from minga.core.api import Pages
from minga.core.models import Organisation, User
from minga.pipeline import queries, services
from minga.pipeline.choices import Encoding, EventType, FeedFormat, FeedSource, RunStatus, Taxonomy
from minga.pipeline.models import EVENT_FIELDS, DeadLetter, Feed, Run

router = Router(tags=["pipeline"])

FeedName = Annotated[str, param.Path(pattern=r"^[-a-zA-Z0-9_]{1,80}$", description="The feed's name")]
FeedTLP = Literal["clear", "green", "amber", "amber+strict"]
ShortName = Annotated[str, Field(max_length=40, pattern=r"^[-a-zA-Z0-9_]+$")]
MAX_EVENTS_PAGE = 1000
MAX_EVENTS_OFFSET = 100_000


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


# --- feeds ---------------------------------------------------------------------------------------


class FeedOut(Schema):
    name: str
    description: str
    owner: str = Field(..., alias="owner.short_name")
    format: FeedFormat
    encoding: Encoding
    mapping: dict[str, Any]
    delimiter: str
    quotechar: str
    has_header: bool
    default_tlp: str
    classification_type: EventType
    taxonomy_mapping: dict[str, str]
    dedup_window: int = Field(..., description="Seconds; 0 keeps every event")
    dedup_fields: list[str]
    retention_days: int
    is_active: bool
    source: FeedSource
    url: str
    directory: str
    pull_every: int = Field(..., description="Seconds between two pulls of a URL")
    pulled_at: datetime | None
    next_pull_at: datetime | None = Field(..., description="The next pull, or retry after a failure")
    failures: int = Field(..., description="Failed pulls in a row")
    last_error: str
    has_token: bool = Field(..., description="Whether a TAXII token is set (it is never shown)")

    @staticmethod
    def resolve_has_token(feed: Feed) -> bool:
        return bool(feed.credential)

    created_at: datetime
    updated_at: datetime


class FeedChange(Schema):
    """The settings to change; those left out stay as they are."""

    description: str | None = Field(None, max_length=2000)
    format: FeedFormat | None = None
    encoding: Encoding | None = None
    mapping: dict[Annotated[str, Field(max_length=40)], str | int] | None = Field(
        None,
        description=(
            "Event field -> CSV column (header name, or number from 1 without a header) or JSON key. "
            f"Fields: {', '.join(EVENT_FIELDS)}, classification"
        ),
    )
    delimiter: str | None = Field(None, min_length=1, max_length=1)
    quotechar: str | None = Field(None, min_length=1, max_length=1)
    has_header: bool | None = None
    default_tlp: FeedTLP | None = None
    classification_type: EventType | None = Field(None, description="RSIT type of lines that name none")
    taxonomy_mapping: dict[Annotated[str, Field(max_length=100)], EventType] | None = Field(
        None, description="A value of the classification column -> the RSIT type it means"
    )
    dedup_window: int | None = Field(None, ge=0, le=366 * 86400)
    dedup_fields: list[Annotated[str, Field(max_length=40)]] | None = Field(
        None, max_length=len(EVENT_FIELDS)
    )
    retention_days: int | None = Field(None, ge=1, le=3650)
    is_active: bool | None = None
    source: FeedSource | None = Field(None, description="upload, url (pulled on a schedule) or directory")
    url: str | None = Field(None, max_length=2000, description="http(s) URL of a feed pulled on a schedule")
    directory: str | None = Field(
        None, max_length=200, description="A folder under the node's feed inbox (MINGA_PIPELINE_INBOX)"
    )
    pull_every: int | None = Field(None, ge=60, le=7 * 86400, description="Seconds between two pulls")
    token: str | None = Field(
        None, max_length=2000, description="A TAXII collection's bearer token (write-only; empty clears it)"
    )


class FeedIn(FeedChange):
    name: str = Field(..., min_length=1, max_length=80, pattern=r"^[-a-zA-Z0-9_]+$")
    owner: ShortName | None = Field(
        None, description="The owning organisation (default: the caller's only one)"
    )


def _owner(user: User, short_name: str | None) -> Organisation:
    mine = Organisation.objects.filter(memberships__user=user, memberships__is_active=True).distinct()
    if short_name is None:
        if mine.count() != 1:
            raise ValidationError({"owner": _("Name the owning organisation: you belong to several.")})
        return mine.get()
    organisation = Organisation.objects.filter(short_name=short_name).first()
    if organisation is None:
        raise ValidationError({"owner": _("No organisation is called %(name)s.") % {"name": short_name}})
    return organisation


@router.get("/feeds", response=list[FeedOut])
@paginate(Pages)
def list_feeds(request: HttpRequest) -> Any:
    """The feeds of the caller's organisations."""
    return services.feeds_visible_to(_user(request)).select_related("owner").order_by("name")


@router.post("/feeds", response={201: FeedOut})
def register_feed(request: HttpRequest, payload: FeedIn) -> Status:
    """Register a feed for an organisation of the caller (its analysts and admins may)."""
    user = _user(request)
    fields = payload.dict(exclude_none=True, exclude={"owner"})
    return Status(201, services.register_feed(user, _owner(user, payload.owner), **fields))


@router.get("/feeds/{name}", response=FeedOut)
def get_feed(request: HttpRequest, name: FeedName) -> Feed:
    return queries.feed_visible_to(_user(request), name)


@router.patch("/feeds/{name}", response=FeedOut)
def change_feed(request: HttpRequest, name: FeedName, payload: FeedChange) -> Feed:
    """Change a feed's settings (runs already started keep theirs). Audited."""
    user = _user(request)
    return services.change_feed(user, queries.feed_visible_to(user, name), **payload.dict(exclude_none=True))


@router.delete("/feeds/{name}", response={204: None})
def delete_feed(request: HttpRequest, name: FeedName) -> Status:
    """Delete a feed with its runs, events and dead letters. Audited."""
    user = _user(request)
    services.delete_feed(user, queries.feed_visible_to(user, name))
    return Status(204, None)


# --- runs ----------------------------------------------------------------------------------------


class RunOut(Schema):
    id: UUID = Field(..., alias="uuid")
    feed: str = Field(..., alias="feed.name")
    source: str
    file_name: str
    file_size: int
    sha256: str
    status: RunStatus
    message: str
    created_at: datetime
    finished_at: datetime | None
    chunk_count: int
    chunks_done: int
    read: int
    parsed: int
    invalid: int
    duplicates: int
    routed: int
    unrouted: int


class DeadLetterOut(Schema):
    line: int
    field: str
    reason: str
    raw: str


class ReprocessOut(Schema):
    reprocessed: int
    stored: int
    still_invalid: int
    duplicates: int
    routed: int
    unrouted: int


UPLOAD_BODY = {
    "required": True,
    "description": (
        "The file, as the feed's format in its encoding: CSV, JSON lines, IntelMQ events (one a line "
        "or a JSON array), a STIX 2.1 bundle or a MISP event JSON"
    ),
    "content": {
        # A JSON object is a JSON-lines file of one line, a STIX bundle or a MISP event.
        "application/json": {"schema": {"type": "object"}},
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


class UploadQuery(Schema):
    file_name: str = Field("upload", max_length=200, description="A name for the run's file")


@router.post("/feeds/{name}/runs", response={201: RunOut}, openapi_extra={"requestBody": UPLOAD_BODY})
def upload(request: HttpRequest, name: FeedName, params: Query[UploadQuery]) -> Status:
    """Upload a file of the feed: it is kept, split into chunks and processed by the workers.
    The answer is the run; follow its status at ``/runs/{id}``. A file that is not lines of text
    at all (UTF-16, binary) makes a failed run that says why."""
    user = _user(request)
    feed = queries.feed_visible_to(user, name)
    if not request.body:
        raise ValidationError({"body": _("The body is empty: send the feed's file.")})
    run = services.start_run(user, feed, [request.body], params.file_name, source="api")
    return Status(201, run)


@router.get("/feeds/{name}/runs", response=list[RunOut])
@paginate(Pages)
def list_runs(request: HttpRequest, name: FeedName) -> Any:
    """The feed's runs, newest first."""
    return Run.objects.filter(feed=queries.feed_visible_to(_user(request), name)).select_related("feed")


def _run(user: User, run_id: UUID) -> Run:
    return get_object_or_404(services.runs_visible_to(user), uuid=run_id)


@router.get("/runs/{run_id}", response=RunOut)
def get_run(request: HttpRequest, run_id: UUID) -> Run:
    """A run's status and counts: read, parsed, invalid, duplicates, routed, unrouted."""
    return _run(_user(request), run_id)


@router.get("/runs/{run_id}/dead-letters", response=list[DeadLetterOut])
@paginate(Pages)
def list_dead_letters(request: HttpRequest, run_id: UUID) -> Any:
    """The lines of a run that did not become events, with the field and the reason."""
    return DeadLetter.objects.filter(run=_run(_user(request), run_id)).order_by("line")


@router.post("/runs/{run_id}/reprocess", response=ReprocessOut)
def reprocess(request: HttpRequest, run_id: UUID) -> dict[str, int]:
    """Read the run's dead letters again with the feed's current settings (after fixing the
    mapping): those that pass become events. Audited."""
    user = _user(request)
    return services.reprocess_dead_letters(user, _run(user, run_id))


@router.post("/runs/{run_id}/rerun", response=RunOut)
def rerun(request: HttpRequest, run_id: UUID) -> Run:
    """Process a finished run's file again with the feed's current settings: its events and
    dead letters are replaced by what the file gives now (queued for the workers). Audited."""
    user = _user(request)
    return services.rerun(user, _run(user, run_id))


# --- events --------------------------------------------------------------------------------------


class EventQuery(Schema):
    organisation: ShortName | None = Field(None, description="Routed to this organisation")
    feed: str | None = Field(None, max_length=80, pattern=r"^[-a-zA-Z0-9_]+$")
    run: UUID | None = None
    type: EventType | None = Field(None, description="RSIT type")
    taxonomy: Taxonomy | None = Field(None, description="RSIT taxonomy")
    ip: str | None = Field(None, max_length=45, description="Source or destination IP address")
    asn: int | None = Field(None, ge=1, lt=2**32, description="Source or destination AS number")
    fqdn: str | None = Field(None, max_length=253, description="Source or destination domain")
    country: str | None = Field(None, min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$")
    since: datetime | None = None
    until: datetime | None = None
    routed: bool | None = Field(None, description="Only routed (true) or unrouted (false) events")

    def criteria(self) -> queries.EventFilter:
        organisation = None
        if self.organisation:
            organisation = Organisation.objects.filter(short_name=self.organisation).first()
            if organisation is None:
                raise Http404
        ip = None
        if self.ip:
            try:
                ip = str(ip_address(self.ip.strip()))
            except ValueError:
                raise ValidationError(
                    {"ip": _("%(value)s is not an IP address.") % {"value": self.ip}}
                ) from None
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise ValidationError(
                    {"since": _("Give times with their offset, e.g. 2026-01-10T10:00:00Z.")}
                )
        return queries.EventFilter(
            organisation=organisation,
            feed=self.feed,
            run=str(self.run) if self.run else None,
            classification_type=self.type,
            classification_taxonomy=self.taxonomy,
            ip=ip,
            asn=self.asn,
            fqdn=self.fqdn.strip().lower().rstrip(".") if self.fqdn else None,
            country=self.country,
            since=self.since,
            until=self.until,
            routed=self.routed,
        )


class PageQuery(Schema):
    limit: int = Field(100, ge=1, le=MAX_EVENTS_PAGE)
    offset: int = Field(0, ge=0, le=MAX_EVENTS_OFFSET)


class EventOut(Schema):
    id: int
    time: datetime
    classification_taxonomy: str
    classification_type: str
    source_ip: str
    source_port: int | None
    source_asn: int | None
    source_fqdn: str
    source_url: str
    source_country: str
    destination_ip: str
    destination_port: int | None
    destination_asn: int | None
    destination_fqdn: str
    destination_url: str
    destination_country: str
    feed: str
    tlp: str
    routed_to: list[str]
    run: str
    line: int = Field(..., description="The line of the run's file the event comes from")


class EventCountsOut(Schema):
    total: int
    by_type: dict[str, int]


@router.get("/events", response=list[EventOut])
def list_events(
    request: HttpRequest, filters: Query[EventQuery], page: Query[PageQuery]
) -> list[dict[str, Any]]:
    """The events the caller may read (routed to the caller's organisations, or of the feeds
    they own), newest first, one page at a time (``/events/counts`` counts them)."""
    events = queries.events_visible_to(request.user, filters.criteria())
    return queries.export_rows(events[page.offset : page.offset + page.limit])


@router.get("/events/counts", response=EventCountsOut)
def count_events(request: HttpRequest, filters: Query[EventQuery]) -> dict[str, Any]:
    """How many events the filters find among those the caller may read, by RSIT type."""
    return queries.counts(queries.events_visible_to(request.user, filters.criteria()))


class ExportQuery(Schema):
    format: Literal["csv", "json"] = Field("csv", description="csv (formulas neutralised) or json")


EXPORT_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


@router.get("/events/export")
def export_events(
    request: HttpRequest, filters: Query[EventQuery], options: Query[ExportQuery]
) -> HttpResponse:
    """The events the filters find (at most 100,000, newest first) as CSV or JSON. Audited."""
    events = queries.events_visible_to(request.user, filters.criteria())
    document = services.export_events(
        request.user, events, fmt=options.format, scope=request.META.get("QUERY_STRING", "")
    )
    response = HttpResponse(document, content_type=EXPORT_MEDIA_TYPES[options.format])
    response["Content-Disposition"] = f'attachment; filename="events.{options.format}"'
    return response
