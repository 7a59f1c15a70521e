"""Optimizer, clipping and weight-penalty kernels against NumPy references.

Each kernel updates a range of a flat buffer in place; the references below are the
published rules written out in float64 NumPy.  Elementwise rules must give bitwise the
same result whatever the number of blocks, and must leave everything outside the range
untouched.
"""
import numba
import numpy as np
import pytest

from nnjit.kernels import optimizers as K
from nnjit.kernels import regularizers as KR

DTYPES = [np.float32, np.float64]
NBLOCKS = [1, 2, 3]
START, STOP, SIZE = 5, 45, 53   # a range that does not start at 0 nor end at the buffer's end


def _tol(dtype):
    return dict(rtol=2e-6, atol=2e-7) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)


def _buffers(dtype, count, seed=0, positive=()):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        x = rng.standard_normal(SIZE)
        if i in positive:
            x = np.abs(x) + 0.1
        out.append(x.astype(dtype))
    return out


def _untouched(after, before):
    np.testing.assert_array_equal(after[:START], before[:START])
    np.testing.assert_array_equal(after[STOP:], before[STOP:])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", NBLOCKS)
@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.0),
                                                  (0.9, True, 0.0), (0.5, True, 0.1)])
def test_sgd_update(dtype, nblocks, momentum, nesterov, wd):
    p, g, vel = _buffers(dtype, 3)
    t = dtype
    lr = 0.05
    p0, vel0 = p.copy(), vel.copy()
    vel_arg = vel if momentum > 0 else np.zeros(0, dtype)
    K.sgd_update(p, g, vel_arg, START, STOP, t(lr), t(momentum), nesterov, t(1 - lr * wd),
                 t(1.0), t(np.inf), nblocks)
    s = slice(START, STOP)
    # Keras 3: decoupled decay first, then the rule.
    ref = p0[s].astype(np.float64)
    ref = ref - ref * wd * lr
    gs = g[s].astype(np.float64)
    if momentum > 0:
        v = momentum * vel0[s].astype(np.float64) - lr * gs
        ref = ref + (momentum * v - lr * gs if nesterov else v)
        np.testing.assert_allclose(vel[s], v, **_tol(dtype))
        _untouched(vel, vel0)
    else:
        ref = ref - lr * gs
    np.testing.assert_allclose(p[s], ref, **_tol(dtype))
    _untouched(p, p0)
    assert p.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", NBLOCKS)
@pytest.mark.parametrize("momentum", [0.0, 0.8])
def test_rmsprop_update(dtype, nblocks, momentum):
    p, g, v, mom = _buffers(dtype, 4, positive=(2,))
    t = dtype
    lr, rho, eps = 0.01, 0.9, 1e-7
    p0, v0, mom0 = p.copy(), v.copy(), mom.copy()
    mom_arg = mom if momentum > 0 else np.zeros(0, dtype)
    K.rmsprop_update(p, g, v, mom_arg, START, STOP, t(lr), t(rho), t(1 - rho), t(momentum), t(eps),
                     t(1.0), t(np.inf), nblocks)
    s = slice(START, STOP)
    gs = g[s].astype(np.float64)
    v_ref = rho * v0[s] + (1 - rho) * gs ** 2
    inc = lr * gs / np.sqrt(v_ref + eps)   # Keras: epsilon inside the root
    if momentum > 0:
        m_ref = momentum * mom0[s] + inc
        p_ref = p0[s] - m_ref
        np.testing.assert_allclose(mom[s], m_ref, **_tol(dtype))
        _untouched(mom, mom0)
    else:
        p_ref = p0[s] - inc
    np.testing.assert_allclose(v[s], v_ref, **_tol(dtype))
    np.testing.assert_allclose(p[s], p_ref, **_tol(dtype))
    _untouched(p, p0)
    _untouched(v, v0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", NBLOCKS)
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_adam_update(dtype, nblocks, wd):
    p, g, m, v = _buffers(dtype, 4, positive=(3,))
    t = dtype
    lr, b1, b2, eps, step = 0.01, 0.9, 0.999, 1e-7, 3
    bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
    p0, m0, v0 = p.copy(), m.copy(), v.copy()
    K.adam_update(p, g, m, v, START, STOP, t(lr / bc1), t(1 / np.sqrt(bc2)), t(1 - b1), t(b2),
                  t(1 - b2), t(eps), t(1 - lr * wd), t(1.0), t(np.inf), nblocks)
    s = slice(START, STOP)
    gs = g[s].astype(np.float64)
    m_ref = b1 * m0[s] + (1 - b1) * gs
    v_ref = b2 * v0[s] + (1 - b2) * gs ** 2
    p_ref = p0[s] * (1 - lr * wd) - lr * (m_ref / bc1) / (np.sqrt(v_ref / bc2) + eps)
    np.testing.assert_allclose(m[s], m_ref, **_tol(dtype))
    np.testing.assert_allclose(v[s], v_ref, **_tol(dtype))
    np.testing.assert_allclose(p[s], p_ref, **_tol(dtype))
    for after, before in ((p, p0), (m, m0), (v, v0)):
        _untouched(after, before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_scale_and_clip_are_fused(dtype):
    # gscale multiplies first, then clipvalue clips: the same as SGD on pre-clipped grads.
    p, g = _buffers(dtype, 2, seed=3)
    g *= 3
    t = dtype
    fused = p.copy()
    K.sgd_update(fused, g, np.zeros(0, dtype), 0, SIZE, t(0.1), t(0.0), False, t(1.0), t(0.5),
                 t(0.4), 2)
    expected = p - t(0.1) * np.clip(g * t(0.5), -0.4, 0.4)
    np.testing.assert_allclose(fused, expected, **_tol(dtype))


@pytest.mark.parametrize("kernel", ["sgd", "rmsprop", "adam"])
@pytest.mark.parametrize("clipvalue", [np.inf, 0.3])
def test_block_count_does_not_change_the_result(kernel, clipvalue):
    # Elementwise rules: any split into blocks gives bitwise the same buffers.
    results = []
    for nblocks in (1, 2, 3, 7):
        p, g, a, b = _buffers(np.float32, 4, seed=5, positive=(3,))
        f = np.float32
        if kernel == "sgd":
            K.sgd_update(p, g, a, START, STOP, f(0.1), f(0.9), True, f(0.99), f(1.0), f(clipvalue),
                         nblocks)
        elif kernel == "rmsprop":
            K.rmsprop_update(p, g, b, a, START, STOP, f(0.01), f(0.9), f(0.1), f(0.5), f(1e-7),
                             f(1.0), f(clipvalue), nblocks)
        else:
            K.adam_update(p, g, a, b, START, STOP, f(0.1), f(3.0), f(0.1), f(0.999), f(0.001),
                          f(1e-7), f(0.99), f(1.0), f(clipvalue), nblocks)
        results.append((p, a, b))
    for other in results[1:]:
        for x, y in zip(results[0], other):
            np.testing.assert_array_equal(x, y)


def test_nan_gradient_propagates_through_clipping():
    p = np.ones(4, np.float32)
    g = np.array([np.nan, 5.0, -5.0, 0.1], np.float32)
    f = np.float32
    K.sgd_update(p, g, np.zeros(0, np.float32), 0, 4, f(1.0), f(0.0), False, f(1.0), f(1.0), f(1.0), 1)
    assert np.isnan(p[0])
    np.testing.assert_allclose(p[1:], [0.0, 2.0, 0.9], rtol=1e-6)


def test_empty_range_is_a_no_op():
    p, g, m, v = _buffers(np.float64, 4)
    before = [p.copy(), m.copy(), v.copy()]
    K.adam_update(p, g, m, v, 7, 7, 0.1, 1.0, 0.1, 0.999, 0.001, 1e-7, 1.0, 1.0, np.inf, 2)
    for after, b in zip((p, m, v), before):
        np.testing.assert_array_equal(after, b)


# ----------------------------------------------------------------------- clipping

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", NBLOCKS)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000])
def test_sum_of_squares(dtype, nblocks, n):
    x = np.random.default_rng(n).standard_normal(n + 6).astype(dtype)
    got = K.sum_of_squares(x, 3, 3 + n, nblocks)
    ref = np.sum(x[3:3 + n].astype(np.float64) ** 2)
    assert got == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", NBLOCKS)
@pytest.mark.parametrize("clipnorm", [0.5, 1e6])
def test_clip_by_norm_over_ranges(dtype, nblocks, clipnorm):
    x = _buffers(dtype, 1, seed=7)[0]
    x0 = x.copy()
    ranges = np.array([[0, 10], [20, 30], [40, SIZE]], dtype=np.int64)
    inside = np.concatenate([x0[a:b] for a, b in ranges]).astype(np.float64)
    norm = np.sqrt(np.sum(inside ** 2))
    got = K.clip_by_norm(x, ranges, clipnorm, nblocks)
    assert got == pytest.approx(norm, rel=1e-12)
    factor = clipnorm / max(norm, clipnorm)
    for a, b in ranges:
        np.testing.assert_allclose(x[a:b], x0[a:b] * factor, **_tol(dtype))
    np.testing.assert_array_equal(x[10:20], x0[10:20])
    np.testing.assert_array_equal(x[30:40], x0[30:40])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", NBLOCKS)
def test_clip_by_value_over_ranges(dtype, nblocks):
    x = _buffers(dtype, 1, seed=8)[0]
    x0 = x.copy()
    ranges = np.array([[2, 20], [25, 50]], dtype=np.int64)
    K.clip_by_value(x, ranges, 0.5, nblocks)
    for a, b in ranges:
        np.testing.assert_array_equal(x[a:b], np.clip(x0[a:b], -0.5, 0.5))
    np.testing.assert_array_equal(x[20:25], x0[20:25])
    np.testing.assert_array_equal(x[:2], x0[:2])


# ------------------------------------------------------------------ weight penalty

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", NBLOCKS)
@pytest.mark.parametrize("n", [5, 8, 100, 1001])
def test_l1l2_penalty_and_grad(dtype, nblocks, n):
    rng = np.random.default_rng(n)
    w = rng.standard_normal(n).astype(dtype)
    w[0] = 0.0   # sign(0) = 0
    g = rng.standard_normal(n).astype(dtype)
    g0 = g.copy()
    l1, l2 = 0.03, 0.02
    sum_abs, sum_sq = KR.l1l2_penalty_and_grad(w, g, dtype(l1), dtype(2 * l2), nblocks)
    wd = w.astype(np.float64)
    assert sum_abs == pytest.approx(np.abs(wd).sum(), rel=1e-12)
    assert sum_sq == pytest.approx((wd ** 2).sum(), rel=1e-12)
    np.testing.assert_allclose(g, g0 + l1 * np.sign(wd) + 2 * l2 * wd, **_tol(dtype))
    # Without a gradient buffer only the sums are computed.
    again = KR.l1l2_penalty_and_grad(w, g[:0], dtype(l1), dtype(2 * l2), nblocks)
    assert again == pytest.approx((sum_abs, sum_sq), rel=1e-12)


# ---------------------------------------------------------------------- style rules

@pytest.mark.parametrize("module", [K, KR])
def test_kernels_are_cached_and_not_fastmath(module):
    dispatchers = [v for v in vars(module).values() if isinstance(v, numba.core.registry.CPUDispatcher)]
    assert dispatchers
    for d in dispatchers:
        assert not d.targetoptions.get("fastmath"), d.py_func.__name__
        assert type(d._cache).__name__ != "NullCache", d.py_func.__name__
