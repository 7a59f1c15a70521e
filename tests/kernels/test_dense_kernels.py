"""Fused dense kernels against NumPy references and finite differences."""
import numpy as np
import pytest

from nnjit.kernels.activations import CODES
from nnjit.kernels.dense import dense_backward, dense_forward

from test_activation_kernels import reference


def _problem(n, k, m, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)).astype(dtype)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("name", sorted(CODES))
@pytest.mark.parametrize("nblocks", [1, 2, 5])
@pytest.mark.parametrize("use_bias", [True, False])
def test_forward_matches_numpy(name, nblocks, use_bias):
    x, w, b = _problem(13, 17, 6, np.float64)
    if not use_bias:
        b = np.empty(0)
    y, z = dense_forward(x, w, b, CODES[name], nblocks)
    pre = x @ w + (b if use_bias else 0)
    np.testing.assert_allclose(y, reference(name, pre), rtol=1e-12, atol=1e-12)
    assert z.shape[0] in (0, 13)


def test_forward_float32_large_batch():
    x, w, b = _problem(300, 129, 70, np.float32)
    y, _ = dense_forward(x, w, b, CODES["relu"], 2)
    assert y.dtype == np.float32
    ref = np.maximum(x.astype(np.float64) @ w + b, 0)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(CODES))
@pytest.mark.parametrize("nblocks", [1, 2])
def test_backward_matches_numpy(name, nblocks):
    x, w, b = _problem(11, 8, 5, np.float64, seed=3)
    code = CODES[name]
    y, z = dense_forward(x, w, b, code, nblocks)
    dy = np.random.default_rng(4).standard_normal(y.shape)
    dw = np.full_like(w, 0.5)  # gradients accumulate: start from a non-zero value
    db = np.full_like(b, -0.25)
    dx = dense_backward(dy, x, w, y, z, code, dw, db, True, True, nblocks)

    # Independent reference: finite differences of the NumPy forward for dz.
    pre = x @ w + b
    eps = 1e-6
    dpre = (np.stack([reference(name, pre + eps * e) for e in np.eye(5)]) -
            np.stack([reference(name, pre - eps * e) for e in np.eye(5)])) / (2 * eps)  # (5, n, 5)
    dz = np.einsum("jni,ni->nj", dpre, dy)
    np.testing.assert_allclose(dx, dz @ w.T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, 0.5 + x.T @ dz, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, -0.25 + dz.sum(0), rtol=1e-6, atol=1e-8)


def test_backward_finite_differences_of_kernel():
    """Gradient of sum(dense_forward(x) * R) by central differences of the kernel itself."""
    x, w, b = _problem(6, 4, 3, np.float64, seed=5)
    code = CODES["tanh"]
    R = np.random.default_rng(6).standard_normal((6, 3))
    y, z = dense_forward(x, w, b, code, 1)
    dw = np.zeros_like(w)
    db = np.zeros_like(b)
    dx = dense_backward(R, x, w, y, z, code, dw, db, True, True, 1)

    def f(x_, w_, b_):
        return float(np.sum(dense_forward(x_, w_, b_, code, 1)[0] * R))

    eps = 1e-6
    for array, grad in ((x, dx), (w, dw), (b, db)):
        numeric = np.empty_like(array)
        for idx in np.ndindex(array.shape):
            old = array[idx]
            array[idx] = old + eps
            up = f(x, w, b)
            array[idx] = old - eps
            down = f(x, w, b)
            array[idx] = old
            numeric[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_backward_flags_skip_work():
    x, w, b = _problem(10, 4, 3, np.float64)
    y, z = dense_forward(x, w, b, CODES["relu"], 2)
    dy = np.ones_like(y)
    dw = np.zeros_like(w)
    db = np.zeros_like(b)
    dx = dense_backward(dy, x, w, y, z, CODES["relu"], dw, db, False, False, 2)
    assert dx.shape == (0, 4)
    assert not dw.any() and not db.any()


def test_serial_and_parallel_paths_agree():
    x, w, b = _problem(257, 100, 33, np.float64, seed=9)
    code = CODES["gelu"]
    outs = []
    for nb in (1, 2, 7):
        y, z = dense_forward(x, w, b, code, nb)
        dw = np.zeros_like(w)
        db = np.zeros_like(b)
        dx = dense_backward(np.cos(y), x, w, y, z, code, dw, db, True, True, nb)
        outs.append((y, dx, dw, db))
    for other in outs[1:]:
        for a, c in zip(outs[0], other):
            np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CODES))
@pytest.mark.parametrize("n", [1, 3, 4])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("k", [2, 19])
def test_forward_few_rows_split_by_kernel_rows(name, n, use_bias, k):
    """A handful of rows (single-sample inference) takes the matrix-vector path, its kernel
    rows split across threads and the partial products summed (k=2: fewer rows than blocks)."""
    x, w, b = _problem(n, k, 23, np.float64, seed=11)
    if not use_bias:
        b = np.empty(0)
    for nblocks in (1, 2, 3):
        y, z = dense_forward(x, w, b, CODES[name], nblocks)
        pre = x @ w + (b if use_bias else 0)
        np.testing.assert_allclose(y, reference(name, pre), rtol=1e-12, atol=1e-12)
        if z.shape[0]:
            np.testing.assert_allclose(z, pre, rtol=1e-12, atol=1e-12)
