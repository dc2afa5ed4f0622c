"""REST endpoints of the directory: member states, sectors and organisations' profiles."""

from typing import Annotated

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from ninja import Field, Router, Schema, Status
from ninja.params import functions as param

from minga.core import access
from minga.core.api import ShortName, StrictInput
from minga.core.models import User
from minga.directory import queries, services
from minga.directory.choices import OrganisationKind
from minga.directory.models import MemberState, OrganisationProfile, Sector

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
