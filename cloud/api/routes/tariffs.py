"""Tariffs (engineer, auditor, admin): every stored tariff version with its whole document,
and which tariff a customer is on over time.

Tariffs are data (cloud/mdm/tariffs.py, docs/mdm.md): time-of-use periods by season and day
type in local time, energy, demand, reactive and export prices, validity dates. They are
imported with `wattrail tariffs import`; this API only reads them. A customer without an
assignment is billed at the archive's flat `tariff_per_kwh` (tariff `archive-flat`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.api import cursors
from cloud.api.deps import ConnDep, ReaderToken
from cloud.api.listing import rows
from cloud.api.params import FormatParam, PageDep
from cloud.api.problems import ProblemError, responses
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv
from cloud.store import mdm_sql

router = APIRouter(prefix="/v1", tags=["meter data management"])
_ERR = responses(401, 403, 404, 422, 429)


class TariffPublic(BaseModel):
    tariff_id: str
    valid_from: date
    valid_to: date | None = Field(description="inclusive; null: open-ended")
    tariff_class: Literal["residential", "commercial", "industrial", "special"]
    currency: str
    doc: dict[str, Any] = Field(description="the tariff document as validated and stored")
    imported_at: datetime


class AssignmentPublic(BaseModel):
    customer_id: str
    tariff_id: str
    valid_from: date = Field(description="local date")
    valid_to: date | None = Field(description="inclusive; null: open-ended")
    tariff_known: bool = Field(description="false: no version of this tariff is stored, so its "
                               "days are billed as no-tariff (reported, not billed)")


def _strip(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k != "day_key"}


@router.get("/tariffs", response_model=Page[TariffPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_tariffs(
    request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
    tariff_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    fmt: FormatParam = None,
) -> Page[TariffPublic] | Response:
    """Every version, by tariff id then valid_from."""
    kind = f"tariffs-{tariff_id or ''}"
    after = cursors.decode(kind, page.cursor, (str, int))
    found = await rows(conn, mdm_sql.API_TARIFFS, {
        "t": tariff_id, "a_t": after[0] if after else None, "a_day": after[1] if after else None,
        "n": page.limit + 1})
    nxt = None
    if len(found) > page.limit:
        last = found[page.limit - 1]
        nxt = cursors.encode(kind, [last["tariff_id"], last["day_key"]])
    return page_or_csv(request, fmt, TariffPublic,
                       [TariffPublic(**_strip(r)) for r in found[:page.limit]], nxt)


@router.get("/customers/{customer_id}/tariffs", response_model=Page[AssignmentPublic],
            responses={**CSV_RESPONSE, **_ERR})
async def customer_tariffs(
    request: Request, customer_id: Annotated[str, Path(min_length=1, max_length=200)],
    conn: ConnDep, _t: ReaderToken, page: PageDep, fmt: FormatParam = None,
) -> Page[AssignmentPublic] | Response:
    """The customer's assignments, oldest first; none means the archive's flat price."""
    if not await rows(conn, mdm_sql.KNOWN_CUSTOMERS, {"c": [customer_id]}):
        raise ProblemError(404, f"no customer {customer_id!r} in the archive", kind="not-found")
    kind = f"customer-tariffs-{customer_id}"
    after = cursors.decode(kind, page.cursor, (int,))
    found = await rows(conn, mdm_sql.API_CUSTOMER_TARIFFS, {
        "c": customer_id, "after": after[0] if after else None, "n": page.limit + 1})
    nxt = cursors.encode(kind, [found[page.limit - 1]["day_key"]]) if len(found) > page.limit else None
    return page_or_csv(request, fmt, AssignmentPublic,
                       [AssignmentPublic(**_strip(r)) for r in found[:page.limit]], nxt)
