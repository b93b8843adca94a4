"""Run every benchmark under bench/ `--repeat` times and write the performance report.

    .venv/bin/python bench/report.py [--repeat 3] [--out docs/performance.md] [--quick]
        [--only ingest,naive] [--logs DIR]

Each benchmark runs as its own subprocess with `--json PATH` and writes its figures there;
nothing is parsed from free text. Baselines are measured inside the same benchmark run as the
figure they are compared with, so a ratio never mixes two moments of this shared machine. The
report takes the median over the repeats of every figure and of every baseline, and the ratio
of the two medians (always oriented so that > 1 means Wattrail is faster / better).

Services: one private TimescaleDB + TLS Mosquitto instance (scripts/services, temporary state
dir, purged at the end) shared by the benchmarks through WATTRAIL_TEST_DSN / WATTRAIL_TEST_MQTT /
WATTRAIL_TEST_TLS_DIR, unless those are already set; bench/api_latency.py starts its own.

`--quick` runs every benchmark at a tiny scale (a smoke test of the whole chain, minutes, not
figures to quote). The full run takes about an hour and a half on a 2-core machine at
`--repeat 3`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

J = dict[str, Any]
Get = Callable[[J], float | None]


@dataclass
class Figure:
    name: str
    unit: str
    get: Get
    baseline: str = ""  # label of the same-run baseline, "" = none
    base: Get | None = None
    higher_is_better: bool = True
    target: str = ""


@dataclass
class Bench:
    key: str
    area: str
    script: str
    full: list[str]
    quick: list[str]
    figures: list[Figure]
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


def _g(*path: str | int) -> Get:
    def get(j: J) -> float | None:
        cur: Any = j
        for p in path:
            try:
                cur = cur[p]
            except (KeyError, IndexError, TypeError):
                return None
        return float(cur) if isinstance(cur, (int, float)) else None
    return get


def _mode(label: str, key: str, ingestors: int | None = None) -> Get:
    def get(j: J) -> float | None:
        for r in j.get("results", []):
            if r.get("mode") == label and (ingestors is None or r.get("ingestors") == ingestors):
                v = r.get(key)
                return float(v) if isinstance(v, (int, float)) else None
        return None
    return get


def _sweep(i: int, key: str) -> Get:
    return _g("sweep", i, key)


def _sweep_label(i: int, full: bool) -> str:
    sizes = ["10k", "100k", "1M"] if full else ["1k", "2k", "4k"]
    return f"kernels over {sizes[i]} meter-days"


def benches(full: bool) -> list[Bench]:
    copy_rate = _g("baseline_copy_rows_per_s")
    sweep_figs = [Figure(_sweep_label(i, full), "s", _sweep(i, "kernels_s"),
                         higher_is_better=False) for i in range(3)]
    return [
        Bench("naive", "End to end: Wattrail vs a naive bridge and per-reading signatures",
              "naive_bridge.py",
              ["--seconds", "20", "--wattrail-seconds", "30", "--per-reading-seconds", "20"],
              ["--seconds", "5", "--wattrail-seconds", "6", "--per-reading-seconds", "5",
               "--agents", "4"],
              [Figure("Wattrail batch-signed (500 readings/envelope, 2 ingestors)", "readings/s",
                      _g("wattrail_readings_per_s"), "naive bridge: JSON per reading, INSERT "
                      "per row, no signatures", _g("naive_readings_per_s"), target="150,000/s"),
               Figure("Wattrail batch-signed", "readings/s", _g("wattrail_readings_per_s"),
                      "one signed envelope per reading (same ingest)",
                      _g("per_reading_readings_per_s"))],
              note="Same broker (TLS, client certificates) and the same TimescaleDB for all "
                   "three modes; the naive bridge is one process inserting in its MQTT callback."),
        Bench("ingest", "Ingest scaling and latency", "ingest_e2e.py",
              ["--seconds", "30", "--ingestors", "1,2", "--single-mode-seconds", "0",
               "--latency-seconds", "20"],
              ["--seconds", "6", "--ingestors", "1,2", "--agents", "4",
               "--single-mode-seconds", "0", "--latency-seconds", "5", "--latency-rate", "5000",
               "--baseline-rows", "50000"],
              [Figure("1 ingestor, batch-signed", "readings/s",
                      _mode("batch-signed", "readings_per_s_median", 1),
                      "plain binary COPY, one client", copy_rate),
               Figure("2 ingestors, batch-signed", "readings/s",
                      _mode("batch-signed", "readings_per_s_median", 2),
                      "1 ingestor (same run)", _mode("batch-signed", "readings_per_s_median", 1),
                      target="150,000/s"),
               Figure("2 ingestors, batch-signed", "readings/s",
                      _mode("batch-signed", "readings_per_s_median", 2),
                      "plain binary COPY, one client", copy_rate),
               Figure("latency p50, paced", "s", _mode("paced latency", "latency_p50_s"),
                      higher_is_better=False),
               Figure("latency p99, paced", "s", _mode("paced latency", "latency_p99_s"),
                      higher_is_better=False, target="< 2 s")]),
        Bench("kernels", "Analytics kernels vs NumPy and pandas (one thread)",
              "analytics_balance.py", [], ["--values", "1000000", "--repeat", "2"],
              [Figure("grouped sum by key, Numba", "values/s", _g("keys_numba_values_per_s"),
                      "NumPy bincount", _g("keys_numpy_values_per_s"), target="300M/s, 2x NumPy"),
               Figure("grouped sum by key, Numba", "values/s", _g("keys_numba_values_per_s"),
                      "pandas groupby", _g("keys_pandas_values_per_s")),
               Figure("balance rows per transformer, Numba", "values/s",
                      _g("rows_numba_values_per_s"), "NumPy bincount",
                      _g("rows_numpy_values_per_s")),
               Figure("balance rows per transformer, Numba", "values/s",
                      _g("rows_numba_values_per_s"), "pandas groupby",
                      _g("rows_pandas_values_per_s"))],
              env={"NUMBA_NUM_THREADS": "1"}),
        Bench("batch", "Analytics batch (database -> kernels -> stored results)",
              "analytics_batch.py", ["--meters", "10000", "--runs", "1"],
              ["--meters", "500", "--runs", "1"],
              [Figure(f"{stage}", "s", _g("median_s", stage), higher_is_better=False,
                      target="100,000 meters" if stage == "total" else "")
               for stage in ("fetch", "kernels", "write", "total")]),
        Bench("sweep", "Analytics scaling: kernels wall time vs meter-days",
              "analytics_batch.py",
              ["--meters", "2000", "--sweep", "10000,100000,1000000", "--runs", "1"],
              ["--meters", "500", "--sweep", "1000,2000,4000", "--runs", "1"], sweep_figs,
              note="In-memory Feeds of replicated simulated grids (1 day at 15 min); sizes "
                   "that do not fit in memory run as equal batches (see bench/analytics_batch.py)."),
        Bench("import", "Historical CSV import", "historical_import.py",
              ["--runs", "1"], ["--meters", "100", "--intervals", "500", "--runs", "1"],
              [Figure("direct COPY path", "rows/s", _g("direct_rows_per_s"),
                      "plain COPY csv, no index", _g("baseline_copy_rows_per_s"),
                      target="500,000/s"),
               Figure("staging path", "rows/s", _g("staging_rows_per_s"),
                      "plain COPY csv, no index", _g("baseline_copy_rows_per_s"))]),
        Bench("poll", "Edge polling vs the pymodbus request ceiling", "edge_poll.py",
              ["--runs", "1"], ["--meters", "100", "--connections", "10", "--seconds", "2",
                                "--runs", "1"],
              [Figure("Poller, SDM630 meter reads (3 requests each)", "reads/s",
                      _g("poller_reads_per_s"), "plain pymodbus request loop, same requests",
                      _g("pymodbus_reads_per_s"), target="5,000/s")]),
        Bench("seal", "Edge sign + outbox + publish", "edge_seal.py",
              ["--runs", "1"], ["--batch", "200", "--envelopes", "10", "--runs", "1"],
              [Figure(f"{b} readings/envelope, sign+outbox+publish", "readings/s",
                      _g("batches", b, "readings_per_s"), "sign+outbox alone",
                      _g("batches", b, "seal_only_readings_per_s"),
                      target="100,000/s" if b == "1000" else "")
               for b in (["200", "1000", "5000"] if full else ["200"])]),
        Bench("rtu", "RS-485 bus use at 9600 baud", "edge_rtu.py",
              ["--runs", "1"], ["--meters", "2", "--seconds", "3", "--runs", "1"],
              [Figure("bus busy share (frames + required silences)", "share",
                      _g("busy_share"), target=">= 90 %"),
               Figure("frame share", "share", _g("frame_share"))]),
        Bench("sim", "Simulator serving", "sim_serving.py",
              ["--runs", "1"], ["--meters", "200", "--clients", "10", "--seconds", "2",
                                "--runs", "1"],
              [Figure("SDM630 block reads, 50 connections" if full else "SDM630 block reads",
                      "reads/s", _g("reads_per_s"), target="5,000/s")]),
        Bench("api", "API latency (one uvicorn worker, loopback)", "api_latency.py",
              ["--seconds", "8", "--runs", "1", "--concurrency", "1,8"],
              ["--transformers", "500", "--seconds", "2", "--runs", "1", "--concurrency", "1"],
              [Figure(f"{sc} x{c} {q}", "ms", _g("scenarios", f"{sc}@{c}", f"{q}_ms"),
                      higher_is_better=False,
                      target="p99 < 100 ms" if q == "p99" and sc != "year-walk" else "")
               for c in ([1, 8] if full else [1]) for sc in ("year-page", "worst-50")
               for q in ("p50", "p99")]),
    ]


# -- machine ---------------------------------------------------------------------------------
def machine(versions: dict[str, str]) -> list[tuple[str, str]]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    os_name = platform.platform()
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))} (kernel {platform.release()})"
    import numba
    import numpy

    return [("CPU", cpu), ("cores", str(os.cpu_count())), ("RAM", f"{mem / 2**30:.1f} GiB"),
            ("OS", os_name), ("Python", platform.python_version()),
            ("NumPy / Numba", f"{numpy.__version__} / {numba.__version__}"),
            ("PostgreSQL", versions.get("postgresql", "?")),
            ("TimescaleDB", versions.get("timescaledb", "?")),
            ("Mosquitto", versions.get("mosquitto", "?")),
            ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))]


def _db_versions(dsn: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        pg = conn.execute("SHOW server_version").fetchone()
        ts = conn.execute("SELECT default_version FROM pg_available_extensions "
                          "WHERE name = 'timescaledb'").fetchone()
    return {"postgresql": str(pg[0]) if pg else "?", "timescaledb": str(ts[0]) if ts else "?"}


# -- formatting ------------------------------------------------------------------------------
def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "share":
        return f"{v:.1%}"
    if unit in ("s", "ms"):
        return f"{v:,.2f} {unit}" if v < 100 else f"{v:,.0f} {unit}"
    if v >= 1e6:
        return f"{v / 1e6:,.1f} M {unit}"
    return f"{v:,.0f} {unit}"


def _median(xs: list[float | None]) -> float | None:
    got = [x for x in xs if x is not None]
    return statistics.median(got) if got else None


def render(args: argparse.Namespace, cmd: str, mach: list[tuple[str, str]],
           done: list[tuple[Bench, list[J], list[str]]], wall_s: float) -> str:
    out = ["# Performance report", "",
           "Written by `bench/report.py` (`make bench`). Every figure is the median over the "
           "repeated runs; every baseline is measured inside the same benchmark run as its "
           "figure and its median taken the same way; the ratio is figure / baseline for rates "
           "and baseline / figure for times, so **> 1 always means Wattrail is ahead**. The "
           "machine is shared by the services, the load generators and the system under test, "
           "so compare ratios rather than absolute figures across machines.", ""]
    if args.quick:
        out += ["> **Quick smoke run** (`--quick`): tiny scales, to show the chain works. "
                "These figures are not the ones to quote.", ""]
    out += ["## Machine", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in mach], "",
            f"Command: `{cmd}` — {args.repeat} repeat(s), wall time {wall_s / 60:.1f} min.", ""]
    for b, runs, errors in done:
        line = shlex.join(["bench/" + b.script, *(b.quick if args.quick else b.full)])
        envs = " ".join(f"{k}={v}" for k, v in b.env.items())
        out += [f"## {b.area}", "", f"`{envs + ' ' if envs else ''}.venv/bin/python {line}`", ""]
        if b.note:
            out += [b.note, ""]
        if not runs:
            out += [f"**Failed**: {'; '.join(errors) or 'no run finished'}", ""]
            continue
        out += ["| figure | median | runs | baseline (same run) | baseline median | ratio | target |",
                "|---|---|---|---|---|---|---|"]
        for f in b.figures:
            vals = [f.get(j) for j in runs]
            med = _median(vals)
            runs_txt = ", ".join(_fmt(v, f.unit) for v in vals) if len(vals) > 1 else str(len(vals))
            base = _median([f.base(j) for j in runs]) if f.base else None
            ratio = "—"
            if med is not None and base:
                r = med / base if f.higher_is_better else base / med
                ratio = f"{r:.2f}x"
            out.append(f"| {f.name} | {_fmt(med, f.unit)} | {runs_txt} | {f.baseline or '—'} | "
                       f"{_fmt(base, f.unit) if f.base else '—'} | {ratio} | {f.target or '—'} |")
        if errors:
            out += ["", f"{len(errors)} of {len(runs) + len(errors)} runs failed: "
                        + "; ".join(errors)]
        out.append("")
    out += ["Per-run logs and JSON were in `" + str(args.logs) + "` when the report was written.", ""]
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--repeat", type=int, default=3, help="runs of every benchmark (median)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "performance.md")
    ap.add_argument("--quick", action="store_true", help="tiny scales: a smoke run")
    ap.add_argument("--only", help="comma-separated benchmark keys (default: all)")
    ap.add_argument("--logs", type=Path, help="keep per-run output and JSON here")
    ap.add_argument("--timeout", type=float, help="seconds per benchmark run "
                                                  "(default 3600, --quick 600)")
    args = ap.parse_args()
    cmd = shlex.join([".venv/bin/python", "bench/report.py", *sys.argv[1:]])
    all_b = benches(full=not args.quick)
    keys = [b.key for b in all_b]
    chosen = all_b if not args.only else [b for b in all_b if b.key in args.only.split(",")]
    if args.only and len(chosen) != len(args.only.split(",")):
        ap.error(f"--only takes keys from {', '.join(keys)}")
    args.logs = args.logs or Path(tempfile.mkdtemp(prefix="wattrail-bench-"))
    args.logs.mkdir(parents=True, exist_ok=True)
    timeout = args.timeout or (600 if args.quick else 3600)

    env = dict(os.environ)
    state: Path | None = None
    versions: dict[str, str] = {}
    if not (env.get("WATTRAIL_TEST_DSN") and env.get("WATTRAIL_TEST_MQTT")
            and env.get("WATTRAIL_TEST_TLS_DIR")):
        state = Path(tempfile.mkdtemp(prefix="wt-bench-report-"))
        up = subprocess.run([PY, str(REPO / "scripts/services"), "--state-dir", str(state), "up",
                             "--json"], capture_output=True, text=True)
        if up.returncode != 0:
            print(up.stderr, file=sys.stderr)
            return 1
        svc = json.loads(up.stdout)
        versions = dict(svc.get("versions", {}))
        env.update(WATTRAIL_TEST_DSN=svc["dsn_admin"],
                   WATTRAIL_TEST_MQTT=f"{svc['mqtt_host']}:{svc['mqtt_port']}",
                   WATTRAIL_TEST_TLS_DIR=svc["tls_dir"])
    t_all = time.monotonic()
    done: list[tuple[Bench, list[J], list[str]]] = []
    try:
        versions = {**_db_versions(env["WATTRAIL_TEST_DSN"]), **versions}
        if "mosquitto" not in versions and shutil.which("mosquitto"):
            h = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True)
            versions["mosquitto"] = (h.stdout or h.stderr).split("\n", 1)[0]
        for b in chosen:
            runs: list[J] = []
            errors: list[str] = []
            for i in range(args.repeat):
                out_json = args.logs / f"{b.key}-{i + 1}.json"
                log = args.logs / f"{b.key}-{i + 1}.log"
                argv = [PY, str(REPO / "bench" / b.script),
                        *(b.quick if args.quick else b.full), "--json", str(out_json)]
                print(f"== [{b.key} {i + 1}/{args.repeat}] {shlex.join(argv[1:])}", flush=True)
                t = time.monotonic()
                try:
                    with log.open("w") as fh:
                        rc = subprocess.run(argv, env={**env, **b.env}, cwd=REPO, stdout=fh,
                                            stderr=subprocess.STDOUT, timeout=timeout).returncode
                except subprocess.TimeoutExpired:
                    rc = -1
                took = time.monotonic() - t
                if rc == 0 and out_json.exists():
                    runs.append(json.loads(out_json.read_text()))
                    print(f"   ok in {took:.0f} s", flush=True)
                else:
                    what = "timed out" if rc == -1 else f"exit {rc}"
                    errors.append(f"run {i + 1} {what} after {took:.0f} s")
                    tail = log.read_text().strip().splitlines()[-5:]
                    print(f"   FAILED ({what}); last lines of {log}:", *tail, sep="\n   ",
                          flush=True)
            done.append((b, runs, errors))
    finally:
        if state is not None:
            subprocess.run([PY, str(REPO / "scripts/services"), "--state-dir", str(state),
                            "down", "--purge"], capture_output=True, check=False)
            shutil.rmtree(state, ignore_errors=True)
    text = render(args, cmd, machine(versions), done, time.monotonic() - t_all)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"written: {args.out}")
    return 1 if any(not r or e for _, r, e in done) else 0


if __name__ == "__main__":
    sys.exit(main())
