"""API tokens (admin): create (the secret is in this one response only), list, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from cloud.api import cursors
from cloud.api.deps import AdminToken, ConnDep
from cloud.api.params import FormatParam, PageDep
from cloud.api.problems import ProblemError, responses
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv
from cloud.api.tokens import Role, TokenInfo, acreate_token, alist_tokens, arevoke_token

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])
_ERR = responses(401, 403, 404, 422, 429)


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S",
                      description="who or what uses it, e.g. 'grid-planning notebook'")
    role: Role
    expires_in_days: float | None = Field(
        None, gt=0, le=3660, description="the token stops working this many days from now; "
        "leave out for a token that does not expire")


class TokenPublic(BaseModel):
    id: int
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = Field(None, description="null: never expires")


class TokenCreated(TokenPublic):
    token: str = Field(description="the bearer token; shown only in this response")


def _public(t: TokenInfo) -> TokenPublic:
    return TokenPublic(id=t.id, name=t.name, role=t.role, created_at=t.created_at,
                       revoked_at=t.revoked_at, expires_at=t.expires_at)


@router.post("", status_code=201, response_model=TokenCreated, responses=_ERR)
async def create(body: TokenCreate, conn: ConnDep, _t: AdminToken) -> TokenCreated:
    new = await acreate_token(conn, body.role.value, body.name, body.expires_in_days)
    return TokenCreated(**_public(new.info).model_dump(), token=new.secret)


@router.get("", response_model=Page[TokenPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_all(request: Request, conn: ConnDep, _t: AdminToken, page: PageDep,
                   fmt: FormatParam = None) -> Page[TokenPublic] | Response:
    after = cursors.decode("tokens", page.cursor, (int,))
    found = await alist_tokens(conn, after[0] if after else 0, page.limit + 1)
    nxt = cursors.encode("tokens", [found[page.limit - 1].id]) if len(found) > page.limit else None
    return page_or_csv(request, fmt, TokenPublic, [_public(t) for t in found[:page.limit]], nxt)


@router.delete("/{token_id}", response_model=TokenPublic, responses=_ERR)
async def revoke(token_id: Annotated[str, Path(
        pattern=r"^[1-9][0-9]{0,17}$", description="the token's id, digits only (`1.0` or "
        "`01` name no token)")], conn: ConnDep, _t: AdminToken) -> TokenPublic:
    info = await arevoke_token(conn, int(token_id))
    if info is None:
        raise ProblemError(404, f"no token with id {token_id}", kind="not-found")
    return _public(info)
