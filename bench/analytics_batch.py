"""Whole analytics batch for one simulated day at 15 min, TimescaleDB to stored results
(issue [5/8]: 100,000 meters), split into fetch (binary COPY -> Feed), kernels (pipeline.run)
and write (store_report, one transaction).

Setup, not timed: a fresh migrated database; the simulator's grid imported with
`import_topology`; one day of readings (97 instants of every customer, balance and feeder-head
meter, 10 % thieves, 1 % replacements) sampled with `wattrail.simfeed` and written into
`readings` with one binary COPY. Kernels are warmed up first (compile time is not a batch
cost: the `cache=True` cache or warmup.warm_up() pays it once per deployment). Then RUNS
batches, median per stage.

    .venv/bin/python bench/analytics_batch.py --meters 10000
    .venv/bin/python bench/analytics_batch.py --meters 100000 --runs 3

Scaling sweep (no database): `--sweep 10000,100000,1000000` times the kernels stage
(pipeline.run, what `analyze` calls between fetch and write) on in-memory Feeds of that many
meter-days: one simulated day of `--meters` meters (simulating grows faster than linearly, so
it stays small) replicated side by side as independent grids (distinct meter, transformer,
feeder and region ids) up to the size; 1M meter-days = 1,000,000 meters x 1 day = 97 M
meter-instants, about 11 GB of Feed arrays plus the pipeline's intermediates (~21 KB per
meter-day in all, over 20 GB at 1M). A size whose estimated peak (bytes per meter-day measured
at the smallest size) does not fit in 60 % of MemAvailable runs as C equal batches of
independent grids, the way a deployment splits a batch by region: one Feed of size/C
meter-days is built and pipeline.run runs C times on it per run; the time reported is the sum.

    .venv/bin/python bench/analytics_batch.py --meters 2000 --sweep 10000,100000,1000000 --runs 3

Services: WATTRAIL_TEST_DSN (an admin DSN that may CREATE DATABASE), else a private instance
started with scripts/services in /tmp/wt-bench-an and left running (stop it with
`scripts/services --state-dir /tmp/wt-bench-an down`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._common import add_json_arg, write_json  # noqa: E402  (after sys.path)
from cloud.analytics.batch import analyze  # noqa: E402
from cloud.analytics.data.fetch import FLOATS  # noqa: E402
from cloud.analytics.kernels.warmup import warm_up  # noqa: E402
from cloud.analytics.pipeline import stages as pipeline  # noqa: E402
from cloud.analytics.pipeline.feed import PER_METER, Feed, MeterArrays, Topology  # noqa: E402
from cloud.store.migrate import migrate  # noqa: E402
from cloud.store.pgcopy.encode import Col, encode  # noqa: E402
from cloud.store.topology import import_topology  # noqa: E402
from firmware_sim.grid_file import write_grid  # noqa: E402
from firmware_sim.grid_service import DEFAULT_START_S, build_simulation  # noqa: E402
from wattrail import simfeed  # noqa: E402

STEP = 900
K = 86400 // STEP + 1


def admin_dsn() -> str:
    dsn = os.environ.get("WATTRAIL_TEST_DSN")
    if dsn:
        return dsn
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "services"), "--state-dir",
                          "/tmp/wt-bench-an", "up", "--json"], capture_output=True, text=True, check=True)
    return str(json.loads(res.stdout)["dsn_admin"])


def write_feed(conn: psycopg.Connection, feed: Feed, batch: int, balance_ids: dict[str, str],
               head_ids: dict[str, str]) -> int:
    """Every present reading of the Feed as a `readings` row (NULL where the Feed has NaN);
    balance / head meter ids come from the archive (transformer / feeder id -> meter id)."""
    topo = feed.topology
    ids = list(topo.meter_ids)
    ids += [balance_ids[t] for t in topo.transformer_ids] + [head_ids[f] for f in topo.feeder_ids]
    parts: dict[str, list[np.ndarray]] = {}
    off = 0
    for arr in (feed.customers, feed.balance, feed.feeders):
        m = arr.present.shape[0]
        rows, cols = np.nonzero(arr.present)
        vals = {"meter": rows + off, "ts": (feed.t0_s + cols * feed.step_s).astype(np.int64) * 1_000_000}
        for f in PER_METER:
            vals[f] = getattr(arr, f)[rows, cols]
        for ph in range(3):
            vals[f"v_l{ph + 1}"] = arr.v[rows, cols, ph]
            vals[f"i_l{ph + 1}"] = arr.i[rows, cols, ph]
        vals["status"] = arr.status[rows, cols].astype(np.int32)
        for key, v in vals.items():
            parts.setdefault(key, []).append(v)
        off += m
    v = {key: np.concatenate(p) for key, p in parts.items()}
    n = len(v["ts"])
    floats = list(FLOATS)
    cols_ = [Col("meter_id", "text", v["meter"].astype(np.int64), dictionary=tuple(i.encode() for i in ids)),
             Col("ts", "timestamptz", v["ts"]),
             *[Col(f, "float8", v[f], missing=np.isnan(v[f])) for f in floats],
             Col("status", "int4", v["status"]),
             Col("provenance", "text", np.zeros(n, np.int64), dictionary=(b"imported",)),
             Col("import_batch", "int8", np.full(n, batch, np.int64))]
    with conn.cursor() as cur, cur.copy(
            f"COPY readings ({', '.join(c.name for c in cols_)}) FROM STDIN (FORMAT BINARY)") as cp:
        for piece in encode(cols_):
            cp.write(piece)
    return n


def _tile_arrays(a: MeterArrays, n: int) -> MeterArrays:
    def rep(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x] * n, axis=0)

    return MeterArrays(*(rep(getattr(a, f)) for f in MeterArrays.__dataclass_fields__))


def tile_feed(feed: Feed, n: int) -> Feed:
    """`n` independent copies of the Feed's grid side by side (ids suffixed, indices offset)."""
    t = feed.topology
    nx, nf, nr = len(t.transformer_ids), len(t.feeder_ids), len(t.region_ids)

    def ids(xs: list[str]) -> list[str]:
        return [f"{x}~{c}" for c in range(n) for x in xs]

    def off(x: np.ndarray, step: int) -> np.ndarray:
        return np.concatenate([x + c * step for c in range(n)])

    def rep(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x] * n)

    topo = Topology(ids(t.meter_ids), ids(t.transformer_ids), ids(t.feeder_ids),
                    ids(t.region_ids), off(t.tx_of, nx), off(t.feeder_of_tx, nf),
                    off(t.region_of_feeder, nr), rep(t.cls), rep(t.phases), rep(t.has_pv),
                    rep(t.tariff_per_kwh), rep(t.rating_va), rep(t.no_load_w), rep(t.load_loss_w))
    return Feed(feed.t0_s, feed.step_s, _tile_arrays(feed.customers, n),
                _tile_arrays(feed.balance, n), _tile_arrays(feed.feeders, n), topo)


def _rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _mem_available() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # resets VmHWM to the current RSS
        fh.write("5")


def sweep(a: argparse.Namespace) -> None:
    sizes = sorted(int(x) for x in a.sweep.split(","))
    t = time.perf_counter()
    sim = build_simulation(meters=a.meters, seed=a.seed, theft_rate=0.1, replacement_rate=0.01)
    base = simfeed.sample(sim, STEP, K)
    del sim
    print(f"simulated {a.meters:,} meters x 1 day in {time.perf_counter() - t:.1f} s")
    warm_up()
    days = (K - 1) * STEP / 86400
    out: list[dict[str, object]] = []
    per_md = 0.0  # peak bytes per meter-day, from the first size
    for size in sizes:
        n_copies = max(1, round(size / (a.meters * days)))
        meter_days = n_copies * a.meters * days
        chunks = 1
        gc.collect()
        if per_md:
            budget = 0.6 * _mem_available()
            while per_md * meter_days / chunks > budget or n_copies % chunks:
                chunks += 1
                if chunks > n_copies:
                    raise SystemExit(f"{meter_days:,.0f} meter-days: one grid copy does not fit")
        _reset_peak()
        rss0 = _rss_bytes()
        feed = tile_feed(base, n_copies // chunks)
        times = []
        for _ in range(a.runs):
            t = time.perf_counter()
            for _c in range(chunks):
                rep = pipeline.run(feed, day=86400 // STEP, block=max(1, 21600 // STEP))
                del rep
            times.append(time.perf_counter() - t)
        peak = _rss_bytes() - rss0
        per_md = per_md or peak / meter_days
        med = statistics.median(times)
        print(f"{meter_days:>12,.0f} meter-days ({n_copies * a.meters:,} meters x {days:g} day): "
              f"kernels median {med:.2f} s of {a.runs} ({meter_days / med:,.0f} meter-days/s), "
              f"peak +{peak / 2**30:.1f} GiB" + (f", as {chunks} batches" if chunks > 1 else ""))
        out.append({"meter_days": meter_days, "meters": n_copies * a.meters, "batches": chunks,
                    "kernels_s": med, "runs": times, "peak_bytes": peak})
        del feed
    print("command: .venv/bin/python bench/analytics_batch.py " + " ".join(sys.argv[1:]))
    write_json(a.json, {"sweep": out, "base_meters": a.meters})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--meters", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sweep", metavar="METER_DAYS,...",
                    help="kernels-only scaling sweep over these sizes (no database)")
    add_json_arg(ap)
    a = ap.parse_args()
    if a.sweep:
        sweep(a)
        return
    admin = admin_dsn()
    name = f"bench_an_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    dsn = admin.rsplit("/", 1)[0] + "/" + name
    try:
        t = time.perf_counter()
        sim = build_simulation(meters=a.meters, seed=a.seed, theft_rate=0.1, replacement_rate=0.01)
        feed = simfeed.sample(sim, STEP, K)
        t_sim = time.perf_counter() - t
        with psycopg.connect(dsn, autocommit=True) as conn, tempfile.TemporaryDirectory() as tmp:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            migrate(conn)
            write_grid(sim.grid, Path(tmp) / "grid.json")
            import_topology(conn, Path(tmp) / "grid.json")
            # the Feed's balance/feeder rows must carry the archive's meter ids
            bal = dict(conn.execute("SELECT transformer_id, balance_meter_id FROM transformers").fetchall())
            head = dict(conn.execute("SELECT feeder_id, head_meter_id FROM feeders").fetchall())
            batch = conn.execute("INSERT INTO import_batches (file_name, sha256, rows, inserted)"
                                 " VALUES ('bench', %s, 0, 0) RETURNING id", [os.urandom(32)]).fetchone()
            assert batch is not None
            t = time.perf_counter()
            n = write_feed(conn, feed, batch[0], bal, head)
            t_copy = time.perf_counter() - t
            conn.execute("VACUUM ANALYZE readings")
        print(f"setup: {a.meters:,} meters, {n:,} readings; simulate+sample {t_sim:.1f} s, "
              f"COPY into readings {t_copy:.1f} s ({n / t_copy:,.0f} rows/s)")
        t = time.perf_counter()
        warm_up()
        print(f"kernel warm-up (cache load or compile): {time.perf_counter() - t:.1f} s")
        start = datetime.fromtimestamp(DEFAULT_START_S, UTC)
        end = datetime.fromtimestamp(DEFAULT_START_S + (K - 1) * STEP, UTC)
        runs: list[dict[str, float]] = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            for i in range(a.runs):
                res = analyze(conn, start, end, step_s=STEP)
                runs.append(res.seconds)
                print(f"run {i + 1}: run_id {res.run_id}, {res.fetch.rows:,} rows fetched; " +
                      ", ".join(f"{k} {v:.2f} s" for k, v in res.seconds.items()))
            sizes = dict(conn.execute(
                "SELECT 'loss_intervals', count(*) FROM analysis_loss_intervals WHERE run_id = %s"
                " UNION ALL SELECT 'suspects', count(*) FROM analysis_suspects WHERE run_id = %s",
                [res.run_id, res.run_id]).fetchall())
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"rows written per run: {sizes}")
        print(f"median of {a.runs}: " + ", ".join(f"{k} {v:.2f} s" for k, v in med.items())
              + f"  ({a.meters * K / med['total']:,.0f} meter-instants/s end to end)")
        print("command: .venv/bin/python bench/analytics_batch.py " + " ".join(sys.argv[1:]))
        write_json(a.json, {"meters": a.meters, "readings": n, "median_s": med, "runs": runs,
                            "meter_instants_per_s": a.meters * K / med["total"]})
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
