"""The request planner: a map's wanted registers -> as few Modbus reads as possible.

Rules (each one is tested):
1. One read covers at most `max_count` registers (Modbus caps a read at 125).
2. Two values share a read only if the registers between them that nobody wants — the gap
   — number at most `max_gap`. Reading a few unused words is cheaper than another round
   trip, but some meters reject addresses they do not map, so the gap is configurable
   (default: the map's `max_gap`; 0 means "only contiguous values").
3. A multi-word value is never split across reads, and no register is read twice.
4. Reads are per function code (one map reads one function) and sorted by address.

Greedy left-to-right packing is optimal here: every read is a contiguous run of the sorted
values, and both limits only get harder as a run grows, so closing a run as late as
possible never costs an extra read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocols.errors import PlanError
from protocols.meter_map import MeterMap

MAX_READ = 125  # Modbus application protocol v1.1b3, 6.3/6.4: 1..125 registers per read


@dataclass(frozen=True, slots=True, order=True)
class Read:
    """One Modbus read request: `count` registers from `start` with `function`."""

    function: int
    start: int
    count: int

    @property
    def stop(self) -> int:
        return self.start + self.count

    @property
    def addresses(self) -> range:
        return range(self.start, self.stop)


def merge_spans(
    spans: Iterable[tuple[int, int]], *, max_gap: int, max_count: int = MAX_READ
) -> list[tuple[int, int]]:
    """Pack (start, count) spans into as few (start, count) reads as the rules allow."""
    if max_gap < 0 or not 1 <= max_count <= MAX_READ:
        raise PlanError(f"need max_gap >= 0 and 1 <= max_count <= {MAX_READ}")
    # Overlapping spans (a word two values share) become one span first, so nothing is
    # read twice and no value is split.
    merged: list[list[int]] = []
    for start, count in sorted(spans):
        if count < 1:
            raise PlanError(f"span at {start} has count {count}", register=start)
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], start + count)
        else:
            merged.append([start, start + count])
    reads: list[tuple[int, int]] = []
    for start, stop in merged:
        if stop - start > max_count:
            raise PlanError(f"a value of {stop - start} registers exceeds {max_count}", register=start)
        if reads:
            r_start, r_count = reads[-1]
            gap = start - (r_start + r_count)
            if gap <= max_gap and stop - r_start <= max_count:
                reads[-1] = (r_start, stop - r_start)
                continue
        reads.append((start, stop - start))
    return reads


def plan_reads(
    meter_map: MeterMap, *, max_gap: int | None = None, max_count: int = MAX_READ
) -> tuple[Read, ...]:
    """The reads that fetch every register `meter_map` decodes (values, scale factors,
    signature), honouring the rules above. Stable: same map and limits, same plan."""
    gap = meter_map.max_gap if max_gap is None else max_gap
    spans = merge_spans(meter_map.wanted_spans(), max_gap=gap, max_count=max_count)
    return tuple(Read(meter_map.function, start, count) for start, count in spans)
