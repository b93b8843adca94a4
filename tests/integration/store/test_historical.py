"""Historical CSV import: registers built from interval energy, provenance 'imported', every
error class reported with its line and nothing committed, re-import a no-op, both write paths
(direct COPY and staging + ON CONFLICT) give the same rows, rollups match the file."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from cloud.store.errors import ReadingsValidationError
from cloud.store.readings_import.load import import_readings_csv
from cloud.store.rollups import refresh_rollups
from firmware_sim.grid import Grid

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)
Q = timedelta(minutes=15)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _intervals(meters: list[str], n: int, start: int = 0, seed: int = 1) -> list[tuple[str, int, float]]:
    rng = random.Random(seed)
    return [(m, k, round(rng.uniform(0, 400), 1)) for m in meters for k in range(start, start + n)]


def _write(path: Path, rows: list[tuple[str, int, float]], *, shuffle: bool = False) -> Path:
    lines = [f"{m},{_iso(T0 + k * Q)},{_iso(T0 + (k + 1) * Q)},{wh},{wh / 10},230.5"
             for m, k, wh in rows]
    if shuffle:
        random.Random(3).shuffle(lines)
    header = "meter_id,interval_start,interval_end,import_wh,export_wh,v_l1"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def _count(c: psycopg.Connection, sql: str) -> int:
    row = c.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _meters(grid: Grid, n: int = 3) -> list[str]:
    return [c.meter_id for c in grid.customers[:n]]


def test_happy_path_builds_registers_with_provenance(archive: psycopg.Connection, grid: Grid,
                                                     tmp_path: Path) -> None:
    meters = _meters(grid)
    rows = _intervals(meters, 8)
    res = import_readings_csv(archive, _write(tmp_path / "h.csv", rows))
    assert (res.rows, res.inserted, res.path, res.already_imported) == (24, 27, "direct", False)
    assert res.first_ts == T0 and res.last_ts == T0 + 8 * Q
    got = archive.execute("SELECT ts, import_wh, export_wh, v_l1 FROM readings WHERE meter_id = %s"
                          " ORDER BY ts", [meters[1]]).fetchall()
    deltas = [wh for m, _, wh in rows if m == meters[1]]
    assert got[0] == (T0, 0.0, 0.0, None)  # start of the series: registers only
    running = 0.0
    for (ts, imp, exp, v), (k, wh) in zip(got[1:], enumerate(deltas), strict=True):
        running_mwh = round(running * 1000) + round(wh * 1000)
        running = running_mwh / 1000
        assert ts == T0 + (k + 1) * Q and imp == pytest.approx(running, abs=1e-9) and v == 230.5
        assert exp == pytest.approx(running / 10, abs=1e-3)
    prov = archive.execute("SELECT provenance, count(*), bool_and(agent_id IS NULL AND seq IS NULL),"
                           " min(import_batch), max(import_batch), max(quality) FROM readings"
                           " GROUP BY 1").fetchall()
    assert prov == [("imported", 27, True, res.batch_id, res.batch_id, 0)]
    batch = archive.execute("SELECT file_name, rows, inserted, length(sha256) FROM import_batches").fetchall()
    assert batch == [("h.csv", 24, 27, 32)]


def test_reimport_is_a_no_op(archive: psycopg.Connection, grid: Grid, tmp_path: Path) -> None:
    rows = _intervals(_meters(grid), 10)
    path = _write(tmp_path / "h.csv", rows)
    first = import_readings_csv(archive, path)
    before = archive.execute("SELECT * FROM readings ORDER BY meter_id, ts").fetchall()
    again = import_readings_csv(archive, path)
    assert again.already_imported and again.inserted == 0 and again.batch_id == first.batch_id
    # the same rows in another order: a different file (sha256), caught by the unique key
    other = import_readings_csv(archive, _write(tmp_path / "h2.csv", rows, shuffle=True))
    assert not other.already_imported and other.inserted == 0 and other.path == "staging"
    assert archive.execute("SELECT * FROM readings ORDER BY meter_id, ts").fetchall() == before
    assert _count(archive, "SELECT count(*) FROM import_batches") == 2


def test_staging_path_equals_direct_path(archive: psycopg.Connection, grid: Grid, tmp_path: Path) -> None:
    rows = _intervals(_meters(grid, 5), 30, seed=9)
    path = _write(tmp_path / "a.csv", rows, shuffle=True)
    assert import_readings_csv(archive, path).path == "direct"
    direct = archive.execute("SELECT meter_id, ts, import_wh, export_wh, v_l1 FROM readings"
                             " ORDER BY 1, 2").fetchall()
    archive.execute("TRUNCATE readings")
    archive.execute("DELETE FROM import_batches")
    res = import_readings_csv(archive, path, allow_direct=False)
    assert res.path == "staging" and res.inserted == len(direct)
    assert archive.execute("SELECT meter_id, ts, import_wh, export_wh, v_l1 FROM readings"
                           " ORDER BY 1, 2").fetchall() == direct


def test_next_file_continues_the_registers(archive: psycopg.Connection, grid: Grid, tmp_path: Path) -> None:
    meters = _meters(grid, 2)
    import_readings_csv(archive, _write(tmp_path / "jan.csv", _intervals(meters, 4)))
    end_of_first = archive.execute("SELECT import_wh FROM readings WHERE meter_id = %s AND ts = %s",
                                   [meters[0], T0 + 4 * Q]).fetchone()
    second = _intervals(meters, 4, start=4, seed=2)
    res = import_readings_csv(archive, _write(tmp_path / "feb.csv", second))
    assert res.inserted == 8  # no second start-of-series row: the first file ended there
    after = archive.execute("SELECT import_wh FROM readings WHERE meter_id = %s AND ts = %s",
                            [meters[0], T0 + 5 * Q]).fetchone()
    assert end_of_first is not None and after is not None
    assert after[0] == pytest.approx(end_of_first[0] + second[0][2], abs=1e-9)


def test_every_error_class_with_line_numbers_and_nothing_committed(
        archive: psycopg.Connection, grid: Grid, tmp_path: Path) -> None:
    m = _meters(grid, 1)[0]
    lines = [
        "meter_id,interval_start,interval_minutes,import_wh",
        f"{m},2024-03-01T00:00:00Z,15,10",  # 2 ok
        "NO-SUCH-METER,2024-03-01T00:00:00Z,15,10",  # 3 unknown meter
        f"{m},2024-03-01T00:15:00+25:00,15,10",  # 4 bad timestamp (offset)
        f"{m},2024-03-01T00:30:00Z,15,-4.5",  # 5 negative energy
        f"{m},2024-03-01T00:45:00Z,15,12kWh",  # 6 non-numeric energy
        f"{m},2024-03-01T01:00:00Z,15,1",  # 7 ok
        "NO-SUCH-METER,2024-03-01T00:15:00Z,15,10",  # 8 unknown meter again
    ]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ReadingsValidationError) as info:
        import_readings_csv(archive, path)
    exc = info.value
    by_line = {p.line: p for p in exc.problems}
    assert sorted(by_line) == [3, 4, 5, 6] and exc.total == 4
    assert by_line[3].key == "NO-SUCH-METER" and "2 row(s) (lines 3, 8)" in by_line[3].message
    assert "not a timestamp" in by_line[4].message
    assert "negative" in by_line[5].message and by_line[5].where == "import_wh"
    assert "'12kWh'" in by_line[6].message and "not a number" in by_line[6].message
    assert "nothing was imported" in str(exc)
    assert _count(archive, "SELECT count(*) FROM readings") == 0
    assert _count(archive, "SELECT count(*) FROM import_batches") == 0


def test_rollups_equal_the_interval_energy(archive: psycopg.Connection, grid: Grid, tmp_path: Path) -> None:
    meters = _meters(grid, 2)
    rows = _intervals(meters, 96 + 8)  # a day and two hours
    res = import_readings_csv(archive, _write(tmp_path / "h.csv", rows))
    assert res.first_ts is not None and res.last_ts is not None
    refresh_rollups(archive, res.first_ts, res.last_ts)
    for m in meters:
        hourly = archive.execute("SELECT bucket, import_wh, readings FROM readings_1h WHERE meter_id = %s"
                                 " ORDER BY bucket", [m]).fetchall()
        assert len(hourly) == 26
        for h, (bucket, wh, n) in enumerate(hourly):
            expected = sum(w for mm, k, w in rows if mm == m and k // 4 == h)
            assert bucket == T0 + timedelta(hours=h) and n == 4
            assert wh == pytest.approx(expected, abs=1e-6)
        daily = archive.execute("SELECT import_wh FROM readings_1d WHERE meter_id = %s ORDER BY bucket",
                                [m]).fetchall()
        mine = [(k, w) for mm, k, w in rows if mm == m]
        assert [d for (d,) in daily] == pytest.approx(
            [sum(w for k, w in mine if k < 96), sum(w for k, w in mine if k >= 96)])
    # refreshing again, or from scratch, gives the same table
    before = archive.execute("SELECT * FROM readings_15m ORDER BY 1, 2").fetchall()
    archive.execute("TRUNCATE readings_15m, readings_1h, readings_1d")
    refresh_rollups(archive, res.first_ts, res.last_ts)
    assert archive.execute("SELECT * FROM readings_15m ORDER BY 1, 2").fetchall() == before


def test_a_bad_file_is_refused_while_another_import_holds_the_lock(
        archive: psycopg.Connection, grid: Grid, tmp_path: Path, db_dsn: str) -> None:
    """Validation takes no lock: a long import in progress (here: a transaction holding the
    import lock) does not delay the answer for a broken file. With the old order the second
    import waited for the lock first, and lock_timeout turns that wait into LockNotAvailable."""
    from cloud.store.readings_import.load import _LOCK_KEY

    m = _meters(grid, 1)[0]
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(["meter_id", "interval_start", "interval_minutes", "import_wh"]
                            + [f"extra{i}" for i in range(100)]) + f"\n{m},2024-03-01T00:00:00Z,15,1\n")
    wrong_value = _write(tmp_path / "value.csv", [(m, 0, -5.0)])
    with psycopg.connect(db_dsn) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])  # held until rollback
        archive.execute("SET lock_timeout = '5s'")
        try:
            for path, says in ((bad, "more than the 64"), (wrong_value, "negative")):
                with pytest.raises(ReadingsValidationError) as info:
                    import_readings_csv(archive, path)
                assert says in str(info.value), info.value
        finally:
            archive.execute("RESET lock_timeout")
        holder.rollback()
    assert _count(archive, "SELECT count(*) FROM import_batches") == 0


def test_reactive_energy_is_cumulated_and_continued_like_active(archive: psycopg.Connection, grid: Grid,
                                                                 tmp_path: Path) -> None:
    meter = _meters(grid, 1)[0]

    def write(path: Path, start: int, n: int) -> Path:
        lines = [f"{meter},{_iso(T0 + k * Q)},15,{100 + k},{30 + k},{2}" for k in range(start, start + n)]
        path.write_text("\n".join(["meter_id,interval_start,interval_minutes,import_wh,import_varh,"
                                   "export_varh", *lines]) + "\n")
        return path

    import_readings_csv(archive, write(tmp_path / "a.csv", 0, 4))
    import_readings_csv(archive, write(tmp_path / "b.csv", 4, 2))
    got = archive.execute("SELECT import_wh, import_varh, export_varh FROM readings WHERE meter_id = %s"
                          " ORDER BY ts", [meter]).fetchall()
    assert got[0] == (0.0, 0.0, 0.0)
    assert got[-1] == pytest.approx((sum(100 + k for k in range(6)), sum(30 + k for k in range(6)), 12.0))
    # a reactive column must be filled on every row, like export_wh (a gap would shift the register)
    bad = tmp_path / "c.csv"
    bad.write_text(f"meter_id,interval_start,interval_minutes,import_wh,import_varh\n"
                   f"{meter},{_iso(T0 + 10 * Q)},15,1,\n")
    with pytest.raises(ReadingsValidationError) as info:
        import_readings_csv(archive, bad)
    assert any("import_varh" in p.message for p in info.value.problems)


def test_mean_power_neutral_current_pf_and_frequency_land_on_the_end_readings(
        archive: psycopg.Connection, grid: Grid, tmp_path: Path) -> None:
    """The other measured quantities `readings` holds: interval means, stored on the reading at
    each interval's end, never on the start-of-series row, empty where the file is empty."""
    meter = _meters(grid, 1)[0]
    path = tmp_path / "means.csv"
    path.write_text("meter_id,interval_start,interval_minutes,import_wh,p_w,q_var,i_n,pf,freq_hz\n"
                    f"{meter},{_iso(T0)},15,250,1000,-120.5,0.4,0.99,50.01\n"
                    f"{meter},{_iso(T0 + Q)},15,500,2000,,0.6,-0.98,\n")
    res = import_readings_csv(archive, path)
    assert res.inserted == 3
    got = archive.execute("SELECT import_wh, p_w, q_var, i_n, pf, freq_hz FROM readings"
                          " WHERE meter_id = %s ORDER BY ts", [meter]).fetchall()
    assert got == [(0.0, None, None, None, None, None),
                   (250.0, 1000.0, -120.5, 0.4, 0.99, 50.01),
                   (750.0, 2000.0, None, 0.6, -0.98, None)]
