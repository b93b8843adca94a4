"""Billing determinants (engineer, auditor, admin): billing runs, each one VEE run and every
customer's determinants of one local month at the tariff versions in force.

A row is one customer, tariff version and run of consecutive days (two rows when the tariff
changes within the month: a bill's proration lines). Missing stays missing: a row with an
interval still missing after VEE has `amount` null (not billable) and says how many
(`missing`); `estimated_share` says how much of the energy rests on estimates
(docs/mdm.md, "Billing determinants"). Runs are written once and never changed, so a pinned
run answers the same every time; `/v1/billing/customers/{id}/determinants` reads the latest
run of the period.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.api import cursors
from cloud.api.deps import ConnDep, ReaderToken
from cloud.api.listing import finite, one, rows
from cloud.api.params import FormatParam, PageDep
from cloud.api.problems import ProblemError, responses
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv
from cloud.store import mdm_sql

router = APIRouter(prefix="/v1/billing", tags=["meter data management"])
_ERR = responses(401, 403, 404, 422, 429)
PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
CustomerId = Annotated[str, Path(min_length=1, max_length=200)]


class BillingRunPublic(BaseModel):
    run_id: int
    period: str = Field(description="local calendar month, YYYY-MM")
    vee_run_id: int = Field(description="the VEE run whose post-VEE values were billed")
    customers: int
    seconds: dict[str, float] = Field(description="where the run's time went")
    created_at: datetime


class DeterminantPublic(BaseModel):
    run_id: int
    customer_id: str
    meter_id: str
    tariff_id: str = Field(description="archive-flat: the archive's flat price (no assignment); "
                           "no-tariff: days nothing covers, reported and never billed")
    tariff_from: date = Field(description="valid_from of the tariff version")
    first_day: date = Field(description="local days of this row, inclusive")
    last_day: date
    currency: str
    kwh_by_period: dict[str, float] = Field(description="post-VEE import energy per TOU period")
    total_kwh: float
    export_kwh: float
    kvarh: float | None = Field(description="null: the meter has no reactive register")
    max_kw: float | None = Field(description="the highest mean power of one demand window")
    max_kw_at: datetime | None = Field(description="start of that window, UTC")
    demand_window_s: int
    estimated_share: float | None = Field(description="share of total_kwh resting on estimates, 0..1")
    intervals: int
    missing: int = Field(description="intervals still missing after VEE")
    amount: float | None = Field(description="in currency; null: incomplete or no tariff, not billable")
    vee_status: Literal["valid", "estimated", "failed"] = Field(
        description="the worst meter-day status among the row's days")


class CustomerBill(BaseModel):
    customer_id: str
    period: str
    run: BillingRunPublic
    lines: list[DeterminantPublic] = Field(description="one per tariff version in force")
    amount: float | None = Field(description="sum of the lines' amounts; null when a line is not "
                                 "billable or the lines are in different currencies")
    currency: str | None


async def _billing_run(conn: ConnDep, run_id: int) -> dict[str, Any]:
    r = await one(conn, mdm_sql.BILLING_RUN, {"run": run_id})
    if r is None:
        raise ProblemError(404, f"no billing run {run_id}; list them at /v1/billing/runs",
                           kind="not-found")
    return r


@router.get("/runs", response_model=Page[BillingRunPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_runs(
    request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
    period: Annotated[str | None, Query(pattern=PERIOD_PATTERN, description="YYYY-MM")] = None,
    fmt: FormatParam = None,
) -> Page[BillingRunPublic] | Response:
    """Newest first."""
    kind = f"billing-runs-{period or 'all'}"
    after = cursors.decode(kind, page.cursor, (int,))
    found = await rows(conn, mdm_sql.API_BILLING_RUNS, {
        "period": period, "after": after[0] if after else None, "n": page.limit + 1})
    nxt = cursors.encode(kind, [found[page.limit - 1]["run_id"]]) if len(found) > page.limit else None
    return page_or_csv(request, fmt, BillingRunPublic,
                       [BillingRunPublic(**r) for r in found[:page.limit]], nxt)


def _determinant(r: dict[str, Any]) -> DeterminantPublic:
    return DeterminantPublic(**{k: v for k, v in finite(r).items() if k != "day_key"})


@router.get("/runs/{run_id}/determinants", response_model=Page[DeterminantPublic],
            responses={**CSV_RESPONSE, **_ERR})
async def run_determinants(
    request: Request, run_id: Annotated[int, Path(ge=1, le=2**63 - 1)], conn: ConnDep,
    _t: ReaderToken, page: PageDep,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    fmt: FormatParam = None,
) -> Page[DeterminantPublic] | Response:
    """By customer, then first day."""
    await _billing_run(conn, run_id)
    kind = f"determinants-{run_id}"
    after = cursors.decode(kind, page.cursor, (str, int))
    found = await rows(conn, mdm_sql.API_DETERMINANTS, {
        "run": run_id, "c": customer_id, "a_c": after[0] if after else None,
        "a_day": after[1] if after else None, "n": page.limit + 1})
    nxt = None
    if len(found) > page.limit:
        last = found[page.limit - 1]
        nxt = cursors.encode(kind, [last["customer_id"], last["day_key"]])
    return page_or_csv(request, fmt, DeterminantPublic, [_determinant(r) for r in found[:page.limit]],
                       nxt)


@router.get("/customers/{customer_id}/determinants", response_model=CustomerBill, responses=_ERR)
async def customer_determinants(
    customer_id: CustomerId, conn: ConnDep, _t: ReaderToken,
    period: Annotated[str, Query(pattern=PERIOD_PATTERN, description="local month, YYYY-MM")],
) -> CustomerBill:
    """The customer's determinants in the latest billing run of the period."""
    if not await rows(conn, mdm_sql.KNOWN_CUSTOMERS, {"c": [customer_id]}):
        raise ProblemError(404, f"no customer {customer_id!r} in the archive", kind="not-found")
    latest = await one(conn, mdm_sql.LATEST_BILLING_RUN, {"period": period})
    if latest is None:
        raise ProblemError(404, f"no billing run for {period}: run `wattrail billing determinants "
                           f"--period {period}` first", kind="no-billing-run")
    run = await _billing_run(conn, int(latest["run_id"]))
    lines = [_determinant(r) for r in await rows(conn, mdm_sql.API_CUSTOMER_DETERMINANTS,
                                                 {"run": run["run_id"], "c": customer_id})]
    if not lines:
        raise ProblemError(404, f"customer {customer_id!r} is not in billing run {run['run_id']} "
                           f"of {period} (added since, or its region was left out)", kind="not-found")
    currencies = {line.currency for line in lines}
    amounts = [line.amount for line in lines]
    total = (sum(a for a in amounts if a is not None)
             if len(currencies) == 1 and None not in amounts else None)
    return CustomerBill(customer_id=customer_id, period=period, run=BillingRunPublic(**run),
                        lines=lines, amount=total,
                        currency=currencies.pop() if len(currencies) == 1 else None)
