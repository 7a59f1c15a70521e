"""Checks and conversions of user data, done once before any work starts."""
from __future__ import annotations

import numbers

import numpy as np

from .. import runtime
from ..layers.base import shape_str


def _first_bad(a: np.ndarray):
    idx = np.argwhere(~np.isfinite(a))[0]
    return tuple(int(i) for i in idx), a[tuple(idx)]


def as_input_array(x, argument="x", owner="model", dtype=None, min_rank=2) -> np.ndarray:
    """Convert ``x`` to a C-contiguous array of the float type, refusing what cannot be used.

    Integer, float64 and non-contiguous arrays are converted; empty arrays, NaN or
    infinity, a rank below ``min_rank`` and non-numeric data raise an error naming
    the argument and the value.
    """
    dtype = runtime.floatx_dtype() if dtype is None else np.dtype(dtype)
    if isinstance(x, np.ndarray) and x.dtype == dtype and x.flags.c_contiguous:
        a = x
    else:
        if x is None or isinstance(x, (str, bytes, dict)):
            raise TypeError(f"{owner}: expected a numeric array for {argument}. Received: {argument}={x!r:.80}")
        try:
            a = np.asarray(x)
        except Exception as exc:  # ragged nested lists and the like
            raise TypeError(f"{owner}: expected a numeric array for {argument}. Received: {argument}={x!r:.80}") from exc
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise TypeError(
                f"{owner}: expected a numeric array for {argument}. Received: {argument} with dtype {a.dtype}")
        if np.issubdtype(a.dtype, np.complexfloating):
            raise TypeError(f"{owner}: expected a real array for {argument}. Received: {argument} with dtype {a.dtype}")
        a = np.ascontiguousarray(a, dtype=dtype)
    if a.ndim < min_rank:
        raise ValueError(
            f"{owner}: expected {argument} with at least {min_rank} dimensions (batch axis first). "
            f"Received: {argument} with shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{owner}: expected a non-empty array for {argument}. Received: {argument} with shape {a.shape}")
    if not np.isfinite(a).all():
        where, value = _first_bad(a)
        raise ValueError(f"{owner}: {argument} contains {value} at index {where}; expected finite numbers")
    return a


def check_feature_shape(x: np.ndarray, expected, argument="x", owner="model") -> None:
    """Refuse ``x`` whose per-sample shape differs from ``expected`` (None matches anything)."""
    got = x.shape[1:]
    if expected is None:
        return
    if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise ValueError(
            f"{owner}: expected {argument} of shape {shape_str((None,) + tuple(expected))}. "
            f"Received: {argument} with shape {shape_str(x.shape)}")


def check_int(value, argument, owner, minimum):
    if type(value) is int and value >= minimum:  # the common case, on every predict call
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: expected an integer for {argument}. Received: {argument}={value!r}")
    if value < minimum:
        raise ValueError(f"{owner}: expected {argument} >= {minimum}. Received: {argument}={value}")
    return int(value)


def check_same_length(x, y, owner):
    if len(x) != len(y):
        raise ValueError(
            f"{owner}: x and y must have the same number of samples. Received: x with {len(x)} samples, y with {len(y)}")
