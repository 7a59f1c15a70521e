"""Sequential: a plain stack of layers, each feeding the next."""
from __future__ import annotations

from ..layers.base import Layer
from ..layers.input import InputLayer, SymbolicTensor
from .engine import BaseModel


class Sequential(BaseModel):
    """A linear stack of layers.

    >>> model = nj.Sequential([nj.Input((64,)), Dense(128, activation="relu"), Dense(10)])
    >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> model.fit(x, y, epochs=5)

    The input shape comes from a leading ``nj.Input(shape)`` or, without one, from the
    first data the model sees (``fit``, ``predict``, ``model(x)``) or ``build(shape)``.
    """

    def __init__(self, layers=None, name=None):
        super().__init__(name=name or "sequential")
        self._input = None  # the InputLayer, once the input shape is known
        self._stack: list[Layer] = []
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        """Append a layer (or, first, an ``nj.Input``)."""
        if isinstance(layer, SymbolicTensor) and isinstance(layer.layer, InputLayer):
            layer = layer.layer
        if isinstance(layer, InputLayer):
            if self._stack or self._input is not None:
                raise ValueError(f"{self.name}.add: an Input can only come first. Received: {layer!r}")
            self._input = layer
            return
        if isinstance(layer, BaseModel):
            raise TypeError(f"{self.name}.add: nesting models is not supported yet. Received: {layer!r}")
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}.add: expected a Layer. Received: {layer!r}")
        if self._input is not None:
            shape = self._input.shape if not self._stack else self._stack[-1].output_shape
            layer.ensure_built(shape)
            layer.check_input_shape(shape)
        self._stack.append(layer)
        self._flat = None
        self._update_fusion()

    def pop(self):
        """Remove and return the last layer."""
        if not self._stack:
            raise ValueError(f"{self.name}.pop: the model has no layers")
        layer = self._stack.pop()
        self._flat = None
        self._update_fusion()
        return layer

    def build(self, input_shape):
        """Build every layer for inputs of ``input_shape`` (batch axis excluded)."""
        if self._input is None:
            self._input = InputLayer(tuple(input_shape), name=f"{self.name}_input")
        shape = self._input.shape
        for layer in self._stack:
            layer.ensure_built(shape)
            layer.check_input_shape(shape)
            shape = layer.output_shape

    def _is_built(self):
        return self._input is not None and all(layer.built for layer in self._stack)

    def _input_shape(self):
        return self._input.shape if self._input is not None else None

    def _output_shape(self):
        if not self._stack:
            return self._input_shape()
        return self._stack[-1].output_shape

    def _layers_in_order(self):
        return self._stack

    def _output_layer(self):
        return self._stack[-1] if self._stack else None

    def _forward(self, x, training, linear_output, need_input_grad=False):
        """Run the stack; returns the output and a closure for the backward pass.

        Backward stops at the first layer with trainable parameters, and that layer is
        told not to compute an input gradient nobody reads."""
        stack = self._stack
        last = len(stack) - 1
        backs = []
        h = x
        for i, layer in enumerate(stack):
            if i == last and linear_output:
                h, back = layer.forward(h, training, linear_output=True)
            else:
                h, back = layer.forward(h, training)
            backs.append(back)

        def backward(dy):
            stop = 0
            if not need_input_grad:
                while stop < len(stack) and not (stack[stop].trainable and stack[stop].params):
                    stop += 1
            for i in range(last, stop - 1, -1):
                if i == stop and not need_input_grad and stack[i]._skips_input_grad:
                    backs[i](dy, need_dx=False)
                else:
                    dy = backs[i](dy)
            return dy if need_input_grad else None

        return h, backward

    def _summary_layers(self):
        return self._stack

    def _profile_layers(self):
        return self._stack
