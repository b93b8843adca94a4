"""Benchmark: the energy-balance grouped sums on one core, Numba kernels vs NumPy vs pandas.

Same data, same semantics (sum and count of non-NaN values per group), same run, two shapes:
  keys  (the hot loop)  10M 15-minute interval energies of ~100,000 meters, a key per value =
        (transformer, interval) as in a day's balance of 1,000 transformers:
          Numba   cloud.analytics.kernels.balance.group_sum
          NumPy   mask + np.bincount (sum) + np.bincount (count)
          pandas  DataFrame.groupby(key)["value"].agg(["sum", "count"])
  rows  (what energy_balance calls)  the same values as a (meters, 96) matrix summed per
        transformer into (transformers, 96):
          Numba   cloud.analytics.kernels.balance.group_sum_rows
          NumPy   key = transformer * 96 + interval, then the two bincounts
          pandas  DataFrame(matrix).groupby(transformer).sum() and .count()
pandas is not a project dependency: `make bench` installs it (the `bench` extra); when
it is missing its rows are skipped. Each variant runs `--repeat` times after one warm-up;
medians are reported.

    NUMBA_NUM_THREADS=1 .venv/bin/python bench/analytics_balance.py [--values 10000000] [--json OUT]
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

from bench._common import add_json_arg, write_json
from cloud.analytics.kernels.balance import group_sum, group_sum_rows


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
    add_json_arg(ap)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 500, a.values)
    values[rng.random(a.values) < a.nan_share] = np.nan
    keys = rng.integers(0, a.groups, a.values).astype(np.int64)
    # the rows shape: T = 96 intervals, G = groups / 96 transformers
    n_t = 96
    n_g = max(1, a.groups // n_t)
    matrix = values[: a.values // n_t * n_t].reshape(-1, n_t)
    group = rng.integers(0, n_g, matrix.shape[0]).astype(np.int64)

    def numpy_keys() -> tuple[np.ndarray, np.ndarray]:
        ok = ~np.isnan(values)
        k = keys[ok]
        return np.bincount(k, weights=values[ok], minlength=a.groups), np.bincount(k, minlength=a.groups)

    def numpy_rows() -> tuple[np.ndarray, np.ndarray]:
        flat = matrix.ravel()
        ok = ~np.isnan(flat)
        k = (group[:, None] * n_t + np.arange(n_t)).ravel()[ok]
        return (np.bincount(k, weights=flat[ok], minlength=n_g * n_t).reshape(n_g, n_t),
                np.bincount(k, minlength=n_g * n_t).reshape(n_g, n_t))

    results: dict[str, dict[str, float]] = {"keys": {}, "rows": {}}
    results["keys"]["numba"] = _median_s(lambda: group_sum(values, keys, a.groups), a.repeat)
    results["keys"]["numpy"] = _median_s(numpy_keys, a.repeat)
    results["rows"]["numba"] = _median_s(lambda: group_sum_rows(matrix, group, n_g), a.repeat)
    results["rows"]["numpy"] = _median_s(numpy_rows, a.repeat)
    ref, got = numpy_keys(), group_sum(values, keys, a.groups)
    assert np.allclose(got[0], ref[0]) and (got[1] == ref[1]).all(), "keys variants disagree"
    ref, got = numpy_rows(), group_sum_rows(matrix, group, n_g)
    assert np.allclose(got[0], ref[0]) and (got[1] == ref[1]).all(), "rows variants disagree"
    try:
        import pandas as pd
    except ImportError:
        pandas_note = "pandas is not installed (pip install -e '.[bench]'): skipped"
    else:
        frame = pd.DataFrame({"key": keys, "value": values})
        results["keys"]["pandas"] = _median_s(
            lambda: frame.groupby("key")["value"].agg(["sum", "count"]), a.repeat)
        wide = pd.DataFrame(matrix)

        def pandas_rows() -> tuple[object, object]:
            g = wide.groupby(group)
            return g.sum(), g.count()

        results["rows"]["pandas"] = _median_s(pandas_rows, a.repeat)
        s, c = pandas_rows()
        assert np.allclose(s.to_numpy(), ref[0]) and (c.to_numpy() == ref[1]).all(), "pandas disagrees"  # type: ignore[attr-defined]
        pandas_note = f"pandas {pd.__version__}"
    print(
        f"command: NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', '(unset)')} "
        f"{' '.join([os.path.relpath(sys.executable), *sys.argv])}"
    )
    print(f"{a.values:,} values, {a.nan_share:.0%} NaN, median of {a.repeat} runs; {pandas_note}")
    print(f"  keys: {a.groups:,} groups; rows: {matrix.shape[0]:,} x {n_t} matrix into {n_g:,} x {n_t}")
    for shape, res in results.items():
        base = res["numba"]
        for name, sec in res.items():
            rate = a.values / sec / 1e6
            print(f"  {shape:4} {name:7} {sec * 1e3:8.1f} ms  {rate:8.1f} M values/s  "
                  f"numba is {sec / base:5.2f}x faster")
    write_json(a.json, {
        "values": a.values, "numba_threads": os.environ.get("NUMBA_NUM_THREADS"),
        "pandas": pandas_note,
        **{f"{shape}_{name}_values_per_s": a.values / sec
           for shape, res in results.items() for name, sec in res.items()}})


if __name__ == "__main__":
    main()
