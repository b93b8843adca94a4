"""The revenue report against TimescaleDB: a billing run beside a real analytics run over the
same local month (balance and feeder-head meters reading 5 % more than their customers)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest

from cloud.analytics.batch import analyze
from cloud.mdm.billing import run_billing
from cloud.mdm.calendar import month_period, zone
from cloud.mdm.revenue import RevenueError, revenue_report
from cloud.store import mdm_sql
from tests.integration.mdm.test_vee_billing import PERIOD, STEP, TZ, _load, _meters
from tests.integration.mdm.test_vee_billing import conn as conn


def _upstream(c: psycopg.Connection, meters: list[str]) -> None:
    """Balance meters read their customers' sum + 5 %; feeder heads the sum of their balance
    meters + 1 %: a loss the analytics must find."""
    p = month_period(PERIOD, zone(TZ))
    t0, n = int(p.start.timestamp()), p.intervals(STEP)
    reg = {}
    for i, m in enumerate(meters):
        reg[m] = 1000.0 + np.concatenate([[0.0], np.cumsum(np.full(n, 0.25 + 0.01 * i))])
    txs = c.execute("SELECT t.transformer_id, t.balance_meter_id, t.feeder_id FROM transformers t"
                    " ORDER BY 1").fetchall()
    of_tx = dict(c.execute("SELECT meter_id, transformer_id FROM meters WHERE kind = 'customer'"))
    heads = dict(c.execute("SELECT feeder_id, head_meter_id FROM feeders"))
    rows = []
    feeder_sum: dict[str, np.ndarray] = {}
    for tx, bal, feeder in txs:
        s = sum((reg[m] for m in meters if of_tx[m] == tx), np.zeros(n + 1)) * 1.05
        feeder_sum[feeder] = feeder_sum.get(feeder, np.zeros(n + 1)) + s
        rows += [(bal, t0 + k * STEP, s[k]) for k in range(n + 1)]
    for feeder, s in feeder_sum.items():
        rows += [(heads[feeder], t0 + k * STEP, s[k] * 1.01) for k in range(n + 1)]
    with c.cursor() as cur, cur.copy("COPY readings (meter_id, ts, import_wh, export_wh,"
                                     " provenance, import_batch) FROM STDIN") as cp:
        for mid, t, v in rows:
            cp.write_row((mid, datetime.fromtimestamp(t, UTC), v * 1000.0, 0.0, "imported", 1))
    c.commit()


def test_no_billing_run_says_which_command(conn: psycopg.Connection) -> None:
    with pytest.raises(RevenueError, match="wattrail billing determinants"):
        revenue_report(conn, PERIOD)


def test_revenue_report_puts_quantity_price_fee_and_loss_side_by_side(
        conn: psycopg.Connection) -> None:
    conn.execute(mdm_sql.SET_TIME_ZONE_WHERE_NONE, {"tz": TZ})
    meters = _meters(conn)
    _load(conn, meters)
    _upstream(conn, meters)
    conn.execute("UPDATE customers SET is_special = true WHERE customer_id = "
                 "(SELECT customer_id FROM meters WHERE meter_id = %s)", [meters[4]])
    conn.commit()
    bill = run_billing(conn, PERIOD)
    # the balance meters checked the estimates: the 2-day gap's check is the true energy
    assert bill.vee.checks["intervals_checked"] >= 2 * 96
    assert bill.vee.checks["median_abs_diff_kwh"] < 1e-6  # a flat profile: like-day is exact
    m1 = conn.execute("SELECT value_kwh, check_kwh FROM vee_intervals WHERE meter_id = %s"
                      " AND check_kwh IS NOT NULL", [meters[1]]).fetchall()
    assert len(m1) == 2 * 96 + 1
    assert all(c == pytest.approx(0.26, rel=1e-6) for _v, c in m1)
    # before any analytics run: losses missing, with the command that fills them
    early = revenue_report(conn, PERIOD)
    assert early.analysis_run_id is None and "wattrail analyze" in early.notes[0]
    tx_rows = [r for r in early.rows if r.level == "transformer"]
    assert all(r.ntl_kwh is None and r.revenue_at_risk_ntl is None for r in tx_rows)
    conn.commit()
    p = month_period(PERIOD, zone(TZ))
    res = analyze(conn, p.start, p.end, step_s=STEP)
    conn.commit()
    # the analytics read the post-VEE layer and say so
    assert any(f"from VEE run {bill.vee.run_id}" in n for n in res.notes)
    est = dict(conn.execute("SELECT entity_id, estimated_wh FROM analysis_loss WHERE run_id = %s"
                            " AND level = 'transformer'", [res.run_id]).fetchall())
    rep = revenue_report(conn, PERIOD)
    assert rep.billing_run_id == bill.run_id and rep.analysis_run_id is not None
    assert rep.notes == [] and rep.currency == "EUR"
    levels = {r.level for r in rep.rows}
    assert levels == {"transformer", "feeder", "region"}
    total_billed = sum(r.billed_kwh for r in rep.rows if r.level == "transformer")
    region = next(r for r in rep.rows if r.level == "region")
    assert region.billed_kwh == pytest.approx(total_billed)
    assert region.customers == 6
    for r in rep.rows:
        if r.level != "transformer":
            continue
        assert r.energy_in_kwh == pytest.approx(r.billed_kwh * 1.05, rel=2e-3)
        assert r.price_per_kwh == pytest.approx(r.amount_billed / r.billed_kwh)
        assert r.ntl_kwh is not None and r.technical_kwh is not None
        assert r.metered_out_kwh is not None
        assert r.technical_kwh + r.ntl_kwh == pytest.approx(
            r.energy_in_kwh - r.metered_out_kwh, rel=0.02)
        # the balance ran on the post-VEE layer: it sees what billing bills, and knows how much
        # of it rests on estimates
        assert r.metered_out_kwh == pytest.approx(r.billed_kwh, rel=1e-6)
        assert est[r.entity_id] / 1000 == pytest.approx(r.estimated_kwh, rel=1e-6)
        assert r.revenue_at_risk_ntl == pytest.approx(max(r.ntl_kwh, 0) * r.price_per_kwh)
        assert r.revenue_at_risk_estimates == pytest.approx(r.estimated_kwh * r.price_per_kwh)
    feeder = next(r for r in rep.rows if r.level == "feeder")
    assert feeder.revenue_at_risk_ntl == pytest.approx(sum(
        r.revenue_at_risk_ntl or 0 for r in rep.rows if r.level == "transformer"))
    assert [s["meter_id"] for s in rep.special] == [meters[4]]
    assert rep.as_dict()["rows"][0]["level"] == "region"
