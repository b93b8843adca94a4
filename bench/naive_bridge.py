"""The Wattrail pipeline against what a typical MQTT-to-TimescaleDB bridge does, same run,
same real services (TLS Mosquitto with client certificates, TimescaleDB).

Three modes, readings/s committed end to end (median of 2-s windows after a 2-s warm-up):

  naive bridge          publishers send one JSON message per reading (QoS 1) to
                        wattrail/v1/<agent>/readings; `--bridges` bridge processes (shared
                        subscription, QoS 1) json.loads each message in the MQTT callback and
                        run one INSERT per row (autocommit) into a plain readings-shaped
                        hypertable (UNIQUE (meter_id, ts)) in a scratch database. No
                        signatures, no chain, no batching. The publishers stay at most
                        `--window` readings ahead of the inserts so the broker never drops a
                        QoS 1 message from a full queue: the bridge is the bottleneck.
  wattrail batch-signed bench/ingest_e2e.py's run_mode: pre-signed envelopes of
                        `--per-envelope` readings -> `wattrail ingest` x `--ingestors` ->
                        readings (verification, chain checks, COPY), migrated scratch database.
  per-reading signature the same with one reading per envelope: what batching signatures buys.

    .venv/bin/python bench/naive_bridge.py [--seconds 20] [--wattrail-seconds 20]
        [--per-reading-seconds 15] [--bridges 1] [--publishers 4] [--json OUT]

Services: as bench/ingest_e2e.py (WATTRAIL_TEST_DSN / WATTRAIL_TEST_MQTT / WATTRAIL_TEST_TLS_DIR,
else a private instance started and purged here).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shlex
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import ingest_e2e as e2e  # noqa: E402  (after sys.path)
from bench._common import add_json_arg, write_json  # noqa: E402
from protocols.reading import MEASURED_FIELDS  # noqa: E402

FIELDS = MEASURED_FIELDS
TABLE = (f"CREATE TABLE naive_readings (meter_id text NOT NULL, ts timestamptz NOT NULL, "
         f"{', '.join(f + ' float8' for f in FIELDS)}, UNIQUE (meter_id, ts))")
INSERT = (f"INSERT INTO naive_readings (meter_id, ts, {', '.join(FIELDS)}) VALUES "
          f"(%s, to_timestamp(%s / 1000.0), {', '.join(['%s'] * len(FIELDS))})")


def _bridge(host: str, port: int, ca: str, cert: str, key: str, dsn: str, group: str,
            inserted: Any, ready: Any, stop: Any) -> None:
    """One bridge process: subscribe, and per message: parse JSON, INSERT, autocommit."""
    import paho.mqtt.client as mqtt
    import psycopg
    from paho.mqtt.enums import CallbackAPIVersion

    conn = psycopg.connect(dsn, autocommit=True)
    cur = conn.cursor()

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        c.subscribe(f"$share/{group}/wattrail/v1/+/readings", qos=1)

    def on_subscribe(*_a: Any) -> None:
        ready.set()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        r = json.loads(msg.payload)
        cur.execute(INSERT, [r["meter_id"], r["ts"], *(r[f] for f in FIELDS)])
        inserted.value += 1

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"naive-bridge-{uuid.uuid4().hex[:6]}",
                    protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(host, port)
    c.loop_start()
    stop.wait()
    c.disconnect()
    c.loop_stop()
    conn.close()


def run_naive(svc: dict[str, str], *, seconds: float, bridges: int, publishers: int,
              window: int) -> dict[str, Any]:
    import paho.mqtt.client as mqtt
    import psycopg
    from paho.mqtt.enums import CallbackAPIVersion

    dsn = e2e.scratch_database(svc, migrated=False)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(TABLE)
            conn.execute("SELECT create_hypertable('naive_readings', by_range('ts', "
                         "INTERVAL '1 day'))")
        ca = str(Path(svc["tls_dir"]) / "ca.crt")
        icert = e2e.issue(svc["tls_dir"], "wattrail-ingestor")
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        counters = [ctx.Value("q", 0, lock=False) for _ in range(bridges)]
        readies = [ctx.Event() for _ in range(bridges)]
        group = f"naive{uuid.uuid4().hex[:6]}"
        procs = [ctx.Process(target=_bridge, args=(svc["mqtt_host"], int(svc["mqtt_port"]), ca,
                                                   icert[0], icert[1], dsn, group, counters[i],
                                                   readies[i], stop))
                 for i in range(bridges)]
        for p in procs:
            p.start()
        for r in readies:
            if not r.wait(30):
                raise RuntimeError("a naive bridge did not subscribe within 30 s")

        def inserted() -> int:
            return sum(c.value for c in counters)

        published = [0] * publishers
        done = threading.Event()
        tag = uuid.uuid4().hex[:6]

        def publish(k: int) -> None:
            agent = f"naive-{tag}-{k}"
            cert = e2e.issue(svc["tls_dir"], agent)
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=agent, protocol=mqtt.MQTTv5)
            c.tls_set(ca_certs=ca, certfile=cert[0], keyfile=cert[1])
            c.max_inflight_messages_set(200)
            c.connect(svc["mqtt_host"], int(svc["mqtt_port"]))
            c.loop_start()
            seq = 0
            while not done.is_set():
                if sum(published) - inserted() > window:
                    time.sleep(0.001)
                    continue
                seq += 1
                # 100 meters per publisher, one reading each every 15 simulated minutes
                r = {"meter_id": f"{agent}-M{seq % 100:03d}", "ts": e2e.T0 + (seq // 100) * 900_000,
                     **{f: 1000.0 + seq for f in FIELDS}}
                c.publish(f"wattrail/v1/{agent}/readings", json.dumps(r), qos=1)
                published[k] += 1
            c.disconnect()
            c.loop_stop()

        threads = [threading.Thread(target=publish, args=(k,), daemon=True)
                   for k in range(publishers)]
        t_start = time.monotonic()
        for t in threads:
            t.start()
        samples: list[tuple[float, int]] = []
        while time.monotonic() - t_start < seconds:
            samples.append((time.monotonic(), inserted()))
            time.sleep(0.1)
        done.set()
        for t in threads:
            t.join(10)
        deadline = time.monotonic() + 10  # let what is in flight land before we count
        while inserted() < sum(published) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM naive_readings").fetchone()
        stored = int(row[0]) if row else 0
    finally:
        e2e.drop_database(svc, dsn)
    rates = []
    w0 = t_start + 2
    while True:
        inside = [s for s in samples if w0 <= s[0] <= w0 + 2]
        if len(inside) < 2 or inside[-1][0] < w0 + 2 - 0.3:
            break
        rates.append((inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]))
        w0 += 2
    return {"mode": "naive bridge", "bridges": bridges, "publishers": publishers,
            "readings_per_s_median": statistics.median(rates) if rates else float("nan"),
            "windows": len(rates), "published": sum(published), "stored": stored}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20, help="naive bridge run")
    ap.add_argument("--bridges", type=int, default=1)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--window", type=int, default=2000,
                    help="readings the publishers may be ahead of the inserts")
    ap.add_argument("--wattrail-seconds", type=float, default=20)
    ap.add_argument("--per-reading-seconds", type=float, default=15)
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--per-envelope", type=int, default=500)
    ap.add_argument("--ingestors", type=int, default=2)
    add_json_arg(ap)
    args = ap.parse_args()
    svc, state = e2e.services()
    results: dict[str, dict[str, Any]] = {}
    try:
        # the naive run first: its JSON must not reach a Wattrail ingestor
        results["naive"] = run_naive(svc, seconds=args.seconds, bridges=args.bridges,
                                     publishers=args.publishers, window=args.window)
        dsn = e2e.scratch_database(svc)
        try:
            with tempfile.TemporaryDirectory() as work:
                results["wattrail"] = e2e.run_mode(
                    svc, dsn, agents=args.agents, per=args.per_envelope,
                    seconds=args.wattrail_seconds, ingestors=args.ingestors, workdir=Path(work),
                    label="batch-signed")
                if args.per_reading_seconds > 0:
                    results["per_reading"] = e2e.run_mode(
                        svc, dsn, agents=args.agents, per=1, seconds=args.per_reading_seconds,
                        ingestors=args.ingestors, workdir=Path(work),
                        label="per-reading-signature")
        finally:
            e2e.drop_database(svc, dsn)
    finally:
        e2e.stop_services(state)
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    n = results["naive"]
    w = results["wattrail"]
    print(f"naive bridge (JSON per reading, INSERT per row, {n['bridges']} bridge(s), "
          f"{n['publishers']} publishers): {n['readings_per_s_median']:,.0f} readings/s "
          f"(median of {n['windows']} 2-s windows; {n['stored']:,} rows stored of "
          f"{n['published']:,} published)")
    print(f"wattrail batch-signed ({w['readings_per_envelope']} readings/envelope, "
          f"{w['ingestors']} ingestors): {w['readings_per_s_median']:,.0f} readings/s")
    p = results.get("per_reading")
    if p:
        print(f"wattrail, one signature per reading: {p['readings_per_s_median']:,.0f} readings/s")
    print(f"wattrail / naive bridge: {w['readings_per_s_median'] / n['readings_per_s_median']:.1f}x")
    if p:
        print(f"batch-signed / per-reading signature: "
              f"{w['readings_per_s_median'] / p['readings_per_s_median']:.1f}x")
    write_json(args.json, {
        "naive_readings_per_s": n["readings_per_s_median"],
        "wattrail_readings_per_s": w["readings_per_s_median"],
        "per_reading_readings_per_s": p["readings_per_s_median"] if p else None,
        "modes": results})


if __name__ == "__main__":
    main()
