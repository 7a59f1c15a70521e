"""Conv2D: 2-D convolution over NCHW images, bias and activation fused into the kernel."""
from __future__ import annotations

import numpy as np

from .. import initializers
from .. import regularizers as _regularizers
from .. import runtime
from ..kernels.activations import NAMES
from ..kernels.conv import conv2d_backward, conv2d_forward
from .base import Layer, check_positive_int, shape_str
from .core import _config_of, _empty, activation_code
from .geometry import check_padding, output_size, pair, padding_config


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every framework) of NCHW images.

    Args:
        filters: positive int, output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw).
        padding: "valid" (none), "same" (output size ceil(in / stride); an odd extra row
            or column of padding goes to the bottom / right) or an int (zeros on each side).
        dilation_rate: int or (dh, dw): spacing between kernel taps.
        groups: input and output channels are split into this many groups, each
            convolved separately; ``groups == in_channels`` is a depthwise convolution.
        activation: name of an activation, fused into the output pass (softmax is taken
            over the channel axis), or None.
        use_bias: whether to add a per-filter bias.
        kernel_initializer, kernel_regularizer: as for ``Dense``.

    Input shape (batch, in_channels, H, W); output shape (batch, filters, OH, OW).
    Parameters: kernel (filters, in_channels // groups, kh, kw), bias (filters,).

    >>> conv = nj.layers.Conv2D(32, 3, padding="same", activation="relu")
    """

    _skips_input_grad = True

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, groups=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.filters = check_positive_int(filters, "filters", "Conv2D")
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2D")
        self.strides = pair(strides, "strides", "Conv2D")
        self.padding = check_padding(padding, "Conv2D", allow_int=True)
        self.dilation_rate = pair(dilation_rate, "dilation_rate", "Conv2D")
        self.groups = check_positive_int(groups, "groups", "Conv2D")
        if self.filters % self.groups:
            raise ValueError(f"Conv2D: filters must be divisible by groups. Received: filters={self.filters}, "
                             f"groups={self.groups}")
        self.activation = "linear" if activation is None else activation
        self._code = activation_code(activation, "activation", "Conv2D")
        self.use_bias = bool(use_bias)
        initializers.get(kernel_initializer, "kernel_initializer")
        self.kernel_initializer = kernel_initializer
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)

    @property
    def fusable_activation(self):
        # A loss fuses softmax over the last axis; a conv's softmax runs over channels.
        return "sigmoid" if NAMES[self._code] == "sigmoid" else None

    def _geometry(self, input_shape):
        """(out_h, out_w, pad_top, pad_left) for a (C, H, W) input, or a clear error."""
        if len(input_shape) != 3 or any(s is None for s in input_shape):
            raise ValueError(f"{self.name}: expected inputs of shape (batch, channels, height, width). "
                             f"Received: x with shape {shape_str((None,) + tuple(input_shape))}")
        _, h, w = input_shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.strides, self.dilation_rate
        out_h, top = output_size(h, kh, sh, dh, self.padding, 0, self.name)
        out_w, left = output_size(w, kw, sw, dw, self.padding, 1, self.name)
        return out_h, out_w, top, left

    def build(self, input_shape):
        self._geometry(input_shape)
        channels = input_shape[0]
        if channels % self.groups:
            raise ValueError(f"{self.name}: input channels must be divisible by groups={self.groups}. "
                             f"Received: x with {channels} channels")
        kh, kw = self.kernel_size
        self.add_weight("kernel", (self.filters, channels // self.groups, kh, kw), self.kernel_initializer,
                        regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), "zeros")

    def check_input_shape(self, shape):
        if len(shape) != 3:
            raise ValueError(f"{self.name}: expected inputs of shape (batch, channels, height, width). "
                             f"Received: x with shape {shape_str((None,) + tuple(shape))}")
        channels = self.params["kernel"].shape[1] * self.groups
        if shape[0] != channels:
            raise ValueError(f"{self.name}: expected {channels} input channels (axis 1), as the layer was built. "
                             f"Received: x with shape {shape_str((None,) + tuple(shape))}")
        self._geometry(shape)

    def compute_output_shape(self, input_shape):
        out_h, out_w, _, _ = self._geometry(input_shape)
        return (self.filters, out_h, out_w)

    def flops(self, input_shape) -> int:
        """Forward FLOPs per sample (a multiply-add counts two)."""
        out_h, out_w, _, _ = self._geometry(input_shape)
        return 2 * self.params["kernel"].size * out_h * out_w

    def forward(self, x, training=False):
        if not self.built:
            self.ensure_built(x.shape[1:])
        w = self.params["kernel"]
        b = self.params["bias"] if self.use_bias else _empty(w.dtype)
        out_h, out_w, top, left = self._geometry(x.shape[1:])
        (sh, sw), (dh, dw) = self.strides, self.dilation_rate
        x = np.ascontiguousarray(x, dtype=w.dtype)
        code, groups = self._code, self.groups
        nblocks = runtime.blocks_for(x.shape[0] * w.size * out_h * out_w)
        y, z = conv2d_forward(x, w, b, sh, sw, top, left, out_h, out_w, dh, dw, groups, code, nblocks)

        def backward(dy, need_dx=True):
            dy = np.ascontiguousarray(dy, dtype=w.dtype)
            if self.trainable:
                dw_, db_ = self.grads["kernel"], (self.grads["bias"] if self.use_bias else _empty(w.dtype))
            else:
                dw_, db_ = w, _empty(w.dtype)  # unused: need_dw is False
            dx = conv2d_backward(dy, x, w, y, z, sh, sw, top, left, dh, dw, groups, code, dw_, db_,
                                 need_dx, self.trainable, nblocks)
            return dx if need_dx else None

        return y, backward

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": padding_config(self.padding),
                "dilation_rate": list(self.dilation_rate), "groups": self.groups, "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": _config_of(self.kernel_initializer),
                "kernel_regularizer": _config_of(self.kernel_regularizer)}

    def extra_repr(self):
        kh, kw = self.kernel_size
        parts = [f"filters={self.filters}", f"kernel_size=({kh}, {kw})"]
        if self.strides != (1, 1):
            parts.append(f"strides={self.strides}")
        if self.padding != "valid":
            parts.append(f"padding={padding_config(self.padding)!r}")
        if self.dilation_rate != (1, 1):
            parts.append(f"dilation_rate={self.dilation_rate}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        parts.append(f"activation={self.activation!r}")
        return ", ".join(parts)

