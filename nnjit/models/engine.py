"""The training engine shared by Sequential and functional models.

A subclass provides ``_layers_in_order`` (every layer once), ``_build_from(shape)``,
``_forward(x, training, linear_output) -> (y, backward)`` and an input/output shape.
Everything else (compile, fit, evaluate, predict, the flat parameter buffers the
optimizer updates in one kernel call) lives here.
"""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np

from .. import callbacks as callbacks_module
from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module
from .. import runtime
from ..layers.base import shape_str
from .validation import as_input_array, check_feature_shape, check_int


def _object_state(root):
    """The attributes of ``root`` and of every layer reachable from it (dicts and lists
    copied one level deep: building adds to them in place), for ``_restore_state``."""
    from ..layers.base import Layer

    saved, seen, todo = [], set(), [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not hasattr(obj, "__dict__"):
            continue
        seen.add(id(obj))
        attrs = {k: (dict(v) if type(v) is dict else list(v) if type(v) is list else v) for k, v in vars(obj).items()}
        saved.append((obj, attrs))
        for v in attrs.values():
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                if isinstance(item, (Layer, BaseModel)):
                    todo.append(item)
    return saved


def _restore_state(saved):
    for obj, attrs in saved:
        vars(obj).clear()
        vars(obj).update(attrs)


class TrainingError(RuntimeError):
    """Raised when training cannot go on (a NaN or infinite loss)."""


class _FlatParameters:
    """All parameters of a model in one flat buffer, gradients in another.

    Each layer's ``params[key]`` and ``grads[key]`` become views into the buffers, so
    that zeroing the gradients is one fill and the optimizer update one kernel call
    over the trainable ranges.
    """

    def __init__(self, layers):
        entries = [(layer, key) for layer in layers for key in layer.params]
        dtypes = {layer.params[key].dtype for layer, key in entries}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else runtime.floatx_dtype()
        total = sum(layer.params[key].size for layer, key in entries)
        self.params = np.empty(total, dtype=self.dtype)
        self.grads = np.zeros(total, dtype=self.dtype)
        self.entries = []  # (layer, key, start, stop, param view, grad view)
        offset = 0
        for layer, key in entries:
            value = layer.params[key]
            n = value.size
            p = self.params[offset:offset + n].reshape(value.shape)
            g = self.grads[offset:offset + n].reshape(value.shape)
            p[...] = value
            layer.params[key] = p
            layer.grads[key] = g
            self.entries.append((layer, key, offset, offset + n, p, g))
            offset += n
        self.size = total
        self.ranges = self.trainable_ranges()
        self.layout = [(layer.name, key, start, stop) for layer, key, start, stop, _, _ in self.entries]
        self._copied = False

    def __getstate__(self):
        # A copy (copy.deepcopy, pickle) of a model copies the buffers and every layer's
        # arrays separately: the copied arrays are no longer views of the copied buffers.
        # Marked, the copy is never trusted; the model rebuilds its buffers from the layers
        # (keeping the optimizer's state) on first use.
        state = dict(self.__dict__)
        state["_copied"] = True
        return state

    def trainable_ranges(self):
        ranges = []
        for layer, _, start, stop, _, _ in self.entries:
            if not layer.trainable:
                continue
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], stop)
            else:
                ranges.append((start, stop))
        return ranges

    def still_bound(self, layers) -> bool:
        """True while every layer still uses the views (nobody replaced an array or added
        weights, and this is not a copy)."""
        if self._copied:
            return False
        count = 0
        for layer in layers:
            count += len(layer.params)
        if count != len(self.entries):
            return False
        for layer, key, _, _, p, g in self.entries:
            if layer.params.get(key) is not p or layer.grads.get(key) is not g:
                return False
        return True


class BaseModel:
    """Compile, fit, evaluate and predict for any model made of layers."""

    def __init__(self, name=None):
        self.name = name or type(self).__name__.lower()
        self.optimizer = None
        self.loss = None
        self.compiled_metrics = []
        self.stop_training = False
        self.history = None
        self._flat = None
        self._fuse = False
        self._compiled = False
        self._compile_config = None

    # ------------------------------------------------------------------ as a layer
    # A model can be called on symbolic tensors inside another model: these give it the
    # interface of a layer whose parameters live in its own layers.
    _skips_input_grad = False
    _accepts_mask = False
    supports_masking = False
    @property
    def params(self):
        return {}  # the parameters live in the model's layers

    grads = state = params

    @property
    def trainable(self):
        return any(layer.trainable for layer in self.layers) if self.layers else True

    @trainable.setter
    def trainable(self, value):
        for layer in self.layers:
            layer.trainable = bool(value)

    @property
    def built(self):
        return self._is_built()

    @property
    def output_shape(self):
        return self._output_shape()

    def ensure_built(self, input_shape):
        if not self._is_built():
            self.build(input_shape)

    def check_input_shape(self, shape):
        expected = self._input_shape()
        several = isinstance(expected, list)
        shapes = list(shape) if several else [shape]
        for got, want in zip(shapes, expected if several else [expected]):
            check_feature_shape(np.empty((0,) + tuple(1 if g is None else g for g in got)), want, "x", self.name)

    def compute_mask(self, x, mask=None):
        return None

    def forward(self, x, training=False):
        """As a layer: ``(y, backward)``, backward returning the input gradient."""
        y, back = self._forward(x, training, False, need_input_grad=True)
        return y, lambda dy, need_dx=True: back(dy)

    # ------------------------------------------------------------------ layers
    @property
    def layers(self):
        return list(self._layers_in_order())

    def get_layer(self, name=None, index=None):
        """The layer called ``name`` (or at position ``index``)."""
        layers = self.layers
        if index is not None:
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self.name}: no layer named {name!r}. Layers: {[l.name for l in layers]}")

    @property
    def weights(self):
        return [a for layer in self.layers for a in list(layer.params.values()) + list(layer.state.values())]

    @property
    def trainable_weights(self):
        return [a for layer in self.layers if layer.trainable for a in layer.params.values()]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"{self.name}.set_weights: expected {len(own)} arrays. Received: {len(weights)}")
        for target, w in zip(own, weights):
            w = np.asarray(w)
            if w.shape != target.shape:
                raise ValueError(f"{self.name}.set_weights: expected shape {target.shape}. Received: {w.shape}")
        for target, w in zip(own, weights):
            target[...] = w

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="adam", loss=None, metrics=None):
        """Choose the optimizer, the loss and the metrics (names or objects)."""
        opt = optimizers_module.get(optimizer)
        loss_obj = losses_module.get(loss) if loss is not None else None
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, metrics_module.Metric)):
            metrics = [metrics]
        if not isinstance(metrics, (list, tuple)):
            raise TypeError(f"compile: expected a list of metric names for metrics. Received: metrics={metrics!r}")
        from_logits = bool(getattr(loss_obj, "from_logits", False))
        self.compiled_metrics = [metrics_module.get(m, loss_obj, from_logits) for m in metrics]
        self.optimizer = opt
        self.loss = loss_obj
        self._compiled = True
        self._compile_config = {"optimizer": optimizer if isinstance(optimizer, str) else opt.get_config(),
                                "loss": loss if isinstance(loss, str) or loss is None else loss_obj.get_config(),
                                "metrics": [m if isinstance(m, str) else m.name for m in metrics]}
        self._flat = None
        self._update_fusion()
        return self

    def _output_layer(self):
        return None

    def _update_fusion(self):
        last = self._output_layer()
        act = getattr(last, "fusable_activation", None) if last is not None else None
        self._fuse = bool(self.loss is not None and act is not None
                          and getattr(self.loss, "fused_activation", None) == act)

    def _require_compiled(self, what):
        if not self._compiled or self.loss is None:
            raise RuntimeError(f"{self.name}.{what}: call compile(optimizer, loss) first")

    # ------------------------------------------------------------------ data
    def _input_shape(self):
        """Per-sample input shape the model expects, or None before it is built."""
        raise NotImplementedError

    def _output_shape(self):
        raise NotImplementedError

    def _prepare_x(self, x, argument="x", owner="model"):
        x = as_input_array(x, argument, owner)
        if not self._is_built():
            self.build(x.shape[1:])
        check_feature_shape(x, self._input_shape(), argument, owner)
        return x

    def _prepare_y(self, y, argument="y"):
        return self.loss.prepare_targets(y, self._output_shape(), argument=argument)

    def _is_built(self):
        raise NotImplementedError

    @contextlib.contextmanager
    def _unbuilt_on_error(self):
        """A model without an input shape is built from the first data it is given; when
        that data is then refused (labels, lengths, validation arguments), the build is
        undone, and the random generator put back, so that a refused call leaves no trace."""
        if self._is_built():
            yield
            return
        saved = _object_state(self)
        gen = runtime.rng()
        rng_state = gen.bit_generator.state
        try:
            yield
        except BaseException:
            _restore_state(saved)
            gen.bit_generator.state = rng_state
            raise

    # ------------------------------------------------------------------ one step
    def _ensure_flat(self):
        layers = self.layers
        flat = self._flat
        if flat is None or not flat.still_bound(layers):
            old = flat
            flat = _FlatParameters(layers)
            self._flat = flat
            self._remap_optimizer_state(old, flat)
        else:
            flat.ranges = flat.trainable_ranges()
        return flat

    def _remap_optimizer_state(self, old, new):
        opt = self.optimizer
        if opt is None:
            return
        if old is None or not hasattr(opt, "get_state"):
            opt.build(new.size, new.dtype)
            return
        state = opt.get_state()
        old_pos = {(name, key): (start, stop) for name, key, start, stop in old.layout}
        opt.build(new.size, new.dtype)
        fresh = opt.get_state()
        for slot, value in state.items():
            if isinstance(value, np.ndarray) and value.shape == (old.size,) and slot in fresh:
                target = fresh[slot]
                for name, key, start, stop in new.layout:
                    if (name, key) in old_pos:
                        s0, s1 = old_pos[(name, key)]
                        if s1 - s0 == stop - start:
                            target[start:stop] = value[s0:s1]
            elif slot in fresh:
                fresh[slot] = value
        opt.set_state(fresh)

    def _train_step(self, x, y):
        """One step on a prepared batch: forward, loss, backward, update. Returns (loss, y_pred)."""
        flat = self._ensure_flat()
        stack = self._dense_stack(flat)
        step = stack.train_gradients(self, x, y) if stack is not None else None
        if step is not None:
            # One kernel call computed the loss and wrote every gradient (no zeroing needed).
            loss, y_pred = step
            regularized = stack.regularized
        else:
            flat.grads.fill(0)
            fuse = self._fuse
            out, backward = self._forward(x, True, fuse)
            if fuse:
                loss, dout, y_pred = self.loss.value_and_grad_from_logits(y, out)
            else:
                loss, dout = self.loss.value_and_grad(y, out)
                y_pred = out
            backward(dout)
            regularized = self._regularized
        for layer in regularized:
            loss += layer.regularization_step()
        if not math.isfinite(loss):
            raise TrainingError(
                f"{self.name}: the loss became {loss} (weights left as they were before this step); "
                "lower the learning rate, check the data, or add nj.callbacks.TerminateOnNaN() to stop quietly")
        if flat.ranges:
            self.optimizer.update(flat.params, flat.grads, flat.ranges)
        return loss, y_pred

    def _test_step(self, x, y):
        out, _ = self._forward(x, False, self._fuse)
        if self._fuse:
            loss, _, y_pred = self.loss.value_and_grad_from_logits(y, out)
        else:
            loss, _ = self.loss.value_and_grad(y, out)
            y_pred = out
        return loss, y_pred

    @property
    def _regularized(self):
        return [layer for layer in self.layers if layer.regularizers]

    # ------------------------------------------------------------------ fused paths
    def _dense_stack(self, flat):
        """The fused runner of a model that is a plain stack of Dense layers (see
        ``nnjit.models.sequential``), or None: the layer-by-layer path applies."""
        return None

    def _inference_stack(self, x):
        """The fused runner when ``x`` can be given to it as it is, else None."""
        return None

    # ------------------------------------------------------------------ public loops
    def train_on_batch(self, x, y):
        """One optimizer step on one batch; returns {"loss": ..., metrics...} for that batch."""
        self._require_compiled("train_on_batch")
        x, y = self._check_pair(x, y, "train_on_batch")
        loss, y_pred = self._train_step(x, y)
        return self._batch_logs(loss, y, y_pred)

    def test_on_batch(self, x, y):
        """Loss and metrics on one batch, without updating the weights."""
        self._require_compiled("test_on_batch")
        x, y = self._check_pair(x, y, "test_on_batch")
        loss, y_pred = self._test_step(x, y)
        return self._batch_logs(loss + self._penalty(), y, y_pred)

    def _penalty(self):
        return sum(layer.regularization_penalty() for layer in self._regularized)

    def _batch_logs(self, loss, y, y_pred):
        logs = {"loss": float(loss)}
        for m in self.compiled_metrics:
            m.reset()
            m.update(y, y_pred)
            logs[m.name] = m.result()
        return logs

    def _check_pair(self, x, y, owner, x_arg="x", y_arg="y"):
        with self._unbuilt_on_error():
            x = self._prepare_x(x, x_arg, owner)
            if y is None:
                raise ValueError(f"{owner}: expected targets for {y_arg}. Received: {y_arg}=None")
            n_y = len(y) if hasattr(y, "__len__") else None
            if n_y is None:
                raise TypeError(f"{owner}: expected an array for {y_arg}. Received: {y_arg}={y!r:.80}")
            if n_y != x.shape[0]:
                raise ValueError(
                    f"{owner}: {x_arg} and {y_arg} must have the same number of samples. "
                    f"Received: {x_arg} with {x.shape[0]} samples, {y_arg} with {n_y}")
            return x, self._prepare_y(y, y_arg)

    def fit(self, x=None, y=None, batch_size=32, epochs=1, validation_data=None, validation_split=0.0,
            shuffle=True, callbacks=None, verbose=1):
        """Train for ``epochs`` passes over (x, y); returns a History.

        ``validation_split`` holds out the last fraction of the samples (before any
        shuffling, as Keras); ``validation_data`` is an (x_val, y_val) pair.  ``x`` may
        also be an iterable of (x, y) batches, with ``y`` None.
        """
        self._require_compiled("fit")
        batch_size = check_int(batch_size, "batch_size", "fit", 1)
        epochs = check_int(epochs, "epochs", "fit", 0)
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"fit: expected verbose in (0, 1, 2). Received: verbose={verbose!r}")
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) or not 0 <= validation_split < 1:
            raise ValueError(f"fit: expected 0 <= validation_split < 1. Received: validation_split={validation_split!r}")
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"fit: expected a list for callbacks. Received: callbacks={callbacks!r}")

        with self._unbuilt_on_error():  # the data is refused before any work: no build either
            if y is None and x is not None and not isinstance(x, np.ndarray) and hasattr(x, "__iter__"):
                batches = x
                data = None
            else:
                if y is None:
                    raise ValueError("fit: expected targets y. Received: y=None")
                xs, ys = self._check_pair(x, y, "fit")
                per_sample = ys.shape[0] // xs.shape[0]
                val = None
                if validation_data is not None:
                    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                        raise ValueError(
                            f"fit: expected validation_data as a pair (x_val, y_val). Received: validation_data of type {type(validation_data).__name__}")
                    val = self._check_pair(validation_data[0], validation_data[1], "fit", "validation_data[0]", "validation_data[1]")
                elif validation_split > 0:
                    n_val = int(xs.shape[0] * validation_split)
                    if n_val < 1 or n_val >= xs.shape[0]:
                        raise ValueError(
                            f"fit: validation_split={validation_split} of {xs.shape[0]} samples leaves "
                            f"{n_val} for validation and {xs.shape[0] - n_val} for training; both must be at least 1")
                    cut = xs.shape[0] - n_val
                    val = (xs[cut:], ys[cut * per_sample:])
                    xs, ys = xs[:cut], ys[:cut * per_sample]
                data = (xs, ys, per_sample)
                batches = None

        history = callbacks_module.History()
        cb_list = list(callbacks or [])
        steps = None if data is None else math.ceil(data[0].shape[0] / batch_size)
        cbs = callbacks_module.CallbackList(cb_list + [history], self,
                                            {"epochs": epochs, "steps": steps, "verbose": verbose})
        self.stop_training = False
        self._ensure_flat()
        cbs.on_train_begin()
        # on_train_end runs even when a step or a callback raises, so that callbacks
        # release what they hold (CSVLogger closes its file); the exception propagates.
        try:
            for epoch in range(epochs):
                cbs.on_epoch_begin(epoch)
                for m in self.compiled_metrics:
                    m.reset()
                bar = _progress(verbose, steps, epoch, epochs)
                total_loss = 0.0
                seen = 0
                t_start = time.perf_counter()
                for step, (xb, yb) in enumerate(self._epoch_batches(data, batches, batch_size, shuffle)):
                    if cbs.batch_hooks:
                        cbs.on_batch_begin(step, {"batch": step, "size": xb.shape[0]})
                    try:
                        loss, y_pred = self._train_step(xb, yb)
                    except TrainingError:
                        if any(isinstance(c, callbacks_module.TerminateOnNaN) for c in cb_list):
                            self.stop_training = True
                            loss, y_pred = float("nan"), None
                        else:
                            if bar is not None:
                                bar.close()
                            raise
                    n = xb.shape[0]
                    total_loss += loss * n
                    seen += n
                    if y_pred is not None:
                        for m in self.compiled_metrics:
                            m.update(yb, y_pred)
                    if cbs.batch_hooks:
                        cbs.on_batch_end(step, {"batch": step, "size": n, "loss": loss})
                    if bar is not None:
                        bar.step(total_loss / seen, self.compiled_metrics)
                    if self.stop_training and not math.isfinite(loss):
                        break
                logs = {"loss": total_loss / seen if seen else float("nan")}
                for m in self.compiled_metrics:
                    logs[m.name] = m.result()
                if data is not None and val is not None:
                    val_logs = self._evaluate_prepared(val[0], val[1], batch_size)
                    logs.update({"val_" + k: v for k, v in val_logs.items()})
                seconds = time.perf_counter() - t_start
                if bar is not None:
                    bar.finish(logs, seen / seconds if seconds > 0 else float("inf"))
                elif verbose == 2:
                    print(f"Epoch {epoch + 1}/{epochs} - {seconds:.1f}s - " + _format_logs(logs))
                cbs.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            cbs.on_train_end()
        self.history = history
        return history

    def _epoch_batches(self, data, batches, batch_size, shuffle):
        if data is None:
            for item in batches:
                if not isinstance(item, (tuple, list)) or len(item) != 2:
                    raise ValueError("fit: expected an iterable of (x, y) batches. Received: an item that is not a pair")
                yield self._check_pair(item[0], item[1], "fit")
            return
        xs, ys, per_sample = data
        n = xs.shape[0]
        order = runtime.rng().permutation(n) if shuffle else None
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if order is None:
                xb = xs[start:stop]
                yb = ys[start * per_sample:stop * per_sample]
            else:
                idx = order[start:stop]
                xb = xs[idx]
                if per_sample == 1:
                    yb = ys[idx]
                else:
                    yb = ys.reshape(n, per_sample)[idx].reshape(-1)
            yield xb, yb

    def evaluate(self, x, y, batch_size=32, verbose=0):
        """Loss and metrics over (x, y) as a dict {"loss": ..., "<metric>": ...}."""
        self._require_compiled("evaluate")
        batch_size = check_int(batch_size, "batch_size", "evaluate", 1)
        xs, ys = self._check_pair(x, y, "evaluate")
        logs = self._evaluate_prepared(xs, ys, batch_size)
        if verbose:
            print(_format_logs(logs))
        return logs

    def _evaluate_prepared(self, xs, ys, batch_size):
        per_sample = ys.shape[0] // xs.shape[0]
        for m in self.compiled_metrics:
            m.reset()
        total = 0.0
        n = xs.shape[0]
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yb = ys[start * per_sample:stop * per_sample]
            loss, y_pred = self._test_step(xs[start:stop], yb)
            total += loss * (stop - start)
            for m in self.compiled_metrics:
                m.update(yb, y_pred)
        logs = {"loss": total / n + self._penalty()}
        for m in self.compiled_metrics:
            logs[m.name] = m.result()
        return logs

    def predict(self, x, batch_size=32, verbose=0):
        """Outputs for ``x``, computed in batches of ``batch_size`` (inference mode)."""
        batch_size = check_int(batch_size, "batch_size", "predict", 1)
        stack = self._inference_stack(x)
        if stack is not None:
            y = stack.predict(x, batch_size)
            if y is not None:
                return y
            # x holds NaN or infinity: the checks below say where.
        x = self._prepare_x(x, "x", "predict")
        stack = self._inference_stack(x)
        y = stack.predict(x, batch_size) if stack is not None else None
        if y is not None:
            return y
        n = x.shape[0]
        if n <= batch_size:
            return self._forward(x, False, False)[0]
        outs = [self._forward(x[s:s + batch_size], False, False)[0] for s in range(0, n, batch_size)]
        return np.concatenate(outs, axis=0)

    def __call__(self, x, training=False):
        """Forward on an array (inference unless ``training=True``); returns the output.
        On symbolic tensors, adds the model to a graph as one layer."""
        from ..layers.input import SymbolicTensor, call_symbolic

        if isinstance(x, SymbolicTensor) or (isinstance(x, (list, tuple)) and x and isinstance(x[0], SymbolicTensor)):
            return call_symbolic(self, x)
        if not training:
            stack = self._inference_stack(x)
            if stack is not None:
                y = stack.predict(x, x.shape[0])
                if y is not None:
                    return y
        x = self._prepare_x(x, "x", self.name)
        stack = None if training else self._inference_stack(x)
        y = stack.predict(x, x.shape[0]) if stack is not None else None
        if y is not None:
            return y
        return self._forward(x, bool(training), False)[0]

    # ------------------------------------------------------------------ profiling
    def profile(self, x, y, steps=20, print_fn=print):
        """Time each layer's forward and backward over ``steps`` training steps on (x, y)
        (one batch; the weights are restored afterwards) and print where the time goes.

        Returns a list of dicts, one per layer plus the loss and the optimizer update:
        name, forward_ms, backward_ms, gflops (useful FLOP/s where the layer can count
        its FLOPs) and share of the step."""
        self._require_compiled("profile")
        steps = check_int(steps, "steps", "profile", 1)
        x, y = self._check_pair(x, y, "profile")
        saved = self.get_weights()
        opt_state = self.optimizer.get_state() if getattr(self.optimizer, "built", False) else None
        try:
            return self._profile(x, y, steps, print_fn)
        finally:
            self.set_weights(saved)
            if opt_state is not None:
                self.optimizer.set_state(opt_state)

    def _profile(self, x, y, steps, print_fn):
        layers = self._profile_layers()
        fwd = {id(l): 0.0 for l in layers}
        bwd = {id(l): 0.0 for l in layers}
        loss_t = 0.0
        opt_t = 0.0
        clock = time.perf_counter
        self._train_step(x, y)  # warm-up: compiles what is not compiled yet
        flat = self._ensure_flat()
        for _ in range(steps):
            flat.grads.fill(0)
            h = x
            backs = []
            last = len(layers) - 1
            for i, layer in enumerate(layers):
                t = clock()
                if i == last and self._fuse:
                    h, back = layer.forward(h, True, linear_output=True)
                else:
                    h, back = layer.forward(h, True)
                fwd[id(layer)] += clock() - t
                backs.append((layer, back))
            t = clock()
            if self._fuse:
                _, dy, _ = self.loss.value_and_grad_from_logits(y, h)
            else:
                _, dy = self.loss.value_and_grad(y, h)
            loss_t += clock() - t
            for i in range(last, -1, -1):
                layer, back = backs[i]
                t = clock()
                if i == 0 and layer._skips_input_grad:
                    back(dy, need_dx=False)
                else:
                    dy = back(dy)
                bwd[id(layer)] += clock() - t
            t = clock()
            if flat.ranges:
                self.optimizer.update(flat.params, flat.grads, flat.ranges)
            opt_t += clock() - t
        rows = []
        shape = x.shape[1:]
        for layer in layers:
            flops = layer.flops(shape) if hasattr(layer, "flops") else None
            shape = layer.output_shape or shape
            f_ms, b_ms = fwd[id(layer)] / steps * 1e3, bwd[id(layer)] / steps * 1e3
            gflops = None
            if flops:
                gflops = 3 * flops * x.shape[0] / ((f_ms + b_ms) * 1e-3) / 1e9 if f_ms + b_ms > 0 else None
            rows.append({"name": f"{layer.name} ({type(layer).__name__})", "forward_ms": f_ms, "backward_ms": b_ms,
                         "gflops": gflops})
        rows.append({"name": f"loss ({type(self.loss).__name__})", "forward_ms": loss_t / steps * 1e3,
                     "backward_ms": 0.0, "gflops": None})
        rows.append({"name": f"update ({type(self.optimizer).__name__})", "forward_ms": 0.0,
                     "backward_ms": opt_t / steps * 1e3, "gflops": None})
        total = sum(r["forward_ms"] + r["backward_ms"] for r in rows)
        for r in rows:
            r["share"] = (r["forward_ms"] + r["backward_ms"]) / total if total else 0.0
        width = max(len(r["name"]) for r in rows)
        lines = [f"Profile of {self.name}: batch {x.shape[0]}, {steps} steps, {total:.3f} ms per step",
                 f"{'layer'.ljust(width)}  forward ms  backward ms  GFLOP/s  share"]
        for r in rows:
            g = f"{r['gflops']:7.1f}" if r["gflops"] else "      -"
            lines.append(f"{r['name'].ljust(width)}  {r['forward_ms']:10.3f}  {r['backward_ms']:11.3f}  {g}  {r['share']:5.1%}")
        print_fn("\n".join(lines))
        return rows

    def _profile_layers(self):
        raise NotImplementedError(f"{type(self).__name__} cannot be profiled yet")

    # ------------------------------------------------------------------ files
    def save_weights(self, path):
        """Write the weights (safetensors layout, checksummed, replaced atomically)."""
        from .. import io

        io.save_weights(self, path)

    def load_weights(self, path):
        """Load weights written by ``save_weights`` into this (built) model."""
        from .. import io

        if not self._is_built():
            raise RuntimeError(f"{self.name}.load_weights: build the model first (give it an Input or call build)")
        io.load_weights(self, path)

    def save(self, path, include_optimizer=True):
        """Write the whole model to one file: architecture, compile configuration, weights
        and state, and (``include_optimizer``) the optimizer's state; ``nj.load_model(path)``
        rebuilds it.  The file is replaced atomically (see ``nnjit.models.saving``)."""
        from . import saving

        saving.save_model(self, path, include_optimizer=include_optimizer)

    # ------------------------------------------------------------------ summary
    def summary(self, print_fn=print):
        """Print a table of layers, output shapes and parameter counts."""
        rows = [(f"{layer.name} ({type(layer).__name__})",
                 shape_str((None,) + tuple(layer.output_shape)) if layer.output_shape is not None else "?",
                 str(layer.count_params())) for layer in self._summary_layers()]
        headers = ("Layer (type)", "Output shape", "Params")
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
        line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
        out = [f'Model: "{self.name}"', "=" * len(line), line, "-" * len(line)]
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        trainable = sum(l.count_params() for l in self.layers if l.trainable)
        total = self.count_params()
        state = sum(a.size for l in self.layers for a in l.state.values())
        out += ["=" * len(line), f"Total params: {total + state}", f"Trainable params: {trainable}",
                f"Non-trainable params: {total - trainable + state}"]
        print_fn("\n".join(out))

    def _summary_layers(self):
        return self.layers


def _format_logs(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class _Bar:
    """A per-epoch progress bar (tqdm: a text bar in terminals, a widget in notebooks).
    The postfix is refreshed at most ten times a second so that a step stays cheap."""

    def __init__(self, steps, epoch, epochs):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="step", leave=True,
                        dynamic_ncols=True, mininterval=0.1)
        self.next_refresh = 0.0

    def step(self, loss, metrics):
        self.bar.update(1)
        now = time.monotonic()
        if now >= self.next_refresh:
            self.next_refresh = now + 0.1
            post = {"loss": f"{loss:.4f}"}
            for m in metrics:
                post[m.name] = f"{m.result():.4f}"
            self.bar.set_postfix(post, refresh=False)

    def finish(self, logs, samples_per_s):
        post = {k: f"{v:.4f}" for k, v in logs.items()}
        post["samples/s"] = f"{samples_per_s:,.0f}"
        self.bar.set_postfix(post, refresh=True)
        self.bar.close()

    def close(self):
        self.bar.close()


def _progress(verbose, steps, epoch, epochs):
    return _Bar(steps, epoch, epochs) if verbose == 1 else None
