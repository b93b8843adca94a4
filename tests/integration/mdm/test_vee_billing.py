"""VEE and billing determinants against TimescaleDB: a small grid in Europe/Berlin, a month of
15-minute register readings with faults put in by hand, then `run_billing` end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest

from cloud.mdm.billing import FLAT_ID, NO_TARIFF, run_billing
from cloud.mdm.calendar import month_period, zone
from cloud.mdm.estimation import Method
from cloud.mdm.fetch import MdmInputError
from cloud.mdm.validation import Rule
from cloud.store import mdm_sql
from cloud.store.migrate import migrate
from cloud.store.topology import import_topology
from firmware_sim.grid import generate_grid
from firmware_sim.grid_file import write_grid
from protocols.reading import Quality

TZ = "Europe/Berlin"
PERIOD = "2026-03"  # 31 days, one of them 23 hours long: 2,972 quarter hours
STEP = 900
TARIFF = {
    "tariff_id": "RES-TOU", "class": "residential", "currency": "EUR",
    "valid_from": "2026-01-01",
    "periods": [{"name": "peak", "day_types": ["weekday"], "from": "17:00", "to": "21:00"}],
    "default_period": "offpeak", "energy_price": {"peak": 0.40, "offpeak": 0.20},
    "demand_charge_per_kw": 2.0,
}


@pytest.fixture
def conn(db_dsn: str, tmp_path: Path) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_dsn) as c:
        migrate(c)
        grid = generate_grid(seed=11, meters=6, feeders=1, transformers=2)
        path = tmp_path / "grid.json"
        write_grid(grid, path)
        import_topology(c, path)
        c.commit()
        yield c


def _meters(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT meter_id FROM meters WHERE kind = 'customer' ORDER BY meter_id")]


def _load(conn: psycopg.Connection, meters: list[str]) -> dict[str, np.ndarray]:
    """Register readings at every quarter hour of the month (+ the closing one): a flat
    0.25 kWh per interval, with faults put in per meter; returns each meter's true intervals."""
    p = month_period(PERIOD, zone(TZ))
    t0, n = int(p.start.timestamp()), p.intervals(STEP)
    truth = {}
    rows = []
    for i, m in enumerate(meters):
        x = np.full(n, 0.25 + 0.01 * i)
        truth[m] = x.copy()
        reg = np.concatenate([[1000.0], 1000.0 + np.cumsum(x)])
        skip: set[int] = set()
        quality = {}
        if i == 0:
            skip = {100}  # one missing reading: two intervals, interpolated
        if i == 1:
            skip = set(range(500, 500 + 96 * 2))  # two days missing: like-day
        if i == 2:
            quality[700] = int(Quality.STALE)  # a register repeated with a new timestamp
        for k in range(n + 1):
            if k in skip:
                continue
            r = reg[k] if quality.get(k) != int(Quality.STALE) else reg[k - 1]
            rows.append((m, datetime.fromtimestamp(t0 + k * STEP, UTC), r * 1000.0,
                         0.0, quality.get(k, 0)))
    with conn.cursor() as cur, cur.copy(
            "COPY readings (meter_id, ts, import_wh, export_wh, quality, provenance,"
            " import_batch) FROM STDIN") as cp:
        for r in rows:
            cp.write_row((*r, "imported", 1))
    conn.commit()
    return truth


def test_a_region_without_a_time_zone_is_refused_with_the_fix(conn: psycopg.Connection) -> None:
    with pytest.raises(MdmInputError, match="time-zone"):
        run_billing(conn, PERIOD)


def test_vee_and_determinants_end_to_end(conn: psycopg.Connection) -> None:
    conn.execute(mdm_sql.SET_TIME_ZONE_WHERE_NONE, {"tz": TZ})
    meters = _meters(conn)
    truth = _load(conn, meters)
    customers = dict(conn.execute("SELECT meter_id, customer_id FROM meters WHERE kind = "
                                  "'customer'").fetchall())
    # the first customer on a TOU tariff, the rest on the archive's flat price
    conn.execute(mdm_sql.UPSERT_TARIFF, {"tariff_id": "RES-TOU", "valid_from": date(2026, 1, 1),
                                         "valid_to": None, "class": "residential",
                                         "currency": "EUR", "doc": json.dumps(TARIFF)})
    conn.execute(mdm_sql.UPSERT_ASSIGNMENT, {"customer_id": customers[meters[0]],
                                             "tariff_id": "RES-TOU",
                                             "valid_from": date(2026, 1, 1), "valid_to": None})
    conn.commit()
    seen: list[tuple[int, int]] = []
    res = run_billing(conn, PERIOD, chunk_meters=4, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (6, 6) and len(seen) == 2  # two chunks
    vee = res.vee
    # a stale register is blanked, so its two intervals are missing too
    assert vee.rules["missing"]["failed"] == 2 + (2 * 96 + 1) + 2 and vee.rules["stale"]["failed"] == 2
    assert vee.rules["gap"]["failed"] == 2 * 96 + 1
    assert vee.rules["conflict"]["ran"] is not False  # stored rows carry the flag
    assert vee.days["valid"] + vee.days["estimated"] + vee.days["failed"] == 6 * 31
    # meter 0: the two intervals around the missing reading, interpolated from the registers
    hist = conn.execute(mdm_sql.VEE_HISTORY, {"m": meters[0], "lo": datetime(2026, 3, 1, tzinfo=UTC),
                                               "hi": datetime(2026, 4, 1, tzinfo=UTC)}).fetchall()
    assert [(r[7], r[4]) for r in hist] == [(Method.LINEAR, None)] * 2
    assert sum(r[5] for r in hist) == pytest.approx(2 * 0.25)
    assert all(r[6] & Rule.MISSING for r in hist)
    # meter 1: two days from like days; meter 2: the stale pair replaced
    m1 = conn.execute(mdm_sql.VEE_HISTORY, {"m": meters[1], "lo": datetime(2026, 3, 1, tzinfo=UTC),
                                             "hi": datetime(2026, 4, 1, tzinfo=UTC)}).fetchall()
    assert {r[7] for r in m1} <= {Method.LIKE_DAY_SCALED, Method.LIKE_DAY, Method.LINEAR}
    assert len(m1) == 2 * 96 + 1
    det = {r[0]: r for r in conn.execute(mdm_sql.DETERMINANTS, {"run": res.run_id})}
    assert len(det) == 6
    n = 31 * 96 - 4
    for m in meters:
        row = det[customers[m]]
        assert row[15] == n  # intervals in the local month: a 23-hour day in it
        assert row[8] == pytest.approx(truth[m].sum(), rel=1e-9)  # post-VEE = register diff
        assert row[16] == 0 and row[17] is not None
    tou = det[customers[meters[0]]]
    assert tou[2] == "RES-TOU" and set(tou[7]) == {"peak", "offpeak"}
    assert tou[17] == pytest.approx(0.40 * tou[7]["peak"] + 0.20 * tou[7]["offpeak"]
                                    + 2.0 * tou[11])
    assert tou[11] == pytest.approx(1.0)  # 0.25 kWh per quarter hour is 1 kW
    assert {det[customers[m]][2] for m in meters[1:]} == {FLAT_ID}
    assert det[customers[meters[0]]][18] == "estimated" and det[customers[meters[5]]][18] == "valid"
    assert 0 < det[customers[meters[1]]][14] < 0.1  # two days of 31 rest on estimates


def test_days_without_a_tariff_are_reported_not_billed(conn: psycopg.Connection) -> None:
    conn.execute(mdm_sql.SET_TIME_ZONE_WHERE_NONE, {"tz": TZ})
    meters = _meters(conn)
    _load(conn, meters)
    cust = conn.execute("SELECT customer_id FROM meters WHERE meter_id = %s",
                        [meters[3]]).fetchone()[0]
    conn.execute(mdm_sql.UPSERT_TARIFF, {"tariff_id": "RES-TOU", "valid_from": date(2026, 1, 1),
                                         "valid_to": None, "class": "residential",
                                         "currency": "EUR", "doc": json.dumps(TARIFF)})
    conn.execute(mdm_sql.UPSERT_ASSIGNMENT, {"customer_id": cust, "tariff_id": "RES-TOU",
                                             "valid_from": date(2026, 3, 11), "valid_to": None})
    conn.commit()
    res = run_billing(conn, PERIOD)
    rows = [r for r in conn.execute(mdm_sql.DETERMINANTS, {"run": res.run_id}) if r[0] == cust]
    assert [(r[2], r[4], r[5]) for r in rows] == [
        (NO_TARIFF, date(2026, 3, 1), date(2026, 3, 10)), ("RES-TOU", date(2026, 3, 11), date(2026, 3, 31))]
    assert rows[0][17] is None and rows[0][8] > 0 and rows[1][17] is not None


def test_the_cli_imports_tariffs_runs_billing_and_exports(conn: psycopg.Connection, db_dsn: str,
                                                          tmp_path: Path) -> None:
    import csv

    from typer.testing import CliRunner

    from wattrail.cli import app

    run = CliRunner()
    meters = _meters(conn)
    _load(conn, meters)
    cust = conn.execute("SELECT customer_id FROM meters WHERE meter_id = %s",
                        [meters[0]]).fetchone()[0]
    bad = run.invoke(app, ["topology", "time-zone", "--all", "Mars/Olympus", "--dsn", db_dsn])
    assert bad.exit_code == 1 and "IANA" in bad.output
    ok = run.invoke(app, ["topology", "time-zone", "--all", TZ, "--dsn", db_dsn])
    assert ok.exit_code == 0, ok.output
    (tmp_path / "t.json").write_text(json.dumps([TARIFF]))
    (tmp_path / "a.csv").write_text(f"customer_id,tariff_id,valid_from\n{cust},RES-TOU,2026-01-01\n")
    (tmp_path / "bad.csv").write_text("customer_id,tariff_id,valid_from\nnobody,RES-TOU,2026-01-01\n")
    res = run.invoke(app, ["tariffs", "import", str(tmp_path / "t.json"), "--assign",
                           str(tmp_path / "bad.csv"), "--dsn", db_dsn])
    assert res.exit_code == 1 and "nothing was imported" in res.output
    assert conn.execute("SELECT count(*) FROM tariffs").fetchone()[0] == 0
    res = run.invoke(app, ["tariffs", "import", str(tmp_path / "t.json"), "--assign",
                           str(tmp_path / "a.csv"), "--dsn", db_dsn])
    assert res.exit_code == 0, res.output
    res = run.invoke(app, ["billing", "determinants", "--period", "2026-3", "--dsn", db_dsn])
    assert res.exit_code == 1 and "YYYY-MM" in res.output
    res = run.invoke(app, ["billing", "determinants", "--period", PERIOD, "--dsn", db_dsn])
    assert res.exit_code == 0, res.output
    assert "6 determinant rows, 6 billable" in res.output and "of 6 meters" in res.output
    out = tmp_path / "d.csv"
    res = run.invoke(app, ["billing", "export", "--period", PERIOD, "-o", str(out), "--dsn", db_dsn])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 6 and {"kwh_peak", "kwh_offpeak", "kwh_all-day"} <= set(rows[0])
    mine = next(r for r in rows if r["customer_id"] == cust)
    assert mine["tariff_id"] == "RES-TOU" and mine["kwh_all-day"] == ""  # not on that tariff
    rev = run.invoke(app, ["billing", "revenue", "--period", PERIOD, "--dsn", db_dsn])
    assert rev.exit_code == 0, rev.output
    assert "wattrail analyze" in rev.output  # no analytics run covers the month yet
    bad = run.invoke(app, ["billing", "revenue", "--period", PERIOD, "--level", "house",
                           "--dsn", db_dsn])
    assert bad.exit_code == 1 and "transformer, feeder or region" in bad.output
    status = run.invoke(app, ["vee", "status", "--meter", meters[0], "--dsn", db_dsn])
    assert status.exit_code == 0 and "estimated" in status.output
