"""Input checks for the public kernel wrappers: fail early with a message that says the fix.

A Numba kernel given the wrong dtype either recompiles silently (slow, once per new type) or
fails deep inside LLVM typing with an error nobody can act on. The wrappers call these first,
in the stumpy manner: name the argument, say what was expected and how to get it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class KernelInputError(ValueError):
    """The caller passed arrays the kernel cannot use. `.argument` names the bad one."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


def array(
    name: str, a: Any, dtype: type, ndim: int, shape: tuple[int | None, ...] | None = None
) -> np.ndarray:
    """Return `a` unchanged if it is a C-contiguous ndarray of `dtype`/`ndim`/`shape`, else raise.

    No silent conversion: a copy of a 10M-value array per call is exactly the cost the kernels
    exist to avoid, so the caller decides where to convert."""
    want = np.dtype(dtype)
    if not isinstance(a, np.ndarray):
        raise KernelInputError(
            name, f"expected a numpy array, got {type(a).__name__}; use np.asarray(x, {want})"
        )
    if a.dtype != want:
        raise KernelInputError(
            name, f"expected dtype {want}, got {a.dtype}; convert with x.astype(np.{want})"
        )
    if a.ndim != ndim:
        raise KernelInputError(name, f"expected {ndim} dimension(s), got shape {a.shape}")
    if shape is not None:
        for axis, (got, exp) in enumerate(zip(a.shape, shape, strict=True)):
            if exp is not None and got != exp:
                raise KernelInputError(
                    name, f"axis {axis} has length {got}, expected {exp} (shape {a.shape}); align the inputs"
                )
    if not a.flags.c_contiguous:
        raise KernelInputError(name, "array is not C-contiguous; pass np.ascontiguousarray(x)")
    return a


def positive(name: str, value: float) -> float:
    if not value > 0:
        raise KernelInputError(name, f"must be > 0, got {value}")
    return float(value)


def index_range(name: str, a: np.ndarray, upper: int) -> None:
    """Group/meter indices must lie in [0, upper): the kernels index without bounds checks."""
    if a.size and (a.min() < 0 or a.max() >= upper):
        raise KernelInputError(
            name,
            f"indices must lie in [0, {upper}), got [{a.min()}, {a.max()}]; fix the mapping or the count",
        )
