"""Batch normalization kernels against NumPy references and finite differences."""
import numpy as np
import pytest

from nnjit.kernels.normalization import (
    batch_norm_backward,
    batch_norm_backward_infer,
    batch_norm_forward_infer,
    batch_norm_forward_train,
)

EPS = 1e-3

# (A, C, S): images (S > 1), dense features (S = 1), a single sample with S > 1, and a
# single value per channel (m = A * S = 1, where the unbiased variance is undefined).
SHAPES = [(5, 4, 6), (7, 3, 1), (1, 3, 5), (1, 2, 1)]
# Larger views that exercise the kernels' tiling: several whole channels per tile with a
# partial last tile (S = 300), and one channel split into chunks with a short last
# chunk (S = 2500).
TILED_SHAPES = [(3, 7, 300), (2, 3, 2500)]


def reference_train(x, gamma, beta, epsilon=EPS):
    x = x.astype(np.float64)
    mean = x.mean(axis=(0, 2))
    var = x.var(axis=(0, 2))
    inv_std = 1 / np.sqrt(var + epsilon)
    y = gamma[:, None] * (x - mean[:, None]) * inv_std[:, None] + beta[:, None]
    return y, mean, var, inv_std


def reference_infer(x, gamma, beta, moving_mean, moving_variance):
    scale = gamma / np.sqrt(moving_variance.astype(np.float64) + EPS)
    return (x.astype(np.float64) - moving_mean[:, None]) * scale[:, None] + beta[:, None]


def _problem(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + rng.standard_normal((1, c, 1))).astype(dtype)
    gamma = (1 + 0.3 * rng.standard_normal(c)).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    moving_mean = rng.standard_normal(c).astype(dtype)
    moving_variance = (0.5 + rng.random(c)).astype(dtype)
    return x, gamma, beta, moving_mean, moving_variance


def _tol(dtype):
    return 2e-5 if dtype == np.float32 else 1e-12


@pytest.mark.parametrize("shape", SHAPES + TILED_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_forward_train_matches_numpy(shape, dtype, nblocks):
    x, gamma, beta, mm, mv = _problem(shape, dtype)
    mm0, mv0 = mm.copy(), mv.copy()
    y, mean, inv_std = batch_norm_forward_train(x, gamma, beta, mm, mv, 0.9, EPS, nblocks)
    ref_y, ref_mean, ref_var, ref_inv = reference_train(x, gamma, beta)
    assert y.dtype == dtype and y.shape == shape
    tol = _tol(dtype)
    np.testing.assert_allclose(y, ref_y, rtol=tol, atol=tol)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(inv_std, ref_inv, rtol=1e-12)
    m = shape[0] * shape[2]
    unbiased = ref_var * m / (m - 1) if m > 1 else ref_var
    np.testing.assert_allclose(mm, 0.9 * mm0 + 0.1 * ref_mean, rtol=tol, atol=tol)
    np.testing.assert_allclose(mv, 0.9 * mv0 + 0.1 * unbiased, rtol=tol, atol=tol)
    if m == 1:
        np.testing.assert_allclose(y, np.broadcast_to(beta[:, None], shape), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(6, 5, 4), (9, 4, 1)])
def test_moving_statistics_after_several_steps(shape):
    x, gamma, beta, mm, mv = _problem(shape, np.float64, seed=1)
    ref_mm, ref_mv = mm.copy(), mv.copy()
    for step in range(4):
        xs = x * (step + 1) + step
        batch_norm_forward_train(xs, gamma, beta, mm, mv, 0.99, EPS, 2)
        ref_mm = 0.99 * ref_mm + 0.01 * xs.mean(axis=(0, 2))
        # Unbiased: ddof=1 over the A * S values of each channel.
        ref_mv = 0.99 * ref_mv + 0.01 * xs.transpose(1, 0, 2).reshape(shape[1], -1).var(axis=1, ddof=1)
    np.testing.assert_allclose(mm, ref_mm, rtol=1e-12)
    np.testing.assert_allclose(mv, ref_mv, rtol=1e-12)


@pytest.mark.parametrize("shape", [(64, 8, 49), (512, 8, 1)])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_float32_large_mean_keeps_variance(shape, nblocks):
    # Noise of 0.01 on 1000: a float32 one-pass sum of squares would lose it entirely.
    rng = np.random.default_rng(2)
    x = (1000 + 0.01 * rng.standard_normal(shape)).astype(np.float32)
    c = shape[1]
    gamma = np.ones(c, np.float32)
    beta = np.zeros(c, np.float32)
    mm = np.zeros(c, np.float32)
    mv = np.ones(c, np.float32)
    y, mean, inv_std = batch_norm_forward_train(x, gamma, beta, mm, mv, 0.0, 0.0, nblocks)
    ref_y, ref_mean, ref_var, _ = reference_train(x, gamma.astype(np.float64), beta.astype(np.float64), 0.0)
    m = shape[0] * shape[2]
    np.testing.assert_allclose(1 / inv_std ** 2, ref_var, rtol=1e-7)
    np.testing.assert_allclose(mv, ref_var * m / (m - 1), rtol=1e-6)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12)
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
    assert abs(float(y.std()) - 1) < 1e-3


@pytest.mark.parametrize("shape", SHAPES + TILED_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_forward_infer_matches_numpy(shape, dtype, nblocks):
    x, gamma, beta, mm, mv = _problem(shape, dtype, seed=3)
    mm0, mv0 = mm.copy(), mv.copy()
    y = batch_norm_forward_infer(x, gamma, beta, mm, mv, EPS, nblocks)
    assert y.dtype == dtype and y.shape == shape
    tol = _tol(dtype)
    np.testing.assert_allclose(y, reference_infer(x, gamma, beta, mm, mv), rtol=tol, atol=tol)
    np.testing.assert_array_equal(mm, mm0)
    np.testing.assert_array_equal(mv, mv0)


def test_train_and_infer_differ_until_the_statistics_match():
    x, gamma, beta, mm, mv = _problem((8, 3, 5), np.float64, seed=4)
    y_infer = batch_norm_forward_infer(x, gamma, beta, mm, mv, EPS, 1)
    y_train, mean, inv_std = batch_norm_forward_train(x, gamma, beta, mm, mv, 0.9, EPS, 1)
    assert not np.allclose(y_infer, y_train)
    # With the batch statistics as moving statistics inference reproduces training.
    var = 1 / inv_std ** 2 - EPS
    np.testing.assert_allclose(batch_norm_forward_infer(x, gamma, beta, mean, var, EPS, 2), y_train, rtol=1e-10)


def _numeric_gradient(f, array, eps=1e-6):
    grad = np.empty_like(array)
    for idx in np.ndindex(array.shape):
        old = array[idx]
        array[idx] = old + eps
        up = f()
        array[idx] = old - eps
        down = f()
        array[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


def reference_backward(dy, x, gamma):
    """The textbook training-mode gradient, written out independently of the kernel."""
    _, mean, var, inv_std = reference_train(x, gamma, np.zeros_like(gamma))
    m = x.shape[0] * x.shape[2]
    xhat = (x - mean[:, None]) * inv_std[:, None]
    dxhat = dy * gamma[:, None]
    dx = inv_std[:, None] / m * (m * dxhat - dxhat.sum(axis=(0, 2))[:, None]
                                 - xhat * (dxhat * xhat).sum(axis=(0, 2))[:, None])
    return dx, (dy * xhat).sum(axis=(0, 2)), dy.sum(axis=(0, 2))


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_backward_finite_differences_of_reference(shape, nblocks):
    x, gamma, beta, mm, mv = _problem(shape, np.float64, seed=5)
    R = np.random.default_rng(6).standard_normal(shape)
    _, mean, inv_std = batch_norm_forward_train(x, gamma, beta, mm, mv, 0.9, EPS, nblocks)
    dgamma = np.full_like(gamma, 0.5)  # gradients accumulate: start from a non-zero value
    dbeta = np.full_like(beta, -0.25)
    dx = batch_norm_backward(R, x, mean, inv_std, gamma, dgamma, dbeta, True, True, nblocks)

    def loss():
        return float(np.sum(reference_train(x, gamma, beta)[0] * R))

    np.testing.assert_allclose(dx, _numeric_gradient(loss, x), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(dgamma - 0.5, _numeric_gradient(loss, gamma), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dbeta + 0.25, _numeric_gradient(loss, beta), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", [(4, 3, 5), (6, 2, 1)])
def test_backward_finite_differences_of_kernel(shape):
    """Gradient of sum(batch_norm_forward_train(x) * R) by central differences of the kernel itself."""
    x, gamma, beta, mm, mv = _problem(shape, np.float64, seed=17)
    R = np.random.default_rng(18).standard_normal(shape)
    _, mean, inv_std = batch_norm_forward_train(x, gamma, beta, mm.copy(), mv.copy(), 0.9, EPS, 1)
    dgamma, dbeta = np.zeros_like(gamma), np.zeros_like(beta)
    dx = batch_norm_backward(R, x, mean, inv_std, gamma, dgamma, dbeta, True, True, 2)

    def loss():
        y = batch_norm_forward_train(x, gamma, beta, mm.copy(), mv.copy(), 0.9, EPS, 1)[0]
        return float(np.sum(y * R))

    np.testing.assert_allclose(dx, _numeric_gradient(loss, x), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(dgamma, _numeric_gradient(loss, gamma), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dbeta, _numeric_gradient(loss, beta), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", SHAPES + TILED_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_backward_matches_analytic_reference(shape, dtype, nblocks):
    x, gamma, beta, mm, mv = _problem(shape, dtype, seed=7)
    dy = np.random.default_rng(8).standard_normal(shape).astype(dtype)
    _, mean, inv_std = batch_norm_forward_train(x, gamma, beta, mm, mv, 0.9, EPS, nblocks)
    dgamma = np.full_like(gamma, 0.5)
    dbeta = np.full_like(beta, -0.25)
    dx = batch_norm_backward(dy, x, mean, inv_std, gamma, dgamma, dbeta, True, True, nblocks)
    ref_dx, ref_dgamma, ref_dbeta = reference_backward(dy.astype(np.float64), x.astype(np.float64),
                                                       gamma.astype(np.float64))
    assert dx.dtype == dtype and dx.shape == shape
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(dx, ref_dx, rtol=tol, atol=tol)
    np.testing.assert_allclose(dgamma, 0.5 + ref_dgamma, rtol=tol, atol=tol)
    np.testing.assert_allclose(dbeta, -0.25 + ref_dbeta, rtol=tol, atol=tol)


def test_backward_float32_large_mean():
    rng = np.random.default_rng(9)
    shape = (32, 4, 25)
    x = (1000 + 0.01 * rng.standard_normal(shape)).astype(np.float32)
    gamma = np.ones(4, np.float32)
    _, mean, inv_std = batch_norm_forward_train(x, gamma, np.zeros(4, np.float32), np.zeros(4, np.float32),
                                                np.ones(4, np.float32), 0.9, EPS, 2)
    dy = rng.standard_normal(shape).astype(np.float32)
    dgamma = np.zeros(4, np.float32)
    dbeta = np.zeros(4, np.float32)
    dx = batch_norm_backward(dy, x, mean, inv_std, gamma, dgamma, dbeta, True, True, 2)
    ref_dx, ref_dgamma, _ = reference_backward(dy.astype(np.float64), x.astype(np.float64), np.ones(4))
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-4, atol=1e-4 * np.abs(ref_dx).max())
    np.testing.assert_allclose(dgamma, ref_dgamma, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel", ["train", "infer"])
def test_backward_flags(kernel):
    x, gamma, beta, mm, mv = _problem((6, 3, 4), np.float64, seed=10)
    dy = np.random.default_rng(11).standard_normal(x.shape)
    _, mean, inv_std = batch_norm_forward_train(x, gamma, beta, mm.copy(), mv.copy(), 0.9, EPS, 1)

    def run(need_dx, need_dparams):
        dgamma = np.full_like(gamma, 2.0)
        dbeta = np.full_like(beta, 3.0)
        if kernel == "train":
            dx = batch_norm_backward(dy, x, mean, inv_std, gamma, dgamma, dbeta, need_dx, need_dparams, 2)
        else:
            dx = batch_norm_backward_infer(dy, x, mm, mv, gamma, EPS, dgamma, dbeta, need_dx, need_dparams, 2)
        return dx, dgamma, dbeta

    full_dx, full_dgamma, full_dbeta = run(True, True)
    dx, dgamma, dbeta = run(False, True)
    assert dx.shape == (0, 3, 4)
    np.testing.assert_array_equal(dgamma, full_dgamma)
    np.testing.assert_array_equal(dbeta, full_dbeta)
    dx, dgamma, dbeta = run(True, False)
    np.testing.assert_array_equal(dx, full_dx)
    assert (dgamma == 2.0).all() and (dbeta == 3.0).all()
    dx, dgamma, dbeta = run(False, False)
    assert dx.shape[0] == 0 and (dgamma == 2.0).all() and (dbeta == 3.0).all()


@pytest.mark.parametrize("shape", SHAPES + TILED_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_backward_infer(shape, dtype, nblocks):
    x, gamma, beta, mm, mv = _problem(shape, dtype, seed=12)
    dy = np.random.default_rng(13).standard_normal(shape).astype(dtype)
    dgamma = np.full_like(gamma, 0.5)
    dbeta = np.full_like(beta, -0.25)
    dx = batch_norm_backward_infer(dy, x, mm, mv, gamma, EPS, dgamma, dbeta, True, True, nblocks)
    assert dx.dtype == dtype and dx.shape == shape
    tol = 1e-4 if dtype == np.float32 else 1e-7  # float64 is checked against finite differences
    if dtype == np.float64 and x.size < 100:
        # Finite differences of the inference forward: the statistics are constants.
        def loss():
            return float(np.sum(reference_infer(x, gamma, beta, mm, mv) * dy))

        d_gamma, d_beta = _numeric_gradient(loss, gamma), _numeric_gradient(loss, beta)
        np.testing.assert_allclose(dx, _numeric_gradient(loss, x), rtol=1e-6, atol=1e-8)
    else:
        inv = 1 / np.sqrt(mv.astype(np.float64) + EPS)
        d_gamma = (dy * (x.astype(np.float64) - mm[:, None]) * inv[:, None]).sum(axis=(0, 2))
        d_beta = dy.astype(np.float64).sum(axis=(0, 2))
        np.testing.assert_allclose(dx, dy * (gamma * inv)[:, None], rtol=tol, atol=tol)
    np.testing.assert_allclose(dgamma, 0.5 + d_gamma, rtol=tol, atol=tol)
    np.testing.assert_allclose(dbeta, -0.25 + d_beta, rtol=tol, atol=tol)


def test_serial_and_parallel_paths_agree():
    results = []
    for shape in ((16, 13, 37), (40, 13, 1), (3, 5, 1500)):
        for nb in (1, 2, 3, 32):
            x, gamma, beta, mm, mv = _problem(shape, np.float32, seed=14)
            y, mean, inv_std = batch_norm_forward_train(x, gamma, beta, mm, mv, 0.9, EPS, nb)
            dgamma = np.zeros_like(gamma)
            dbeta = np.zeros_like(beta)
            dx = batch_norm_backward(y, x, mean, inv_std, gamma, dgamma, dbeta, True, True, nb)
            yi = batch_norm_forward_infer(x, gamma, beta, mm, mv, EPS, nb)
            dxi = batch_norm_backward_infer(y, x, mm, mv, gamma, EPS, dgamma, dbeta, True, True, nb)
            results.append((y, mean, inv_std, mm, mv, dx, dgamma, dbeta, yi, dxi))
        first = results[-4]
        for other in results[-3:]:
            for p, q in zip(first, other):
                np.testing.assert_array_equal(p, q)


def test_against_torch():
    """Extra reference: torch's training-mode batch norm, its running statistics and gradients."""
    torch = pytest.importorskip("torch")
    x, gamma, beta, mm, mv = _problem((6, 4, 10), np.float64, seed=15)
    xt = torch.tensor(x.reshape(6, 4, 2, 5), requires_grad=True)
    gt = torch.tensor(gamma, requires_grad=True)
    bt = torch.tensor(beta, requires_grad=True)
    rm, rv = torch.tensor(mm), torch.tensor(mv)
    # torch's momentum weighs the batch: torch 0.1 is momentum 0.9 here.
    yt = torch.nn.functional.batch_norm(xt, rm, rv, gt, bt, True, 0.1, EPS)
    y, mean, inv_std = batch_norm_forward_train(x, gamma, beta, mm, mv, 0.9, EPS, 2)
    np.testing.assert_allclose(y, yt.detach().numpy().reshape(6, 4, 10), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mm, rm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(mv, rv.numpy(), rtol=1e-12)
    dy = np.random.default_rng(16).standard_normal(x.shape)
    yt.backward(torch.tensor(dy.reshape(6, 4, 2, 5)))
    dgamma, dbeta = np.zeros(4), np.zeros(4)
    dx = batch_norm_backward(dy, x, mean, inv_std, gamma, dgamma, dbeta, True, True, 2)
    np.testing.assert_allclose(dx, xt.grad.numpy().reshape(6, 4, 10), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dgamma, gt.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(dbeta, bt.grad.numpy(), rtol=1e-10)
