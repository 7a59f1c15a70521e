"""Loss kernels against plain NumPy/SciPy references, finite differences and PyTorch."""
import numpy as np
import pytest
from scipy.special import expit, logsumexp

import nnjit  # noqa: F401  (sets up the kernel cache and thread limits)
from nnjit.kernels import losses as K

DTYPES = [np.float32, np.float64]
# The kernels sum in float64, so the loss agrees with a float64 reference on the same
# inputs to about the precision of the input type (the softmax exp runs in float32 for
# float32 inputs); float32 gradients are rounded on output.
LOSS_RTOL = {np.float32: 1e-6, np.float64: 1e-12}
GRAD_TOL = {np.float32: dict(rtol=1e-5, atol=1e-8), np.float64: dict(rtol=1e-11, atol=1e-15)}


# ---------------------------------------------------------------- NumPy references (float64)


def ref_softmax(z):
    z = z.astype(np.float64)
    return np.exp(z - logsumexp(z, axis=1, keepdims=True))


def ref_sparse_ce(z, y):
    z = z.astype(np.float64)
    n = z.shape[0]
    loss = np.mean(logsumexp(z, axis=1) - z[np.arange(n), y])
    p = ref_softmax(z)
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    return loss, (p - onehot) / n, p


def ref_dense_ce(z, t):
    z, t = z.astype(np.float64), t.astype(np.float64)
    logp = z - logsumexp(z, axis=1, keepdims=True)
    loss = -np.sum(t * logp) / z.shape[0]
    p = np.exp(logp)
    grad = (p * t.sum(axis=1, keepdims=True) - t) / z.shape[0]
    return loss, grad, p


def ref_sigmoid_bce(z, t):
    z, t = z.astype(np.float64), t.astype(np.float64)
    # log(1 + exp(-z)) = logaddexp(0, -z): an independent stable form.
    terms = t * np.logaddexp(0.0, -z) + (1 - t) * np.logaddexp(0.0, z)
    return terms.mean(), (expit(z) - t) / z.size, expit(z)


def ref_ce_probs(p, t, eps=1e-7):
    """Keras' categorical_crossentropy on probabilities, with its exact gradient."""
    p, t = p.astype(np.float64), t.astype(np.float64)
    s = p.sum(axis=1, keepdims=True)
    q = p / s
    qc = np.clip(q, eps, 1 - eps)
    loss = -np.sum(t * np.log(qc)) / p.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):  # the clipped entries are discarded
        g = np.where((q >= eps) & (q <= 1 - eps), -t / q, 0.0)
    grad = (g - np.sum(g * q, axis=1, keepdims=True)) / s / p.shape[0]
    return loss, grad


def onehot(y, c):
    out = np.zeros((y.shape[0], c))
    out[np.arange(y.shape[0]), y] = 1.0
    return out


def ref_bce_probs(p, t, eps=1e-7):
    p, t = p.astype(np.float64), t.astype(np.float64)
    pc = np.clip(p, eps, 1 - eps)
    loss = -np.mean(t * np.log(pc) + (1 - t) * np.log(1 - pc))
    with np.errstate(divide="ignore", invalid="ignore"):  # the clipped entries are discarded
        grad = np.where((p >= eps) & (p <= 1 - eps), (-t / p + (1 - t) / (1 - p)), 0.0) / p.size
    return loss, grad


def ref_mse(x, t):
    d = x.astype(np.float64) - t.astype(np.float64)
    return np.mean(d * d), 2 * d / d.size


def ref_mae(x, t):
    d = x.astype(np.float64) - t.astype(np.float64)
    return np.mean(np.abs(d)), np.sign(d) / d.size


def ref_huber(x, t, delta):
    d = x.astype(np.float64) - t.astype(np.float64)
    a = np.abs(d)
    loss = np.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    return loss.mean(), np.clip(d, -delta, delta) / d.size


# ---------------------------------------------------------------- data


def make(shape, dtype, seed=0, scale=3.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(dtype)


def make_probs(shape, dtype, seed=0):
    return ref_softmax(make(shape, np.float64, seed, 1.0)).astype(dtype)


def make_labels(n, c, seed=1):
    return np.random.default_rng(seed).integers(0, c, n).astype(np.int64)


def make_soft_targets(shape, dtype, seed=2):
    return make_probs(shape, dtype, seed)


def make_unit(shape, dtype, seed=3, lo=0.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(dtype)


def check_grad(actual, expected, dtype):
    assert actual.dtype == dtype
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, **GRAD_TOL[dtype])


# ---------------------------------------------------------------- references


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", [1, 2])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (64, 10), (33, 257)])
def test_softmax_ce_sparse_matches_reference(dtype, nblocks, shape):
    z = make(shape, dtype)
    y = make_labels(shape[0], shape[1])
    loss, dz, probs = K.softmax_cross_entropy_sparse(z, y, nblocks)
    ref_loss, ref_dz, ref_p = ref_sparse_ce(z, y)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, ref_loss, rtol=LOSS_RTOL[dtype], atol=1e-15)
    check_grad(dz, ref_dz, dtype)
    check_grad(probs, ref_p, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", [1, 2])
def test_softmax_ce_dense_matches_reference(dtype, nblocks):
    z = make((40, 6), dtype)
    for t in (onehot(make_labels(40, 6), 6).astype(dtype), make_soft_targets((40, 6), dtype),
              make_unit((40, 6), dtype)):  # rows not summing to one: exact gradient p*sum(t) - t
        loss, dz, probs = K.softmax_cross_entropy_dense(z, t, nblocks)
        ref_loss, ref_dz, ref_p = ref_dense_ce(z, t)
        np.testing.assert_allclose(loss, ref_loss, rtol=LOSS_RTOL[dtype])
        check_grad(dz, ref_dz, dtype)
        check_grad(probs, ref_p, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_and_sparse_ce_agree_on_one_hot(dtype):
    z = make((50, 9), dtype)
    y = make_labels(50, 9)
    a = K.softmax_cross_entropy_sparse(z, y, 1)
    b = K.softmax_cross_entropy_dense(z, onehot(y, 9).astype(dtype), 1)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-13)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", [1, 2])
def test_sigmoid_bce_matches_reference(dtype, nblocks):
    z = make((3000, 3), dtype)  # > CHUNK elements so that nblocks=2 splits the work
    t = make_unit(z.shape, dtype)
    t[::3] = np.round(t[::3])
    loss, dz, probs = K.sigmoid_binary_cross_entropy(z, t, nblocks)
    ref_loss, ref_dz, ref_p = ref_sigmoid_bce(z, t)
    np.testing.assert_allclose(loss, ref_loss, rtol=LOSS_RTOL[dtype])
    check_grad(dz, ref_dz, dtype)
    check_grad(probs, ref_p, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", [1, 2])
def test_categorical_ce_probs_matches_reference(dtype, nblocks):
    p = make_probs((30, 5), dtype)
    p[0, 0] = 1e-9   # clipped below: gradient 0 there
    p[1] = [1.0, 0.0, 0.0, 0.0, 0.0]  # clipped above and below
    p[2] *= 3.0      # not normalized: divided by its sum, as Keras
    t = make_soft_targets((30, 5), dtype)
    loss, dp = K.categorical_cross_entropy_probs(p, t, nblocks)
    ref_loss, ref_dp = ref_ce_probs(p, t)
    np.testing.assert_allclose(loss, ref_loss, rtol=LOSS_RTOL[dtype])
    check_grad(dp, ref_dp, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", [1, 2])
def test_sparse_ce_probs_matches_reference(dtype, nblocks):
    p = make_probs((30, 5), dtype)
    y = make_labels(30, 5)
    p[0, y[0]] = 0.0            # clipped: loss -log(eps), gradient of that entry 0
    p[1] = 0.0
    p[1, y[1]] = 1.0            # clipped above
    p[2] *= 0.5                 # normalized by its sum
    loss, dp = K.sparse_categorical_cross_entropy_probs(p, y, nblocks)
    ref_loss, ref_dp = ref_ce_probs(p, onehot(y, 5))
    np.testing.assert_allclose(loss, ref_loss, rtol=LOSS_RTOL[dtype])
    check_grad(dp, ref_dp, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", [1, 2])
def test_bce_probs_matches_reference(dtype, nblocks):
    p = make_unit((2500, 2), dtype)
    p[0, 0], p[0, 1], p[1, 0], p[1, 1] = 0.0, 1.0, 1e-9, 1 - 1e-9  # clipped
    t = make_unit(p.shape, dtype, seed=4)
    t[::2] = np.round(t[::2])
    loss, dp = K.binary_cross_entropy_probs(p, t, nblocks)
    ref_loss, ref_dp = ref_bce_probs(p, t)
    np.testing.assert_allclose(loss, ref_loss, rtol=LOSS_RTOL[dtype])
    check_grad(dp, ref_dp, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", [1, 2])
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (700, 7)])
def test_regression_losses_match_reference(dtype, nblocks, shape):
    x = make(shape, dtype, seed=5)
    t = make(shape, dtype, seed=6)
    x.reshape(-1)[0] = t.reshape(-1)[0]  # MAE gradient is 0 at 0
    for (loss, grad), (ref_loss, ref_grad) in [
        (K.mse(x, t, nblocks), ref_mse(x, t)),
        (K.mae(x, t, nblocks), ref_mae(x, t)),
        (K.huber(x, t, 1.0, nblocks), ref_huber(x, t, 1.0)),
        (K.huber(x, t, 2.5, nblocks), ref_huber(x, t, 2.5)),
    ]:
        np.testing.assert_allclose(loss, ref_loss, rtol=LOSS_RTOL[dtype])
        check_grad(grad, ref_grad, dtype)
    assert K.mae(x, t, nblocks)[1].reshape(-1)[0] == 0.0


# ---------------------------------------------------------------- finite differences (float64)


def numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + h
        up = f(x)
        flat[k] = old - h
        down = f(x)
        flat[k] = old
        gflat[k] = (up - down) / (2 * h)
    return g


def away_from(x, t, points, margin=1e-3):
    """Move x so that no difference x - t lies within margin of a kink in ``points``."""
    d = x - t
    for p in points:
        for sign in (1, -1):
            close = np.abs(d - sign * p) < margin
            d[close] = sign * p + 10 * margin
    return t + d


CASES = {
    "softmax_ce_sparse": (lambda z, a: K.softmax_cross_entropy_sparse(z, a, 1), "logits", "labels"),
    "softmax_ce_dense": (lambda z, a: K.softmax_cross_entropy_dense(z, a, 1), "logits", "soft"),
    "sigmoid_bce": (lambda z, a: K.sigmoid_binary_cross_entropy(z, a, 1), "logits", "unit"),
    "categorical_ce_probs": (lambda z, a: K.categorical_cross_entropy_probs(z, a, 1), "probs", "soft"),
    "sparse_ce_probs": (lambda z, a: K.sparse_categorical_cross_entropy_probs(z, a, 1), "probs", "labels"),
    "bce_probs": (lambda z, a: K.binary_cross_entropy_probs(z, a, 1), "unit", "unit"),
    "mse": (lambda z, a: K.mse(z, a, 1), "logits", "logits"),
    "mae": (lambda z, a: K.mae(z, a, 1), "logits", "logits"),
    "huber": (lambda z, a: K.huber(z, a, 0.7, 1), "logits", "logits"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_matches_central_differences(name):
    f, xkind, tkind = CASES[name]
    shape = (6, 4)
    x = {"logits": make(shape, np.float64, 7, 1.5), "probs": make_probs(shape, np.float64, 7),
         "unit": make_unit(shape, np.float64, 7, 0.05, 0.95)}[xkind]
    a = {"labels": make_labels(6, 4), "soft": make_soft_targets(shape, np.float64),
         "unit": make_unit(shape, np.float64, 8), "logits": make(shape, np.float64, 9, 1.5)}[tkind]
    if name == "mae":
        x = away_from(x, a, [0.0])
    if name == "huber":
        x = away_from(x, a, [0.7])
    grad = f(x, a)[1]
    num = numeric_grad(lambda v: f(v, a)[0], x.copy())
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- stability


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e2, 1e4])
def test_softmax_ce_large_logits_stable(dtype, scale):
    z = make((20, 10), dtype, seed=11, scale=scale)
    z[0] = 0
    z[0, 3] = scale          # one dominating logit
    z[1] = -scale            # all equal and very negative
    y = make_labels(20, 10)
    y[0] = 3
    ref_loss, ref_dz, ref_p = ref_sparse_ce(z, y)
    assert np.isfinite(ref_loss)
    loss, dz, probs = K.softmax_cross_entropy_sparse(z, y, 1)
    assert np.isfinite(loss) and np.isfinite(dz).all() and np.isfinite(probs).all()
    np.testing.assert_allclose(loss, ref_loss, rtol=LOSS_RTOL[dtype])
    check_grad(dz, ref_dz, dtype)
    dloss, ddz, _ = K.softmax_cross_entropy_dense(z, onehot(y, 10).astype(dtype), 2)
    np.testing.assert_allclose(dloss, ref_loss, rtol=LOSS_RTOL[dtype])
    check_grad(ddz, ref_dz, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_bce_large_logits_stable(dtype):
    z = np.array([[1e4, -1e4, 1e4, -1e4, 50.0, -50.0, 0.0]], dtype=dtype)
    t = np.array([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.5]], dtype=dtype)
    loss, dz, probs = K.sigmoid_binary_cross_entropy(z, t, 1)
    ref_loss, ref_dz, ref_p = ref_sigmoid_bce(z, t)
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(loss, (2e4 + np.log(2.0) + 2 * np.log1p(np.exp(-50.0))) / 7, rtol=1e-12)
    check_grad(dz, ref_dz, dtype)
    check_grad(probs, ref_p, dtype)


def test_nan_propagates():
    z = make((4, 3), np.float64)
    z[2, 1] = np.nan
    assert np.isnan(K.softmax_cross_entropy_sparse(z, make_labels(4, 3), 1)[0])
    assert np.isnan(K.sigmoid_binary_cross_entropy(z, np.zeros_like(z), 1)[0])
    assert np.isnan(K.mse(z, np.zeros_like(z), 1)[0])
    assert np.isnan(K.mae(z, np.zeros_like(z), 1)[0])
    assert np.isnan(K.huber(z, np.zeros_like(z), 1.0, 1)[0])
    p = make_probs((4, 3), np.float64)
    p[2, 1] = np.nan
    assert np.isnan(K.binary_cross_entropy_probs(p, np.zeros_like(p), 1)[0])
    assert np.isnan(K.categorical_cross_entropy_probs(p, make_soft_targets((4, 3), np.float64), 1)[0])
    assert np.isnan(K.sparse_categorical_cross_entropy_probs(p, np.array([0, 0, 1, 0]), 1)[0])


def test_out_of_range_label_gives_nan_not_a_crash():
    z = make((3, 4), np.float64)
    for y in (np.array([0, 4, 1]), np.array([0, -1, 1])):
        loss, dz, _ = K.softmax_cross_entropy_sparse(z, y, 1)
        assert np.isnan(loss) and np.isnan(dz[1]).all() and np.isfinite(dz[[0, 2]]).all()
        loss, dp = K.sparse_categorical_cross_entropy_probs(make_probs((3, 4), np.float64), y, 1)
        assert np.isnan(loss) and np.isnan(dp[1]).all()


def test_shape_mismatch_refused():
    z = make((4, 3), np.float64)
    with pytest.raises(ValueError, match="one entry per row"):
        K.softmax_cross_entropy_sparse(z, np.zeros(5, dtype=np.int64), 1)
    with pytest.raises(ValueError, match="shape of logits"):
        K.softmax_cross_entropy_dense(z, np.zeros((4, 2)), 1)
    with pytest.raises(ValueError, match="as many elements"):
        K.mse(z, np.zeros((4, 2)), 1)


def test_empty_input_gives_nan():
    z = np.zeros((0, 3))
    assert np.isnan(K.softmax_cross_entropy_sparse(z, np.zeros(0, dtype=np.int64), 1)[0])
    assert np.isnan(K.mse(z, z, 1)[0])


# ---------------------------------------------------------------- serial and parallel paths


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nblocks", [2, 3, 8])
def test_parallel_path_equals_serial_bit_for_bit(dtype, nblocks):
    z = make((301, 11), dtype, seed=12)
    y = make_labels(301, 11)
    t = make_soft_targets((301, 11), dtype)
    p = make_probs((301, 11), dtype, seed=13)
    u = make_unit((301, 11), dtype, seed=14)
    calls = [
        lambda nb: K.softmax_cross_entropy_sparse(z, y, nb),
        lambda nb: K.softmax_cross_entropy_dense(z, t, nb),
        lambda nb: K.sigmoid_binary_cross_entropy(z, u, nb),
        lambda nb: K.categorical_cross_entropy_probs(p, t, nb),
        lambda nb: K.sparse_categorical_cross_entropy_probs(p, y, nb),
        lambda nb: K.binary_cross_entropy_probs(u, t, nb),
        lambda nb: K.mse(z, t, nb),
        lambda nb: K.mae(z, t, nb),
        lambda nb: K.huber(z, t, 1.0, nb),
    ]
    for call in calls:
        serial, parallel = call(1), call(nblocks)
        assert serial[0] == parallel[0]
        for a, b in zip(serial[1:], parallel[1:]):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- PyTorch


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_torch(dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-14)
    z = make((64, 10), dtype, seed=20)
    y = make_labels(64, 10)
    t = make_unit((64, 10), dtype, seed=21)
    soft = make_soft_targets((64, 10), dtype)
    u = make_unit((64, 10), dtype, seed=22, lo=0.01, hi=0.99)

    def torch_value_and_grad(fn, x, *args):
        xt = torch.tensor(x, requires_grad=True)
        out = fn(xt, *args)
        out.backward()
        return out.item(), xt.grad.numpy()

    cases = [
        (K.softmax_cross_entropy_sparse(z, y, 1), torch_value_and_grad(F.cross_entropy, z, torch.tensor(y))),
        (K.softmax_cross_entropy_dense(z, soft, 1), torch_value_and_grad(F.cross_entropy, z, torch.tensor(soft))),
        (K.sigmoid_binary_cross_entropy(z, t, 1),
         torch_value_and_grad(F.binary_cross_entropy_with_logits, z, torch.tensor(t))),
        (K.binary_cross_entropy_probs(u, t, 1), torch_value_and_grad(F.binary_cross_entropy, u, torch.tensor(t))),
        (K.mse(z, t, 1), torch_value_and_grad(F.mse_loss, z, torch.tensor(t))),
        (K.mae(z, t, 1), torch_value_and_grad(F.l1_loss, z, torch.tensor(t))),
        (K.huber(z, t, 1.5, 1), torch_value_and_grad(lambda a, b: F.huber_loss(a, b, delta=1.5), z, torch.tensor(t))),
    ]
    for ours, theirs in cases:
        np.testing.assert_allclose(ours[0], theirs[0], **tol)
        np.testing.assert_allclose(ours[1], theirs[1], **tol)
