"""Input: the symbolic placeholder that starts a model."""
from __future__ import annotations

import numpy as np

from .base import Layer, shape_str


class SymbolicTensor:
    """A placeholder for the output of a layer in a model under construction.

    ``shape`` excludes the batch axis; ``layer`` produced it from ``inputs``.
    """

    def __init__(self, shape, layer, inputs=()):
        self.shape = tuple(shape)
        self.layer = layer
        self.inputs = tuple(inputs)

    def __repr__(self):
        return f"<SymbolicTensor shape={shape_str((None,) + self.shape)} from {self.layer.name}>"


class InputLayer(Layer):
    """The layer behind ``nj.Input``: passes its input through unchanged."""

    def __init__(self, shape, name=None):
        super().__init__(name=name)
        if isinstance(shape, (int, np.integer)):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)) or not all(
            s is None or (isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1) for s in shape
        ):
            raise ValueError(f"Input: expected shape as a tuple of positive integers (batch axis excluded). Received: shape={shape!r}")
        self.shape = tuple(None if s is None else int(s) for s in shape)
        self.ensure_built(self.shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        return x, lambda dy: dy

    def get_config(self):
        return {**super().get_config(), "shape": list(self.shape)}


def Input(shape, name=None) -> SymbolicTensor:
    """A symbolic input of ``shape`` (batch axis excluded), to start a model.

    >>> model = nj.Sequential([nj.Input((784,)), nj.layers.Dense(10)])
    """
    layer = InputLayer(shape, name=name)
    return SymbolicTensor(layer.shape, layer)


def call_symbolic(layer, x):
    inputs = list(x) if isinstance(x, (list, tuple)) else [x]
    shape = inputs[0].shape if len(inputs) == 1 else [t.shape for t in inputs]
    if any(s is None for s in (shape if len(inputs) == 1 else [d for t in inputs for d in t.shape])):
        raise ValueError(f"{layer.name}: symbolic shapes must be fully known. Received: {shape}")
    layer.ensure_built(shape)
    layer.check_input_shape(shape)
    return SymbolicTensor(layer.output_shape, layer, inputs)
