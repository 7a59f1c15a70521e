"""Metrics: streaming objects that ``compile`` builds from names.

A metric accumulates over the batches of an epoch: ``reset()``, ``update(y_true,
y_pred)`` with targets as prepared by the loss (int64 labels for sparse losses) and
predictions after the final activation, then ``result()``.
"""
from __future__ import annotations

import numpy as np


class Metric:
    name = "metric"

    def reset(self):
        self.total = 0.0
        self.count = 0

    def __init__(self):
        self.reset()

    def result(self) -> float:
        return self.total / self.count if self.count else float("nan")


class SparseAccuracy(Metric):
    """Fraction of samples whose arg-max prediction equals the integer label."""
    name = "accuracy"

    def update(self, y_true, y_pred):
        pred = y_pred.reshape(-1, y_pred.shape[-1]).argmax(axis=1)
        self.total += float(np.count_nonzero(pred == y_true))
        self.count += y_true.shape[0]


class CategoricalAccuracy(Metric):
    """Fraction of samples whose arg-max prediction equals the arg-max of the target."""
    name = "accuracy"

    def update(self, y_true, y_pred):
        c = y_pred.shape[-1]
        pred = y_pred.reshape(-1, c).argmax(axis=1)
        true = y_true.reshape(-1, c).argmax(axis=1)
        self.total += float(np.count_nonzero(pred == true))
        self.count += true.shape[0]


class BinaryAccuracy(Metric):
    """Fraction of outputs on the right side of ``threshold`` (0.5 on probabilities)."""
    name = "accuracy"

    def __init__(self, threshold=0.5):
        self.threshold = threshold
        super().__init__()

    def update(self, y_true, y_pred):
        pred = y_pred.reshape(y_true.shape) > self.threshold
        self.total += float(np.count_nonzero(pred == (y_true > 0.5)))
        self.count += y_true.size


class MeanAbsoluteError(Metric):
    name = "mae"

    def update(self, y_true, y_pred):
        self.total += float(np.abs(y_pred.reshape(y_true.shape) - y_true).sum())
        self.count += y_true.size


_NAMES = ("accuracy", "acc", "mae")


def get(identifier, loss=None, from_logits=False) -> Metric:
    """A metric from a name ("accuracy", "mae") or a Metric instance.

    "accuracy" follows the loss as in Keras: sparse labels, one-hot targets or
    binary outputs (threshold 0 on logits when the model outputs logits)."""
    if isinstance(identifier, Metric):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(f"compile: expected metric names or Metric objects in metrics. Received: {identifier!r}")
    key = identifier.lower()
    if key in ("accuracy", "acc"):
        loss_name = type(loss).__name__ if loss is not None else ""
        if loss_name == "SparseCategoricalCrossentropy":
            return SparseAccuracy()
        if loss_name == "BinaryCrossentropy":
            return BinaryAccuracy(0.0 if from_logits else 0.5)
        return CategoricalAccuracy()
    if key == "mae":
        return MeanAbsoluteError()
    raise ValueError(f"compile: unknown metric, expected one of {list(_NAMES)}. Received: metrics entry {identifier!r}")
