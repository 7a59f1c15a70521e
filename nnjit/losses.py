"""Losses, by class or by name, each computing its value and gradient in one kernel call.

>>> import numpy as np, nnjit as nj
>>> loss = nj.losses.get("sparse_categorical_crossentropy")
>>> loss(np.array([0, 2]), np.array([[0.8, 0.1, 0.1], [0.2, 0.2, 0.6]]))   # doctest: +ELLIPSIS
0.36...

How the model uses a loss (the training loop lives in ``nnjit.models``):

- ``prepare_targets(y, output_shape)`` checks and converts the targets once, before
  training: integer labels for sparse cross-entropy (int64, flattened to one label per
  row of the flattened output), the float type of the model for everything else.
- ``value_and_grad(y_true, y_pred)`` returns the mean loss and its gradient with respect
  to ``y_pred`` on every step.  It trusts targets that came from ``prepare_targets`` and
  does little more than reshape and call a kernel.
- ``fused_activation`` names the final activation ("softmax" or "sigmoid") that the loss
  can absorb.  When the model's last layer ends in exactly that activation, the model
  calls ``value_and_grad_from_logits(y_true, logits)`` with the pre-activation output:
  one numerically stable kernel computes the probabilities, the loss and the gradient
  with respect to the logits together.

Calling a loss, ``loss(y_true, y_pred)``, checks both arrays and returns a float, as in
Keras.  Every loss is the mean over the batch (and over all elements for the elementwise
losses and binary cross-entropy).
"""
from __future__ import annotations

import math

import numpy as np

from . import runtime
from .kernels import losses as _kernels

__all__ = [
    "Loss", "MeanSquaredError", "MeanAbsoluteError", "Huber", "BinaryCrossentropy",
    "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "get", "serialize", "deserialize",
    "EPSILON",
]

EPSILON = _kernels.EPSILON

# Relative cost per element of each kernel, in the "work" units of runtime.blocks_for
# (about one multiply-add).  Measured on the 2-core development machine: a scalar exp or
# log costs 3.5 ns and log1p 7 ns, so softmax cross-entropy (one exp per element plus
# three light passes) pays for a parallel launch from about 4,000 elements, the sigmoid
# form (exp + log1p) from about 1,000, and squared error from about 8,000.
_COST_SOFTMAX = 32
_COST_PROBS_DENSE = 32
_COST_PROBS_SPARSE = 8
_COST_SIGMOID = 128
_COST_BCE = 64
_COST_ELEMENTWISE = 16

_FLOAT_CHARS = "fd"  # float32, float64: the dtypes the kernels are compiled for


# --------------------------------------------------------------------------------------
# Per-step helpers: cheap, no validation (targets were checked by prepare_targets)
# --------------------------------------------------------------------------------------


def _as_rows(a):
    """A (rows, last axis) C-contiguous float32/float64 view of ``a`` (a copy if needed)."""
    if a.dtype.char not in _FLOAT_CHARS:
        a = a.astype(runtime.floatx_dtype())
    a2 = a.reshape(-1, a.shape[-1]) if a.ndim >= 2 else a.reshape(-1, 1)
    if not a2.flags.c_contiguous:
        a2 = np.ascontiguousarray(a2)
    return a2


def _like(t, z):
    """Targets ``t`` reshaped to ``z``'s 2-D shape and converted to its dtype."""
    t = t.reshape(z.shape)
    if t.dtype != z.dtype:
        t = t.astype(z.dtype)
    elif not t.flags.c_contiguous:
        t = np.ascontiguousarray(t)
    return t


def _labels(y):
    """Prepared integer labels as a flat C-contiguous int64 array."""
    y = y.reshape(-1)
    if y.dtype != np.int64:
        y = y.astype(np.int64)
    elif not y.flags.c_contiguous:
        y = np.ascontiguousarray(y)
    return y


# --------------------------------------------------------------------------------------
# Argument checking (prepare_targets and __call__)
# --------------------------------------------------------------------------------------


def _shape_str(shape) -> str:
    parts = ["N"] + ["None" if s is None else str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _index_str(flat_index: int, shape) -> str:
    if len(shape) == 1:
        return str(flat_index)
    return str(tuple(int(i) for i in np.unravel_index(flat_index, shape)))


def _value_str(a: np.ndarray, flat_index: int) -> str:
    return repr(a.reshape(-1)[flat_index].item())


def _shape_matches(actual, expected) -> bool:
    return len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected))


def _check_output_shape(output_shape, loss_name: str):
    try:
        shape = tuple(output_shape)
    except TypeError:
        raise TypeError(f"{loss_name}: expected output_shape to be a tuple of ints (without the batch axis). "
                        f"Received: output_shape={output_shape!r}") from None
    for s in shape:
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0):
            raise TypeError(f"{loss_name}: expected output_shape to be a tuple of ints (without the batch axis). "
                            f"Received: output_shape={output_shape!r}")
    return tuple(None if s is None else int(s) for s in shape)


def _as_numeric_array(y, argument: str, what: str, loss_name: str) -> np.ndarray:
    """``y`` as an ndarray of bool, integer or float dtype with at least one axis and one element."""
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{argument}: expected {what} for {loss_name} as an array. "
                         f"Received: {argument} that cannot be converted ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{argument}: expected {what} for {loss_name} as a numeric array. "
                        f"Received: an array of dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{argument}: expected an array of {what} with a batch axis for {loss_name}. "
                         f"Received: the scalar {arr.item()!r}")
    if arr.size == 0:
        raise ValueError(f"{argument}: expected a non-empty array of {what} for {loss_name}. "
                         f"Received: an empty array of shape {arr.shape}")
    return arr


def _first_true(mask: np.ndarray) -> int:
    return int(np.argmax(mask.reshape(-1)))


def _check_predictions(y_pred, argument: str, loss_name: str, needs_class_axis: bool) -> np.ndarray:
    arr = _as_numeric_array(y_pred, argument, "predictions", loss_name)
    if arr.dtype.char not in _FLOAT_CHARS:
        arr = arr.astype(runtime.floatx_dtype())
    if needs_class_axis and arr.ndim < 2:
        raise ValueError(f"{argument}: expected predictions with a class axis, shape (N, classes), for "
                         f"{loss_name}. Received: shape {arr.shape}")
    return arr


# --------------------------------------------------------------------------------------
# Loss classes
# --------------------------------------------------------------------------------------

_CLASSES: dict[str, type] = {}


class Loss:
    """Base class of the losses.

    A loss maps targets ``y_true`` and predictions ``y_pred`` (the model output, batch
    axis first) to the mean loss over the batch.  Subclasses implement
    ``value_and_grad(y_true, y_pred) -> (float, grad)``; losses that can absorb the final
    activation set ``fused_activation`` and implement ``value_and_grad_from_logits``.
    ``prepare_targets`` checks and converts the targets once, before training; the
    default accepts float targets of the output's shape.

    Subclasses register themselves by class name so that ``get`` can rebuild them from
    ``get_config()``; override ``get_config`` when the constructor takes arguments.
    """

    #: Name used in messages and by ``get``.
    name = "loss"
    #: Final activation this loss fuses with ("softmax", "sigmoid") or None.
    fused_activation = None
    # Lower bound and upper bound of valid dense targets (None: any finite value).
    _target_range: tuple | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        builtin = _CLASSES.get(cls.__name__)
        if builtin is not None and builtin.__module__ == __name__ and cls.__module__ != __name__:
            raise ValueError(f"Loss subclass {cls.__qualname__!r} would replace the built-in loss "
                             f"{cls.__name__!r}; choose another class name")
        if not cls.__name__.startswith("_"):
            _CLASSES[cls.__name__] = cls

    # ---- public API
    def __call__(self, y_true, y_pred) -> float:
        """The mean loss of predictions ``y_pred`` against targets ``y_true``, checked."""
        y_pred = _check_predictions(y_pred, "y_pred", self.name, self._needs_class_axis())
        true_shape = np.shape(y_true)
        y_true = self.prepare_targets(y_true, y_pred.shape[1:], argument="y_true")
        if true_shape[0] != y_pred.shape[0]:
            raise ValueError(f"{self.name}: y_true and y_pred must hold the same number of samples. "
                             f"Received: y_true with shape {true_shape}, y_pred with shape {y_pred.shape}")
        return float(self.value_and_grad(y_true, y_pred)[0])

    def value_and_grad(self, y_true, y_pred):
        """(mean loss, gradient of the mean loss with respect to ``y_pred``).

        ``y_true`` as returned by ``prepare_targets``; the gradient has ``y_pred``'s shape
        and dtype.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement value_and_grad")

    def value_and_grad_from_logits(self, y_true, logits):
        """(mean loss, gradient with respect to the logits, probabilities) for losses that
        fuse their final activation (see ``fused_activation``)."""
        raise NotImplementedError(f"{self.name} does not fuse an activation: fused_activation is None")

    def prepare_targets(self, y, output_shape, argument="y") -> np.ndarray:
        """Check targets ``y`` against the model's per-sample output shape and convert them.

        Args:
            y: array-like of shape (N,) + output_shape; (N,) is accepted for an output of
                shape (1,).
            output_shape: the model's output shape without the batch axis.
            argument: the name used for ``y`` in error messages.

        Returns:
            A C-contiguous array of the default float type (``nnjit.floatx()``), shape
            (N,) + output_shape.

        Raises ValueError (TypeError for a non-numeric array) naming ``argument`` and the
        offending value for a wrong shape, NaN or infinity, or a value outside the
        loss's range.
        """
        output_shape = _check_output_shape(output_shape, self.name)
        arr = _as_numeric_array(y, argument, "targets", self.name)
        if _shape_matches(arr.shape[1:], output_shape):
            shape = arr.shape
        elif arr.ndim == 1 and output_shape == (1,):
            shape = (arr.shape[0], 1)
        else:
            raise ValueError(self._shape_message(arr, output_shape, argument))
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, by value
            out = np.ascontiguousarray(arr, dtype=runtime.floatx_dtype()).reshape(shape)
        finite = np.isfinite(out)
        if not finite.all():
            k = _first_true(~finite)
            raise ValueError(f"{argument}: expected finite target values for {self.name}. "
                             f"Received: {_value_str(arr, k)} at index {_index_str(k, arr.shape)}"
                             + ("" if not np.isfinite(arr.reshape(-1)[k])
                                else f" (too large for {out.dtype.name})"))
        if self._target_range is not None:
            lo, hi = self._target_range
            bad = (out < lo) | (out > hi)
            if bad.any():
                k = _first_true(bad)
                raise ValueError(f"{argument}: expected target values in [{lo:g}, {hi:g}] for {self.name}. "
                                 f"Received: {_value_str(arr, k)} at index {_index_str(k, arr.shape)}")
        return out

    def get_config(self) -> dict:
        """A JSON-friendly dict: "class_name" and the constructor arguments."""
        return {"class_name": type(self).__name__}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild a loss from ``get_config()``'s dict (the "class_name" key is ignored)."""
        kwargs = {k: v for k, v in dict(config).items() if k not in ("class_name", "name")}
        return cls(**kwargs)

    # ---- helpers
    def _needs_class_axis(self) -> bool:
        return False

    def _shape_message(self, arr, output_shape, argument) -> str:
        return (f"{argument}: expected targets of shape {_shape_str(output_shape)} to match the model output "
                f"for {self.name}. Received: shape {arr.shape}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "class_name")
        return f"{type(self).__name__}({args})"


def _check_bool(value, argument: str, owner: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: expected True or False for {argument}. Received: {argument}={value!r}")
    return bool(value)


class MeanSquaredError(Loss):
    """Mean squared error, mean((y_pred - y_true)^2) over all elements.

    Targets: floats of the output's shape.  Gradient: 2 (y_pred - y_true) / n, n the
    number of elements.  Name: "mse" (or "mean_squared_error").
    """

    name = "mse"

    def value_and_grad(self, y_true, y_pred):
        z = _as_rows(y_pred)
        loss, grad = _kernels.mse(z, _like(y_true, z), runtime.blocks_for(z.size * _COST_ELEMENTWISE))
        return loss, grad.reshape(y_pred.shape)


class MeanAbsoluteError(Loss):
    """Mean absolute error, mean(|y_pred - y_true|) over all elements.

    Gradient: sign(y_pred - y_true) / n, zero where they are equal.  Name: "mae" (or
    "mean_absolute_error").
    """

    name = "mae"

    def value_and_grad(self, y_true, y_pred):
        z = _as_rows(y_pred)
        loss, grad = _kernels.mae(z, _like(y_true, z), runtime.blocks_for(z.size * _COST_ELEMENTWISE))
        return loss, grad.reshape(y_pred.shape)


class Huber(Loss):
    """Huber loss over all elements: quadratic for small errors, linear for large ones.

    For d = y_pred - y_true: 0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta);
    the mean over all elements.  Name: "huber".

    Args:
        delta: positive float, where the loss turns from quadratic to linear.
    """

    name = "huber"

    def __init__(self, delta=1.0):
        if isinstance(delta, (bool, np.bool_)) or not isinstance(delta, (int, float, np.integer, np.floating)):
            raise TypeError(f"Huber: expected a positive number for delta. Received: delta={delta!r}")
        if not (math.isfinite(delta) and delta > 0):
            raise ValueError(f"Huber: expected a positive number for delta. Received: delta={delta!r}")
        self.delta = float(delta)

    def value_and_grad(self, y_true, y_pred):
        z = _as_rows(y_pred)
        loss, grad = _kernels.huber(z, _like(y_true, z), self.delta,
                                    runtime.blocks_for(z.size * _COST_ELEMENTWISE))
        return loss, grad.reshape(y_pred.shape)

    def get_config(self):
        return {"class_name": type(self).__name__, "delta": self.delta}


class BinaryCrossentropy(Loss):
    """Binary cross-entropy, the mean over all elements of
    -[t log p + (1 - t) log(1 - p)].

    Targets: values in [0, 1] of the output's shape ((N,) accepted for an output of
    shape (1,)).  With ``from_logits=False`` the predictions are probabilities, clipped
    to [1e-7, 1 - 1e-7] as in Keras; a final sigmoid is fused with the loss
    (``fused_activation == "sigmoid"``) into the stable form
    max(z, 0) - z t + log1p(exp(-|z|)) of the logits z.  With ``from_logits=True`` the
    predictions are logits and that stable form is always used.  Name:
    "binary_crossentropy".

    Args:
        from_logits: whether ``y_pred`` holds logits rather than probabilities.
    """

    name = "binary_crossentropy"
    _target_range = (0.0, 1.0)

    def __init__(self, from_logits=False):
        self.from_logits = _check_bool(from_logits, "from_logits", type(self).__name__)

    @property
    def fused_activation(self):
        return None if self.from_logits else "sigmoid"

    def value_and_grad(self, y_true, y_pred):
        z = _as_rows(y_pred)
        t = _like(y_true, z)
        if self.from_logits:
            loss, grad, _ = _kernels.sigmoid_binary_cross_entropy(z, t, runtime.blocks_for(z.size * _COST_SIGMOID))
        else:
            loss, grad = _kernels.binary_cross_entropy_probs(z, t, runtime.blocks_for(z.size * _COST_BCE))
        return loss, grad.reshape(y_pred.shape)

    def value_and_grad_from_logits(self, y_true, logits):
        """(mean loss, dloss/dlogits, sigmoid(logits)) in one stable kernel."""
        z = _as_rows(logits)
        loss, grad, probs = _kernels.sigmoid_binary_cross_entropy(
            z, _like(y_true, z), runtime.blocks_for(z.size * _COST_SIGMOID))
        return loss, grad.reshape(logits.shape), probs.reshape(logits.shape)

    def get_config(self):
        return {"class_name": type(self).__name__, "from_logits": self.from_logits}


class _SoftmaxCrossentropy(Loss):
    """What the two categorical cross-entropies share: ``from_logits``, fusion with a
    final softmax, a class axis last."""

    def __init__(self, from_logits=False):
        self.from_logits = _check_bool(from_logits, "from_logits", type(self).__name__)

    @property
    def fused_activation(self):
        return None if self.from_logits else "softmax"

    def get_config(self):
        return {"class_name": type(self).__name__, "from_logits": self.from_logits}

    def _needs_class_axis(self):
        return True


class CategoricalCrossentropy(_SoftmaxCrossentropy):
    """Categorical cross-entropy against one-hot or soft targets, -sum_j t_j log p_j,
    averaged over the samples (and time steps for outputs (N, T, classes)).

    Targets: values in [0, 1] of the output's shape; use
    ``SparseCategoricalCrossentropy`` for integer labels.  With ``from_logits=False`` the
    predictions are probabilities: each row is divided by its sum and clipped to
    [1e-7, 1 - 1e-7], as in Keras; a final softmax is fused with the loss
    (``fused_activation == "softmax"``) into one stable log-sum-exp kernel.  With
    ``from_logits=True`` the predictions are logits.  The class axis is the last one.
    Name: "categorical_crossentropy".

    Args:
        from_logits: whether ``y_pred`` holds logits rather than probabilities.
    """

    name = "categorical_crossentropy"
    _target_range = (0.0, 1.0)

    def value_and_grad(self, y_true, y_pred):
        if self.from_logits:
            loss, grad, _ = self.value_and_grad_from_logits(y_true, y_pred)
            return loss, grad
        z = _as_rows(y_pred)
        loss, grad = _kernels.categorical_cross_entropy_probs(
            z, _like(y_true, z), runtime.blocks_for(z.size * _COST_PROBS_DENSE))
        return loss, grad.reshape(y_pred.shape)

    def value_and_grad_from_logits(self, y_true, logits):
        """(mean loss, dloss/dlogits, softmax(logits)) in one stable kernel."""
        z = _as_rows(logits)
        loss, grad, probs = _kernels.softmax_cross_entropy_dense(
            z, _like(y_true, z), runtime.blocks_for(z.size * _COST_SOFTMAX))
        return loss, grad.reshape(logits.shape), probs.reshape(logits.shape)

    def _shape_message(self, arr, output_shape, argument):
        msg = super()._shape_message(arr, output_shape, argument)
        lead = tuple(output_shape[:-1])
        if _shape_matches(arr.shape[1:], lead) or _shape_matches(arr.shape[1:], lead + (1,)):
            msg += ("; these look like integer class labels: one-hot encode them or use "
                    "sparse_categorical_crossentropy")
        return msg


class SparseCategoricalCrossentropy(_SoftmaxCrossentropy):
    """Categorical cross-entropy against integer class labels, -log p[label], averaged
    over the samples (and time steps for outputs (N, T, classes)).

    Targets: integer labels in [0, classes), shape (N,) or (N, 1) for an output
    (N, classes), (N, T) for an output (N, T, classes); floats with integral values are
    accepted.  ``prepare_targets`` returns them as int64, flattened to one label per row
    of the output flattened to (-1, classes).  With ``from_logits=False`` the predictions
    are probabilities (normalized and clipped to [1e-7, 1 - 1e-7] as in Keras) and a
    final softmax is fused with the loss (``fused_activation == "softmax"``) into one
    stable log-sum-exp kernel; with ``from_logits=True`` they are logits.
    Name: "sparse_categorical_crossentropy".

    Args:
        from_logits: whether ``y_pred`` holds logits rather than probabilities.
    """

    name = "sparse_categorical_crossentropy"

    def value_and_grad(self, y_true, y_pred):
        if self.from_logits:
            loss, grad, _ = self.value_and_grad_from_logits(y_true, y_pred)
            return loss, grad
        z = _as_rows(y_pred)
        loss, grad = _kernels.sparse_categorical_cross_entropy_probs(
            z, _labels(y_true), runtime.blocks_for(z.size * _COST_PROBS_SPARSE))
        return loss, grad.reshape(y_pred.shape)

    def value_and_grad_from_logits(self, y_true, logits):
        """(mean loss, dloss/dlogits, softmax(logits)) in one stable kernel."""
        z = _as_rows(logits)
        loss, grad, probs = _kernels.softmax_cross_entropy_sparse(
            z, _labels(y_true), runtime.blocks_for(z.size * _COST_SOFTMAX))
        return loss, grad.reshape(logits.shape), probs.reshape(logits.shape)

    def prepare_targets(self, y, output_shape, argument="y") -> np.ndarray:
        """Check integer class labels against the model's output shape and convert them.

        Args:
            y: labels of shape (N,) or (N, 1) for an output of shape (classes,); (N, T) or
                (N, T, 1) for an output (T, classes); integer dtype, or floats with
                integral values.
            output_shape: the model's output shape without the batch axis; its last
                entry is the number of classes.
            argument: the name used for ``y`` in error messages.

        Returns:
            int64 labels, flattened: shape (N * T,) -- one label per row of the output
            reshaped to (-1, classes).

        Raises TypeError for a non-numeric array and ValueError naming ``argument`` and
        the offending value for non-integer labels, labels outside [0, classes), and
        shapes that do not fit the output.
        """
        output_shape = _check_output_shape(output_shape, self.name)
        if len(output_shape) == 0:
            raise ValueError(f"{self.name}: expected a model output with a class axis. "
                             f"Received: output_shape={output_shape}")
        classes = output_shape[-1]
        lead = output_shape[:-1]
        arr = _as_numeric_array(y, argument, "integer class labels", self.name)
        if not (_shape_matches(arr.shape[1:], lead) or _shape_matches(arr.shape[1:], lead + (1,))):
            expected = f"{_shape_str(lead)} or {_shape_str(lead + (1,))}"
            msg = (f"{argument}: expected integer class labels of shape {expected} for {self.name} with a "
                   f"model output of shape {_shape_str(output_shape)}. Received: shape {arr.shape}")
            if _shape_matches(arr.shape[1:], output_shape) and (classes is None or classes > 1):
                msg += "; these look one-hot encoded: use categorical_crossentropy"
            raise ValueError(msg)
        range_str = f"[0, {classes})" if classes is not None else "[0, classes)"
        if arr.dtype.kind == "f":
            finite = np.isfinite(arr)
            integral = finite & (np.floor(arr) == arr) if finite.all() else finite
            if not integral.all():
                k = _first_true(~integral)
                raise ValueError(f"{argument}: expected integer class labels in {range_str} for {self.name}. "
                                 f"Received: {_value_str(arr, k)} at index {_index_str(k, arr.shape)}")
        bad = arr < 0
        if classes is not None:
            bad |= arr >= classes
        if bad.any():
            k = _first_true(bad)
            raise ValueError(f"{argument}: expected integer class labels in {range_str} for {self.name}. "
                             f"Received: {_value_str(arr, k)} at index {_index_str(k, arr.shape)}")
        return np.ascontiguousarray(arr.reshape(-1), dtype=np.int64)


# --------------------------------------------------------------------------------------
# Lookup by name and configuration
# --------------------------------------------------------------------------------------

_NAMES = {
    "mse": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "huber": Huber,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_ALIASES = {
    "mean_squared_error": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "huber_loss": Huber,
}


def get(identifier, argument="loss"):
    """A Loss from a name, a Loss instance (returned as is) or a ``get_config()`` dict.

    Names: "mse", "mae", "huber", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy", the aliases "mean_squared_error",
    "mean_absolute_error", "huber_loss", and the class names ("MeanSquaredError", ...).
    A name gives a new object with default arguments.  ``None`` gives ``None`` (no loss),
    as in Keras.

    Raises ValueError for an unknown name or configuration, TypeError for any other type;
    ``argument`` is the name used for ``identifier`` in the message.
    """
    if identifier is None or isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier) or _ALIASES.get(identifier) or _CLASSES.get(identifier)
        if cls is None:
            valid = ", ".join(repr(n) for n in list(_NAMES) + list(_ALIASES))
            raise ValueError(f"{argument}: unknown loss name. Expected a Loss instance or one of {valid}. "
                             f"Received: {argument}={identifier!r}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier, argument)
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    raise TypeError(f"{argument}: expected a Loss instance, a loss name or a configuration dict. "
                    f"Received: {argument}={identifier!r} of type {type(identifier).__name__}")


def serialize(loss: Loss) -> dict:
    """The configuration dict of a loss (``loss.get_config()``)."""
    if not isinstance(loss, Loss):
        raise TypeError(f"serialize: expected a Loss. Received: loss={loss!r}")
    return loss.get_config()


def deserialize(config: dict, argument="loss") -> Loss:
    """Rebuild a loss from ``get_config()``'s dict; also accepts Keras' nested form
    {"class_name": ..., "config": {...}}.  Only registered Loss classes are built."""
    if not isinstance(config, dict):
        raise TypeError(f"{argument}: expected a configuration dict. Received: {argument}={config!r}")
    name = config.get("class_name")
    cls = _CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"{argument}: unknown loss class_name in configuration. Expected one of "
                         f"{', '.join(repr(n) for n in sorted(_CLASSES))}. Received: class_name={name!r}")
    kwargs = config.get("config") if isinstance(config.get("config"), dict) else config
    try:
        return cls.from_config(kwargs)
    except TypeError as exc:
        raise ValueError(f"{argument}: invalid configuration for {name}: {exc}. Received: {argument}={config!r}") \
            from None
