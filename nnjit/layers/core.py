"""Dense, Activation, Dropout, Flatten and Reshape."""
from __future__ import annotations

import math

import numpy as np

from .. import regularizers as _regularizers
from .. import runtime
from ..kernels.activations import CODES, NAMES, activation_backward, activation_forward
from ..kernels.blas import GEMV_MAX_ROWS
from ..kernels.dense import dense_backward, dense_forward
from .base import Layer, check_positive_int, check_rate, shape_str

_NO_BIAS = {}


def activation_code(identifier, argument="activation", owner="layer") -> int:
    """The kernel code of an activation given by name (None means linear)."""
    if identifier is None:
        return CODES["linear"]
    if isinstance(identifier, str) and identifier.lower() in CODES:
        return CODES[identifier.lower()]
    if isinstance(identifier, str):
        raise ValueError(f"{owner}: unknown {argument}, expected one of {sorted(CODES)}. Received: {argument}={identifier!r}")
    raise TypeError(f"{owner}: expected the name of an activation for {argument}. Received: {argument}={identifier!r}")


def _empty(dtype):
    key = np.dtype(dtype)
    if key not in _NO_BIAS:
        _NO_BIAS[key] = np.empty(0, dtype=key)
    return _NO_BIAS[key]


class Dense(Layer):
    """Fully connected layer: ``y = activation(x @ kernel + bias)``, fused in one kernel.

    Args:
        units: positive int, output features.
        activation: name of an activation (see ``nj.layers.Activation``) or None.
        use_bias: whether to add a bias.
        kernel_initializer: name or callable(shape, dtype).
        kernel_regularizer: None, "l1", "l2" or a regularizer object.

    Input shape (batch, ..., in); output shape (batch, ..., units).
    Parameters: kernel (in, units), bias (units,).
    """

    _skips_input_grad = True
    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.units = check_positive_int(units, "units", "Dense")
        self.activation = "linear" if activation is None else activation
        self._code = activation_code(activation, "activation", "Dense")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        from .. import initializers
        initializers.get(kernel_initializer, "kernel_initializer")  # refuse bad names now, not at build
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)

    @property
    def fusable_activation(self):
        """The final activation a loss may fuse with (softmax/sigmoid), else None."""
        name = NAMES[self._code]
        return name if name in ("softmax", "sigmoid") else None

    def build(self, input_shape):
        if not input_shape or input_shape[-1] is None:
            raise ValueError(f"{self.name}: the last axis of the input must be known. Received: input_shape={input_shape}")
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer,
                        regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), "zeros")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def flops(self, input_shape) -> int:
        """Forward FLOPs per sample (a multiply-add counts two)."""
        return 2 * math.prod(input_shape) * self.units

    def check_input_shape(self, shape):
        if not shape or shape[-1] != self.input_shape[-1]:
            raise ValueError(
                f"{self.name}: expected input with {self.input_shape[-1]} features on the last axis. "
                f"Received: x with shape {shape_str((None,) + tuple(shape))}")

    def forward(self, x, training=False, linear_output=False):
        if not self.built:
            self.ensure_built(x.shape[1:])
        w = self.params["kernel"]
        b = self.params["bias"] if self.use_bias else _empty(w.dtype)
        units = w.shape[1]
        x2 = x.reshape(-1, w.shape[0])
        n = x2.shape[0]
        code = 0 if linear_output else self._code
        nblocks = runtime.blocks_for(n * w.size)
        y, z = dense_forward(x2, w, b, code, runtime.gemv_blocks(n * w.size) if n <= GEMV_MAX_ROWS else nblocks)

        def backward(dy, need_dx=True):
            dy2 = np.ascontiguousarray(dy.reshape(n, units), dtype=w.dtype)
            if self.trainable:
                dw = self.grads["kernel"]
                db = self.grads["bias"] if self.use_bias else _empty(w.dtype)
            else:
                dw, db = w, _empty(w.dtype)  # unused: need_dw is False
            dx = dense_backward(dy2, x2, w, y, z, code, dw, db, need_dx, self.trainable, nblocks)
            return dx.reshape(x.shape) if need_dx else None

        return (y if x.ndim == 2 else y.reshape(x.shape[:-1] + (units,))), backward

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": _config_of(self.kernel_initializer),
                "kernel_regularizer": _config_of(self.kernel_regularizer)}

    def extra_repr(self):
        return f"units={self.units}, activation={self.activation!r}"


def _config_of(obj):
    """A JSON-friendly description of an initializer or regularizer argument: a name, a
    config dict (kept as given) or the object's get_config()."""
    if obj is None or isinstance(obj, (str, dict)):
        return obj
    return obj.get_config() if hasattr(obj, "get_config") else repr(obj)


class Activation(Layer):
    """Applies an activation by name: "linear", "relu", "leaky_relu", "elu", "gelu",
    "sigmoid", "tanh", "softmax" (over the last axis) or "swish". Output shape = input shape."""

    _skips_input_grad = False
    supports_masking = True

    def __init__(self, name_or_fn, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.activation = name_or_fn
        self._code = activation_code(name_or_fn, "name_or_fn", "Activation")

    @property
    def fusable_activation(self):
        name = NAMES[self._code]
        return name if name in ("softmax", "sigmoid") else None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False, linear_output=False):
        if linear_output:
            return x, lambda dy: dy
        x2 = x.reshape(-1, x.shape[-1])
        nblocks = runtime.blocks_for(x2.size)
        code = self._code
        y = activation_forward(x2, code, nblocks)

        def backward(dy):
            dy2 = np.ascontiguousarray(dy.reshape(x2.shape), dtype=x.dtype)
            return activation_backward(dy2, y, x2, code, nblocks).reshape(x.shape)

        return y.reshape(x.shape), backward

    def get_config(self):
        return {**super().get_config(), "name_or_fn": self.activation}

    def extra_repr(self):
        return f"{self.activation!r}"


class Dropout(Layer):
    """Zeroes a fraction ``rate`` of the inputs during training and scales the rest by
    1 / (1 - rate) (inverted dropout); the identity at inference."""

    supports_masking = True

    def __init__(self, rate, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.rate = check_rate(rate, "rate", "Dropout")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            return x, lambda dy: dy
        keep = runtime.rng().random(x.shape, dtype=np.float32) >= self.rate
        mask = keep.astype(x.dtype)
        mask *= 1.0 / (1.0 - self.rate)
        return x * mask, lambda dy: dy * mask

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}

    def extra_repr(self):
        return f"rate={self.rate}"


class Flatten(Layer):
    """Flattens every axis but the batch axis: (batch, d1, d2, ...) -> (batch, d1*d2*...)."""

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        shape = x.shape
        return x.reshape(shape[0], -1), lambda dy: dy.reshape(shape)


class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (batch axis excluded; one entry may be -1)."""

    def __init__(self, target_shape, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        if isinstance(target_shape, (int, np.integer)):
            target_shape = (target_shape,)
        if (not isinstance(target_shape, (tuple, list)) or not target_shape
                or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and (s >= 1 or s == -1) for s in target_shape)
                or sum(1 for s in target_shape if s == -1) > 1):
            raise ValueError(
                f"Reshape: expected target_shape as a tuple of positive integers (at most one -1). Received: target_shape={target_shape!r}")
        self.target_shape = tuple(int(s) for s in target_shape)

    def compute_output_shape(self, input_shape):
        total = math.prod(input_shape)
        known = math.prod(s for s in self.target_shape if s != -1)
        if -1 in self.target_shape:
            if total % known:
                raise ValueError(f"{self.name}: cannot reshape input of shape {tuple(input_shape)} to {self.target_shape}")
            return tuple(total // known if s == -1 else s for s in self.target_shape)
        if known != total:
            raise ValueError(
                f"{self.name}: cannot reshape input of shape {tuple(input_shape)} ({total} values) "
                f"to target_shape={self.target_shape} ({known} values)")
        return self.target_shape

    def forward(self, x, training=False):
        shape = x.shape
        target = self.compute_output_shape(shape[1:])
        return x.reshape((shape[0],) + target), lambda dy: dy.reshape(shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}
