"""Streaming alarm rules over stored readings (pure: readings, meter facts and state in; events
and the new state out).

The ingestor calls `evaluate` inside the transaction that stores a batch, on exactly the
envelopes that batch stored (a duplicate is never stored twice, so never evaluated twice), and
writes the events and the new state in the same transaction: an ingestor killed before its
commit leaves no alarm behind and its batch is redelivered; one killed after it leaves the
alarm and the acknowledgement both. That is what "no alarm lost or raised twice" rests on.

Per (rule, object) a `Track` remembers since when the condition holds, when it last held,
whether the alarm is raised, and the evidence: the (agent, seq, meter, ts) of the readings
that made it. Readings are judged per meter in time order; a reading older than the newest one
a track has seen (an envelope that filled a gap late) can raise an instant rule (tamper), but
does not move a duration rule's clock backwards. A reading without the values a rule needs
(missing is missing) changes nothing for that rule.

Events: `raise` (the condition held for the rule's duration), `repeat` (it came back while the
alarm is still up: one alarm, a count of repeats), `clear` (absent for `clear_after_s`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from cloud.alarms.rules import Rule
from protocols.reading import MeterStatus, Quality, Reading

MAX_EVIDENCE = 20
MIN_BASELINE_W = 1000.0  # a consumption collapse is not judged below 1 kW of median load


@dataclass(frozen=True)
class MeterInfo:
    """What the archive says about a meter, for the rules' scope and parameters."""

    meter_id: str
    kind: str  # customer | balance | feeder_head
    region_id: str | None = None
    customer_class: str | None = None
    has_pv: bool = False
    is_special: bool = False
    transformer_id: str | None = None
    rating_va: float | None = None  # balance meters: their transformer's rating


@dataclass(frozen=True)
class Observed:
    """A stored reading and the envelope that signed it."""

    agent_id: str
    seq: int
    reading: Reading


@dataclass
class Track:
    since_ms: int | None = None  # the condition has held since (None: it does not hold)
    last_bad_ms: int | None = None
    last_ts_ms: int | None = None  # newest reading judged
    raised: bool = False
    prev_bad: bool = False
    evidence: list[list[Any]] = field(default_factory=list)  # [agent, seq, meter, ts_ms]
    baseline: list[float] = field(default_factory=list)  # consumption collapse: recent watts
    prev_export: float | None = None
    export_acc: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Track:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class Event:
    action: Literal["raise", "repeat", "clear"]
    rule_id: str
    object_id: str  # a meter, or a transformer for overload
    at_ms: int
    severity: str
    message: str
    value: float | None
    evidence: tuple[tuple[str, int, str, int], ...]


def in_scope(rule: Rule, m: MeterInfo) -> bool:
    if not rule.enabled:
        return False
    if rule.region is not None and m.region_id != rule.region:
        return False
    if rule.customer_class is not None and (m.kind != "customer" or m.customer_class != rule.customer_class):
        return False
    if rule.kind in ("export_without_pv", "consumption_collapse", "tamper"):
        if rule.kind == "tamper":
            return True
        if m.kind != "customer":
            return False
        return (not m.has_pv) if rule.kind == "export_without_pv" else m.is_special
    if rule.kind == "overload":
        return m.kind == "balance" and bool(m.rating_va) and m.transformer_id is not None
    return True  # voltage_band: every meter that reports voltages


def object_of(rule: Rule, m: MeterInfo) -> str:
    return m.transformer_id or m.meter_id if rule.kind == "overload" else m.meter_id


def _apparent_va(r: Reading) -> float | None:
    if r.p_w is not None:
        return math.hypot(r.p_w, r.q_var or 0.0)
    pairs = [(v, i) for v, i in ((r.v_l1, r.i_l1), (r.v_l2, r.i_l2), (r.v_l3, r.i_l3))
             if v is not None and i is not None]
    return sum(v * i for v, i in pairs) if pairs else None


def condition(rule: Rule, m: MeterInfo, r: Reading, t: Track) -> tuple[bool | None, float | None, str]:
    """(bad, measured value, message); bad None: the reading cannot say (values missing).
    May update the track's running parts (baseline, export register)."""
    if rule.kind == "tamper":
        if r.status is None:
            return None, None, ""
        hit = MeterStatus(r.status & rule.flag_mask)
        names = ", ".join(f.name.lower() for f in MeterStatus if f and f in hit and f.name)
        return bool(hit), float(r.status), f"meter flags {names}" if hit else ""
    if r.quality != Quality.VALID:
        return None, None, ""
    if rule.kind == "voltage_band":
        vs = [v for v in (r.v_l1, r.v_l2, r.v_l3) if v is not None]
        if not vs:
            return None, None, ""
        worst = max(vs, key=lambda v: max(rule.low_v - v, v - rule.high_v))
        bad = worst < rule.low_v or worst > rule.high_v
        return bad, worst, f"voltage {worst:.1f} V outside {rule.low_v:g}-{rule.high_v:g} V"
    if rule.kind == "overload":
        s = _apparent_va(r)
        if s is None or not m.rating_va:
            return None, None, ""
        load = s / m.rating_va
        return load > rule.ratio, load, f"load {100 * load:.0f} % of the {m.rating_va / 1000:g} kVA rating"
    if rule.kind == "export_without_pv":
        if r.export_wh is None:
            return None, None, ""
        rise = 0.0 if t.prev_export is None else r.export_wh - t.prev_export
        t.prev_export = r.export_wh
        if rise < 0:  # a register reset: start again, judge nothing
            t.export_acc = 0.0
            return None, None, ""
        t.export_acc += rise
        bad = rise > 0 and t.export_acc > rule.export_wh
        return bad, t.export_acc, f"{t.export_acc / 1000:.2f} kWh exported without PV on record"
    if rule.kind == "consumption_collapse":
        if r.p_w is None:
            return None, None, ""
        base = statistics.median(t.baseline) if len(t.baseline) >= rule.baseline_n // 2 else None
        collapsed = None if base is None or base < MIN_BASELINE_W else r.p_w < rule.ratio * base
        if not collapsed:  # the baseline learns from normal load only
            t.baseline = [*t.baseline, r.p_w][-rule.baseline_n:]
        if base is None:
            return None, None, ""
        return collapsed, r.p_w / base, f"{r.p_w / 1000:.1f} kW, {100 * r.p_w / base:.0f} % of its median"
    raise AssertionError(rule.kind)


def _ev(e: list[Any]) -> tuple[str, int, str, int]:
    return (str(e[0]), int(e[1]), str(e[2]), int(e[3]))


def _step(rule: Rule, obj: str, m: MeterInfo, o: Observed, t: Track, out: list[Event]) -> None:
    r = o.reading
    late = t.last_ts_ms is not None and r.ts_ms <= t.last_ts_ms
    if late and rule.kind != "tamper":
        return  # a duration's clock and a register's history never run backwards
    bad, value, msg = condition(rule, m, r, t)
    if bad is None:
        return
    ev = [o.agent_id, o.seq, r.meter_id, r.ts_ms]
    if bad and late:  # an instant rule on a late reading: evidence, raise if not up
        if not t.raised:
            t.raised, t.evidence = True, [ev]
            out.append(Event("raise", rule.id, obj, r.ts_ms, rule.severity, msg, value, (_ev(ev),)))
        return
    t.last_ts_ms = r.ts_ms
    if bad:
        if t.since_ms is None:
            t.since_ms = r.ts_ms
            if not t.raised:
                t.evidence = []
        t.last_bad_ms = r.ts_ms
        if len(t.evidence) < MAX_EVIDENCE:
            t.evidence.append(ev)
        if not t.raised and r.ts_ms - t.since_ms >= rule.duration_s * 1000:
            t.raised = True
            out.append(Event("raise", rule.id, obj, r.ts_ms, rule.severity, msg, value,
                             tuple(_ev(e) for e in t.evidence)))
        elif t.raised and not t.prev_bad:
            out.append(Event("repeat", rule.id, obj, r.ts_ms, rule.severity, msg, value, (_ev(ev),)))
    else:
        if not t.raised:
            t.since_ms = None  # the condition must hold without a break for the duration
        elif t.last_bad_ms is not None and r.ts_ms - t.last_bad_ms >= rule.clear_after_s * 1000:
            out.append(Event("clear", rule.id, obj, r.ts_ms, rule.severity,
                             f"not seen for {(r.ts_ms - t.last_bad_ms) / 60000:.0f} min", value,
                             (_ev(ev),)))
            t.raised, t.since_ms, t.evidence = False, None, []
            if rule.kind == "export_without_pv":
                t.export_acc = 0.0
    t.prev_bad = bad


def keys(rules: Iterable[Rule], meters: dict[str, MeterInfo], observed: Iterable[Observed]
         ) -> set[tuple[str, str]]:
    """The (rule, object) tracks a batch touches: what the caller loads before `evaluate`."""
    rules = list(rules)
    out = set()
    for o in observed:
        m = meters.get(o.reading.meter_id)
        if m is None:
            continue
        for rule in rules:
            if in_scope(rule, m):
                out.add((rule.id, object_of(rule, m)))
    return out


def evaluate(rules: Iterable[Rule], meters: dict[str, MeterInfo], observed: Iterable[Observed],
             tracks: dict[tuple[str, str], Track]) -> list[Event]:
    """Judge the readings (per meter in time order) against every rule in scope; `tracks` is
    updated in place (missing keys are created). Meters the archive does not know are not
    judged (the ingestor reports them already)."""
    rules = list(rules)
    out: list[Event] = []
    order = sorted(observed, key=lambda o: (o.reading.meter_id, o.reading.ts_ms, o.agent_id, o.seq))
    for o in order:
        m = meters.get(o.reading.meter_id)
        if m is None:
            continue
        for rule in rules:
            if not in_scope(rule, m):
                continue
            key = (rule.id, object_of(rule, m))
            _step(rule, key[1], m, o, tracks.setdefault(key, Track()), out)
    return out
