"""The customer archive's completeness and consistency checks (pure: records in, findings out).

`check(snapshot, summaries)` compares what the archive says (meters, customers, transformers)
with what the readings say about each meter (`MeterSummary`, one SQL aggregate per meter in
cloud/archive/store.py) and returns one `Finding` per problem, each with its evidence and the
fix an engineer would make. The kinds, and the rule behind each:

    never_reported          in the archive, no reading ever stored
    not_in_archive          readings stored for a meter id the archive does not know
    customer_without_meter  a customer record no meter points at
    meter_without_customer  a customer-kind meter with no customer record
    missing_tariff          a customer without a tariff
    missing_coordinates     a customer without coordinates
    missing_contract        a non-residential customer without a contracted capacity
    contract_exceeded       peak apparent power above the contracted capacity
    large_not_flagged       peak demand >= `large_kw` without the special/large flag
    duplicate_id            two meter ids equal after trimming and case folding, or one serial
                            on two meters
    no_balance_meter        a transformer without a balance meter, or whose balance meter never
                            reported (no energy balance, no loss report for it)
    phase_count_mismatch    the readings carry three phase voltages on a single-phase record,
                            or one on a three-phase record
    export_without_pv       energy exported (> `export_wh` over the period) without PV recorded
    data_stopped            reported, but nothing for `stale_after_s` while others report
    replaced_without_record the import register fell back (a new meter starts from zero)
                            with no installation record since the meter's first reading
    stale_coordinates       the customer's coordinates are implausibly far from its
                            transformer: d > max(`min_far_m`, median(d) + 8 x 1.4826 MAD(d)),
                            d over all customers of the archive (calibrated on the population)

Nothing here changes the archive; the fix is a suggestion.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = (
    "never_reported", "not_in_archive", "customer_without_meter", "meter_without_customer",
    "missing_tariff", "missing_coordinates", "missing_contract", "contract_exceeded",
    "large_not_flagged", "duplicate_id", "no_balance_meter", "phase_count_mismatch",
    "export_without_pv", "data_stopped", "replaced_without_record", "stale_coordinates",
)
SEVERITY = {
    "not_in_archive": "high", "no_balance_meter": "high", "phase_count_mismatch": "medium",
    "export_without_pv": "high", "replaced_without_record": "high", "duplicate_id": "high",
    "never_reported": "medium", "data_stopped": "medium", "missing_tariff": "high",
    "large_not_flagged": "medium", "contract_exceeded": "medium", "stale_coordinates": "low",
}


@dataclass(frozen=True)
class TransformerRecord:
    transformer_id: str
    region_id: str
    balance_meter_id: str | None
    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class ArchiveRecord:
    """One customer-kind meter of the archive joined with its customer (None: no customer)."""

    meter_id: str
    customer_id: str | None
    transformer_id: str | None
    region_id: str | None
    customer_class: str | None
    phases: int | None
    phase: int | None
    tariff_per_kwh: float | None
    contract_kva: float | None
    is_special: bool
    has_pv: bool
    lat: float | None
    lon: float | None
    serial: str | None
    installs: int  # installation records of this meter
    last_install_ts: float | None = None


@dataclass
class ArchiveSnapshot:
    transformers: list[TransformerRecord]
    records: list[ArchiveRecord]
    now_ts: float  # the newest reading of anyone: "stopped" is relative to it, not the clock
    customers_without_meter: list[tuple[str, str | None]] = field(default_factory=list)  # (id, region)
    other_meters: list[str] = field(default_factory=list)  # balance and feeder-head meter ids


@dataclass(frozen=True)
class MeterSummary:
    """What the stored readings say about one meter over the checked period."""

    meter_id: str
    kind: str | None  # the archive's kind, None when the archive does not know the meter
    first_ts: float | None
    last_ts: float | None
    readings: int
    phases_seen: int  # 3 when any reading has an L2 or L3 voltage, else 1
    export_wh: float  # export register increase over the period
    peak_kw: float  # highest reported active power (NaN: none)
    peak_kva: float
    register_resets: int  # times the import register fell back by more than a reading's noise


@dataclass(frozen=True)
class Finding:
    kind: str
    object_id: str  # a meter, customer or transformer id
    region_id: str | None
    severity: str
    evidence: dict[str, Any]
    fix: str


@dataclass
class Settings:
    large_kw: float = 100.0  # the utility's large-customer threshold (a policy, not a fit)
    export_wh: float = 1000.0  # exports below this over the period are register noise
    stale_after_s: float = 2 * 86400.0
    min_far_m: float = 1000.0


def _dist_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    k = math.cos(math.radians((lat1 + lat2) / 2.0))
    return 111_195.0 * math.hypot(lat2 - lat1, (lon2 - lon1) * k)


def _norm(meter_id: str) -> str:
    return meter_id.strip().casefold()


def check(
    snap: ArchiveSnapshot,
    summaries: list[MeterSummary],
    settings: Settings | None = None,
    suggest: dict[str, tuple[str, int, float]] | None = None,
    data_tx: dict[str, str] | None = None,
) -> list[Finding]:
    """All findings (module docstring). `suggest`: meter -> (transformer, phase, confidence)
    from the connectivity analysis, used in the fix of meters the archive does not place.
    `data_tx`: meter -> the transformer the connectivity analysis says a suspected meter hangs
    on; its coordinates are judged against that one (a meter recorded on the wrong transformer
    is far from the recorded one, and that is the connectivity suspicion, not an old address)."""
    s = settings or Settings()
    out: list[Finding] = []
    by_meter = {m.meter_id: m for m in summaries}
    rec_by_meter = {r.meter_id: r for r in snap.records}
    tx_by_id = {t.transformer_id: t for t in snap.transformers}
    known = set(rec_by_meter) | set(snap.other_meters) | {
        t.balance_meter_id for t in snap.transformers if t.balance_meter_id}

    def add(kind: str, obj: str, region: str | None, evidence: dict[str, Any], fix: str) -> None:
        out.append(Finding(kind, obj, region, SEVERITY.get(kind, "low"), evidence, fix))

    for m in summaries:
        if m.meter_id not in known and m.readings > 0:
            ev: dict[str, Any] = {"readings": m.readings, "first_ts": m.first_ts, "last_ts": m.last_ts,
                                  "phases_seen": m.phases_seen}
            fix = "add the meter and its customer to the archive"
            if suggest and m.meter_id in suggest:
                tx, ph, conf = suggest[m.meter_id]
                ev["voltage_suggests"] = {"transformer_id": tx, "phase": ph if ph >= 0 else None,
                                          "confidence": round(conf, 3)}
                fix += f"; its voltage says it hangs on {tx}" + (f" phase L{ph + 1}" if ph >= 0 else "")
            add("not_in_archive", m.meter_id, None, ev, fix)
    for cid, region in snap.customers_without_meter:
        add("customer_without_meter", cid, region, {}, "record the customer's meter, or close the contract")

    # duplicates
    groups: dict[str, list[str]] = defaultdict(list)
    for mid in known:
        groups[_norm(mid)].append(mid)
    for ids in groups.values():
        if len(ids) > 1:
            ids.sort()
            add("duplicate_id", ids[0], rec_by_meter[ids[0]].region_id if ids[0] in rec_by_meter else None,
                {"meter_ids": ids}, "merge the records: they differ only in case or spaces")
    serials = Counter(r.serial for r in snap.records if r.serial)
    for ser, n in serials.items():
        if n > 1:
            ids = sorted(r.meter_id for r in snap.records if r.serial == ser)
            add("duplicate_id", ids[0], rec_by_meter[ids[0]].region_id, {"serial": ser, "meter_ids": ids},
                "one physical meter cannot have two records: check the serials on site")

    for t in snap.transformers:
        b = t.balance_meter_id
        if not b:
            add("no_balance_meter", t.transformer_id, t.region_id, {"balance_meter_id": None},
                "install a balance meter on the secondary: without one no loss report is possible")
        elif b not in by_meter or by_meter[b].readings == 0:
            add("no_balance_meter", t.transformer_id, t.region_id, {"balance_meter_id": b, "readings": 0},
                f"the balance meter {b} never reported: check its gateway and wiring")

    # distances to the recorded transformer, for the population's threshold
    dists: dict[str, float] = {}
    for r in snap.records:
        rt = tx_by_id.get((data_tx or {}).get(r.meter_id) or r.transformer_id or "")
        if rt and rt.lat is not None and rt.lon is not None and r.lat is not None and r.lon is not None:
            dists[r.meter_id] = _dist_m(r.lat, r.lon, rt.lat, rt.lon)
    far = math.inf
    if len(dists) >= 10:
        d = np.array(list(dists.values()))
        med = float(np.median(d))
        far = max(s.min_far_m, med + 8 * 1.4826 * float(np.median(np.abs(d - med))))

    for r in snap.records:
        ms = by_meter.get(r.meter_id)
        reg = r.region_id
        if ms is None or ms.readings == 0:
            add("never_reported", r.meter_id, reg, {"readings": 0},
                "check the meter's gateway, unit id and register map; or remove a meter never installed")
        if r.customer_id is None:
            add("meter_without_customer", r.meter_id, reg, {}, "link the meter to its customer")
            continue
        if r.tariff_per_kwh is None:
            add("missing_tariff", r.customer_id, reg, {"meter_id": r.meter_id},
                "assign the customer's tariff")
        if r.lat is None or r.lon is None:
            add("missing_coordinates", r.customer_id, reg, {"meter_id": r.meter_id},
                "geocode the customer's address")
        elif r.meter_id in dists and dists[r.meter_id] > far:
            t = tx_by_id[(data_tx or {}).get(r.meter_id) or r.transformer_id or ""]
            nearest = min(
                (x for x in snap.transformers if x.lat is not None and x.lon is not None),
                key=lambda x: _dist_m(r.lat or 0.0, r.lon or 0.0, x.lat or 0.0, x.lon or 0.0))
            add("stale_coordinates", r.customer_id, reg,
                {"meter_id": r.meter_id, "distance_m": round(dists[r.meter_id]), "threshold_m": round(far),
                 "transformer_id": t.transformer_id,
                 "nearest_transformer_to_coordinates": nearest.transformer_id},
                "verify the address: the coordinates are far from the customer's transformer")
        if r.contract_kva is None and (r.customer_class or "residential") != "residential":
            add("missing_contract", r.customer_id, reg, {"meter_id": r.meter_id, "class": r.customer_class},
                "record the contracted capacity")
        if ms is None:
            continue
        if r.contract_kva is not None and math.isfinite(ms.peak_kva) and ms.peak_kva > r.contract_kva:
            add("contract_exceeded", r.customer_id, reg,
                {"meter_id": r.meter_id, "peak_kva": round(ms.peak_kva, 2), "contract_kva": r.contract_kva},
                "review the contract: the load exceeds it")
        if not r.is_special and math.isfinite(ms.peak_kw) and ms.peak_kw >= s.large_kw:
            add("large_not_flagged", r.customer_id, reg,
                {"meter_id": r.meter_id, "peak_kw": round(ms.peak_kw, 1), "large_kw": s.large_kw},
                "flag the customer as large/special (outage priority, metering class)")
        if r.phases is not None and ms.readings > 0 and ms.phases_seen != r.phases:
            add("phase_count_mismatch", r.meter_id, reg,
                {"recorded_phases": r.phases, "phases_seen": ms.phases_seen},
                f"correct the record to {ms.phases_seen}-phase (or check the meter model installed)")
        if not r.has_pv and ms.export_wh > s.export_wh:
            add("export_without_pv", r.customer_id, reg,
                {"meter_id": r.meter_id, "export_kwh": round(ms.export_wh / 1000.0, 2)},
                "record the customer's generation (and its permit), or inspect for a reversed meter")
        if ms.last_ts is not None and snap.now_ts - ms.last_ts > s.stale_after_s:
            add("data_stopped", r.meter_id, reg,
                {"last_ts": ms.last_ts, "silent_h": round((snap.now_ts - ms.last_ts) / 3600.0, 1)},
                "check the meter and its gateway; if removed, record the removal")
        if ms.register_resets > 0 and (r.last_install_ts is None or (ms.first_ts is not None
                                                                      and r.last_install_ts < ms.first_ts)):
            add("replaced_without_record", r.meter_id, reg, {"register_resets": ms.register_resets},
                "record the replacement (date, old and new meter) so analytics do not subtract across it")
    return out


def counts_by_region(findings: list[Finding]) -> dict[str, dict[str, int]]:
    """region ('' = unknown) -> kind -> count: what a completeness run stores for tracking."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for f in findings:
        out[f.region_id or ""][f.kind] += 1
    return {r: dict(k) for r, k in out.items()}
