"""The signed envelope's payload: one poll cycle of one agent, as deterministic CBOR.

    payload = {                       ; RFC 8949 §4.2.1 core deterministic encoding
      0: 1,                           ; format version
      1: tstr,                        ; agent id (non-empty)
      2: bstr .size 16,               ; key id (same as the COSE protected header's kid)
      3: uint,                        ; seq >= 1, strictly +1 per agent
      4: bstr .size 32,               ; SHA-256 of the previous envelope's bytes; zeros at seq 1
      5: uint,                        ; sent-at, ms since the Unix epoch, UTC
      6: 0 / 1 / 2,                   ; clock: synced / unsynced / jumped
      7: [* tstr],                    ; meter ids          \\
      8: [* uint],                    ; ts_ms               | the readings, columnar:
      9: [* uint],                    ; status bitmask      | all columns have one entry
      10: [* 0..4],                   ; quality             | per reading
      11: { * tstr => [* float / null] }  ; one column per MEASURED_FIELDS name, all present /
    }

Decoding rejects anything else: unknown or missing keys, wrong types, ragged columns, and any
byte string that is not the deterministic encoding of its own meaning (checked by re-encoding
and comparing; see `envelope.cbor`). The COSE_Sign1 wrapper lives in `envelope.cose`; the package
re-exports both. docs/wire-format.md has the byte-level spec and test vectors.
"""

from __future__ import annotations

import enum
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Final, TypeGuard

import cbor2

from protocols.envelope import cbor
from protocols.envelope.cose import (
    KID_LEN,
    Sign1,
    decode_sign1,
    encode_sign1,
    envelope_hash,
    protected_header,
    sig_structure,
)
from protocols.envelope.errors import EnvelopeEncodeError, MalformedEnvelope
from protocols.reading import MEASURED_FIELDS, Quality, Reading

__all__ = [
    "FORMAT_VERSION",
    "GENESIS_PREV_HASH",
    "ClockStatus",
    "Payload",
    "Sign1",
    "decode_payload",
    "decode_sign1",
    "encode_payload",
    "encode_sign1",
    "envelope_hash",
    "protected_header",
    "sig_structure",
]

FORMAT_VERSION: Final = 1
HASH_LEN: Final = 32
GENESIS_PREV_HASH: Final = bytes(HASH_LEN)  # the prev hash of seq 1: there is no envelope before it
K_VERSION, K_AGENT, K_KID, K_SEQ, K_PREV, K_SENT, K_CLOCK = range(7)
K_METERS, K_TS, K_STATUS, K_QUALITY, K_FIELDS = range(7, 12)
_KEYS: Final = frozenset(range(12))
_U64: Final = 1 << 64


class ClockStatus(enum.IntEnum):
    """How far the agent trusts its own clock when it sends. Never renumber."""

    SYNCED = 0
    UNSYNCED = 1  # never synchronised since boot: timestamps are the agent's best guess
    JUMPED = 2  # the clock stepped since the last envelope: compare ts across it with care


@dataclass(frozen=True, slots=True)
class Payload:
    agent_id: str
    kid: bytes
    seq: int
    prev_hash: bytes
    sent_at_ms: int
    clock: ClockStatus
    readings: list[Reading]


def _uint(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 <= value < _U64


def encode_payload(payload: Payload, *, strict_only: bool = False) -> bytes:
    """Deterministic CBOR of `payload`; `EnvelopeEncodeError` if the format cannot carry it.
    `strict_only` uses the reference encoder only (for tests that compare the two)."""
    p = payload

    def fail(message: str) -> EnvelopeEncodeError:
        return EnvelopeEncodeError(message, agent_id=p.agent_id, seq=p.seq)

    if not isinstance(p.agent_id, str) or not p.agent_id:
        raise fail("agent id must be a non-empty string")
    if not isinstance(p.kid, bytes) or len(p.kid) != KID_LEN:
        raise fail(f"key id must be {KID_LEN} bytes")
    if not _uint(p.seq) or p.seq < 1:
        raise fail("seq must be an integer >= 1")
    if not isinstance(p.prev_hash, bytes) or len(p.prev_hash) != HASH_LEN:
        raise fail(f"prev hash must be {HASH_LEN} bytes")
    if p.seq == 1 and p.prev_hash != GENESIS_PREV_HASH:
        raise fail("seq 1 must carry the all-zero prev hash")
    if not _uint(p.sent_at_ms) or not isinstance(p.clock, ClockStatus):
        raise fail("sent_at_ms must be a non-negative integer and clock a ClockStatus")
    for r in p.readings:
        if not isinstance(r.meter_id, str) or not r.meter_id:
            raise fail(f"meter id {r.meter_id!r} must be a non-empty string")
        if not _uint(r.ts_ms) or not _uint(r.status) or not isinstance(r.quality, Quality):
            raise fail(f"meter {r.meter_id}: ts_ms/status must be uints and quality a Quality")
    columns: dict[str, list[float | None]] = {}
    for name, col in zip(MEASURED_FIELDS, zip(*map(_FIELDS, p.readings), strict=True)
                         if p.readings else [()] * len(MEASURED_FIELDS), strict=True):
        kinds = {type(v) for v in col}
        if not kinds <= _NUMERIC:
            bad_value = next(v for v in col if type(v) not in _NUMERIC)
            raise fail(f"{name} must be a number or None, got {bad_value!r}")
        # floats only: an int 5 and a float 5.0 would be two encodings of one reading
        columns[name] = list(col) if int not in kinds else [
            None if v is None else float(v) for v in col]
    doc: dict[cbor.CborValue, cbor.CborValue] = {
        K_VERSION: FORMAT_VERSION,
        K_AGENT: p.agent_id,
        K_KID: p.kid,
        K_SEQ: p.seq,
        K_PREV: p.prev_hash,
        K_SENT: p.sent_at_ms,
        K_CLOCK: int(p.clock),
        K_METERS: [r.meter_id for r in p.readings],
        K_TS: [r.ts_ms for r in p.readings],
        K_STATUS: [int(r.status) for r in p.readings],
        K_QUALITY: [int(r.quality) for r in p.readings],
        K_FIELDS: {name: list[cbor.CborValue](col) for name, col in columns.items()},
    }
    if strict_only:
        try:
            return cbor.encode(doc)
        except EnvelopeEncodeError as exc:  # NaN / inf in a column: say whose envelope it was
            raise fail(str(exc)) from exc
    # Fast path (the edge's main cost): cbor2's C canonical encoder gives the same bytes for
    # this vocabulary (tests/unit/protocols/test_envelope_fast.py), once non-finite floats,
    # which our format refuses and cbor2 would encode, are ruled out.
    for name, values in columns.items():
        if not _all_finite(values):
            raise fail(f"non-finite float in {name}: send null for a missing value")
    return cbor2.dumps(doc, canonical=True)


def _fast_doc(data: bytes) -> Any:
    """The decoded document when cbor2's C codec proves `data` deterministic, else None.

    Why: the strict pure-Python decoder plus the re-encoding check cost ~6 ms per 200-reading
    envelope, the ingestor's main cost; cbor2 does both in ~0.3 ms. For this payload's
    vocabulary (int keys 0..11, short text keys, arrays, finite floats, null) cbor2's
    canonical form (length-first key order, shortest floats) is byte-identical to RFC 8949
    §4.2.1, which `tests/unit/protocols/test_envelope_fast.py` checks on random payloads. Any
    input this path does not accept falls back to the strict decoder, which then gives the
    precise error; anything it accepts still goes through the same schema checks below.
    """
    try:
        doc = cbor2.loads(data)
        same = cbor2.dumps(doc, canonical=True) == data
    except Exception:  # any junk: let the strict decoder say exactly what is wrong
        return None
    return doc if same and isinstance(doc, dict) else None


def decode_payload(data: bytes, *, strict_only: bool = False) -> Payload:
    """Parse payload bytes; `IncompleteEnvelope` if truncated, `MalformedEnvelope` otherwise.

    `strict_only` skips the fast path (for tests that compare the two)."""
    doc = None if strict_only else _fast_doc(data)
    proven_deterministic = doc is not None
    if doc is None:
        doc = cbor.decode(data)
    if not isinstance(doc, dict):
        raise MalformedEnvelope("payload is not a map", reason="structure")
    agent, seq = doc.get(K_AGENT), doc.get(K_SEQ)
    # known as soon as they parse, so every later error can say whose envelope it was
    agent_id = agent if isinstance(agent, str) and agent else None
    seq_no = seq if _uint(seq) and seq >= 1 else None

    def bad(message: str, reason: str = "schema") -> MalformedEnvelope:
        return MalformedEnvelope(message, reason=reason, agent_id=agent_id, seq=seq_no)

    if set(doc) != _KEYS:
        raise bad(f"payload keys {sorted(map(repr, doc))} are not exactly 0..11", "keys")
    version, kid, prev, sent, clock = (doc[k] for k in (K_VERSION, K_KID, K_PREV, K_SENT, K_CLOCK))
    if type(version) is not int or version != FORMAT_VERSION:
        raise bad(f"unsupported format version {version!r:.40}; expected {FORMAT_VERSION}", "version")
    if agent_id is None or seq_no is None:
        raise bad("agent id must be non-empty text and seq an integer >= 1")
    if not isinstance(kid, bytes) or len(kid) != KID_LEN:
        raise bad(f"kid must be {KID_LEN} bytes")
    if not isinstance(prev, bytes) or len(prev) != HASH_LEN:
        raise bad(f"prev hash must be {HASH_LEN} bytes")
    if not _uint(sent) or not _uint(clock) or clock not in ClockStatus._value2member_map_:
        raise bad("sent_at_ms must be an unsigned integer and clock one of 0, 1, 2")
    if seq_no == 1 and prev != GENESIS_PREV_HASH:
        raise bad("seq 1 must carry the all-zero prev hash", "chain")
    payload = Payload(agent_id, kid, seq_no, prev, sent, ClockStatus(clock), _readings(doc, bad))
    if not proven_deterministic and encode_payload(payload) != data:  # same meaning, other bytes
        raise bad("payload is not in deterministic encoding", "non_deterministic")
    return payload


def _readings(
    doc: dict[cbor.CborValue, cbor.CborValue], bad: Callable[[str], MalformedEnvelope]
) -> list[Reading]:
    meters, ts, status, quality, fields = (doc[k] for k in (K_METERS, K_TS, K_STATUS, K_QUALITY, K_FIELDS))
    if not (isinstance(meters, list) and isinstance(ts, list)
            and isinstance(status, list) and isinstance(quality, list)):
        raise bad("reading columns must be arrays")
    if not isinstance(fields, dict) or set(fields) != set(MEASURED_FIELDS):
        raise bad("field columns must be a map with exactly the MEASURED_FIELDS names")
    n = len(meters)
    columns: dict[str, list[cbor.CborValue]] = {}
    for name in MEASURED_FIELDS:
        col = fields[name]
        if not isinstance(col, list) or len(col) != n:
            raise bad(f"column {name} is not an array of {n} entries")
        columns[name] = col
    if any(len(c) != n for c in (ts, status, quality)):
        raise bad(f"columns differ in length (expected {n} entries each)")
    if not _columns_valid(meters, ts, status, quality, columns):
        _first_bad_reading(meters, ts, status, quality, columns, bad)  # raises, precisely
    qualities = [_QUALITY[q] for q in quality]  # type: ignore[index]  # ints, checked above
    # Positional construction in dataclass field order: meter_id, ts_ms, MEASURED_FIELDS...,
    # status, quality (checked at import below); ~10x faster than per-reading dicts.
    return [Reading(*row) for row in zip(meters, ts, *columns.values(), status, qualities,
                                         strict=True)]


_QUALITY: Final = {int(q): q for q in Quality}
_FIELDS: Final = operator.attrgetter(*MEASURED_FIELDS)
_NUMERIC: Final = frozenset({type(None), float, int})
_NONE_OR_FLOAT: Final = frozenset({type(None), float})
assert [f.name for f in fields(Reading)] == ["meter_id", "ts_ms", *MEASURED_FIELDS, "status",
                                             "quality"], "Reading field order changed"


def _uints(col: list[Any]) -> bool:
    return not col or ({type(x) for x in col} == {int} and min(col) >= 0 and max(col) < _U64)


def _all_finite(col: list[Any]) -> bool:
    """A NaN or an infinity makes a plain float sum non-finite, so a finite sum proves every
    value finite; a non-finite sum may also be an overflow of huge values: look closer."""
    if math.isfinite(sum(v for v in col if v is not None)):
        return True
    return all(v is None or math.isfinite(v) for v in col)


def _columns_valid(meters: list[Any], ts: list[Any], status: list[Any], quality: list[Any],
                   columns: dict[str, list[Any]]) -> bool:
    """Whole-column checks in C-speed builtins; False sends us to the precise slow path."""
    if not all(type(m) is str and m for m in meters):
        return False
    # types first: `set()` of junk such as nested lists would raise instead of answering
    if not (_uints(ts) and _uints(status) and {type(q) for q in quality} <= {int}
            and set(quality) <= _QUALITY.keys()):
        return False
    for col in columns.values():
        if not {type(v) for v in col} <= _NONE_OR_FLOAT:
            return False
        if not _all_finite(col):
            return False
    return True


def _first_bad_reading(meters: list[Any], ts: list[Any], status: list[Any], quality: list[Any],
                       columns: dict[str, list[Any]],
                       bad: Callable[[str], MalformedEnvelope]) -> None:
    for i, (meter, t, s, q) in enumerate(zip(meters, ts, status, quality, strict=True)):
        if not isinstance(meter, str) or not meter:
            raise bad(f"reading {i}: meter id must be non-empty text")
        if not _uint(t) or not _uint(s) or not _uint(q) or q not in Quality._value2member_map_:
            raise bad(f"reading {i} ({meter}): ts_ms/status must be uints, quality a Quality code")
        for name, col in columns.items():
            v = col[i]
            if v is not None and (type(v) is not float or not math.isfinite(v)):
                raise bad(f"reading {i} ({meter}): {name} must be a finite float or null")
    raise bad("a reading column failed its check")  # pragma: no cover - the loop finds it
