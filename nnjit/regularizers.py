"""Weight regularizers: L1, L2 and L1L2 penalties (Keras semantics).

A layer calls ``penalty_and_grad(w, g)`` once per training step per regularized weight:
it adds the penalty's gradient into ``g`` in place (one fused kernel pass) and returns
the penalty, which the model adds to the loss.

>>> reg = L2(0.01)
>>> w = np.ones((2, 3), np.float32); g = np.zeros_like(w)
>>> reg.penalty_and_grad(w, g)          # 0.01 * sum(w**2); g += 2 * 0.01 * w
0.06
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import runtime
from .config import Configurable
from .kernels import regularizers as _k

__all__ = ["Regularizer", "L1", "L2", "L1L2", "get", "serialize", "deserialize"]


def _check_factor(owner, name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{owner}: expected a non-negative float. Received: {name}={value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{owner}: expected a non-negative float. Received: {name}={value!r}")
    return float(value)


class Regularizer(Configurable):
    """Base class.  A regularizer is ``l1 * sum(|w|) + l2 * sum(w**2)`` for its l1, l2."""

    _l1 = 0.0
    _l2 = 0.0

    def __call__(self, w) -> float:
        """The penalty of ``w`` (no gradient)."""
        return self.penalty(w)

    def penalty(self, w) -> float:
        """The penalty of ``w`` (no gradient)."""
        w = np.asarray(w)
        if w.dtype not in (np.float32, np.float64):
            w = w.astype(np.float64)
        flat = w.reshape(-1)
        sum_abs, sum_sq = _k.l1l2_penalty_and_grad(flat, flat[:0], w.dtype.type(self._l1),
                                                   w.dtype.type(2 * self._l2),
                                                   runtime.blocks_for(flat.shape[0]))
        return self._l1 * sum_abs + self._l2 * sum_sq

    def penalty_and_grad(self, w, g) -> float:
        """Add the gradient of the penalty into ``g`` (in place, same shape and dtype as
        ``w``) and return the penalty."""
        if not (isinstance(w, np.ndarray) and isinstance(g, np.ndarray)) or w.shape != g.shape \
                or w.dtype != g.dtype or w.dtype not in (np.float32, np.float64):
            raise ValueError(
                f"{type(self).__name__}.penalty_and_grad: expected w and g as float32 or float64 "
                f"arrays of the same shape and dtype. Received: "
                f"{getattr(w, 'shape', type(w))} {getattr(w, 'dtype', '')} and "
                f"{getattr(g, 'shape', type(g))} {getattr(g, 'dtype', '')}")
        t = w.dtype.type
        flat_w = w.reshape(-1)   # a copy only when w is not contiguous: fine, it is read only
        n = flat_w.shape[0]
        if g.flags.c_contiguous:
            flat_g = g.reshape(-1)   # a view: the kernel writes through to g
            sum_abs, sum_sq = _k.l1l2_penalty_and_grad(flat_w, flat_g, t(self._l1), t(2 * self._l2),
                                                       runtime.blocks_for(n))
        else:
            tmp = np.zeros(n, dtype=w.dtype)
            sum_abs, sum_sq = _k.l1l2_penalty_and_grad(flat_w, tmp, t(self._l1), t(2 * self._l2),
                                                       runtime.blocks_for(n))
            g += tmp.reshape(g.shape)
        return self._l1 * sum_abs + self._l2 * sum_sq

    def get_config(self) -> dict:
        raise NotImplementedError



class L1(Regularizer):
    """``l1 * sum(|w|)``; gradient ``l1 * sign(w)``.  Argument: l1=0.01 (non-negative)."""

    def __init__(self, l1=0.01):
        self.l1 = _check_factor("L1", "l1", l1)

    @property
    def _l1(self):
        return self.l1

    def get_config(self):
        return {"class_name": "L1", "l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(w**2)``; gradient ``2 * l2 * w``.  Argument: l2=0.01 (non-negative)."""

    def __init__(self, l2=0.01):
        self.l2 = _check_factor("L2", "l2", l2)

    @property
    def _l2(self):
        return self.l2

    def get_config(self):
        return {"class_name": "L2", "l2": self.l2}


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w**2)``.  Arguments: l1=0.0, l2=0.0 (non-negative), as
    Keras."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _check_factor("L1L2", "l1", l1)
        self.l2 = _check_factor("L1L2", "l2", l2)

    @property
    def _l1(self):
        return self.l1

    @property
    def _l2(self):
        return self.l2

    def get_config(self):
        return {"class_name": "L1L2", "l1": self.l1, "l2": self.l2}


_BY_NAME = {"l1": L1, "l2": L2, "l1l2": L1L2, "l1_l2": L1L2}
_BY_CLASS_NAME = {"L1": L1, "L2": L2, "L1L2": L1L2}


def serialize(regularizer: Regularizer) -> dict:
    return regularizer.get_config()


def deserialize(config: dict) -> Regularizer:
    """Rebuild a regularizer from ``get_config``'s output (only the classes here)."""
    name = config.get("class_name") if isinstance(config, dict) else None
    if name not in _BY_CLASS_NAME:
        raise ValueError(f"regularizers.deserialize: expected a config whose class_name is one of "
                         f"{sorted(_BY_CLASS_NAME)}. Received: config={config!r}")
    return _BY_CLASS_NAME[name].from_config(config)


def get(identifier):
    """A regularizer from None (returns None), an instance (as is), a name ("l1", "l2",
    "l1_l2"; default factors, any case) or a config dict."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown regularizer. Received: regularizer={identifier!r}; expected one of "
                             "'l1', 'l2', 'l1_l2', None or a Regularizer instance")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise TypeError(f"Could not interpret regularizer. Received: regularizer={identifier!r}; expected "
                    "'l1', 'l2', 'l1_l2', None, a Regularizer instance or a config dict")
