"""The revenue report (engineer, auditor, admin): quantity, price, fee and loss side by side per
transformer, feeder and region for one billing period, from a billing run and the analytics
run covering the period: `cloud.mdm.revenue.revenue_report`, the same code as
`wattrail billing revenue` (its formulas are in that module's docstring and docs/mdm.md).

Missing stays missing: without an analytics run over the period, energy in, technical loss,
NTL and revenue at risk from NTL are null (not zero) and a note says which command fills them.
Billing runs and analytics runs are written once and never changed, so pinning both ids
answers the same every time.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.config import Settings
from cloud.api.deps import ConnDep, ReaderToken, SettingsDep
from cloud.api.listing import finite, one
from cloud.api.problems import ProblemError, responses
from cloud.api.routes.billing import PERIOD_PATTERN, BillingRunPublic
from cloud.api.runs import resolve_run
from cloud.mdm.revenue import RevenueError, RevenueReport, revenue_report
from cloud.store import mdm_sql

router = APIRouter(prefix="/v1/revenue", tags=["meter data management"])
_ERR = responses(401, 403, 404, 422, 429)
Level = Literal["transformer", "feeder", "region"]
RunId = Annotated[int | None, Query(ge=1, le=2**63 - 1)]


class RevenueLine(BaseModel):
    level: Level
    entity_id: str
    customers: int
    energy_in_kwh: float | None = Field(description="balance / feeder-head meters; null: no "
                                        "analytics run, or no input reading")
    metered_out_kwh: float | None = Field(description="the customers' energy as the balance saw it")
    billed_kwh: float = Field(description="Σ post-VEE import of the customers")
    export_kwh: float
    technical_kwh: float | None
    ntl_kwh: float | None = Field(description="non-technical loss")
    ntl_sigma_kwh: float | None = Field(description="1-sigma uncertainty of ntl_kwh")
    estimated_kwh: float = Field(description="billed energy resting on VEE estimates")
    estimated_share: float | None = Field(description="estimated / billed, 0..1")
    amount_billed: float = Field(description="Σ amounts of the billable rows")
    not_billable: int = Field(description="determinant rows with amount null (missing, no tariff)")
    unbilled_kwh: float = Field(description="their energy")
    price_per_kwh: float | None = Field(description="amount billed / billable kWh")
    revenue_at_risk_ntl: float | None = Field(description="max(NTL, 0) x price, per transformer; "
                                              "feeders and regions sum their transformers'")
    revenue_at_risk_estimates: float | None = Field(description="estimated kWh x price")
    completeness: float | None = Field(description="of the readings behind the balance, 0..1")
    low_confidence: bool | None


class SpecialCustomer(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    customer_id: str
    meter_id: str
    transformer_id: str
    customer_class: str | None = Field(alias="class", description="the archive's customer class")
    tariffs: list[str]
    billed_kwh: float
    estimated_share: float | None
    amount: float | None = Field(description="null: a line is not billable")
    currency: str
    max_kw: float | None
    contract_kva: float | None
    vee_status: Literal["valid", "estimated", "failed"]


class RevenuePublic(BaseModel):
    period: str = Field(description="local calendar month, YYYY-MM")
    billing_run: BillingRunPublic
    analysis_run_id: int | None = Field(description="the analytics run whose losses are used "
                                        "(default: the newest covering the period); null: none")
    currency: str | None = Field(description="null: the customers bill in several currencies")
    notes: list[str] = Field(description="what is missing and which command fills it")
    rows: list[RevenueLine] = Field(description="regions, then feeders, then transformers, by id")
    special: list[SpecialCustomer] = Field(description="large and special customers (flagged "
                                           "special, or class industrial / special)")


def _report(settings: Settings, period: str, billing_run: int, analysis_run: int | None
            ) -> RevenueReport:
    # revenue_report is sync psycopg (the CLI's code). Rather than repeat its SQL on the async
    # pool, it runs as the topology import does (routes/topology_import.py): in a worker
    # thread, on a short-lived sync connection of its own, here one read-only repeatable-read
    # transaction (all its queries see one snapshot) under the API's statement timeout.
    with psycopg.connect(settings.dsn, options=f"-c statement_timeout="
                         f"{settings.statement_timeout_ms}") as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        return revenue_report(conn, period, billing_run=billing_run, analysis_run=analysis_run)


@router.get("", response_model=RevenuePublic, responses=_ERR)
async def get_revenue(
    conn: ConnDep, _t: ReaderToken, settings: SettingsDep,
    period: Annotated[str, Query(pattern=PERIOD_PATTERN, description="local month, YYYY-MM")],
    billing_run: Annotated[RunId, Query(description="billing run id (default: the period's "
                                        "latest); it must be of `period`")] = None,
    analysis_run: Annotated[RunId, Query(description="analytics run id (default: the newest "
                                         "covering the period)")] = None,
    level: Annotated[Level | None, Query(description="only this level's rows (default: all)")] = None,
) -> RevenuePublic:
    if billing_run is None:
        latest = await one(conn, mdm_sql.LATEST_BILLING_RUN, {"period": period})
        if latest is None:
            raise ProblemError(404, f"no billing run for {period}: run `wattrail billing "
                               f"determinants --period {period}` first", kind="no-billing-run")
        billing_run = int(latest["run_id"])
    run = await one(conn, mdm_sql.BILLING_RUN, {"run": billing_run})
    if run is None:
        raise ProblemError(404, f"no billing run {billing_run}; list them at /v1/billing/runs",
                           kind="not-found")
    if run["period"] != period:
        raise ProblemError(422, f"billing run {billing_run} is of {run['period']}, not {period}",
                           kind="period-mismatch")
    if analysis_run is not None:
        await resolve_run(conn, analysis_run)  # 404 names the listing
    try:
        rep = await asyncio.to_thread(_report, settings, period, billing_run, analysis_run)
    except RevenueError as exc:  # only if the run vanished in between: they are never deleted
        raise ProblemError(404, str(exc), kind="not-found") from exc
    d: dict[str, Any] = rep.as_dict()
    rows = [RevenueLine(**finite(r)) for r in d["rows"] if level is None or r["level"] == level]
    return RevenuePublic(period=rep.period, billing_run=BillingRunPublic(**run),
                         analysis_run_id=rep.analysis_run_id, currency=rep.currency,
                         notes=rep.notes, rows=rows,
                         special=[SpecialCustomer.model_validate(finite(s)) for s in d["special"]])
