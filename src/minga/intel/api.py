"""REST endpoints of the intel store: search, objects and their versions, correlations,
sightings, imports (STIX bundles, MISP events, CSV) and exports. Every read goes through the access policy."""

import io
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate
from ninja.params import functions as param
from pydantic import ConfigDict

from minga.core import access
from minga.core.api import Pages
from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.intel import queries, services, stix
from minga.intel.choices import ImportStatus
from minga.intel.models import ImportJob, StixObject

router = Router(tags=["intel"])

STIX_ID_PATTERN = stix.ID_RE.pattern
StixId = Annotated[str, param.Path(pattern=STIX_ID_PATTERN, description="A STIX identifier, type--UUID")]
ShortNameText = Annotated[str, Field(max_length=40, pattern=r"^[-a-zA-Z0-9_]+$")]


class ObjectOut(Schema):
    id: str = Field(..., alias="stix_id")
    type: str
    spec_version: str
    created: datetime | None
    modified: datetime | None = Field(..., description="None for objects without versions (SCOs)")
    date_added: datetime
    revoked: bool
    tlp: TLP
    origin: str = Field(..., alias="origin_organisation.short_name")
    label: str

    @staticmethod
    def resolve_modified(obj: StixObject) -> datetime | None:
        return obj.version_time


class ObjectDetail(ObjectOut):
    recipients: list[str]
    object: dict[str, Any]

    @staticmethod
    def resolve_recipients(obj: StixObject) -> list[str]:
        return sorted(o.short_name for o in obj.recipient_organisations.all())

    @staticmethod
    def resolve_object(obj: StixObject) -> dict[str, Any]:
        return queries.emitted(obj)


class ObjectFilter(Schema):
    type: str | None = Field(None, max_length=250, pattern=r"^[a-z0-9][a-z0-9-]*$", description="STIX type")
    value: str | None = Field(
        None, max_length=2048, description="An observable value (IP, network, domain, URL, e-mail, hash)"
    )
    q: str | None = Field(None, max_length=200, description="Part of the name, value or pattern")
    tlp: TLP | None = None
    origin: str | None = Field(
        None, max_length=40, pattern=r"^[-a-zA-Z0-9_]+$", description="Originating organisation"
    )
    added_after: datetime | None = None
    added_before: datetime | None = None
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    include_revoked: bool = False


class ObservableOut(Schema):
    kind: str
    value: str


class CorrelationOut(Schema):
    object: ObjectOut
    shared: list[ObservableOut]

    @staticmethod
    def resolve_object(item: queries.Correlation) -> StixObject:
        return item.obj


class SightingsOut(Schema):
    sightings: int = Field(..., description="Sighting objects the caller may see")
    count: int = Field(..., description="Times sighted, summed over those sightings")
    first_seen: datetime | None
    last_seen: datetime | None
    items: list[ObjectOut]


class BundleIn(Schema):
    """A STIX 2.1 bundle. Each object is checked on its own: bad ones are listed as rejected,
    the others stored."""

    model_config = ConfigDict(extra="allow")

    type: Literal["bundle"]
    id: str = Field(..., max_length=300, pattern=r"^bundle--[0-9a-fA-F-]{36}$")
    objects: list[Any] = Field(default_factory=list)


class ImportQuery(Schema):
    organisation: ShortNameText | None = Field(
        None, description="Import in the name of this organisation (default: the caller's only one)"
    )
    tlp: TLP = Field(TLP.AMBER, description="For objects that carry no TLP marking of their own")
    recipient: list[ShortNameText] = Field(
        default_factory=list, max_length=100, description="Recipient organisations (short names)"
    )


class RejectionOut(Schema):
    index: int = Field(
        ...,
        description="STIX: the object's position in the bundle, from 0; MISP: the attribute's position "
        "in the file, from 0; CSV: the line number",
    )
    id: str
    reason: str


class ImportOut(Schema):
    accepted: int
    duplicates: int = Field(..., description="Versions already stored (a replay changes nothing)")
    rejected: int
    rejections: list[RejectionOut] = Field(..., description="The first 100 rejected objects")
    error: str


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


@router.get("/objects", response=list[ObjectOut])
@paginate(Pages)
def list_objects(request: HttpRequest, filters: Query[ObjectFilter]) -> QuerySet[StixObject]:
    """Latest versions of the STIX objects the caller may read, newest first."""
    criteria = queries.Search(**{k: v for k, v in filters.dict().items() if v is not None})
    return queries.search(request.user, criteria)


@router.get("/objects/{stix_id}", response=ObjectDetail)
def get_object(request: HttpRequest, stix_id: StixId) -> StixObject:
    """The latest version of one object, as STIX JSON with its TLP marking, and its recipients."""
    return queries.get_latest_or_404(request.user, stix_id)


@router.get("/objects/{stix_id}/versions", response=list[ObjectDetail])
@paginate(Pages)
def list_versions(request: HttpRequest, stix_id: StixId) -> QuerySet[StixObject]:
    """Every version of an object that the caller may read, newest first."""
    queries.get_latest_or_404(request.user, stix_id)
    return queries.versions(request.user, stix_id)


STIX_MEDIA_TYPE = "application/stix+json;version=2.1"


@router.get("/objects/{stix_id}/bundle")
def export_object(request: HttpRequest, stix_id: StixId) -> HttpResponse:
    """The latest version as a STIX 2.1 bundle, with the TLP marking definition it refers to
    (audited as an export)."""
    obj = queries.get_latest_or_404(request.user, stix_id)
    document = services.export_bundle(request.user, StixObject.objects.filter(pk=obj.pk), scope=stix_id)
    return HttpResponse(document, content_type=STIX_MEDIA_TYPE)


ExportFormat = Literal["stix", "misp", "csv"]
EXPORT_MEDIA_TYPES = {"stix": STIX_MEDIA_TYPE, "misp": "application/json", "csv": "text/csv; charset=utf-8"}


class ExportQuery(Schema):
    format: ExportFormat = Field(
        "stix", description="stix: a STIX 2.1 bundle; misp: one MISP event; csv: the indicators"
    )


@router.get("/export")
def export_objects(
    request: HttpRequest, filters: Query[ObjectFilter], options: Query[ExportQuery]
) -> HttpResponse:
    """The objects the search finds (at most 10,000, newest first) as one STIX 2.1 bundle, one
    MISP event (attributes tagged with their TLP) or CSV of the indicators (audited as an
    export, with the format)."""
    criteria = queries.Search(**{k: v for k, v in filters.dict().items() if v is not None})
    scope = request.META.get("QUERY_STRING", "")
    document = services.export_objects(
        request.user, queries.search(request.user, criteria), scope=scope, fmt=options.format
    )
    return HttpResponse(document, content_type=EXPORT_MEDIA_TYPES[options.format])


@router.get("/objects/{stix_id}/correlations", response=list[CorrelationOut])
def list_correlations(request: HttpRequest, stix_id: StixId) -> list[queries.Correlation]:
    """Other objects the caller may read that share an observable with this one."""
    obj = queries.get_latest_or_404(request.user, stix_id)
    return queries.correlations(request.user, obj)


@router.get("/objects/{stix_id}/sightings", response=SightingsOut)
def get_sightings(request: HttpRequest, stix_id: StixId) -> dict[str, Any]:
    """How often the object was sighted (in the sightings the caller may read), and when."""
    queries.get_latest_or_404(request.user, stix_id)
    summary, rows = queries.sightings(request.user, stix_id)
    return {
        "sightings": summary.sightings,
        "count": summary.count,
        "first_seen": summary.first_seen,
        "last_seen": summary.last_seen,
        "items": list(rows[:100]),
    }


def _organisation(user: User, short_name: str | None) -> Organisation:
    choices = [m.organisation for m in user.active_memberships()]
    if short_name:
        for organisation in choices:
            if organisation.short_name == short_name:
                return organisation
        raise ValidationError({"organisation": _("You are not a member of %(name)s.") % {"name": short_name}})
    if len(choices) != 1:
        raise ValidationError({"organisation": _("Name the organisation to import for.")})
    return choices[0]


def _recipients(user: User, short_names: list[str]) -> list[Organisation]:
    found = list(access.organisations_visible_to(user).filter(short_name__in=short_names))
    unknown = sorted(set(short_names) - {o.short_name for o in found})
    if unknown:
        raise ValidationError(
            {"recipient": _("No organisation is called %(names)s.") % {"names": ", ".join(unknown)}}
        )
    return found


@router.post("/bundles", response=ImportOut)
def import_bundle(request: HttpRequest, payload: BundleIn, params: Query[ImportQuery]) -> dict[str, Any]:
    """Import a STIX 2.1 bundle. Valid objects are stored, each bad one is listed with its
    reason; a version already stored is counted, not stored twice. Larger bundles than a
    request may carry: the import page or ``minga intel import``."""
    user = _user(request)
    organisation = _organisation(user, params.organisation)
    result = services.import_bundle(
        user,
        organisation,
        io.BytesIO(request.body),
        params.tlp,
        _recipients(user, params.recipient),
        source="api",
    )
    return result.as_dict()


class FileImportQuery(ImportQuery):
    """How to read the request body: its format and, for CSV, the column mapping (header
    names, or numbers from 1 with ``header=false``)."""

    format: Literal["stix", "misp", "csv"] = Field(..., description="stix, misp or csv")
    value: str | None = Field(None, max_length=100, description="CSV: the column of the values")
    type: str | None = Field(None, max_length=100, description="CSV: the column of the types")
    fixed_type: str | None = Field(None, max_length=40, description="CSV: one type for every row")
    name: str | None = Field(None, max_length=100, description="CSV: the column of the names")
    description: str | None = Field(None, max_length=100, description="CSV: the column of descriptions")
    valid_from: str | None = Field(None, max_length=100, description="CSV: the column of valid_from")
    valid_until: str | None = Field(None, max_length=100, description="CSV: the column of valid_until")
    confidence: str | None = Field(None, max_length=100, description="CSV: the column of confidence")
    labels: str | None = Field(None, max_length=100, description="CSV: the column of labels")
    delimiter: str | None = Field(None, max_length=2, description="CSV: the delimiter (default ,)")
    header: bool = Field(True, description="CSV: the first line names the columns")


MAPPING_FIELDS = (
    "value",
    "type",
    "fixed_type",
    "name",
    "description",
    "valid_from",
    "valid_until",
    "confidence",
    "labels",
    "delimiter",
    "header",
)


IMPORT_BODY = {
    "required": True,
    "description": "The file: a STIX bundle or MISP JSON events (JSON), or CSV text (UTF-8)",
    "content": {
        "application/json": {"schema": {"type": "object"}},
        "text/csv": {"schema": {"type": "string"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


@router.post("/imports", response=ImportOut, openapi_extra={"requestBody": IMPORT_BODY})
def import_file(request: HttpRequest, params: Query[FileImportQuery]) -> dict[str, Any]:
    """Import the request body as a STIX bundle (2.1, or 2.0 upgraded), MISP JSON events, or
    CSV indicators read with the column mapping given in the query. Each bad object, attribute
    or row is listed with its reason (for CSV the index is the line number); the rest is
    stored. A body that is not of its format at all is refused with a 400."""
    user = _user(request)
    organisation = _organisation(user, params.organisation)
    mapping = None
    if params.format == "csv":
        mapping = {
            name: getattr(params, name) for name in MAPPING_FIELDS if getattr(params, name) is not None
        }
    result = services.import_file(
        user,
        organisation,
        io.BytesIO(request.body),
        params.tlp,
        _recipients(user, params.recipient),
        fmt=params.format,
        mapping=mapping,
        source="api",
    )
    return result.as_dict()


class ImportedMatchOut(Schema):
    object: ObjectOut
    others: list[CorrelationOut] = Field(..., description="The first readable objects sharing an observable")
    total: int = Field(..., description="How many readable objects share an observable with it (up to 200)")

    @staticmethod
    def resolve_object(item: queries.ImportedMatch) -> StixObject:
        return item.obj


class SightedImportOut(Schema):
    object: ObjectOut
    sightings: int = Field(..., description="Sighting objects the caller may see")
    count: int = Field(..., description="Times sighted, summed over those sightings")
    last_seen: datetime | None

    @staticmethod
    def resolve_object(item: queries.SightedImport) -> StixObject:
        return item.obj


class ImportCorrelationsOut(Schema):
    stored: int = Field(..., description="Object versions the import stored")
    asked: int = Field(..., description="Of those, how many were examined: the first 20,000")
    examined: int = Field(..., description="Of those, the ones the caller may read")
    correlated: int = Field(..., description="Of those, how many share an observable with another")
    matches: list[ImportedMatchOut] = Field(..., description="The first 100 of them, in import order")
    sighted_total: int = Field(..., description="Imported objects seen in sightings the caller may read")
    sighted: list[SightedImportOut] = Field(..., description="The 100 most sighted")


class ImportJobOut(Schema):
    id: UUID
    file_name: str
    format: str
    organisation: str = Field(..., description="Short name of the organisation it imported for")
    tlp: TLP
    status: str
    percent: int
    accepted: int
    duplicates: int
    rejected: int
    rejections: list[RejectionOut] = Field(..., description="The first 100 rejected objects")
    message: str
    created_at: datetime
    finished_at: datetime | None
    correlations: ImportCorrelationsOut | None = Field(
        ..., description="Once done: what the imported objects share with objects the caller may read"
    )


@router.get("/imports/{uuid}", response=ImportJobOut)
def get_import(request: HttpRequest, uuid: UUID) -> dict[str, Any]:
    """An upload's import job (of an organisation the caller is a member of): its progress and,
    once done, the imported objects that share an observable with other objects the caller may
    read, with those objects, and how often the imported objects were sighted."""
    job: ImportJob = get_object_or_404(queries.import_jobs(_user(request)), uuid=uuid)
    found = None
    if job.status == ImportStatus.DONE:
        found = queries.import_correlations(request.user, job)
    return {
        "id": job.uuid,
        "file_name": job.file_name,
        "format": job.format,
        "organisation": job.organisation.short_name,
        "tlp": job.tlp,
        "status": job.status,
        "percent": job.percent,
        "accepted": job.accepted,
        "duplicates": job.duplicates,
        "rejected": job.rejected,
        "rejections": job.rejections,
        "message": job.message,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "correlations": found,
    }
