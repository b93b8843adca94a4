"""Regional consumption summary and next-day forecast (engineer, auditor, admin), from one
analysis run: customers' net energy over the period, the peak interval, energy per UTC day,
the mean profile over a day, and the forecast of the day after the period (Holt-Winters,
docs/analytics.md) with its error on a held-out last day."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, ReaderToken
from cloud.api.listing import keyset_page, one
from cloud.api.params import FormatParam, PageDep
from cloud.api.problems import ProblemError, responses
from cloud.api.runs import resolve_run
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv

router = APIRouter(prefix="/v1/regional-summaries", tags=["reports"])
RunId = Annotated[int | None, Query(ge=1, le=2**63 - 1, description="default: the latest run")]


class RegionSummary(BaseModel):
    run_id: int
    region_id: str
    period_start: datetime
    period_end: datetime
    energy_wh: float = Field(description="customers' net consumption over the period")
    peak_interval_wh: float | None
    peak_at: datetime | None
    daily_wh: list[float | None] = Field(description="per whole UTC day of the period")
    forecast_next_day_wh: float | None = Field(description="sum of the forecast day; null < 2 days")
    holdout_mae_wh: float | None = Field(description="per interval, last day held out; null < 3 days")
    holdout_mape_pct: float | None


class Point(BaseModel):
    at: datetime
    energy_wh: float | None


class RegionForecast(RegionSummary):
    interval_s: int
    profile: list[Point] = Field(description="mean energy per interval of the day (times on the first day)")
    forecast: list[Point] = Field(description="the day after the period, per interval")


_SELECT = ("SELECT g.run_id, g.region_id, r.period_start, r.period_end, r.step_s, g.energy_wh, "
           "g.peak_interval_wh, g.peak_at, g.daily_wh, g.profile_wh, g.forecast_wh, g.holdout_mae_wh, "
           "g.holdout_mape_pct FROM analysis_regions g JOIN analysis_runs r USING (run_id)")


def _f(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    fc = r["forecast_wh"]
    return {"run_id": r["run_id"], "region_id": r["region_id"], "period_start": r["period_start"],
            "period_end": r["period_end"], "energy_wh": r["energy_wh"],
            "peak_interval_wh": _f(r["peak_interval_wh"]), "peak_at": r["peak_at"],
            "daily_wh": [_f(x) for x in r["daily_wh"]],
            "forecast_next_day_wh": None if fc is None else math.fsum(x for x in fc if _f(x) is not None),
            "holdout_mae_wh": _f(r["holdout_mae_wh"]), "holdout_mape_pct": _f(r["holdout_mape_pct"])}


@router.get("", response_model=Page[RegionSummary],
            responses={**CSV_RESPONSE, **responses(401, 403, 404, 422, 429)})
async def list_summaries(request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
                         run_id: RunId = None, fmt: FormatParam = None) -> Page[RegionSummary] | Response:
    run = await resolve_run(conn, run_id)
    found, nxt = await keyset_page(conn, kind=f"regional-{run['run_id']}", select=_SELECT,
                                   where=["g.run_id = %s"], params=[run["run_id"]], key=["g.region_id"],
                                   key_types=(str,), cursor=page.cursor, limit=page.limit)
    return page_or_csv(request, fmt, RegionSummary, [RegionSummary(**_summary(r)) for r in found], nxt)


@router.get("/{region_id}", response_model=RegionForecast, responses=responses(401, 403, 404, 422, 429))
async def get_forecast(region_id: Annotated[str, Path(min_length=1, max_length=200)], conn: ConnDep,
                       _t: ReaderToken, run_id: RunId = None) -> RegionForecast:
    run = await resolve_run(conn, run_id)
    r = await one(conn, _SELECT + " WHERE g.run_id = %s AND g.region_id = %s", [run["run_id"], region_id])
    if r is None:
        raise ProblemError(404, f"run {run['run_id']} has no region {region_id!r}", kind="not-found")
    step = timedelta(seconds=int(r["step_s"]))
    day0 = r["period_start"]
    nxt = r["period_end"]
    return RegionForecast(
        **_summary(r), interval_s=int(r["step_s"]),
        profile=[Point(at=day0 + i * step, energy_wh=_f(x)) for i, x in enumerate(r["profile_wh"])],
        forecast=[Point(at=nxt + i * step, energy_wh=_f(x)) for i, x in enumerate(r["forecast_wh"] or [])])
