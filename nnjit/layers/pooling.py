"""Pooling layers: MaxPool2D, AvgPool2D, GlobalAvgPool2D and GlobalAvgPool1D."""
from __future__ import annotations

import numpy as np

from .. import runtime
from ..kernels.pooling import (avg_pool2d_backward, avg_pool2d_forward, global_avg_pool1d_backward,
                               global_avg_pool1d_forward, global_avg_pool2d_backward, global_avg_pool2d_forward,
                               max_pool2d_backward, max_pool2d_forward)
from .base import Layer, shape_str
from .geometry import check_padding, output_size, pair


def _check_rank(layer, shape, rank, layout):
    if len(shape) != rank or any(s is None for s in shape):
        raise ValueError(f"{layer.name}: expected inputs of shape {layout}. "
                         f"Received: x with shape {shape_str((None,) + tuple(shape))}")


class _Pool2D(Layer):
    _kind = ""

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        owner = type(self).__name__
        self.pool_size = pair(pool_size, "pool_size", owner)
        self.strides = self.pool_size if strides is None else pair(strides, "strides", owner)
        self.padding = check_padding(padding, owner, allow_int=False)

    def _geometry(self, input_shape):
        _check_rank(self, input_shape, 3, "(batch, channels, height, width)")
        _, h, w = input_shape
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        out_h, top = output_size(h, ph, sh, 1, self.padding, 0, self.name)
        out_w, left = output_size(w, pw, sw, 1, self.padding, 1, self.name)
        return out_h, out_w, top, left

    def check_input_shape(self, shape):
        super().check_input_shape(shape)
        self._geometry(shape)

    def compute_output_shape(self, input_shape):
        out_h, out_w, _, _ = self._geometry(input_shape)
        return (input_shape[0], out_h, out_w)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}

    def extra_repr(self):
        parts = [f"pool_size={self.pool_size}"]
        if self.strides != self.pool_size:
            parts.append(f"strides={self.strides}")
        if self.padding != "valid":
            parts.append(f"padding={self.padding!r}")
        return ", ".join(parts)


class MaxPool2D(_Pool2D):
    """Maximum over windows of NCHW images.

    Args:
        pool_size: int or (ph, pw).
        strides: int or (sh, sw); defaults to ``pool_size``.
        padding: "valid" (windows that do not fit are dropped) or "same" (output size
            ceil(in / stride); padded positions never win).

    Input shape (batch, C, H, W); output shape (batch, C, OH, OW).  The gradient goes
    to the first maximum of each window.
    """

    def forward(self, x, training=False):
        out_h, out_w, top, left = self._geometry(x.shape[1:])
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        x = np.ascontiguousarray(x)
        _, _, h, w = x.shape
        nblocks = runtime.blocks_for(x.size * 2)
        y, argmax = max_pool2d_forward(x, ph, pw, sh, sw, top, left, out_h, out_w, nblocks)

        def backward(dy):
            dy = np.ascontiguousarray(dy, dtype=x.dtype)
            return max_pool2d_backward(dy, argmax, h, w, nblocks)

        return y, backward


class AvgPool2D(_Pool2D):
    """Mean over windows of NCHW images.

    Args as ``MaxPool2D``.  With "same" padding a window's mean is over the positions
    that lie inside the image (padding is not counted), as in Keras.
    """

    def forward(self, x, training=False):
        out_h, out_w, top, left = self._geometry(x.shape[1:])
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        x = np.ascontiguousarray(x)
        _, _, h, w = x.shape
        nblocks = runtime.blocks_for(x.size * 2)
        y = avg_pool2d_forward(x, ph, pw, sh, sw, top, left, out_h, out_w, nblocks)

        def backward(dy):
            dy = np.ascontiguousarray(dy, dtype=x.dtype)
            return avg_pool2d_backward(dy, h, w, ph, pw, sh, sw, top, left, nblocks)

        return y, backward


class GlobalAvgPool2D(Layer):
    """Mean over the spatial axes: (batch, C, H, W) -> (batch, C)."""

    def compute_output_shape(self, input_shape):
        _check_rank(self, input_shape, 3, "(batch, channels, height, width)")
        return (input_shape[0],)

    def check_input_shape(self, shape):
        super().check_input_shape(shape)
        _check_rank(self, shape, 3, "(batch, channels, height, width)")

    def forward(self, x, training=False):
        _check_rank(self, x.shape[1:], 3, "(batch, channels, height, width)")
        x = np.ascontiguousarray(x)
        _, _, h, w = x.shape
        nblocks = runtime.blocks_for(x.size)
        y = global_avg_pool2d_forward(x, nblocks)

        def backward(dy):
            return global_avg_pool2d_backward(np.ascontiguousarray(dy, dtype=x.dtype), h, w, nblocks)

        return y, backward


class GlobalAvgPool1D(Layer):
    """Mean over the time axis: (batch, time, features) -> (batch, features)."""

    def compute_output_shape(self, input_shape):
        _check_rank(self, input_shape, 2, "(batch, time, features)")
        return (input_shape[1],)

    def check_input_shape(self, shape):
        super().check_input_shape(shape)
        _check_rank(self, shape, 2, "(batch, time, features)")

    def forward(self, x, training=False):
        _check_rank(self, x.shape[1:], 2, "(batch, time, features)")
        x = np.ascontiguousarray(x)
        steps = x.shape[1]
        nblocks = runtime.blocks_for(x.size)
        y = global_avg_pool1d_forward(x, nblocks)

        def backward(dy):
            return global_avg_pool1d_backward(np.ascontiguousarray(dy, dtype=x.dtype), steps, nblocks)

        return y, backward
