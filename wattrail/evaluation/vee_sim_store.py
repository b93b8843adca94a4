"""The database side of the VEE evaluation on the simulator (`vee_sim.py` is the pure side).

One seed in a migrated, empty database: the grid's topology imported and its region put in
`vee_sim.ZONE`; every agent's key registered; every poll cycle sealed as a real signed
envelope (seq +1, hash chain, the cycle's clock status) and taken through the ingestor's
`classify` and `store_batch` without the broker, so `envelopes.clock_status` and
`reading_conflicts` are what the ingestor writes; then `run_vee` for the month, its
`vee_intervals` read back and scored against the truth per interval.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.ingest.classify import Candidate, Incoming, Quarantine, classify
from cloud.ingest.writer import BatchResult, load_keyring, register_key, store_batch
from cloud.mdm.estimation import Method
from cloud.mdm.run import run_vee
from cloud.mdm.validation import Rule, RuleOutcome, Validation
from cloud.store import mdm_sql
from cloud.store.migrate import migrate
from cloud.store.topology import import_topology
from firmware_sim.data_faults import DataFaultRates
from firmware_sim.grid_file import write_grid
from protocols.envelope import GENESIS_PREV_HASH, Payload, encode_payload, envelope_hash
from protocols.topics import topic
from security.keyring import KeyCertificate
from security.keys import key_id, raw_public_key, sign_envelope
from wattrail.evaluation import vee, vee_sim
from wattrail.evaluation.vee_faults import Fault, Injected

F64 = npt.NDArray[np.float64]
BATCH = 200  # envelopes per store_batch, as an ingestor's batch
RECEIVED_AFTER_MS = 2_000  # the cloud receives a cycle this long after it was polled
METHODS = (Method.LINEAR, Method.LIKE_DAY, Method.LIKE_DAY_SCALED)
_INTERVALS = ("SELECT meter_id, bucket, flags, method, value_kwh FROM vee_intervals"
              " WHERE run_id = %s AND source = 'vee'")


def _key(seed: int, agent: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"{seed}/{agent}".encode()).digest())


def load(conn: psycopg.Connection[Any], s: vee_sim.Setup, polled: vee_sim.Polled) -> BatchResult:
    """Topology, keys and every cycle as the ingestor stores it (`conn` in autocommit)."""
    migrate(conn)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grid.json"
        write_grid(s.grid, path)
        import_topology(conn, path)
    conn.execute(mdm_sql.SET_TIME_ZONE_WHERE_NONE, {"tz": vee_sim.ZONE})
    keys = {a: _key(s.seed, a) for a in polled.cycles}
    for a, k in keys.items():
        register_key(conn, KeyCertificate(a, key_id(k), raw_public_key(k),
                                          (s.t0 - 86_400) * 1000, (s.t0 + 90 * 86_400) * 1000))
    ring = load_keyring(conn)
    res = BatchResult()
    for a, cycles in polled.cycles.items():
        k, kid, prev = keys[a], key_id(keys[a]), GENESIS_PREV_HASH
        batch: list[Candidate | Quarantine] = []
        for seq, c in enumerate(cycles, 1):
            sent = round(c.tick.stamp_s * 1000)
            data = sign_envelope(k, kid, encode_payload(
                Payload(a, kid, seq, prev, sent, c.tick.clock, c.readings)))
            prev = envelope_hash(data)
            received = round(c.tick.true_s * 1000) + RECEIVED_AFTER_MS
            batch.append(classify(Incoming(topic(a, "readings"), data, seq, received), ring))
            if len(batch) == BATCH or seq == len(cycles):
                res.merge(store_batch(conn, batch))
                batch = []
    return res


def read_run(conn: psycopg.Connection[Any], run_id: int, rules: dict[str, dict[str, Any]],
             s: vee_sim.Setup, meters: list[str]) -> tuple[Validation, npt.NDArray[np.int16], F64]:
    """The run's flags, methods and values per interval, from `vee_intervals` (an interval
    without a row passed every rule and kept its raw value: method ACTUAL, value NaN here)."""
    m, n = len(meters), s.n
    flags = np.zeros((m, n), np.uint32)
    method = np.zeros((m, n), np.int16)
    value = np.full((m, n), np.nan)
    row = {mid: i for i, mid in enumerate(meters)}
    for mid, bucket, f, meth, val in conn.execute(_INTERVALS, [run_id]):
        j = (int(bucket.timestamp()) - s.t0) // vee_sim.STEP
        i = row[mid]
        flags[i, j], method[i, j] = f, meth
        value[i, j] = np.nan if val is None else val
    outcomes = [RuleOutcome(r, bool(rules[str(r.name).lower()]["ran"]),
                            rules[str(r.name).lower()]["why_not"],
                            int(rules[str(r.name).lower()]["failed"])) for r in Rule]
    return Validation(flags, outcomes), method, value


def caught_by(v: Validation, truth: npt.NDArray[np.int8]) -> dict[str, dict[str, float]]:
    """Per fault kind, the share of its intervals each rule flagged (rules that flagged none
    left out), and `none`: the share no rule flagged."""
    out: dict[str, dict[str, float]] = {}
    for f in vee_sim.SIM_FAULTS:
        at = truth == f
        if not at.any():
            continue
        fl = v.flags[at]
        row = {str(r.name): float(((fl & np.uint32(r)) != 0).mean()) for r in Rule}
        out[str(f.name)] = {k: x for k, x in row.items() if x > 0}
        out[str(f.name)]["none"] = float((fl == 0).mean())
    return out


def score_estimates(method: npt.NDArray[np.int16], value: F64, true: F64,
                    truth: npt.NDArray[np.int8]) -> dict[str, Any]:
    """Per method on the intervals it filled: MAE (kWh) and the energy error over all of
    them, |Σ estimate − Σ true| / Σ true, and which faults (CLEAN: a false alarm) it filled."""
    out: dict[str, Any] = {}
    for meth in METHODS:
        mask = (method == meth) & ~np.isnan(value)
        if not mask.any():
            out[str(meth.name)] = {"n": 0}
            continue
        e, t = value[mask], true[mask]
        out[str(meth.name)] = {
            "n": int(mask.sum()), "mae": float(np.mean(np.abs(e - t))),
            "energy_err": float(abs(e.sum() - t.sum()) / t.sum()) if t.sum() else float("nan"),
            "by_fault": {str(Fault(f).name): int((mask & (truth == f)).sum())
                         for f in np.unique(truth[mask]).tolist()},
            "mae_by_fault": {str(Fault(f).name): float(np.mean(np.abs(value - true)[
                mask & (truth == f)])) for f in np.unique(truth[mask]).tolist()}}
    out["NONE"] = {"n": int((method == Method.NONE).sum())}
    return out


def evaluate(conn: psycopg.Connection[Any], seed: int, *, meters: int = 40, transformers: int = 2,
             rates: DataFaultRates | None = None) -> dict[str, Any]:
    """One seed, end to end, into the database behind `conn` (empty, autocommit)."""
    clock = time.perf_counter()
    s = vee_sim.setup(seed, meters, transformers, rates)
    polled = vee_sim.poll(s)
    t_sim = time.perf_counter() - clock
    stored = load(conn, s, polled)
    t_load = time.perf_counter() - clock - t_sim
    run = run_vee(conn, vee_sim.PERIOD, step_s=vee_sim.STEP)
    v, method, value = read_run(conn, run.run_id, run.rules, s, polled.meters)
    truth = vee_sim.truth_intervals(s, polled.meters)
    inj = Injected(np.zeros(truth.shape), truth, polled.true_register_kwh,
                   np.zeros(truth.shape, np.bool_), np.ones(truth.shape[0], np.bool_))
    true_kwh = np.diff(polled.true_register_kwh, axis=1)
    kinds = [e.kind for e in s.plan.events]
    return {
        "seed": seed, "meters": len(polled.meters), "intervals": int(truth.size),
        "clean": int((truth == Fault.CLEAN).sum()),
        "events": {k: kinds.count(k) for k in sorted(set(kinds))},
        "edge": {"stale_readings": polled.stale, "silent_polls": polled.silent},
        "ingest": {"envelopes": stored.stored, "readings": stored.readings,
                   "reading_conflicts": stored.reading_conflicts,
                   "quarantined": dict(stored.quarantined)},
        "rules": vee.score_rules(v, inj, vee_sim.CATCHES),
        "faults": vee.score_faults(v, inj, vee_sim.CATCHES),
        "caught_by": caught_by(v, truth),
        "estimation": score_estimates(method, value, true_kwh, truth),
        "days": run.days,
        "seconds": {"simulate": t_sim, "store": t_load, "vee": run.seconds.get("total", 0.0)},
    }
