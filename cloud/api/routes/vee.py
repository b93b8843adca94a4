"""VEE (validation, estimation, editing) of interval energy: runs, meter-days, every version
of a meter's intervals, and manual edits (admin).

The post-VEE layer (`vee_intervals`, migration 0060) holds exceptions only: an interval a rule
flagged or VEE changed has a row per VEE run and per manual edit, raw beside post-VEE; any
other interval's post-VEE value is its raw value. A manual edit is not applied here: it is a
new version that every later VEE run applies (cloud/mdm/run.py), winning over its estimates;
the billing that follows such a run bills the edited value. Raw readings are never changed.
Times are UTC; interval listings also give each start in the region's zone (`bucket_local`).
"""

from __future__ import annotations

import itertools
import logging
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from cloud.api import cursors
from cloud.api.deps import AdminToken, ConnDep, ReaderToken, SettingsDep
from cloud.api.listing import one, rows
from cloud.api.params import FormatParam, PageDep, Time, check_range
from cloud.api.problems import ProblemError, responses
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv
from cloud.mdm.estimation import Method
from cloud.mdm.validation import Rule
from cloud.store import mdm_sql
from protocols.reading import Quality

router = APIRouter(prefix="/v1/vee", tags=["meter data management"])
audit = logging.getLogger("wattrail.audit")  # who changed what and why, one line per change

GRID_S = 900  # manual edits are on the 15-minute grid the VEE runs on
_TOL_S = GRID_S // 10  # reading jitter tolerated on an interval boundary, as cloud/mdm/fetch.py
_NOT_READINGS = frozenset({int(Quality.COMMS_LOST), int(Quality.DECODE_ERROR)})
DAY_STATUS = ("valid", "estimated", "failed")
_ERR = responses(401, 403, 404, 422, 429)
MeterId = Annotated[str, Path(min_length=1, max_length=200)]
RunQuery = Annotated[int | None, Query(ge=1, le=2**63 - 1, description="VEE run id; default: the latest")]


def rule_names(flags: int) -> list[str]:
    return [str(r.name).lower() for r in Rule if flags & r]


def method_name(code: int) -> str:
    try:
        return str(Method(code).name).lower()
    except ValueError:  # a code a newer VEE wrote: say it rather than fail the listing
        return str(code)


class VeeRunPublic(BaseModel):
    run_id: int
    period_start: datetime = Field(description="UTC start of the first local day validated")
    period_end: datetime = Field(description="UTC end of the last local day (exclusive)")
    step_s: int
    meters: int
    started_at: datetime
    finished_at: datetime | None = Field(description="null: still running, or stopped before the end")


class RuleOutcome(BaseModel):
    rule: str
    bit: int | None = Field(description="its bit in `flags` (cloud/mdm/validation.Rule)")
    ran: bool
    why_not: str | None = Field(description="why the rule could not run (input the data lacks)")
    intervals_failed: int


class VeeRunDetail(VeeRunPublic):
    params: dict[str, Any]
    rules: list[RuleOutcome]
    meter_days: dict[str, int] = Field(description="valid / estimated / failed meter-days")
    seconds: dict[str, float] = Field(description="where the run's time went")


class VeeDayPublic(BaseModel):
    run_id: int
    meter_id: str
    day: date = Field(description="local day in the region's zone")
    status: Literal["valid", "estimated", "failed"]
    rules_failed: list[str] = Field(description="rules that flagged an interval of the day")
    flags: int = Field(description="OR of the day's rule bits")
    intervals: int = Field(description="intervals in the local day (92 / 96 / 100 at 15 min)")
    estimated: int
    missing: int = Field(description="intervals still missing after VEE")


class VersionPublic(BaseModel):
    meter_id: str
    bucket: datetime = Field(description="interval start, UTC")
    bucket_local: datetime | None = Field(description="the same instant in the region's zone")
    source: Literal["vee", "manual"]
    version: int = Field(description="the VEE run id (source vee) or the edit's number (manual)")
    run_id: int | None
    raw_kwh: float | None = Field(description="from the raw readings; null: missing there")
    value_kwh: float | None = Field(description="post-VEE; null: still missing")
    flags: int
    rules: list[str] = Field(description="the rules that flagged the interval")
    method: str = Field(description="actual, linear, like_day, like_day_scaled, manual, none")
    edited_by: str | None = Field(description="the API token's name (manual edits)")
    reason: str | None
    created_at: datetime
    in_force: bool = Field(description="the version a bill rests on: the newest manual edit, else "
                           "the row of the newest VEE run of the meter over this interval")


_ISO_OFFSET = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
               r"(Z|[+-][0-9]{2}:[0-9]{2})$")


def _instant(v: Any) -> Any:
    # a bucket without an offset could be UTC or local: refuse rather than guess
    if not isinstance(v, str) or re.fullmatch(_ISO_OFFSET, v) is None:
        raise ValueError("give the interval start as ISO 8601 with its offset, e.g. "
                         "2026-03-10T14:15:00+01:00 or 2026-03-10T13:15:00Z")
    try:
        return datetime.fromisoformat(v)
    except ValueError as exc:
        raise ValueError(f"not a valid date/time ({exc})") from None


Instant = Annotated[AwareDatetime, BeforeValidator(_instant), WithJsonSchema(
    {"type": "string", "pattern": _ISO_OFFSET, "description": "ISO 8601 with offset"})]


class EditCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt `value` must not mean "mark missing"

    bucket: Instant = Field(description="start of the 15-minute interval, with its UTC offset")
    value_kwh: float | None = Field(ge=0, allow_inf_nan=False, description=(
        "the interval's energy; null marks it missing (it then stays missing, never estimated)"))
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500,
                                             pattern=r"^[^\x00]*$")] = Field(
        description="why (mandatory): meter swap, customer read, site visit ...")


async def _meter_zone(conn: ConnDep, meter_id: str) -> tuple[str, ZoneInfo | None]:
    r = await one(conn, mdm_sql.API_METER_ZONE, {"m": meter_id})
    if r is None:
        raise ProblemError(404, f"no meter {meter_id!r} in the archive", kind="not-found")
    return str(r["kind"]), ZoneInfo(r["time_zone"]) if r["time_zone"] else None


def _run_public(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in VeeRunPublic.model_fields}


@router.get("/runs", response_model=Page[VeeRunPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_runs(request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
                    fmt: FormatParam = None) -> Page[VeeRunPublic] | Response:
    """Newest first."""
    after = cursors.decode("vee-runs", page.cursor, (int,))
    found = await rows(conn, mdm_sql.API_VEE_RUNS, {"after": after[0] if after else None,
                                                    "n": page.limit + 1})
    nxt = cursors.encode("vee-runs", [found[page.limit - 1]["run_id"]]) if len(found) > page.limit else None
    return page_or_csv(request, fmt, VeeRunPublic, [VeeRunPublic(**r) for r in found[:page.limit]], nxt)


async def _resolve_run(conn: ConnDep, run_id: int | None) -> dict[str, Any]:
    if run_id is None:
        latest = await one(conn, mdm_sql.VEE_RUNS, {"n": 1})
        if latest is None:
            raise ProblemError(404, "no VEE run yet: run `wattrail vee run --period YYYY-MM`",
                               kind="no-vee-run")
        run_id = int(latest["run_id"])
    r = await one(conn, mdm_sql.VEE_RUN, {"run": run_id})
    if r is None:
        raise ProblemError(404, f"no VEE run {run_id}; list them at /v1/vee/runs", kind="not-found")
    return r


@router.get("/runs/{run_id}", response_model=VeeRunDetail, responses=_ERR)
async def get_run(run_id: Annotated[int, Path(ge=1, le=2**63 - 1)], conn: ConnDep,
                  _t: ReaderToken) -> VeeRunDetail:
    r = await _resolve_run(conn, run_id)
    counts = {s: 0 for s in DAY_STATUS}
    for c in await rows(conn, mdm_sql.VEE_DAY_COUNTS, {"run": run_id}):
        counts[DAY_STATUS[c["status"]]] = int(c["count"])
    stored: dict[str, Any] = r["rules"] or {}
    bits = {str(rule.name).lower(): int(rule) for rule in Rule}
    # in the Rule order (jsonb does not keep the order written), unknown names last
    names = [n for n in bits if n in stored] + sorted(set(stored) - set(bits))
    rules = [RuleOutcome(rule=n, bit=bits.get(n), ran=bool(stored[n].get("ran")),
                         why_not=stored[n].get("why_not"),
                         intervals_failed=int(stored[n].get("failed") or 0)) for n in names]
    return VeeRunDetail(**_run_public(r), params=r["params"] or {}, rules=rules, meter_days=counts,
                        seconds={k: float(v) for k, v in (r["seconds"] or {}).items()})


@router.get("/meters/{meter_id}/days", response_model=Page[VeeDayPublic],
            responses={**CSV_RESPONSE, **_ERR})
async def meter_days(request: Request, meter_id: MeterId, conn: ConnDep, _t: ReaderToken,
                     page: PageDep, run: RunQuery = None, fmt: FormatParam = None
                     ) -> Page[VeeDayPublic] | Response:
    """The meter's local days in one VEE run: status, the rules that failed, counts."""
    await _meter_zone(conn, meter_id)
    r = await _resolve_run(conn, run)
    run_id = int(r["run_id"])
    kind = f"vee-days-{run_id}-{meter_id}"
    after = cursors.decode(kind, page.cursor, (int,))
    found = await rows(conn, mdm_sql.API_VEE_DAYS, {"run": run_id, "m": meter_id,
                                                     "after": after[0] if after else None,
                                                     "n": page.limit + 1})
    if not found and after is None:
        raise ProblemError(404, f"meter {meter_id!r} was not in VEE run {run_id} (not a customer "
                           "meter, or its region was left out)", kind="not-found")
    nxt = cursors.encode(kind, [found[page.limit - 1]["day_key"]]) if len(found) > page.limit else None
    items = [VeeDayPublic(run_id=run_id, meter_id=meter_id, day=d["day"], status=DAY_STATUS[d["status"]],
                          rules_failed=rule_names(d["flags"]), flags=d["flags"], intervals=d["intervals"],
                          estimated=d["estimated"], missing=d["missing"]) for d in found[:page.limit]]
    return page_or_csv(request, fmt, VeeDayPublic, items, nxt)


def _version(meter_id: str, tz: ZoneInfo | None, v: dict[str, Any]) -> VersionPublic:
    return VersionPublic(
        meter_id=meter_id, bucket=v["bucket"], bucket_local=v["bucket"].astimezone(tz) if tz else None,
        source=v["source"], version=v["version"], run_id=v["run_id"], raw_kwh=v["raw_kwh"],
        value_kwh=v["value_kwh"], flags=v["flags"], rules=rule_names(v["flags"]),
        method=method_name(v["method"]), edited_by=v["edited_by"], reason=v["reason"],
        created_at=v["created_at"], in_force=bool(v.get("in_force", True)))


@router.get("/meters/{meter_id}/intervals", response_model=Page[VersionPublic],
            responses={**CSV_RESPONSE, **_ERR})
async def meter_intervals(
    request: Request, meter_id: MeterId, conn: ConnDep, _t: ReaderToken, settings: SettingsDep,
    page: PageDep,
    start: Annotated[Time, Query(alias="from", description="inclusive interval start; naive means UTC")],
    end: Annotated[Time, Query(alias="to", description="exclusive")],
    fmt: FormatParam = None,
) -> Page[VersionPublic] | Response:
    """Every version of the meter's intervals that VEE or a person touched, by interval start;
    within one, manual edits first, then VEE runs, newest first. Intervals not listed are
    valid as read: post-VEE equals raw."""
    start, end = check_range(start, end, settings.max_range_15min, "a meter's VEE intervals")
    _kind, tz = await _meter_zone(conn, meter_id)
    kind = f"vee-intervals-{meter_id}"
    after = cursors.decode(kind, page.cursor, (datetime, int, int))
    found = await rows(conn, mdm_sql.API_VEE_VERSIONS, {
        "m": meter_id, "lo": start, "hi": end, "n": page.limit + 1,
        "a_bucket": after[0] if after else None, "a_rank": after[1] if after else None,
        "a_neg": after[2] if after else None})
    nxt = None
    if len(found) > page.limit:
        last = found[page.limit - 1]
        nxt = cursors.encode(kind, [last["bucket"], last["source_rank"], -last["version"]])
    items = [_version(meter_id, tz, v) for v in found[:page.limit]]
    return page_or_csv(request, fmt, VersionPublic, items, nxt)


def raw_from_readings(found: list[dict[str, Any]], bucket: datetime, step_s: int = GRID_S) -> float | None:
    """The interval's raw energy (kWh) as the VEE reads it: the import register difference of
    the readings on its two boundaries (within the jitter tolerance), None when either boundary
    has no usable reading, a reading in it is stale or unusable, or two readings are further
    apart than a step (a gap is never bridged). Readings on the grid give the VEE's value
    exactly; jittered ones may differ from the kernel's pro-rata split by the jitter's share."""
    ends = (bucket, bucket + timedelta(seconds=step_s))

    def near(t: datetime) -> dict[str, Any] | None:
        close = [r for r in found if abs((r["ts"] - t).total_seconds()) <= _TOL_S]
        if any(r["quality"] == int(Quality.STALE) for r in close):
            return None  # a repeated register closes nothing
        ok = [r for r in close if r["quality"] not in _NOT_READINGS and r["import_wh"] is not None]
        return min(ok, key=lambda r: abs((r["ts"] - t).total_seconds()), default=None)

    a, b = near(ends[0]), near(ends[1])
    if a is None or b is None:
        return None
    inside = [r for r in found if a["ts"] <= r["ts"] <= b["ts"]]
    if any(r["quality"] == int(Quality.STALE) or r["quality"] in _NOT_READINGS for r in inside):
        return None
    for x, y in itertools.pairwise(inside):
        if (y["ts"] - x["ts"]).total_seconds() > step_s + _TOL_S:
            return None
    return float(b["import_wh"] - a["import_wh"]) / 1000.0


@router.post("/meters/{meter_id}/edits", status_code=201, response_model=VersionPublic,
             responses=_ERR)
async def create_edit(meter_id: MeterId, body: EditCreate, conn: ConnDep,
                      token: AdminToken) -> VersionPublic:
    """A manual edit of one interval, as a new version of the post-VEE layer: the next VEE run
    over the interval applies it (method `manual`) and the billing after it bills it."""
    kind, tz = await _meter_zone(conn, meter_id)
    if kind != "customer":
        raise ProblemError(422, f"meter {meter_id!r} is a {kind} meter; VEE and billing cover "
                           "customer meters only, so an edit would never be applied",
                           kind="not-a-customer-meter")
    bucket = body.bucket
    ts = bucket.timestamp()
    if ts % GRID_S:
        floor = datetime.fromtimestamp(ts // GRID_S * GRID_S, UTC).astimezone(bucket.tzinfo)
        raise ProblemError(422, f"bucket {bucket.isoformat()} is not on the 15-minute grid: an "
                           "interval starts at :00, :15, :30 or :45 UTC with no seconds; the "
                           f"interval holding this instant starts at {floor.isoformat()}",
                           kind="bucket-off-grid")
    if bucket + timedelta(seconds=GRID_S) > datetime.now(UTC):
        raise ProblemError(422, f"the interval starting {bucket.isoformat()} has not ended yet; "
                           "edit intervals that have been metered", kind="bucket-in-future")
    params = {"m": meter_id, "bucket": bucket}
    async with conn.transaction():
        latest = await one(conn, mdm_sql.API_LATEST_AT_BUCKET, params)
        if latest is not None:
            raw = latest["raw_kwh"]
        else:
            around = await rows(conn, mdm_sql.API_READINGS_AROUND, {
                "m": meter_id, "lo": bucket - timedelta(seconds=_TOL_S),
                "hi": bucket + timedelta(seconds=GRID_S + _TOL_S)})
            raw = raw_from_readings(around, bucket)
        seq = await one(conn, mdm_sql.NEW_EDIT_VERSION)
        assert seq is not None
        version = int(seq["nextval"])
        await conn.execute(mdm_sql.INSERT_MANUAL_EDIT, {
            **params, "version": version, "raw": raw, "value": body.value_kwh, "by": token.name,
            "reason": body.reason})
        row = await one(conn, mdm_sql.API_MANUAL_EDIT, {**params, "version": version})
    assert row is not None
    # %r: a name or reason with a line break cannot forge a second audit line
    audit.info("manual edit: meter=%r bucket=%s value_kwh=%s raw_kwh=%s version=%d by=%r "
               "token_id=%d reason=%r", meter_id, bucket.astimezone(UTC).isoformat(),
               body.value_kwh, raw, version, token.name, token.id, body.reason)
    return _version(meter_id, tz, row)
