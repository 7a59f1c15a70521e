"""Layer normalization kernels against a NumPy reference and finite differences."""
import numpy as np
import pytest

from nnjit.kernels.layernorm import layer_norm_backward, layer_norm_forward

EPS = 1e-5

# (rows, features): features below, at and above a multiple of the 8 summation lanes.
SHAPES = [(7, 13), (16, 8), (5, 1), (33, 128), (1, 20)]


def reference_forward(x, gamma, beta, epsilon=EPS):
    x = x.astype(np.float64)
    mean = x.mean(axis=1)
    inv_std = 1 / np.sqrt(x.var(axis=1) + epsilon)
    xhat = (x - mean[:, None]) * inv_std[:, None]
    return gamma * xhat + beta, mean, inv_std


def reference_backward(dy, x, gamma, epsilon=EPS):
    dy = dy.astype(np.float64)
    _, mean, inv_std = reference_forward(x, gamma, np.zeros_like(gamma), epsilon)
    xhat = (x - mean[:, None]) * inv_std[:, None]
    g = dy * gamma
    dx = inv_std[:, None] * (g - g.mean(1, keepdims=True) - xhat * (g * xhat).mean(1, keepdims=True))
    return dx, (dy * xhat).sum(0), dy.sum(0)


def _problem(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    rows, features = shape
    x = (rng.standard_normal(shape) * 2 + rng.standard_normal((rows, 1))).astype(dtype)
    gamma = (1 + 0.3 * rng.standard_normal(features)).astype(dtype)
    beta = rng.standard_normal(features).astype(dtype)
    return x, gamma, beta


def _tol(dtype):
    return 2e-5 if dtype == np.float32 else 1e-12


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nblocks", [1, 2, 3])
def test_forward_matches_numpy(shape, dtype, nblocks):
    x, gamma, beta = _problem(shape, dtype)
    y, mean, inv_std = layer_norm_forward(x, gamma, beta, EPS, nblocks)
    ref_y, ref_mean, ref_inv_std = reference_forward(x, gamma, beta)
    assert y.dtype == dtype and mean.dtype == np.float64 and inv_std.dtype == np.float64
    tol = _tol(dtype)
    np.testing.assert_allclose(y, ref_y, rtol=tol, atol=tol)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(inv_std, ref_inv_std, rtol=1e-10)


def test_forward_float32_large_mean_keeps_variance():
    """Two-pass float64 statistics: a mean of 1000 does not swallow a spread of 0.01."""
    rng = np.random.default_rng(1)
    x = (1000 + 0.01 * rng.standard_normal((4, 64))).astype(np.float32)
    gamma = np.ones(64, np.float32)
    beta = np.zeros(64, np.float32)
    y, _, _ = layer_norm_forward(x, gamma, beta, 1e-9, 1)
    ref, _, _ = reference_forward(x, gamma, beta, 1e-9)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=1), 1.0, rtol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nblocks", [1, 2, 3])
def test_backward_matches_numpy(shape, dtype, nblocks):
    x, gamma, beta = _problem(shape, dtype, seed=2)
    dy = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    _, mean, inv_std = layer_norm_forward(x, gamma, beta, EPS, nblocks)
    dgamma = np.full_like(gamma, 0.5)  # gradients accumulate: start from a non-zero value
    dbeta = np.full_like(beta, -0.25)
    dx = layer_norm_backward(dy, x, mean, inv_std, gamma, dgamma, dbeta, True, True, nblocks)
    ref_dx, ref_dgamma, ref_dbeta = reference_backward(dy, x, gamma)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, ref_dx, rtol=tol, atol=tol)
    np.testing.assert_allclose(dgamma, 0.5 + ref_dgamma, rtol=tol, atol=tol)
    np.testing.assert_allclose(dbeta, -0.25 + ref_dbeta, rtol=tol, atol=tol)


def test_backward_finite_differences_of_kernel():
    """Gradient of sum(layer_norm_forward(x) * R) by central differences of the kernel itself."""
    x, gamma, beta = _problem((5, 11), np.float64, seed=4)
    R = np.random.default_rng(5).standard_normal(x.shape)
    _, mean, inv_std = layer_norm_forward(x, gamma, beta, EPS, 1)
    dgamma = np.zeros_like(gamma)
    dbeta = np.zeros_like(beta)
    dx = layer_norm_backward(R, x, mean, inv_std, gamma, dgamma, dbeta, True, True, 2)

    def f():
        return float(np.sum(layer_norm_forward(x, gamma, beta, EPS, 1)[0] * R))

    eps = 1e-6
    for array, grad in ((x, dx), (gamma, dgamma), (beta, dbeta)):
        numeric = np.empty_like(array)
        for idx in np.ndindex(array.shape):
            old = array[idx]
            array[idx] = old + eps
            up = f()
            array[idx] = old - eps
            down = f()
            array[idx] = old
            numeric[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("nblocks", [1, 2])
def test_backward_flags_skip_work(nblocks):
    x, gamma, beta = _problem((9, 6), np.float64)
    dy = np.ones_like(x)
    _, mean, inv_std = layer_norm_forward(x, gamma, beta, EPS, nblocks)
    dgamma = np.full_like(gamma, 2.0)
    dbeta = np.full_like(beta, 3.0)

    dx = layer_norm_backward(dy, x, mean, inv_std, gamma, dgamma, dbeta, False, False, nblocks)
    assert dx.shape == (0, 6)
    assert (dgamma == 2.0).all() and (dbeta == 3.0).all()

    dx = layer_norm_backward(dy, x, mean, inv_std, gamma, dgamma, dbeta, True, False, nblocks)
    ref_dx, ref_dgamma, ref_dbeta = reference_backward(dy, x, gamma)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-10)
    assert (dgamma == 2.0).all() and (dbeta == 3.0).all()

    dx = layer_norm_backward(dy, x, mean, inv_std, gamma, dgamma, dbeta, False, True, nblocks)
    assert dx.shape == (0, 6)
    np.testing.assert_allclose(dgamma, 2.0 + ref_dgamma, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dbeta, 3.0 + ref_dbeta, rtol=1e-10, atol=1e-10)


def test_serial_and_parallel_paths_agree():
    x, gamma, beta = _problem((101, 40), np.float64, seed=9)
    dy = np.cos(x)
    outs = []
    for nb in (1, 2, 7):
        y, mean, inv_std = layer_norm_forward(x, gamma, beta, EPS, nb)
        dgamma = np.zeros_like(gamma)
        dbeta = np.zeros_like(beta)
        dx = layer_norm_backward(dy, x, mean, inv_std, gamma, dgamma, dbeta, True, True, nb)
        outs.append((y, dx, dgamma, dbeta))
    for other in outs[1:]:
        for a, c in zip(outs[0], other):
            np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


def test_empty_batch():
    x = np.empty((0, 4))
    gamma = np.ones(4)
    beta = np.zeros(4)
    y, mean, inv_std = layer_norm_forward(x, gamma, beta, EPS, 2)
    assert y.shape == (0, 4) and mean.shape == (0,)
    dgamma = np.zeros(4)
    dbeta = np.zeros(4)
    dx = layer_norm_backward(x, x, mean, inv_std, gamma, dgamma, dbeta, True, True, 2)
    assert dx.shape == (0, 4) and not dgamma.any() and not dbeta.any()
