"""Finite-difference gradient check for layers and models."""
from __future__ import annotations

import numpy as np

from . import runtime


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def gradcheck(layer_or_model, inputs, eps=1e-6, max_checks=48, seed=0, training=False) -> float:
    """Compare analytic gradients with central finite differences, in float64.

    The scalar checked is ``sum(output * R)`` for a fixed random R, so every output
    element contributes with its own weight.  Parameters are copied to float64 for the
    check and restored afterwards; the layer or model is left as it was.

    Args:
        layer_or_model: a Layer or a model.
        inputs: an array (or list of arrays for layers with several inputs).
        eps: step of the central differences.
        max_checks: at most this many randomly chosen elements of each array are
            perturbed (all of them when the array is smaller).
        training: forward in training mode (deterministic layers only).

    Returns:
        The largest, over the input(s) and every parameter of a trainable layer
        (frozen layers compute no parameter gradients; their inputs' gradients are
        still checked), of
        max|analytic - numeric| / max|numeric|, where max|numeric| is floored at a
        thousandth of the largest over all arrays (so that an array whose gradient is
        exactly zero is judged by absolute error, not by rounding noise).
    """
    from .layers.base import Layer
    from .models.engine import BaseModel

    is_model = isinstance(layer_or_model, BaseModel)
    if not is_model and not isinstance(layer_or_model, Layer):
        raise TypeError(f"gradcheck: expected a Layer or a model. Received: layer_or_model={layer_or_model!r}")
    several = isinstance(inputs, (list, tuple))
    xs = [np.array(x, dtype=np.float64) for x in _as_list(inputs)]
    for i, x in enumerate(xs):
        if x.ndim < 1 or x.size == 0 or not np.isfinite(x).all():
            raise ValueError(f"gradcheck: expected finite, non-empty arrays for inputs. Received: inputs[{i}] with shape {x.shape}")
    rng = np.random.default_rng(seed)
    old_floatx = runtime.floatx()
    runtime.set_floatx("float64")
    layers = layer_or_model.layers if is_model else [layer_or_model]
    saved = []
    try:
        if is_model:
            if not layer_or_model._is_built():
                layer_or_model.build(xs[0].shape[1:])
        else:
            layer_or_model.ensure_built(xs[0].shape[1:] if not several else [x.shape[1:] for x in xs])
        for layer in layers:
            saved.append((layer, dict(layer.params), dict(layer.grads), dict(layer.state)))
            for key in list(layer.params):
                layer.params[key] = layer.params[key].astype(np.float64)
                layer.grads[key] = np.zeros_like(layer.params[key])
            for key in list(layer.state):
                layer.state[key] = layer.state[key].astype(np.float64)

        def run(arrays):
            arg = arrays if several else arrays[0]
            if is_model:
                return layer_or_model._forward(arg, training, False, need_input_grad=True)
            return layer_or_model.forward(arg, training)

        y, backward = run(xs)
        R = rng.standard_normal(np.shape(y))
        dxs = _as_list(backward(R))
        analytic = [(x, np.asarray(dx, dtype=np.float64).reshape(x.shape)) for x, dx in zip(xs, dxs)]
        for layer in layers:
            if not layer.trainable:  # a frozen layer computes no parameter gradients
                continue
            for key in layer.params:
                analytic.append((layer.params[key], layer.grads[key].copy()))

        def objective():
            state = {k: v.copy() for layer in layers for k, v in layer.state.items()}
            out = run(xs)[0]
            for layer in layers:  # forward in training mode may update state; undo it
                for k in layer.state:
                    layer.state[k][...] = state[k]
            return float(np.sum(np.asarray(out, dtype=np.float64) * R))

        results = []
        for array, grad in analytic:
            flat = array.reshape(-1)
            count = flat.size
            picks = np.arange(count) if count <= max_checks else rng.choice(count, max_checks, replace=False)
            numeric = np.empty(len(picks))
            for j, idx in enumerate(picks):
                old = flat[idx]
                flat[idx] = old + eps
                up = objective()
                flat[idx] = old - eps
                down = objective()
                flat[idx] = old
                numeric[j] = (up - down) / (2 * eps)
            a = grad.reshape(-1)[picks]
            results.append((float(np.max(np.abs(a - numeric))), float(np.max(np.abs(numeric)))))
        # An array whose true gradient is zero (a key bias under softmax, say) has only
        # rounding noise to divide by: its scale is floored at a thousandth of the largest.
        floor = 1e-3 * max(scale for _, scale in results)
        worst = 0.0
        for err, scale in results:
            scale = max(scale, floor)
            worst = max(worst, err / scale if scale > 0 else err)
        return worst
    finally:
        for layer, params, grads, state in saved:
            layer.params.clear(); layer.params.update(params)
            layer.grads.clear(); layer.grads.update(grads)
            layer.state.clear(); layer.state.update(state)
        runtime.set_floatx(old_floatx)
