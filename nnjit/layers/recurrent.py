"""Recurrent layers: SimpleRNN, LSTM, GRU and the Bidirectional wrapper.

Each layer runs the whole sequence in one kernel call (input projection of all steps as
one GEMM, then the recurrence with the gate arithmetic fused) and backpropagates through
time in another.  Inputs are (batch, time, features).
"""
from __future__ import annotations

import numpy as np

from .. import initializers, runtime
from ..kernels import recurrent as K
from ..kernels.activations import CODES
from .base import Layer, check_positive_int, get_layer_class, shape_str
from .composite import CompositeLayer
from .core import _config_of, _empty, activation_code

_NO_MASK = np.zeros((0, 0), dtype=np.uint8)
_NO_OUTPUTS = {np.dtype(t): np.zeros((0, 0, 0), dtype=t) for t in (np.float32, np.float64)}


def _mask_array(mask, n, steps, owner):
    if mask is None:
        return _NO_MASK
    m = np.asarray(mask)
    if m.shape != (n, steps):
        raise ValueError(f"{owner}: expected a mask of shape ({n}, {steps}) (batch, time). Received: mask with shape {m.shape}")
    return np.ascontiguousarray(m != 0, dtype=np.uint8)


class _Recurrent(Layer):
    """Shared argument handling, shapes, states and masking of the recurrent layers."""

    _gates = 1
    _state_count = 1  # states carried between steps (LSTM: h and c)
    _skips_input_grad = True
    _accepts_mask = True

    def __init__(self, units, return_sequences=False, return_state=False, go_backwards=False, use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        owner = type(self).__name__
        self.units = check_positive_int(units, "units", owner)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.use_bias = bool(use_bias)
        initializers.get(kernel_initializer, "kernel_initializer")
        initializers.get(recurrent_initializer, "recurrent_initializer")
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer

    # ---------------------------------------------------------------- shapes
    def _split_shapes(self, input_shape):
        """(x shape, [state shapes]) from a shape or a list of shapes (x, then initial states)."""
        if input_shape and isinstance(input_shape[0], (tuple, list)):
            return tuple(input_shape[0]), [tuple(s) for s in input_shape[1:]]
        return tuple(input_shape), []

    def _check_x_shape(self, shape):
        if len(shape) != 2:
            raise ValueError(f"{self.name}: expected inputs of shape (batch, time, features). "
                             f"Received: x with shape {shape_str((None,) + tuple(shape))}")

    def build(self, input_shape):
        x_shape, _ = self._split_shapes(input_shape)
        self._check_x_shape(x_shape)
        features, width = x_shape[1], self._gates * self.units
        if features is None:
            raise ValueError(f"{self.name}: the feature axis must be known. Received: input_shape={input_shape}")
        self.add_weight("kernel", (features, width), self.kernel_initializer)
        self.add_weight("recurrent_kernel", (self.units, width), self.recurrent_initializer)
        if self.use_bias:
            self.add_weight("bias", (width,), self._bias_initializer())
        self._build_extra(width)

    def _bias_initializer(self):
        return "zeros"

    def _build_extra(self, width):
        pass

    def check_input_shape(self, shape):
        x_shape, states = self._split_shapes(shape)
        self._check_x_shape(x_shape)
        features = self.params["kernel"].shape[0]
        if x_shape[1] != features:
            raise ValueError(f"{self.name}: expected {features} features on the last axis, as the layer was built. "
                             f"Received: x with shape {shape_str((None,) + tuple(x_shape))}")
        if states and len(states) != self._state_count:
            raise ValueError(f"{self.name}: expected {self._state_count} initial state(s). Received: {len(states)}")
        for s in states:
            if tuple(s) != (self.units,):
                raise ValueError(f"{self.name}: expected initial states of shape (None, {self.units}). "
                                 f"Received: a state with shape {shape_str((None,) + tuple(s))}")

    def compute_output_shape(self, input_shape):
        x_shape, _ = self._split_shapes(input_shape)
        self._check_x_shape(x_shape)
        out = (x_shape[0], self.units) if self.return_sequences else (self.units,)
        if self.return_state:
            return [out] + [(self.units,)] * self._state_count
        return out

    def compute_mask(self, x, mask=None):
        """The output's mask: the input's (in output order) when sequences are returned."""
        if mask is None or not self.return_sequences:
            return None
        return mask[:, ::-1] if self.go_backwards else mask

    # ---------------------------------------------------------------- calling
    def __call__(self, x, training=False, initial_state=None, mask=None):
        """Run on arrays (or build a graph node on symbolic tensors).

        ``initial_state``: an (batch, units) array, or a list of them (LSTM: [h, c]);
        zeros by default.  ``mask``: (batch, time), nonzero where a step is real."""
        from .input import SymbolicTensor

        if initial_state is not None:
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            x = [x] + states
        if isinstance(x, SymbolicTensor) or (isinstance(x, list) and isinstance(x[0], SymbolicTensor)):
            return super().__call__(x)
        from ..models.validation import as_input_array

        arrays = [as_input_array(a, "x" if i == 0 else f"initial_state[{i - 1}]", self.name)
                  for i, a in enumerate(x if isinstance(x, list) else [x])]
        shapes = [a.shape[1:] for a in arrays]
        self.ensure_built(shapes if len(arrays) > 1 else shapes[0])
        self.check_input_shape(shapes if len(arrays) > 1 else shapes[0])
        y, _ = self.forward(arrays if len(arrays) > 1 else arrays[0], training=training, mask=mask)
        return y

    def _inputs(self, inputs):
        """(x, states or None) with states checked against x's batch size."""
        if isinstance(inputs, (list, tuple)):
            x, states = inputs[0], list(inputs[1:])
        else:
            x, states = inputs, None
        if not self.built:
            self.ensure_built(np.shape(x)[1:])
        dtype = self.params["kernel"].dtype
        x = np.ascontiguousarray(x, dtype=dtype)
        self._check_x_shape(x.shape[1:])
        n = x.shape[0]
        if states is not None:
            if len(states) != self._state_count:
                raise ValueError(f"{self.name}: expected {self._state_count} initial state(s). Received: {len(states)}")
            states = [np.ascontiguousarray(s, dtype=dtype) for s in states]
            for s in states:
                if s.shape != (n, self.units):
                    raise ValueError(f"{self.name}: expected initial states of shape ({n}, {self.units}). "
                                     f"Received: a state with shape {s.shape}")
        return x, states

    def forward(self, inputs, training=False, mask=None):
        """``inputs``: x (batch, time, features), or [x, *initial_states].  Returns the output
        (or [output, *final_states] with ``return_state``) and the backward closure, which
        returns dx (or [dx, *d_initial_states] when initial states were given)."""
        x, given = self._inputs(inputs)
        n, steps, _ = x.shape
        dtype = x.dtype
        states = given if given is not None else [np.zeros((n, self.units), dtype=dtype)
                                                   for _ in range(self._state_count)]
        m = _mask_array(mask, n, steps, self.name)
        nblocks = self._blocks(n, steps, x.shape[2])
        outputs, finals, run_backward = self._run(x, states, m, nblocks)
        # Without sequences the output is the final state: with a mask that is the output of
        # the last real step (Keras' semantics), not the zero of a padded one.
        y = outputs if self.return_sequences else finals[0].copy()
        result = [y] + finals if self.return_state else y

        def backward(dy, need_dx=True):
            d_y, d_states = (dy[0], list(dy[1:])) if self.return_state else (dy, [])
            d_finals = [np.zeros((n, self.units), dtype=dtype) if d is None else np.ascontiguousarray(d, dtype=dtype)
                        for d in (d_states + [None] * self._state_count)[:self._state_count]]
            if self.return_sequences:
                d_out = _NO_OUTPUTS[dtype] if d_y is None else np.ascontiguousarray(d_y, dtype=dtype)
            else:
                d_out = _NO_OUTPUTS[dtype]
                if d_y is not None:
                    d_finals[0] = d_finals[0] + d_y if d_states else np.ascontiguousarray(d_y, dtype=dtype)
            need_dx_kernel = need_dx or given is not None
            dx, d_initial = run_backward(d_out, d_finals, need_dx_kernel)
            if given is not None:
                return [dx if need_dx else None] + d_initial
            return dx if need_dx else None

        return result, backward

    def _blocks(self, n, steps, features):
        # One block per thread when each block's per-step GEMM is worth a thread; the
        # recurrence itself needs no synchronisation between blocks.
        width = self._gates * self.units
        work = n * steps * width * (features + self.units)
        return min(runtime.blocks_for(work), max(1, n // 8))

    # The SimpleRNN and LSTM kernels split each step by groups of units (the whole batch per
    # thread): one group per thread when the sequence is worth it, each of at least this many
    # units.
    _MIN_GROUP_UNITS = 8

    def _unit_groups(self, x):
        n, steps, features = x.shape
        threads = runtime.blocks_for(n * steps * self._gates * self.units * (features + self.units))
        return max(1, min(threads, self.units // self._MIN_GROUP_UNITS))

    def _grads(self, width, dtype):
        """Gradient buffers to accumulate into (dummies when the layer is frozen)."""
        if self.trainable:
            g = self.grads
            return g["kernel"], g["recurrent_kernel"], g["bias"] if self.use_bias else _empty(dtype)
        return self.params["kernel"], self.params["recurrent_kernel"], _empty(dtype)

    def _bias(self, dtype):
        return self.params["bias"] if self.use_bias else _empty(dtype)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards, "use_bias": self.use_bias,
                "kernel_initializer": _config_of(self.kernel_initializer),
                "recurrent_initializer": _config_of(self.recurrent_initializer)}

    def extra_repr(self):
        parts = [f"units={self.units}"]
        for flag in ("return_sequences", "return_state", "go_backwards"):
            if getattr(self, flag):
                parts.append(f"{flag}=True")
        return ", ".join(parts)


class SimpleRNN(_Recurrent):
    """Fully connected recurrence: h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias).

    Args:
        units: size of the state.
        activation: "tanh" by default (any activation name but softmax).
        return_sequences: return every step's output (batch, time, units), not only the last.
        return_state: also return the final state: [output, h].
        go_backwards: process the sequence in reverse (the output sequence is in processing order).

    Parameters: kernel (in, units), recurrent_kernel (units, units), bias (units,).
    """

    def __init__(self, units, activation="tanh", return_sequences=False, return_state=False, go_backwards=False,
                 use_bias=True, kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", name=None,
                 trainable=True):
        super().__init__(units, return_sequences, return_state, go_backwards, use_bias, kernel_initializer,
                         recurrent_initializer, name=name, trainable=trainable)
        self.activation = "linear" if activation is None else activation
        self._code = activation_code(activation, "activation", "SimpleRNN")
        if self._code == CODES["softmax"]:
            raise ValueError("SimpleRNN: softmax is not a state activation. Received: activation='softmax'")

    def _run(self, x, states, mask, nblocks):
        w, u = self.params["kernel"], self.params["recurrent_kernel"]
        code, reverse = self._code, self.go_backwards
        groups = self._unit_groups(x)
        outputs, h_last, cache = K.simple_rnn_forward(x, w, u, self._bias(x.dtype), states[0], code, mask, reverse,
                                                      1, groups)

        def run_backward(d_out, d_finals, need_dx):
            dw, du, db = self._grads(u.shape[1], x.dtype)
            dx, dh0 = K.simple_rnn_backward(d_out, d_finals[0], x, w, u, code, mask, reverse, cache, dw, du, db,
                                            need_dx, self.trainable, groups)
            return dx, [dh0]

        return outputs, [h_last], run_backward

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class LSTM(_Recurrent):
    """Long short-term memory, gate order i, f, g, o (as PyTorch and Keras):
    z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias; c_t = f*c_{t-1} + i*g; h_t = o*tanh(c_t).

    Args as ``SimpleRNN`` (no activation); ``return_state`` returns [output, h, c] and
    ``initial_state`` is [h0, c0].  The forget gate's bias starts at one (Keras'
    unit_forget_bias), which helps gradients flow early in training.

    Parameters: kernel (in, 4*units), recurrent_kernel (units, 4*units), bias (4*units,).
    """

    _gates = 4
    _state_count = 2

    def _bias_initializer(self):
        units = self.units

        def unit_forget_bias(shape, dtype):
            b = np.zeros(shape, dtype=dtype)
            b[units:2 * units] = 1.0
            return b

        return unit_forget_bias

    def _run(self, x, states, mask, nblocks):
        w, u = self.params["kernel"], self.params["recurrent_kernel"]
        reverse = self.go_backwards
        groups = self._unit_groups(x)
        outputs, h_last, c_last, cache = K.lstm_forward(x, w, u, self._bias(x.dtype), states[0], states[1], mask,
                                                        reverse, 1, groups)

        def run_backward(d_out, d_finals, need_dx):
            dw, du, db = self._grads(u.shape[1], x.dtype)
            dx, dh0, dc0 = K.lstm_backward(d_out, d_finals[0], d_finals[1], x, w, u, mask, reverse, cache, dw, du, db,
                                           need_dx, self.trainable, groups)
            return dx, [dh0, dc0]

        return outputs, [h_last, c_last], run_backward


class GRU(_Recurrent):
    """Gated recurrent unit, gate order r, z, n, the reset gate applied after the recurrent
    product (PyTorch's form, Keras' reset_after=True):
    n = tanh(x_t W_n + b_n + r * (h_{t-1} U_n + rb_n)); h_t = (1 - z) * n + z * h_{t-1}.

    Args as ``SimpleRNN`` (no activation).

    Parameters: kernel (in, 3*units), recurrent_kernel (units, 3*units), bias (3*units,),
    recurrent_bias (3*units,).
    """

    _gates = 3

    def _build_extra(self, width):
        if self.use_bias:
            self.add_weight("recurrent_bias", (width,), "zeros")

    def _run(self, x, states, mask, nblocks):
        w, u = self.params["kernel"], self.params["recurrent_kernel"]
        rb = self.params["recurrent_bias"] if self.use_bias else np.zeros(u.shape[1], dtype=x.dtype)
        reverse = self.go_backwards
        outputs, h_last, cache = K.gru_forward(x, w, u, self._bias(x.dtype), rb, states[0], mask, reverse, nblocks)

        def run_backward(d_out, d_finals, need_dx):
            dw, du, db = self._grads(u.shape[1], x.dtype)
            train = self.trainable and self.use_bias
            drb = self.grads["recurrent_bias"] if train else np.zeros(u.shape[1], dtype=x.dtype)
            dx, dh0 = K.gru_backward(d_out, d_finals[0], x, w, u, mask, reverse, cache, dw, du, db, drb,
                                     need_dx, self.trainable, nblocks)
            return dx, [dh0]

        return outputs, [h_last], run_backward


class Bidirectional(CompositeLayer):
    """Runs a recurrent layer forwards and a copy of it backwards over the sequence and
    merges the two outputs.

    Args:
        layer: a SimpleRNN, LSTM or GRU (not yet built); its copy processes the sequence in
            the other direction.
        merge_mode: "concat" (default), "sum", "mul", "ave", or None for a list of both outputs.

    With ``return_sequences`` the backward layer's outputs are put back in time order before
    merging.  With ``return_state`` the result is [merged, forward states..., backward states...].
    Parameters: those of both layers, named ``forward_<param>`` and ``backward_<param>``.
    """

    _MERGE_MODES = ("concat", "sum", "mul", "ave", None)
    _accepts_mask = True
    _skips_input_grad = True

    def __init__(self, layer, merge_mode="concat", name=None, trainable=True):
        if not isinstance(layer, _Recurrent):
            raise TypeError(f"Bidirectional: expected a SimpleRNN, LSTM or GRU layer. Received: layer={layer!r}")
        if layer.built:
            raise ValueError(f"Bidirectional: expected a layer that is not built yet. Received: layer={layer.name!r}")
        if merge_mode not in self._MERGE_MODES:
            raise ValueError(f"Bidirectional: expected merge_mode in {list(self._MERGE_MODES)}. "
                             f"Received: merge_mode={merge_mode!r}")
        super().__init__(name=name or f"bidirectional_{layer.name}", trainable=trainable)
        self.merge_mode = merge_mode
        self.forward_layer = layer
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        config["go_backwards"] = not layer.go_backwards
        self.backward_layer = type(layer)(**config, name=f"backward_{layer.name}")

    def _sublayers(self):
        return (("forward_", self.forward_layer), ("backward_", self.backward_layer))

    def build(self, input_shape):
        for _, layer in self._sublayers():
            layer.ensure_built(input_shape)
        self._adopt()

    def check_input_shape(self, shape):
        self.forward_layer.check_input_shape(shape)

    def compute_output_shape(self, input_shape):
        out = self.forward_layer.compute_output_shape(input_shape)
        states = []
        if self.forward_layer.return_state:
            out, states = out[0], list(out[1:])
        if self.merge_mode == "concat":
            out = tuple(out[:-1]) + (2 * out[-1],)
        elif self.merge_mode is None:
            out = [out, out]
        if states:
            return ([out] if self.merge_mode is not None else out) + states + states
        return out

    def compute_mask(self, x, mask=None):
        return self.forward_layer.compute_mask(x, mask)

    def forward(self, inputs, training=False, mask=None):
        self._sync()
        fwd, bwd = self.forward_layer, self.backward_layer
        yf, back_f = fwd.forward(inputs, training, mask=mask)
        yb, back_b = bwd.forward(inputs, training, mask=mask)
        with_state = fwd.return_state
        states_f, states_b = (yf[1:], yb[1:]) if with_state else ([], [])
        of, ob = (yf[0], yb[0]) if with_state else (yf, yb)
        seq = fwd.return_sequences
        if seq:
            ob = ob[:, ::-1]
        mode = self.merge_mode
        if mode == "concat":
            out = np.concatenate([of, ob], axis=-1)
        elif mode == "sum":
            out = of + ob
        elif mode == "mul":
            out = of * ob
        elif mode == "ave":
            out = (of + ob) * 0.5
        else:
            out = [of, np.ascontiguousarray(ob)]
        head = out if mode is None else [out]
        result = head + list(states_f) + list(states_b) if with_state else out
        units = of.shape[-1]

        def backward(dy, need_dx=True):
            if with_state:
                parts = list(dy)
                k = len(states_f)
                d_main = parts[:2] if mode is None else parts[0]
                rest = parts[2:] if mode is None else parts[1:]
                d_sf, d_sb = rest[:k], rest[k:]
            else:
                d_main, d_sf, d_sb = dy, [], []
            if mode == "concat":
                d_of, d_ob = d_main[..., :units], d_main[..., units:]
            elif mode == "sum":
                d_of = d_ob = d_main
            elif mode == "mul":
                d_of, d_ob = d_main * ob, d_main * of
            elif mode == "ave":
                d_of = d_ob = d_main * 0.5
            else:
                d_of, d_ob = d_main
            if seq:
                d_ob = d_ob[:, ::-1]
            d_f = [d_of] + list(d_sf) if with_state else d_of
            d_b = [d_ob] + list(d_sb) if with_state else d_ob
            gf = back_f(d_f, need_dx)
            gb = back_b(d_b, need_dx)
            if not need_dx:
                return None
            if isinstance(gf, list):
                return [a + b if a is not None and b is not None else a if b is None else b for a, b in zip(gf, gb)]
            return gf + gb

        return result, backward

    def get_config(self):
        inner = self.forward_layer
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": {"class_name": type(inner).__name__, "config": inner.get_config()}}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        spec = config.pop("layer")
        layer = get_layer_class(spec["class_name"])(**spec["config"])
        return cls(layer, **config)

    def extra_repr(self):
        return f"{self.forward_layer!r}, merge_mode={self.merge_mode!r}"
