"""Hypothesis strategies shared by the analytics kernel tests: small arrays with NaN and inf."""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# Kernels run as plain Python under NUMBA_DISABLE_JIT=1: keep examples few and small.
SETTINGS = settings(max_examples=40, deadline=None)

floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)
floats_nan = st.one_of(floats, st.just(np.nan), st.just(np.inf), st.just(-np.inf))


def matrix(rows: int, cols: int, elements: st.SearchStrategy = floats_nan) -> st.SearchStrategy:
    return hnp.arrays(np.float64, (rows, cols), elements=elements)


def seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2**32 - 1)
