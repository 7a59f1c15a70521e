"""Pooling kernels against plain-loop NumPy references and finite differences."""
import numpy as np
import pytest

from nnjit.kernels.pooling import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool1d_backward,
    global_avg_pool1d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)


def geometry(size, pool, stride, padding):
    """Keras/TF output size and padding before the input for one spatial axis."""
    if padding == "valid":
        return (size - pool) // stride + 1, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + pool - size, 0)
    return out, total // 2


def reference(x, pool, stride, pad, out, mode):
    """Direct loops over explicitly padded planes.

    Padding is NaN, so a window's valid positions are exactly its non-NaN entries (the
    inputs here never hold NaN).  Returns y (and argmax for "max") in float64.  A window
    wholly in the padding gives -inf and argmax -1 for "max", 0 for "avg".
    """
    n, c, in_h, in_w = x.shape
    (ph, pw), (sh, sw), (pt, pl), (oh, ow) = pool, stride, pad, out
    rows = max(pt + in_h, (oh - 1) * sh + ph)
    cols = max(pl + in_w, (ow - 1) * sw + pw)
    padded = np.full((n, c, rows, cols), np.nan)
    padded[:, :, pt:pt + in_h, pl:pl + in_w] = x
    y = np.empty((n, c, oh, ow))
    argmax = np.empty((n, c, oh, ow), dtype=np.int64)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    best, where, total, count = -np.inf, -1, 0.0, 0
                    for u in range(ph):
                        for v in range(pw):
                            value = padded[b, ch, i * sh + u, j * sw + v]
                            if np.isnan(value):
                                continue
                            total += value
                            count += 1
                            if where < 0 or value > best:
                                best = value
                                where = (i * sh + u - pt) * in_w + (j * sw + v - pl)
                    y[b, ch, i, j] = best if mode == "max" else total / max(count, 1)
                    argmax[b, ch, i, j] = where
    return (y, argmax) if mode == "max" else y


def scatter_reference(dy, argmax, in_h, in_w):
    n, c = dy.shape[:2]
    dx = np.zeros((n, c, in_h * in_w))
    for b in range(n):
        for ch in range(c):
            won = argmax[b, ch] >= 0
            np.add.at(dx[b, ch], argmax[b, ch][won], dy[b, ch][won])
    return dx.reshape(n, c, in_h, in_w)


def spread_reference(dy, in_h, in_w, pool, stride, pad):
    (ph, pw), (sh, sw), (pt, pl) = pool, stride, pad
    dx = np.zeros(dy.shape[:2] + (in_h, in_w))
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            h0, h1 = max(i * sh - pt, 0), min(i * sh - pt + ph, in_h)
            w0, w1 = max(j * sw - pl, 0), min(j * sw - pl + pw, in_w)
            if h1 > h0 and w1 > w0:
                dx[:, :, h0:h1, w0:w1] += dy[:, :, i:i + 1, j:j + 1] / ((h1 - h0) * (w1 - w0))
    return dx


# (H, W, pool, stride, padding): the 2x2/2 fast path with and without ragged edges,
# windows that do not divide the input, asymmetric "same" padding (the odd extra row or
# column goes to the bottom/right), non-square pools and strides, overlapping windows.
CASES = [
    (8, 8, (2, 2), (2, 2), "valid"),
    (7, 9, (2, 2), (2, 2), "valid"),
    (7, 9, (2, 2), (2, 2), "same"),
    (5, 6, (3, 3), (2, 2), "valid"),
    (8, 8, (3, 3), (2, 2), "same"),
    (10, 11, (4, 3), (3, 2), "same"),
    (7, 10, (3, 2), (1, 2), "same"),
    (9, 8, (3, 3), (1, 1), "same"),
    (5, 7, (2, 3), (1, 2), "valid"),
    (6, 6, (2, 2), (1, 1), "same"),
    (1, 5, (2, 2), (2, 2), "same"),
]


def _args(h, w, pool, stride, padding):
    oh, pt = geometry(h, pool[0], stride[0], padding)
    ow, pl = geometry(w, pool[1], stride[1], padding)
    return (oh, ow), (pt, pl)


def _distinct(shape, seed):
    # A random permutation: no ties, so max pooling is differentiable everywhere.
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))).reshape(shape) - 50.0) / 7.0


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_max_pool_forward_matches_loops(case, dtype, nblocks):
    h, w, pool, stride, padding = case
    out, pad = _args(h, w, pool, stride, padding)
    x = _distinct((2, 3, h, w), seed=h * w).astype(dtype)
    y, argmax = max_pool2d_forward(x, *pool, *stride, *pad, *out, nblocks)
    ref_y, ref_arg = reference(x.astype(np.float64), pool, stride, pad, out, "max")
    assert y.dtype == dtype and argmax.dtype == np.int32 and y.shape == (2, 3) + out
    np.testing.assert_array_equal(y, ref_y.astype(dtype))
    np.testing.assert_array_equal(argmax, ref_arg)


@pytest.mark.parametrize("case", CASES)
def test_max_pool_ties_keep_first_maximum(case):
    h, w, pool, stride, padding = case
    out, pad = _args(h, w, pool, stride, padding)
    x = np.random.default_rng(1).integers(0, 3, (2, 2, h, w)).astype(np.float32)
    x[0, 0] = -np.inf  # a plane without a finite value still records real positions
    y, argmax = max_pool2d_forward(x, *pool, *stride, *pad, *out, 2)
    ref_y, ref_arg = reference(x.astype(np.float64), pool, stride, pad, out, "max")
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(argmax, ref_arg)


@pytest.mark.parametrize("pool, stride", [((2, 2), (2, 2)), ((3, 3), (1, 1))])
def test_max_pool_propagates_nan(pool, stride):
    x = _distinct((1, 1, 6, 6), seed=2)
    x[0, 0, 2, 3] = np.nan
    out, pad = _args(6, 6, pool, stride, "valid")
    y, argmax = max_pool2d_forward(x, *pool, *stride, *pad, *out, 1)
    ref_y, _ = reference(np.nan_to_num(x, nan=1e9), pool, stride, pad, out, "max")
    np.testing.assert_array_equal(np.isnan(y), ref_y == 1e9)
    assert (argmax[np.isnan(y)] == 2 * 6 + 3).all()


def test_window_wholly_in_padding():
    # pad_top 3 puts the first row of windows above the input: nothing to pool there.
    x = _distinct((1, 2, 3, 3), seed=3)
    pool, stride, pad, out = (2, 2), (2, 2), (3, 0), (3, 2)
    y, argmax = max_pool2d_forward(x, *pool, *stride, *pad, *out, 2)
    ref_y, ref_arg = reference(x, pool, stride, pad, out, "max")
    assert np.isneginf(y[:, :, 0]).all() and (argmax[:, :, 0] == -1).all()
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(argmax, ref_arg)
    dy = np.random.default_rng(4).standard_normal(y.shape)
    np.testing.assert_array_equal(max_pool2d_backward(dy, argmax, 3, 3, 2), scatter_reference(dy, ref_arg, 3, 3))
    a = avg_pool2d_forward(x, *pool, *stride, *pad, *out, 1)
    np.testing.assert_allclose(a, reference(x, pool, stride, pad, out, "avg"), rtol=1e-14)
    assert (a[:, :, 0] == 0).all()
    np.testing.assert_allclose(avg_pool2d_backward(dy, 3, 3, *pool, *stride, *pad, 1),
                               spread_reference(dy, 3, 3, pool, stride, pad), rtol=1e-14)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_avg_pool_forward_matches_loops(case, dtype, nblocks):
    h, w, pool, stride, padding = case
    out, pad = _args(h, w, pool, stride, padding)
    x = np.random.default_rng(h + w).standard_normal((2, 3, h, w)).astype(dtype)
    y = avg_pool2d_forward(x, *pool, *stride, *pad, *out, nblocks)
    ref = reference(x.astype(np.float64), pool, stride, pad, out, "avg")
    assert y.dtype == dtype and y.shape == (2, 3) + out
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


def _numeric_gradient(f, x, eps=1e-6):
    grad = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        up = f(x)
        x[idx] = old - eps
        down = f(x)
        x[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("case", [CASES[i] for i in (1, 2, 5, 7, 8)])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_backward_finite_differences_of_reference(case, mode):
    h, w, pool, stride, padding = case
    out, pad = _args(h, w, pool, stride, padding)
    x = _distinct((1, 2, h, w), seed=5)
    R = np.random.default_rng(6).standard_normal((1, 2) + out)

    def loss(x_):
        result = reference(x_, pool, stride, pad, out, mode)
        return float(np.sum((result[0] if mode == "max" else result) * R))

    numeric = _numeric_gradient(loss, x)
    if mode == "max":
        _, argmax = max_pool2d_forward(x, *pool, *stride, *pad, *out, 1)
        dx = max_pool2d_backward(R, argmax, h, w, 2)
    else:
        dx = avg_pool2d_backward(R, h, w, *pool, *stride, *pad, 2)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_backward_matches_analytic_reference(case, dtype, nblocks):
    h, w, pool, stride, padding = case
    out, pad = _args(h, w, pool, stride, padding)
    rng = np.random.default_rng(7)
    # Few distinct values: many ties, and with overlapping windows one input often
    # wins several windows, whose gradients must add up.
    x = rng.integers(0, 4, (2, 3, h, w)).astype(dtype)
    dy = rng.standard_normal((2, 3) + out).astype(dtype)
    _, argmax = max_pool2d_forward(x, *pool, *stride, *pad, *out, nblocks)
    _, ref_arg = reference(x.astype(np.float64), pool, stride, pad, out, "max")
    dx = max_pool2d_backward(dy, argmax, h, w, nblocks)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    assert dx.dtype == dtype and dx.shape == (2, 3, h, w)
    np.testing.assert_allclose(dx, scatter_reference(dy.astype(np.float64), ref_arg, h, w), rtol=tol, atol=tol)
    da = avg_pool2d_backward(dy, h, w, *pool, *stride, *pad, nblocks)
    assert da.dtype == dtype
    np.testing.assert_allclose(da, spread_reference(dy.astype(np.float64), h, w, pool, stride, pad), rtol=tol, atol=tol)


def test_overlapping_windows_accumulate_at_a_shared_winner():
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0  # wins every 3x3 window at stride 1 (all nine of them)
    y, argmax = max_pool2d_forward(x, 3, 3, 1, 1, 0, 0, 3, 3, 1)
    assert (argmax == 12).all()
    dy = np.arange(9.0).reshape(1, 1, 3, 3)
    dx = max_pool2d_backward(dy, argmax, 5, 5, 1)
    assert dx[0, 0, 2, 2] == dy.sum() and np.count_nonzero(dx) == 1


def test_large_hot_shapes_serial_and_parallel_agree():
    x = np.random.default_rng(8).standard_normal((4, 8, 28, 28)).astype(np.float32)
    results = []
    for nb in (1, 2, 3):
        y, argmax = max_pool2d_forward(x, 2, 2, 2, 2, 0, 0, 14, 14, nb)
        a = avg_pool2d_forward(x, 2, 2, 2, 2, 0, 0, 14, 14, nb)
        results.append((y, argmax, max_pool2d_backward(y, argmax, 28, 28, nb),
                        a, avg_pool2d_backward(a, 28, 28, 2, 2, 2, 2, 0, 0, nb)))
    ref = x.reshape(4, 8, 14, 2, 14, 2)
    np.testing.assert_array_equal(results[0][0], ref.max(axis=(3, 5)))
    np.testing.assert_allclose(results[0][3], ref.mean(axis=(3, 5), dtype=np.float64), rtol=1e-6, atol=1e-6)
    for other in results[1:]:
        for p, q in zip(results[0], other):
            np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_global_avg_pool2d(dtype, nblocks):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 5, 7, 6)).astype(dtype)
    y = global_avg_pool2d_forward(x, nblocks)
    assert y.dtype == dtype and y.shape == (3, 5)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=(2, 3)), rtol=tol, atol=tol)
    dy = rng.standard_normal((3, 5)).astype(dtype)
    dx = global_avg_pool2d_backward(dy, 7, 6, nblocks)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, np.broadcast_to(dy[:, :, None, None] / 42.0, x.shape), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_global_avg_pool1d(dtype, nblocks):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 11, 5)).astype(dtype)
    y = global_avg_pool1d_forward(x, nblocks)
    assert y.dtype == dtype and y.shape == (3, 5)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=1), rtol=tol, atol=tol)
    dy = rng.standard_normal((3, 5)).astype(dtype)
    dx = global_avg_pool1d_backward(dy, 11, nblocks)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, np.broadcast_to(dy[:, None, :] / 11.0, x.shape), rtol=tol, atol=tol)


def test_global_pools_finite_differences():
    x = np.random.default_rng(11).standard_normal((2, 3, 4, 5))
    R = np.random.default_rng(12).standard_normal((2, 3))
    numeric = _numeric_gradient(lambda x_: float(np.sum(global_avg_pool2d_forward(x_, 1) * R)), x)
    np.testing.assert_allclose(global_avg_pool2d_backward(R, 4, 5, 1), numeric, rtol=1e-6, atol=1e-9)
    x1 = x.reshape(2, 12, 5)
    R1 = np.random.default_rng(13).standard_normal((2, 5))
    numeric = _numeric_gradient(lambda x_: float(np.sum(global_avg_pool1d_forward(x_, 1) * R1)), x1)
    np.testing.assert_allclose(global_avg_pool1d_backward(R1, 12, 1), numeric, rtol=1e-6, atol=1e-9)


def test_global_avg_pool_float32_large_offset():
    # float64 accumulation: 1000 + small noise over many elements keeps its mean exact
    # to float32 rounding.
    rng = np.random.default_rng(14)
    x = (1000 + 0.01 * rng.standard_normal((2, 3, 64, 64))).astype(np.float32)
    ref = x.astype(np.float64).mean(axis=(2, 3))
    np.testing.assert_allclose(global_avg_pool2d_forward(x, 2), ref, rtol=1e-7)
    x1 = x.reshape(2, 3 * 64, 64)
    np.testing.assert_allclose(global_avg_pool1d_forward(x1, 2), x1.astype(np.float64).mean(axis=1), rtol=1e-7)


@pytest.mark.parametrize("case", [c for c in CASES if c[4] == "valid"] + [(9, 8, (3, 3), (1, 1), "same")])
def test_against_torch(case):
    """Extra reference where torch expresses the same padding (valid, or symmetric same)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    h, w, pool, stride, padding = case
    out, pad = _args(h, w, pool, stride, padding)
    x = _distinct((2, 3, h, w), seed=15)
    xt = torch.tensor(x, requires_grad=True)
    yt, it = F.max_pool2d_with_indices(xt, pool, stride, pad)
    y, argmax = max_pool2d_forward(x, *pool, *stride, *pad, *out, 2)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(argmax, it.numpy())
    dy = np.random.default_rng(16).standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(max_pool2d_backward(dy, argmax, h, w, 2), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    xt.grad = None
    at = F.avg_pool2d(xt, pool, stride, pad, count_include_pad=False)
    np.testing.assert_allclose(avg_pool2d_forward(x, *pool, *stride, *pad, *out, 2), at.detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    at.backward(torch.tensor(dy))
    np.testing.assert_allclose(avg_pool2d_backward(dy, h, w, *pool, *stride, *pad, 2), xt.grad.numpy(),
                               rtol=1e-12, atol=1e-12)
