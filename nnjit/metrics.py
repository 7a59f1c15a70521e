"""Metrics: streaming objects that ``compile`` builds from names, and functions over
whole arrays (confusion matrix, ROC curve and its area, a classification report).

A metric accumulates over the batches of an epoch: ``reset()``, ``update(y_true,
y_pred)`` with targets as prepared by the loss (int64 labels for sparse losses) and
predictions after the final activation (logits when the loss has ``from_logits=True``),
then ``result()``.

>>> import numpy as np, nnjit as nj
>>> m = nj.metrics.Precision()
>>> m.update(np.array([0, 1, 1, 0]), np.array([[0.2], [0.9], [0.4], [0.7]]))
>>> m.result()   # one true positive, one false positive
0.5

Which decisions precision, recall, f1 and auc score:

- Binary outputs: a single output per sample (shape (N,) or (N, 1)), or any output
  trained with binary cross-entropy.  A sample is predicted positive when its probability
  exceeds ``threshold`` (0.5), its logit the matching log-odds; a target is positive when
  it exceeds 0.5.  With several sigmoid outputs every output counts as one yes/no
  decision, as in Keras.  The result is for the positive class.
- Class outputs: one row of scores per sample over C >= 2 classes, the prediction being
  the arg-max and the target an integer label or a one-hot row.  With C = 2 the result is
  for class 1, the positive class, as scikit-learn's default ``average="binary"`` for
  labels 0 and 1.  With C > 2 precision, recall and f1 are macro averages: the plain
  mean over the classes that occur among the targets or the predictions seen so far (as
  scikit-learn's ``average="macro"``), and auc is the macro average of the one-vs-rest
  ROC areas of the classes that have both positive and negative samples.

A ratio with a zero denominator (precision of a class never predicted) counts as 0, as
scikit-learn's ``zero_division`` default and Keras do.
"""
from __future__ import annotations

import numbers

import numpy as np


class Metric:
    """Base class of the streaming metrics: ``reset()``, ``update(y_true, y_pred)``,
    ``result() -> float``; ``name`` is the key in the logs of ``fit`` and ``evaluate``."""
    name = "metric"

    def reset(self):
        self.total = 0.0
        self.count = 0

    def __init__(self):
        self.reset()

    def update(self, y_true, y_pred):
        raise NotImplementedError

    def result(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


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
    """Mean of |y_pred - y_true| over every output element."""
    name = "mae"

    def update(self, y_true, y_pred):
        self.total += float(np.abs(y_pred.reshape(y_true.shape) - y_true).sum())
        self.count += y_true.size


# --------------------------------------------------------------------------------------
# Argument checks shared by the metrics and the functions
# --------------------------------------------------------------------------------------

def _check_bool(value, argument, owner):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: expected True or False for {argument}. Received: {argument}={value!r}")
    return bool(value)


def _check_threshold(value, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: expected a float in [0, 1] for threshold. Received: threshold={value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}: expected a float in [0, 1] for threshold. Received: threshold={value!r}")
    return value


def _check_binary_option(value, owner):
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: expected None, True or False for binary. Received: binary={value!r}")
    return None if value is None else bool(value)


def _numeric(a, argument, owner) -> np.ndarray:
    """``a`` as a real numeric array (bool counts as 0/1), refusing NaN and infinity."""
    if a is None or isinstance(a, (str, bytes, dict)):
        raise TypeError(f"{owner}: expected a numeric array for {argument}. Received: {argument}={a!r:.80}")
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged nested lists
        raise TypeError(f"{owner}: expected a numeric array for {argument}. Received: {argument}={a!r:.80}") from exc
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{owner}: expected a real numeric array for {argument}. "
                        f"Received: {argument} with dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{owner}: expected an array with a sample axis for {argument}. "
                         f"Received: a scalar {argument}={arr.item()!r}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            k = int(np.argmax(bad.reshape(-1)))
            raise ValueError(f"{owner}: expected finite values in {argument}. "
                             f"Received: {arr.reshape(-1)[k].item()!r} at index {_index(k, arr.shape)}")
    return arr


def _index(flat, shape):
    if len(shape) == 1:
        return str(flat)
    return str(tuple(int(i) for i in np.unravel_index(flat, shape)))


def _integer_labels(arr, argument, owner, upper=None) -> np.ndarray:
    """A 1-D numeric array as int64 class labels: integral values in [0, upper)."""
    if arr.dtype.kind == "f":
        frac = arr != np.round(arr)
        if frac.any():
            k = int(np.argmax(frac))
            raise ValueError(f"{owner}: expected integer class labels in {argument}. "
                             f"Received: {arr[k].item()!r} at index {k}")
    labels = arr.astype(np.int64)
    if labels.size:
        low = int(labels.min())
        if low < 0:
            k = int(np.argmax(labels < 0))
            raise ValueError(f"{owner}: expected non-negative class labels in {argument}. "
                             f"Received: {labels[k]} at index {k}")
        if upper is not None and int(labels.max()) >= upper:
            k = int(np.argmax(labels >= upper))
            raise ValueError(f"{owner}: expected class labels in [0, {upper}) in {argument}. "
                             f"Received: {labels[k]} at index {k}")
    return labels


def _true_labels(y_true, owner, argument="y_true"):
    """Integer labels from labels (N,) or (N, 1), or one-hot rows (N, C >= 2).

    Returns (labels, number of classes implied by the shape or None)."""
    arr = _numeric(y_true, argument, owner)
    if arr.ndim == 2 and arr.shape[1] >= 2:
        return arr.argmax(axis=1).astype(np.int64), arr.shape[1]
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{owner}: expected integer labels of shape (N,) or one-hot rows of shape (N, classes) "
                         f"for {argument}. Received: {argument} of shape {arr.shape}")
    return _integer_labels(arr, argument, owner), None


def _predicted_labels(y_pred, owner, argument="y_pred"):
    """Integer labels from labels (N,), a score matrix (N, C >= 2) (arg-max) or one
    probability column (N, 1) of floats (class 1 above 0.5).

    Returns (labels, number of classes implied by the shape or None)."""
    arr = _numeric(y_pred, argument, owner)
    if arr.ndim == 2 and arr.shape[1] >= 2:
        return arr.argmax(axis=1).astype(np.int64), arr.shape[1]
    if arr.ndim == 2 and arr.shape[1] == 1:
        if arr.dtype.kind == "f":
            return (arr.reshape(-1) > 0.5).astype(np.int64), 2
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{owner}: expected labels of shape (N,), scores of shape (N, classes) or one probability "
                         f"column (N, 1) for {argument}. Received: {argument} of shape {arr.shape}")
    return _integer_labels(arr, argument, owner), None


def _check_lengths(n_true, n_pred, owner, a="y_true", b="y_pred"):
    if n_true != n_pred:
        raise ValueError(f"{owner}: {a} and {b} must have the same number of samples. "
                         f"Received: {n_true} and {n_pred}")
    if n_true == 0:
        raise ValueError(f"{owner}: expected at least one sample. Received: empty {a} and {b}")


# --------------------------------------------------------------------------------------
# Streaming precision, recall, f1 and AUC
# --------------------------------------------------------------------------------------

def _logit(p: float) -> float:
    if p <= 0.0:
        return -np.inf
    if p >= 1.0:
        return np.inf
    return float(np.log(p / (1.0 - p)))


def _is_binary(y_pred, binary):
    if binary is not None:
        return binary
    return y_pred.ndim == 1 or y_pred.shape[-1] == 1


def _decisions(y_true, y_pred, binary, from_logits, threshold, owner):
    """(true labels, predicted labels, number of classes) of one batch, both int64."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 0:
        raise ValueError(f"{owner}: expected predictions with a sample axis. Received: a scalar y_pred")
    if _is_binary(y_pred, binary):
        if y_true.size != y_pred.size:
            raise ValueError(f"{owner}: expected one target per output for binary outputs. "
                             f"Received: y_true of shape {y_true.shape}, y_pred of shape {y_pred.shape}")
        cut = _logit(threshold) if from_logits else threshold
        pred = (y_pred.reshape(-1) > cut).astype(np.int64)
        true = (y_true.reshape(-1) > 0.5).astype(np.int64)
        return true, pred, 2
    c = y_pred.shape[-1]
    if c < 2:
        raise ValueError(f"{owner}: expected at least 2 class scores per sample with binary=False. "
                         f"Received: y_pred of shape {y_pred.shape}")
    scores = y_pred.reshape(-1, c)
    pred = scores.argmax(axis=1)
    if y_true.size == scores.shape[0]:
        true = y_true.reshape(-1)
        if true.dtype.kind not in "iu":
            true = _integer_labels(_numeric(true, "y_true", owner), "y_true", owner, c)
        elif true.size and (true.min() < 0 or true.max() >= c):
            true = _integer_labels(true, "y_true", owner, c)  # raises, naming the label
    elif y_true.size == scores.size:
        true = y_true.reshape(-1, c).argmax(axis=1)
    else:
        raise ValueError(f"{owner}: expected integer labels (one per row of scores) or one-hot targets. "
                         f"Received: y_true of shape {y_true.shape}, y_pred of shape {y_pred.shape}")
    return true.astype(np.int64, copy=False), pred, c


class _ConfusionCounts(Metric):
    """A confusion matrix accumulated over ``update`` calls; subclasses read a score off it."""

    def __init__(self, from_logits=False, binary=None, threshold=0.5):
        owner = type(self).__name__
        self.from_logits = _check_bool(from_logits, "from_logits", owner)
        self.binary = _check_binary_option(binary, owner)
        self.threshold = _check_threshold(threshold, owner)
        super().__init__()

    def reset(self):
        self.counts = None  # (C, C) int64, rows true class, columns predicted class

    def update(self, y_true, y_pred):
        true, pred, c = _decisions(y_true, y_pred, self.binary, self.from_logits, self.threshold,
                                   f"{type(self).__name__}.update")
        counts = np.bincount(true * c + pred, minlength=c * c).reshape(c, c)
        if self.counts is None:
            self.counts = counts
        elif self.counts.shape != counts.shape:
            raise ValueError(f"{type(self).__name__}.update: the number of classes changed from "
                             f"{self.counts.shape[0]} to {c} since the last reset()")
        else:
            self.counts += counts

    def result(self) -> float:
        if self.counts is None:
            return float("nan")
        per_class = self._per_class(*_class_counts(self.counts))
        if self.counts.shape[0] == 2:
            return float(per_class[1])
        present = (self.counts.sum(axis=0) + self.counts.sum(axis=1)) > 0
        return float(per_class[present].mean()) if present.any() else float("nan")

    def _per_class(self, tp, predicted, actual):
        raise NotImplementedError


def _class_counts(counts):
    """(true positives, predicted count, actual count) per class of a confusion matrix."""
    return np.diag(counts).astype(np.float64), counts.sum(axis=0).astype(np.float64), counts.sum(axis=1).astype(np.float64)


def _ratio(num, den):
    """num / den elementwise, 0 where den is 0."""
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


class Precision(_ConfusionCounts):
    """Precision, TP / (TP + FP): the fraction of positive predictions that are right.

    Args:
        from_logits: predictions are logits (the loss was built with ``from_logits=True``).
        binary: True scores every output as a yes/no decision against ``threshold``; False
            takes one class per row (arg-max); None decides from the shape (one output per
            sample: binary).  See the module docstring for the averaging.
        threshold: probability above which a binary output counts as positive.

    >>> import numpy as np, nnjit as nj
    >>> m = nj.metrics.Precision()
    >>> m.update(np.array([0, 1, 2, 2]), np.eye(3)[[0, 2, 2, 1]])
    >>> round(m.result(), 4)   # classes 0, 1, 2: 1, 0, 1/2
    0.5
    """
    name = "precision"

    def _per_class(self, tp, predicted, actual):
        return _ratio(tp, predicted)


class Recall(_ConfusionCounts):
    """Recall, TP / (TP + FN): the fraction of actual positives that are found.

    Arguments as ``Precision``.

    >>> import numpy as np, nnjit as nj
    >>> m = nj.metrics.Recall()
    >>> m.update(np.array([1, 1, 1, 0]), np.array([0.9, 0.8, 0.1, 0.7]))
    >>> round(m.result(), 4)
    0.6667
    """
    name = "recall"

    def _per_class(self, tp, predicted, actual):
        return _ratio(tp, actual)


class F1Score(_ConfusionCounts):
    """F1, the harmonic mean of precision and recall: 2 TP / (2 TP + FP + FN).

    Arguments as ``Precision``; with several classes the macro average of the per-class
    F1 scores (not the F1 of the averaged precision and recall), as scikit-learn.

    >>> import numpy as np, nnjit as nj
    >>> m = nj.metrics.F1Score()
    >>> m.update(np.array([1, 1, 1, 0]), np.array([0.9, 0.8, 0.1, 0.7]))
    >>> round(m.result(), 4)   # precision 2/3, recall 2/3
    0.6667
    """
    name = "f1"

    def _per_class(self, tp, predicted, actual):
        return _ratio(2.0 * tp, predicted + actual)


class AUC(Metric):
    """Area under the ROC curve, exact: scores and labels are kept over the ``update``
    calls since the last ``reset`` (memory grows with the samples seen).

    Binary outputs give the ROC area of the positive class; class scores (N, C) give,
    for C = 2, the area of class 1 and, for C > 2, the macro average of the one-vs-rest
    areas over the classes that have both positive and negative samples (classes
    without are skipped; nan when none qualifies).  Logits are ranked as they are for
    binary outputs (the sigmoid keeps the order and would round large ones to equal
    values); class logits go through a softmax first.

    Args:
        from_logits: predictions are logits.
        binary: as in ``Precision``.

    >>> import numpy as np, nnjit as nj
    >>> m = nj.metrics.AUC()
    >>> m.update(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    >>> m.result()
    0.75
    """
    name = "auc"

    def __init__(self, from_logits=False, binary=None):
        owner = type(self).__name__
        self.from_logits = _check_bool(from_logits, "from_logits", owner)
        self.binary = _check_binary_option(binary, owner)
        super().__init__()

    def reset(self):
        self._labels = []
        self._scores = []
        self._classes = None
        self._cached = None

    def update(self, y_true, y_pred):
        owner = f"{type(self).__name__}.update"
        y_true = np.asarray(y_true)
        y_pred = np.asarray(y_pred)
        if y_pred.ndim == 0:
            raise ValueError(f"{owner}: expected predictions with a sample axis. Received: a scalar y_pred")
        if _is_binary(y_pred, self.binary):
            if y_true.size != y_pred.size:
                raise ValueError(f"{owner}: expected one target per output for binary outputs. "
                                 f"Received: y_true of shape {y_true.shape}, y_pred of shape {y_pred.shape}")
            classes = 2
            labels = (y_true.reshape(-1) > 0.5).astype(np.int8)
            scores = np.array(y_pred.reshape(-1), copy=True)
        else:
            true, _, classes = _decisions(y_true, y_pred, False, self.from_logits, 0.5, owner)
            rows = y_pred.reshape(-1, classes).astype(np.float64)
            if classes == 2:
                # p1 ranks as z1 - z0 does (p1 = sigmoid(z1 - z0)), without rounding to 1.
                scores = rows[:, 1] - rows[:, 0] if self.from_logits else rows[:, 1].copy()
            else:
                scores = _softmax(rows) if self.from_logits else rows
            labels = true
        if self._classes is not None and classes != self._classes:
            raise ValueError(f"{owner}: the number of classes changed from {self._classes} to {classes} "
                             f"since the last reset()")
        self._classes = classes
        self._labels.append(labels)
        self._scores.append(scores)
        self._cached = None

    def result(self) -> float:
        if self._cached is not None:
            return self._cached
        if not self._labels:
            return float("nan")
        if len(self._labels) > 1:  # keep one array each so that repeated results stay cheap
            self._labels = [np.concatenate(self._labels)]
            self._scores = [np.concatenate(self._scores)]
        labels, scores = self._labels[0], self._scores[0]
        if scores.ndim == 1:
            value = _binary_auc(labels, scores) if 0 < labels.sum() < labels.size else float("nan")
        else:
            value = _ovr_auc(labels, scores, skip_incomplete=True, owner="AUC")
        self._cached = float(value)
        return self._cached


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


_NAMES = ("accuracy", "acc", "precision", "recall", "f1", "f1_score", "auc", "mae")


def get(identifier, loss=None, from_logits=False) -> Metric:
    """A metric from a name or a Metric instance (returned as is).

    Names: "accuracy" (or "acc"), "precision", "recall", "f1" (or "f1_score"), "auc",
    "mae".  "accuracy" follows the loss as in Keras: sparse labels, one-hot targets or
    binary outputs (threshold 0 on logits when the model outputs logits).  Precision,
    recall, f1 and auc treat every output as a binary decision when the loss is binary
    cross-entropy, and otherwise decide from the output shape (see the module docstring).

    Args:
        identifier: a name or a ``Metric``.
        loss: the compiled ``Loss`` object (or None).
        from_logits: whether the model's predictions are logits.

    >>> import nnjit as nj
    >>> nj.metrics.get("f1", nj.losses.get("binary_crossentropy")).name
    'f1'
    """
    if isinstance(identifier, Metric):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(f"compile: expected metric names or Metric objects in metrics. Received: {identifier!r}")
    key = identifier.lower()
    loss_name = type(loss).__name__ if loss is not None else ""
    binary = True if loss_name == "BinaryCrossentropy" else None
    if key in ("accuracy", "acc"):
        if loss_name == "SparseCategoricalCrossentropy":
            return SparseAccuracy()
        if loss_name == "BinaryCrossentropy":
            return BinaryAccuracy(0.0 if from_logits else 0.5)
        return CategoricalAccuracy()
    if key == "precision":
        return Precision(from_logits=bool(from_logits), binary=binary)
    if key == "recall":
        return Recall(from_logits=bool(from_logits), binary=binary)
    if key in ("f1", "f1_score"):
        return F1Score(from_logits=bool(from_logits), binary=binary)
    if key == "auc":
        return AUC(from_logits=bool(from_logits), binary=binary)
    if key == "mae":
        return MeanAbsoluteError()
    raise ValueError(f"compile: unknown metric, expected one of {list(_NAMES)}. Received: metrics entry {identifier!r}")


# --------------------------------------------------------------------------------------
# Functions over whole arrays
# --------------------------------------------------------------------------------------

def confusion_matrix(y_true, y_pred, num_classes=None) -> np.ndarray:
    """Counts of (true class, predicted class) pairs: ``cm[i, j]`` is the number of
    samples of class i predicted as class j (rows true, columns predicted, as
    scikit-learn).

    Args:
        y_true: integer labels, shape (N,) or (N, 1), or one-hot rows (N, C).
        y_pred: integer labels (N,); class scores (N, C), whose arg-max is taken; or one
            float probability column (N, 1), class 1 where it exceeds 0.5.
        num_classes: size of the matrix; by default the largest label + 1 (at least C
            when scores or one-hot rows are given).

    Returns:
        An int64 array of shape (num_classes, num_classes).

    >>> import numpy as np, nnjit as nj
    >>> nj.metrics.confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1])
    array([[1, 0, 0],
           [0, 0, 1],
           [0, 1, 1]])
    """
    owner = "confusion_matrix"
    true, c_true = _true_labels(y_true, owner)
    pred, c_pred = _predicted_labels(y_pred, owner)
    _check_lengths(true.size, pred.size, owner)
    implied = max(int(true.max()) + 1, int(pred.max()) + 1, c_true or 0, c_pred or 0)
    if num_classes is None:
        c = implied
    else:
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
            raise TypeError(f"{owner}: expected a positive integer for num_classes. Received: num_classes={num_classes!r}")
        c = int(num_classes)
        if c < 1:
            raise ValueError(f"{owner}: expected a positive integer for num_classes. Received: num_classes={c}")
        for labels, argument in ((true, "y_true"), (pred, "y_pred")):
            _integer_labels(labels, argument, owner, c)
        if (c_true or 0) > c or (c_pred or 0) > c:
            raise ValueError(f"{owner}: num_classes={c} is smaller than the {max(c_true or 0, c_pred or 0)} "
                             f"columns of the scores or one-hot rows")
    return np.bincount(true * c + pred, minlength=c * c).reshape(c, c)


def _binary_labels(y_true, owner) -> np.ndarray:
    arr = _numeric(y_true, "y_true", owner)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{owner}: expected binary labels of shape (N,) for y_true. Received: shape {arr.shape}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"{owner}: expected binary labels 0 and 1 in y_true (1 is the positive class). "
                         f"Received: {arr[k].item()!r} at index {k}")
    return arr.astype(np.int64)


def _binary_scores(scores, owner, argument="scores") -> np.ndarray:
    arr = _numeric(scores, argument, owner)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{owner}: expected one score per sample, shape (N,), for {argument}. "
                         f"Received: shape {arr.shape}")
    return arr.astype(np.float64)


def _curve_points(labels, scores):
    """Cumulative (false positives, true positives, threshold) at each distinct score,
    from the highest down: a threshold t predicts positive where score >= t."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    s = scores[order]
    t = labels[order]
    # The last index of each run of equal scores: tied samples enter the curve together.
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(t)[last]
    fps = (last + 1) - tps
    return fps, tps, s[last]


def roc_curve(y_true, scores, drop_intermediate=True):
    """The receiver operating characteristic of binary scores.

    A threshold t predicts positive every sample with score >= t; the curve runs over the
    distinct scores from the highest down, preceded by the point (0, 0) at threshold
    ``inf``.  Samples with equal scores enter together (one point per distinct score).

    Args:
        y_true: labels 0 and 1 (1 is the positive class), shape (N,); both must occur.
        scores: one score per sample, shape (N,) or (N, 1); higher means more positive.
        drop_intermediate: leave out points on a straight segment between their
            neighbours (the area and the drawn curve stay the same), as scikit-learn's
            default.

    Returns:
        (fpr, tpr, thresholds): false and true positive rates, ascending, and the
        decreasing thresholds, the first being ``np.inf``.

    >>> import numpy as np, nnjit as nj
    >>> fpr, tpr, thr = nj.metrics.roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> fpr, tpr
    (array([0. , 0. , 0.5, 0.5, 1. ]), array([0. , 0.5, 0.5, 1. , 1. ]))
    >>> thr
    array([ inf, 0.8 , 0.4 , 0.35, 0.1 ])
    """
    owner = "roc_curve"
    labels = _binary_labels(y_true, owner)
    values = _binary_scores(scores, owner)
    _check_lengths(labels.size, values.size, owner, "y_true", "scores")
    drop_intermediate = _check_bool(drop_intermediate, "drop_intermediate", owner)
    positives = int(labels.sum())
    if positives == 0 or positives == labels.size:
        only = 1 if positives else 0
        raise ValueError(f"{owner}: y_true holds only class {only} ({labels.size} samples); a ROC curve needs "
                         f"both positive (1) and negative (0) samples")
    fps, tps, thresholds = _curve_points(labels, values)
    if drop_intermediate and fps.size > 2:
        corner = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps, thresholds = fps[corner], tps[corner], thresholds[corner]
    fps = np.r_[0, fps]
    tps = np.r_[0, tps]
    thresholds = np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def _trapezoid(x, y) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2.0)


def _binary_auc(labels, scores) -> float:
    """ROC area of checked binary labels (both classes present) and 1-D scores."""
    fps, tps, _ = _curve_points(labels, np.asarray(scores, dtype=np.float64))
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return _trapezoid(fpr, tpr)


def _ovr_auc(labels, scores, skip_incomplete, owner) -> float:
    """Macro average of the one-vs-rest ROC areas of the columns of ``scores`` (N, C)."""
    areas = []
    incomplete = []
    for k in range(scores.shape[1]):
        positive = (labels == k).astype(np.int64)
        count = int(positive.sum())
        if count == 0 or count == positive.size:
            incomplete.append(k)
            continue
        areas.append(_binary_auc(positive, scores[:, k]))
    if incomplete and not skip_incomplete:
        raise ValueError(f"{owner}: the one-vs-rest ROC area of a class needs both samples of the class and samples "
                         f"of other classes; classes {incomplete} lack one or the other in y_true")
    return float(np.mean(areas)) if areas else float("nan")


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve (trapezoidal rule over ``roc_curve``).

    For binary scores it equals the probability that a random positive sample scores
    higher than a random negative one, ties counting one half (the Mann-Whitney U
    statistic divided by the number of positive-negative pairs).

    Args:
        y_true: labels 0 and 1 for binary scores; integer labels in [0, C) for class
            scores.
        scores: one score per sample (N,) or (N, 1); or class scores (N, C): for C = 2 the
            area of class 1 (column 1), for C > 2 the macro average of the one-vs-rest
            areas, every class needing both samples of its own and of other classes.

    >>> import nnjit as nj
    >>> nj.metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    owner = "roc_auc"
    arr = _numeric(scores, "scores", owner)
    if arr.ndim == 2 and arr.shape[1] >= 2:
        if arr.shape[1] == 2:
            true, _ = _true_labels(y_true, owner)   # labels or one-hot rows
            return roc_auc(true, arr[:, 1])
        true, c_true = _true_labels(y_true, owner)
        if c_true is not None and c_true != arr.shape[1]:
            raise ValueError(f"{owner}: y_true has {c_true} one-hot columns, scores has {arr.shape[1]}")
        _check_lengths(true.size, arr.shape[0], owner, "y_true", "scores")
        _integer_labels(true, "y_true", owner, arr.shape[1])
        return _ovr_auc(true, arr.astype(np.float64), skip_incomplete=False, owner=owner)
    fpr, tpr, _ = roc_curve(y_true, arr, drop_intermediate=False)
    return _trapezoid(fpr, tpr)


def classification_report(y_true, y_pred, class_names=None, digits=2) -> str:
    """A text table of precision, recall, f1-score and support per class, then the
    accuracy and the macro and support-weighted averages (scikit-learn's layout).

    Rows cover the classes that occur in ``y_true`` or ``y_pred``; a ratio with a zero
    denominator shows as 0.

    Args:
        y_true: integer labels (N,) or one-hot rows (N, C).
        y_pred: integer labels (N,), class scores (N, C) or one probability column (N, 1)
            (see ``confusion_matrix``).
        class_names: names indexed by label (default: the labels themselves).
        digits: decimals of the ratios.

    >>> import nnjit as nj
    >>> print(nj.metrics.classification_report([0, 0, 1, 1], [0, 1, 1, 1]))
                  precision    recall  f1-score   support
    <BLANKLINE>
               0       1.00      0.50      0.67         2
               1       0.67      1.00      0.80         2
    <BLANKLINE>
        accuracy                           0.75         4
       macro avg       0.83      0.75      0.73         4
    weighted avg       0.83      0.75      0.73         4
    <BLANKLINE>
    """
    owner = "classification_report"
    if isinstance(digits, bool) or not isinstance(digits, numbers.Integral) or digits < 0:
        raise ValueError(f"{owner}: expected a non-negative integer for digits. Received: digits={digits!r}")
    digits = int(digits)
    true, _ = _true_labels(y_true, owner)
    pred, _ = _predicted_labels(y_pred, owner)
    _check_lengths(true.size, pred.size, owner)
    labels = np.union1d(true, pred)
    if class_names is not None:
        if isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__len__"):
            raise TypeError(f"{owner}: expected a list of names for class_names. Received: class_names={class_names!r:.80}")
        if len(class_names) <= int(labels[-1]):
            raise ValueError(f"{owner}: class_names has {len(class_names)} names but label {int(labels[-1])} occurs; "
                             f"expected a name for every label")
    counts = confusion_matrix(true, pred, num_classes=int(labels[-1]) + 1)
    tp, predicted, actual = _class_counts(counts)
    precision = _ratio(tp, predicted)[labels]
    recall = _ratio(tp, actual)[labels]
    f1 = _ratio(2.0 * tp, predicted + actual)[labels]
    support = actual[labels].astype(np.int64)
    names = [str(class_names[k]) if class_names is not None else str(k) for k in labels]

    headers = ["precision", "recall", "f1-score", "support"]
    width = max(max(len(n) for n in names), len("weighted avg"), digits)
    report = ("{:>{width}s} " + " {:>9}" * len(headers)).format("", *headers, width=width) + "\n\n"
    row = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    for i, n in enumerate(names):
        report += row.format(n, precision[i], recall[i], f1[i], int(support[i]), width=width, digits=digits)
    report += "\n"
    total = int(support.sum())
    accuracy = float(tp.sum()) / total
    report += ("{:>{width}s} " + " {:>9}" * 2 + " {:>9.{digits}f} {:>9}\n").format(
        "accuracy", "", "", accuracy, total, width=width, digits=digits)
    report += row.format("macro avg", precision.mean(), recall.mean(), f1.mean(), total, width=width, digits=digits)
    weighted = [float(np.average(v, weights=support)) for v in (precision, recall, f1)]
    report += row.format("weighted avg", *weighted, total, width=width, digits=digits)
    return report
