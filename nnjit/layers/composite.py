"""Layers built from other layers (Bidirectional, TransformerEncoder)."""
from __future__ import annotations

from .base import Layer


class CompositeLayer(Layer):
    """A layer whose parameters are those of its sublayers, exposed under prefixed names.

    The model may rebind this layer's arrays to views of its flat buffers, so the
    composite's dicts are the source of truth: ``_sync`` points every sublayer at them
    before each forward.  Subclasses list their sublayers in ``_sublayers``.
    """

    def _sublayers(self):
        """[(prefix, layer), ...]; a parameter ``key`` of a sublayer is ``prefix + key`` here."""
        raise NotImplementedError

    def _adopt(self):
        """Expose the built sublayers' parameters, gradients and state under prefixed names."""
        for prefix, layer in self._sublayers():
            for key in layer.params:
                self.params[prefix + key] = layer.params[key]
                self.grads[prefix + key] = layer.grads[key]
            for key in layer.state:
                self.state[prefix + key] = layer.state[key]

    def _sync(self):
        for prefix, layer in self._sublayers():
            for key in layer.params:
                layer.params[key] = self.params[prefix + key]
                layer.grads[key] = self.grads[prefix + key]
            for key in layer.state:
                layer.state[key] = self.state[prefix + key]
            layer.trainable = self.trainable
