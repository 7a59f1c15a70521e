"""Merge layers: Add, Multiply and Concatenate, called on a list of tensors."""
from __future__ import annotations

import numpy as np

from .base import Layer, shape_str


class _Merge(Layer):
    supports_masking = True

    def _shapes(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or not input_shape or not isinstance(input_shape[0], (list, tuple)):
            raise ValueError(f"{self.name}: expected a list of at least two inputs. Received: input shape {input_shape}")
        if len(input_shape) < 2:
            raise ValueError(f"{self.name}: expected a list of at least two inputs. Received: {len(input_shape)}")
        return [tuple(s) for s in input_shape]

    def build(self, input_shape):
        self._check(self._shapes(input_shape))

    def check_input_shape(self, shape):
        self._check(self._shapes(shape))

    def _check(self, shapes):
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"{self.name}: expected inputs of one shape. Received: "
                             f"{', '.join(shape_str((None,) + s) for s in shapes)}")

    def compute_output_shape(self, input_shape):
        return self._shapes(input_shape)[0]

    def compute_mask(self, x, mask=None):
        return mask


class Add(_Merge):
    """Elementwise sum of its inputs (all of one shape): ``Add()([a, b, ...])``."""

    def forward(self, xs, training=False):
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x
        count = len(xs)
        return y, lambda dy: [dy] * count


class Multiply(_Merge):
    """Elementwise product of its inputs (all of one shape): ``Multiply()([a, b, ...])``."""

    def forward(self, xs, training=False):
        y = xs[0] * xs[1]
        for x in xs[2:]:
            y = y * x

        def backward(dy):
            grads = []
            for i in range(len(xs)):
                g = dy
                for j, x in enumerate(xs):
                    if j != i:
                        g = g * x
                grads.append(g)
            return grads

        return y, backward


class Concatenate(_Merge):
    """Joins its inputs along ``axis`` (counted with the batch axis, -1 = last); the other
    axes must agree: ``Concatenate()([a, b])``."""

    def __init__(self, axis=-1, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis == 0:
            raise ValueError(f"Concatenate: expected a non-zero integer axis (0 is the batch axis). Received: axis={axis!r}")
        self.axis = int(axis)

    def _axis_in(self, rank):
        axis = self.axis if self.axis > 0 else rank + 1 + self.axis
        if not 1 <= axis <= rank:
            raise ValueError(f"{self.name}: axis={self.axis} is out of range for inputs with {rank} axes after the batch")
        return axis - 1

    def _check(self, shapes):
        axis = self._axis_in(len(shapes[0]))
        for s in shapes:
            if len(s) != len(shapes[0]) or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != axis):
                raise ValueError(f"{self.name}: inputs must agree on every axis but axis {self.axis}. Received: "
                                 f"{', '.join(shape_str((None,) + t) for t in shapes)}")

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        axis = self._axis_in(len(shapes[0]))
        sizes = [s[axis] for s in shapes]
        out = list(shapes[0])
        out[axis] = None if any(v is None for v in sizes) else sum(sizes)
        return tuple(out)

    def forward(self, xs, training=False):
        axis = self._axis_in(xs[0].ndim - 1) + 1
        y = np.concatenate(xs, axis=axis)
        bounds = np.cumsum([x.shape[axis] for x in xs])[:-1]
        return y, lambda dy: np.split(dy, bounds, axis=axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
