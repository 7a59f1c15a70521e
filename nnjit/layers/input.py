"""Input: the symbolic placeholder that starts a model."""
from __future__ import annotations

import numpy as np

from .base import Layer, shape_str


class Node:
    """One call of a layer in a model under construction: the layer, the tensors it was
    called on, and the tensors it produced (several for a layer with several outputs)."""

    def __init__(self, layer, inputs):
        self.layer = layer
        self.inputs = tuple(inputs)
        self.outputs: list = []


class SymbolicTensor:
    """A placeholder for an output of a layer in a model under construction.

    ``shape`` excludes the batch axis; ``layer`` produced it from ``inputs`` (in call
    ``node``, as its output number ``index``).
    """

    def __init__(self, shape, layer, inputs=(), node=None, index=0):
        self.shape = tuple(shape)
        self.layer = layer
        self.inputs = tuple(inputs)
        self.node = node if node is not None else Node(layer, inputs)
        self.index = index
        if node is None:
            self.node.outputs.append(self)

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
        # No "trainable": an input has nothing to train, and the constructor takes only these.
        return {"name": self.name, "shape": list(self.shape)}


def Input(shape, name=None) -> SymbolicTensor:
    """A symbolic input of ``shape`` (batch axis excluded), to start a model.

    >>> model = nj.Sequential([nj.Input((784,)), nj.layers.Dense(10)])
    """
    layer = InputLayer(shape, name=name)
    return SymbolicTensor(layer.shape, layer)


def call_symbolic(layer, x):
    """Add a call of ``layer`` on symbolic tensor(s) ``x`` to the graph; returns its output
    tensor (a list of them for a layer with several outputs)."""
    inputs = list(x) if isinstance(x, (list, tuple)) else [x]
    for t in inputs:
        if not isinstance(t, SymbolicTensor):
            raise TypeError(f"{layer.name}: cannot mix symbolic tensors and arrays in one call. Received: {t!r:.80}")
    shape = inputs[0].shape if len(inputs) == 1 else [t.shape for t in inputs]
    layer.ensure_built(shape)
    layer.check_input_shape(shape)
    node = Node(layer, inputs)
    out = layer.output_shape
    if isinstance(out, list):
        node.outputs = [SymbolicTensor(s, layer, inputs, node, i) for i, s in enumerate(out)]
        return list(node.outputs)
    node.outputs = [SymbolicTensor(out, layer, inputs, node, 0)]
    return node.outputs[0]
