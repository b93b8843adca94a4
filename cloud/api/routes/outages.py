"""Outages (engineer, auditor, admin) localised by one analysis run to a transformer or a
feeder: from the first instant out to the first instant back (`ended_at` null: still out at
the end of the analysed period). A transformer outage inside a feeder outage is reported as
the feeder's. Ordered by start."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, ReaderToken
from cloud.api.listing import keyset_page
from cloud.api.params import FormatParam, PageDep
from cloud.api.problems import responses
from cloud.api.runs import resolve_run
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv

router = APIRouter(prefix="/v1/outages", tags=["reports"])
IdFilter = Annotated[str | None, Query(min_length=1, max_length=200)]


class OutagePublic(BaseModel):
    run_id: int
    level: Literal["transformer", "feeder"]
    entity_id: str
    region_id: str | None
    started_at: datetime
    ended_at: datetime | None = Field(description="null: still out at the end of the period")
    duration_s: float | None
    instants: int = Field(description="analysis instants the outage spans")


_SELECT = ("SELECT o.run_id, o.level, o.entity_id, f.region_id, o.started_at, o.ended_at, "
           "extract(epoch FROM o.ended_at - o.started_at)::float8 AS duration_s, o.instants "
           "FROM analysis_outages o "
           "LEFT JOIN transformers t ON o.level = 'transformer' AND t.transformer_id = o.entity_id "
           "LEFT JOIN feeders f ON f.feeder_id = coalesce(t.feeder_id, o.entity_id)")


@router.get("", response_model=Page[OutagePublic],
            responses={**CSV_RESPONSE, **responses(401, 403, 404, 422, 429)})
async def list_outages(
    request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
    run_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="default: the latest run")] = None,
    level: Literal["transformer", "feeder"] | None = None, entity_id: IdFilter = None,
    region_id: IdFilter = None, ongoing: Annotated[bool | None, Query(description="only still-open")] = None,
    fmt: FormatParam = None,
) -> Page[OutagePublic] | Response:
    run = await resolve_run(conn, run_id)
    where, params = ["o.run_id = %s"], [run["run_id"]]
    for cond, v in (("o.level = %s", level), ("o.entity_id = %s", entity_id),
                    ("f.region_id = %s", region_id)):
        if v is not None:
            where.append(cond)
            params.append(v)
    if ongoing is not None:
        where.append("o.ended_at IS NULL" if ongoing else "o.ended_at IS NOT NULL")
    found, nxt = await keyset_page(conn, kind=f"outages-{run['run_id']}", select=_SELECT, where=where,
                                   params=params, key=["o.started_at", "o.level", "o.entity_id"],
                                   key_types=(datetime, str, str), cursor=page.cursor, limit=page.limit)
    return page_or_csv(request, fmt, OutagePublic, [OutagePublic(**r) for r in found], nxt)
