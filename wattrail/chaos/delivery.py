"""The scenarios that break delivery: the broker, an agent, an ingestor or the database is
killed mid-stream, or the network turns into a black hole; nothing signed may be lost or
stored twice (docs/campaign.md)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

from cloud.store import envelopes_sql
from wattrail.chaos.fleet import POLL_INTERVAL_S, Feeder, Scale, cert_for, signers, start_fleet
from wattrail.chaos.results import Result, check, count_envelopes
from wattrail.chaos.services import REPO, Services, drained, stop_procs


def scenario_broker_kill(svc: Services, scale: Scale, tmp: Path, seed: int = 1) -> Result:
    """Mosquitto SIGKILLed `broker_kills` times while agents stream: it acknowledges QoS 1 from
    memory, so only the end-to-end commit ack can make this lossless."""
    r = Result("broker-kill")
    rng = random.Random(seed)
    sigs = signers("bk", scale.agents, scale.readings)
    dsn = svc.new_db([cert_for(s.key, s.agent_id) for s in sigs])
    chains = {s.agent_id: s.chain(scale.envelopes) for s in sigs}
    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"bk{uuid.uuid4().hex[:6]}")
    fleet = start_fleet(svc, sigs, tmp, prefill=0)
    feeder = Feeder(fleet, chains, seconds=scale.broker_kills * 0.9)
    feeder.start()
    mid_stream = 0
    try:
        for _ in range(scale.broker_kills):
            time.sleep(rng.uniform(0.3, 0.9))
            mid_stream += not feeder.done.is_set()
            svc.kill_broker()
            time.sleep(rng.uniform(0.05, 0.3))
            svc.start_broker()
        feeder.join()
        ok = drained(fleet.outboxes, 120 + scale.envelopes * scale.agents / 50)
        if not ok:
            r.notes.append("outboxes did not drain")
        if ing.poll() is not None:
            r.notes.append(f"ingestor exited with {ing.returncode}")
    finally:
        feeder.stop()
        fleet.stop()
        stop_procs([ing])
    r.seconds = time.monotonic() - t0
    resends = sum(p.stats.resends for p in fleet.publishers)
    r.figures = {"kills": scale.broker_kills, "kills_mid_stream": mid_stream, "resends": resends}
    r.notes.append(f"{scale.broker_kills} broker SIGKILLs ({mid_stream} while the agents were "
                   f"still signing), {resends} resend rounds by the agents")
    return check(dsn, chains, scale.readings, r)


def tear_wal(outbox: Path, rng: random.Random) -> bool:
    wal = Path(str(outbox) + "-wal")
    if wal.exists() and wal.stat().st_size > 100:
        with open(wal, "r+b") as fh:
            fh.truncate(wal.stat().st_size - rng.randint(1, 64))
        return True
    return False


def scenario_agent_kill(svc: Services, scale: Scale, tmp: Path, seed: int = 2) -> Result:
    """The edge agent (a subprocess signing and publishing over its outbox file) SIGKILLed again
    and again, and after each kill the outbox's WAL loses its last bytes (a torn write)."""
    r = Result("agent-kill")
    rng = random.Random(seed)
    (s,) = signers("ak", 1, scale.readings, first_key=70)
    dsn = svc.new_db([cert_for(s.key, s.agent_id)])
    n = scale.envelopes * scale.agents
    cert, key = svc.issue(s.agent_id)
    outbox = tmp / f"{s.agent_id}.db"
    cmd = [sys.executable, "-m", "wattrail.commands.chaos", "agent-proc", "--outbox", str(outbox),
           "--agent-id", s.agent_id, "--key-byte", "70", "--envelopes", str(n),
           "--readings", str(scale.readings), "--interval", str(scale.agent_interval),
           "--host", svc.host, "--port", str(svc.port),
           "--ca", str(svc.ca), "--cert", str(cert), "--key", str(key)]

    def spawn() -> subprocess.Popen[bytes]:
        with open(svc.logs / "agent-proc.log", "ab") as log:
            return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)

    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"ak{uuid.uuid4().hex[:6]}")
    torn = 0
    try:
        for _ in range(scale.agent_kills):
            p = spawn()
            time.sleep(rng.uniform(0.8, 1.6))
            p.send_signal(signal.SIGKILL)
            p.wait()
            torn += tear_wal(outbox, rng)
        p = spawn()
        try:
            rc = p.wait(120 + n / 20)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        if rc != 0:
            r.notes.append(f"final agent run exited {rc}")
    finally:
        stop_procs([ing])
    r.seconds = time.monotonic() - t0
    r.notes.append(f"{scale.agent_kills} agent SIGKILLs, {torn} torn WAL tails")
    return check(dsn, {s.agent_id: s.chain(n)}, scale.readings, r)


def scenario_partition(svc: Services, scale: Scale, tmp: Path) -> Result:
    """Agents reach the broker through a TCP proxy that turns into a black hole (bytes stop,
    nothing is closed: a severed link) while they keep signing (a long
    simulated outage: each envelope is one poll cycle), then healed: the backlog must drain,
    in seq order, much faster than real time."""
    from wattrail.chaos.proxy import TcpProxy  # the cuttable proxy the tests use too

    r = Result("partition")
    sigs = signers("np", scale.agents, scale.readings, first_key=90)
    dsn = svc.new_db([cert_for(s.key, s.agent_id) for s in sigs])
    live = 20
    backlog = scale.partition_backlog
    chains = {s.agent_id: s.chain(live + backlog) for s in sigs}
    proxy = TcpProxy(svc.host, svc.port)
    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"np{uuid.uuid4().hex[:6]}", max_batch=256)
    fleet = start_fleet(svc, sigs, tmp, prefill=0, port=proxy.port)
    try:
        for s, ob, pub in zip(sigs, fleet.outboxes, fleet.publishers, strict=True):
            for seq in range(1, live + 1):
                ob.append(seq, chains[s.agent_id][seq - 1], 0)
            pub.notify()
        if not drained(fleet.outboxes, 60):
            r.notes.append("live phase did not drain")
        # a silent partition: packets vanish, nothing is closed; the agents learn it from
        # their keepalive (5 s) and then fail to reconnect until the link is back
        proxy.blackhole()
        cut_at = time.monotonic()
        for s, ob in zip(sigs, fleet.outboxes, strict=True):
            for seq in range(live + 1, live + backlog + 1):
                ob.append(seq, chains[s.agent_id][seq - 1], 0)
        time.sleep(max(0.0, scale.partition_hold_s - (time.monotonic() - cut_at)))
        stored_during = count_envelopes(dsn) - live * scale.agents
        reconnects_before = sum(p.stats.connects for p in fleet.publishers)
        healed = time.monotonic()
        proxy.restore()
        if not drained(fleet.outboxes, 120 + backlog * scale.agents / 20):
            r.notes.append("backlog did not drain")
        drain_s = time.monotonic() - healed
        reconnects = sum(p.stats.connects for p in fleet.publishers) - reconnects_before
        attempts = sum(p.stats.connect_attempts for p in fleet.publishers)
    finally:
        fleet.stop()
        stop_procs([ing])
        proxy.close()
    r.seconds = time.monotonic() - t0
    n_back = backlog * scale.agents
    with psycopg.connect(dsn) as c:
        out_of_order = c.execute(envelopes_sql.COUNT_RECEIVED_OUT_OF_ORDER).fetchone()
    r.figures = {"backlog_envelopes": n_back, "drain_s": round(drain_s, 2),
                 "stored_during_partition": stored_during, "reconnects_after_heal": reconnects,
                 "connect_attempts": attempts,
                 "envelopes_per_s": round(n_back / drain_s, 1),
                 "readings_per_s": round(n_back * scale.readings / drain_s, 1),
                 "x_real_time": round(n_back / scale.agents * POLL_INTERVAL_S / drain_s, 1),
                 "out_of_order": int(out_of_order[0]) if out_of_order else -1}
    r.notes.append(f"backlog {n_back} env drained in {drain_s:.1f} s "
                   f"({r.figures['x_real_time']}x real time at 15 s polls), "
                   f"{r.figures['out_of_order']} stored out of seq order; {stored_during} stored "
                   f"during the {scale.partition_hold_s:.0f} s black hole, {reconnects} reconnects "
                   "after healing (the agents had declared the silent link dead)")
    return check(dsn, chains, scale.readings, r)


def scenario_ingestor_kill(svc: Services, scale: Scale, tmp: Path, seed: int = 3) -> Result:
    """Two ingestors share the stream; one after the other they die. Odd rounds: an ingestor
    that exits inside its transaction, rows written and not committed (mid-batch); even rounds:
    one that exits right after its commit, before any broker ack or agent ack (the worst moment;
    both started through wattrail/chaos/crashing_ingest.py); and a plain SIGKILL at a random moment in
    between.
    Redelivery must neither lose (mid-batch) nor duplicate (after commit)."""
    from wattrail.chaos.crashing_ingest import EXIT_AFTER_COMMIT, EXIT_MID_BATCH

    r = Result("ingestor-kill")
    rng = random.Random(seed)
    sigs = signers("ik", scale.agents, scale.readings, first_key=130)
    dsn = svc.new_db([cert_for(s.key, s.agent_id) for s in sigs])
    chains = {s.agent_id: s.chain(scale.envelopes) for s in sigs}
    group = f"ik{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    ings = [svc.ingestor(dsn, group, max_batch=16) for _ in range(2)]
    for p in ings:
        svc.wait_subscribed(p)
    fleet = start_fleet(svc, sigs, tmp, prefill=0)
    feeder = Feeder(fleet, chains, seconds=scale.ingestor_kills * 2.0)
    feeder.start()
    exits = {"mid_batch": 0, "after_commit": 0, "sigkill": 0}
    spare: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(scale.ingestor_kills):
            slot = i % 2
            time.sleep(rng.uniform(0.2, 0.6))
            ings[slot].kill()  # the plain SIGKILL, at whatever moment this is
            ings[slot].wait()
            exits["sigkill"] += 1
            point, code, kind = (("mid-batch", EXIT_MID_BATCH, "mid_batch") if i % 2 == 0
                                 else ("after-commit", EXIT_AFTER_COMMIT, "after_commit"))
            # the stream waits for the dying ingestor to subscribe: on a loaded machine its
            # start-up could otherwise outlast the stream, and it would never get its batches
            feeder.go.clear()
            dying = svc.ingestor(dsn, group, max_batch=16, crash=(point, rng.randint(1, 3)))
            try:
                svc.wait_subscribed(dying, timeout=120.0)
            finally:
                feeder.go.set()
            try:
                rc = dying.wait(120)
            except subprocess.TimeoutExpired:  # the stream ended before it got its batches
                spare.append(dying)
                rc = None
            exits[kind] += rc == code
            ings[slot] = svc.ingestor(dsn, group, max_batch=16)
        feeder.join()
        if not drained(fleet.outboxes, 120 + scale.envelopes * scale.agents / 50):
            r.notes.append("outboxes did not drain")
    finally:
        feeder.stop()
        fleet.stop()
        stop_procs(ings + spare)
    r.seconds = time.monotonic() - t0
    r.figures = {k: float(v) for k, v in exits.items()}
    r.notes.append(f"{exits['sigkill']} ingestor SIGKILLs, {exits['mid_batch']} exits inside an "
                   f"uncommitted batch, {exits['after_commit']} exits between commit and ack")
    return check(dsn, chains, scale.readings, r)


def scenario_db_crash(svc: Services, scale: Scale, tmp: Path, seed: int = 4) -> Result:
    """PostgreSQL stopped with `pg_ctl -m immediate` (no checkpoint, as a power cut would leave
    it: recovery replays the WAL) while agents stream, then started again. Every envelope an
    agent had seen acknowledged before the crash must be in the database after it; in the end,
    everything signed."""
    r = Result("db-crash")
    rng = random.Random(seed)
    sigs = signers("dc", scale.agents, scale.readings, first_key=150)
    dsn = svc.new_db([cert_for(s.key, s.agent_id) for s in sigs])
    chains = {s.agent_id: s.chain(scale.envelopes) for s in sigs}
    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"dc{uuid.uuid4().hex[:6]}")
    svc.wait_subscribed(ing)
    fleet = start_fleet(svc, sigs, tmp, prefill=0)
    feeder = Feeder(fleet, chains, seconds=scale.db_crashes * 5.0)
    feeder.start()
    acked_then_missing, acked_total, mid = 0, 0, 0
    try:
        for _ in range(scale.db_crashes):
            time.sleep(rng.uniform(1.0, 2.5))
            confirmed = {s.agent_id: ob.confirmed_seq()
                         for s, ob in zip(sigs, fleet.outboxes, strict=True)}
            mid += not feeder.done.is_set()
            svc.restart_db(immediate=True, down_for=rng.uniform(1.0, 3.0))
            with psycopg.connect(dsn) as c:  # what was acknowledged survived the crash
                for agent_id, upto in confirmed.items():
                    (n,) = c.execute(  # type: ignore[misc]
                        envelopes_sql.COUNT_OF_AGENT_UPTO, [agent_id, upto]).fetchone()
                    acked_total += upto
                    acked_then_missing += upto - int(n)
        feeder.join()
        if not drained(fleet.outboxes, 120 + scale.envelopes * scale.agents / 50):
            r.notes.append("outboxes did not drain")
        if ing.poll() is not None:
            r.notes.append(f"ingestor exited with {ing.returncode}")
    finally:
        feeder.stop()
        fleet.stop()
        stop_procs([ing])
    r.seconds = time.monotonic() - t0
    r.lost += acked_then_missing * scale.readings
    r.figures = {"crashes": scale.db_crashes, "crashes_mid_stream": mid,
                 "acked_before_crash": acked_total, "acked_then_missing": acked_then_missing}
    r.notes.append(f"{scale.db_crashes} immediate shutdowns ({mid} mid-stream); {acked_total} "
                   f"envelopes acknowledged before a crash, {acked_then_missing} of them missing after")
    res = check(dsn, chains, scale.readings, r)
    return res
