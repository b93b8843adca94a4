"""Loss reports (engineer, auditor, admin) from the analytics results of one run.

Energy balance per transformer / feeder / region: energy in (balance or feeder-head meter),
energy out (customers' import - export), loss in Wh and % of input, its technical and
non-technical (NTL) parts with NTL's 1-sigma uncertainty, completeness of the readings behind
it, and revenue at risk (max(NTL, 0) x the customers' mean tariff, archive currency).
Lists page by entity id, or worst first (`sort=worst`: highest NTL, unknown NTL last).
Interval series are the run's step, or summed to hours or days (loss % recomputed from the
sums, completeness averaged, NTL sigma summed: meter errors are biases that add linearly in
time, docs/analytics.md, so the sum is the honest bound).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.api import cursors
from cloud.api.deps import ConnDep, ReaderToken, SettingsDep
from cloud.api.listing import finite, keyset_page, one, rows
from cloud.api.params import FormatParam, PageDep, Time, check_range
from cloud.api.problems import ProblemError, responses
from cloud.api.runs import RunPublic, resolve_run, run_public
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv
from cloud.store import archive_sql

router = APIRouter(prefix="/v1/loss", tags=["reports"])

Level = Literal["transformer", "feeder", "region"]
RunId = Annotated[int | None, Query(ge=1, le=2**63 - 1, description="default: the latest run")]
IdFilter = Annotated[str | None, Query(min_length=1, max_length=200)]
_ERR = responses(401, 403, 404, 422, 429)


class LossPublic(BaseModel):
    run_id: int
    level: Level
    entity_id: str
    energy_in_wh: float | None = Field(description="null: no input reading at all")
    energy_out_wh: float | None
    loss_wh: float | None
    loss_pct: float | None = Field(description="100 x loss / energy in")
    technical_wh: float | None
    ntl_wh: float | None = Field(description="non-technical loss: loss - technical")
    ntl_sigma_wh: float | None = Field(description="1-sigma uncertainty of ntl_wh")
    completeness: float = Field(description="share of expected readings present, 0..1")
    low_confidence: bool
    revenue_at_risk: float | None = Field(description="in the archive's currency")
    estimated_wh: float | None = Field(default=None, description=(
        "customer energy in intervals resting on estimates (short gaps the analytics bridged, "
        "and VEE estimates where a VEE run covered the period); null for older runs"))
    connectivity_suspect: bool = Field(description=(
        "a transformer recorded or suggested for a meter under an open connectivity suspicion "
        "of the latest archive check (/v1/archive/connectivity): its balance may rest on a wrong "
        "archive; always false for feeders and regions"))


class LossInterval(BaseModel):
    interval_start: datetime
    interval_s: int
    energy_in_wh: float | None
    energy_out_wh: float | None
    loss_wh: float | None
    loss_pct: float | None
    technical_wh: float | None
    ntl_wh: float | None
    ntl_sigma_wh: float | None
    completeness: float
    low_confidence: bool
    revenue_at_risk: float | None


class LossDetail(BaseModel):
    run: RunPublic
    loss: LossPublic


# the open connectivity suspicions of the latest archive check (cloud/archive, migration 0070)
TX_SUSPECT = f"{archive_sql.TX_SUSPECT} AS connectivity_suspect"
_COLS = ("l.run_id, l.level, l.entity_id, l.energy_in_wh, l.energy_out_wh, l.loss_wh, l.loss_pct, "
         "l.technical_wh, l.ntl_wh, l.ntl_sigma_wh, l.completeness, l.low_confidence, l.revenue_at_risk, "
         f"l.estimated_wh, {TX_SUSPECT}")
# which region / feeder an entity of each level belongs to, for the filters
_SCOPE = {
    "transformer": ("LEFT JOIN transformers t ON t.transformer_id = l.entity_id "
                    "LEFT JOIN feeders f ON f.feeder_id = t.feeder_id", "f.region_id", "t.feeder_id"),
    "feeder": ("LEFT JOIN feeders f ON f.feeder_id = l.entity_id", "f.region_id", "f.feeder_id"),
    "region": ("", "l.entity_id", None),
}


@router.get("", response_model=Page[LossPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_loss(
    request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep, level: Level = "transformer",
    run_id: RunId = None, region_id: IdFilter = None, feeder_id: IdFilter = None,
    low_confidence: bool | None = None,
    sort: Annotated[Literal["entity", "worst"], Query(description="worst: highest NTL first")] = "entity",
    fmt: FormatParam = None,
) -> Page[LossPublic] | Response:
    run = await resolve_run(conn, run_id)
    join, region_col, feeder_col = _SCOPE[level]
    where, params = ["l.run_id = %s", "l.level = %s"], [run["run_id"], level]
    if region_id is not None:
        where.append(f"{region_col} = %s")
        params.append(region_id)
    if feeder_id is not None:
        if feeder_col is None:
            raise ProblemError(422, "feeder_id does not apply to level=region", kind="bad-filter")
        where.append(f"{feeder_col} = %s")
        params.append(feeder_id)
    if low_confidence is not None:
        where.append("l.low_confidence = %s")
        params.append(low_confidence)
    kind = f"loss-{level}-{sort}-{run['run_id']}"
    if sort == "worst":
        found, nxt = await _worst_page(conn, kind, join, where, params, page.cursor, page.limit)
    else:
        found, nxt = await keyset_page(conn, kind=kind, select=f"SELECT {_COLS} FROM analysis_loss l {join}",
                                       where=where, params=params, key=["l.entity_id"],
                                       key_types=(str,), cursor=page.cursor, limit=page.limit)
    return page_or_csv(request, fmt, LossPublic, [LossPublic(**finite(r)) for r in found], nxt)


async def _worst_page(conn: ConnDep, kind: str, join: str, where: list[str], params: list[Any],
                      cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Highest NTL first, unknown NTL last, ties by entity id: `ORDER BY ntl_wh DESC NULLS LAST`
    as analysis_loss_worst_idx (run_id, level, ntl_wh DESC NULLS LAST) is, so a worst-N list is
    an index range scan that stops after N rows, not a sort of the run's every entity. The
    cursor holds (-ntl_wh, or Infinity when unknown; entity_id), as it always has."""
    conds, args = list(where), list(params)
    after = cursors.decode(kind, cursor, (float, str))
    if after is not None:
        worst, entity = after
        if math.isinf(worst) and worst > 0:  # past the known NTLs: among the unknown ones
            conds.append("(l.ntl_wh IS NULL AND l.entity_id > %s)")
            args.append(entity)
        else:
            conds.append("(l.ntl_wh < %s OR l.ntl_wh IS NULL OR (l.ntl_wh = %s AND l.entity_id > %s))")
            args.extend([-worst, -worst, entity])
    found = await rows(conn, f"SELECT {_COLS} FROM analysis_loss l {join} WHERE {' AND '.join(conds)} "
                       "ORDER BY l.ntl_wh DESC NULLS LAST, l.entity_id LIMIT %s", [*args, limit + 1])
    nxt = None
    if len(found) > limit:
        found = found[:limit]
        last = found[-1]
        ntl = last["ntl_wh"]
        worst = math.inf if ntl is None or not math.isfinite(ntl) else -ntl
        nxt = cursors.encode(kind, [worst, last["entity_id"]])
    return found, nxt


Entity = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("/{level}/{entity_id}", response_model=LossDetail, responses=_ERR)
async def get_loss(level: Level, entity_id: Entity, conn: ConnDep, _t: ReaderToken,
                   run_id: RunId = None) -> LossDetail:
    run = await resolve_run(conn, run_id)
    r = await one(conn, f"SELECT {_COLS} FROM analysis_loss l WHERE l.run_id = %s AND l.level = %s "
                  "AND l.entity_id = %s", [run["run_id"], level, entity_id])
    if r is None:
        raise ProblemError(404, f"run {run['run_id']} has no {level} {entity_id!r}", kind="not-found")
    return LossDetail(run=run_public(run), loss=LossPublic(**finite(r)))


_SUMS = ("sum(energy_in_wh) AS energy_in_wh, sum(energy_out_wh) AS energy_out_wh, sum(loss_wh) AS loss_wh, "
         "CASE WHEN sum(energy_in_wh) > 0 THEN 100 * sum(loss_wh) / sum(energy_in_wh) END AS loss_pct, "
         "sum(technical_wh) AS technical_wh, sum(ntl_wh) AS ntl_wh, sum(ntl_sigma_wh) AS ntl_sigma_wh, "
         "avg(completeness) AS completeness, bool_or(low_confidence) AS low_confidence, "
         "sum(revenue_at_risk) AS revenue_at_risk")
_PLAIN = ("energy_in_wh, energy_out_wh, loss_wh, loss_pct, technical_wh, ntl_wh, ntl_sigma_wh, "
          "completeness, low_confidence, revenue_at_risk")


@router.get("/{level}/{entity_id}/intervals", response_model=Page[LossInterval],
            responses={**CSV_RESPONSE, **_ERR})
async def loss_intervals(
    request: Request, level: Level, entity_id: Entity, conn: ConnDep, _t: ReaderToken,
    settings: SettingsDep, page: PageDep, run_id: RunId = None,
    start: Annotated[Time | None, Query(description="default: the run's period start")] = None,
    end: Annotated[Time | None, Query(description="default: the run's period end")] = None,
    resolution: Literal["step", "hour", "day"] = "step", fmt: FormatParam = None,
) -> Page[LossInterval] | Response:
    run = await resolve_run(conn, run_id)
    start, end = check_range(start or run["period_start"], end or run["period_end"],
                             settings.max_range_report, "a loss series")
    width = {"step": int(run["step_s"]), "hour": 3600, "day": 86400}[resolution]
    if width < int(run["step_s"]):
        raise ProblemError(422, f"the run's step is {run['step_s']} s; ask for resolution=step or a "
                           "coarser one", kind="bad-resolution")
    base = ("FROM analysis_loss_intervals WHERE run_id = %s AND level = %s AND entity_id = %s "
            "AND interval_start >= %s AND interval_start < %s")
    if resolution == "step":
        inner = f"SELECT interval_start, {_PLAIN} {base}"
    else:
        inner = (f"SELECT time_bucket(make_interval(secs => {width}), interval_start) AS interval_start, "
                 f"{_SUMS} {base} GROUP BY 1")
    found, nxt = await keyset_page(
        conn, kind=f"loss-series-{level}-{entity_id}-{resolution}-{run['run_id']}",
        select=f"SELECT * FROM ({inner}) s", where=[], params=[run["run_id"], level, entity_id, start, end],
        key=["s.interval_start"], key_types=(datetime,), cursor=page.cursor, limit=page.limit)
    if not found and page.cursor is None:
        exists = await one(conn, "SELECT 1 AS x FROM analysis_loss WHERE run_id = %s AND level = %s "
                           "AND entity_id = %s", [run["run_id"], level, entity_id])
        if exists is None:
            raise ProblemError(404, f"run {run['run_id']} has no {level} {entity_id!r}", kind="not-found")
    items = [LossInterval(**finite({**r, "interval_s": width})) for r in found]
    return page_or_csv(request, fmt, LossInterval, items, nxt)
