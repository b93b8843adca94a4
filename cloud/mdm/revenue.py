"""The revenue report: quantity, price, fee and loss side by side, per transformer, feeder and
region for one billing period, from a billing run and the analytics run covering the period.

Per entity (sums over its customers' determinant rows; kWh):

    energy_in        the balance meter (transformer) or feeder-head meters (analysis_loss)
    metered_out      the customers' energy as the analytics' balance saw it (analysis_loss
                     .energy_out): post-VEE where a VEE run covered the period, else the raw
                     readings (then billed - metered_out is the estimated energy it missed)
    billed           Σ post-VEE import of its customers; export separately
    technical, ntl   the analytics' energy balance (analysis_loss), ntl ± 1 sigma
    estimated        Σ billed · estimated share: energy resting on VEE estimates
    amount_billed    Σ amounts of the billable rows (NULL rows are counted in not_billable, their
                     energy in unbilled)
    price            amount_billed / billed kWh of the billable rows: the effective price of
                     the entity's applicable tariffs
    at_risk_ntl      max(ntl, 0) · price, per transformer (feeders and regions: the sum of their
                     transformers', each at its own price)
    at_risk_estimates  estimated · price: revenue a customer could dispute

When no analytics run covers the period, energy_in, technical, ntl and at_risk_ntl are missing
(not zero) and a note says which command fills them. Large and special customers (flagged
special, or class industrial/special) are listed separately with their own figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from cloud.store import revenue_sql


class RevenueError(ValueError):
    """No billing run to report on; the message says which command makes one."""


@dataclass
class RevenueRow:
    level: str
    entity_id: str
    customers: int = 0
    energy_in_kwh: float | None = None
    metered_out_kwh: float | None = None
    billed_kwh: float = 0.0
    export_kwh: float = 0.0
    technical_kwh: float | None = None
    ntl_kwh: float | None = None
    ntl_sigma_kwh: float | None = None
    estimated_kwh: float = 0.0
    estimated_share: float | None = None
    amount_billed: float = 0.0
    not_billable: int = 0
    unbilled_kwh: float = 0.0
    price_per_kwh: float | None = None
    revenue_at_risk_ntl: float | None = None
    revenue_at_risk_estimates: float | None = None
    completeness: float | None = None
    low_confidence: bool | None = None
    _billable_kwh: float = field(default=0.0, repr=False)


@dataclass
class RevenueReport:
    billing_run_id: int
    period: str
    analysis_run_id: int | None
    currency: str | None
    notes: list[str]
    rows: list[RevenueRow]
    special: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        rows = [{k: v for k, v in asdict(r).items() if not k.startswith("_")} for r in self.rows]
        return {"billing_run_id": self.billing_run_id, "period": self.period,
                "analysis_run_id": self.analysis_run_id, "currency": self.currency,
                "notes": self.notes, "rows": rows, "special": self.special}


def _billing_run(conn: psycopg.Connection[Any], period: str | None, run: int | None) -> int:
    if run is not None:
        return run
    r = conn.execute(revenue_sql.LATEST_BILLING_RUN_OF, {"period": period}).fetchone()
    if r is None:
        raise RevenueError(f"no billing run for {period}: run `wattrail billing determinants "
                           f"--period {period}` first")
    return int(r[0])


def revenue_report(conn: psycopg.Connection[Any], period: str | None = None, *,
                   billing_run: int | None = None, analysis_run: int | None = None
                   ) -> RevenueReport:
    run = _billing_run(conn, period, billing_run)
    head = conn.execute(revenue_sql.BILLING_RUN_PERIOD, {"run": run}).fetchone()
    if head is None:
        raise RevenueError(f"no billing run {run}")
    _, label, start, end, step = head
    notes: list[str] = []
    if analysis_run is None:
        a = conn.execute(revenue_sql.ANALYSIS_RUN_COVERING,
                         {"start": start, "end": end, "step": step}).fetchone()
        analysis_run = None if a is None else int(a[0])
    if analysis_run is None:
        notes.append(f"no analytics run covers {label} ({start:%Y-%m-%d %H:%M} .. "
                     f"{end:%Y-%m-%d %H:%M} UTC): energy in, losses and revenue at risk from NTL "
                     f"are missing; run `wattrail analyze --from {start:%Y-%m-%dT%H:%M}Z "
                     f"--to {end:%Y-%m-%dT%H:%M}Z`")
    dets = conn.execute(revenue_sql.DETERMINANTS_IN_GRID, {"run": run}).fetchall()
    loss = {} if analysis_run is None else {
        (lvl, e): rest for lvl, e, *rest in conn.execute(revenue_sql.LOSS_OF_RUN,
                                                        {"run": analysis_run})}
    currencies = sorted({d[11] for d in dets})
    if len(currencies) > 1:
        notes.append(f"customers bill in {currencies}: amounts and prices are summed per "
                     "entity only where one currency is used")
    rows: dict[tuple[str, str], RevenueRow] = {}
    parents: dict[str, tuple[str, str]] = {}
    per_customer: dict[str, dict[str, Any]] = defaultdict(lambda: {"kwh": 0.0, "amount": 0.0,
                                                                   "billable": True})
    for d in dets:
        (cust, meter, tariff, total, export, share, amount, _miss, _n, status, max_kw, cur,
         tx, feeder, region, special, cls, contract, _pv, _by, _tf, _w) = d
        parents[tx] = (feeder, region)
        for key in (("transformer", tx), ("feeder", feeder), ("region", region)):
            r = rows.setdefault(key, RevenueRow(*key))
            r.billed_kwh += total
            r.export_kwh += export or 0.0
            r.estimated_kwh += total * (share or 0.0)
            if amount is None:
                r.not_billable += 1
                r.unbilled_kwh += total
            else:
                r.amount_billed += amount
                r._billable_kwh += total
        pc = per_customer[cust]
        pc.update(meter=meter, transformer_id=tx, cls=cls, special=special, contract_kva=contract,
                  currency=cur, status=max(pc.get("status", "valid"), status,
                                           key=("valid", "estimated", "failed").index))
        pc["kwh"] += total
        pc["est"] = pc.get("est", 0.0) + total * (share or 0.0)
        pc["max_kw"] = max(pc.get("max_kw") or 0.0, max_kw or 0.0)
        pc["tariffs"] = sorted({*pc.get("tariffs", []), tariff})
        if amount is None:
            pc["billable"] = False
        else:
            pc["amount"] += amount
    counts: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d in dets:
        for key in (("transformer", d[12]), ("feeder", d[13]), ("region", d[14])):
            counts[key].add(d[0])
    for key, r in rows.items():
        r.customers = len(counts[key])
        r.estimated_share = r.estimated_kwh / r.billed_kwh if r.billed_kwh > 0 else None
        r.price_per_kwh = r.amount_billed / r._billable_kwh if r._billable_kwh > 0 else None
        if r.price_per_kwh is not None:
            r.revenue_at_risk_estimates = r.estimated_kwh * r.price_per_kwh
        lo = loss.get(key)
        if lo is not None:
            e_in, e_out, tech, ntl, sig, comp, low = lo
            r.energy_in_kwh = None if e_in is None else e_in / 1000
            r.metered_out_kwh = None if e_out is None else e_out / 1000
            r.technical_kwh = None if tech is None else tech / 1000
            r.ntl_kwh = None if ntl is None or math.isnan(ntl) else ntl / 1000
            r.ntl_sigma_kwh = None if sig is None or math.isnan(sig) else sig / 1000
            r.completeness, r.low_confidence = comp, low
    for (level, _e), r in rows.items():
        if level == "transformer" and r.ntl_kwh is not None and r.price_per_kwh is not None:
            r.revenue_at_risk_ntl = max(r.ntl_kwh, 0.0) * r.price_per_kwh
    for (level, entity), r in rows.items():
        if level == "transformer" or analysis_run is None:
            continue
        txs = [rows[("transformer", tx)] for tx, (f, reg) in parents.items()
               if (f if level == "feeder" else reg) == entity]
        risks = [t.revenue_at_risk_ntl for t in txs if t.revenue_at_risk_ntl is not None]
        r.revenue_at_risk_ntl = sum(risks) if risks else None
    special = [{"customer_id": c, "meter_id": v["meter"], "transformer_id": v["transformer_id"],
                "class": v["cls"], "tariffs": v["tariffs"], "billed_kwh": v["kwh"],
                "estimated_share": v["est"] / v["kwh"] if v["kwh"] > 0 else None,
                "amount": v["amount"] if v["billable"] else None, "currency": v["currency"],
                "max_kw": v["max_kw"], "contract_kva": v["contract_kva"],
                "vee_status": v["status"]}
               for c, v in sorted(per_customer.items())
               if v["special"] or v["cls"] in ("industrial", "special")]
    order = {"region": 0, "feeder": 1, "transformer": 2}
    out = sorted(rows.values(), key=lambda r: (order[r.level], r.entity_id))
    return RevenueReport(run, label, analysis_run, currencies[0] if len(currencies) == 1 else None,
                         notes, out, special)
