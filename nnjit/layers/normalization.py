"""BatchNormalization over one axis (channels of NCHW images, or features) and
LayerNormalization over the last axis of each sample."""
from __future__ import annotations

import math

import numpy as np

from .. import runtime
from ..kernels.normalization import (batch_norm_backward, batch_norm_backward_infer, batch_norm_forward_infer,
                                     batch_norm_forward_train)
from ..kernels.layernorm import layer_norm_backward, layer_norm_forward
from .base import Layer, shape_str


def _check_unit_float(value, argument, owner, low_open=True):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and math.isfinite(value) and (0 < value if low_open else 0 <= value):
        return float(value)
    raise ValueError(f"{owner}: expected a positive finite float for {argument}. Received: {argument}={value!r}")


class BatchNormalization(Layer):
    """Normalizes each channel (the entries along ``axis``) with batch statistics in
    training and moving statistics in inference, then scales by gamma and shifts by beta.

    Args:
        axis: the channel axis, counted with the batch axis: 1 for NCHW images or
            (batch, features); -1 for the last axis.
        momentum: moving = momentum * moving + (1 - momentum) * batch statistic; the
            batch variance used for the moving average is unbiased.
        epsilon: added to the variance before the square root.

    A layer with ``trainable = False`` uses its moving statistics even in training and
    does not update them (as Keras), which is what fine-tuning a frozen network needs.

    Parameters: gamma, beta (C,).  State: moving_mean, moving_variance (C,).
    """

    _skips_input_grad = True

    def __init__(self, axis=1, momentum=0.99, epsilon=1e-3, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis == 0:
            raise ValueError(f"BatchNormalization: expected a non-zero integer axis (0 is the batch axis). "
                             f"Received: axis={axis!r}")
        self.axis = int(axis)
        momentum_ok = (isinstance(momentum, (int, float, np.integer, np.floating)) and not isinstance(momentum, bool)
                       and 0 <= momentum <= 1)
        if not momentum_ok:
            raise ValueError(f"BatchNormalization: expected momentum in [0, 1]. Received: momentum={momentum!r}")
        self.momentum = float(momentum)
        self.epsilon = _check_unit_float(epsilon, "epsilon", "BatchNormalization")

    def _axis_in(self, input_shape):
        """Index of the channel axis within the per-sample shape, or a clear error."""
        rank = len(input_shape) + 1
        axis = self.axis if self.axis > 0 else rank + self.axis
        if not 1 <= axis < rank:
            raise ValueError(f"{self.name}: axis={self.axis} is out of range for inputs of shape "
                             f"{shape_str((None,) + tuple(input_shape))}")
        return axis - 1

    def build(self, input_shape):
        channels = input_shape[self._axis_in(input_shape)]
        if channels is None:
            raise ValueError(f"{self.name}: the channel axis must be known. Received: input_shape={input_shape}")
        self.add_weight("gamma", (channels,), "ones")
        self.add_weight("beta", (channels,), "zeros")
        self.add_weight("moving_mean", (channels,), "zeros", trainable=False)
        self.add_weight("moving_variance", (channels,), "ones", trainable=False)

    def check_input_shape(self, shape):
        axis = self._axis_in(shape)
        channels = self.params["gamma"].shape[0]
        if shape[axis] != channels:
            raise ValueError(f"{self.name}: expected {channels} channels on axis {self.axis}, as the layer was built. "
                             f"Received: x with shape {shape_str((None,) + tuple(shape))}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        if not self.built:
            self.ensure_built(x.shape[1:])
        gamma, beta = self.params["gamma"], self.params["beta"]
        mean_m, var_m = self.state["moving_mean"], self.state["moving_variance"]
        axis = self._axis_in(x.shape[1:]) + 1
        shape = x.shape
        x3 = np.ascontiguousarray(x, dtype=gamma.dtype).reshape(
            math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))
        nblocks = runtime.blocks_for(x3.size * 4)
        eps = self.epsilon
        if training and self.trainable:
            y, mean, inv_std = batch_norm_forward_train(x3, gamma, beta, mean_m, var_m, self.momentum, eps, nblocks)

            def backward(dy, need_dx=True):
                dy3 = np.ascontiguousarray(dy, dtype=gamma.dtype).reshape(x3.shape)
                dx = batch_norm_backward(dy3, x3, mean, inv_std, gamma, self.grads["gamma"], self.grads["beta"],
                                         need_dx, True, nblocks)
                return dx.reshape(shape) if need_dx else None
        else:
            y = batch_norm_forward_infer(x3, gamma, beta, mean_m, var_m, eps, nblocks)
            mean_c, var_c = mean_m.copy(), var_m.copy()  # the statistics this output was made with

            def backward(dy, need_dx=True):
                dy3 = np.ascontiguousarray(dy, dtype=gamma.dtype).reshape(x3.shape)
                train = self.trainable
                dgamma = self.grads["gamma"] if train else gamma
                dbeta = self.grads["beta"] if train else beta
                dx = batch_norm_backward_infer(dy3, x3, mean_c, var_c, gamma, eps, dgamma, dbeta, need_dx, train,
                                               nblocks)
                return dx.reshape(shape) if need_dx else None

        return y.reshape(shape), backward

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon}

    def extra_repr(self):
        return f"axis={self.axis}, momentum={self.momentum}, epsilon={self.epsilon}"


class LayerNormalization(Layer):
    """Normalizes each sample over its last axis, then scales by gamma and shifts by beta:
    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` (statistics of each row).

    Args:
        epsilon: added to the variance before the square root.

    Input shape (batch, ..., features); output shape the same.
    Parameters: gamma, beta (features,).
    """

    _skips_input_grad = True
    supports_masking = True

    def __init__(self, epsilon=1e-5, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.epsilon = _check_unit_float(epsilon, "epsilon", "LayerNormalization")

    def build(self, input_shape):
        if not input_shape or input_shape[-1] is None:
            raise ValueError(f"{self.name}: the last axis must be known. Received: input_shape={input_shape}")
        self.add_weight("gamma", (input_shape[-1],), "ones")
        self.add_weight("beta", (input_shape[-1],), "zeros")

    def check_input_shape(self, shape):
        features = self.params["gamma"].shape[0]
        if not shape or shape[-1] != features:
            raise ValueError(f"{self.name}: expected {features} features on the last axis, as the layer was built. "
                             f"Received: x with shape {shape_str((None,) + tuple(shape))}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        if not self.built:
            self.ensure_built(x.shape[1:])
        gamma, beta = self.params["gamma"], self.params["beta"]
        shape = x.shape
        x2 = np.ascontiguousarray(x, dtype=gamma.dtype).reshape(-1, shape[-1])
        nblocks = runtime.blocks_for(x2.size * 4)
        y, mean, inv_std = layer_norm_forward(x2, gamma, beta, self.epsilon, nblocks)

        def backward(dy, need_dx=True):
            dy2 = np.ascontiguousarray(dy, dtype=gamma.dtype).reshape(x2.shape)
            train = self.trainable
            dgamma = self.grads["gamma"] if train else gamma
            dbeta = self.grads["beta"] if train else beta
            dx = layer_norm_backward(dy2, x2, mean, inv_std, gamma, dgamma, dbeta, need_dx, train, nblocks)
            return dx.reshape(shape) if need_dx else None

        return y.reshape(shape), backward

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}

    def extra_repr(self):
        return f"epsilon={self.epsilon}"
