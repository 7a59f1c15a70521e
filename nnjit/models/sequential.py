"""Sequential: a plain stack of layers, each feeding the next.

A Sequential model that is a plain stack of Dense layers (the common MLP) runs its
training step and its inference through the fused kernels of ``nnjit.kernels.mlp``:
one kernel call for forward, loss and backward of the whole stack, and one for
inference, instead of a few calls per layer.  ``_DenseStack`` decides when that
applies and keeps what the kernels need between calls; every other model, and every
step the fused kernels do not cover, takes the layer-by-layer path.
"""
from __future__ import annotations

import numpy as np

from .. import losses as losses_module
from .. import runtime
from ..kernels import mlp as mlp_kernels
from ..kernels.activations import CODES
from ..layers.base import Layer
from ..layers.core import Dense
from ..layers.input import InputLayer, SymbolicTensor
from .engine import BaseModel

_LINEAR = CODES["linear"]
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Relative cost of one multiply-add of a training step (forward, input gradient and weight
# gradient: three products) and of inference, in the work units of runtime.blocks_for.
_TRAIN_WORK = 3
_INFER_WORK = 1
# A fused training step splits its batch across threads only from this much work (in
# those units).  Each thread then runs every product on half the rows, where small
# products lose much of their speed, and the step waits at two joins.  Measured on
# 2 threads, batch 128, three layers: 10-64-64-10 (2.1M units) and 10-128-128-10 (7.3M)
# ran as fast serial as split (0.9-1.0x), 128-128-128-10 (13M) gained 1.4x from the
# split and 784-256-256-10 (103M) 1.7x.  Serial also keeps a small model's step from
# waiting on a thread whose core is busy elsewhere.
_TRAIN_PARALLEL_MIN_WORK = 1 << 23


def _loss_kernel_code(loss, fused):
    """(loss code of nnjit.kernels.mlp, Huber's delta) for the built-in losses, or None.

    ``fused``: the loss absorbs the last layer's softmax or sigmoid (the model computes
    logits).  Subclasses may override value_and_grad, so only the exact classes qualify.
    """
    kind = type(loss)
    if kind is losses_module.SparseCategoricalCrossentropy:
        return (mlp_kernels.SOFTMAX_CE_SPARSE if fused or loss.from_logits else mlp_kernels.CE_PROBS_SPARSE), 0.0
    if kind is losses_module.CategoricalCrossentropy:
        return (mlp_kernels.SOFTMAX_CE_DENSE if fused or loss.from_logits else mlp_kernels.CE_PROBS_DENSE), 0.0
    if kind is losses_module.BinaryCrossentropy:
        return (mlp_kernels.SIGMOID_BCE if fused or loss.from_logits else mlp_kernels.BCE), 0.0
    if kind is losses_module.MeanSquaredError:
        return mlp_kernels.MSE, 0.0
    if kind is losses_module.MeanAbsoluteError:
        return mlp_kernels.MAE, 0.0
    if kind is losses_module.Huber:
        return mlp_kernels.HUBER, float(loss.delta)
    return None


class _DenseStack:
    """A plain stack of Dense layers run by the fused kernels of ``nnjit.kernels.mlp``.

    Made for one set of flat parameter buffers (``_FlatParameters``): the layout table
    holds offsets into them, so a new buffer (layers added or removed, weights replaced,
    a new compile) means a new ``_DenseStack``.  What depends on the loss, the trainable
    flags, the batch size or the thread count is cached and rebuilt when those change.
    The workspaces are reused between calls, and the arrays returned to the caller are
    always new.  Inference is safe from several threads at once (each call has a
    workspace of its own); training one model from several threads at once is not.
    """

    @classmethod
    def create(cls, layers, flat):
        """A _DenseStack for ``layers`` over ``flat``, or None when the fused kernels do not
        cover the model: another layer type, an input that is not (batch, features),
        mixed dtypes."""
        if not layers or flat.dtype not in _FLOAT_DTYPES:
            return None
        width = None
        for layer in layers:
            if type(layer) is not Dense or not layer.built or "forward" in layer.__dict__:
                return None
            if layer.input_shape is None or len(layer.input_shape) != 1:
                return None
            keys = set(layer.params)
            if keys != ({"kernel", "bias"} if layer.use_bias else {"kernel"}):
                return None
            kernel = layer.params["kernel"]
            if kernel.ndim != 2 or kernel.dtype != flat.dtype or (width is not None and kernel.shape[0] != width):
                return None
            if layer.use_bias and (layer.params["bias"].shape != (kernel.shape[1],)
                                   or layer.params["bias"].dtype != flat.dtype):
                return None
            width = kernel.shape[1]
        return cls(layers, flat)

    def __init__(self, layers, flat):
        self.layers = list(layers)
        self.flat = flat
        self.dtype = flat.dtype
        start = {(id(layer), key): begin for layer, key, begin, _, _, _ in flat.entries}
        rows = []
        for layer in self.layers:
            k, m = layer.params["kernel"].shape
            bias = start[(id(layer), "bias")] if layer.use_bias else -1
            rows.append([k, m, start[(id(layer), "kernel")], bias, layer._code, 0, 0, 0])
        self.layout = np.array(rows, dtype=np.int64).reshape(-1, mlp_kernels.LAYOUT_WIDTH)
        self.n_in = int(self.layout[0, mlp_kernels.FAN_IN])
        self.classes = int(self.layout[-1, mlp_kernels.FAN_OUT])
        self.macs_per_row = int((self.layout[:, mlp_kernels.FAN_IN] * self.layout[:, mlp_kernels.FAN_OUT]).sum())
        self.regularized = [layer for layer in self.layers if layer.regularizers]
        self._no_labels = np.zeros(0, dtype=np.int64)
        self._no_targets = np.zeros((0, 0), dtype=self.dtype)
        self._train_key = None
        self._train = None      # (layout, loss code, delta, fused, sparse, kernel)
        self._train_rows = -1   # batch size the training workspace is laid out for
        self._train_work = None
        self._train_tail = None  # (N, C) view at the end of the workspace
        self._infer_pool = []   # inference workspaces not in use (see _take_workspace)

    # ----------------------------------------------------------------- training
    def _training(self, model):
        # Read on every step (a few attribute reads): a loss attribute or a layer's
        # trainable flag may change between steps.
        code = _loss_kernel_code(model.loss, model._fuse)
        trainable = [layer.trainable for layer in self.layers]
        key = (code, model._fuse, trainable)
        if key == self._train_key:
            return self._train
        self._train_key = key
        self._train_rows = -1
        if code is None:
            self._train = None
            return None
        layout = self.layout.copy()
        if model._fuse:
            layout[-1, mlp_kernels.ACTIVATION] = _LINEAR
        first = next((i for i, t in enumerate(trainable) if t), len(trainable))
        for i, t in enumerate(trainable):
            layout[i, mlp_kernels.NEED_DW] = int(t)
            layout[i, mlp_kernels.NEED_DZ] = int(i >= first)
            layout[i, mlp_kernels.NEED_DX] = int(i > first)
        self._train = (layout, code[0], code[1], bool(model._fuse), code[0] in mlp_kernels.SPARSE_LOSSES,
                       mlp_kernels.train_step_kernel(code[0]))
        return self._train

    def train_gradients(self, model, x, y):
        """Loss and gradients of one training step in one kernel call.

        ``x``, ``y``: a batch prepared by the model (``y`` as the loss's
        ``prepare_targets`` returns it).  Writes the gradients into the flat gradient
        buffer and returns (mean loss, predictions as the layer-by-layer path gives them),
        or None when this batch or this loss needs the layer-by-layer path."""
        if (x.ndim != 2 or x.dtype != self.dtype or x.shape[1] != self.n_in
                or not x.flags.c_contiguous or x.shape[0] == 0):
            return None
        train = self._training(model)
        if train is None:
            return None
        layout, code, delta, fused, sparse, kernel = train
        n = x.shape[0]
        c = self.classes
        if sparse:
            labels = y
            if labels.dtype != np.int64 or labels.ndim != 1 or not labels.flags.c_contiguous:
                labels = np.ascontiguousarray(labels.reshape(-1), dtype=np.int64)
            if labels.shape[0] != n:
                return None
            targets = self._no_targets
        else:
            if y.size != n * c:
                return None
            targets = y.reshape(n, c)
            if targets.dtype != self.dtype or not targets.flags.c_contiguous:
                targets = np.ascontiguousarray(targets, dtype=self.dtype)
            labels = self._no_labels
        if n != self._train_rows:
            size = int(mlp_kernels.workspace_size(layout, n, True))
            if self._train_work is None or self._train_work.shape[0] < size + n * c:
                self._train_work = np.empty(size + n * c, dtype=self.dtype)
            self._train_tail = self._train_work[size:size + n * c].reshape(n, c)
            self._train_rows = n
        work = self._train_work
        tail = self._train_tail
        y_pred = np.empty((n, c), dtype=self.dtype)
        # With a fused softmax / sigmoid the predictions are the probabilities and the
        # logits stay in the workspace; otherwise the predictions are the output itself.
        out, probs = (tail, y_pred) if fused else (y_pred, tail)
        nblocks = runtime.blocks_for(_TRAIN_WORK * n * self.macs_per_row, _TRAIN_PARALLEL_MIN_WORK)
        loss = kernel(x, labels, targets, self.flat.params, self.flat.grads, layout, work, out, probs, code, delta,
                      nblocks)
        return loss, y_pred

    # ---------------------------------------------------------------- inference
    # Inference may run on several Python threads at once (a server calling predict),
    # and a parallel kernel releases the GIL while its threads run: two calls must never
    # share a workspace.  A call takes one out of a small pool (list.pop and append are
    # atomic) and gives it back when done; a thread that finds the pool empty, or a
    # workspace made for another batch size, makes a new one.
    _POOL_SIZE = 4

    def _blocks(self, rows):
        """(kernel-row blocks per layer, row blocks) of an inference call on ``rows`` rows."""
        macs = self.layout[:, mlp_kernels.FAN_IN] * self.layout[:, mlp_kernels.FAN_OUT]
        k_blocks = np.array([runtime.gemv_blocks(rows * int(m)) for m in macs], dtype=np.int64)
        return k_blocks, runtime.blocks_for(_INFER_WORK * rows * self.macs_per_row)

    def _take_workspace(self, rows):
        """(rows, threads epoch, workspace, kernel-row blocks, row blocks), owned by the
        caller until ``_give_back``."""
        epoch = runtime.threads_epoch()
        try:
            entry = self._infer_pool.pop()
        except IndexError:
            entry = None
        if entry is None or entry[0] != rows or entry[1] != epoch:
            work = np.empty(int(mlp_kernels.workspace_size(self.layout, rows, False)), dtype=self.dtype)
            entry = (rows, epoch, work) + self._blocks(rows)
        return entry

    def _give_back(self, entry):
        if len(self._infer_pool) < self._POOL_SIZE:
            self._infer_pool.append(entry)

    def predict(self, x, batch_size):
        """Outputs for x (C-contiguous, the model's dtype, (N, features)) in calls of at
        most ``batch_size`` rows; None when x holds NaN or infinity."""
        n = x.shape[0]
        rows = min(n, batch_size)
        entry = self._take_workspace(rows)
        try:
            _, _, work, k_blocks, nblocks = entry
            out = np.empty((n, self.classes), dtype=self.dtype)
            params = self.flat.params
            layout = self.layout
            forward = mlp_kernels.mlp_forward
            if n <= batch_size:
                return out if forward(x, params, layout, work, out, k_blocks, nblocks) else None
            for start in range(0, n, batch_size):
                stop = min(n, start + batch_size)
                if stop - start != rows:  # the last, shorter batch: the workspace is large enough
                    k_blocks, nblocks = self._blocks(stop - start)
                if not forward(x[start:stop], params, layout, work, out[start:stop], k_blocks, nblocks):
                    return None
            return out
        finally:
            self._give_back(entry)


class Sequential(BaseModel):
    """A linear stack of layers.

    >>> model = nj.Sequential([nj.Input((64,)), Dense(128, activation="relu"), Dense(10)])
    >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> model.fit(x, y, epochs=5)

    The input shape comes from a leading ``nj.Input(shape)`` or, without one, from the
    first data the model sees (``fit``, ``predict``, ``model(x)``) or ``build(shape)``.

    A stack of Dense layers only (inputs of shape (batch, features), one dtype, a
    built-in loss) trains and predicts through fused kernels, one call per step; set
    ``model.fuse_dense_stack = False`` to run it layer by layer instead (the results
    agree to rounding).
    """

    def __init__(self, layers=None, name=None):
        super().__init__(name=name or "sequential")
        self._input = None  # the InputLayer, once the input shape is known
        self._stack: list[Layer] = []
        self._stack_runner = None  # (flat buffers, _DenseStack or None)
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
            raise TypeError(f"{self.name}.add: expected a Layer for layer. Received: layer={layer!r}")
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
        mask = None  # from an Embedding(mask_zero=True), for the recurrent layers after it
        for i, layer in enumerate(stack):
            h_in = h
            if i == last and linear_output:
                h, back = layer.forward(h, training, linear_output=True)
            elif mask is not None and layer._accepts_mask:
                h, back = layer.forward(h, training, mask=mask)
            else:
                h, back = layer.forward(h, training)
            if mask is not None or layer.supports_masking and getattr(layer, "mask_zero", False):
                mask = layer.compute_mask(h_in, mask)
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

    # When False, every step and every prediction takes the layer-by-layer path.
    fuse_dense_stack = True

    def _dense_stack(self, flat):
        if not self.fuse_dense_stack:
            return None
        cached = self._stack_runner
        if cached is not None and cached[0] is flat:
            return cached[1]
        runner = _DenseStack.create(self._stack, flat)
        self._stack_runner = (flat, runner)
        return runner

    def _inference_stack(self, x):
        if (type(x) is not np.ndarray or x.ndim != 2 or x.shape[0] == 0 or not x.flags.c_contiguous
                or not self.fuse_dense_stack or self._input is None):
            return None
        stack = self._stack
        flat = self._flat
        if flat is None or not flat.still_bound(stack):
            if not stack or not all(layer.built for layer in stack):
                return None
            flat = self._ensure_flat()
        runner = self._dense_stack(flat)
        if runner is None or x.dtype != runner.dtype or x.shape[1] != runner.n_in:
            return None
        if x.dtype != runtime.floatx_dtype():  # the layer-by-layer path converts x first
            return None
        return runner

    def _summary_layers(self):
        return self._stack

    def _profile_layers(self):
        return self._stack
