"""The request planner: coverage, limits, no double reads, and minimal read count."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocols.errors import PlanError
from protocols.maps import MAP_NAMES, get_map
from protocols.planner import MAX_READ, Read, merge_spans, plan_reads

spans_st = st.lists(st.tuples(st.integers(0, 600), st.integers(1, 4)), min_size=1, max_size=40)


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping spans as the planner must see them: (start, stop) runs."""
    runs: list[list[int]] = []
    for s, c in sorted(spans):
        if runs and s < runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], s + c)
        else:
            runs.append([s, s + c])
    return [(a, b) for a, b in runs]


def _fewest_reads(runs: list[tuple[int, int]], max_gap: int, max_count: int) -> int:
    """Naive DP: the true minimum number of reads, to check the greedy planner against."""
    best = [0] + [10**9] * len(runs)
    for j in range(1, len(runs) + 1):
        for i in range(j):
            group = runs[i:j]
            gaps_ok = all(b[0] - a[1] <= max_gap for a, b in pairwise(group))
            if gaps_ok and group[-1][1] - group[0][0] <= max_count:
                best[j] = min(best[j], best[i] + 1)
    return best[-1]


@settings(max_examples=200)
@given(spans=spans_st, max_gap=st.integers(0, 30), max_count=st.integers(4, MAX_READ))
def test_plan_invariants(spans: list[tuple[int, int]], max_gap: int, max_count: int):
    runs = _union(spans)
    # Overlapping spans fuse into one value; one wider than a read is a PlanError (tested below).
    assume(max(b - a for a, b in runs) <= max_count)
    reads = merge_spans(spans, max_gap=max_gap, max_count=max_count)
    read_sets = [set(range(s, s + c)) for s, c in reads]
    # No register is read twice, and reads come in address order.
    assert sum(len(r) for r in read_sets) == len(set().union(*read_sets))
    assert [s for s, _ in reads] == sorted(s for s, _ in reads)
    for (s, c), regs in zip(reads, read_sets, strict=True):
        assert 1 <= c <= max_count
        inside = [r for r in runs if s <= r[0] < s + c]
        # Each read starts and ends on wanted registers, and skips at most max_gap at a time.
        assert inside[0][0] == s and inside[-1][1] == s + c
        assert all(b[0] - a[1] <= max_gap for a, b in pairwise(inside))
        assert regs >= {a for r in inside for a in range(*r)}
    # Every wanted value sits whole inside exactly one read (never split).
    for start, stop in runs:
        assert sum(1 for s, c in reads if s <= start and stop <= s + c) == 1
    assert len(reads) == _fewest_reads(runs, max_gap, max_count)


@pytest.mark.parametrize("name", MAP_NAMES)
@pytest.mark.parametrize("max_gap", [0, 4, 16, 200])
def test_map_plans_cover_everything(name: str, max_gap: int):
    m = get_map(name)
    plan = plan_reads(m, max_gap=max_gap)
    assert all(r.function == m.function and r.count <= MAX_READ for r in plan)
    covered = [a for r in plan for a in r.addresses]
    assert len(covered) == len(set(covered))
    for start, count in m.wanted_spans():
        assert any(r.start <= start and start + count <= r.stop for r in plan)


def test_known_plans():
    assert plan_reads(get_map("sdm630")) == (Read(4, 0, 12), Read(4, 0x34, 28), Read(4, 0xE0, 2))
    # SunSpec: the marker, then all of model 203 in one read of its 105 words.
    assert plan_reads(get_map("sunspec203")) == (Read(3, 40000, 2), Read(3, 40069, 105))
    # Contiguous runs only: V+I, W, var+PF, Hz+energies, neutral current.
    assert len(plan_reads(get_map("sdm630"), max_gap=0)) == 5


@pytest.mark.parametrize(
    ("spans", "kwargs"),
    [
        pytest.param([(0, 2)], {"max_gap": -1}, id="negative-gap"),
        pytest.param([(0, 2)], {"max_gap": 0, "max_count": 126}, id="over-125"),
        pytest.param([(0, 2)], {"max_gap": 0, "max_count": 0}, id="zero-count"),
        pytest.param([(0, 3)], {"max_gap": 0, "max_count": 2}, id="value-wider-than-read"),
        pytest.param([(5, 0)], {"max_gap": 0}, id="empty-span"),
    ],
)
def test_bad_plans_are_our_error(spans: list[tuple[int, int]], kwargs: dict[str, int]):
    with pytest.raises(PlanError):
        merge_spans(spans, **kwargs)
