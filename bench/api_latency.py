"""Query API latency under load: p50/p99 and requests/s on loopback.

    .venv/bin/python bench/api_latency.py [--concurrency 1,8] [--seconds 10] [--runs 3]
        [--transformers 1000] [--state-dir /tmp/wt-bench-api] [--keep]

Data (loaded straight into a fresh database with `generate_series`, no pipeline): 1,000
transformers on 50 feeders in 10 regions; one analysis run over a year at an hourly step
(analysis_loss for every transformer, feeder and region, and 1,000 x 8,760 = 8.76 M rows of
analysis_loss_intervals), then 12 monthly runs (analysis_loss only), the latest being the
default run. The API runs as `wattrail api` (uvicorn, one worker) in a subprocess; the load
generator is another process: an asyncio httpx client with N keep-alive connections (each
of the comma-separated --concurrency values in turn), each connection sending its next request
when the previous one answered (closed loop: at N > 1, latency includes queueing behind the
other N - 1 requests on the single worker).

Scenarios:
  year-page  GET /v1/loss/transformer/{tx}/intervals?run_id=<year>&resolution=hour&limit=1000:
             the first page (1,000 hours) of one transformer's year at hourly resolution (a
             request aggregates the run's series in hourly buckets and pages by cursor);
  year-walk  the same report followed by cursor to its end: 9 requests, 8,760 hours; one
             sample is the whole walk;
  worst-50   GET /v1/loss?level=transformer&region_id=<r>&sort=worst&limit=50 on the latest
             (monthly) run: the region's 50 transformers with the highest NTL over the month.
The transformer and region of each request rotate, so no answer comes from a warm row alone.

Services: a private instance under --state-dir with scripts/services (stopped at the end
unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._common import add_json_arg, write_json  # noqa: E402  (after sys.path)

REGIONS, FEEDERS_PER_REGION = 10, 5
YEAR_START = "2025-01-01T00:00:00Z"


# -- data ------------------------------------------------------------------------------------
def load(dsn: str, n_tx: int) -> dict[str, Any]:
    import psycopg

    n_fd = REGIONS * FEEDERS_PER_REGION
    t = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO regions (region_id, name) SELECT 'R' || lpad(r::text, 2, '0'), "
                     "'Region ' || r FROM generate_series(0, %s) r", [REGIONS - 1])
        conn.execute("INSERT INTO feeders (feeder_id, region_id, length_km) SELECT "
                     "'F' || lpad(f::text, 3, '0'), 'R' || lpad((f %% %s)::text, 2, '0'), 5 + f %% 7 "
                     "FROM generate_series(0, %s) f", [REGIONS, n_fd - 1])
        conn.execute("INSERT INTO transformers (transformer_id, feeder_id, rating_kva, no_load_loss_w, "
                     "load_loss_w) SELECT 'TX' || lpad(x::text, 4, '0'), "
                     "'F' || lpad((x %% %s)::text, 3, '0'), 250, 400, 3000 FROM generate_series(0, %s) x",
                     [n_fd, n_tx - 1])
        # run 1: the year, hourly; runs 2..13: the months, latest last
        runs = [(YEAR_START, "1 year")] + [
            (f"2025-{m:02d}-01T00:00:00Z", "1 month") for m in range(1, 13)]
        run_ids = []
        for start, span in runs:
            row = conn.execute(
                "INSERT INTO analysis_runs (period_start, period_end, step_s, started_at, finished_at, "
                "parameters, meters, transformers, feeders, expected_readings, present_readings, "
                "completeness, input_sha256, seconds) VALUES (%s::timestamptz, %s::timestamptz + "
                "%s::interval, 3600, now(), now(), '{\"bench\": true}', %s, %s, %s, 0, 0, 1.0, "
                "sha256(%s::bytea), '{}') RETURNING run_id",
                [start, start, span, n_tx * 100, n_tx, n_fd, f"{start}{span}".encode()]).fetchone()
            assert row is not None
            run_ids.append(int(row[0]))
        # per run and entity: NTL spread so every region has a clear worst list; 2 % unknown
        for run in run_ids:
            for level, prefix, width, n in (("transformer", "TX", 4, n_tx), ("feeder", "F", 3, n_fd),
                                            ("region", "R", 2, REGIONS)):
                ids = f"SELECT '{prefix}' || lpad(i::text, {width}, '0') FROM generate_series(0, {n - 1}) i"
                conn.execute(
                    "INSERT INTO analysis_loss SELECT %s, %s, e.id, 1e6, 1e6 - l, l, l / 1e4, 0.04 * 1e6, "
                    "CASE WHEN h > 0.02 THEN l - 0.04e6 END, 1e3, 1.0, false, "
                    "CASE WHEN h > 0.02 THEN greatest(l - 0.04e6, 0) * 0.0002 END "
                    f"FROM ({ids}) e(id), LATERAL (SELECT abs(hashtext(e.id || %s)) / 2147483647.0 AS h) r, "
                    "LATERAL (SELECT 0.03e6 + 0.1e6 * h AS l) ll",
                    [run, level, str(run)])
        year = run_ids[0]
        conn.execute(
            "INSERT INTO analysis_loss_intervals SELECT %s, 'transformer', "
            "'TX' || lpad(x::text, 4, '0'), ts, "
            "100e3 + 20e3 * sin(extract(epoch FROM ts) / 13751), 95e3, 5e3 + x %% 100, 5.0, 4e3, "
            "1e3 + x %% 100, 50, 1.0, false, 0.2 FROM generate_series(0, %s) x, "
            "generate_series(%s::timestamptz, %s::timestamptz + interval '1 year' - interval '1 hour', "
            "interval '1 hour') ts", [year, n_tx - 1, YEAR_START, YEAR_START])
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        rows = conn.execute("SELECT count(*) FROM analysis_loss_intervals").fetchone()
    return {"year_run": year, "intervals": rows[0] if rows else 0,
            "seconds": round(time.perf_counter() - t, 1)}


# -- load generator (its own process) ---------------------------------------------------------
async def _generate(base: str, token: str, scenario: str, conc: int, seconds: float,
                    n_tx: int, year_run: int) -> dict[str, Any]:
    import httpx

    lat: list[float] = []
    requests = 0
    errors = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)

    async def one(client: httpx.AsyncClient, k: int) -> int:
        """One sample; returns the number of HTTP requests it took."""
        if scenario == "worst-50":
            params = {"level": "transformer", "region_id": f"R{k % REGIONS:02d}", "sort": "worst",
                      "limit": 50}
            r = await client.get("/v1/loss", params=params)
            ok = r.status_code == 200 and len(r.json()["items"]) == 50
            return 1 if ok else -1
        tx = f"TX{(k * 7919) % n_tx:04d}"
        params: dict[str, Any] = {"run_id": year_run, "resolution": "hour", "limit": 1000}
        n, got = 0, 0
        while True:
            r = await client.get(f"/v1/loss/transformer/{tx}/intervals", params=params)
            n += 1
            if r.status_code != 200:
                return -n
            body = r.json()
            got += len(body["items"])
            if scenario == "year-page" or body["next_cursor"] is None:
                break
            params["cursor"] = body["next_cursor"]
        expected = 1000 if scenario == "year-page" else 8760
        return n if got == expected else -n

    async def worker(w: int) -> None:
        nonlocal requests, errors
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                     limits=limits, timeout=30) as client:
            k = w * 1_000_003
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                n = await one(client, k)
                dt = time.perf_counter() - t0
                k += 1
                if n < 0:
                    errors += 1
                    requests += -n
                else:
                    lat.append(dt)
                    requests += n

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conc)))
    wall = time.perf_counter() - t0
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {"scenario": scenario, "samples": len(lat), "errors": errors, "requests": requests,
            "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": lat[-1] * 1000 if lat else None,
            "req_per_s": requests / wall, "samples_per_s": len(lat) / wall}


def generator_main(a: argparse.Namespace) -> None:
    res = asyncio.run(_generate(a.url, os.environ["BENCH_TOKEN"], a.scenario, int(a.concurrency), a.seconds,
                                a.transformers, a.year_run))
    print(json.dumps(res))


# -- orchestration -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _services(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "services"), "--state-dir", str(state_dir),
                           *args], capture_output=True, text=True, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", default="1,8", help="connections, comma-separated values")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--transformers", type=int, default=1000)
    ap.add_argument("--state-dir", type=Path, default=Path("/tmp/wt-bench-api"))
    ap.add_argument("--keep", action="store_true", help="leave the services running")
    add_json_arg(ap)
    ap.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)  # the load generator
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--scenario", help=argparse.SUPPRESS)
    ap.add_argument("--year-run", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.generate:
        generator_main(a)
        return 0

    import httpx
    import psycopg

    from cloud.api.tokens import create_token
    from wattrail.demo.setup import fresh_database

    up = _services(a.state_dir, "up", "--json")
    if up.returncode != 0:
        print(up.stderr, file=sys.stderr)
        return 1
    svc = json.loads(up.stdout)
    api: subprocess.Popen[bytes] | None = None
    try:
        dsn = fresh_database(svc["dsn_admin"], "wattrail_bench_api")
        info = load(dsn, a.transformers)
        print(f"loaded {a.transformers} transformers, {info['intervals']:,} hourly loss intervals "
              f"(year run {info['year_run']}) + 12 monthly runs in {info['seconds']} s")
        with psycopg.connect(dsn) as conn:
            token = create_token(conn, "engineer", "bench").secret
        port = _free_port()
        env = dict(os.environ, WATTRAIL_DSN=dsn, WATTRAIL_API_RATE_LIMIT_PER_S="1000000",
                   WATTRAIL_API_RATE_LIMIT_BURST="1000000", WATTRAIL_API_POOL_MAX_SIZE="10")
        log = a.state_dir / "api.log"
        with open(log, "wb") as out:
            api = subprocess.Popen([sys.executable, "-m", "wattrail.cli", "api", "--host", "127.0.0.1",
                                    "--port", str(port)], env=env, cwd=REPO, stdout=out,
                                   stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or api.poll() is not None:
                print(f"the API did not start; see {log}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for scenario, conc in [(s, int(c)) for c in a.concurrency.split(",")
                               for s in ("year-page", "year-walk", "worst-50")]:
            cmd = [sys.executable, __file__, "--generate", "--url", base, "--scenario", scenario,
                   "--concurrency", str(conc), "--transformers", str(a.transformers),
                   "--year-run", str(info["year_run"])]
            genv = dict(os.environ, BENCH_TOKEN=token)
            # a short warm-up (pool, plans, caches), then the measured runs
            subprocess.run([*cmd, "--seconds", "2"], env=genv, check=True, capture_output=True)
            for _ in range(a.runs):
                res = subprocess.run([*cmd, "--seconds", str(a.seconds)], env=genv, check=True,
                                     capture_output=True, text=True)
                r = json.loads(res.stdout)
                results.setdefault((scenario, conc), []).append(r)
                print(f"  {scenario:9s} x{conc:<3d} p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                      f"{r['req_per_s']:7.0f} req/s  {r['samples']} samples, {r['errors']} errors")
        print(f"\nmedians of {a.runs} runs of {a.seconds:.0f} s each, one API worker, load generator "
              "in another process, all on this 2-core machine:")
        print(f"{'scenario':10s} {'conns':>5s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>8s} "
              f"{'target p99 < 100 ms':>20s}")
        failed = False
        figures: dict[str, dict[str, float]] = {}
        for (scenario, conc), rs in results.items():
            p50 = statistics.median(r["p50_ms"] for r in rs)
            p99 = statistics.median(r["p99_ms"] for r in rs)
            rps = statistics.median(r["req_per_s"] for r in rs)
            errs = sum(r["errors"] for r in rs)
            target = "n/a (9 requests)" if scenario == "year-walk" else ("met" if p99 < 100 else "MISSED")
            failed |= errs > 0
            figures[f"{scenario}@{conc}"] = {"p50_ms": p50, "p99_ms": p99, "req_per_s": rps,
                                             "errors": errs}
            print(f"{scenario:10s} {conc:5d} {p50:8.1f} {p99:8.1f} {rps:8.0f} {target:>20s}"
                  + (f"  ({errs} errors)" if errs else ""))
        print("\ncommand: .venv/bin/python bench/api_latency.py " + shlex.join(sys.argv[1:]))
        write_json(a.json, {"scenarios": figures, "transformers": a.transformers,
                            "intervals": info["intervals"]})
        return 1 if failed else 0
    finally:
        if api is not None:
            api.terminate()
            try:
                api.wait(15)
            except subprocess.TimeoutExpired:
                api.kill()
                api.wait(15)
        if not a.keep:
            _services(a.state_dir, "down")


if __name__ == "__main__":
    sys.exit(main())
