"""Regularizers: penalty and gradient against NumPy, a finite-difference check of the
gradient, lookup by name and argument checking."""
import numpy as np
import pytest

from nnjit import regularizers, runtime
from nnjit.regularizers import L1, L1L2, L2

DTYPES = [np.float32, np.float64]


@pytest.fixture(params=[1, 2], ids=["serial", "parallel"])
def nblocks(request, monkeypatch):
    monkeypatch.setattr(runtime, "blocks_for", lambda work, *_: request.param)
    return request.param


def reference(w, l1, l2):
    w = w.astype(np.float64)
    return l1 * np.abs(w).sum() + l2 * (w ** 2).sum(), l1 * np.sign(w) + 2 * l2 * w


REGULARIZERS = [(L2(0.01), 0.0, 0.01), (L2(0.3), 0.0, 0.3), (L1(0.02), 0.02, 0.0),
                (L1L2(0.05, 0.1), 0.05, 0.1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reg,l1,l2", REGULARIZERS, ids=repr)
@pytest.mark.parametrize("shape", [(7,), (13, 9), (3, 4, 5)])
def test_penalty_and_grad_match_numpy(reg, l1, l2, dtype, shape, nblocks):
    rng = np.random.default_rng(1)
    w = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    g0 = g.copy()
    penalty = reg.penalty_and_grad(w, g)
    ref_penalty, ref_grad = reference(w, l1, l2)
    assert isinstance(penalty, float)
    assert penalty == pytest.approx(ref_penalty, rel=1e-12)
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g, g0 + ref_grad, **tol)
    assert reg.penalty(w) == pytest.approx(penalty, rel=1e-12)
    assert reg(w) == pytest.approx(penalty, rel=1e-12)


@pytest.mark.parametrize("reg", [L2(0.2), L1(0.1), L1L2(0.1, 0.2)], ids=repr)
def test_gradient_against_finite_differences(reg):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 5))
    w[np.abs(w) < 0.05] = 0.5   # |w| has a kink at 0: keep central differences away from it
    g = np.zeros_like(w)
    reg.penalty_and_grad(w, g)
    h = 1e-6
    numeric = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        wp, wm = w.copy(), w.copy()
        wp[idx] += h
        wm[idx] -= h
        numeric[idx] = (reg.penalty(wp) - reg.penalty(wm)) / (2 * h)
    np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8)


def test_large_weight_uses_the_parallel_path_and_agrees():
    w = np.random.default_rng(3).standard_normal(runtime.PARALLEL_MIN_WORK + 13).astype(np.float32)
    g = np.zeros_like(w)
    penalty = L1L2(0.01, 0.02).penalty_and_grad(w, g)
    ref_penalty, ref_grad = reference(w, 0.01, 0.02)
    assert penalty == pytest.approx(ref_penalty, rel=1e-10)
    np.testing.assert_allclose(g, ref_grad, rtol=1e-6, atol=1e-8)


def test_non_contiguous_gradient_is_written_in_place():
    w = np.random.default_rng(4).standard_normal((5, 8))
    g_full = np.zeros((8, 5))
    g = g_full.T          # a view that is not C-contiguous
    L2(0.5).penalty_and_grad(w, g)
    np.testing.assert_allclose(g_full.T, w, rtol=1e-15)


def test_penalty_does_not_touch_anything():
    w = np.ones((3, 3), np.float32)
    assert L2(0.1).penalty(w) == pytest.approx(0.9)
    np.testing.assert_array_equal(w, 1)


def test_mismatched_arrays_are_refused():
    with pytest.raises(ValueError, match="same shape and dtype"):
        L2().penalty_and_grad(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="same shape and dtype"):
        L2().penalty_and_grad(np.zeros(3), np.zeros(3, np.float32))


def test_get():
    reg = L1(0.3)
    assert regularizers.get(reg) is reg
    assert regularizers.get(None) is None
    assert regularizers.get("l2") == L2(0.01)
    assert regularizers.get("L1") == L1(0.01)
    assert regularizers.get("l1_l2") == L1L2()
    assert regularizers.get({"class_name": "L2", "l2": 0.5}) == L2(0.5)
    with pytest.raises(ValueError, match="regularizer='l3'"):
        regularizers.get("l3")
    with pytest.raises(TypeError, match="regularizer=1.5"):
        regularizers.get(1.5)


@pytest.mark.parametrize("reg", [L1(0.25), L2(0.125), L1L2(0.5, 0.75)], ids=repr)
def test_config_round_trip(reg):
    config = reg.get_config()
    assert config["class_name"] == type(reg).__name__
    again = regularizers.get(config)
    assert again == reg and again.get_config() == config


@pytest.mark.parametrize("make,error,match", [
    (lambda: L2(-0.1), ValueError, "expected a non-negative float.*Received: l2=-0.1"),
    (lambda: L1(float("inf")), ValueError, "l1=inf"),
    (lambda: L1L2(l1=0.1, l2=-2), ValueError, "l2=-2"),
    (lambda: L2("big"), TypeError, "l2='big'"),
])
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()
