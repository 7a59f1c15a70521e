"""Model: any directed acyclic graph of layers, with several inputs and outputs.

>>> inp = nj.Input((64,))
>>> h = Dense(128, activation="relu")(inp)
>>> out = Dense(10)(Add()([h, Dense(128)(inp)]))
>>> model = nj.Model(inp, out)

The model walks the graph forward in topological order, keeping each layer's backward
closure, then calls the closures in reverse order, summing gradients where a tensor fans
out (a shared layer, a skip connection).  No autograd tape is needed.
"""
from __future__ import annotations

import numpy as np

from .. import losses as losses_module
from ..layers.input import InputLayer, SymbolicTensor
from .engine import BaseModel
from .validation import as_input_array, check_feature_shape


class MultiArray:
    """Several arrays with one batch axis, sliced together: what a model with several
    inputs (or outputs) takes as ``x`` (or ``y``) inside the training loop."""

    def __init__(self, arrays):
        self.arrays = list(arrays)

    @property
    def shape(self):
        return (self.arrays[0].shape[0],)

    def __len__(self):
        return self.arrays[0].shape[0]

    def __getitem__(self, key):
        return MultiArray([a[key] for a in self.arrays])


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


class _MultiOutputLoss:
    """One loss per output, summed with weights; targets travel as a MultiArray of
    (N, ...) arrays so that every output's batch is sliced with the same rows."""

    fused_activation = None
    name = "loss"

    def __init__(self, losses, weights):
        self.losses = losses
        self.weights = weights

    def prepare_targets(self, y, output_shapes, argument="y"):
        ys = y.arrays if isinstance(y, MultiArray) else _as_list(y)
        if len(ys) != len(self.losses):
            raise ValueError(f"model: expected {len(self.losses)} target arrays for {argument} (one per output). "
                             f"Received: {len(ys)}")
        n = len(ys[0])
        out = []
        for i, (loss, target, shape) in enumerate(zip(self.losses, ys, output_shapes)):
            if len(target) != n:
                raise ValueError(f"model: every target array needs the same number of samples. "
                                 f"Received: {argument}[0] with {n}, {argument}[{i}] with {len(target)}")
            prepared = loss.prepare_targets(target, shape, argument=f"{argument}[{i}]")
            out.append(prepared.reshape(n, -1) if prepared.shape[0] != n else prepared)
        return MultiArray(out)

    def value_and_grad(self, y, outputs):
        total, grads = 0.0, []
        for loss, weight, target, out in zip(self.losses, self.weights, y.arrays, outputs):
            n = out.shape[0]
            flat = target.reshape(-1) if target.ndim == 2 and target.shape[0] == n and target.shape[1] != out.shape[-1] \
                and np.issubdtype(target.dtype, np.integer) else target
            value, grad = loss.value_and_grad(flat, out)
            total += weight * value
            grads.append(grad * weight if weight != 1.0 else grad)
        return total, grads

    def get_config(self):
        return {"losses": [l.get_config() for l in self.losses], "weights": self.weights}


class _FirstOutputMetric:
    """A metric of a several-output model, computed on its first output."""

    def __init__(self, metric):
        self.metric = metric
        self.name = metric.name

    def reset(self):
        self.metric.reset()

    def update(self, y, y_pred):
        target = y.arrays[0]
        out = y_pred[0]
        if target.ndim == 2 and target.shape[0] == out.shape[0] and target.shape[1] != out.shape[-1]:
            target = target.reshape(-1)
        self.metric.update(target, out)

    def result(self):
        return self.metric.result()


class Model(BaseModel):
    """A graph of layers from ``inputs`` (``nj.Input`` tensors) to ``outputs``.

    Args:
        inputs: a tensor from ``nj.Input`` or a list of them.
        outputs: a tensor produced by calling layers on those, or a list of them.

    Layers may be shared (called more than once: their gradients add up), models may be
    called as layers, and merge layers (Add, Multiply, Concatenate) join branches.  With
    several inputs, ``x`` is a list of arrays; with several outputs, ``predict`` returns a
    list and ``compile`` takes a loss per output (a list, or one loss for all) and
    ``loss_weights``; metrics are computed on the first output.
    """

    def __init__(self, inputs, outputs, name=None):
        super().__init__(name=name or "model")
        self._inputs = _as_list(inputs)
        self._outputs = _as_list(outputs)
        self._several_inputs = isinstance(inputs, (list, tuple))
        self._several_outputs = isinstance(outputs, (list, tuple))
        for i, t in enumerate(self._inputs):
            if not isinstance(t, SymbolicTensor) or not isinstance(t.layer, InputLayer):
                raise TypeError(f"Model: expected tensors from nj.Input for inputs. Received: inputs[{i}]={t!r:.80}")
        for i, t in enumerate(self._outputs):
            if not isinstance(t, SymbolicTensor):
                raise TypeError(f"Model: expected symbolic tensors for outputs. Received: outputs[{i}]={t!r:.80}")
        self._nodes = self._topological_nodes()
        self._loss_weights = None

    @property
    def inputs(self):
        """The model's input tensors (a list)."""
        return list(self._inputs)

    @property
    def outputs(self):
        """The model's output tensors (a list)."""
        return list(self._outputs)

    @property
    def input(self):
        return self._inputs if self._several_inputs else self._inputs[0]

    @property
    def output(self):
        """The output tensor (list with several): build a new head on it to fine-tune."""
        return self._outputs if self._several_outputs else self._outputs[0]

    # ---------------------------------------------------------------- graph
    def _topological_nodes(self):
        known_inputs = {id(t) for t in self._inputs}
        order, state = [], {}

        def visit(tensor, path):
            node = tensor.node
            if isinstance(node.layer, InputLayer):
                if id(tensor) not in known_inputs:
                    raise ValueError(f"Model: the graph needs the input {node.layer.name!r}, which is not among the "
                                     f"model's inputs {[t.layer.name for t in self._inputs]}")
                return
            mark = state.get(id(node))
            if mark == "done":
                return
            if mark == "open":
                raise ValueError(f"Model: the graph has a cycle through layer {node.layer.name!r}")
            state[id(node)] = "open"
            for t in node.inputs:
                visit(t, path)
            state[id(node)] = "done"
            order.append(node)

        for t in self._outputs:
            visit(t, ())
        return order

    def _leaf_layers(self):
        seen, out = set(), []
        for node in self._nodes:
            layer = node.layer
            inner = layer.layers if isinstance(layer, BaseModel) else [layer]
            for leaf in inner:
                if id(leaf) not in seen:
                    seen.add(id(leaf))
                    out.append(leaf)
        return out

    def _layers_in_order(self):
        return self._leaf_layers()

    def _summary_layers(self):
        seen, out = set(), []
        for node in self._nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                out.append(node.layer)
        return out

    def _profile_layers(self):
        return self._summary_layers()

    def connections(self):
        """[(layer name, [names of the layers feeding it])] in graph order, as summary() shows."""
        return [(node.layer.name, [t.layer.name for t in node.inputs]) for node in self._nodes]

    def summary(self, print_fn=print):
        """Table of layers, output shapes, parameter counts and the layers each is connected to."""
        chunks = []
        super().summary(print_fn=chunks.append)
        lines = "\n".join(chunks).split("\n")
        feeds = {}
        for name, sources in self.connections():
            feeds.setdefault(name, []).append(", ".join(sources))
        out = []
        for line in lines:
            name = line.split(" (", 1)[0] if " (" in line else None
            if name in feeds:
                line = f"{line}  <- {' | '.join(feeds[name])}"
            out.append(line)
        print_fn("\n".join(out))

    # ---------------------------------------------------------------- shapes and data
    def build(self, input_shape):
        """The graph is built as it is constructed; nothing to do."""

    def _is_built(self):
        return True

    def _input_shape(self):
        shapes = [t.shape for t in self._inputs]
        return shapes if self._several_inputs else shapes[0]

    def _output_shape(self):
        shapes = [t.shape for t in self._outputs]
        return shapes if self._several_outputs else shapes[0]

    def _output_layer(self):
        if self._several_outputs:
            return None
        return self._outputs[0].layer

    def _prepare_x(self, x, argument="x", owner="model"):
        if not self._several_inputs:
            if isinstance(x, MultiArray):
                x = x.arrays[0]
            return super()._prepare_x(x, argument, owner)
        xs = x.arrays if isinstance(x, MultiArray) else x
        if not isinstance(xs, (list, tuple)):
            raise TypeError(f"{owner}: the model has {len(self._inputs)} inputs; expected a list of "
                            f"{len(self._inputs)} arrays for {argument}. Received: {type(x).__name__}")
        if len(xs) != len(self._inputs):
            raise ValueError(f"{owner}: the model has {len(self._inputs)} inputs; expected {len(self._inputs)} arrays "
                             f"for {argument}. Received: {len(xs)}")
        arrays = []
        for i, (a, t) in enumerate(zip(xs, self._inputs)):
            a = as_input_array(a, f"{argument}[{i}]", owner)
            check_feature_shape(a, t.shape, f"{argument}[{i}]", owner)
            if a.shape[0] != arrays[0].shape[0] if arrays else False:
                raise ValueError(f"{owner}: every input array needs the same number of samples. "
                                 f"Received: {argument}[0] with {arrays[0].shape[0]}, {argument}[{i}] with {a.shape[0]}")
            arrays.append(a)
        return MultiArray(arrays)

    def _check_pair(self, x, y, owner, x_arg="x", y_arg="y"):
        if self._several_outputs and isinstance(y, (list, tuple)):
            if len(y) != len(self._outputs):
                raise ValueError(f"{owner}: the model has {len(self._outputs)} outputs; expected {len(self._outputs)} "
                                 f"target arrays for {y_arg}. Received: {len(y)}")
            y = MultiArray([np.asarray(a) for a in y])
        return super()._check_pair(x, y, owner, x_arg, y_arg)

    def _prepare_y(self, y, argument="y"):
        if self._several_outputs:
            return self.loss.prepare_targets(y, self._output_shape(), argument=argument)
        return super()._prepare_y(y, argument)

    # ---------------------------------------------------------------- compile
    def compile(self, optimizer="adam", loss=None, metrics=None, loss_weights=None):
        """As for every model; with several outputs ``loss`` may be a list (one per output)
        or one loss for all, and ``loss_weights`` a list of floats (default all 1)."""
        if not self._several_outputs:
            if loss_weights is not None:
                raise ValueError(f"{self.name}.compile: loss_weights needs a model with several outputs. "
                                 f"Received: loss_weights={loss_weights!r}")
            return super().compile(optimizer, loss, metrics)
        count = len(self._outputs)
        names = _as_list(loss) if isinstance(loss, (list, tuple)) else [loss] * count
        if len(names) != count:
            raise ValueError(f"{self.name}.compile: expected {count} losses (one per output). Received: {len(names)}")
        weights = [1.0] * count if loss_weights is None else [float(w) for w in _as_list(loss_weights)]
        if len(weights) != count:
            raise ValueError(f"{self.name}.compile: expected {count} loss_weights. Received: loss_weights={loss_weights!r}")
        first = names[0]
        super().compile(optimizer, first, metrics)
        self.loss = _MultiOutputLoss([losses_module.get(n) for n in names], weights)
        self.compiled_metrics = [_FirstOutputMetric(m) for m in self.compiled_metrics]
        self._compile_config["loss"] = [n if isinstance(n, str) else n.get_config() for n in names]
        self._compile_config["loss_weights"] = weights
        self._update_fusion()
        return self

    # ---------------------------------------------------------------- forward and backward
    def _needs_grad(self, need_input_grad):
        """Ids of the tensors whose gradient someone reads: model inputs (when asked) and
        every tensor downstream of a trainable parameter's layer input."""
        needed = {id(t) for t in self._inputs} if need_input_grad else set()
        for node in self._nodes:
            layer = node.layer
            has_params = any(l.trainable and l.params for l in (layer.layers if isinstance(layer, BaseModel) else [layer]))
            if has_params or any(id(t) in needed for t in node.inputs):
                for t in node.outputs:
                    needed.add(id(t))
        return needed

    def _forward(self, x, training, linear_output, need_input_grad=False):
        xs = x.arrays if isinstance(x, MultiArray) else _as_list(x) if self._several_inputs else [x]
        values = {id(t): a for t, a in zip(self._inputs, xs)}
        masks = {}
        backs = []
        fused_node = self._outputs[0].node if linear_output and not self._several_outputs else None
        for node in self._nodes:
            layer = node.layer
            args = [values[id(t)] for t in node.inputs]
            arg = args[0] if len(args) == 1 else args
            mask = masks.get(id(node.inputs[0]))
            if node is fused_node:
                y, back = layer.forward(arg, training, linear_output=True)
            elif mask is not None and layer._accepts_mask:
                y, back = layer.forward(arg, training, mask=mask)
            else:
                y, back = layer.forward(arg, training)
            outs = y if len(node.outputs) > 1 else [y]
            for t, v in zip(node.outputs, outs):
                values[id(t)] = v
            if mask is not None or getattr(layer, "mask_zero", False):
                new_mask = layer.compute_mask(arg, mask)
                if new_mask is not None:
                    for t in node.outputs:
                        masks[id(t)] = new_mask
            backs.append(back)
        outputs = [values[id(t)] for t in self._outputs]
        needed = self._needs_grad(need_input_grad)
        input_ids = {id(t) for t in self._inputs}

        def backward(dy):
            grads = {}
            for t, g in zip(self._outputs, dy if self._several_outputs else [dy]):
                grads[id(t)] = g if id(t) not in grads else grads[id(t)] + g
            for node, back in zip(reversed(self._nodes), reversed(backs)):
                g_out = [grads.pop(id(t), None) for t in node.outputs]
                if all(g is None for g in g_out):
                    continue
                g_out = [np.zeros_like(values[id(t)]) if g is None else g for t, g in zip(node.outputs, g_out)]
                g = g_out if len(node.outputs) > 1 else g_out[0]
                wants_dx = any(id(t) in needed and (id(t) not in input_ids or need_input_grad) for t in node.inputs)
                if not wants_dx:
                    layer = node.layer
                    leaves = layer.layers if isinstance(layer, BaseModel) else [layer]
                    if any(l.trainable and l.params for l in leaves):
                        if layer._skips_input_grad:
                            back(g, need_dx=False)
                        else:
                            back(g)
                    continue
                dx = back(g)
                for t, d in zip(node.inputs, dx if len(node.inputs) > 1 else [dx]):
                    if d is None:
                        continue
                    grads[id(t)] = d if id(t) not in grads else grads[id(t)] + d
            if not need_input_grad:
                return None
            result = [grads.get(id(t)) for t in self._inputs]
            return result if self._several_inputs else result[0]

        return (outputs if self._several_outputs else outputs[0]), backward

    def predict(self, x, batch_size=32, verbose=0):
        if not self._several_outputs:
            return super().predict(x, batch_size, verbose)
        from .validation import check_int

        batch_size = check_int(batch_size, "batch_size", "predict", 1)
        x = self._prepare_x(x, "x", "predict")
        n = x.shape[0]
        parts = [self._forward(x[s:s + batch_size], False, False)[0] for s in range(0, n, batch_size)]
        return [np.concatenate([p[i] for p in parts], axis=0) for i in range(len(self._outputs))]

    def __call__(self, x, training=False):
        if isinstance(x, SymbolicTensor) or (isinstance(x, (list, tuple)) and x and isinstance(x[0], SymbolicTensor)):
            return super().__call__(x, training)
        if self._several_inputs or self._several_outputs:
            x = self._prepare_x(x, "x", self.name)
            return self._forward(x, bool(training), False)[0]
        return super().__call__(x, training)

    def get_config(self):
        return {"name": self.name, "connections": self.connections()}
