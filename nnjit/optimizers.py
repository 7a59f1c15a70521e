"""Optimizers over flat parameter buffers: SGD, RMSprop, Adam, AdamW.

A model keeps all its parameters in one flat 1-D buffer and all gradients in a second
buffer of the same size (each layer's weights are views into them).  An optimizer holds
its slots (momentum, velocity, ...) as flat buffers of the same size, and one update is
one fused kernel call per trainable range: gradient clipping, weight decay and the rule
happen in one pass over the memory.  Frozen layers are simply left out of the ranges.

>>> opt = Adam(learning_rate=1e-3)
>>> params = np.zeros(10, np.float32); grads = np.ones(10, np.float32)
>>> opt.update(params, grads, [(0, 6)])      # params[6:] stays untouched
>>> opt.iterations
1

The update rules are Keras 3's (Adam and AdamW use ``m_hat / (sqrt(v_hat) + epsilon)``,
which is also PyTorch's form).  ``learning_rate`` may be a float, a schedule from
``nj.optimizers.schedules`` or any callable of the step; it is evaluated at
``iterations``, the number of updates already applied.
"""
from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from . import runtime
from . import schedules
from .kernels import optimizers as _k

__all__ = [
    "Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "schedules", "get", "serialize",
    "deserialize", "global_norm", "clip_by_norm", "clip_by_value",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ------------------------------------------------------------------ argument checks

def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_real(owner, name, value, expected, ok):
    """Return float(value) if it is a finite real number for which ok(value) holds."""
    if not _is_real(value):
        raise TypeError(f"{owner}: expected {expected}. Received: {name}={value!r}")
    value = float(value)
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{owner}: expected {expected}. Received: {name}={_fmt(value)}")
    return value


def _fmt(value):
    # Keras-style messages print -1 rather than -1.0 for a value the user typed as an int.
    return int(value) if float(value).is_integer() and abs(value) < 1e15 else value


def _check_learning_rate(owner, value):
    if isinstance(value, schedules.LearningRateSchedule) or (callable(value) and not _is_real(value)):
        return value
    return _check_real(owner, "learning_rate", value,
                       "a positive float, a schedule or a callable of the step", lambda v: v > 0)


def _check_fraction(owner, name, value):
    return _check_real(owner, name, value, "a float in [0, 1)", lambda v: 0 <= v < 1)


def _check_non_negative(owner, name, value):
    return _check_real(owner, name, value, "a non-negative float", lambda v: v >= 0)


def _check_optional_positive(owner, name, value):
    if value is None:
        return None
    return _check_real(owner, name, value, "a positive float or None", lambda v: v > 0)


def _check_ranges(ranges, size):
    """Validate (start, stop) pairs against a buffer of ``size`` elements.

    Returns a tuple of (int, int) pairs: non-empty, inside the buffer, sorted and not
    overlapping (an element in two ranges would be updated twice).
    """
    if ranges is None:
        return ((0, size),)
    out = []
    for r in ranges:
        try:
            start, stop = r
            start, stop = operator.index(start), operator.index(stop)
        except (TypeError, ValueError):
            raise TypeError(f"update: expected ranges as (start, stop) integer pairs. Received: {r!r}") from None
        if not 0 <= start <= stop <= size:
            raise ValueError(f"update: expected 0 <= start <= stop <= {size} (the buffer size). "
                             f"Received: range ({start}, {stop})")
        if stop > start:
            out.append((start, stop))
    if len(out) > 1:
        out.sort()
        for (_, prev_stop), (start, stop) in zip(out, out[1:]):
            if start < prev_stop:
                raise ValueError(f"update: ranges overlap: ({start}, {stop}) begins before {prev_stop}")
    return tuple(out)


def _ranges_array(ranges, size):
    return np.array(_check_ranges(ranges, size), dtype=np.int64).reshape(-1, 2)


def _check_flat(name, x):
    if not isinstance(x, np.ndarray) or x.ndim != 1 or x.dtype not in _FLOAT_DTYPES \
            or not x.flags.c_contiguous:
        desc = (f"array of shape {x.shape} and dtype {x.dtype}" if isinstance(x, np.ndarray)
                else type(x).__name__)
        raise TypeError(f"expected {name} as a contiguous 1-D float32 or float64 array. Received: {desc}")


# --------------------------------------------------------------- standalone clipping

def global_norm(grads, ranges=None) -> float:
    """L2 norm of ``grads`` over all ``ranges`` together (the whole buffer when None),
    accumulated in float64."""
    _check_flat("grads", grads)
    total = 0.0
    for start, stop in _check_ranges(ranges, grads.shape[0]):
        total += _k.sum_of_squares(grads, start, stop, runtime.blocks_for(stop - start))
    return math.sqrt(total)


def clip_by_norm(grads, clipnorm, ranges=None) -> float:
    """Scale ``grads`` (in place, over ``ranges``) by ``clipnorm / max(norm, clipnorm)``,
    the norm taken over all ranges together.  Returns the norm before clipping."""
    _check_flat("grads", grads)
    clipnorm = _check_optional_positive("clip_by_norm", "clipnorm", clipnorm)
    r = _ranges_array(ranges, grads.shape[0])
    work = int((r[:, 1] - r[:, 0]).sum())
    return float(_k.clip_by_norm(grads, r, clipnorm, runtime.blocks_for(work)))


def clip_by_value(grads, clipvalue, ranges=None) -> None:
    """Clip ``grads`` (in place, over ``ranges``) to ``[-clipvalue, clipvalue]``."""
    _check_flat("grads", grads)
    clipvalue = _check_optional_positive("clip_by_value", "clipvalue", clipvalue)
    r = _ranges_array(ranges, grads.shape[0])
    work = int((r[:, 1] - r[:, 0]).sum())
    _k.clip_by_value(grads, r, clipvalue, runtime.blocks_for(work))


# ------------------------------------------------------------------------ base class

class Optimizer:
    """Base class of the optimizers over flat buffers.

    Arguments common to all: ``learning_rate`` (positive float, schedule or callable of the
    step), ``clipnorm`` (scale the gradients so that their L2 norm over all trainable
    ranges together is at most this) and ``clipvalue`` (clip each gradient element to
    ``[-clipvalue, clipvalue]``).  As in Keras, at most one of the two may be set.

    Subclasses declare ``_slot_names()`` and implement ``_apply``.
    """

    def __init__(self, learning_rate, clipnorm=None, clipvalue=None):
        owner = type(self).__name__
        self.learning_rate = learning_rate
        self.clipnorm = _check_optional_positive(owner, "clipnorm", clipnorm)
        self.clipvalue = _check_optional_positive(owner, "clipvalue", clipvalue)
        if self.clipnorm is not None and self.clipvalue is not None:
            raise ValueError(f"{owner}: only one of clipnorm and clipvalue can be set. "
                             f"Received: clipnorm={clipnorm!r}, clipvalue={clipvalue!r}")
        self.iterations = 0
        self._size = None
        self._dtype = None
        self._slots: dict[str, np.ndarray] = {}
        self._empty = None

    # ------------------------------------------------------------- learning rate
    @property
    def learning_rate(self):
        """The learning rate as given: a float, a schedule or a callable of the step."""
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        value = _check_learning_rate(type(self).__name__, value)
        self._learning_rate = value
        self._lr_is_callable = not isinstance(value, float)

    def current_learning_rate(self) -> float:
        """The learning rate of the step about to be taken (a schedule is evaluated at
        ``iterations``)."""
        if not self._lr_is_callable:
            return self._learning_rate
        lr = float(self._learning_rate(self.iterations))
        if not (0 <= lr < math.inf):
            raise ValueError(f"{type(self).__name__}: the learning_rate schedule returned {lr} "
                             f"at step {self.iterations}; expected a finite non-negative float")
        return lr

    # -------------------------------------------------------------------- slots
    def _slot_names(self) -> tuple:
        return ()

    @property
    def built(self) -> bool:
        return self._size is not None

    def build(self, size, dtype=None):
        """Allocate the slot buffers (zeros) for a flat buffer of ``size`` elements.

        Does nothing when already built for the same size and dtype; otherwise the slots
        start again from zero (``iterations`` is kept).
        """
        size = operator.index(size)
        if size < 0:
            raise ValueError(f"{type(self).__name__}.build: expected a non-negative size. Received: size={size}")
        dtype = np.dtype(runtime.floatx() if dtype is None else dtype)
        if dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}.build: expected dtype float32 or float64. Received: dtype={dtype}")
        if size == self._size and dtype == self._dtype:
            return
        self._slots = {name: np.zeros(size, dtype) for name in self._slot_names()}
        self._empty = np.zeros(0, dtype)
        self._size = size
        self._dtype = dtype

    # ------------------------------------------------------------------- update
    def update(self, params, grads, ranges=None) -> None:
        """Apply one step in place to ``params[start:stop]`` for each (start, stop) in
        ``ranges`` (the whole buffer when None), using ``grads`` (read only; clipping does
        not modify it).  Builds the slots on first use.  Increments ``iterations``."""
        _check_flat("params", params)
        _check_flat("grads", grads)
        if params.shape != grads.shape or params.dtype != grads.dtype:
            raise ValueError(f"update: expected params and grads of the same shape and dtype. "
                             f"Received: {params.shape} {params.dtype} and {grads.shape} {grads.dtype}")
        size = params.shape[0]
        ranges = _check_ranges(ranges, size)
        if size != self._size or params.dtype != self._dtype:
            self.build(size, params.dtype)
        lr = self.current_learning_rate()
        gscale = 1.0
        if self.clipnorm is not None:
            norm = 0.0
            for start, stop in ranges:
                norm += _k.sum_of_squares(grads, start, stop, runtime.blocks_for(stop - start))
            norm = math.sqrt(norm)
            gscale = self.clipnorm / max(norm, self.clipnorm)
        clipvalue = math.inf if self.clipvalue is None else self.clipvalue
        self._apply(params, grads, ranges, lr, gscale, clipvalue, params.dtype.type)
        self.iterations += 1

    def _apply(self, params, grads, ranges, lr, gscale, clipvalue, t):
        """Run the rule's kernel once per range; scalars cast with ``t`` (the dtype)."""
        raise NotImplementedError

    # ----------------------------------------------------------- configuration
    def _own_config(self) -> dict:
        return {}

    def get_config(self) -> dict:
        """``{"class_name": ..., <constructor arguments>}``, JSON-serializable.

        A schedule is stored as its own config.  A plain callable cannot be stored (loading
        never executes code named by a file), so it is replaced by the learning rate it gives
        at the current step.
        """
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            lr = lr.get_config()
        elif self._lr_is_callable:
            lr = self.current_learning_rate()
        config = {"class_name": type(self).__name__, "learning_rate": lr}
        config.update(self._own_config())
        config.update(clipnorm=self.clipnorm, clipvalue=self.clipvalue)
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config.pop("class_name", None)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    # -------------------------------------------------------------------- state
    def get_state(self) -> dict:
        """Copies of the slot buffers plus ``iterations`` (a 0-d int64 array)."""
        state = {"iterations": np.array(self.iterations, dtype=np.int64)}
        for name, slot in self._slots.items():
            state[name] = slot.copy()
        return state

    def set_state(self, state: dict) -> None:
        """Restore ``get_state``'s output.  Slots are copied into this optimizer's buffers
        (built from the state when not built yet); shapes must match."""
        owner = f"{type(self).__name__}.set_state"
        if not isinstance(state, dict) or "iterations" not in state:
            raise ValueError(f"{owner}: expected a dict with an 'iterations' entry. Received: {type(state).__name__}"
                             + (f" with keys {sorted(state)}" if isinstance(state, dict) else ""))
        names = self._slot_names()
        unknown = sorted(set(state) - set(names) - {"iterations"})
        if unknown:
            raise ValueError(f"{owner}: unknown entries {unknown}; expected 'iterations' and {list(names)}")
        iterations = np.asarray(state["iterations"])
        if iterations.size != 1 or iterations.ndim > 1 or iterations.dtype.kind not in "iu" \
                or int(iterations.reshape(())) < 0:
            raise ValueError(f"{owner}: expected iterations as a non-negative integer. "
                             f"Received: {iterations!r}")
        present = [n for n in names if n in state]
        if present and len(present) != len(names):
            missing = sorted(set(names) - set(present))
            raise ValueError(f"{owner}: missing slots {missing}")
        if present:
            slots = {n: np.asarray(state[n]) for n in names}
            size = self._size
            if size is None:
                size = slots[names[0]].shape[0] if slots[names[0]].ndim == 1 else -1
            for n, value in slots.items():
                if value.shape != (size,) or value.dtype.kind != "f":
                    raise ValueError(f"{owner}: expected slot {n!r} as a float array of shape ({size},). "
                                     f"Received: shape {value.shape}, dtype {value.dtype}")
            if not self.built:
                dtype = slots[names[0]].dtype
                self.build(size, dtype if dtype in _FLOAT_DTYPES else None)
            for n, value in slots.items():
                np.copyto(self._slots[n], value, casting="same_kind")
        self.iterations = int(iterations.reshape(()))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "class_name")
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------------- the rules

class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and
    decoupled weight decay (Keras 3 rule).

    Per step, with g the (clipped) gradient and lr the current learning rate:
    ``p -= p * weight_decay * lr`` (when weight_decay is set), then without momentum
    ``p -= lr * g``; with momentum ``v = momentum * v - lr * g`` and ``p += v``, or with
    ``nesterov=True`` ``p += momentum * v - lr * g``.

    Arguments: learning_rate=0.01, momentum=0.0 (in [0, 1)), nesterov=False,
    weight_decay=None (non-negative float), clipnorm=None, clipvalue=None.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None):
        super().__init__(learning_rate, clipnorm, clipvalue)
        self.momentum = _check_fraction("SGD", "momentum", momentum)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"SGD: expected a bool. Received: nesterov={nesterov!r}")
        self.nesterov = bool(nesterov)
        self.weight_decay = (None if weight_decay is None
                             else _check_non_negative("SGD", "weight_decay", weight_decay))

    def _slot_names(self):
        return ("momentum",) if self.momentum > 0 else ()

    def _apply(self, params, grads, ranges, lr, gscale, clipvalue, t):
        vel = self._slots.get("momentum", self._empty)
        decay = t(1.0 - lr * self.weight_decay) if self.weight_decay else t(1.0)
        lr_, momentum, gscale, clipvalue = t(lr), t(self.momentum), t(gscale), t(clipvalue)
        for start, stop in ranges:
            _k.sgd_update(params, grads, vel, start, stop, lr_, momentum, self.nesterov, decay,
                          gscale, clipvalue, runtime.blocks_for(stop - start))

    def _own_config(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov, "weight_decay": self.weight_decay}


class RMSprop(Optimizer):
    """RMSprop (Keras 3 rule, not centered).

    ``v = rho * v + (1 - rho) * g**2``; ``inc = lr * g / sqrt(v + epsilon)`` (epsilon
    inside the square root, as Keras; PyTorch adds it outside); without momentum
    ``p -= inc``, else ``mom = momentum * mom + inc`` and ``p -= mom``.

    Arguments: learning_rate=0.001, rho=0.9 (in [0, 1)), momentum=0.0 (in [0, 1)),
    epsilon=1e-7 (non-negative), clipnorm=None, clipvalue=None.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 clipnorm=None, clipvalue=None):
        super().__init__(learning_rate, clipnorm, clipvalue)
        self.rho = _check_fraction("RMSprop", "rho", rho)
        self.momentum = _check_fraction("RMSprop", "momentum", momentum)
        self.epsilon = _check_non_negative("RMSprop", "epsilon", epsilon)

    def _slot_names(self):
        return ("velocity", "momentum") if self.momentum > 0 else ("velocity",)

    def _apply(self, params, grads, ranges, lr, gscale, clipvalue, t):
        v = self._slots["velocity"]
        mom = self._slots.get("momentum", self._empty)
        lr_, rho, one_minus_rho = t(lr), t(self.rho), t(1.0 - self.rho)
        momentum, epsilon, gscale, clipvalue = t(self.momentum), t(self.epsilon), t(gscale), t(clipvalue)
        for start, stop in ranges:
            _k.rmsprop_update(params, grads, v, mom, start, stop, lr_, rho, one_minus_rho, momentum,
                              epsilon, gscale, clipvalue, runtime.blocks_for(stop - start))

    def _own_config(self):
        return {"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon}


class Adam(Optimizer):
    """Adam with bias-corrected moments: ``p -= lr * m_hat / (sqrt(v_hat) + epsilon)``.

    ``m = beta_1 * m + (1 - beta_1) * g``, ``v = beta_2 * v + (1 - beta_2) * g**2``,
    ``m_hat = m / (1 - beta_1**t)``, ``v_hat = v / (1 - beta_2**t)``, t = iterations + 1.
    (Keras 3 folds the bias correction into the step size, which moves epsilon by a
    factor sqrt(1 - beta_2**t); the form here is PyTorch's and the paper's.)

    Arguments: learning_rate=0.001, beta_1=0.9, beta_2=0.999 (each in [0, 1)),
    epsilon=1e-7 (non-negative), clipnorm=None, clipvalue=None.
    """

    _weight_decay = 0.0

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 clipnorm=None, clipvalue=None):
        super().__init__(learning_rate, clipnorm, clipvalue)
        owner = type(self).__name__
        self.beta_1 = _check_fraction(owner, "beta_1", beta_1)
        self.beta_2 = _check_fraction(owner, "beta_2", beta_2)
        self.epsilon = _check_non_negative(owner, "epsilon", epsilon)

    def _slot_names(self):
        return ("momentum", "velocity")

    def _apply(self, params, grads, ranges, lr, gscale, clipvalue, t):
        m = self._slots["momentum"]
        v = self._slots["velocity"]
        step = self.iterations + 1
        bias_correction_1 = 1.0 - self.beta_1 ** step
        bias_correction_2 = 1.0 - self.beta_2 ** step
        step_size = t(lr / bias_correction_1)
        inv_sqrt_bc2 = t(1.0 / math.sqrt(bias_correction_2))
        decay = t(1.0 - lr * self._weight_decay)
        one_minus_b1, beta_2, one_minus_b2 = t(1.0 - self.beta_1), t(self.beta_2), t(1.0 - self.beta_2)
        epsilon, gscale, clipvalue = t(self.epsilon), t(gscale), t(clipvalue)
        for start, stop in ranges:
            _k.adam_update(params, grads, m, v, start, stop, step_size, inv_sqrt_bc2, one_minus_b1,
                           beta_2, one_minus_b2, epsilon, decay, gscale, clipvalue,
                           runtime.blocks_for(stop - start))

    def _own_config(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras 3 and PyTorch): ``p -= lr * weight_decay * p``
    first, then the Adam step (which does not see the decay in its moments).

    Arguments: learning_rate=0.001, weight_decay=0.004 (non-negative), beta_1=0.9,
    beta_2=0.999, epsilon=1e-7, clipnorm=None, clipvalue=None.
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, clipnorm=None, clipvalue=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, clipnorm, clipvalue)
        self.weight_decay = _check_non_negative("AdamW", "weight_decay", weight_decay)

    @property
    def _weight_decay(self):
        return self.weight_decay

    def _own_config(self):
        config = {"weight_decay": self.weight_decay}
        config.update(super()._own_config())
        return config


# ------------------------------------------------------------------- lookup by name

_BY_NAME = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}
_BY_CLASS_NAME = {cls.__name__: cls for cls in _BY_NAME.values()}


def serialize(optimizer: Optimizer) -> dict:
    """The config of an optimizer (``optimizer.get_config()``)."""
    return optimizer.get_config()


def deserialize(config: dict) -> Optimizer:
    """Rebuild an optimizer from ``get_config``'s output (only the classes of this module)."""
    name = config.get("class_name") if isinstance(config, dict) else None
    if name not in _BY_CLASS_NAME:
        raise ValueError(f"optimizers.deserialize: expected a config whose class_name is one of "
                         f"{sorted(_BY_CLASS_NAME)}. Received: config={config!r}")
    return _BY_CLASS_NAME[name].from_config(config)


def get(identifier) -> Optimizer:
    """An optimizer from an instance (returned as is), a name ("sgd", "rmsprop", "adam",
    "adamw", any case; default arguments) or a config dict from ``get_config``."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown optimizer. Received: optimizer={identifier!r}; expected one of "
                             f"{', '.join(repr(n) for n in _BY_NAME)} or an Optimizer instance")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise TypeError(f"Could not interpret optimizer. Received: optimizer={identifier!r}; expected a "
                    f"name ({', '.join(repr(n) for n in _BY_NAME)}), an Optimizer instance or a config dict")
