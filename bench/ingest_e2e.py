"""End-to-end ingest throughput and latency: pre-signed envelopes -> TLS Mosquitto ->
`wattrail ingest` processes -> TimescaleDB, sustained for --seconds.

    .venv/bin/python bench/ingest_e2e.py [--seconds 60] [--ingestors 2] [--agents 8]
        [--per-envelope 500] [--single-mode-seconds 20] [--json OUT]

`--ingestors 1,2` measures the batch-signed mode once per ingestor count (scaling); the paced
latency and per-reading modes use the last count.

What it prints:
- batch-signed mode: readings/s committed (median over 5-s windows after a warm-up) and the
  reading -> committed latency p50/p99 (publish time to the first poll that sees the agent's
  committed prefix cover it; the poll runs every 100 ms, so latencies are +-0.1 s);
- per-reading-signature mode (one reading per envelope) for comparison;
- baseline, same run and same database: a plain binary COPY of the same rows into an
  identical readings hypertable, with no verification, no broker, no chain checks: the ratio
  says what the pipeline costs on top of the database's own write rate.

Services: uses WATTRAIL_TEST_DSN / WATTRAIL_TEST_MQTT / WATTRAIL_TEST_TLS_DIR when set, else
starts a private instance with scripts/services (and stops it at the end).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._common import add_json_arg, write_json  # noqa: E402  (after sys.path)

T0 = 1_767_225_600_000  # 2026-01-01


def _gen_agent(args: tuple[str, bytes, int, int, int, str]) -> str:
    """Sign `n_env` envelopes of `per` readings for one agent into a length-prefixed file."""
    agent_id, seed, n_env, per, meter_base, out = args
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocols.envelope import GENESIS_PREV_HASH, ClockStatus, Payload, encode_payload
    from protocols.envelope import envelope_hash as env_hash
    from protocols.reading import Reading
    from security.keys import key_id, sign_envelope

    key = Ed25519PrivateKey.from_private_bytes(seed)
    kid = key_id(key)
    prev = GENESIS_PREV_HASH
    with open(out, "wb") as fh:
        for seq in range(1, n_env + 1):
            ts = T0 + seq * 900_000  # one poll cycle every 15 simulated minutes
            rs = [Reading(f"{agent_id}-M{meter_base + i:05d}", ts, import_wh=1e6 + seq * 250.0 + i,
                          export_wh=0.0, import_varh=1000.0 + seq, export_varh=0.0, v_l1=231.0,
                          v_l2=230.5, v_l3=229.8, i_l1=4.1, i_l2=3.9, i_l3=4.4, i_n=0.3,
                          p_w=2800.0 + i, q_var=120.0, pf=0.97, freq_hz=50.01)
                  for i in range(per)]
            data = sign_envelope(key, kid, encode_payload(
                Payload(agent_id, kid, seq, prev, ts, ClockStatus.SYNCED, rs)))
            prev = env_hash(data)
            fh.write(struct.pack(">I", len(data)) + data)
    return out


def _read_envelopes(path: str) -> list[bytes]:
    raw = Path(path).read_bytes()
    out, i = [], 0
    while i < len(raw):
        (n,) = struct.unpack_from(">I", raw, i)
        out.append(raw[i + 4:i + 4 + n])
        i += 4 + n
    return out


def _publisher(host: str, port: int, ca: str, certs: dict[str, tuple[str, str]],
               files: dict[str, str], stamps_out: str, envelopes_per_s: float = 0.0) -> None:
    """Publish every agent's envelopes as fast as the broker takes them (QoS 1), or paced at
    `envelopes_per_s` per agent when given (latency is only meaningful below saturation)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    stamps: dict[str, list[float]] = {}

    def run(agent: str) -> None:
        envs = _read_envelopes(files[agent])
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=agent, protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=ca, certfile=certs[agent][0], keyfile=certs[agent][1])
        c.max_inflight_messages_set(200)
        c.max_queued_messages_set(0)
        c.connect(host, port)
        c.loop_start()
        times = stamps.setdefault(agent, [])
        t_next = time.monotonic()
        for data in envs:
            if envelopes_per_s:
                t_next += 1.0 / envelopes_per_s
                time.sleep(max(0.0, t_next - time.monotonic()))
            times.append(time.time())
            info = c.publish(f"wattrail/v1/{agent}/readings", data, qos=1)
            info.wait_for_publish(60)
        c.disconnect()
        c.loop_stop()

    threads = [threading.Thread(target=run, args=(a,), daemon=True) for a in files]
    for t in threads:
        t.start()
    # written as we go: the harness may stop us once its measuring window is over
    while any(t.is_alive() for t in threads):
        Path(stamps_out).write_text(json.dumps(stamps))
        time.sleep(1.0)
    Path(stamps_out).write_text(json.dumps(stamps))


def services() -> tuple[dict[str, str], Path | None]:
    if os.environ.get("WATTRAIL_TEST_DSN") and os.environ.get("WATTRAIL_TEST_MQTT"):
        host, port = os.environ["WATTRAIL_TEST_MQTT"].rsplit(":", 1)
        return {"dsn_admin": os.environ["WATTRAIL_TEST_DSN"], "mqtt_host": host,
                "mqtt_port": port, "tls_dir": os.environ["WATTRAIL_TEST_TLS_DIR"]}, None
    state = Path(tempfile.mkdtemp(prefix="wt-bench-ingest-"))
    out = subprocess.run([sys.executable, str(REPO / "scripts/services"), "--state-dir",
                          str(state), "up", "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout), state


def issue(state_tls: str, cn: str) -> tuple[str, str]:
    out = subprocess.run([sys.executable, str(REPO / "scripts/services"), "--state-dir",
                          str(Path(state_tls).parent), "issue-client", cn],
                         capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    return d["cert"], d["key"]


def stop_services(state: Path | None) -> None:
    if state is not None:
        subprocess.run([sys.executable, str(REPO / "scripts/services"), "--state-dir",
                        str(state), "down", "--purge"], capture_output=True, check=False)


def scratch_database(svc: dict[str, str], migrated: bool = True) -> str:
    """A fresh database on the instance (TimescaleDB, Wattrail's schema when `migrated`)."""
    import psycopg

    from cloud.store.migrate import migrate

    db = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(svc["dsn_admin"], autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = svc["dsn_admin"].rsplit("/", 1)[0] + "/" + db
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.commit()
        if migrated:
            migrate(conn)
    return dsn


def drop_database(svc: dict[str, str], dsn: str) -> None:
    import psycopg

    with psycopg.connect(svc["dsn_admin"], autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')


def run_mode(svc: dict[str, str], dsn: str, *, agents: int, per: int, seconds: float,
             ingestors: int, workdir: Path, label: str, rate: float = 0.0) -> dict[str, float]:
    import psycopg
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from cloud.ingest.writer import register_key
    from security.keyring import KeyCertificate
    from security.keys import key_id, raw_public_key

    tag = uuid.uuid4().hex[:6]
    names = [f"bench-{tag}-{i}" for i in range(agents)]
    seeds = {a: os.urandom(32) for a in names}
    # enough envelopes to keep the pipeline busy for `seconds` at the best rate we could
    # expect in this mode (the issue's 150k readings/s batched; ~10k envelopes/s when every
    # reading carries its own signature), without spending minutes pre-signing
    ceiling = (rate or 150_000) if per > 1 else 4_000
    n_env = max(20, int(ceiling * (seconds + 10) / (agents * per)))
    t_gen = time.monotonic()
    with mp.Pool(os.cpu_count() or 2) as pool:
        files = dict(zip(names, pool.map(_gen_agent, [
            (a, seeds[a], n_env, per, 0, str(workdir / f"{a}.env")) for a in names]), strict=True))
    gen_s = time.monotonic() - t_gen
    with psycopg.connect(dsn) as conn, conn.transaction():
        for a in names:
            k = Ed25519PrivateKey.from_private_bytes(seeds[a])
            register_key(conn, KeyCertificate(a, key_id(k), raw_public_key(k), T0 - 10**10,
                                              T0 + 10**12))
    certs = {a: issue(svc["tls_dir"], a) for a in names}
    icert = issue(svc["tls_dir"], "wattrail-ingestor")
    env = dict(os.environ, WATTRAIL_DSN=dsn, WATTRAIL_MQTT_HOST=svc["mqtt_host"],
               WATTRAIL_MQTT_PORT=str(svc["mqtt_port"]),
               WATTRAIL_MQTT_CA=str(Path(svc["tls_dir"]) / "ca.crt"),
               WATTRAIL_INGESTOR_CERT=icert[0], WATTRAIL_INGESTOR_KEY=icert[1])
    group = f"bench{tag}"
    procs = [subprocess.Popen([sys.executable, "-m", "wattrail.cli", "ingest", "--share-group",
                               group, "--max-batch", "64", "--max-wait", "0.05"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(ingestors)]
    time.sleep(3)  # connected and subscribed
    stamps_path = workdir / f"stamps-{tag}.json"
    pub = mp.Process(target=_publisher, args=(svc["mqtt_host"], int(svc["mqtt_port"]),
                                              env["WATTRAIL_MQTT_CA"], certs, files,
                                              str(stamps_path), rate / (agents * per)))
    t_start = time.time()
    pub.start()
    seen: dict[str, list[tuple[float, int]]] = {a: [] for a in names}
    samples: list[tuple[float, int]] = []
    total = n_env * agents
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + seconds + 60
        while time.monotonic() < deadline:
            now = time.time()
            rows = conn.execute("SELECT agent_id, committed_upto FROM agent_progress "
                                "WHERE agent_id = ANY(%s)", [names]).fetchall()
            done = 0
            for a, upto in rows:
                if not seen[a] or seen[a][-1][1] != upto:
                    seen[a].append((now, upto))
                done += upto
            samples.append((now, done))
            if done >= total or now - t_start > seconds + 5:
                break
            time.sleep(0.1)
    pub.join(30)
    if pub.is_alive():  # the window is over; what is still queued does not count
        pub.terminate()
        pub.join(10)
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(30)
    stamps = json.loads(stamps_path.read_text()) if stamps_path.exists() else {}
    # throughput: committed readings per 5-s window, skipping the first 5 s (warm-up)
    rates = []
    w0 = t_start + 5
    while True:
        w1 = w0 + 5
        inside = [s for s in samples if w0 <= s[0] <= w1]
        if len(inside) < 2 or inside[-1][0] < w1 - 0.3:
            break
        rates.append((inside[-1][1] - inside[0][1]) * per / (inside[-1][0] - inside[0][0]))
        w0 = w1
    lat = []
    for a, times in stamps.items():
        marks = seen[a]
        j = 0
        for seq, t_pub in enumerate(times, 1):
            while j < len(marks) and marks[j][1] < seq:
                j += 1
            if j < len(marks):
                lat.append(marks[j][0] - t_pub)
    committed = samples[-1][1] if samples else 0
    lat.sort()
    result = {
        "mode": label, "agents": agents, "readings_per_envelope": per, "ingestors": ingestors,
        "envelopes_committed": committed, "envelopes_total": total,
        "readings_per_s_median": statistics.median(rates) if rates else float("nan"),
        "windows": len(rates),
        "latency_p50_s": lat[len(lat) // 2] if lat else float("nan"),
        "latency_p99_s": lat[int(len(lat) * 0.99)] if lat else float("nan"),
        "pregeneration_s": gen_s,
    }
    return result


def baseline_copy(dsn: str, rows: int) -> float:
    """Plain binary COPY of the same shape of rows into a fresh readings-like hypertable."""
    import psycopg

    from protocols.reading import MEASURED_FIELDS

    cols = ", ".join(f"{f} float8" for f in MEASURED_FIELDS)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE bench_copy (meter_id text COLLATE \"C\" NOT NULL, "
                     f"ts timestamptz NOT NULL, {cols}, status int4, quality int2, "
                     f"agent_id text, seq int8, UNIQUE (meter_id, ts))")
        conn.execute("SELECT create_hypertable('bench_copy', by_range('ts', INTERVAL '1 day'), "
                     "create_default_indexes => false)")
        import datetime as dt

        base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        vals = (1e6, 0.0, 1000.0, 0.0, 231.0, 230.5, 229.8, 4.1, 3.9, 4.4, 0.3, 2800.0, 120.0,
                0.97, 50.01)
        t = time.monotonic()
        with conn.cursor() as cur, cur.copy(
                "COPY bench_copy FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["text", "timestamptz", *["float8"] * 15, "int4", "int2", "text",
                            "int8"])
            for i in range(rows):
                copy.write_row((f"M{i % 2000:05d}", base + dt.timedelta(minutes=15 * (i // 2000)),
                                *vals, 0, 0, "bench", i // 2000))
        return rows / (time.monotonic() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--ingestors", default="2",
                    help="ingestor processes; a comma list (1,2) runs the batch mode per count")
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--per-envelope", type=int, default=500)
    ap.add_argument("--single-mode-seconds", type=float, default=20)
    ap.add_argument("--latency-rate", type=float, default=40_000,
                    help="readings/s offered in the paced latency run (below saturation)")
    ap.add_argument("--latency-seconds", type=float, default=30)
    ap.add_argument("--baseline-rows", type=int, default=300_000)
    add_json_arg(ap)
    args = ap.parse_args()
    counts = [int(x) for x in str(args.ingestors).split(",")]

    svc, state = services()
    results = []
    try:
        dsn = scratch_database(svc)
        try:
            with tempfile.TemporaryDirectory() as work:
                for n in counts:
                    results.append(run_mode(svc, dsn, agents=args.agents, per=args.per_envelope,
                                            seconds=args.seconds, ingestors=n,
                                            workdir=Path(work), label="batch-signed"))
                if args.latency_seconds > 0:
                    results.append(run_mode(svc, dsn, agents=args.agents, per=args.per_envelope,
                                            seconds=args.latency_seconds, ingestors=counts[-1],
                                            workdir=Path(work), label="paced latency",
                                            rate=args.latency_rate))
                if args.single_mode_seconds > 0:
                    results.append(run_mode(svc, dsn, agents=args.agents, per=1,
                                            seconds=args.single_mode_seconds,
                                            ingestors=counts[-1], workdir=Path(work),
                                            label="per-reading-signature"))
            base = baseline_copy(dsn, args.baseline_rows)
        finally:
            drop_database(svc, dsn)
    finally:
        stop_services(state)
    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores; services, publisher and ingestors share them")
    for r in results:
        print(f"{r['mode']:>22}: {r['readings_per_s_median']:>10,.0f} readings/s committed "
              f"(median of {r['windows']} 5-s windows; {r['ingestors']} ingestors, "
              f"{r['agents']} agents, {r['readings_per_envelope']} readings/envelope); "
              f"latency p50 {r['latency_p50_s']:.2f} s, p99 {r['latency_p99_s']:.2f} s; "
              f"{r['envelopes_committed']}/{r['envelopes_total']} envelopes committed")
    print(f"{'baseline plain COPY':>22}: {base:>10,.0f} rows/s (same database, one client)")
    for r in results:
        print(f"{'ratio ' + r['mode']:>22}: {r['readings_per_s_median'] / base:.2f} of the baseline")
    print(json.dumps({"results": results, "baseline_copy_rows_per_s": base}))
    write_json(args.json, {"results": results, "baseline_copy_rows_per_s": base})


if __name__ == "__main__":
    main()
