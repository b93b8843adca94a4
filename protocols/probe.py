"""The word-order probe: which encoding makes an unknown meter's words look physical?

Give it the raw words of a read from `start` (e.g. the first 0x50 input registers) and it
re-reads them under every candidate: a known layout (where V, I, PF, Hz sit: sdm630, sdm120,
em24) x a 32-bit interpretation (float32 in each of the four word orders, or int32 high- or
low-word first with the layout's decimal scales shifted by -1, 0 or +1 decades). Each
candidate is scored by how many values land in plain physical bands:

    V 90..300 (weight 2)   Hz 45..65 (weight 2)   PF -1..1 (weight 1)   I 0..10 kA (weight 1)

Wrong word orders give denormals or huge numbers, wrong scales give 23 V or 2300 V, so the
true encoding scores highest. Ties go to the candidate that passed more checks (a richer
layout explains more words), then to the layout's native encoding. 16-bit registers (EM24
PF/Hz) are read as the layout says: their meaning does not depend on word order.

    probe_word_order(words, *, start=0) -> list[ProbeResult]   best first

The `wattrail meter probe` CLI prints this list; it never raises on odd values, only on words
that are not 16-bit registers (`MalformedResponse`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from protocols.errors import MalformedResponse
from protocols.maps import get_map
from protocols.meter_map import FieldSpec
from protocols.registers import DataType, WordOrder, decode_value

LAYOUTS = ("sdm630", "sdm120", "em24")
# Reading field -> (low, high, weight). Bands are narrower than the maps' `valid` ranges: a
# probe asks "is this the encoding", not "is this reading acceptable".
CHECKS: dict[str, tuple[float, float, int]] = {
    "v_l1": (90.0, 300.0, 2),
    "v_l2": (90.0, 300.0, 2),
    "v_l3": (90.0, 300.0, 2),
    "freq_hz": (45.0, 65.0, 2),
    "pf": (-1.0, 1.0, 1),
    "i_l1": (0.0, 10_000.0, 1),
    "i_l2": (0.0, 10_000.0, 1),
    "i_l3": (0.0, 10_000.0, 1),
}
# Decimal scales to try for int32 readings of a float32 layout (typical of int meters).
_INT_SCALE = {"v": -1, "i": -3, "f": -2, "p": -3}


@dataclass(frozen=True, slots=True)
class Candidate:
    layout: str  # the map whose addresses are used
    dtype: DataType  # how two-word values are read: FLOAT32 or INT32
    order: WordOrder
    scale_shift: int = 0  # decades added to the int32 scales

    @property
    def label(self) -> str:
        shift = f" scale{self.scale_shift:+d}" if self.dtype is DataType.INT32 else ""
        return f"{self.layout} {self.dtype.value} {self.order.value}{shift}"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    candidate: Candidate
    score: float  # passed weight / checked weight, 0..1
    passed: int  # passed weight
    checked: int  # checked weight (checks whose registers were in the words)
    reasons: tuple[str, ...]


def candidates() -> tuple[Candidate, ...]:
    out: list[Candidate] = []
    for layout in LAYOUTS:
        out += [Candidate(layout, DataType.FLOAT32, order) for order in WordOrder]
        for order in (WordOrder.ABCD, WordOrder.CDAB):
            out += [Candidate(layout, DataType.INT32, order, s) for s in (0, -1, 1)]
    return tuple(out)


def _is_native(c: Candidate) -> bool:
    spec = get_map(c.layout).fields[0]
    return c.dtype is spec.dtype and c.order is spec.order and c.scale_shift == 0


def _value(c: Candidate, spec: FieldSpec, words: Sequence[int]) -> float:
    if spec.words == 1:
        return spec.to_si(decode_value(spec.dtype, spec.order, words))
    raw = decode_value(c.dtype, c.order, words)
    if c.dtype is DataType.FLOAT32:
        return float(raw)
    exp = spec.scale_exp if spec.dtype is DataType.INT32 else _INT_SCALE[spec.field[0]]
    e = exp + c.scale_shift
    step: int = 10 ** abs(e)
    return float(raw) * step if e >= 0 else float(raw) / step


def _score(c: Candidate, words: Sequence[int], start: int) -> ProbeResult:
    passed = checked = 0
    reasons: list[str] = []
    for spec in get_map(c.layout).fields:
        if spec.field not in CHECKS or spec.address < start:
            continue
        offset = spec.address - start
        if offset + spec.words > len(words):
            continue
        lo, hi, weight = CHECKS[spec.field]
        value = _value(c, spec, words[offset : offset + spec.words])
        checked += weight
        if math.isfinite(value) and lo <= value <= hi:
            passed += weight
            reasons.append(f"{spec.field}={value:.6g} in {lo:g}..{hi:g}")
        else:
            reasons.append(f"{spec.field}={value:.6g} outside {lo:g}..{hi:g}")
    score = passed / checked if checked else 0.0
    return ProbeResult(c, score, passed, checked, tuple(reasons))


def probe_word_order(words: Sequence[int], *, start: int = 0) -> list[ProbeResult]:
    """Every candidate encoding, most plausible first."""
    for i, w in enumerate(words):
        if not isinstance(w, int) or not 0 <= w <= 0xFFFF:
            raise MalformedResponse(
                f"word {w!r} is not a 16-bit register", reason="word_range", register=start + i
            )
    results = [_score(c, words, start) for c in candidates()]
    # sorted() is stable, so equal keys keep the candidates() order.
    return sorted(results, key=lambda r: (-r.score, -r.passed, not _is_native(r.candidate)))
