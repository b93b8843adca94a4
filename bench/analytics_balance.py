"""Benchmark: the energy-balance grouped sum over 10M interval values on one core.

Same data, same semantics (sum and count of non-NaN values per group), same run:
  - Numba kernel   cloud.analytics.kernels_balance.group_sum
  - NumPy          mask + np.bincount (sum) + np.bincount (count)
  - pandas         DataFrame.groupby(key).agg(sum, count)  (only if pandas is installed)
Values are 10M 15-minute interval energies of 100,000 meters; a key is (transformer, interval),
as in a day's balance of 1,000 transformers. Each variant runs `--repeat` times after one
warm-up; medians are reported.

    NUMBA_NUM_THREADS=1 .venv/bin/python bench/analytics_balance.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cloud.analytics.kernels_balance import group_sum


def _median_s(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: compile / allocate once
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--values", type=int, default=10_000_000)
    ap.add_argument("--groups", type=int, default=1000 * 96)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--nan-share", type=float, default=0.01)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 500, a.values)
    values[rng.random(a.values) < a.nan_share] = np.nan
    keys = rng.integers(0, a.groups, a.values).astype(np.int64)

    def numpy_variant() -> tuple[np.ndarray, np.ndarray]:
        ok = ~np.isnan(values)
        k = keys[ok]
        return np.bincount(k, weights=values[ok], minlength=a.groups), np.bincount(k, minlength=a.groups)

    results = {
        "numba": _median_s(lambda: group_sum(values, keys, a.groups), a.repeat),
        "numpy bincount": _median_s(numpy_variant, a.repeat),
    }
    ref = numpy_variant()
    got = group_sum(values, keys, a.groups)
    assert np.allclose(got[0], ref[0]) and (got[1] == ref[1]).all(), "variants disagree"
    try:
        import pandas as pd
    except ImportError:
        pandas_note = "pandas is not installed (not a project dependency): skipped"
    else:
        frame = pd.DataFrame({"key": keys, "value": values})
        results["pandas groupby"] = _median_s(
            lambda: frame.groupby("key")["value"].agg(["sum", "count"]), a.repeat
        )
        pandas_note = f"pandas {pd.__version__}"
    print(
        f"command: NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', '(unset)')} "
        f"{' '.join([os.path.relpath(sys.executable), *sys.argv])}"
    )
    print(f"{a.values:,} values, {a.groups:,} groups, {a.nan_share:.0%} NaN, median of {a.repeat} runs")
    print(f"  {pandas_note}")
    base = results["numba"]
    for name, sec in results.items():
        rate = a.values / sec / 1e6
        print(f"  {name:15} {sec * 1e3:8.1f} ms  {rate:8.1f} M values/s  numba is {sec / base:5.2f}x faster")


if __name__ == "__main__":
    main()
