"""The tariff execution check on TimescaleDB: a residential street with one shop on a
residential tariff, an unregistered PV export, a special customer with holes in its data and a
contract overrun; each found, with evidence, and no honest household flagged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest

from cloud.mdm.calendar import local_parts, month_period, zone
from cloud.mdm.tariff_check import CheckParams, check_tariffs
from cloud.store import mdm_sql
from cloud.store.migrate import migrate
from cloud.store.topology import import_topology
from firmware_sim.grid import generate_grid
from firmware_sim.grid_file import write_grid

TZ, PERIOD, STEP = "Europe/Berlin", "2026-03", 900


@pytest.fixture
def conn(db_dsn: str, tmp_path: Path) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_dsn) as c:
        migrate(c)
        grid = generate_grid(seed=5, meters=14, feeders=1, transformers=2)
        write_grid(grid, tmp_path / "g.json")
        import_topology(c, tmp_path / "g.json")
        c.execute(mdm_sql.SET_TIME_ZONE_WHERE_NONE, {"tz": TZ})
        c.execute("UPDATE customers SET class = 'residential', is_special = false, has_pv = false,"
                  " contract_kva = NULL")
        c.commit()
        yield c


def _load(c: psycopg.Connection, meters: list[str]) -> None:
    p = month_period(PERIOD, zone(TZ))
    t0, n = int(p.start.timestamp()), p.intervals(STEP)
    ts = t0 + STEP * np.arange(n, dtype=np.int64)
    parts = local_parts(ts, zone(TZ))
    hour = parts.minute / 60
    evening = ((hour >= 18) & (hour < 22)).astype(float)
    rng = np.random.default_rng(3)
    rows = []
    for i, m in enumerate(meters):
        x = (0.05 + 0.25 * evening) * rng.uniform(0.8, 1.2) * rng.uniform(0.9, 1.1, n)
        exp = np.zeros(n)
        if i == 0:  # a shop: 6 kW on weekdays 08-18
            shop = (parts.weekday < 5) & (hour >= 8) & (hour < 18)
            x = np.where(shop, 1.5, 0.05)
        if i == 1:  # panels on the roof, not in the archive
            exp = np.where((hour >= 10) & (hour < 15), 0.3, 0.0)
        keep = np.ones(n + 1, dtype=bool)
        if i == 2:  # the special customer's meter drops a fifth of its readings
            keep[rng.choice(n + 1, (n + 1) // 5, replace=False)] = False
            keep[0] = keep[-1] = True
        reg = 1e3 + np.concatenate([[0.0], np.cumsum(x)])
        ereg = np.concatenate([[0.0], np.cumsum(exp)])
        for k in np.nonzero(keep)[0]:
            rows.append((m, datetime.fromtimestamp(t0 + int(k) * STEP, UTC), reg[k] * 1e3,
                         ereg[k] * 1e3))
    with c.cursor() as cur, cur.copy("COPY readings (meter_id, ts, import_wh, export_wh,"
                                     " provenance, import_batch) FROM STDIN") as cp:
        for r in rows:
            cp.write_row((*r, "imported", 1))
    c.commit()


def test_the_misfits_are_found_and_the_households_are_not(conn: psycopg.Connection) -> None:
    meters = [r[0] for r in conn.execute(
        "SELECT meter_id FROM meters WHERE kind = 'customer' ORDER BY meter_id")]
    cust = dict(conn.execute("SELECT meter_id, customer_id FROM meters WHERE kind = 'customer'"))
    conn.execute("UPDATE customers SET is_special = true WHERE customer_id = %s", [cust[meters[2]]])
    conn.execute("UPDATE customers SET contract_kva = 0.5 WHERE customer_id = %s",
                 [cust[meters[3]]])
    conn.commit()
    _load(conn, meters)
    res = check_tariffs(conn, PERIOD)
    found = {(f.meter_id, f.kind) for f in res.findings}
    assert found == {
        (meters[0], "nonresidential_load"), (meters[1], "pv_without_export_tariff"),
        (meters[2], "special_without_interval_data"), (meters[3], "demand_above_contract")}
    shop = next(f for f in res.findings if f.kind == "nonresidential_load")
    assert shop.evidence["max_kw"] == pytest.approx(6.0)
    assert shop.evidence["business_share"] > 0.9 > shop.evidence["residential_median_business_share"]
    assert res.findings[0].score >= res.findings[-1].score
    pv = next(f for f in res.findings if f.kind == "pv_without_export_tariff")
    assert pv.evidence["export_kwh"] > 100 and pv.evidence["tariff_id"] == "archive-flat"
    # too few residential customers to calibrate on: the indicator says so instead of guessing
    small = check_tariffs(conn, PERIOD, params=CheckParams(min_population=50))
    assert "nonresidential_load" in small.not_run
    assert all(f.kind != "nonresidential_load" for f in small.findings)


def test_the_cli_ranks_them(conn: psycopg.Connection, db_dsn: str) -> None:
    import json

    from typer.testing import CliRunner

    from wattrail.cli import app

    meters = [r[0] for r in conn.execute(
        "SELECT meter_id FROM meters WHERE kind = 'customer' ORDER BY meter_id")]
    _load(conn, meters)
    res = CliRunner().invoke(app, ["billing", "tariff-check", "--period", PERIOD, "--json",
                                   "--dsn", db_dsn])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    kinds = {f["kind"] for f in doc["findings"]}
    assert kinds == {"nonresidential_load", "pv_without_export_tariff"}
    assert doc["customers"] == 14
