"""The stored rows of an audit bundle checked against what its envelopes signed: the log's
leaves and the readings (in `readings`, or kept aside in `reading_conflicts`). These catch
direct edits in the database; `verify_bundle` (security/audit_bundle.py) runs them after the
envelopes' signatures, chain and proofs, and its docstring lists the finding kinds.
"""

from __future__ import annotations

from typing import Any

from protocols.envelope import Payload
from protocols.reading import MEASURED_FIELDS, Reading
from security.audit_report import AuditReport, Finding
from security.merkle import leaf_hash


def check_log_leaves(bundle: dict[str, Any], raws: dict[int, bytes], rep: AuditReport) -> None:
    """Each leaf the log holds for this agent must be the hash of its stored envelope, at the
    index stored beside it; each envelope stored as logged must have its leaf."""
    leaves = {int(x["seq"]): (int(x["idx"]), str(x["leaf_hash"])) for x in bundle["log_leaves"]}
    index = {int(e["seq"]): e.get("log_index") for e in bundle.get("envelopes", [])}
    for seq, (idx, lh) in sorted(leaves.items()):
        if seq not in raws:
            rep.findings.append(Finding("log", f"the log holds this seq at index {idx}, but its "
                                        "envelope is not in the store (deleted or moved)", seq))
            continue
        if leaf_hash(raws[seq]).hex() != lh:
            rep.findings.append(Finding("log", f"leaf {idx} is not the hash of the stored "
                                        "envelope", seq))
        if index[seq] is not None and int(index[seq]) != idx:
            rep.findings.append(Finding("log", f"stored log index {index[seq]} but the log "
                                        f"holds it at {idx}", seq))
    for seq, idx in sorted(index.items()):
        if idx is not None and seq not in leaves:
            rep.findings.append(Finding("log", f"stored as logged at index {idx}, but the log "
                                        "holds no leaf for it", seq))


_VALUES = (*MEASURED_FIELDS, "status", "quality")


def _values(r: Reading) -> dict[str, Any]:
    return {f: (int(getattr(r, f)) if f in ("status", "quality") else getattr(r, f))
            for f in _VALUES}


def _source(row: dict[str, Any]) -> str:
    if row.get("provenance") == "signed":
        return f"agent {row.get('agent_id')} seq {row.get('seq')}"
    return f"import batch {row.get('import_batch')}"


def _key(r: dict[str, Any]) -> tuple[int, str, int]:
    return int(r["seq"]), str(r["meter_id"]), int(r["ts_ms"])


def _signed_there(payload: Payload, meter: str, ts: int, row: dict[str, Any]) -> bool:
    """Did `payload` sign a reading of `meter` at `ts` with exactly the values in `row`?"""
    return any(r.meter_id == meter and r.ts_ms == ts
               and all(row.get(f) == v for f, v in _values(r).items()) for r in payload.readings)


def check_readings(bundle: dict[str, Any], signed: dict[int, Payload], stored: set[int],
                    rep: AuditReport) -> None:
    """Every stored row that names one of this agent's envelopes, in `readings` or kept aside
    in `reading_conflicts`, must be a reading that envelope signed, with the signed values;
    every signed reading must be stored in one of the two."""
    agent = rep.agent_id
    at = {(str(r["meter_id"]), int(r["ts_ms"])): r for r in bundle["readings"]}
    aside: dict[tuple[int, str, int], list[dict[str, Any]]] = {}
    for c in bundle.get("reading_conflicts", []):  # older exports lack it
        if c.get("agent_id") == agent:
            aside.setdefault(_key(c), []).append(c)
    held_from = bundle.get("readings_held_from_ms")
    reported: set[tuple[int, str, int]] = set()  # one finding per altered row is enough
    for seq, payload in sorted(signed.items()):
        for r in payload.readings:
            row, where = at.get((r.meter_id, r.ts_ms)), f"meter {r.meter_id} at {r.ts_ms} ms"
            kept = any(all(c.get(f) == v for f, v in _values(r).items())
                       for c in aside.get((seq, r.meter_id, r.ts_ms), []))
            if row is None:
                if kept:
                    rep.notes.append(Finding("reading", f"{where}: kept in reading_conflicts; "
                                             "no row holds its (meter, time) now", seq))
                elif held_from is not None and r.ts_ms < int(held_from):
                    rep.notes.append(Finding("reading", f"{where}: older than the oldest "
                                             "readings chunk (retention)", seq))
                else:
                    rep.findings.append(Finding("reading", f"{where}: signed but not stored",
                                                seq))
                continue
            diff = [f for f, v in _values(r).items() if row.get(f) != v]
            mine = (row.get("provenance") == "signed" and row.get("agent_id") == agent
                    and row.get("seq") == seq)
            if diff and kept:
                rep.notes.append(Finding("reading", f"{where}: kept in reading_conflicts, its "
                                         f"(meter, time) holds another reading (from "
                                         f"{_source(row)})", seq))
            elif diff:
                shown = ", ".join(f"{f} signed {getattr(r, f)!r} stored {row.get(f)!r}"
                                  for f in diff[:3])
                src = "" if mine else f" (stored from {_source(row)})"
                rep.findings.append(Finding("reading", f"{where}: {shown}{src}", seq))
                reported.add((seq, r.meter_id, r.ts_ms))
            elif not mine:
                rep.notes.append(Finding("reading", f"{where}: stored once, from {_source(row)}, "
                                         "with the signed values", seq))
    named = [("", row) for row in at.values()
             if row.get("provenance") == "signed" and row.get("agent_id") == agent]
    named += [("kept-aside ", c) for cs in aside.values() for c in cs]
    for what, row in sorted(named, key=lambda x: (_key(x[1]), x[0])):
        seq, meter, ts = _key(row)
        if seq not in stored:
            rep.findings.append(Finding("reading", f"{what}meter {meter} at {ts} ms names seq "
                                        f"{seq} as its source, which is not stored", seq))
        elif (seq in signed and (seq, meter, ts) not in reported
              and not _signed_there(signed[seq], meter, ts, row)):
            rep.findings.append(Finding("reading", f"{what}meter {meter} at {ts} ms names seq "
                                        f"{seq} as its source, which did not sign it with "
                                        "these values", seq))
