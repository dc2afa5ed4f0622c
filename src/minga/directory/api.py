"""REST endpoints of the directory: member states, sectors and organisations' profiles."""

from datetime import datetime
from typing import Annotated, Literal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate
from ninja.params import functions as param

from minga.core import access
from minga.core.api import Pages, ShortName, StrictInput
from minga.core.models import Organisation, User
from minga.directory import exchange, queries, registries, services
from minga.directory.choices import OrganisationKind
from minga.directory.models import (
    ConstituencyProposal,
    MemberState,
    OrganisationProfile,
    PointOfContact,
    Sector,
)

router = Router(tags=["directory"])

StateCode = Annotated[str, param.Path(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2 code")]


class StateOut(Schema):
    code: str
    name: str
    participating: bool
    languages: list[str]
    time_zones: list[str]
    organisation_count: int = 0
    national_csirt_count: int = 0


class StatePatch(StrictInput):
    participating: bool


class SectorOut(Schema):
    slug: str
    name: str = Field(..., alias="display_name")
    builtin: bool


class SectorIn(StrictInput):
    name: str = Field(..., min_length=2, max_length=120)


class ProfileOut(Schema):
    organisation: str = Field(..., alias="organisation.short_name")
    kind: OrganisationKind
    state: str | None
    sectors: list[str]
    parent: str | None
    hosting_node: str

    @staticmethod
    def resolve_state(profile: OrganisationProfile) -> str | None:
        return profile.state.code if profile.state else None

    @staticmethod
    def resolve_sectors(profile: OrganisationProfile) -> list[str]:
        return [s.slug for s in profile.sectors.all()]

    @staticmethod
    def resolve_parent(profile: OrganisationProfile) -> str | None:
        return profile.parent.short_name if profile.parent else None


class ProfileIn(StrictInput):
    kind: OrganisationKind
    state: str | None = Field(None, pattern=r"^[A-Za-z]{2}$")
    sectors: list[Annotated[str, Field(max_length=60, pattern=r"^[-a-z0-9_]+$")]] = Field(
        default_factory=list, max_length=50
    )
    parent: str | None = Field(None, max_length=40, pattern=r"^[-a-zA-Z0-9_]+$")
    hosting_node: str = Field("", max_length=200)


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


@router.get("/states", response=list[StateOut])
def list_states(request: HttpRequest) -> list[MemberState]:
    """The OAS member states, whether each takes part, and how many organisations it has."""
    return list(queries.states_with_counts(request.user))


@router.get("/states/{code}", response=StateOut)
def get_state(request: HttpRequest, code: StateCode) -> MemberState:
    return get_object_or_404(queries.states_with_counts(request.user), code=code.upper())


@router.patch("/states/{code}", response=StateOut)
def update_state(request: HttpRequest, code: StateCode, payload: StatePatch) -> MemberState:
    """Say whether a state takes part in the network (node admins)."""
    state = get_object_or_404(MemberState, code=code.upper())
    services.set_state_participation(_user(request), state, payload.participating)
    return get_object_or_404(queries.states_with_counts(request.user), code=state.code)


@router.get("/sectors", response=list[SectorOut])
def list_sectors(request: HttpRequest) -> list[Sector]:
    return list(Sector.objects.all())


@router.post("/sectors", response={201: SectorOut})
def create_sector(request: HttpRequest, payload: SectorIn) -> Status:
    """Add a sector (node admins)."""
    return Status(201, services.add_sector(_user(request), payload.name))


@router.get("/organisations/{short_name}/profile", response=ProfileOut)
def get_profile(request: HttpRequest, short_name: ShortName) -> OrganisationProfile:
    return get_object_or_404(queries.profiles_visible_to(request.user), organisation__short_name=short_name)


@router.put("/organisations/{short_name}/profile", response=ProfileOut)
def put_profile(request: HttpRequest, short_name: ShortName, payload: ProfileIn) -> OrganisationProfile:
    """Set an organisation's kind, state, sectors and parent (its admins or node admins)."""
    organisation = get_object_or_404(access.organisations_visible_to(request.user), short_name=short_name)
    state = None
    if payload.state:
        state = MemberState.objects.filter(code=payload.state.upper()).first()
        if state is None:
            raise ValidationError(
                {"state": _("No member state has the code %(code)s.") % {"code": payload.state}}
            )
    sectors = list(Sector.objects.filter(slug__in=payload.sectors))
    unknown = sorted(set(payload.sectors) - {s.slug for s in sectors})
    if unknown:
        raise ValidationError({"sectors": _("Unknown sectors: %(slugs)s.") % {"slugs": ", ".join(unknown)}})
    parent = None
    if payload.parent:
        parent = access.organisations_visible_to(request.user).filter(short_name=payload.parent).first()
        if parent is None:
            raise ValidationError(
                {"parent": _("No organisation is called %(name)s.") % {"name": payload.parent}}
            )
    return services.update_profile(
        _user(request),
        organisation,
        kind=payload.kind,
        state=state,
        sectors=sectors,
        parent=parent,
        hosting_node=payload.hosting_node,
    )


# --- constituency and resolution -------------------------------------------------------------

MAX_RESOLVE = 10_000


class ConstituencyOut(Schema):
    networks: list[str]
    asns: list[int]
    domains: list[str]


class ConstituencyIn(StrictInput):
    entries: list[Annotated[str, Field(max_length=300)]] = Field(
        ...,
        min_length=1,
        max_length=10_000,
        description="Networks (CIDR), AS numbers (64500 or AS64500) and domains, in any order",
    )


class ConstituencyDelete(StrictInput):
    kind: Literal["network", "asn", "domain"]
    value: str = Field(..., max_length=300)


class ResolveIn(StrictInput):
    ips: list[Annotated[str, Field(max_length=45)]] = Field(default_factory=list, max_length=MAX_RESOLVE)
    asns: list[Annotated[int, Field(ge=0, le=4294967295)]] = Field(
        default_factory=list, max_length=MAX_RESOLVE
    )
    domains: list[Annotated[str, Field(max_length=253)]] = Field(default_factory=list, max_length=MAX_RESOLVE)


class DutyContact(Schema):
    name: str
    email: str
    phone_numbers: list[str]


class Owner(Schema):
    organisation: str
    name: str
    duty_contacts: list[DutyContact] = Field(..., description="24/7 contacts (members of the network only)")


class Resolution(Schema):
    query: str
    valid: bool
    owners: list[Owner]


class ResolveOut(Schema):
    ips: list[Resolution]
    asns: list[Resolution]
    domains: list[Resolution]


def _constituency(organisation: Organisation) -> dict[str, list]:
    return {
        "networks": list(organisation.networks.values_list("cidr", flat=True)),  # type: ignore[attr-defined]
        "asns": list(organisation.asns.values_list("asn", flat=True)),  # type: ignore[attr-defined]
        "domains": list(organisation.domains.values_list("domain", flat=True)),  # type: ignore[attr-defined]
    }


@router.get("/organisations/{short_name}/constituency", response=ConstituencyOut)
def get_constituency(request: HttpRequest, short_name: ShortName) -> dict[str, list]:
    return _constituency(
        get_object_or_404(access.organisations_visible_to(request.user), short_name=short_name)
    )


@router.post("/organisations/{short_name}/constituency", response={201: ConstituencyOut})
def add_constituency(request: HttpRequest, short_name: ShortName, payload: ConstituencyIn) -> Status:
    """Add entries; if any is invalid, nothing is saved and every bad entry is named."""
    organisation = get_object_or_404(access.organisations_visible_to(request.user), short_name=short_name)
    services.add_constituency(_user(request), organisation, payload.entries)
    return Status(201, _constituency(organisation))


@router.post("/organisations/{short_name}/constituency/remove", response=ConstituencyOut)
def remove_constituency(request: HttpRequest, short_name: ShortName, payload: ConstituencyDelete) -> dict:
    organisation = get_object_or_404(access.organisations_visible_to(request.user), short_name=short_name)
    services.remove_constituency(_user(request), organisation, payload.kind, payload.value)
    return _constituency(organisation)


@router.post("/resolve", response=ResolveOut)
def resolve(request: HttpRequest, payload: ResolveIn) -> dict:
    """Who answers for these IP addresses, AS numbers and domains (up to 10,000 of each)."""
    return queries.resolve(request.user, ips=payload.ips, asns=payload.asns, domains=payload.domains)


# --- points of contact -----------------------------------------------------------------------


class ContactOut(Schema):
    id: int
    organisation: str = Field(..., alias="organisation.short_name")
    role: str
    name: str
    email: str
    phone_numbers: list[str]
    languages: list[str]
    hours: str
    time_zone: str
    pgp_fingerprint: str
    last_verified_at: datetime | None
    is_stale: bool


class ContactIn(StrictInput):
    role: Literal["duty", "technical", "policy", "legal", "liaison"]
    name: str = Field(..., min_length=1, max_length=200)
    email: str = Field(..., max_length=254)
    phone_numbers: list[Annotated[str, Field(max_length=40)]] = Field(default_factory=list, max_length=10)
    languages: list[Annotated[str, Field(max_length=3)]] = Field(default_factory=list, max_length=10)
    hours: str = Field("", max_length=200)
    time_zone: str = Field("UTC", max_length=64)
    pgp_fingerprint: str = Field("", max_length=100)
    pgp_key: str = Field("", max_length=100_000)


class Accepted(Schema):
    detail: str


@router.get("/organisations/{short_name}/contacts", response=list[ContactOut])
def list_contacts(request: HttpRequest, short_name: ShortName) -> list:
    """An organisation's points of contact (members of the network only)."""
    organisation = get_object_or_404(access.organisations_visible_to(request.user), short_name=short_name)
    return list(
        queries.contacts_visible_to(request.user)
        .filter(organisation=organisation)
        .select_related("organisation")
    )


@router.post("/organisations/{short_name}/contacts", response={201: ContactOut})
def create_contact(request: HttpRequest, short_name: ShortName, payload: ContactIn) -> Status:
    organisation = get_object_or_404(access.organisations_visible_to(request.user), short_name=short_name)
    return Status(201, services.save_contact(_user(request), organisation, **payload.dict()))


@router.delete("/contacts/{contact_id}", response={204: None})
def delete_contact(request: HttpRequest, contact_id: int) -> Status:
    contact = get_object_or_404(queries.contacts_visible_to(request.user), pk=contact_id)
    services.remove_contact(_user(request), contact)
    return Status(204, None)


@router.post("/contacts/{contact_id}/request-confirmation", response={202: Accepted})
def request_contact_confirmation(request: HttpRequest, contact_id: int) -> Status:
    """E-mail the contact a one-click link to confirm their details."""
    contact = get_object_or_404(queries.contacts_visible_to(request.user), pk=contact_id)
    services.request_confirmation(_user(request), contact)
    return Status(
        202, {"detail": _("A confirmation request will be e-mailed to %(email)s.") % {"email": contact.email}}
    )


class WebhookOut(Schema):
    organisation: str = Field(..., alias="organisation.short_name")
    url: str
    updated_at: datetime


class WebhookSetOut(WebhookOut):
    secret: str | None = Field(
        None, description="The signing secret, shown this once when new; null when it was kept"
    )


class WebhookIn(StrictInput):
    url: str = Field(..., max_length=500, description="https URL the node POSTs signed JSON to")
    secret: str = Field("", max_length=200, description="Your own signing secret (else the node draws one)")
    new_secret: bool = Field(False, description="Draw a new secret even if one is set")


def _webhook_organisation(request: HttpRequest, short_name: str) -> Organisation:
    return get_object_or_404(access.organisations_visible_to(request.user), short_name=short_name)


@router.get("/organisations/{short_name}/webhook", response=WebhookOut)
def get_webhook(request: HttpRequest, short_name: ShortName) -> object:
    """The organisation's webhook (its admins and node admins; 404 for anyone else). The secret
    is never shown again."""
    webhook = queries.webhook_for(request.user, _webhook_organisation(request, short_name))
    if webhook is None:
        raise Http404
    return webhook


@router.put("/organisations/{short_name}/webhook", response=WebhookSetOut)
def put_webhook(request: HttpRequest, short_name: ShortName, payload: WebhookIn) -> object:
    """Register or change the organisation's webhook; the answer holds the secret once when new."""
    webhook, secret = services.set_webhook(
        _user(request),
        _webhook_organisation(request, short_name),
        url=payload.url,
        secret=payload.secret,
        new_secret=payload.new_secret,
    )
    webhook.secret = secret  # type: ignore[attr-defined]  # shown in this answer only
    return webhook


@router.delete("/organisations/{short_name}/webhook", response={204: None})
def delete_webhook(request: HttpRequest, short_name: ShortName) -> Status:
    services.remove_webhook(_user(request), _webhook_organisation(request, short_name))
    return Status(204, None)


@router.get("/stale-contacts", response=list[ContactOut])
@paginate(Pages)
def list_stale_contacts(request: HttpRequest) -> QuerySet[PointOfContact]:
    """Contacts not confirmed within MINGA_CONTACT_STALE_DAYS (node admins, the coordinators),
    a page at a time (``limit``, ``offset``): a network has thousands."""
    if not _user(request).is_node_admin:
        raise PermissionDenied(_("Only node admins may see this list."))
    return queries.stale_contacts(request.user)


# --- bulk exchange ---------------------------------------------------------------------------

Dataset = Annotated[
    Literal["organisations", "contacts", "constituency"],
    param.Path(description="Which part of the directory"),
]


class ImportIn(StrictInput):
    format: Literal["csv", "json"]
    content: str = Field(
        ...,
        max_length=10_000_000,
        description=(
            'The file\'s text as an export writes it: CSV with a header row, or JSON {"<dataset>": [...]}'
        ),
    )


class ImportOut(Schema):
    dataset: str
    created: int
    updated: int


class RowErrorOut(Schema):
    line: int = Field(..., description="Line of the CSV file, or item of the JSON list")
    unit: Literal["line", "item"]
    field: str
    message: str


class ImportRejectedOut(Schema):
    detail: str
    errors: list[RowErrorOut]


@router.get(
    "/export/{dataset}",
    response={200: None},
    openapi_extra={
        "responses": {
            "200": {
                "description": "The dataset as a file",
                "content": {"text/csv": {"schema": {"type": "string"}}, "application/json": {}},
            }
        }
    },
)
def export_dataset(
    request: HttpRequest, dataset: Dataset, format: Literal["csv", "json"] = "json"
) -> HttpResponse:
    """What the caller may read of one dataset (contacts: members of the network only). CSV
    cells that a spreadsheet would run as formulas start with an apostrophe."""
    text = exchange.export(_user(request), dataset, format)
    content_type = "application/json" if format == "json" else "text/csv; charset=utf-8"
    response = HttpResponse(text, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="minga-{dataset}.{format}"'
    return response


@router.post("/import/{dataset}", response={201: ImportOut, 422: ImportRejectedOut})
def import_dataset(request: HttpRequest, dataset: Dataset, payload: ImportIn) -> Status:
    """Import a file, all or nothing: if any row is wrong, nothing is saved and the answer (422)
    names each bad row with its line and field."""
    try:
        result = exchange.import_text(_user(request), dataset, payload.content, payload.format)
    except exchange.ImportRejected as exc:
        errors = [{"line": e.line, "unit": e.unit, "field": e.field, "message": e.reason} for e in exc.errors]
        detail = _("Nothing was imported: %(count)d bad row(s).") % {"count": len(errors)}
        return Status(422, {"detail": detail, "errors": errors[:1000]})
    return Status(201, {"dataset": dataset, "created": result.created, "updated": result.updated})


# --- registry proposals ----------------------------------------------------------------------

OrganisationName = Annotated[str, Field(max_length=40, pattern=r"^[-a-zA-Z0-9_]+$")]


class ProposalOut(Schema):
    id: int
    kind: Literal["network", "asn"]
    value: str = Field(..., description="A CIDR, or the AS number's digits")
    country: str
    source: str = Field(..., description="The registry the data came from (lacnic, arin, ripe, ...)")
    source_format: Literal["delegated", "rpsl"]
    holder: str
    abuse_email: str
    organisation: str | None = Field(..., description="The proposed organisation's short name")
    basis: Literal["abuse_domain", "national_csirt", "no_owner"]
    matched_domain: str
    status: Literal["pending", "accepted", "rejected"]
    accepted_for: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime

    @staticmethod
    def resolve_organisation(proposal: ConstituencyProposal) -> str | None:
        return proposal.organisation.short_name if proposal.organisation else None

    @staticmethod
    def resolve_accepted_for(proposal: ConstituencyProposal) -> str | None:
        return proposal.accepted_for.short_name if proposal.accepted_for else None

    @staticmethod
    def resolve_decided_by(proposal: ConstituencyProposal) -> str | None:
        return proposal.decided_by.get_username() if proposal.decided_by else None


class ProposalFilter(Schema):
    status: Literal["pending", "accepted", "rejected", "all"] = "pending"
    state: str | None = Field(None, pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2 code")
    organisation: OrganisationName | None = Field(None, description="Proposed for this organisation")
    unassigned: bool = Field(False, description="Only proposals that name no organisation")


class ProposalDecision(StrictInput):
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        ..., min_length=1, max_length=services.MAX_DECISIONS
    )
    decision: Literal["accept", "reject"]
    organisation: OrganisationName | None = Field(
        None, description="Accept for this organisation instead of the proposed one"
    )


class DecisionOut(Schema):
    decision: str
    count: int


def _named_organisation(request: HttpRequest, short_name: str | None) -> Organisation | None:
    if not short_name:
        return None
    found = access.organisations_visible_to(request.user).filter(short_name=short_name).first()
    if found is None:
        raise ValidationError(
            {"organisation": _("No organisation is called %(name)s.") % {"name": short_name}}
        )
    return found


@router.get("/proposals", response=list[ProposalOut])
@paginate(Pages)
def list_proposals(request: HttpRequest, filters: Query[ProposalFilter]) -> QuerySet[ConstituencyProposal]:
    """Networks and AS numbers read from registry data, with the owner proposed for each, for a
    coordinator to accept or reject (node admins)."""
    if not _user(request).is_node_admin:
        raise PermissionDenied(_("Only node admins may see proposals."))
    return registries.proposals_for(
        request.user,
        status="" if filters.status == "all" else filters.status,
        state=filters.state or "",
        organisation=_named_organisation(request, filters.organisation),
        unassigned=filters.unassigned,
    ).select_related("decided_by")


@router.post("/proposals/decide", response=DecisionOut)
def decide_proposals(request: HttpRequest, payload: ProposalDecision) -> dict:
    """Accept proposals into constituencies (for the proposed organisation, or for the one
    named here) or reject them; all or nothing (node admins)."""
    if not _user(request).is_node_admin:
        raise PermissionDenied(_("Only node admins may decide on proposals."))
    decided = services.decide_proposals(
        _user(request), payload.ids, payload.decision, _named_organisation(request, payload.organisation)
    )
    return {"decision": payload.decision, "count": len(decided)}
