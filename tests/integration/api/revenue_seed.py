"""A billed and analysed month for the revenue route and the dashboard's MDM pages, built as
tests/integration/mdm/test_revenue.py builds it (its grid, readings and faults, from
test_vee_billing's helpers): 6 customers on 2 transformers in Europe/Berlin, 2026-03 at 15 min,
meter 0 missing one reading (two intervals interpolated, LINEAR), meter 1 two days (LIKE_DAY),
meter 2 a stale register; balance meters read their customers + 5 %, the feeder head + 1 %.
One difference: the first transformer's balance meter sends nothing, so its energy in, losses
and revenue at risk from NTL are missing (not zero) in the report, while the other's are known.

`build` imports, loads and bills (returning what a test needs to compute the report's numbers);
`analyse` runs the real analytics batch over the month afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from cloud.analytics.batch import analyze
from cloud.mdm.billing import run_billing
from cloud.mdm.calendar import month_period, zone
from cloud.store import mdm_sql
from cloud.store.migrate import migrate
from cloud.store.topology import import_topology
from firmware_sim.grid import generate_grid
from firmware_sim.grid_file import write_grid
from tests.integration.mdm.test_vee_billing import PERIOD, STEP, TZ, _load, _meters

INTERVALS = 31 * 96 - 4  # the local month 2026-03 (one 23-hour day)
__all__ = ["INTERVALS", "PERIOD", "STEP", "TZ", "RevenueData", "analyse", "build"]


@dataclass
class RevenueData:
    meters: list[str]  # customer meters by id; meter i bills (0.25 + 0.01 i) kWh per interval
    transformer_of: dict[str, str]  # customer meter -> transformer
    transformers: list[str]  # by id
    feeder: str
    region: str
    dark: str  # the transformer whose balance meter sent nothing
    special_meter: str
    vee_run_id: int
    billing_run_id: int
    analysis_run_id: int | None = None

    def billed_kwh(self, transformer: str) -> float:
        return sum((0.25 + 0.01 * i) * INTERVALS for i, m in enumerate(self.meters)
                   if self.transformer_of[m] == transformer)


def _upstream(c: psycopg.Connection[Any], meters: list[str], dark: str) -> None:
    p = month_period(PERIOD, zone(TZ))
    t0, n = int(p.start.timestamp()), p.intervals(STEP)
    reg = {m: 1000.0 + np.concatenate([[0.0], np.cumsum(np.full(n, 0.25 + 0.01 * i))])
           for i, m in enumerate(meters)}
    of_tx = dict(c.execute("SELECT meter_id, transformer_id FROM meters WHERE kind = 'customer'"))
    heads = dict(c.execute("SELECT feeder_id, head_meter_id FROM feeders"))
    rows: list[tuple[str, int, float]] = []
    feeder_sum: dict[str, np.ndarray] = {}
    for tx, bal, feeder in c.execute("SELECT transformer_id, balance_meter_id, feeder_id FROM "
                                     "transformers ORDER BY 1").fetchall():
        s = sum((reg[m] for m in meters if of_tx[m] == tx), np.zeros(n + 1)) * 1.05
        feeder_sum[feeder] = feeder_sum.get(feeder, np.zeros(n + 1)) + s
        if tx != dark:
            rows += [(bal, t0 + k * STEP, s[k]) for k in range(n + 1)]
    for feeder, s in feeder_sum.items():
        rows += [(heads[feeder], t0 + k * STEP, s[k] * 1.01) for k in range(n + 1)]
    with c.cursor() as cur, cur.copy("COPY readings (meter_id, ts, import_wh, export_wh,"
                                     " provenance, import_batch) FROM STDIN") as cp:
        for mid, t, v in rows:
            cp.write_row((mid, datetime.fromtimestamp(t, UTC), v * 1000.0, 0.0, "imported", 1))
    c.commit()


def build(conn: psycopg.Connection[Any], tmp: Path) -> RevenueData:
    """`conn` is not autocommit (the helpers commit)."""
    migrate(conn)
    write_grid(generate_grid(seed=11, meters=6, feeders=1, transformers=2), tmp / "grid.json")
    import_topology(conn, tmp / "grid.json")
    conn.execute(mdm_sql.SET_TIME_ZONE_WHERE_NONE, {"tz": TZ})
    conn.commit()
    meters = _meters(conn)
    of_tx = {str(m): str(t) for m, t in conn.execute(
        "SELECT meter_id, transformer_id FROM meters WHERE kind = 'customer'")}
    txs = sorted(set(of_tx.values()))
    feeder, region = conn.execute("SELECT f.feeder_id, f.region_id FROM feeders f").fetchall()[0]
    _load(conn, meters)
    _upstream(conn, meters, txs[0])
    conn.execute("UPDATE customers SET is_special = true WHERE customer_id = "
                 "(SELECT customer_id FROM meters WHERE meter_id = %s)", [meters[4]])
    conn.commit()
    bill = run_billing(conn, PERIOD)
    conn.commit()
    return RevenueData(meters=meters, transformer_of=of_tx, transformers=txs, feeder=str(feeder),
                       region=str(region), dark=txs[0], special_meter=meters[4],
                       vee_run_id=bill.vee.run_id, billing_run_id=bill.run_id)


def analyse(conn: psycopg.Connection[Any], data: RevenueData) -> None:
    p = month_period(PERIOD, zone(TZ))
    # a dark transformer's all-NaN days once made numpy warn in observer.change_days, which
    # pytest turns into an error: no filter here, so the fix stays proven
    data.analysis_run_id = analyze(conn, p.start, p.end, step_s=STEP).run_id
    conn.commit()
