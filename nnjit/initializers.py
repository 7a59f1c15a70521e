"""Weight initializers, by name or as objects: ``initializer(shape, dtype) -> ndarray``.

Fan-in and fan-out follow Keras: for a (in, out) dense kernel fan_in = in and
fan_out = out; for a (filters, in_channels, kh, kw) convolution kernel the receptive
field kh*kw multiplies both.
"""
from __future__ import annotations

import math

import numpy as np

from . import runtime


def _fans(shape):
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


class Initializer:
    """Base class: subclasses implement ``__call__(shape, dtype)``."""

    def get_config(self) -> dict:
        return {"class_name": type(self).__name__, **{k: v for k, v in vars(self).items()}}


class Zeros(Initializer):
    def __call__(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    def __call__(self, shape, dtype):
        return np.ones(shape, dtype=dtype)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = float(value)

    def __call__(self, shape, dtype):
        return np.full(shape, self.value, dtype=dtype)


class GlorotUniform(Initializer):
    def __call__(self, shape, dtype):
        fan_in, fan_out = _fans(shape)
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return runtime.rng().uniform(-limit, limit, size=shape).astype(dtype)


class GlorotNormal(Initializer):
    def __call__(self, shape, dtype):
        fan_in, fan_out = _fans(shape)
        std = math.sqrt(2.0 / (fan_in + fan_out))
        return (runtime.rng().standard_normal(size=shape) * std).astype(dtype)


class HeUniform(Initializer):
    def __call__(self, shape, dtype):
        fan_in, _ = _fans(shape)
        limit = math.sqrt(6.0 / fan_in)
        return runtime.rng().uniform(-limit, limit, size=shape).astype(dtype)


class HeNormal(Initializer):
    def __call__(self, shape, dtype):
        fan_in, _ = _fans(shape)
        return (runtime.rng().standard_normal(size=shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05):
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, shape, dtype):
        return (self.mean + self.stddev * runtime.rng().standard_normal(size=shape)).astype(dtype)


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05):
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, shape, dtype):
        return runtime.rng().uniform(self.minval, self.maxval, size=shape).astype(dtype)


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain``: the recurrent kernels' default, because
    repeated products with it neither blow up nor vanish.  A (U, G*U) recurrent kernel is
    orthogonal per gate block, as in Keras."""

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def __call__(self, shape, dtype):
        if len(shape) < 2:
            raise ValueError(f"orthogonal initializer: expected a shape with at least 2 axes. Received: shape={shape}")
        rows, cols = shape[0], math.prod(shape[1:])
        blocks = cols // rows if cols % rows == 0 and cols > rows else 1
        width = cols // blocks
        parts = []
        for _ in range(blocks):
            a = runtime.rng().standard_normal((max(rows, width), min(rows, width)))
            q, r = np.linalg.qr(a)
            q *= np.sign(np.diag(r))  # makes the distribution uniform over orthogonal matrices
            parts.append(q if rows >= width else q.T)
        return (self.gain * np.concatenate(parts, axis=1)).reshape(shape).astype(dtype)


_BY_NAME = {
    "orthogonal": Orthogonal,
    "zeros": Zeros, "ones": Ones, "constant": Constant,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal,
    "random_normal": RandomNormal, "random_uniform": RandomUniform,
}


def get(identifier, argument="initializer"):
    """An initializer from a name, a config dict, an Initializer or a callable(shape, dtype)."""
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME:
            raise ValueError(
                f"Unknown {argument}: expected one of {sorted(_BY_NAME)}. Received: {argument}={identifier!r}")
        return _BY_NAME[key]()
    if isinstance(identifier, dict) and identifier.get("class_name") in {c.__name__ for c in _BY_NAME.values()}:
        cls = next(c for c in _BY_NAME.values() if c.__name__ == identifier["class_name"])
        return cls(**{k: v for k, v in identifier.items() if k != "class_name"})
    if callable(identifier):
        return identifier
    raise TypeError(f"Expected a name or callable for {argument}. Received: {argument}={identifier!r}")
