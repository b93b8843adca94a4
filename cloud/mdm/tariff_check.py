"""Tariff execution check: customers whose tariff does not fit what they do, ranked, with the
evidence. Calibrated on the population being checked (never on fixed national figures).

Per customer over the local month, from its raw interval energy x (NaN = missing), step h hours:

    max_kw          max x / h;  load_factor = mean x / max x
    business_share  Σ x on weekdays 08:00-18:00 local / Σ x  (a household uses ~25-35 %)
    export_kwh      Σ export;   missing_share = missing intervals / intervals

Findings (score ≥ 1 means flagged; the list is sorted by score):

    nonresidential_load  on a residential tariff, and robust z of log(max_kw) or of
                         business_share against the residential customers ≥ z_limit (3.5):
                         z = (v - median) / (1.4826 · MAD); score = max z / z_limit. Needs at
                         least `min_population` residential customers, else it does not run.
    demand_above_contract  max_kw > contract_kva (kW can never exceed kVA); score = ratio
    pv_without_export_tariff  has PV or exported > 1 kWh, and the tariff credits no export;
                         score = 1 + log10(1 + export kWh)
    special_without_interval_data  flagged special (or class industrial/special) with a step
                         coarser than 15 min or more than 10 % of intervals missing; score =
                         1 + missing share

The tariff is the customer's assignment in force on the month's last day, or the archive's
flat tariff (class = the customer's class) when it has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import psycopg

from cloud.mdm.billing import pieces
from cloud.mdm.calendar import days_of, month_period, zone
from cloud.mdm.fetch import fetch_assignments, fetch_customers, fetch_intervals, fetch_tariffs


@dataclass(frozen=True)
class CheckParams:
    z_limit: float = 3.5
    min_population: int = 8
    export_min_kwh: float = 1.0
    missing_limit: float = 0.10


@dataclass
class Finding:
    customer_id: str
    meter_id: str
    kind: str
    score: float
    evidence: dict[str, Any]


@dataclass
class TariffCheck:
    period: str
    customers: int
    findings: list[Finding]
    not_run: dict[str, str] = field(default_factory=dict)


def _robust_z(v: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, float, float]:
    med = float(np.nanmedian(ref))
    mad = float(np.nanmedian(np.abs(ref - med)))
    scale = 1.4826 * max(mad, 0.05 * abs(med), 1e-6)
    return (v - med) / scale, med, scale


def check_tariffs(conn: psycopg.Connection[Any], period: str, *, step_s: int = 900,
                  regions: Sequence[str] | None = None, default_zone: str | None = None,
                  params: CheckParams | None = None, chunk_meters: int = 5000) -> TariffCheck:
    p = params or CheckParams()
    cust = fetch_customers(conn, regions, default_zone=default_zone)
    tariffs = fetch_tariffs(conn)
    assign = fetch_assignments(conn, cust.customer_ids)
    n = len(cust)
    feats = {k: np.full(n, np.nan) for k in ("max_kw", "load_factor", "business_share",
                                             "export_kwh", "missing_share")}
    tariff_class = list(cust.classes)
    tariff_id = ["archive-flat"] * n
    exports = np.zeros(n, dtype=bool)  # the tariff credits export
    for z in sorted(set(cust.zones)):
        tz = zone(z)
        per = month_period(period, tz)
        last: list[date] = [d.first_day for d in days_of(per, tz)][-1:]
        members = [i for i, cz in enumerate(cust.zones) if cz == z]
        for i in members:
            plan = pieces(assign.get(cust.customer_ids[i]), tariffs, last)
            t = plan[0][0] if plan else None
            if t is not None:
                tariff_class[i], tariff_id[i] = t.class_, t.tariff_id
                exports[i] = t.export_price_per_kwh is not None
        for lo in range(0, len(members), chunk_meters):
            idx = members[lo:lo + chunk_meters]
            iv = fetch_intervals(conn, [cust.meter_ids[i] for i in idx], per.start, per.end,
                                 step_s, z)
            x = np.where(iv.series.import_kwh < 0, np.nan, iv.series.import_kwh)
            hours = step_s / 3600
            parts = iv.series.parts
            business = ((parts.weekday < 5) & (parts.minute >= 8 * 60)
                        & (parts.minute < 18 * 60))
            with np.errstate(all="ignore"):
                total = np.nansum(x, axis=1)
                mx = np.nanmax(np.where(np.isnan(x), -np.inf, x), axis=1)
                mx = np.where(np.isfinite(mx), mx, np.nan)
                feats["max_kw"][idx] = mx / hours
                feats["load_factor"][idx] = np.nanmean(x, axis=1) / mx
                feats["business_share"][idx] = np.where(
                    total > 0, np.nansum(x[:, business], axis=1) / total, np.nan)
            feats["export_kwh"][idx] = np.nansum(iv.export_kwh, axis=1)
            feats["missing_share"][idx] = np.isnan(iv.series.import_kwh).mean(axis=1)
    findings: list[Finding] = []
    not_run: dict[str, str] = {}

    def ev(i: int, **extra: Any) -> dict[str, Any]:
        base = {k: (None if np.isnan(v[i]) else round(float(v[i]), 4)) for k, v in feats.items()}
        return {**base, "tariff_id": tariff_id[i], "tariff_class": tariff_class[i], **extra}

    res = np.array([c == "residential" for c in tariff_class])
    if res.sum() >= p.min_population:
        zk, med_k, _ = _robust_z(np.log(feats["max_kw"]), np.log(feats["max_kw"][res]))
        zb, med_b, _ = _robust_z(feats["business_share"], feats["business_share"][res])
        for j in np.nonzero(res)[0].tolist():
            i = int(j)
            z = max(np.nan_to_num(zk[i], nan=-np.inf), np.nan_to_num(zb[i], nan=-np.inf))
            if z >= p.z_limit:
                findings.append(Finding(cust.customer_ids[i], cust.meter_ids[i],
                                        "nonresidential_load", float(z / p.z_limit), ev(
                                            i, z_max_kw=round(float(zk[i]), 2),
                                            z_business_share=round(float(zb[i]), 2),
                                            residential_median_max_kw=round(float(np.exp(med_k)), 3),
                                            residential_median_business_share=round(med_b, 3))))
    else:
        not_run["nonresidential_load"] = (f"needs {p.min_population} customers on residential "
                                          f"tariffs to calibrate on; the archive has {int(res.sum())}")
    for i in range(n):
        c_kva = cust.contract_kva[i]
        if not np.isnan(c_kva) and feats["max_kw"][i] > c_kva:
            findings.append(Finding(cust.customer_ids[i], cust.meter_ids[i],
                                    "demand_above_contract", float(feats["max_kw"][i] / c_kva),
                                    ev(i, contract_kva=float(c_kva))))
        exported = feats["export_kwh"][i] > p.export_min_kwh
        if (cust.has_pv[i] or exported) and not exports[i]:
            e = float(np.nan_to_num(feats["export_kwh"][i]))
            findings.append(Finding(cust.customer_ids[i], cust.meter_ids[i],
                                    "pv_without_export_tariff", 1 + float(np.log10(1 + e)),
                                    ev(i, has_pv=bool(cust.has_pv[i]))))
        special = cust.is_special[i] or cust.classes[i] in ("industrial", "special")
        miss = feats["missing_share"][i]
        if special and (step_s > 900 or miss > p.missing_limit):
            findings.append(Finding(cust.customer_ids[i], cust.meter_ids[i],
                                    "special_without_interval_data", 1 + float(miss),
                                    ev(i, step_s=step_s)))
    findings.sort(key=lambda f: (-f.score, f.customer_id, f.kind))
    return TariffCheck(period, n, findings, not_run)
