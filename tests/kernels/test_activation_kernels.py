"""Activation kernels against NumPy references and finite differences."""
import numpy as np
import pytest

from nnjit.kernels.activations import CODES, activation_backward, activation_forward
from numpy_reference import activation as reference  # noqa: F401  (also imported from here by other kernel tests)

def _inputs(shape, dtype, seed=0):
    z = np.random.default_rng(seed).standard_normal(shape) * 2
    z[np.abs(z) < 1e-3] = 0.5  # keep away from the kinks of relu-like functions for the FD check
    return z.astype(dtype)


@pytest.mark.parametrize("name", sorted(CODES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nblocks", [1, 3])
def test_forward_matches_numpy(name, dtype, nblocks):
    z = _inputs((37, 11), dtype)
    y = activation_forward(z, CODES[name], nblocks)
    assert y.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, reference(name, z), rtol=tol * 10, atol=tol)


@pytest.mark.parametrize("name", sorted(CODES))
@pytest.mark.parametrize("nblocks", [1, 2])
def test_backward_matches_finite_differences(name, nblocks):
    z = _inputs((9, 7), np.float64, seed=1)
    dy = np.random.default_rng(2).standard_normal(z.shape)
    code = CODES[name]
    y = activation_forward(z, code, nblocks)
    dz = activation_backward(dy, y, z, code, nblocks)
    eps = 1e-6
    numeric = np.empty_like(z)
    for idx in np.ndindex(z.shape):
        zp = z.copy(); zp[idx] += eps
        zm = z.copy(); zm[idx] -= eps
        numeric[idx] = (np.sum(reference(name, zp) * dy) - np.sum(reference(name, zm) * dy)) / (2 * eps)
    np.testing.assert_allclose(dz, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["sigmoid", "softmax", "tanh", "elu", "swish", "gelu"])
def test_large_inputs_stay_finite(name):
    z = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], dtype=np.float32)
    y = activation_forward(z, CODES[name], 1)
    assert np.isfinite(y).all()
    dz = activation_backward(np.ones_like(z), y, z, CODES[name], 1)
    assert np.isfinite(dz).all()


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "tanh", "sigmoid"])
def test_nan_stays_nan(name):
    """max(NaN, 0) is NaN: an activation never hides a NaN (a NaN weight must show in the loss)."""
    z = np.array([[np.nan, -1.0, 0.0, 2.0]], dtype=np.float32)
    y = activation_forward(z, CODES[name], 1)
    assert np.isnan(y[0, 0])
    np.testing.assert_allclose(y[0, 1:], reference(name, z[:, 1:].astype(np.float64))[0], rtol=1e-6, atol=1e-7)
