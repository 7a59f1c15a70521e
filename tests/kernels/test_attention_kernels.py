"""Tiled attention kernels against a full-matrix NumPy reference and finite differences."""
import subprocess
import sys

import numpy as np
import pytest

from nnjit.kernels.attention import KEY_TILE, QUERY_TILE, attention_backward, attention_forward, attention_weights

NO_MASK = np.zeros((0, 0), dtype=np.uint8)
U64 = np.uint64
M64 = (1 << 64) - 1


def keep_mask_reference(seed, shape, rate):
    """The documented dropout mask: weight (b, h, i, j) is kept when the top 53 bits of the
    n-th SplitMix64 output from seed, n = ((b * H + h) * Tq + i) * Tk + j, are >= rate * 2**53."""
    n = np.arange(int(np.prod(shape)), dtype=np.uint64).reshape(shape)
    with np.errstate(over="ignore"):
        z = U64(seed & M64) + (n + U64(1)) * U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
        z = z ^ (z >> U64(31))
    return (z >> U64(11)) >= U64(rate * 2.0 ** 53)


def allowed(shape, key_mask, causal):
    """(B, 1, Tq, Tk) boolean: which keys each query attends."""
    b, _, tq, tk = shape
    allow = np.ones((b, 1, tq, tk), dtype=bool)
    if key_mask.shape[0]:
        allow &= key_mask[:, None, None, :].astype(bool)
    if causal:
        allow &= np.arange(tk)[None, :] <= np.arange(tq)[:, None] + (tk - tq)
    return allow


def reference(q, k, v, key_mask, causal, scale, keep=None, rate=0.0):
    """Full (Tq, Tk) softmax in float64: returns out, lse, P (undropped) and A (dropped)."""
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    allow = allowed(s.shape, key_mask, causal)
    s = np.where(allow, s, -np.inf)
    top = s.max(-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.where(allow, np.exp(s - top), 0.0)
    total = e.sum(-1, keepdims=True)
    p = e / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore"):
        lse = np.where(total[..., 0] > 0, top[..., 0] + np.log(total[..., 0]), -np.inf)
    a = p if keep is None else p * keep / (1 - rate)
    return a @ v, lse, p, a


def reference_backward(dout, q, k, v, key_mask, causal, scale, keep=None, rate=0.0):
    _, _, p, a = reference(q, k, v, key_mask, causal, scale, keep, rate)
    dout = dout.astype(np.float64)
    dv = np.swapaxes(a, -1, -2) @ dout
    da = dout @ np.swapaxes(v, -1, -2)
    dp = da if keep is None else da * keep / (1 - rate)
    ds = p * (dp - (p * dp).sum(-1, keepdims=True))
    return ds @ k * scale, np.swapaxes(ds, -1, -2) @ q * scale, dv


def _problem(b, h, tq, tk, d, dtype=np.float64, seed=0, mask=False, spread=1.0):
    rng = np.random.default_rng(seed)
    q = (spread * rng.standard_normal((b, h, tq, d))).astype(dtype)
    k = (spread * rng.standard_normal((b, h, tk, d))).astype(dtype)
    v = rng.standard_normal((b, h, tk, d)).astype(dtype)
    if mask:
        key_mask = (rng.random((b, tk)) > 0.3).astype(np.uint8)
        key_mask[:, 0] = 1
        if b > 1:
            key_mask[-1] = 0  # a fully padded sequence: its queries attend nothing
    else:
        key_mask = NO_MASK
    return q, k, v, key_mask


# (B, H, Tq, Tk, d): lengths below, at and across the tile sizes, cross-attention both ways,
# odd d, and B * H not a multiple of the thread blocks.
SHAPES = [
    (1, 1, 1, 1, 3),
    (2, 3, 7, 7, 5),
    (1, 2, 33, 33, 4),
    (2, 1, 70, 70, 7),
    (1, 2, 130, 130, 3),
    (1, 3, 65, 20, 3),
    (3, 1, 20, 140, 6),
    (1, 1, 140, 270, 5),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_forward_and_backward_match_numpy(shape, causal, mask, nblocks):
    b, h, tq, tk, d = shape
    q, k, v, key_mask = _problem(b, h, tq, tk, d, mask=mask, seed=tq + tk, spread=1.5)
    scale = 1 / np.sqrt(d)
    out, lse = attention_forward(q, k, v, key_mask, causal, scale, 0.0, 0, nblocks)
    ref_out, ref_lse, _, _ = reference(q, k, v, key_mask, causal, scale)
    assert out.shape == q.shape and lse.shape == (b, h, tq) and lse.dtype == np.float64
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-12, atol=1e-12)

    dout = np.random.default_rng(1).standard_normal(out.shape)
    dq, dk, dv = attention_backward(dout, q, k, v, out, lse, key_mask, causal, scale, 0.0, 0, nblocks)
    for got, want in zip((dq, dk, dv), reference_backward(dout, q, k, v, key_mask, causal, scale)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-11)

    weights = attention_weights(q, k, key_mask, causal, scale, nblocks)
    np.testing.assert_allclose(weights, reference(q, k, v, key_mask, causal, scale)[2], rtol=1e-12, atol=1e-14)


def test_queries_with_nothing_to_attend_are_zero_without_nan():
    """Causal cross-attention with Tq > Tk leaves the first queries no key; a padded
    sequence leaves all its queries none."""
    q, k, v, key_mask = _problem(2, 2, 9, 4, 3, mask=True, seed=3)
    out, lse = attention_forward(q, k, v, key_mask, True, 0.5, 0.0, 0, 2)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, :, :5], 0.0)  # query i sees keys j <= i - 5
    np.testing.assert_array_equal(out[1], 0.0)
    assert np.isneginf(lse[:, :, :5]).all() and np.isneginf(lse[1]).all()
    assert np.isfinite(lse[0, :, 5:]).all()
    dq, dk, dv = attention_backward(np.ones_like(out), q, k, v, out, lse, key_mask, True, 0.5, 0.0, 0, 2)
    for g in (dq, dk, dv):
        assert np.isfinite(g).all()
        np.testing.assert_array_equal(g[1], 0.0)
    np.testing.assert_array_equal(dq[:, :, :5], 0.0)


def test_large_score_spread_across_key_tiles():
    """The running maximum grows from tile to tile (rescaling), and some scores are far
    below the maximum (exp underflows to zero)."""
    tk = 3 * KEY_TILE + 5
    q, k, v, _ = _problem(1, 2, QUERY_TILE + 3, tk, 4, seed=7)
    k *= np.linspace(0.1, 30, tk)[:, None]  # later keys score ever higher
    for causal in (False, True):
        out, lse = attention_forward(q, k, v, NO_MASK, causal, 1.0, 0.0, 0, 1)
        ref_out, ref_lse, _, _ = reference(q, k, v, NO_MASK, causal, 1.0)
        np.testing.assert_allclose(out, ref_out, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(lse, ref_lse, rtol=1e-12)


def _numeric_gradient(f, array, eps=1e-6):
    numeric = np.empty_like(array)
    for idx in np.ndindex(array.shape):
        old = array[idx]
        array[idx] = old + eps
        up = f()
        array[idx] = old - eps
        down = f()
        array[idx] = old
        numeric[idx] = (up - down) / (2 * eps)
    return numeric


@pytest.mark.parametrize("causal, mask, rate", [(False, False, 0.0), (True, True, 0.0), (True, False, 0.3),
                                                (False, True, 0.5)])
def test_gradients_match_finite_differences(causal, mask, rate):
    """Gradient of sum(out * R) w.r.t. q, k, v by central differences of the kernel itself;
    with dropout the same seed regenerates the same mask."""
    q, k, v, key_mask = _problem(2, 2, 6, 5, 3, mask=mask, seed=11)
    if mask:
        key_mask[-1] = 1
        key_mask[-1, 2] = 0
    R = np.random.default_rng(12).standard_normal(q.shape)
    seed = 987654321
    out, lse = attention_forward(q, k, v, key_mask, causal, 0.7, rate, seed, 1)
    dq, dk, dv = attention_backward(R, q, k, v, out, lse, key_mask, causal, 0.7, rate, seed, 2)

    def f():
        return float(np.sum(attention_forward(q, k, v, key_mask, causal, 0.7, rate, seed, 2)[0] * R))

    for array, grad in ((q, dq), (k, dk), (v, dv)):
        np.testing.assert_allclose(grad, _numeric_gradient(f, array), rtol=1e-6, atol=1e-8)


def test_causal_outputs_ignore_later_keys():
    q, k, v, _ = _problem(2, 2, 80, 80, 4, seed=13)
    out, _ = attention_forward(q, k, v, NO_MASK, True, 0.5, 0.0, 0, 2)
    k2, v2 = k.copy(), v.copy()
    k2[:, :, 50:] = 100.0
    v2[:, :, 50:] = -7.0
    out2, _ = attention_forward(q, k2, v2, NO_MASK, True, 0.5, 0.0, 0, 2)
    np.testing.assert_array_equal(out[:, :, :50], out2[:, :, :50])
    assert not np.allclose(out[:, :, 50:], out2[:, :, 50:])


def test_serial_and_parallel_paths_agree():
    q, k, v, key_mask = _problem(5, 1, 70, 70, 6, mask=True, seed=14)
    dout = np.cos(q)
    results = []
    for nb in (1, 2, 3, 16):
        out, lse = attention_forward(q, k, v, key_mask, True, 0.4, 0.2, 5, nb)
        grads = attention_backward(dout, q, k, v, out, lse, key_mask, True, 0.4, 0.2, 5, nb)
        results.append((out, lse) + grads)
    for other in results[1:]:
        for a, c in zip(results[0], other):
            np.testing.assert_array_equal(a, c)


def test_float32_larger_case():
    b, h, t, d = 2, 4, 150, 32
    q, k, v, key_mask = _problem(b, h, t, t, d, dtype=np.float32, seed=15, mask=True)
    scale = 1 / np.sqrt(d)
    out, lse = attention_forward(q, k, v, key_mask, True, scale, 0.0, 0, 2)
    assert out.dtype == np.float32 and lse.dtype == np.float64
    ref_out, ref_lse, _, _ = reference(q, k, v, key_mask, True, scale)
    np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-5, atol=1e-5)
    dout = np.random.default_rng(16).standard_normal(q.shape).astype(np.float32)
    grads = attention_backward(dout, q, k, v, out, lse, key_mask, True, scale, 0.0, 0, 2)
    for got, want in zip(grads, reference_backward(dout, q, k, v, key_mask, True, scale)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    weights = attention_weights(q, k, key_mask, True, scale, 2)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, reference(q, k, v, key_mask, True, scale)[2], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_dropout_matches_documented_mask(causal):
    """Forward and backward with dropout equal the reference with the documented hash mask."""
    b, h, tq, tk, d = 2, 3, 70, 67, 5
    q, k, v, key_mask = _problem(b, h, tq, tk, d, mask=True, seed=17)
    rate, seed = 0.3, -123456789
    keep = keep_mask_reference(seed, (b, h, tq, tk), rate)
    assert 0.6 < keep.mean() < 0.8
    out, lse = attention_forward(q, k, v, key_mask, causal, 0.5, rate, seed, 2)
    ref_out, ref_lse, _, _ = reference(q, k, v, key_mask, causal, 0.5, keep, rate)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-12, atol=1e-12)  # lse ignores dropout
    dout = np.random.default_rng(18).standard_normal(q.shape)
    grads = attention_backward(dout, q, k, v, out, lse, key_mask, causal, 0.5, rate, seed, 2)
    for got, want in zip(grads, reference_backward(dout, q, k, v, key_mask, causal, 0.5, keep, rate)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-11)


def test_dropout_is_deterministic_and_unbiased():
    q, k, v, _ = _problem(1, 2, 12, 12, 4, seed=19)
    base, _ = attention_forward(q, k, v, NO_MASK, False, 0.5, 0.0, 0, 1)
    first, _ = attention_forward(q, k, v, NO_MASK, False, 0.5, 0.25, 42, 2)
    again, _ = attention_forward(q, k, v, NO_MASK, False, 0.5, 0.25, 42, 1)
    other, _ = attention_forward(q, k, v, NO_MASK, False, 0.5, 0.25, 43, 1)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    mean = np.mean([attention_forward(q, k, v, NO_MASK, False, 0.5, 0.25, s, 1)[0] for s in range(400)], axis=0)
    # E[out] is the output without dropout; 400 draws leave a few percent of noise.
    assert np.abs(mean - base).mean() < 0.05 * np.abs(base).mean()
    assert np.abs(first - base).mean() > 0.1 * np.abs(base).mean()


def test_head_split_views_of_a_projection():
    """q, k, v may be (B, T, H, d) arrays viewed as (B, H, T, d) (last axis contiguous), as a
    layer gets them from a projection without copying; outputs are C-contiguous."""
    rng = np.random.default_rng(20)
    b, t, h, d = 2, 70, 3, 5
    qkv = rng.standard_normal((b, t, 3, h, d))
    q, k, v = (qkv[:, :, n].transpose(0, 2, 1, 3) for n in range(3))
    assert not q.flags.c_contiguous
    out, lse = attention_forward(q, k, v, NO_MASK, True, 0.4, 0.0, 0, 2)
    np.testing.assert_allclose(out, reference(q, k, v, NO_MASK, True, 0.4)[0], rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal((b, t, h, d)).transpose(0, 2, 1, 3)
    grads = attention_backward(dout, q, k, v, out, lse, NO_MASK, True, 0.4, 0.0, 0, 2)
    for got, want in zip(grads, reference_backward(dout, q, k, v, NO_MASK, True, 0.4)):
        assert got.flags.c_contiguous
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-11)


def test_empty_key_sequence():
    q, k, v, _ = _problem(1, 2, 3, 0, 4)
    out, lse = attention_forward(q, k, v, NO_MASK, False, 0.5, 0.0, 0, 2)
    np.testing.assert_array_equal(out, 0.0)
    assert np.isneginf(lse).all()
    dq, dk, dv = attention_backward(np.ones_like(out), q, k, v, out, lse, NO_MASK, False, 0.5, 0.0, 0, 2)
    np.testing.assert_array_equal(dq, 0.0)
    assert dk.shape == k.shape and dv.shape == v.shape


_MEMORY_SCRIPT = """
import resource, sys
import numpy as np
from nnjit.kernels.attention import attention_forward
t = int(sys.argv[1])
no_mask = np.zeros((0, 0), np.uint8)
small = np.ones((1, 1, 8, 32), np.float32)
attention_forward(small, small, small, no_mask, True, 0.2, 0.0, 0, 2)  # compile or load first
rng = np.random.default_rng(0)
q, k, v = (rng.random((1, 4, t, 32), dtype=np.float32) for _ in range(3))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out, lse = attention_forward(q, k, v, no_mask, True, 0.2, 0.0, 0, 2)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024 - out.nbytes - lse.nbytes)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in kilobytes on Linux")
def test_forward_memory_grows_linearly():
    """At T = 4096 (B = 1, H = 4, d = 32) the peak memory beyond the outputs stays far below
    one T x T score matrix per head (256 MB in float32): only tiles are allocated."""
    result = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, "4096"], capture_output=True, text=True,
                            check=True, timeout=300)
    extra = int(result.stdout.split()[-1])
    assert extra < 16 * 2**20
