"""The database side of alarms: rules, judging a stored batch in its own transaction, the
lifecycle (acknowledge, clear by hand) and the events each step leaves.

`judge(conn, observed)` is what the ingest writer calls inside the transaction that stores a
batch (cloud/alarms/engine.py says why that makes alarms exactly-once). Each event becomes a
row in `alarm_events` with its evidence, and one outbox row per matching route in
`alarm_notifications`, which the notifier (cloud/alarms/notify.py) delivers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from cloud.alarms import engine
from cloud.alarms.rules import Rule, default_rules
from cloud.store import alarms_sql


def rules(conn: psycopg.Connection[Any]) -> list[Rule]:
    """The stored rules; the defaults (docs/alarms.md) while none has been imported."""
    stored = [Rule.model_validate(r[0]) for r in conn.execute(alarms_sql.RULES)]
    return stored if stored else default_rules()


def import_rules(conn: psycopg.Connection[Any], new: list[Rule], actor: str) -> int:
    with conn.transaction():
        for r in new:
            conn.execute(alarms_sql.UPSERT_RULE, [r.id, r.kind, r.severity, r.enabled,
                                                   json.dumps(r.model_dump(mode="json")), actor])
    return len(new)


def meter_info(conn: psycopg.Connection[Any], ids: list[str]) -> dict[str, engine.MeterInfo]:
    out = {}
    for mid, kind, region, cls, pv, special, tx, rating in conn.execute(alarms_sql.METER_INFO, [ids]):
        out[mid] = engine.MeterInfo(mid, kind, region, cls, bool(pv), bool(special), tx,
                                    float(rating) if rating is not None else None)
    return out


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _event(conn: psycopg.Connection[Any], alarm_id: int, action: str, at: datetime, actor: str,
           detail: str, evidence: Any, severity: str, region: str | None,
           alarm: dict[str, Any]) -> int:
    row = conn.execute(alarms_sql.INSERT_EVENT, {
        "a": alarm_id, "action": action, "at": at, "actor": actor, "detail": detail,
        "evidence": json.dumps(evidence)}).fetchone()
    assert row is not None
    event_no = int(row[0])
    payload = {**alarm, "alarm_id": alarm_id, "event_no": event_no, "action": action,
               "at": at.isoformat(), "actor": actor, "detail": detail, "evidence": evidence}
    conn.execute(alarms_sql.ROUTE_EVENT, {"a": alarm_id, "e": event_no, "payload": json.dumps(payload),
                                          "sev": severity, "region": region})
    return event_no


def apply(conn: psycopg.Connection[Any], events: list[engine.Event],
          region_of: dict[str, str | None]) -> None:
    for e in events:
        at = _ts(e.at_ms)
        region = region_of.get(e.object_id)
        desc = {"rule_id": e.rule_id, "object_id": e.object_id, "severity": e.severity,
                "region_id": region, "message": e.message, "value": e.value}
        ev = [list(x) for x in e.evidence]
        row = conn.execute(alarms_sql.OPEN_ALARM, [e.rule_id, e.object_id]).fetchone()
        if e.action == "clear":
            if row is None:
                continue  # cleared by hand already: the data's clear is history, not news
            conn.execute(alarms_sql.CLEAR_ALARM, [at, "data", at, row[0]])
            _event(conn, row[0], "clear", at, "data", e.message, ev, e.severity, region, desc)
            continue
        if row is None:  # a raise, or a repeat after a hand clear: a new alarm
            got = conn.execute(alarms_sql.INSERT_ALARM, [e.rule_id, e.object_id, region, e.severity,
                                                         at, at, e.message, e.value]).fetchone()
            assert got is not None
            _event(conn, got[0], "raise", at, "data", e.message, ev, e.severity, region, desc)
        else:
            conn.execute(alarms_sql.REPEAT_ALARM, [at, e.message, e.value, row[0]])
            _event(conn, row[0], "repeat", at, "data", e.message, ev, e.severity, region, desc)


def judge(conn: psycopg.Connection[Any], observed: list[engine.Observed]) -> int:
    """Judge a stored batch's readings (inside the caller's transaction); the events count."""
    if not observed:
        return 0
    rs = rules(conn)
    if not any(r.enabled for r in rs):
        return 0
    meters = meter_info(conn, sorted({o.reading.meter_id for o in observed}))
    keys = sorted(engine.keys(rs, meters, observed))
    if not keys:
        return 0
    tracks = {(r, o): engine.Track.from_json(s) for r, o, s in conn.execute(
        alarms_sql.TRACKS, [[k[0] for k in keys], [k[1] for k in keys]])}
    before = {k: json.dumps(t.to_json(), sort_keys=True) for k, t in tracks.items()}
    events = engine.evaluate(rs, meters, observed, tracks)
    changed = [(k, t) for k, t in tracks.items() if json.dumps(t.to_json(), sort_keys=True) != before.get(k)]
    with conn.cursor() as cur:
        cur.executemany(alarms_sql.UPSERT_TRACK, [(k[0], k[1], json.dumps(t.to_json())) for k, t in changed])
    region_of: dict[str, str | None] = {}
    for m in meters.values():
        region_of[m.meter_id] = m.region_id
        if m.transformer_id:
            region_of.setdefault(m.transformer_id, m.region_id)
    apply(conn, events, region_of)
    return len(events)


class LifecycleError(Exception):
    """The alarm cannot take that step; the message says why."""


@dataclass(frozen=True)
class Step:
    alarm_id: int
    state: str
    event_no: int


def acknowledge(conn: psycopg.Connection[Any], alarm_id: int, actor: str, comment: str = "") -> Step:
    with conn.transaction():
        row = conn.execute(alarms_sql.LOCK_ALARM, [alarm_id]).fetchone()
        if row is None:
            raise LifecycleError(f"no alarm {alarm_id}: see `wattrail alarms list`")
        state, rule, obj, sev, region = row
        if state != "active":
            raise LifecycleError(f"alarm {alarm_id} is {state}: only an active alarm is acknowledged")
        conn.execute(alarms_sql.ACK_ALARM, [actor, comment, alarm_id])
        desc = {"rule_id": rule, "object_id": obj, "severity": sev, "region_id": region}
        n = _event(conn, alarm_id, "acknowledge", datetime.now(UTC), actor, comment, [], sev, region, desc)
    return Step(alarm_id, "acknowledged", n)


def clear(conn: psycopg.Connection[Any], alarm_id: int, actor: str, comment: str = "") -> Step:
    """Clear by hand. If the condition persists, its next episode raises a new alarm."""
    with conn.transaction():
        row = conn.execute(alarms_sql.LOCK_ALARM, [alarm_id]).fetchone()
        if row is None:
            raise LifecycleError(f"no alarm {alarm_id}: see `wattrail alarms list`")
        state, rule, obj, sev, region = row
        if state == "cleared":
            raise LifecycleError(f"alarm {alarm_id} is cleared already")
        now = datetime.now(UTC)
        conn.execute(alarms_sql.CLEAR_ALARM, [now, actor, now, alarm_id])
        desc = {"rule_id": rule, "object_id": obj, "severity": sev, "region_id": region}
        n = _event(conn, alarm_id, "manual_clear", now, actor, comment, [], sev, region, desc)
    return Step(alarm_id, "cleared", n)
