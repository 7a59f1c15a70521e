"""Callbacks: hooks into the training loop.

A callback sees the model (``self.model``) and the logs dict of each epoch and batch;
setting ``model.stop_training = True`` ends ``fit`` after the current epoch.  The epoch
logs hold "loss", the compiled metrics and, with validation data, the same keys prefixed
with "val_".

>>> import nnjit as nj
>>> callbacks = [nj.callbacks.EarlyStopping(patience=3, restore_best_weights=True),
...              nj.callbacks.ReduceLROnPlateau(factor=0.5, patience=2),
...              nj.callbacks.CSVLogger("training.csv")]
>>> # model.fit(x, y, validation_split=0.2, epochs=100, callbacks=callbacks)

Callbacks that watch a value (``monitor``) take ``mode``: "min" (lower is better),
"max", or "auto": "max" for names containing accuracy ("acc"), precision, recall, f1 or
auc, "min" for everything else (losses, mae).  A monitored key missing from the logs is
an error that names the keys there are.
"""
from __future__ import annotations

import csv
import inspect
import math
import numbers
import os

import numpy as np


class Callback:
    """Base class: override any of the hooks below.

    ``self.model`` is the model being trained and ``self.params`` a dict with "epochs",
    "steps" (batches per epoch, None for an iterable of batches) and "verbose".  Epochs
    and batches are counted from 0.

    >>> class PrintLoss(Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         print(epoch, logs["loss"])
    """

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
    """Stops training when the loss becomes NaN or infinite (``fit`` then ends quietly
    instead of raising, keeping the weights from before the failing step)."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.model.stop_training = True


# --------------------------------------------------------------------------------------
# Argument checks and the monitored value
# --------------------------------------------------------------------------------------

_HIGHER_IS_BETTER = ("acc", "precision", "recall", "f1", "auc")


def _check_monitor(value, owner):
    if not isinstance(value, str) or not value:
        raise TypeError(f"{owner}: expected a log key such as 'val_loss' for monitor. Received: monitor={value!r}")
    return value


def _check_mode(mode, monitor, owner):
    """'min' or 'max' for ``mode`` ("auto" decided from the name of ``monitor``)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: expected mode 'auto', 'min' or 'max'. Received: mode={mode!r}")
    if mode != "auto":
        return mode
    name = monitor.lower()
    if name.startswith("val_"):
        name = name[4:]
    return "max" if any(part in name for part in _HIGHER_IS_BETTER) else "min"


def _check_int(value, argument, owner, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: expected an integer >= {minimum} for {argument}. Received: {argument}={value!r}")
    if value < minimum:
        raise ValueError(f"{owner}: expected an integer >= {minimum} for {argument}. Received: {argument}={value!r}")
    return int(value)


def _check_float(value, argument, owner, expected, ok):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: expected {expected} for {argument}. Received: {argument}={value!r}")
    value = float(value)
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{owner}: expected {expected} for {argument}. Received: {argument}={value!r}")
    return value


def _check_bool(value, argument, owner):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: expected True or False for {argument}. Received: {argument}={value!r}")
    return bool(value)


def _check_verbose(value, owner):
    if isinstance(value, bool) or value not in (0, 1):
        raise ValueError(f"{owner}: expected verbose 0 or 1. Received: verbose={value!r}")
    return int(value)


def _check_path(value, argument, owner):
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise TypeError(f"{owner}: expected a file path (str or os.PathLike) for {argument}. "
                        f"Received: {argument}={value!r}")
    return os.fspath(value)


def _monitored(logs, monitor, epoch, owner) -> float:
    """The value of ``monitor`` in the epoch logs, or an error naming the keys there are."""
    logs = logs or {}
    if monitor not in logs:
        hint = ""
        if monitor.startswith("val_") and not any(k.startswith("val_") for k in logs):
            hint = " (pass validation_data or validation_split to fit for val_ keys)"
        raise ValueError(f"{owner}: monitor={monitor!r} is not in the logs of epoch {epoch + 1}; "
                         f"available keys: {sorted(logs)}{hint}")
    return float(logs[monitor])


class _Monitor:
    """Improvement test shared by the callbacks that watch a value."""

    def __init__(self, mode, min_delta):
        self.mode = mode
        self.min_delta = min_delta

    def initial(self):
        return math.inf if self.mode == "min" else -math.inf

    def improved(self, current, reference) -> bool:
        """True when ``current`` beats ``reference`` by more than ``min_delta`` (never for NaN)."""
        if self.mode == "min":
            return current + self.min_delta < reference
        return current - self.min_delta > reference


# --------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------

class EarlyStopping(Callback):
    """Stops training when the monitored value has stopped improving.

    Each epoch whose value beats the best so far by more than ``min_delta`` resets the
    count; training stops at the end of the epoch that makes ``patience`` epochs in a row
    without improvement (``patience=0``: the first one), never after the first epoch.

    Args:
        monitor: the log key to watch, e.g. "val_loss" or "val_accuracy".
        patience: epochs without improvement tolerated before stopping.
        restore_best_weights: at the end of training, set the weights of the best epoch
            (as Keras 3 does, also when training ran to its last epoch).
        min_delta: smallest change that counts as an improvement (non-negative).
        mode: "auto", "min" or "max" (see the module docstring).
        baseline: a value to reach; an epoch that improves on the best but not on the
            baseline does not reset the count (as Keras).
        verbose: 1 prints when training stops and when weights are restored.

    After training: ``stopped_epoch`` (0-based, 0 when it did not stop early),
    ``best``, ``best_epoch``.

    >>> import nnjit as nj
    >>> stop = nj.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    """

    def __init__(self, monitor="val_loss", patience=0, restore_best_weights=False, min_delta=0, mode="auto",
                 baseline=None, verbose=0):
        super().__init__()
        owner = "EarlyStopping"
        self.monitor = _check_monitor(monitor, owner)
        self.patience = _check_int(patience, "patience", owner)
        self.restore_best_weights = _check_bool(restore_best_weights, "restore_best_weights", owner)
        self.min_delta = _check_float(min_delta, "min_delta", owner, "a non-negative float", lambda v: v >= 0)
        self.mode = _check_mode(mode, self.monitor, owner)
        self.baseline = None if baseline is None else _check_float(
            baseline, "baseline", owner, "None or a finite float", lambda v: True)
        self.verbose = _check_verbose(verbose, owner)
        self._monitor = _Monitor(self.mode, self.min_delta)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = self._monitor.initial()
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, epoch, "EarlyStopping")
        if self.restore_best_weights and self.best_weights is None:
            # The first epoch is the best so far even when its value is NaN.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._monitor.improved(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._monitor.improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Saves the model (or its weights) at the end of every epoch, or only when the
    monitored value improves.

    ``filepath`` may hold format fields filled from ``epoch`` (1-based, as Keras) and
    the epoch logs, e.g. "ckpt-{epoch:02d}-{val_loss:.3f}.nnjit"; without fields each save
    replaces the last one.  A missing folder is created.  ``model.save(path)`` writes the
    whole model when the model has it and ``save_weights_only`` is False, otherwise
    ``model.save_weights(path)``; either replaces the file atomically.

    Args:
        filepath: where to save (str or os.PathLike), optionally with format fields.
        monitor: the log key compared across epochs when ``save_best_only``.
        save_best_only: save only when ``monitor`` improves on the best value so far.
        save_weights_only: write weights only (load them with ``model.load_weights``).
        mode: "auto", "min" or "max" (see the module docstring).
        verbose: 1 prints a line per save.

    After training: ``best`` (the best monitored value) and ``last_saved`` (the path of
    the last file written, or None).

    >>> import nnjit as nj
    >>> ckpt = nj.callbacks.ModelCheckpoint("best.weights", monitor="val_accuracy",
    ...                                     save_best_only=True, save_weights_only=True)
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, save_weights_only=False, mode="auto",
                 verbose=0):
        super().__init__()
        owner = "ModelCheckpoint"
        self.filepath = _check_path(filepath, "filepath", owner)
        self.monitor = _check_monitor(monitor, owner)
        self.save_best_only = _check_bool(save_best_only, "save_best_only", owner)
        self.save_weights_only = _check_bool(save_weights_only, "save_weights_only", owner)
        self.mode = _check_mode(mode, self.monitor, owner)
        self.verbose = _check_verbose(verbose, owner)
        try:  # a malformed pattern ("{epoch:02d" or "{}") fails now, not after the first epoch
            self.filepath.format(epoch=1, **{k: 0.0 for k in _field_names(self.filepath)})
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{owner}: cannot format filepath={self.filepath!r}: {exc}") from None
        self._monitor = _Monitor(self.mode, 0.0)
        self.best = self._monitor.initial()
        self.last_saved = None

    def on_train_begin(self, logs=None):
        self.best = self._monitor.initial()
        self.last_saved = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            current = _monitored(logs, self.monitor, epoch, "ModelCheckpoint")
            if not self._monitor.improved(current, self.best):
                if self.verbose:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            previous, self.best = self.best, current
            path = self._path(epoch, logs)
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {previous:.5f} to {current:.5f}, "
                      f"saving to {path}")
        else:
            path = self._path(epoch, logs)
            if self.verbose:
                print(f"Epoch {epoch + 1}: saving to {path}")
        self._save(path)

    def _path(self, epoch, logs):
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as exc:
            raise ValueError(f"ModelCheckpoint: filepath={self.filepath!r} names {exc.args[0]!r}, which is not in "
                             f"the logs of epoch {epoch + 1}; available keys: ['epoch'] + {sorted(logs)}") from None

    def _save(self, path):
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        # model.save may not exist on every model: checked when saving, not when built.
        if not self.save_weights_only and hasattr(self.model, "save"):
            self.model.save(path)
        else:
            self.model.save_weights(path)
        self.last_saved = path


def _field_names(pattern):
    """Top-level field names of a format string (other than ``epoch``)."""
    import string

    names = set()
    for _, field, _, _ in string.Formatter().parse(pattern):
        if field:
            name = field.split(".")[0].split("[")[0]
            if name and name != "epoch" and not name.isdigit():
                names.add(name)
    return names


def _optimizer_of(model, owner):
    opt = getattr(model, "optimizer", None)
    if opt is None or not hasattr(opt, "learning_rate"):
        raise ValueError(f"{owner}: the model has no optimizer with a learning_rate; compile it first")
    if not isinstance(opt.learning_rate, numbers.Real):
        raise ValueError(f"{owner}: the optimizer's learning_rate is a schedule "
                         f"({type(opt.learning_rate).__name__}); a callback cannot set it as well. "
                         f"Give the optimizer a float learning_rate, or drop the callback")
    return opt


class LearningRateScheduler(Callback):
    """Sets the optimizer's learning rate at the start of every epoch from
    ``schedule(epoch)`` or ``schedule(epoch, lr)`` (epoch from 0, ``lr`` the current
    rate), as Keras.  The rate of each epoch is added to its logs as "learning_rate".

    Args:
        schedule: a function of one or two arguments returning a positive float.
        verbose: 1 prints the rate at each change.

    >>> import nnjit as nj
    >>> halve_every_10 = nj.callbacks.LearningRateScheduler(lambda epoch, lr: lr / 2 if epoch and epoch % 10 == 0 else lr)
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        owner = "LearningRateScheduler"
        if not callable(schedule):
            raise TypeError(f"{owner}: expected a function of the epoch (and the rate) for schedule. "
                            f"Received: schedule={schedule!r}")
        self.schedule = schedule
        self.verbose = _check_verbose(verbose, owner)
        self._takes_lr = _accepts_two_arguments(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        opt = _optimizer_of(self.model, "LearningRateScheduler")
        lr = float(opt.learning_rate)
        new = self.schedule(epoch, lr) if self._takes_lr else self.schedule(epoch)
        if isinstance(new, bool) or not isinstance(new, (numbers.Real, np.floating, np.integer)) \
                or not (math.isfinite(float(new)) and float(new) > 0):
            raise ValueError(f"LearningRateScheduler: expected the schedule to return a positive finite float. "
                             f"Received: {new!r} at epoch {epoch}")
        new = float(new)
        opt.learning_rate = new
        if self.verbose and new != lr:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {new:g}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


def _accepts_two_arguments(fn) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: assume Keras's two-argument form
        return True
    positional = [p for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        return True
    return len(positional) >= 2


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by ``factor`` when the monitored value has stopped
    improving for ``patience`` epochs (as Keras).

    Args:
        monitor: the log key to watch.
        factor: the multiplier, in (0, 1).
        patience: epochs without improvement before a reduction.
        min_delta: smallest change that counts as an improvement (non-negative).
        cooldown: epochs after a reduction during which no waiting is counted.
        min_lr: the rate never goes below this (non-negative).
        mode: "auto", "min" or "max" (see the module docstring).
        verbose: 1 prints each reduction.

    The rate of each epoch is added to its logs as "learning_rate".

    >>> import nnjit as nj
    >>> plateau = nj.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3, min_lr=1e-5)
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4, cooldown=0, min_lr=0.0,
                 mode="auto", verbose=0):
        super().__init__()
        owner = "ReduceLROnPlateau"
        self.monitor = _check_monitor(monitor, owner)
        self.factor = _check_float(factor, "factor", owner, "a float in (0, 1)", lambda v: 0 < v < 1)
        self.patience = _check_int(patience, "patience", owner)
        self.min_delta = _check_float(min_delta, "min_delta", owner, "a non-negative float", lambda v: v >= 0)
        self.cooldown = _check_int(cooldown, "cooldown", owner)
        self.min_lr = _check_float(min_lr, "min_lr", owner, "a non-negative float", lambda v: v >= 0)
        self.mode = _check_mode(mode, self.monitor, owner)
        self.verbose = _check_verbose(verbose, owner)
        self._monitor = _Monitor(self.mode, self.min_delta)
        self._reset()

    def _reset(self):
        self.best = self._monitor.initial()
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self._reset()
        _optimizer_of(self.model, "ReduceLROnPlateau")

    def on_epoch_end(self, epoch, logs=None):
        opt = _optimizer_of(self.model, "ReduceLROnPlateau")
        current = _monitored(logs, self.monitor, epoch, "ReduceLROnPlateau")
        lr = float(opt.learning_rate)
        if logs is not None:
            logs["learning_rate"] = lr
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._monitor.improved(current, self.best):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and lr > self.min_lr:
                new = max(lr * self.factor, self.min_lr)
                if new > 0:
                    opt.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new:g}.")
                self.cooldown_counter = self.cooldown
                self.wait = 0


class CSVLogger(Callback):
    """Writes one CSV row per epoch: "epoch" (from 0, as Keras) then the epoch logs.

    The columns are those of the first epoch's logs in their order (those of the
    existing header when appending to a file that has one); a key missing in a later
    epoch is written as "NA".  The file is flushed after every epoch and closed at the
    end of training.

    Args:
        filename: the CSV file (str or os.PathLike).
        separator: the one-character field separator.
        append: add to an existing file instead of replacing it (no second header).

    >>> import nnjit as nj
    >>> logger = nj.callbacks.CSVLogger("training.csv")
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        owner = "CSVLogger"
        self.filename = _check_path(filename, "filename", owner)
        if not isinstance(separator, str) or len(separator) != 1 or separator in "\r\n\"":
            raise ValueError(f"{owner}: expected a single character (not a quote or newline) for separator. "
                             f"Received: separator={separator!r}")
        self.separator = separator
        self.append = _check_bool(append, "append", owner)
        self.keys = None
        self._file = None
        self._writer = None

    def on_train_begin(self, logs=None):
        self._close()
        self.keys = None
        header = None
        if self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0:
            with open(self.filename, newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            mode = "a"
        else:
            mode = "a" if self.append else "w"
        self._file = open(self.filename, mode, newline="")
        self._writer = csv.writer(self._file, delimiter=self.separator, lineterminator="\n")
        if header and header[0] == "epoch":
            self.keys = header[1:]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._writer is None:
            self.on_train_begin()
        if self.keys is None:
            self.keys = list(logs)
            self._writer.writerow(["epoch"] + self.keys)
        self._writer.writerow([epoch] + [_csv_value(logs[k]) if k in logs else "NA" for k in self.keys])
        self._file.flush()

    def on_train_end(self, logs=None):
        self._close()

    def _close(self):
        if self._file is not None:
            self._file.close()
        self._file = None
        self._writer = None


def _csv_value(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return v


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
