"""Sign + outbox + publish throughput of the edge agent, in readings per second.

The real `edge.agent.Agent.seal` (CBOR payload, COSE_Sign1 / Ed25519, SQLite WAL append with
synchronous=FULL, i.e. one fsync per envelope) with its real `Publisher` thread sending to a
real TLS Mosquitto (QoS 1, window 64). One envelope carries `--batch` SDM630-like readings
with every field set; the clock runs from the first seal until the broker has PUBACKed the
last envelope. Also printed: the seal loop alone (sign + encode + fsync'd append), so the
share that publishing adds is visible.

The broker: `WATTRAIL_TEST_MQTT` + `WATTRAIL_TEST_TLS_DIR` if set (e.g.
`eval "$(scripts/services env)"`), else a private instance via
`scripts/services --state-dir <tmp> up`, stopped at the end.

    .venv/bin/python bench/edge_seal.py [--batch 1000 --batch 5000] [--envelopes 60] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import add_json_arg, write_json
from edge.agent import Agent
from edge.config import AgentConfig, BrokerSettings, MeterConfig
from protocols.reading import Reading
from security.keys import generate_key, save_private_key

REPO = Path(__file__).resolve().parents[1]
SERVICES = [sys.executable, str(REPO / "scripts" / "services")]


@contextlib.contextmanager
def broker() -> Iterator[tuple[str, int, Path]]:
    mqtt, tls = os.environ.get("WATTRAIL_TEST_MQTT"), os.environ.get("WATTRAIL_TEST_TLS_DIR")
    if mqtt and tls:
        host, port = mqtt.rsplit(":", 1)
        yield host, int(port), Path(tls)
        return
    state = Path(tempfile.mkdtemp(prefix="edge-seal-"))
    out = subprocess.run([*SERVICES, "--state-dir", str(state), "up", "--json"], check=True,
                         capture_output=True, text=True)
    st = json.loads(out.stdout)
    try:
        yield st["mqtt_host"], int(st["mqtt_port"]), Path(st["tls_dir"])
    finally:
        subprocess.run([*SERVICES, "--state-dir", str(state), "down", "--purge"],
                       capture_output=True, check=False)


def readings(n: int, ts: int) -> list[Reading]:
    return [Reading(f"MTR-{i:06d}", ts, 1_234_567.0 + i, 12.5, 3456.0, 7.0, 231.2, 230.9, 229.8,
                    5.1, 4.9, 5.3, 0.4, 3512.0, 420.0, 0.99, 50.01) for i in range(n)]


def one_run(host: str, port: int, tls: Path, batch: int, envelopes: int,
            tmp: Path) -> tuple[float, float, int]:
    agent_id = f"bench-{uuid.uuid4().hex[:8]}"
    cert = json.loads(subprocess.run(
        [*SERVICES, "--state-dir", str(tls.parent), "issue-client", agent_id], check=True,
        capture_output=True, text=True).stdout)
    key = tmp / f"{agent_id}.key"
    save_private_key(generate_key(), key)
    cfg = AgentConfig(
        agent_id=agent_id, signing_key=key, outbox=tmp / f"{agent_id}.db",
        meters=[MeterConfig(id="unused", map="sdm630")],
        broker=BrokerSettings(host=host, port=port, ca=tls / "ca.crt", cert=cert["cert"],
                              key=cert["key"], resend_after_s=600))
    agent = Agent(cfg)
    batches = [readings(batch, 1_767_225_600_000 + k * 15_000) for k in range(envelopes)]
    agent.publisher.start()
    deadline = time.monotonic() + 10
    while agent.publisher.state.value != "connected" and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        t0 = time.perf_counter()
        for rs in batches:
            assert agent.seal(rs) is not None
        t_sealed = time.perf_counter() - t0
        last = agent.outbox.head().seq
        deadline = time.monotonic() + 120
        while agent.publisher.stats.last_puback_seq < last and time.monotonic() < deadline:
            time.sleep(0.001)
        t_total = time.perf_counter() - t0
        assert agent.publisher.stats.last_puback_seq == last, "not all envelopes PUBACKed"
        size = agent.outbox.size_bytes // max(1, agent.outbox.depth)
    finally:
        agent.close()
    total = batch * envelopes
    return total / t_total, total / t_sealed, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, action="append", help="readings per envelope")
    ap.add_argument("--envelopes", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    add_json_arg(ap)
    args = ap.parse_args()
    figures: dict[str, dict[str, float]] = {}
    batches = args.batch or [200, 1000, 5000]
    print("command:", shlex.join([sys.executable, *sys.argv]))
    with broker() as (host, port, tls), tempfile.TemporaryDirectory() as tmp:
        print(f"broker {host}:{port} (TLS, client certificates), outbox in {tmp}")
        for batch in batches:
            e2e, seal_only = [], []
            size = 0
            for _ in range(args.runs):
                a, b, size = one_run(host, port, tls, batch, args.envelopes, Path(tmp))
                e2e.append(a)
                seal_only.append(b)
            print(f"batch {batch:>5} readings/envelope ({size / 1024:,.0f} KiB, "
                  f"{args.envelopes} envelopes): sign+outbox+publish "
                  f"{statistics.median(e2e):>9,.0f} readings/s median "
                  f"(runs {', '.join(f'{x:,.0f}' for x in e2e)}); "
                  f"sign+outbox alone {statistics.median(seal_only):,.0f} readings/s")
            figures[str(batch)] = {"readings_per_s": statistics.median(e2e),
                                   "seal_only_readings_per_s": statistics.median(seal_only)}
    write_json(args.json, {"batches": figures, "envelopes": args.envelopes})


if __name__ == "__main__":
    main()
