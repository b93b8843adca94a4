"""Compilation settings shared by every kernel module, read once at import.

`fastmath` lets LLVM reorder floating-point sums. That changes results in the last bits and
breaks NaN checks (`x != x`), which the kernels rely on to skip missing values, so it is off
unless the operator opts in with WATTRAIL_NUMBA_FASTMATH=1 (as stumpy takes it from config,
never from a call site). `cache=True` writes compiled code next to the module, so a restarted
API process loads machine code instead of compiling; `warmup.warm_up()` fills that cache.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import config as numba_config
from numba import njit

F = TypeVar("F", bound=Callable[..., Any])

FASTMATH: bool = os.environ.get("WATTRAIL_NUMBA_FASTMATH", "0") == "1"


def kernel(fn: F) -> F:
    """`@njit(cache=True, fastmath=FASTMATH)`: the one way kernels here are compiled.

    Under NUMBA_DISABLE_JIT=1 (coverage runs) the kernel is plain Python on NumPy scalars, which
    warn on 0/0 or inf - inf where compiled code silently gives NaN; the warning is silenced
    so both modes have the same semantics (and tests that turn warnings into errors agree)."""
    # numba.config sets its options at import from the NUMBA_* environment, so mypy cannot see them
    if numba_config.DISABLE_JIT:  # type: ignore[attr-defined]

        @functools.wraps(fn)
        def quiet(*args: Any) -> Any:
            with np.errstate(all="ignore"):
                return fn(*args)

        return quiet  # type: ignore[return-value]
    # a Dispatcher is called exactly like the function it compiles
    return cast(F, njit(cache=True, fastmath=FASTMATH)(fn))
