"""Historical CSV import throughput (issue [4/8]: at least 500,000 rows/s).

Generates a CSV of METERS x INTERVALS 15-minute rows, then for each of 3 runs imports it into a
fresh, migrated database with the meters in its archive, and prints the median rows/s. The
same run measures:
- the baseline: plain `COPY ... (FORMAT csv)` of the same file into an unindexed plain table,
  so the ratio says what parsing, validation, register building and idempotency cost;
- the staging path (`INSERT ... ON CONFLICT DO NOTHING` from a temporary table), which the
  importer uses when stored readings overlap the file;
- the rollup refresh for the imported span.

Services: WATTRAIL_TEST_DSN (an admin DSN that may CREATE DATABASE), else a private instance
started with scripts/services in /tmp/wt-bench and stopped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._common import add_json_arg, write_json  # noqa: E402
from cloud.store.migrate import migrate  # noqa: E402
from cloud.store.readings_import.load import ImportResult, import_readings_csv  # noqa: E402  (after sys.path)
from cloud.store.rollups import refresh_rollups  # noqa: E402
from cloud.store.topology import import_topology  # noqa: E402
from firmware_sim.grid import generate_grid  # noqa: E402
from firmware_sim.grid_file import write_grid  # noqa: E402

METERS = int(os.environ.get("BENCH_METERS", "1000"))
INTERVALS = int(os.environ.get("BENCH_INTERVALS", "2000"))
RUNS = 3


def write_csv(path: Path, meter_ids: list[str]) -> int:
    rng = np.random.default_rng(42)
    t0 = np.datetime64("2024-01-01T00:00:00")
    starts = t0 + np.arange(INTERVALS) * np.timedelta64(15, "m")
    s_txt = [f"{s}Z" for s in np.datetime_as_string(starts, unit="s")]
    e_txt = [f"{s}Z" for s in np.datetime_as_string(starts + np.timedelta64(15, "m"), unit="s")]
    with path.open("w") as f:
        f.write("meter_id,interval_start,interval_end,import_wh,export_wh,v_l1\n")
        for mid in meter_ids:
            wh = rng.uniform(0, 500, INTERVALS).round(1)
            v = rng.uniform(225, 235, INTERVALS).round(1)
            f.write("".join(f"{mid},{s},{e},{w},0,{x}\n"
                            for s, e, w, x in zip(s_txt, e_txt, wh.tolist(), v.tolist(), strict=True)))
    return len(meter_ids) * INTERVALS


class Databases:
    def __init__(self, admin: str) -> None:
        self.admin = admin

    def fresh(self) -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        dsn = self.admin.rsplit("/", 1)[0] + "/" + name
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return dsn

    def drop(self, dsn: str) -> None:
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    global METERS, INTERVALS, RUNS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--meters", type=int, default=METERS, help="default: $BENCH_METERS or 1000")
    ap.add_argument("--intervals", type=int, default=INTERVALS,
                    help="default: $BENCH_INTERVALS or 2000")
    ap.add_argument("--runs", type=int, default=RUNS)
    add_json_arg(ap)
    args = ap.parse_args()
    METERS, INTERVALS, RUNS = args.meters, args.intervals, args.runs
    started: Path | None = None
    admin = os.environ.get("WATTRAIL_TEST_DSN")
    if not admin:
        started = Path("/tmp/wt-bench")
        res = subprocess.run([sys.executable, str(REPO / "scripts/services"), "--state-dir",
                              str(started), "up", "--json"], capture_output=True, text=True, check=True)
        admin = json.loads(res.stdout)["dsn_admin"]
    dbs = Databases(admin)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            grid = generate_grid(seed=1, meters=METERS, feeders=4, transformers=max(4, -(-METERS // 240)))
            grid_path = Path(tmp) / "grid.json"
            write_grid(grid, grid_path)
            csv_path = Path(tmp) / "history.csv"
            t = time.perf_counter()
            rows = write_csv(csv_path, [c.meter_id for c in grid.customers])
            print(f"generated {rows:,} rows ({csv_path.stat().st_size / 1e6:.0f} MB) in "
                  f"{time.perf_counter() - t:.1f} s")

            def prepared() -> str:
                dsn = dbs.fresh()
                with psycopg.connect(dsn, autocommit=True) as c:
                    migrate(c)
                    import_topology(c, grid_path)
                return dsn

            def run_import(direct: bool) -> tuple[float, float | None]:
                dsn = prepared()
                try:
                    with psycopg.connect(dsn, autocommit=True) as c:
                        holder: list[object] = []
                        secs = timed(lambda: holder.append(
                            # rollups timed on their own below
                            import_readings_csv(c, csv_path, allow_direct=direct, refresh=False)))
                        res = holder[0]
                        assert isinstance(res, ImportResult), res
                        assert res.inserted == rows + METERS, res
                        assert res.path == ("direct" if direct else "staging"), res
                        roll = None
                        if direct and res.first_ts and res.last_ts:
                            span = (res.first_ts, res.last_ts)
                            roll = timed(lambda: refresh_rollups(c, *span))
                    return secs, roll
                finally:
                    dbs.drop(dsn)

            def run_baseline() -> float:
                dsn = dbs.fresh()
                try:
                    with psycopg.connect(dsn) as c:
                        c.execute("CREATE TABLE plain (meter_id text, interval_start timestamptz,"
                                  " interval_end timestamptz, import_wh float8, export_wh float8,"
                                  " v_l1 float8)")
                        c.commit()
                        data = csv_path.read_bytes()

                        def copy() -> None:
                            with c.cursor().copy("COPY plain FROM STDIN (FORMAT csv, HEADER true)") as cp:
                                for i in range(0, len(data), 1 << 20):
                                    cp.write(data[i:i + (1 << 20)])
                            c.commit()
                        return timed(copy)
                finally:
                    dbs.drop(dsn)

            direct = [run_import(True) for _ in range(RUNS)]
            staging = [run_import(False)[0] for _ in range(RUNS)]
            baseline = [run_baseline() for _ in range(RUNS)]
    finally:
        if started is not None:
            subprocess.run([sys.executable, str(REPO / "scripts/services"), "--state-dir", str(started),
                            "down", "--purge"], capture_output=True, check=False)

    def rate(secs: list[float]) -> str:
        med = statistics.median(secs)
        return f"{rows / med:>10,.0f} rows/s (median {med:.2f} s of {', '.join(f'{s:.2f}' for s in secs)})"

    print(f"readings import, direct COPY path : {rate([d for d, _ in direct])}")
    print(f"readings import, staging path     : {rate(staging)}")
    print(f"baseline: plain COPY csv, no index: {rate(baseline)}")
    print(f"import / baseline time ratio      : "
          f"{statistics.median([d for d, _ in direct]) / statistics.median(baseline):.2f}x")
    rolls = [r for _, r in direct if r is not None]
    print(f"rollup refresh (15m/1h/1d)        : median {statistics.median(rolls):.2f} s for {rows:,} rows")
    met = rows / statistics.median([d for d, _ in direct]) >= 500_000
    print(f"target 500,000 rows/s: {'met' if met else 'NOT met'}")
    print(f"command: {'WATTRAIL_TEST_DSN=... ' if started is None else ''}"
          f"BENCH_METERS={METERS} BENCH_INTERVALS={INTERVALS} .venv/bin/python bench/historical_import.py")
    write_json(args.json, {
        "rows": rows,
        "direct_rows_per_s": rows / statistics.median([d for d, _ in direct]),
        "staging_rows_per_s": rows / statistics.median(staging),
        "baseline_copy_rows_per_s": rows / statistics.median(baseline),
        "rollup_s": statistics.median(rolls) if rolls else None})


if __name__ == "__main__":
    main()
