"""REST endpoints of the core app: the caller, organisations and the caller's API tokens."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import LimitOffsetPagination, paginate
from ninja.params import functions as param
from pydantic import ConfigDict, StrictInt

from minga.core import access, services
from minga.core.choices import Role
from minga.core.models import ApiToken, Organisation, User

router = Router()


class StrictInput(Schema):
    """Input bodies reject unknown fields, so a typo is an error rather than a silent no-op."""

    model_config = ConfigDict(extra="forbid")


# A short name in a URL is a slug: other text (a NUL character, which PostgreSQL refuses) is a
# 422 naming the parameter before any query runs.
ShortName = Annotated[
    str, param.Path(pattern=r"^[-a-zA-Z0-9_]+$", description="The organisation's short name")
]

MAX_PAGE_SIZE = 1000
MAX_OFFSET = 2**31 - 1


class Pages(LimitOffsetPagination):
    """``limit``/``offset`` pages with bounds the database can hold: a huge number is a 422
    naming the parameter, not an overflow deep in the query."""

    class Input(Schema):
        limit: int = Field(100, ge=1, le=MAX_PAGE_SIZE, description="Items per page")
        offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Items to skip")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_limit=MAX_PAGE_SIZE, **kwargs)


class MembershipOut(Schema):
    organisation: str = Field(..., alias="organisation.short_name")
    organisation_name: str = Field(..., alias="organisation.name")
    role: Role


class MeOut(Schema):
    username: str
    email: str
    first_name: str
    last_name: str
    is_node_admin: bool
    preferred_language: str
    time_zone: str
    has_totp: bool
    memberships: list[MembershipOut]

    @staticmethod
    def resolve_memberships(user: User) -> list:
        return list(user.active_memberships())


class OrganisationOut(Schema):
    uuid: UUID
    name: str
    short_name: str
    is_network_member: bool
    created_at: datetime
    updated_at: datetime


class OrganisationIn(StrictInput):
    name: str = Field(..., min_length=2, max_length=200)
    short_name: str = Field(..., min_length=2, max_length=40, pattern=r"^[A-Za-z0-9-]+$")
    is_network_member: bool = True


class OrganisationPatch(StrictInput):
    name: str | None = Field(None, min_length=2, max_length=200)
    short_name: str | None = Field(None, min_length=2, max_length=40, pattern=r"^[A-Za-z0-9-]+$")
    is_network_member: bool | None = None


class OrganisationFilter(Schema):
    q: str | None = Field(None, max_length=100, description="Part of the name or short name")
    is_network_member: bool | None = None


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenIn(StrictInput):
    name: str = Field(..., min_length=1, max_length=100)
    # Strict: JSON true is not a number of days.
    expires_in_days: StrictInt | None = Field(None, ge=1, le=services.MAX_TOKEN_DAYS)


class TokenCreated(TokenOut):
    token: str = Field(..., description="The secret. Shown only in this answer: store it now.")


class Message(Schema):
    detail: str


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


@router.get("/me", response=MeOut, tags=["accounts"])
def me(request: HttpRequest) -> User:
    """The authenticated user, with their memberships."""
    return _user(request)


@router.get("/organisations", response=list[OrganisationOut], tags=["organisations"])
@paginate(Pages)
def list_organisations(request: HttpRequest, filters: Query[OrganisationFilter]) -> QuerySet[Organisation]:
    """Organisations of the network that the caller may see."""
    organisations = access.organisations_visible_to(request.user)
    if filters.q:
        organisations = organisations.filter(
            Q(name__icontains=filters.q) | Q(short_name__icontains=filters.q)
        )
    if filters.is_network_member is not None:
        organisations = organisations.filter(is_network_member=filters.is_network_member)
    return organisations


@router.get("/organisations/{short_name}", response=OrganisationOut, tags=["organisations"])
def get_organisation(request: HttpRequest, short_name: ShortName) -> Organisation:
    return get_object_or_404(access.organisations_visible_to(request.user), short_name=short_name)


@router.post("/organisations", response={201: OrganisationOut}, tags=["organisations"])
def create_organisation(request: HttpRequest, payload: OrganisationIn) -> Status:
    """Create an organisation (node admins)."""
    return Status(201, services.create_organisation(_user(request), **payload.dict()))


@router.patch("/organisations/{short_name}", response=OrganisationOut, tags=["organisations"])
def update_organisation(
    request: HttpRequest, short_name: ShortName, payload: OrganisationPatch
) -> Organisation:
    """Change an organisation (node admins, or the organisation's own admins)."""
    organisation = get_object_or_404(access.organisations_visible_to(request.user), short_name=short_name)
    changes = payload.dict(exclude_unset=True)
    if any(value is None for value in changes.values()):
        raise ValidationError("Fields cannot be set to null.")
    return services.update_organisation(_user(request), organisation, **changes)


@router.get("/tokens", response=list[TokenOut], tags=["accounts"])
@paginate(Pages)
def list_tokens(request: HttpRequest) -> QuerySet[ApiToken]:
    """The caller's own API tokens (never their secrets)."""
    return ApiToken.objects.filter(user=_user(request))


@router.post("/tokens", response={201: TokenCreated}, tags=["accounts"])
def create_token(request: HttpRequest, payload: TokenIn) -> Status:
    """Issue a token for the caller. The secret is in this answer only."""
    issued = services.create_api_token(
        _user(request), _user(request), name=payload.name, expires_in_days=payload.expires_in_days
    )
    data = TokenOut.from_orm(issued.token).dict()
    return Status(201, {**data, "token": issued.raw})


@router.delete("/tokens/{token_id}", response=TokenOut, tags=["accounts"])
def revoke_token(request: HttpRequest, token_id: int) -> ApiToken:
    """Revoke one of the caller's tokens at once."""
    token = get_object_or_404(ApiToken, pk=token_id, user=_user(request))
    return services.revoke_api_token(_user(request), token)
