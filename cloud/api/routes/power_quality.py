"""Power-quality problems (engineer, auditor, admin) found by one analysis run:
- `overload`: a transformer; value = peak loading S / rating; intervals over 1.0 and the
  longest such run (started_at .. ended_at);
- `voltage`: a customer meter; value = share of instants with a phase outside 230 V ± 10 %
  (EN 50160 band), min/max voltage in details;
- `imbalance`: a transformer; value = mean current imbalance (max - min) / mean.
Worst first within each kind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, ReaderToken
from cloud.api.listing import finite, keyset_page
from cloud.api.params import FormatParam, PageDep
from cloud.api.problems import responses
from cloud.api.runs import resolve_run
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv

router = APIRouter(prefix="/v1/power-quality", tags=["reports"])
Kind = Literal["overload", "voltage", "imbalance"]
IdFilter = Annotated[str | None, Query(min_length=1, max_length=200)]


class QualityEvent(BaseModel):
    run_id: int
    kind: Kind
    level: Literal["transformer", "meter"]
    entity_id: str
    transformer_id: str | None = Field(description="the entity's transformer (itself for transformers)")
    value: float = Field(description="loading ratio (overload), share 0..1 (voltage), ratio (imbalance)")
    intervals: int | None = Field(description="overload: intervals above the rating")
    started_at: datetime | None
    ended_at: datetime | None
    details: dict[str, Any]


_SELECT = ("SELECT q.run_id, q.kind, q.level, q.entity_id, coalesce(m.transformer_id, t.transformer_id) "
           "AS transformer_id, q.value, q.intervals, q.started_at, q.ended_at, q.details, -q.value AS neg "
           "FROM analysis_power_quality q "
           "LEFT JOIN meters m ON q.level = 'meter' AND m.meter_id = q.entity_id "
           "LEFT JOIN transformers t ON t.transformer_id = coalesce(m.transformer_id, q.entity_id) "
           "LEFT JOIN feeders f ON f.feeder_id = t.feeder_id")


@router.get("", response_model=Page[QualityEvent],
            responses={**CSV_RESPONSE, **responses(401, 403, 404, 422, 429)})
async def list_quality(
    request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
    run_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="default: the latest run")] = None,
    kind: Kind | None = None, transformer_id: IdFilter = None, feeder_id: IdFilter = None,
    region_id: IdFilter = None, fmt: FormatParam = None,
) -> Page[QualityEvent] | Response:
    run = await resolve_run(conn, run_id)
    where, params = ["q.run_id = %s"], [run["run_id"]]
    for cond, v in (("q.kind = %s", kind), ("t.transformer_id = %s", transformer_id),
                    ("t.feeder_id = %s", feeder_id), ("f.region_id = %s", region_id)):
        if v is not None:
            where.append(cond)
            params.append(v)
    found, nxt = await keyset_page(conn, kind=f"pq-{run['run_id']}", select=_SELECT, where=where,
                                   params=params, key=["q.kind", "-q.value", "q.entity_id"],
                                   key_names=["kind", "neg", "entity_id"], key_types=(str, float, str),
                                   cursor=page.cursor, limit=page.limit)
    return page_or_csv(request, fmt, QualityEvent, [QualityEvent(**finite(r)) for r in found], nxt)
