"""The scenarios that break an edge or its disk: a full outbox, a full database disk, an
agent's clock jumping; the agent must refuse, wait or flag, never drop or invent
(docs/campaign.md)."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from cloud.store import envelopes_sql, readings_sql
from protocols.reading import Reading
from wattrail.chaos.fleet import DAY, T0, Scale, agent_config, cert_for, signers, start_fleet
from wattrail.chaos.results import Result, check, count_envelopes
from wattrail.chaos.services import Services, drained, stop_procs, wait_until


def scenario_outbox_full(svc: Services, scale: Scale, tmp: Path) -> Result:
    """The real edge Agent seals into a small outbox while no ingestor confirms: once full it
    refuses new cycles with an `outbox-full` alarm on `events`, and every envelope it did
    sign is stored once an ingestor appears."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge.agent import Agent

    r = Result("outbox-full")
    (s,) = signers("of", 1, scale.readings, first_key=110)
    now = int(time.time() * 1000)
    dsn = svc.new_db([cert_for(s.key, s.agent_id, valid_from_ms=now - DAY,
                               valid_to_ms=now + 30 * DAY)])
    cfg = agent_config(svc, s, tmp, outbox_max_messages=scale.outbox_limit)
    # a watcher on the agent's events topic (the ingestor identity may read every agent's)
    events: list[dict[str, Any]] = []
    icert, ikey = svc.issue("wattrail-ingestor")
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:6]}",
                          protocol=mqtt.MQTTv5)
    watcher.tls_set(ca_certs=str(svc.ca), certfile=str(icert), keyfile=str(ikey))
    subscribed = threading.Event()
    watcher.on_connect = lambda c, *_a: c.subscribe(f"wattrail/v1/{s.agent_id}/events", qos=1)
    watcher.on_subscribe = lambda *_a: subscribed.set()
    watcher.on_message = lambda _c, _u, m: events.append(json.loads(m.payload))
    watcher.connect(svc.host, svc.port)
    watcher.loop_start()
    t0 = time.monotonic()
    agent = Agent(cfg)
    agent.publisher.start()
    ing = None
    try:
        subscribed.wait(10)
        readings = [Reading(f"{s.agent_id}-m{i}", 0, import_wh=1.0) for i in range(scale.readings)]
        for cycle in range(scale.outbox_limit + scale.refused):
            agent.seal([Reading(x.meter_id, T0 + cycle * 1000, import_wh=1.0 + cycle)
                        for x in readings])
        signed = [p.data for p in agent.outbox.pending(0, scale.outbox_limit + 10)]
        refused = agent.stats.refused_full
        wait_until(lambda: sum(e.get("event") == "outbox-full" for e in events) >= refused, 10)
        alarms = sum(e.get("event") == "outbox-full" for e in events)
        ing = svc.ingestor(dsn, f"of{uuid.uuid4().hex[:6]}")
        if not drained([agent.outbox], 60):
            r.notes.append("outbox did not drain")
        seq_after = agent.seal([Reading(x.meter_id, T0 + 10**7, import_wh=9.0) for x in readings])
        if seq_after is not None:
            signed += [p.data for p in agent.outbox.pending(seq_after - 1, 1)]
        drained([agent.outbox], 30)
    finally:
        agent.publisher.stop()
        agent.outbox.close()
        watcher.loop_stop()
        watcher.disconnect()
        if ing is not None:
            stop_procs([ing])
    r.seconds = time.monotonic() - t0
    r.figures = {"refused_cycles": refused, "alarms_on_events": alarms,
                 "signed_envelopes": len(signed), "accepted_after_drain": int(seq_after is not None)}
    r.notes.append(f"{refused} cycles refused ({refused * scale.readings} readings never signed), "
                   f"{alarms} outbox-full alarms on events, sealing resumed after the drain: "
                   f"{seq_after is not None}")
    return check(dsn, {s.agent_id: signed}, scale.readings, r)


def scenario_disk_full(svc: Services, scale: Scale, tmp: Path) -> Result:
    """The database's disk fills up mid-stream (its tablespace is a small tmpfs, filled by a
    runaway file until PostgreSQL says 'could not extend file'): the ingestor must stop
    acknowledging, keep running, and resume by itself once space is freed, losing nothing."""
    r = Result("disk-full")
    sigs = signers("df", scale.agents, scale.readings, first_key=170)
    dsn = svc.new_db([cert_for(s.key, s.agent_id) for s in sigs])
    disk, disk_here = svc.small_disk(scale.disk_mb)
    n = scale.envelopes
    third = n // 3
    chains = {s.agent_id: s.chain(n) for s in sigs}
    space = f"small_{uuid.uuid4().hex[:6]}"
    loc = f"{disk}/{space}"
    svc.mkdir_for_postgres(loc)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE TABLESPACE {space} LOCATION '{loc}'")
        # everything the ingestor writes lives on the small disk
        c.execute("SELECT attach_tablespace(%s, 'readings')", [space])
        c.execute(f"ALTER TABLE envelopes SET TABLESPACE {space}")
        c.execute(f"ALTER INDEX ALL IN TABLESPACE pg_default OWNED BY CURRENT_USER "
                  f"SET TABLESPACE {space}")
    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"df{uuid.uuid4().hex[:6]}")
    svc.wait_subscribed(ing)
    fleet = start_fleet(svc, sigs, tmp, prefill=0)

    def feed(lo: int, hi: int) -> None:
        for s, ob, pub in zip(sigs, fleet.outboxes, fleet.publishers, strict=True):
            for seq in range(lo, hi + 1):
                ob.append(seq, chains[s.agent_id][seq - 1], 0)
            pub.notify()

    try:
        feed(1, third)
        if not drained(fleet.outboxes, 60):
            r.notes.append("first phase did not drain")
        filled_mb = fill_disk(disk_here / "filler")
        before = count_envelopes(dsn)
        feed(third + 1, 2 * third)
        time.sleep(4.0)
        depth_while_full = sum(ob.depth for ob in fleet.outboxes)
        stored_while_full = count_envelopes(dsn) - before
        alive = ing.poll() is None
        (disk_here / "filler").unlink()  # a runaway log file, deleted by the operator
        freed = time.monotonic()
        feed(2 * third + 1, n)
        ok = drained(fleet.outboxes, 120 + n * scale.agents / 50)
        recover_s = time.monotonic() - freed
        if not ok:
            r.notes.append("did not recover after the space was freed")
        if ing.poll() is not None:
            r.notes.append(f"ingestor exited with {ing.returncode}")
    finally:
        fleet.stop()
        stop_procs([ing])
    r.seconds = time.monotonic() - t0
    r.figures = {"filled_mb": filled_mb, "unacked_while_full": depth_while_full,
                 "stored_while_full": stored_while_full, "ingestor_alive_while_full": int(alive),
                 "recovered_in_s": round(recover_s, 1)}
    r.notes.append(f"tablespace on a {scale.disk_mb} MiB tmpfs, filled by another file "
                   f"({filled_mb:.0f} MiB); while "
                   f"full {depth_while_full} envelopes stayed unacknowledged in the outboxes, "
                   f"{stored_while_full} were stored, ingestor alive: {alive}; drained "
                   f"{recover_s:.1f} s after the space was freed")
    return check(dsn, chains, scale.readings, r)


def fill_disk(path: Path) -> float:
    """Write `path` until its file system is full; MiB written."""
    chunk = os.urandom(1 << 20)
    written = 0
    with open(path, "wb") as fh:
        try:
            while True:
                written += fh.write(chunk)
                fh.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return written / 2**20


CLOCK_POLL_MS = 300_000


def clock_collisions(scale: Scale) -> int:
    """Readings clock-jump stamps with an instant already used: the -1 h phase's first cycles
    repeat the +1 h phase's last ones (12 cycles of 5 min), every meter each time."""
    return min(scale.clock_envelopes, 3_600_000 // CLOCK_POLL_MS) * scale.readings


def scenario_clock_jump(svc: Services, scale: Scale, tmp: Path) -> Result:
    """The real edge Agent seals with a wall clock that jumps +1 h, then back -1 h, while its
    monotonic clock runs on: the envelope sealed after each step carries clock status JUMPED,
    the cloud records it, and nothing else changes: every envelope stored, in seq order, no
    quarantine even though sent_at goes backwards."""
    from edge.agent import Agent, ClockWatch

    r = Result("clock-jump")
    (s,) = signers("cj", 1, scale.readings, first_key=190)
    now = int(time.time() * 1000)
    dsn = svc.new_db([cert_for(s.key, s.agent_id,
                               valid_from_ms=now - 3 * scale.clock_envelopes * CLOCK_POLL_MS - DAY,
                               valid_to_ms=now + 30 * DAY)])
    cfg = agent_config(svc, s, tmp)
    # one poll cycle = 5 min of monotonic time: after the -1 h step the agent stamps 12 cycles'
    # readings with instants it already used during the +1 h phase, which the cloud must keep
    tick = {"mono": 0, "offset": 0}
    base = now - 3 * scale.clock_envelopes * CLOCK_POLL_MS - 3_600_000  # +1 h stays in the past

    def wall() -> int:
        return base + tick["mono"] + tick["offset"]

    agent = Agent(cfg, wall_ms=wall, clock=ClockWatch(wall=wall, mono=lambda: tick["mono"]))
    agent.publisher.start()
    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"cj{uuid.uuid4().hex[:6]}")
    signed: list[bytes] = []
    jumped_seqs: list[int] = []
    try:
        for phase, offset in enumerate((0, 3_600_000, 0)):
            tick["offset"] = offset
            for i in range(scale.clock_envelopes):
                tick["mono"] += CLOCK_POLL_MS
                # readings stamped by the agent's (wrong) wall clock, 3 s before sealing
                ts = wall() - 3_000
                seq = agent.seal([Reading(f"{s.agent_id}-m{k}", ts, import_wh=1.0 + len(signed))
                                  for k in range(scale.readings)])
                if seq is None:
                    raise RuntimeError("outbox refused a cycle")
                signed.append(agent.outbox.pending(seq - 1, 1)[0].data)
                if phase and i == 0:
                    jumped_seqs.append(seq)
        if not drained([agent.outbox], 60):
            r.notes.append("outbox did not drain")
    finally:
        agent.publisher.stop()
        agent.outbox.close()
        stop_procs([ing])
    r.seconds = time.monotonic() - t0
    with psycopg.connect(dsn) as c:
        flagged = [int(x) for (x,) in c.execute(envelopes_sql.SEQS_CLOCK_JUMPED)]
        backwards = c.execute(envelopes_sql.COUNT_SENT_BACKWARDS).fetchone()
        flagged_readings = c.execute(  # in readings, or kept aside because their instant was taken
            readings_sql.COUNT_FROM_CLOCK_FLAGGED).fetchone()
    r.figures = {"jumps": len(jumped_seqs), "flagged_envelopes": len(flagged),
                 "flagged_as_expected": int(flagged == jumped_seqs),
                 "flagged_readings": int(flagged_readings[0]) if flagged_readings else -1,
                 "sent_at_backwards": int(backwards[0]) if backwards else -1}
    r.notes.append(f"wall clock +1 h then -1 h: envelopes {flagged} flagged JUMPED (expected "
                   f"{jumped_seqs}), {r.figures['flagged_readings']} readings flagged through them, "
                   f"{r.figures['sent_at_backwards']} envelope(s) with sent_at before their "
                   "predecessor's, stored in seq order all the same; "
                   f"{clock_collisions(scale)} readings reuse an instant already taken")
    return check(dsn, {s.agent_id: signed}, scale.readings, r)
