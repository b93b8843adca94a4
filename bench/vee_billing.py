"""VEE plus billing determinants for a local month, TimescaleDB to stored results (issue 17:
100,000 customers x one month of 15-minute data in under 60 s on this 2-core machine), with
pandas computing the same determinants from the same readings in the same run as the baseline.

Data (setup, cached, not timed): a generate_grid grid of N customers in Europe/Berlin, all on a
2-period TOU tariff (peak weekdays 17:00-21:00 local; demand charge), and import/export
registers every 15 min over the local month 2026-03 (a 23-hour day: 2,972 intervals, 2,973
readings a meter; 'imported', import_batch 1) by binary COPY. Profiles by kind around base_kw
(residential evening peak, commercial office hours, industrial shifts), gamma noise, bursts,
PV export. Faults: 3 % of meters lose 1-8 readings, 0.5 % one or two days, 0.3 % get a spike
(8x their largest interval), 0.1 % read zero for 4 days. Database `bench_vee_v1_<N>_s<seed>_<migrations hash>`
is reused when its row count matches (`--fresh` rebuilds); the load time prints apart.

Measured per size (result tables emptied before each run): Wattrail `run_billing(conn,
"2026-03")` by stage (read = binary COPY of readings, intervals = numba register kernel, vee =
validate + estimate + day status, vee_write = exceptions + vee_days, determinants = per-chunk
compute and rows, determinants_write), peak RSS (VmHWM reset per run). Baseline, no VEE: pandas
per chunk of the same meters, COPY csv -> read_csv, sort, diff per meter (only readings one
step apart make an interval, as Wattrail), tz_convert, groupby (kWh per period, total,
export, max demand and its time, missing), written back by COPY. Where VEE changed nothing
both must agree to 1e-6 relative (asserted).

    .venv/bin/python bench/vee_billing.py --meters 10000,25000 --runs 3,1

Services: WATTRAIL_TEST_DSN (admin DSN), else scripts/services in /tmp/wt-bench-vee, stopped
at the end with its data kept as the cache (`--keep-services`; `down --purge` deletes it).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._common import add_json_arg, write_json  # noqa: E402  (after sys.path)
from cloud.analytics.kernels.warmup import warm_up  # noqa: E402
from cloud.mdm.billing import run_billing  # noqa: E402
from cloud.mdm.calendar import local_parts, month_period, zone  # noqa: E402
from cloud.store import mdm_sql  # noqa: E402
from cloud.store.migrate import migrate  # noqa: E402
from cloud.store.pgcopy.encode import Col, encode  # noqa: E402
from cloud.store.topology import import_topology  # noqa: E402
from firmware_sim.grid import generate_grid  # noqa: E402
from firmware_sim.grid_file import write_grid  # noqa: E402

TZ, PERIOD, STEP, VERSION = "Europe/Berlin", "2026-03", 900, 1
STATE_DIR = Path("/tmp/wt-bench-vee")
TARIFF = {"tariff_id": "RES-TOU", "class": "residential", "currency": "EUR",
          "valid_from": "2026-01-01", "default_period": "offpeak",
          "periods": [{"name": "peak", "day_types": ["weekday"], "from": "17:00", "to": "21:00"}],
          "energy_price": {"peak": 0.40, "offpeak": 0.20}, "demand_charge_per_kw": 2.0}
RESULT_TABLES = "billing_determinants, billing_runs, vee_days, vee_intervals, vee_runs"
PD_COLS = ["meter_id", "peak", "offpeak", "total", "export", "max_kw", "max_at", "missing"]


def services(a: argparse.Namespace) -> tuple[str, bool]:
    dsn = os.environ.get("WATTRAIL_TEST_DSN")
    if dsn:
        return dsn, False
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "services"), "--state-dir",
                          str(STATE_DIR), "up", "--json"], capture_output=True, text=True, check=True)
    return str(json.loads(res.stdout)["dsn_admin"]), True


def shapes(parts: Any, kind: str) -> np.ndarray:
    """(N,) mean-1 load shape of a customer kind over the interval starts' local time."""
    h = parts.minute / 60.0
    we = parts.weekday >= 5
    if kind == "residential":
        am = np.where(we, 9.5, 7.5)
        x = (0.35 + 0.5 * np.exp(-((h - am) / 1.3) ** 2) + 0.9 * np.exp(-((h - 19.0) / 2.0) ** 2)
             + np.where(we, 0.35, 0.15) * np.exp(-((h - 13.0) / 2.5) ** 2))
    elif kind == "commercial":
        x = 0.3 + np.where(we, 0.1, 1.0) * ((h >= 8) & (h < 18))
    else:
        x = 0.45 + np.where(we, 0.15, 0.6) * ((h >= 6) & (h < 22))
    return np.asarray(x / x.mean(), dtype=np.float64)


def month_registers(rng: np.random.Generator, grid_customers: list[Any], parts: Any,
                    n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """(import Wh, export Wh, present) registers (m, n+1) for the customers, faults put in."""
    m = len(grid_customers)
    kinds = np.array([c.kind for c in grid_customers])
    base = np.array([c.base_kw for c in grid_customers]) * STEP / 3600.0
    x = np.empty((m, n))
    for k in ("residential", "commercial", "industrial"):
        sel = kinds == k
        if sel.any():
            x[sel] = shapes(parts, k)[None, :] * base[sel, None]
    x *= rng.gamma(3.0, 1 / 3.0, size=(m, n))
    x += (rng.random((m, n)) < 0.02) * rng.uniform(0.1, 0.6, size=(m, n)) * (base[:, None] > 0)
    kwp = np.array([c.pv_kwp for c in grid_customers])
    h = parts.minute / 60.0
    sun = np.clip(np.sin(np.pi * (h - 7.0) / 11.0), 0.0, None) ** 1.5
    cloud = rng.uniform(0.15, 1.0, size=(m, 32))[:, parts.day - parts.day.min()]
    pv = kwp[:, None] * 0.25 * sun[None, :] * cloud
    imp = np.maximum(x - pv, 0.0)
    exp = np.maximum(pv - x, 0.0)
    present = np.ones((m, n + 1), dtype=np.bool_)
    u = rng.random(m)
    pick = {k: np.nonzero((u >= lo) & (u < hi))[0] for k, lo, hi in (
        ("single_missing", 0, 0.03), ("missing_days", 0.03, 0.035), ("spikes", 0.035, 0.038),
        ("zero_runs", 0.038, 0.039))}
    for i in pick["single_missing"]:
        present[i, rng.integers(1, n, size=rng.integers(1, 9))] = False
    for i in pick["missing_days"]:
        a = 96 * int(rng.integers(1, 28))
        present[i, a:a + 96 * int(rng.integers(1, 3))] = False
    for i in pick["spikes"]:
        imp[i, rng.integers(0, n)] += 8.0 * imp[i].max() + 2.0
    for i in pick["zero_runs"]:
        a = int(rng.integers(96, n - 500))
        imp[i, a:a + 4 * 96] = 0.0
    faults = {k: len(v) for k, v in pick.items()}
    reg0 = rng.uniform(1_000.0, 80_000.0, size=(m, 1))
    imp_reg = np.round(np.concatenate([reg0, reg0 + np.cumsum(imp, axis=1)], axis=1) * 1000, 1)
    exp_reg = np.round(np.concatenate([np.zeros((m, 1)), np.cumsum(exp, axis=1)], axis=1) * 1000, 1)
    return imp_reg, exp_reg, present, faults


def load(dsn: str, meters: int, seed: int, chunk: int) -> dict[str, Any]:
    """Migrate, topology, zone, tariff, assignments and the month's readings into `dsn`."""
    clock = time.perf_counter()
    grid = generate_grid(seed=seed, meters=meters, feeders=max(4, meters // 2500),
                         transformers=max(4, math.ceil(meters / 200)))
    p = month_period(PERIOD, zone(TZ))
    t0, n = int(p.start.timestamp()), p.intervals(STEP)
    starts = t0 + STEP * np.arange(n, dtype=np.int64)
    parts = local_parts(starts, zone(TZ))
    rng = np.random.default_rng(seed)
    ts_us = (t0 + STEP * np.arange(n + 1, dtype=np.int64)) * 1_000_000
    rows, faults = 0, {}
    with psycopg.connect(dsn) as conn, tempfile.TemporaryDirectory() as tmp:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        migrate(conn)
        write_grid(grid, Path(tmp) / "grid.json")
        import_topology(conn, Path(tmp) / "grid.json")
        conn.execute(mdm_sql.SET_TIME_ZONE_WHERE_NONE, {"tz": TZ})
        conn.execute(mdm_sql.UPSERT_TARIFF, {"tariff_id": "RES-TOU", "valid_from": date(2026, 1, 1),
                                             "valid_to": None, "class": "residential",
                                             "currency": "EUR", "doc": json.dumps(TARIFF)})
        with conn.cursor() as cur, cur.copy("COPY customer_tariffs (customer_id, tariff_id,"
                                            " valid_from) FROM STDIN") as cp:
            for c in grid.customers:
                cp.write_row((c.customer_id, "RES-TOU", date(2026, 1, 1)))
        conn.commit()
        t_setup = time.perf_counter() - clock
        clock = time.perf_counter()
        for lo in range(0, meters, chunk):
            cs = grid.customers[lo:lo + chunk]
            imp, exp, present, f = month_registers(rng, cs, parts, n)
            for k, v in f.items():
                faults[k] = faults.get(k, 0) + v
            r, c = np.nonzero(present)
            k = r.size
            cols = [Col("meter_id", "text", r.astype(np.int64),
                        dictionary=tuple(x.meter_id.encode() for x in cs)),
                    Col("ts", "timestamptz", ts_us[c]),
                    Col("import_wh", "float8", imp[r, c]), Col("export_wh", "float8", exp[r, c]),
                    Col("provenance", "text", np.zeros(k, np.int64), dictionary=(b"imported",)),
                    Col("import_batch", "int8", np.ones(k, np.int64))]
            with conn.cursor() as cur, cur.copy(
                    f"COPY readings ({', '.join(x.name for x in cols)}) FROM STDIN (FORMAT BINARY)") as cp:
                for piece in encode(cols):
                    cp.write(piece)
            conn.commit()
            rows += k
        t_copy = time.perf_counter() - clock
        conn.autocommit = True
        clock = time.perf_counter()
        conn.execute("VACUUM ANALYZE readings")
        t_vac = time.perf_counter() - clock
        info = {"readings": rows, "faults": faults, "setup_s": t_setup, "copy_s": t_copy,
                "vacuum_s": t_vac, "copy_rows_per_s": rows / t_copy}
        conn.execute("CREATE TABLE bench_vee_meta (doc jsonb)")
        conn.execute("INSERT INTO bench_vee_meta VALUES (%s)", [json.dumps(info)])
    return info


def cached(admin: str, meters: int, seed: int, chunk: int, fresh: bool) -> tuple[str, dict[str, Any]]:
    # the schema is part of the key: a changed migration means a fresh load
    mig = hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in sorted(
        (REPO / "cloud" / "store" / "migrations").glob("*.sql")))).hexdigest()[:8]
    name = f"bench_vee_v{VERSION}_{meters}_s{seed}_{mig}"
    dsn = admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as c:
        exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        for (old,) in c.execute("SELECT datname FROM pg_database WHERE datname LIKE %s AND datname"
                                " <> %s", [f"bench_vee_v%_{meters}_s{seed}%", name]).fetchall():
            c.execute(f'DROP DATABASE "{old}" WITH (FORCE)')  # a stale schema: free its disk
    if exists and not fresh:
        with psycopg.connect(dsn, autocommit=True) as c:
            t = time.perf_counter()
            meta = c.execute("SELECT doc FROM bench_vee_meta").fetchone() if c.execute(
                "SELECT to_regclass('bench_vee_meta')").fetchone()[0] else None  # type: ignore[index]
            count = c.execute("SELECT count(*) FROM readings").fetchone()[0]  # type: ignore[index]
            if meta is not None and count == meta[0]["readings"]:
                info = dict(meta[0])
                info.update(cached=True, count_s=time.perf_counter() - t)
                return dsn, info
        print(f"  cache {name} incomplete ({count:,} readings): rebuilding")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    info = load(dsn, meters, seed, chunk)
    info["cached"] = False
    return dsn, info


def _peak_reset() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # VmHWM back to the current RSS
        fh.write("5")


def _peak() -> int:
    with open("/proc/self/status") as fh:
        return next(int(x.split()[1]) * 1024 for x in fh if x.startswith("VmHWM:"))


def wattrail_run(dsn: str, chunk: int) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        conn.execute(f"TRUNCATE {RESULT_TABLES} CASCADE")
        conn.commit()
        _peak_reset()
        res = run_billing(conn, PERIOD, step_s=STEP, chunk_meters=chunk)
        peak = _peak()
    v, b = res.vee.seconds, res.seconds
    st = {"read": v["read"], "intervals": v["intervals"], "vee": v["vee"], "vee_write": v["write"],
          "determinants": b["determinants"], "determinants_write": b["write"]}
    # stages run_vee times that this benchmark does not name (e.g. check_meter) keep their name
    st.update({k: x for k, x in v.items() if k not in ("read", "intervals", "vee", "write",
                                                       "on_chunk", "total")})
    st["other"] = b["total"] - sum(st.values())
    st["total"] = b["total"]
    return {"seconds": st, "run_id": res.run_id, "peak_rss": peak, "rows": res.rows,
            "complete": res.complete, "days": res.vee.days, "exceptions": res.vee.exceptions,
            "rules_failed": {k: r["failed"] for k, r in res.vee.rules.items()}}


def pandas_run(dsn: str, chunk: int) -> tuple[dict[str, float], Any]:
    import pandas as pd

    p = month_period(PERIOD, zone(TZ))
    t0, t1 = int(p.start.timestamp()), int(p.end.timestamp())
    n = (t1 - t0) // STEP
    sec = {"read": 0.0, "determinants": 0.0, "write": 0.0}
    out = []
    with psycopg.connect(dsn) as conn:
        ids = [r[0] for r in conn.execute(
            "SELECT meter_id FROM meters WHERE kind = 'customer' ORDER BY meter_id")]
        _peak_reset()
        for lo in range(0, len(ids), chunk):
            part = ids[lo:lo + chunk]
            t = time.perf_counter()
            q = sql.SQL(
                "COPY (SELECT m.idx - 1, extract(epoch FROM r.ts)::int8, r.import_wh, r.export_wh"
                " FROM readings r JOIN unnest({ids}::text[]) WITH ORDINALITY AS m(meter_id, idx)"
                " ON r.meter_id = m.meter_id COLLATE \"C\" WHERE r.ts >= {lo} AND r.ts <= {hi}"
                " AND r.quality NOT IN (3, 4)) TO STDOUT (FORMAT csv)").format(
                ids=sql.Literal(part), lo=sql.Literal(p.start), hi=sql.Literal(p.end))
            buf = io.BytesIO()
            with conn.cursor() as cur, cur.copy(q) as cp:
                for data in cp:
                    buf.write(data)
            buf.seek(0)
            df = pd.read_csv(buf, names=["m", "ts", "imp", "exp"],
                             dtype={"m": np.int32, "ts": np.int64, "imp": np.float64, "exp": np.float64})
            sec["read"] += time.perf_counter() - t
            t = time.perf_counter()
            df = df.sort_values(["m", "ts"], ignore_index=True)
            g = df.groupby("m", sort=False)
            df["start"] = df["ts"] - STEP
            df["e"] = g["imp"].diff() / 1000.0
            df["x"] = g["exp"].diff() / 1000.0
            iv = df[(g["ts"].diff() == STEP) & (df["start"] >= t0) & (df["start"] < t1)].copy()
            local = pd.to_datetime(iv["start"], unit="s", utc=True).dt.tz_convert(TZ)
            iv["peak"] = (local.dt.day_of_week < 5) & (local.dt.hour >= 17) & (local.dt.hour < 21)
            tou = iv.groupby(["m", "peak"])["e"].sum().unstack(fill_value=0.0)
            gm = iv.groupby("m")
            at = gm["e"].idxmax()
            d = pd.DataFrame({"meter_id": np.asarray(part, dtype=object)[gm["e"].sum().index],
                              "peak": tou.get(True, 0.0), "offpeak": tou.get(False, 0.0),
                              "total": gm["e"].sum(), "export": gm["x"].sum(),
                              "max_kw": iv.loc[at.values, "e"].values / (STEP / 3600.0),
                              "max_at": iv.loc[at.values, "start"].values,
                              "missing": n - gm["e"].count()})
            sec["determinants"] += time.perf_counter() - t
            t = time.perf_counter()
            conn.execute("CREATE TABLE IF NOT EXISTS bench_pandas_determinants (meter_id text,"
                         " peak float8, offpeak float8, total float8, export float8, max_kw float8,"
                         " max_at int8, missing int4)")
            if lo == 0:
                conn.execute("TRUNCATE bench_pandas_determinants")
            with conn.cursor() as cur, cur.copy(
                    "COPY bench_pandas_determinants FROM STDIN (FORMAT csv)") as cp:
                cp.write(d[PD_COLS].to_csv(index=False, header=False))
            conn.commit()
            sec["write"] += time.perf_counter() - t
            out.append(d)
        sec["peak_rss"] = _peak()
    sec["total"] = sec["read"] + sec["determinants"] + sec["write"]
    return sec, pd.concat(out, ignore_index=True)


def agree(dsn: str, run_id: int, pdf: Any) -> dict[str, Any]:
    """Compare determinants of the customers VEE estimated nothing for (no vee_intervals row
    with a method other than ACTUAL); assert 1e-6 relative agreement and the same max time."""
    import pandas as pd

    with psycopg.connect(dsn) as conn:
        w = pd.DataFrame(conn.execute(
            "SELECT meter_id, (kwh_by_period->>'peak')::float8, (kwh_by_period->>'offpeak')::float8,"
            " total_kwh, export_kwh, max_kw, extract(epoch FROM max_kw_at)::int8, missing"
            " FROM billing_determinants WHERE run_id = %s", [run_id]).fetchall(),
            columns=["meter_id", *[f"w_{c}" for c in PD_COLS[1:]]])
        changed = {r[0] for r in conn.execute(
            "SELECT DISTINCT meter_id FROM vee_intervals WHERE run_id = %s AND method <> 0",
            [conn.execute("SELECT vee_run_id FROM billing_runs WHERE run_id = %s",
                          [run_id]).fetchone()[0]])}  # type: ignore[index]
    j = w.merge(pdf, on="meter_id", how="left")
    same = j[~j["meter_id"].isin(changed)]
    assert (same["missing"] == 0).all() and (same["w_missing"] == 0).all(), "missing not estimated"
    worst = 0.0
    for c in ("peak", "offpeak", "total", "export", "max_kw"):
        d = (same[f"w_{c}"] - same[c]).abs()
        worst = max(worst, float((d / same[c].abs().clip(lower=1e-9)).where(d > 1e-9, 0.0).max()))
    assert worst <= 1e-6, worst
    assert (same["w_max_at"] == same["max_at"]).all(), "max demand at another interval"
    ch = j[j["meter_id"].isin(changed)]
    diff = ((ch["w_total"] - ch["total"]).abs() / ch["w_total"].clip(lower=1e-9)).dropna()
    return {"compared": len(same), "of": len(w), "max_rel_diff": worst, "vee_changed": len(ch),
            "vee_changed_median_total_diff": float(diff.median()) if len(diff) else 0.0}


def _med(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def measure(admin: str, meters: int, n_runs: int, a: argparse.Namespace) -> dict[str, Any]:
    dsn, info = cached(admin, meters, a.seed, a.chunk, a.fresh)
    if info["cached"]:
        print(f"{meters:,} customers: cached database, {info['readings']:,} readings "
              f"(row count checked in {info['count_s']:.1f} s; loaded earlier in "
              f"{info['copy_s']:.0f} s COPY + {info['vacuum_s']:.0f} s VACUUM ANALYZE)")
    else:
        print(f"{meters:,} customers: loaded {info['readings']:,} readings: setup {info['setup_s']:.1f} s,"
              f" generate + binary COPY {info['copy_s']:.1f} s ({info['copy_rows_per_s']:,.0f} rows/s),"
              f" VACUUM ANALYZE {info['vacuum_s']:.1f} s; faults {info['faults']}")
    wat: list[dict[str, Any]] = []
    pan: list[dict[str, float]] = []
    pdf = None
    for i in range(n_runs):
        load1 = os.getloadavg()[0]
        w = wattrail_run(dsn, a.chunk)
        s, pdf = pandas_run(dsn, a.chunk)
        wat.append(w)
        pan.append(s)
        ws = w["seconds"]
        print(f"  run {i + 1} (load avg {load1:.1f}): wattrail {ws['total']:.2f} s (" +
              ", ".join(f"{k} {v:.2f}" for k, v in ws.items() if k != "total") +
              f"), peak RSS {w['peak_rss'] / 2**20:,.0f} MiB; pandas {s['total']:.2f} s (read "
              f"{s['read']:.2f}, determinants {s['determinants']:.2f}, write {s['write']:.2f}),"
              f" peak RSS {s['peak_rss'] / 2**20:,.0f} MiB")
    check = agree(dsn, wat[-1]["run_id"], pdf)
    last = wat[-1]
    print(f"  agreement: {check['compared']:,} of {check['of']:,} customers where VEE changed "
          f"nothing agree with pandas within {check['max_rel_diff']:.1e} (asserted <= 1e-6); "
          f"{check['vee_changed']:,} changed by VEE (median |total diff| "
          f"{check['vee_changed_median_total_diff']:.2%}); meter-days {last['days']}, "
          f"{last['exceptions']:,} exception rows, rules failed {last['rules_failed']}")
    stages = {k: statistics.median(r["seconds"][k] for r in wat) for k in wat[0]["seconds"]}
    return {"meters": meters, "readings": info["readings"], "load": info, "runs": n_runs,
            "wattrail_s": stages, "wattrail_runs": [r["seconds"] for r in wat],
            "wattrail_peak_rss": max(r["peak_rss"] for r in wat),
            "pandas_s": {k: _med(pan, k) for k in ("read", "determinants", "write", "total")},
            "pandas_runs": pan, "pandas_peak_rss": max(r["peak_rss"] for r in pan),
            "readings_per_s": info["readings"] / stages["total"],
            "determinant_rows": last["rows"], "billable": last["complete"],
            "agreement": check, "meter_days": last["days"], "rules_failed": last["rules_failed"]}


def _ratio(r: dict[str, Any], k: str) -> str:
    return f"{r['pandas_s'][k] / r['wattrail_s'][k]:.2f}x"


def table(results: list[dict[str, Any]]) -> None:
    keys = list(results[0]["wattrail_s"])
    head = f"{'median s':<28}" + "".join(f"{r['meters']:>12,}" for r in results)
    print("\n" + head + "\n" + "-" * len(head))
    for k in keys:
        print(f"{'wattrail ' + k:<28}" + "".join(f"{r['wattrail_s'][k]:>12.2f}" for r in results))
    for k in ("read", "determinants", "write", "total"):
        print(f"{'pandas ' + k:<28}" + "".join(f"{r['pandas_s'][k]:>12.2f}" for r in results))
    rows = [("readings", lambda r: f"{r['readings']:,}"),
            ("wattrail readings/s", lambda r: f"{r['readings_per_s']:,.0f}"),
            ("determinants: pandas/wattr.", lambda r: _ratio(r, "determinants")),
            ("whole: pandas/wattrail", lambda r: _ratio(r, "total")),
            ("wattrail peak RSS MiB", lambda r: f"{r['wattrail_peak_rss'] / 2**20:,.0f}"),
            ("pandas peak RSS MiB", lambda r: f"{r['pandas_peak_rss'] / 2**20:,.0f}")]
    for name, fn in rows:
        print(f"{name:<28}" + "".join(f"{fn(r):>12}" for r in results))


def extrapolate(results: list[dict[str, Any]], target: int) -> dict[str, Any]:
    """Stage times at `target` customers from a least-squares line through the sizes measured
    (from the largest one, proportionally, when only one size was measured)."""
    xs = np.array([r["meters"] for r in results], np.float64)
    out: dict[str, float] = {}
    for k in results[0]["wattrail_s"]:
        ys = np.array([r["wattrail_s"][k] for r in results])
        if len(xs) >= 2:
            b, a0 = np.polyfit(xs, ys, 1)
            out[k] = float(a0 + b * target)
        else:
            out[k] = float(ys[0] * target / xs[0])
    return {"meters": target, "wattrail_s": out, "from": [int(x) for x in xs],
            "method": "linear fit" if len(xs) >= 2 else "proportional"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--meters", default="10000", help="comma-separated customer counts")
    ap.add_argument("--runs", default="3", help="runs per size (one number, or one per size)")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--chunk", type=int, default=5000, help="run_billing chunk_meters (and load chunk)")
    ap.add_argument("--target", type=int, default=100_000)
    ap.add_argument("--fresh", action="store_true", help="rebuild the cached databases")
    ap.add_argument("--keep-services", action="store_true")
    add_json_arg(ap)
    a = ap.parse_args()
    sizes = [int(x) for x in a.meters.split(",")]
    runs = [int(x) for x in a.runs.split(",")]
    runs = runs * len(sizes) if len(runs) == 1 else runs
    admin, started = services(a)
    try:
        t = time.perf_counter()
        warm_up()
        print(f"kernel warm-up (cache load or compile, not timed below): {time.perf_counter() - t:.1f} s;"
              f" load avg at start {os.getloadavg()}")
        results = [measure(admin, m, r, a) for m, r in zip(sizes, runs, strict=True)]
    finally:
        if started and not a.keep_services:
            subprocess.run([sys.executable, str(REPO / "scripts" / "services"), "--state-dir",
                            str(STATE_DIR), "down"], capture_output=True, check=False)
    table(results)
    at = next((r for r in results if r["meters"] == a.target), None)
    ext = None
    if at is not None:
        total, how = at["wattrail_s"]["total"], "measured"
    else:
        ext = extrapolate(results, a.target)
        total, how = ext["wattrail_s"]["total"], f"EXTRAPOLATED ({ext['method']} from {ext['from']})"
        print(f"\n{a.target:,} customers, {how}: " +
              ", ".join(f"{k} {v:.1f} s" for k, v in ext["wattrail_s"].items()))
    verdict = "met" if total < 60 else "NOT met"
    print(f"verdict: {a.target:,} customers x {PERIOD} VEE + determinants {total:.1f} s ({how}) "
          f"vs target 60 s: {verdict}; load avg at end {os.getloadavg()}, "
          f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:,.0f} MiB")
    print("command: .venv/bin/python bench/vee_billing.py " + " ".join(sys.argv[1:]))
    write_json(a.json, {"sizes": results, "target": a.target, "target_total_s": total,
                        "target_how": how, "extrapolated": ext, "verdict": verdict})


if __name__ == "__main__":
    main()
