"""Theft suspects (engineer, auditor, admin): customer meters ranked by suspect score in one
analysis run, with the evidence per indicator (0..1), the raw indicators, the period of the
strongest evidence and the energy estimates. The score is a noisy-OR of fixed weights
(docs/analytics.md), so an engineer can recompute any of it by hand.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, ReaderToken
from cloud.api.listing import finite, keyset_page, one, rows
from cloud.api.params import FormatParam, PageDep
from cloud.api.problems import ProblemError, responses
from cloud.api.routes.loss import TX_SUSPECT, LossPublic
from cloud.api.runs import RunPublic, resolve_run, run_public
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv
from cloud.store import archive_sql

router = APIRouter(prefix="/v1/suspects", tags=["reports"])
RunId = Annotated[int | None, Query(ge=1, le=2**63 - 1, description="default: the latest run")]
IdFilter = Annotated[str | None, Query(min_length=1, max_length=200)]
_ERR = responses(401, 403, 404, 422, 429)


class SuspectPublic(BaseModel):
    run_id: int
    rank: int = Field(description="1 = most suspect in the run")
    meter_id: str
    customer_id: str | None
    transformer_id: str
    score: float = Field(description="0..1")
    strongest_indicator: str | None
    estimated_wh: float | None = Field(description="stolen energy estimated from the meter's own data")
    allocated_wh: float | None = Field(description="its share of the transformer's positive NTL")
    evidence: dict[str, Any] = Field(description="indicator -> evidence 0..1")
    period: dict[str, Any] | None = Field(description="{from, to} of the strongest evidence")
    connectivity_suspect: bool = Field(description=(
        "the meter is under an open connectivity suspicion of the latest archive check "
        "(/v1/archive/connectivity): its transformer in the archive may be wrong, and its "
        "score with it"))


class SuspectDetail(SuspectPublic):
    indicators: dict[str, Any] = Field(description="the raw indicator values behind the evidence")
    run: RunPublic
    transformer_loss: LossPublic | None
    history: list[dict[str, Any]] = Field(description="score and rank in the latest 10 runs")


_COLS = ("s.run_id, s.rank, s.meter_id, m.customer_id, s.transformer_id, s.score, s.estimated_wh, "
         "s.allocated_wh, s.evidence, "
         f"{archive_sql.METER_SUSPECT} AS connectivity_suspect")
_FROM = ("FROM analysis_suspects s LEFT JOIN meters m ON m.meter_id = s.meter_id "
         "LEFT JOIN transformers t ON t.transformer_id = s.transformer_id "
         "LEFT JOIN feeders f ON f.feeder_id = t.feeder_id")


def _suspect(r: dict[str, Any]) -> dict[str, Any]:
    ev = r.pop("evidence") or {}
    return {**finite(r), "strongest_indicator": ev.get("strongest"), "evidence": ev.get("evidence") or {},
            "period": ev.get("period"), "indicators": ev.get("indicators") or {}}


@router.get("", response_model=Page[SuspectPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_suspects(
    request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep, run_id: RunId = None,
    min_score: Annotated[float, Query(ge=0, le=1, description="suspects from this score")] = 0.5,
    transformer_id: IdFilter = None, feeder_id: IdFilter = None, region_id: IdFilter = None,
    fmt: FormatParam = None,
) -> Page[SuspectPublic] | Response:
    run = await resolve_run(conn, run_id)
    where, params = ["s.run_id = %s", "s.score >= %s"], [run["run_id"], min_score]
    for cond, v in (("s.transformer_id = %s", transformer_id), ("t.feeder_id = %s", feeder_id),
                    ("f.region_id = %s", region_id)):
        if v is not None:
            where.append(cond)
            params.append(v)
    found, nxt = await keyset_page(conn, kind=f"suspects-{run['run_id']}", select=f"SELECT {_COLS} {_FROM}",
                                   where=where, params=params, key=["s.rank"], key_types=(int,),
                                   cursor=page.cursor, limit=page.limit)
    return page_or_csv(request, fmt, SuspectPublic, [SuspectPublic(**_suspect(r)) for r in found], nxt)


@router.get("/{meter_id}", response_model=SuspectDetail, responses=_ERR)
async def get_suspect(meter_id: Annotated[str, Path(min_length=1, max_length=200)], conn: ConnDep,
                      _t: ReaderToken, run_id: RunId = None) -> SuspectDetail:
    run = await resolve_run(conn, run_id)
    r = await one(conn, f"SELECT {_COLS} {_FROM} WHERE s.run_id = %s AND s.meter_id = %s",
                  [run["run_id"], meter_id])
    if r is None:
        raise ProblemError(404, f"meter {meter_id!r} was not scored in run {run['run_id']}",
                           kind="not-found")
    loss = await one(conn, "SELECT l.run_id, l.level, l.entity_id, l.energy_in_wh, l.energy_out_wh, "
                     "l.loss_wh, l.loss_pct, l.technical_wh, l.ntl_wh, l.ntl_sigma_wh, l.completeness, "
                     f"l.low_confidence, l.revenue_at_risk, {TX_SUSPECT} FROM analysis_loss l "
                     "WHERE l.run_id = %s AND l.level = 'transformer' AND l.entity_id = %s",
                     [run["run_id"], r["transformer_id"]])
    history = await rows(conn, "SELECT s.run_id, r.period_start, r.period_end, s.rank, s.score "
                         "FROM analysis_suspects s JOIN analysis_runs r USING (run_id) "
                         "WHERE s.meter_id = %s ORDER BY s.run_id DESC LIMIT 10", [meter_id])
    return SuspectDetail(**_suspect(r), run=run_public(run),
                         transformer_loss=LossPublic(**finite(loss)) if loss else None,
                         history=[{**h, "period_start": h["period_start"].isoformat(),
                                   "period_end": h["period_end"].isoformat()} for h in history])
