"""The Layer base class and the argument checks that every layer shares.

A layer owns its parameters and holds no per-call state: ``forward(x, training)``
returns the output and a ``backward(dy)`` closure that captures what the gradient
needs, accumulates parameter gradients into ``self.grads`` and returns the gradient
of the input.  This keeps layers re-entrant and lets one layer appear twice in a graph.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import re

import numpy as np

from .. import initializers, runtime

_LAYER_REGISTRY: dict[str, type] = {}
# While a file is loaded: how many weight elements the file holds, still unclaimed (a list of
# one int), so that an architecture asking for more is refused before it is allocated.
_WEIGHT_BUDGET: contextvars.ContextVar = contextvars.ContextVar("nnjit_weight_budget", default=None)


@contextlib.contextmanager
def weight_budget(elements: int, source: str):
    """Within the block, ``add_weight`` refuses (ValueError naming ``source``) weights beyond
    ``elements`` in total: loading a file never allocates more than the file holds."""
    token = _WEIGHT_BUDGET.set([int(elements), source])
    try:
        yield
    finally:
        _WEIGHT_BUDGET.reset(token)
_NAME_COUNTS: dict[str, int] = {}


def register_layer(cls):
    """Register a layer class for loading saved models (done automatically for subclasses)."""
    _LAYER_REGISTRY[cls.__name__] = cls
    return cls


def get_layer_class(name: str):
    if name not in _LAYER_REGISTRY:
        raise ValueError(f"Unknown layer class {name!r}: it is not registered. Known: {sorted(_LAYER_REGISTRY)}")
    return _LAYER_REGISTRY[name]


def _snake(name: str) -> str:
    # Conv2D -> conv2d, MaxPool2D -> max_pool2d, SimpleRNN -> simple_rnn (as Keras).
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z][a-z])|(?<=[a-z])(?=[A-Z])", "_", name).lower()


def unique_name(prefix: str) -> str:
    n = _NAME_COUNTS.get(prefix, 0)
    _NAME_COUNTS[prefix] = n + 1
    return prefix if n == 0 else f"{prefix}_{n}"


def check_positive_int(value, argument: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}: expected a positive integer for {argument}. Received: {argument}={value!r}")
    return int(value)


def check_rate(value, argument: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not 0 <= value < 1:
        raise ValueError(f"{owner}: expected a float in [0, 1) for {argument}. Received: {argument}={value!r}")
    return float(value)


def shape_str(shape) -> str:
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class Layer:
    """Base class of all layers.

    Subclasses implement ``build(input_shape)`` (create weights with ``add_weight``)
    and ``forward(x, training=False) -> (y, backward)``.  ``input_shape`` excludes the
    batch axis.  ``params`` and ``grads`` are dicts of arrays with the same keys;
    ``state`` holds arrays that are saved but not trained.
    """

    # Built-in layers whose backward accepts need_dx=False, so that the first layer of a
    # model can skip the input gradient nobody reads.
    _skips_input_grad = False
    # Masks (from Embedding(mask_zero=True)): layers that accept one in ``forward(...,
    # mask=...)`` set _accepts_mask; layers that pass it on unchanged set supports_masking.
    _accepts_mask = False
    supports_masking = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register_layer(cls)

    def __init__(self, name=None, trainable=True):
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{type(self).__name__}: expected a non-empty string for name. Received: name={name!r}")
        self.name = name or unique_name(_snake(type(self).__name__))
        self.trainable = bool(trainable)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}
        self.regularizers: dict[str, object] = {}
        self.built = False
        self.input_shape: tuple | None = None
        self.output_shape: tuple | None = None

    # ----------------------------------------------------------------- weights
    def build(self, input_shape: tuple) -> None:
        """Create the weights for inputs of ``input_shape`` (batch axis excluded)."""

    def add_weight(self, name, shape, initializer="glorot_uniform", regularizer=None, trainable=True):
        """Create a parameter (``trainable=True``, in ``params`` with a zeroed ``grads`` twin)
        or a state array (``trainable=False``, in ``state``) and return it."""
        shape = tuple(int(s) for s in shape)
        budget = _WEIGHT_BUDGET.get()
        if budget is not None:
            size = math.prod(shape)
            if size > budget[0]:
                raise ValueError(f"{budget[1]}: the architecture gives {self.name}.{name} the shape {shape}, more "
                                 f"weights than the file holds; the file is damaged or was altered")
            budget[0] -= max(size, 0)
        init = initializers.get(initializer, argument=f"initializer of {self.name}.{name}")
        dtype = runtime.floatx_dtype()
        value = np.ascontiguousarray(init(shape, dtype), dtype=dtype)
        if value.shape != shape:
            raise ValueError(f"{self.name}: initializer for {name!r} returned shape {value.shape}, expected {shape}")
        if trainable:
            self.params[name] = value
            self.grads[name] = np.zeros_like(value)
            if regularizer is not None:
                self.regularizers[name] = regularizer
        else:
            self.state[name] = value
        return value

    def ensure_built(self, input_shape) -> None:
        if not self.built:
            input_shape = tuple(input_shape)
            self.build(input_shape)
            self.input_shape = input_shape
            self.built = True
            out = self.compute_output_shape(input_shape)
            # A list of shapes means several outputs (a recurrent layer with return_state).
            self.output_shape = [tuple(o) for o in out] if isinstance(out, list) else tuple(out)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Shape of the output for ``input_shape`` (batch axis excluded).

        The default runs ``forward`` on a batch of two zero samples; layers override it
        when they can say it directly."""
        x = np.zeros((2,) + tuple(1 if s is None else s for s in input_shape), dtype=runtime.floatx_dtype())
        y, _ = self.forward(x, training=False)
        return tuple(y.shape[1:])

    def count_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def get_weights(self) -> list:
        return [p.copy() for p in self.params.values()] + [s.copy() for s in self.state.values()]

    def set_weights(self, weights) -> None:
        targets = list(self.params.items()) + list(self.state.items())
        if len(weights) != len(targets):
            raise ValueError(f"{self.name}.set_weights: expected {len(targets)} arrays. Received: {len(weights)}")
        for (key, target), w in zip(targets, weights):
            w = np.asarray(w)
            if w.shape != target.shape:
                raise ValueError(f"{self.name}.set_weights: expected shape {target.shape} for {key!r}. Received: {w.shape}")
            target[...] = w  # in place: the arrays may be views into a model's flat buffer

    def regularization_step(self) -> float:
        """Add the regularizers' gradients into ``grads``; return their penalty."""
        total = 0.0
        for key, reg in self.regularizers.items():
            total += reg.penalty_and_grad(self.params[key], self.grads[key])
        return total

    def regularization_penalty(self) -> float:
        total = 0.0
        for key, reg in self.regularizers.items():
            total += reg.penalty(self.params[key])
        return total

    # ----------------------------------------------------------------- calling
    def check_input_shape(self, shape) -> None:
        """Refuse an input whose shape (batch axis excluded) differs from the built one."""
        built = self.input_shape
        if built is None:
            return
        if len(shape) != len(built) or any(b is not None and b != s for b, s in zip(built, shape)):
            raise ValueError(
                f"{self.name}: expected input of shape {shape_str((None,) + tuple(built))}. "
                f"Received: x with shape {shape_str((None,) + tuple(shape))}")

    def compute_mask(self, x, mask=None):
        """The mask of this layer's output, given its input ``x`` and the input's mask."""
        return mask if self.supports_masking else None

    def forward(self, x, training=False):
        """Return ``(y, backward)``; ``backward(dy)`` returns the gradient of x."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def __call__(self, x, training=False):
        from .input import SymbolicTensor

        if isinstance(x, SymbolicTensor) or (isinstance(x, (list, tuple)) and x and isinstance(x[0], SymbolicTensor)):
            return x_call_symbolic(self, x)
        if isinstance(x, (list, tuple)):
            from ..models.validation import as_input_array

            arrays = [as_input_array(a, f"x[{i}]", self.name) for i, a in enumerate(x)]
            shapes = [a.shape[1:] for a in arrays]
            self.ensure_built(shapes)
            self.check_input_shape(shapes)
            return self.forward(arrays, training=training)[0]
        from ..models.validation import as_input_array

        x = as_input_array(x, "x", self.name)
        self.ensure_built(x.shape[1:])
        self.check_input_shape(x.shape[1:])
        y, _ = self.forward(x, training=training)
        return y

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable}

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        return f"{type(self).__name__}(name={self.name!r}{', ' + extra if extra else ''})"


def x_call_symbolic(layer, x):
    from .input import call_symbolic

    return call_symbolic(layer, x)
