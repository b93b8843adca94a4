"""Readings of one meter over a time range, raw or from the 15-min / hourly / daily rollups.

Raw rows carry every measured value with its unit in the name, the meter status bits, the
quality flag and where the row came from (`signed` with its envelope's agent and seq, or
`imported`). Rollup rows carry interval energy (Wh) and how many readings built them; their
buckets are UTC and a bucket holds the energy of the interval that *ends* in it (see
cloud/store/rollups.py). The range is half-open [start, end) and capped per resolution; at a
rollup resolution every bucket that overlaps it is returned (the first may start before it).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, ReaderToken, SettingsDep
from cloud.api.listing import keyset_page, one
from cloud.api.params import FormatParam, PageDep, Time, check_range
from cloud.api.problems import ProblemError, responses
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv
from cloud.store import readings_sql
from protocols.reading import MeterStatus, Quality

router = APIRouter(prefix="/v1", tags=["readings"])


class Resolution(enum.StrEnum):
    RAW = "raw"
    MIN15 = "15min"
    HOUR = "hour"
    DAY = "day"


_ROLLUP = {Resolution.MIN15: "readings_15m", Resolution.HOUR: "readings_1h", Resolution.DAY: "readings_1d"}
QUALITY_NAMES = {q.value: q.name.lower() for q in Quality}


class RawReading(BaseModel):
    ts: datetime
    import_wh: float | None = Field(description="cumulative active energy imported")
    export_wh: float | None
    import_varh: float | None
    export_varh: float | None
    v_l1_v: float | None
    v_l2_v: float | None
    v_l3_v: float | None
    i_l1_a: float | None
    i_l2_a: float | None
    i_l3_a: float | None
    i_n_a: float | None
    p_w: float | None
    q_var: float | None
    pf: float | None = Field(description="power factor, dimensionless")
    freq_hz: float | None
    status_flags: list[str] = Field(description="meter status / tamper bits that are set")
    quality: str = Field(description="valid / stale / estimated / comms_lost / decode_error")
    provenance: str = Field(description="signed (see agent_id, seq) or imported")
    agent_id: str | None
    seq: int | None


class IntervalReading(BaseModel):
    bucket: datetime = Field(description="UTC start of the interval")
    import_wh: float | None = Field(description="energy imported during the interval")
    export_wh: float | None
    readings: int = Field(description="readings that fell in the bucket")


def _flags(status: int) -> list[str]:
    return [str(f.name).lower() for f in MeterStatus if f and status & f]


_RAW_SQL = readings_sql.RAW


@router.get("/meters/{meter_id}/readings", response_model=Page[RawReading] | Page[IntervalReading],
            responses={**CSV_RESPONSE, **responses(400, 401, 403, 404, 422, 429)})
async def meter_readings(
    request: Request, conn: ConnDep, _t: ReaderToken, settings: SettingsDep, page: PageDep,
    meter_id: Annotated[str, Path(min_length=1, max_length=200)],
    start: Annotated[Time, Query(description="inclusive, ISO 8601; naive means UTC")],
    end: Annotated[Time, Query(description="exclusive")],
    resolution: Resolution = Resolution.RAW, fmt: FormatParam = None,
) -> Any:
    cap = {Resolution.RAW: settings.max_range_raw, Resolution.MIN15: settings.max_range_15min,
           Resolution.HOUR: settings.max_range_hour, Resolution.DAY: settings.max_range_day}[resolution]
    start, end = check_range(start, end, cap, f"resolution {resolution.value}")
    known = await one(conn, readings_sql.METER_KNOWN, {"m": meter_id})
    if not known or not known["known"]:
        raise ProblemError(404, f"no meter {meter_id!r} in the archive and no readings for it",
                      kind="not-found")
    if resolution is Resolution.RAW:
        found, nxt = await keyset_page(
            conn, kind=f"readings-raw-{meter_id}", select=_RAW_SQL,
            where=["r.meter_id = %s", "r.ts >= %s", "r.ts < %s"], params=[meter_id, start, end],
            key=["r.ts"], key_types=(datetime,), cursor=page.cursor, limit=page.limit)
        items: list[Any] = []
        for r in found:
            r["status_flags"] = _flags(r.pop("status"))
            r["quality"] = QUALITY_NAMES.get(r["quality"], str(r["quality"]))
            items.append(RawReading(**r))
        return page_or_csv(request, fmt, RawReading, items, nxt)
    table = _ROLLUP[resolution]
    found, nxt = await keyset_page(
        conn, kind=f"readings-{resolution.value}-{meter_id}",
        select=f"SELECT bucket, import_wh, export_wh, readings FROM {table} b",
        where=["b.meter_id = %s", "b.bucket >= %s", "b.bucket < %s"],
        params=[meter_id, _floor(start, resolution), end],
        key=["b.bucket"], key_types=(datetime,), cursor=page.cursor, limit=page.limit)
    return page_or_csv(request, fmt, IntervalReading, [IntervalReading(**r) for r in found], nxt)



def _floor(t: datetime, resolution: Resolution) -> datetime:
    """Start of the UTC bucket holding t."""
    if resolution is Resolution.DAY:
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    if resolution is Resolution.HOUR:
        return t.replace(minute=0, second=0, microsecond=0)
    return t.replace(minute=t.minute - t.minute % 15, second=0, microsecond=0)
