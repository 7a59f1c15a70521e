"""Fused MLP kernels against a NumPy reference and finite differences of the kernel itself."""
import math

import numpy as np
import pytest

from nnjit.kernels import mlp as K
from nnjit.kernels.activations import CODES

from test_activation_kernels import reference

EPS_CLIP = 1e-7


def _act_grad(name, z, y, dy):
    """dL/dz from dL/dy through activation ``name``: softmax by its Jacobian, the
    elementwise ones by central differences of the NumPy reference."""
    if name == "softmax":
        return y * (dy - (dy * y).sum(axis=1, keepdims=True))
    h = 1e-6
    return dy * (reference(name, z + h) - reference(name, z - h)) / (2 * h)


def _stack(sizes, acts, use_bias, dtype, seed=0):
    """Flat params and a layout table for a stack of dense layers."""
    rng = np.random.default_rng(seed)
    rows, chunks, off = [], [], 0
    for l, act in enumerate(acts):
        k, m = sizes[l], sizes[l + 1]
        w = rng.standard_normal((k, m)) / np.sqrt(k)
        chunks.append(w.ravel())
        b_off = -1
        if use_bias[l]:
            b_off = off + k * m
            chunks.append(rng.standard_normal(m) * 0.3)
        rows.append([k, m, off, b_off, CODES[act], 1, 1, int(l > 0)])
        off += k * m + (m if use_bias[l] else 0)
    params = np.concatenate(chunks).astype(dtype)
    return params, np.array(rows, dtype=np.int64)


def _targets(code, n, c, rng, dtype):
    if code in K.SPARSE_LOSSES:
        return rng.integers(0, c, n).astype(np.int64), np.zeros((0, 0), dtype)
    if code in (K.SOFTMAX_CE_DENSE, K.CE_PROBS_DENSE):
        t = rng.random((n, c)) + 0.1
        return np.zeros(0, np.int64), (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    if code in (K.SIGMOID_BCE, K.BCE):
        return np.zeros(0, np.int64), rng.random((n, c)).astype(dtype)
    return np.zeros(0, np.int64), rng.standard_normal((n, c)).astype(dtype)


def _loss_reference(code, out, labels, targets, delta):
    """Mean loss and its gradient with respect to the network output (float64)."""
    n, c = out.shape
    t = np.eye(c)[labels] if code in K.SPARSE_LOSSES else targets.astype(np.float64)
    if code in (K.SOFTMAX_CE_SPARSE, K.SOFTMAX_CE_DENSE):
        m = out.max(axis=1, keepdims=True)
        lse = np.log(np.exp(out - m).sum(axis=1, keepdims=True)) + m
        p = np.exp(out - lse)
        loss = (t * (lse - out)).sum() / n
        return loss, (p * t.sum(axis=1, keepdims=True) - t) / n, p
    if code in (K.CE_PROBS_SPARSE, K.CE_PROBS_DENSE):
        s = out.sum(axis=1, keepdims=True)
        q = out / s
        assert (q > EPS_CLIP).all() and (q < 1 - EPS_CLIP).all()  # no clipping in these tests
        loss = -(t * np.log(q)).sum() / n
        grad = (-t / q + t.sum(axis=1, keepdims=True)) / s / n
        return loss, grad, None
    size = out.size
    d = out - t
    if code == K.MSE:
        return (d * d).mean(), 2 * d / size, None
    if code == K.MAE:
        return np.abs(d).mean(), np.sign(d) / size, None
    if code == K.HUBER:
        a = np.abs(d)
        loss = np.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta)).mean()
        return loss, np.where(a <= delta, d, delta * np.sign(d)) / size, None
    if code == K.SIGMOID_BCE:
        p = 1 / (1 + np.exp(-out))
        loss = (np.maximum(out, 0) - out * t + np.log1p(np.exp(-np.abs(out)))).mean()
        return loss, (p - t) / size, p
    if code == K.BCE:
        assert (out > EPS_CLIP).all() and (out < 1 - EPS_CLIP).all()
        loss = -(t * np.log(out) + (1 - t) * np.log(1 - out)).mean()
        return loss, ((1 - t) / (1 - out) - t / out) / size, None
    raise KeyError(code)


def _reference_step(x, params, layout, code, labels, targets, delta):
    """Loss, output, probabilities and the flat gradient by plain NumPy backprop."""
    params = params.astype(np.float64)
    names = {v: k for k, v in CODES.items()}
    hs, zs, ws = [x.astype(np.float64)], [], []
    for k, m, wo, bo, act, *_ in layout:
        w = params[wo:wo + k * m].reshape(k, m)
        b = params[bo:bo + m] if bo >= 0 else 0.0
        z = hs[-1] @ w + b
        zs.append(z)
        ws.append(w)
        hs.append(reference(names[act], z))
    loss, dout, probs = _loss_reference(code, hs[-1], labels, targets, delta)
    grads = np.zeros_like(params)
    d = dout
    for l in range(len(layout) - 1, -1, -1):
        k, m, wo, bo, act, need_dw, need_dz, need_dx = layout[l]
        if not need_dz:
            break
        dz = _act_grad(names[act], zs[l], hs[l + 1], d)
        if need_dw:
            grads[wo:wo + k * m] = (hs[l].T @ dz).ravel()
            if bo >= 0:
                grads[bo:bo + m] = dz.sum(axis=0)
        d = dz @ ws[l].T
    return loss, hs[-1], probs, grads


def _run(x, labels, targets, params, layout, code, delta, nblocks, grads=None):
    n = x.shape[0]
    c = layout[-1, K.FAN_OUT]
    work = np.full(K.workspace_size(layout, n, True), np.nan, dtype=x.dtype)  # NaN: no reads of unset memory
    out = np.empty((n, c), x.dtype)
    probs = np.full((n, c), -1.0, x.dtype)
    if grads is None:
        grads = np.full_like(params, np.nan)  # every gradient is written, none accumulated
    loss = K.mlp_train_step(x, labels, targets, params, grads, layout, work, out, probs, code, delta, nblocks)
    return loss, out, probs, grads


LOSS_CASES = [  # (loss code, last activation)
    (K.SOFTMAX_CE_SPARSE, "linear"), (K.SOFTMAX_CE_DENSE, "linear"), (K.CE_PROBS_SPARSE, "softmax"),
    (K.CE_PROBS_DENSE, "sigmoid"), (K.MSE, "tanh"), (K.MAE, "linear"), (K.HUBER, "linear"),
    (K.SIGMOID_BCE, "linear"), (K.BCE, "sigmoid"),
]


@pytest.mark.parametrize("code,last", LOSS_CASES)
@pytest.mark.parametrize("nblocks", [1, 2, 3])
def test_train_step_matches_numpy(code, last, nblocks):
    rng = np.random.default_rng(code)
    params, layout = _stack([6, 9, 7, 4], ["tanh", "gelu", last], [True, False, True], np.float64, seed=code)
    x = rng.standard_normal((11, 6))
    labels, targets = _targets(code, 11, 4, rng, np.float64)
    delta = 0.4
    loss, out, probs, grads = _run(x, labels, targets, params, layout, code, delta, nblocks)
    ref_loss, ref_out, ref_probs, ref_grads = _reference_step(x, params, layout, code, labels, targets, delta)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads, ref_grads, rtol=1e-6, atol=1e-9)
    if ref_probs is not None:
        np.testing.assert_allclose(probs, ref_probs, rtol=1e-12, atol=1e-13)
    else:
        assert (probs == -1).all()  # left alone


@pytest.mark.parametrize("act", sorted(CODES))
@pytest.mark.parametrize("use_bias", [True, False])
def test_every_activation_matches_numpy(act, use_bias):
    rng = np.random.default_rng(5)
    params, layout = _stack([5, 8, 6, 3], [act, act, "linear"], [use_bias, use_bias, True], np.float64, seed=2)
    x = rng.standard_normal((9, 5)) * 1.5
    x[np.abs(x) < 1e-3] = 0.5
    labels, targets = _targets(K.MSE, 9, 3, rng, np.float64)
    for nblocks in (1, 2):
        loss, out, _, grads = _run(x, labels, targets, params, layout, K.MSE, 0.0, nblocks)
        ref_loss, ref_out, _, ref_grads = _reference_step(x, params, layout, K.MSE, labels, targets, 0.0)
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(grads, ref_grads, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("frozen", [(0,), (1,), (2,), (0, 1), (0, 1, 2)])
def test_frozen_layers_get_zero_gradients_and_stop_the_chain(frozen):
    rng = np.random.default_rng(7)
    params, layout = _stack([4, 6, 5, 3], ["relu", "swish", "linear"], [True, True, True], np.float64, seed=3)
    first = min(set(range(3)) - set(frozen), default=3)
    for l in range(3):
        layout[l, K.NEED_DW] = int(l not in frozen)
        layout[l, K.NEED_DZ] = int(l >= first)
        layout[l, K.NEED_DX] = int(l > first)
    x = rng.standard_normal((10, 4))
    labels, targets = _targets(K.SOFTMAX_CE_SPARSE, 10, 3, rng, np.float64)
    for nblocks in (1, 2):
        loss, _, _, grads = _run(x, labels, targets, params, layout, K.SOFTMAX_CE_SPARSE, 0.0, nblocks)
        ref_loss, _, _, ref_grads = _reference_step(x, params, layout, K.SOFTMAX_CE_SPARSE, labels, targets, 0.0)
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        np.testing.assert_allclose(grads, ref_grads, rtol=1e-6, atol=1e-9)
        for l in frozen:
            k, m, wo, bo = layout[l, :4]
            assert not grads[wo:wo + k * m].any() and not grads[bo:bo + m].any()


@pytest.mark.parametrize("code,last", LOSS_CASES)
def test_gradient_by_finite_differences_of_the_kernel(code, last):
    """The gradient the kernel writes against central differences of the loss it returns."""
    rng = np.random.default_rng(11 + code)
    params, layout = _stack([3, 5, 3], ["elu", last], [True, True], np.float64, seed=13)
    x = rng.standard_normal((6, 3))
    labels, targets = _targets(code, 6, 3, rng, np.float64)
    if code == K.MAE:  # keep |out - t| away from the kink at 0
        targets = targets + 3.0
    delta = 0.5
    _, _, _, grads = _run(x, labels, targets, params, layout, code, delta, 1)

    def f(p):
        return _run(x, labels, targets, p, layout, code, delta, 1)[0]

    h = 1e-6
    numeric = np.empty_like(params)
    for i in range(params.size):
        up, down = params.copy(), params.copy()
        up[i] += h
        down[i] -= h
        numeric[i] = (f(up) - f(down)) / (2 * h)
    np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-8)


def test_nblocks_agree_and_float32_runs():
    rng = np.random.default_rng(3)
    params, layout = _stack([20, 33, 10], ["relu", "linear"], [True, True], np.float32, seed=4)
    x = rng.standard_normal((257, 20)).astype(np.float32)
    labels, targets = _targets(K.MSE, 257, 10, rng, np.float32)
    results = [_run(x, labels, targets, params, layout, K.MSE, 0.0, nb) for nb in (1, 2, 5)]
    for loss, out, _, grads in results[1:]:
        # BLAS may round a product differently for another block of rows: last bits only.
        assert loss == pytest.approx(results[0][0], rel=1e-6)
        np.testing.assert_allclose(grads, results[0][3], rtol=1e-5, atol=1e-6)
    ref_loss, _, _, ref_grads = _reference_step(x, params, layout, K.MSE, labels, targets, 0.0)
    assert results[0][0] == pytest.approx(ref_loss, rel=1e-5)
    assert results[0][3].dtype == np.float32
    np.testing.assert_allclose(results[0][3], ref_grads, rtol=1e-3, atol=1e-5)


def test_label_out_of_range_gives_nan_loss():
    params, layout = _stack([3, 4, 3], ["relu", "linear"], [True, True], np.float64)
    x = np.ones((4, 3))
    labels = np.array([0, 1, 3, 2], dtype=np.int64)
    loss, _, _, _ = _run(x, labels, np.zeros((0, 0)), params, layout, K.SOFTMAX_CE_SPARSE, 0.0, 1)
    assert math.isnan(loss)


def _forward_reference(x, params, layout):
    return _reference_step(x, params, layout, K.MSE, None, np.zeros((x.shape[0], layout[-1, 1])), 0.0)[1]


@pytest.mark.parametrize("n", [1, 3, 4, 5, 40])
@pytest.mark.parametrize("acts", [("relu", "gelu", "softmax"), ("swish", "tanh", "sigmoid"), ("elu", "leaky_relu", "linear")])
def test_forward_matches_numpy(n, acts):
    rng = np.random.default_rng(n)
    params, layout = _stack([7, 12, 9, 5], list(acts), [True, False, True], np.float64, seed=n)
    x = rng.standard_normal((n, 7))
    ref = _forward_reference(x, params, layout)
    for nblocks in (1, 2, 3):
        for cb in ([1, 1, 1], [2, 3, 1], [3, 2, 2]):
            out = np.empty((n, 5))
            work = np.full(K.workspace_size(layout, n, False), np.nan)
            assert K.mlp_forward(x, params, layout, work, out, np.array(cb, np.int64), nblocks)
            np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-13)


def test_forward_refuses_nan_and_inf_without_work():
    params, layout = _stack([4, 5, 2], ["relu", "linear"], [True, True], np.float32)
    for bad in (np.nan, np.inf, -np.inf):
        for n in (1, 9, 13):
            x = np.ones((n, 4), np.float32)
            x[n - 1, 3] = bad
            out = np.full((n, 2), 7.0, np.float32)
            work = np.empty(K.workspace_size(layout, n, False), np.float32)
            assert not K.mlp_forward(x, params, layout, work, out, np.ones(2, np.int64), 1)
            assert (out == 7.0).all()
    x = np.full((3, 4), 3e38, np.float32)  # finite, however large
    out = np.empty((3, 2), np.float32)
    assert K.mlp_forward(x, params, layout, np.empty(K.workspace_size(layout, 3, False), np.float32), out,
                         np.ones(2, np.int64), 1)


def test_workspace_size_counts_what_training_keeps():
    _, layout = _stack([4, 6, 5, 3], ["gelu", "relu", "linear"], [True, True, True], np.float64)
    # per hidden layer: output, pre-activation, gradients of both; the linear last layer:
    # one gradient (its output is the caller's array)
    assert K.workspace_size(layout, 10, True) == 10 * (4 * 6 + 4 * 5 + 3)
    assert K.workspace_size(layout, 10, False) == 10 * (2 * 6 + 2 * 5)
    layout[:2, K.NEED_DZ] = 0  # only the last layer trains
    assert K.workspace_size(layout, 10, True) == 10 * (2 * 6 + 2 * 5 + 3)


def test_each_loss_family_has_its_kernel():
    kernels = {code: K.train_step_kernel(code) for code, _ in LOSS_CASES}
    assert kernels[K.SOFTMAX_CE_SPARSE] is kernels[K.SOFTMAX_CE_DENSE]
    assert kernels[K.CE_PROBS_SPARSE] is kernels[K.CE_PROBS_DENSE]
    assert len({kernels[c] for c in (K.MSE, K.MAE, K.HUBER, K.SIGMOID_BCE, K.BCE)}) == 1
    assert len(set(kernels.values())) == 3
    with pytest.raises(ValueError, match="loss_code=99"):
        K.train_step_kernel(99)
