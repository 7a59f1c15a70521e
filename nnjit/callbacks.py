"""Callbacks: hooks into the training loop.

A callback sees the model (``self.model``) and the logs dict of each epoch and batch;
setting ``model.stop_training = True`` ends ``fit`` after the current epoch.
"""
from __future__ import annotations

import math


class Callback:
    """Base class: override any of the hooks below."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass


class History(Callback):
    """Records the logs of every epoch in ``history`` (dict of lists); returned by ``fit``."""

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class TerminateOnNaN(Callback):
    """Stops training when the loss becomes NaN or infinite."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.model.stop_training = True


class CallbackList:
    """Calls each hook on every callback, skipping the per-batch loop entirely when no
    callback overrides a per-batch hook (keeps a training step lean)."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for c in self.callbacks:
            if not isinstance(c, Callback):
                raise TypeError(f"fit: expected Callback instances in callbacks. Received: {c!r}")
            c.set_model(model)
            c.set_params(params)
        self.batch_hooks = [c for c in self.callbacks
                            if type(c).on_batch_begin is not Callback.on_batch_begin
                            or type(c).on_batch_end is not Callback.on_batch_end]

    def _call(self, hook, *args):
        for c in self.callbacks:
            getattr(c, hook)(*args)

    def on_train_begin(self, logs=None): self._call("on_train_begin", logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._call("on_epoch_end", epoch, logs)

    def on_batch_begin(self, batch, logs=None):
        for c in self.batch_hooks:
            c.on_batch_begin(batch, logs)

    def on_batch_end(self, batch, logs=None):
        for c in self.batch_hooks:
            c.on_batch_end(batch, logs)
