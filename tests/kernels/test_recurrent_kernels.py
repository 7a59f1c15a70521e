"""Recurrent kernels (SimpleRNN, LSTM, GRU) against step-by-step NumPy references and finite
differences, with reverse processing, masks and non-zero initial states."""
import numpy as np
import pytest

from nnjit.kernels.activations import CODES
from nnjit.kernels.recurrent import (gru_backward, gru_forward, lstm_backward, lstm_forward,
                                     simple_rnn_backward, simple_rnn_forward)

from test_activation_kernels import reference

NO_MASK = np.zeros((0, 0), dtype=np.uint8)
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


# ----------------------------------------------------------------------------------------
# Step-by-step references: a plain loop over the processed steps, written from the formulas.


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def _order(steps, reverse):
    return list(range(steps - 1, -1, -1)) if reverse else list(range(steps))


def _live(mask, t, n):
    if mask is None or mask.shape[0] == 0:
        return np.ones((n, 1), dtype=bool)
    return mask[:, t][:, None] != 0


def ref_rnn(x, w, u, b, h0, act, mask, reverse):
    n, steps, _ = x.shape
    h = h0.copy()
    outputs = np.zeros((n, steps, u.shape[0]))
    for s, t in enumerate(_order(steps, reverse)):
        new = reference(act, x[:, t] @ w + b + h @ u)
        live = _live(mask, t, n)
        h = np.where(live, new, h)
        outputs[:, s] = np.where(live, new, 0.0)
    return outputs, h


def ref_lstm(x, w, u, b, h0, c0, mask, reverse):
    n, steps, _ = x.shape
    units = u.shape[0]
    h, c = h0.copy(), c0.copy()
    outputs = np.zeros((n, steps, units))
    for s, t in enumerate(_order(steps, reverse)):
        z = x[:, t] @ w + h @ u + b
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c_new = _sig(f) * c + _sig(i) * np.tanh(g)
        h_new = _sig(o) * np.tanh(c_new)
        live = _live(mask, t, n)
        h = np.where(live, h_new, h)
        c = np.where(live, c_new, c)
        outputs[:, s] = np.where(live, h_new, 0.0)
    return outputs, h, c


def ref_gru(x, w, u, b, rb, h0, mask, reverse):
    n, steps, _ = x.shape
    units = u.shape[0]
    h = h0.copy()
    outputs = np.zeros((n, steps, units))
    for s, t in enumerate(_order(steps, reverse)):
        xs = x[:, t] @ w + b
        hs = h @ u + rb
        r = _sig(xs[:, :units] + hs[:, :units])
        z = _sig(xs[:, units:2 * units] + hs[:, units:2 * units])
        cand = np.tanh(xs[:, 2 * units:] + r * hs[:, 2 * units:])
        h_new = (1 - z) * cand + z * h
        live = _live(mask, t, n)
        h = np.where(live, h_new, h)
        outputs[:, s] = np.where(live, h_new, 0.0)
    return outputs, h


# ----------------------------------------------------------------------------------------
# Problems and a uniform calling convention: params is a dict of arrays, "state" holds the
# initial states; run_* return (outputs, finals) and (grads dict).


def _mask(n, steps, kind):
    if kind == "none":
        return NO_MASK
    lengths = [steps, steps // 2, 0, 1, steps - 1, steps, 2][:n] + [steps] * max(0, n - 7)
    m = np.zeros((n, steps), dtype=np.uint8)
    for row, length in enumerate(lengths):
        m[row, :length] = 1
    if n > 5 and steps > 3:
        m[5, 1] = 0  # a hole inside a sequence, not only trailing padding
    return m


def _problem(cell, n, steps, f, units, dtype=np.float64, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    g = GATES[cell]
    p = {
        "x": rng.standard_normal((n, steps, f)),
        "w": rng.standard_normal((f, g * units)) / np.sqrt(f),
        "u": rng.standard_normal((units, g * units)) / np.sqrt(units),
        "b": rng.standard_normal(g * units) * 0.5 if bias else np.zeros(0),
        "h0": rng.standard_normal((n, units)) * 0.5,
    }
    if cell == "lstm":
        p["c0"] = rng.standard_normal((n, units)) * 0.5
    if cell == "gru":
        p["rb"] = rng.standard_normal(g * units) * 0.5 if bias else np.zeros(0)
    return {k: v.astype(dtype) for k, v in p.items()}


def run_forward(cell, p, mask, reverse, nblocks, act="tanh", unit_groups=1):
    if cell == "rnn":
        out, h, cache = simple_rnn_forward(p["x"], p["w"], p["u"], p["b"], p["h0"], CODES[act], mask, reverse,
                                           nblocks, unit_groups)
        return out, (h,), cache
    if cell == "lstm":
        out, h, c, cache = lstm_forward(p["x"], p["w"], p["u"], p["b"], p["h0"], p["c0"], mask, reverse, nblocks,
                                        unit_groups)
        return out, (h, c), cache
    out, h, cache = gru_forward(p["x"], p["w"], p["u"], p["b"], p["rb"], p["h0"], mask, reverse, nblocks)
    return out, (h,), cache


def run_reference(cell, p, mask, reverse, act="tanh"):
    b = p["b"] if p["b"].shape[0] else 0.0
    if cell == "rnn":
        out, h = ref_rnn(p["x"], p["w"], p["u"], b, p["h0"], act, mask, reverse)
        return out, (h,)
    if cell == "lstm":
        out, h, c = ref_lstm(p["x"], p["w"], p["u"], b, p["h0"], p["c0"], mask, reverse)
        return out, (h, c)
    rb = p["rb"] if p["rb"].shape[0] else 0.0
    out, h = ref_gru(p["x"], p["w"], p["u"], b, rb, p["h0"], mask, reverse)
    return out, (h,)


def run_backward(cell, p, mask, reverse, cache, d_out, d_finals, nblocks, act="tanh", grads=None,
                 need_dx=True, need_dparams=True):
    """Returns a dict of gradients (x, h0, [c0], w, u, b, [rb]); parameter gradients accumulate
    into ``grads`` when given."""
    if grads is None:
        grads = {k: np.zeros_like(p[k]) for k in ("w", "u", "b", "rb") if k in p}
    out = dict(grads)
    if cell == "rnn":
        dx, dh0 = simple_rnn_backward(d_out, d_finals[0], p["x"], p["w"], p["u"], CODES[act], mask, reverse, cache,
                                      grads["w"], grads["u"], grads["b"], need_dx, need_dparams, nblocks)
    elif cell == "lstm":
        dx, dh0, dc0 = lstm_backward(d_out, d_finals[0], d_finals[1], p["x"], p["w"], p["u"], mask, reverse, cache,
                                     grads["w"], grads["u"], grads["b"], need_dx, need_dparams, nblocks)
        out["c0"] = dc0
    else:
        dx, dh0 = gru_backward(d_out, d_finals[0], p["x"], p["w"], p["u"], mask, reverse, cache, grads["w"],
                               grads["u"], grads["b"], grads["rb"], need_dx, need_dparams, nblocks)
    out["x"] = dx
    out["h0"] = dh0
    return out


# ----------------------------------------------------------------------------------------
# Forward


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "lengths"])
@pytest.mark.parametrize("nblocks", [1, 2, 3])
def test_forward_matches_step_reference(cell, reverse, mask_kind, nblocks):
    p = _problem(cell, 7, 6, 5, 4, seed=1)
    mask = _mask(7, 6, mask_kind)
    out, finals, _ = run_forward(cell, p, mask, reverse, nblocks)
    ref_out, ref_finals = run_reference(cell, p, mask, reverse)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    for a, r in zip(finals, ref_finals):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)
    if mask_kind == "lengths":
        # The all-masked row keeps its initial state and outputs zeros.
        np.testing.assert_array_equal(finals[0][2], p["h0"][2])
        assert not out[2].any()


@pytest.mark.parametrize("act", sorted(CODES))
def test_simple_rnn_activations(act):
    p = _problem("rnn", 5, 4, 3, 6, seed=2)
    mask = _mask(5, 4, "lengths")
    out, (h,), _ = run_forward("rnn", p, mask, True, 2, act=act)
    ref_out, (ref_h,) = run_reference("rnn", p, mask, True, act=act)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h, ref_h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_forward_without_bias(cell):
    p = _problem(cell, 4, 3, 2, 3, seed=3, bias=False)
    out, finals, _ = run_forward(cell, p, NO_MASK, False, 2)
    ref_out, ref_finals = run_reference(cell, p, NO_MASK, False)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(finals[0], ref_finals[0], rtol=1e-12, atol=1e-12)


def test_sigmoid_of_large_arguments_stays_finite():
    p = _problem("lstm", 2, 3, 2, 2, seed=4)
    p["x"] *= 1e4
    out, (h, c), _ = run_forward("lstm", p, NO_MASK, False, 1)
    assert np.isfinite(out).all() and np.isfinite(h).all() and np.isfinite(c).all()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_float32_larger_case(cell):
    p64 = _problem(cell, 37, 20, 16, 24, seed=5)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    mask = _mask(37, 20, "lengths")
    out32, fin32, cache32 = run_forward(cell, p32, mask, True, 2)
    out64, fin64, cache64 = run_forward(cell, p64, mask, True, 2)
    assert out32.dtype == np.float32 and fin32[0].dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-5)
    rng = np.random.default_rng(6)
    d_out = rng.standard_normal(out64.shape)
    d_fin = [rng.standard_normal(a.shape) for a in fin64]
    g32 = run_backward(cell, p32, mask, True, cache32, d_out.astype(np.float32),
                       [a.astype(np.float32) for a in d_fin], 2)
    g64 = run_backward(cell, p64, mask, True, cache64, d_out, d_fin, 2)
    for k in g64:
        assert g32[k].dtype == np.float32
        scale = np.abs(g64[k]).max() + 1.0
        np.testing.assert_allclose(g32[k], g64[k], rtol=0, atol=2e-4 * scale, err_msg=k)


# ----------------------------------------------------------------------------------------
# Backward


def _objective_grads(cell, p, mask, reverse, act, seed=7):
    """Random weights R of sum(outputs * R1) + sum(h_last * R2) (+ sum(c_last * R3))."""
    out, finals = run_reference(cell, p, mask, reverse, act=act)
    rng = np.random.default_rng(seed)
    return rng.standard_normal(out.shape), [rng.standard_normal(a.shape) for a in finals]


def _objective(cell, p, mask, reverse, act, r_out, r_fin):
    out, finals = run_reference(cell, p, mask, reverse, act=act)
    return float(np.sum(out * r_out) + sum(np.sum(a * r) for a, r in zip(finals, r_fin)))


def _numeric_grads(cell, p, mask, reverse, act, r_out, r_fin, eps=1e-6):
    grads = {}
    for name, array in p.items():
        numeric = np.zeros_like(array)
        for idx in np.ndindex(array.shape):
            old = array[idx]
            array[idx] = old + eps
            up = _objective(cell, p, mask, reverse, act, r_out, r_fin)
            array[idx] = old - eps
            down = _objective(cell, p, mask, reverse, act, r_out, r_fin)
            array[idx] = old
            numeric[idx] = (up - down) / (2 * eps)
        grads[name] = numeric
    return grads


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "lengths"])
@pytest.mark.parametrize("nblocks", [1, 2])
def test_backward_finite_differences(cell, reverse, mask_kind, nblocks):
    p = _problem(cell, 7, 5, 3, 3, seed=8)
    mask = _mask(7, 5, mask_kind)
    r_out, r_fin = _objective_grads(cell, p, mask, reverse, "tanh")
    _, _, cache = run_forward(cell, p, mask, reverse, nblocks)
    grads = run_backward(cell, p, mask, reverse, cache, r_out, r_fin, nblocks)
    numeric = _numeric_grads(cell, p, mask, reverse, "tanh", r_out, r_fin)
    assert set(numeric) == set(grads)
    for name in numeric:
        np.testing.assert_allclose(grads[name], numeric[name], rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("act", ["relu", "gelu", "swish", "softmax", "sigmoid", "linear"])
def test_simple_rnn_backward_activations(act):
    p = _problem("rnn", 5, 4, 2, 3, seed=9)
    mask = _mask(5, 4, "lengths")
    r_out, r_fin = _objective_grads("rnn", p, mask, False, act)
    _, _, cache = run_forward("rnn", p, mask, False, 2, act=act)
    grads = run_backward("rnn", p, mask, False, cache, r_out, r_fin, 2, act=act)
    numeric = _numeric_grads("rnn", p, mask, False, act, r_out, r_fin)
    for name in numeric:
        np.testing.assert_allclose(grads[name], numeric[name], rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_backward_without_bias(cell):
    p = _problem(cell, 3, 3, 2, 2, seed=10, bias=False)
    r_out, r_fin = _objective_grads(cell, p, NO_MASK, True, "tanh")
    _, _, cache = run_forward(cell, p, NO_MASK, True, 1)
    grads = run_backward(cell, p, NO_MASK, True, cache, r_out, r_fin, 1)
    numeric = _numeric_grads(cell, p, NO_MASK, True, "tanh", r_out, r_fin)
    for name in ("x", "w", "u", "h0"):
        np.testing.assert_allclose(grads[name], numeric[name], rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_backward_accumulates_and_flags(cell):
    p = _problem(cell, 5, 4, 3, 3, seed=11)
    mask = _mask(5, 4, "lengths")
    _, finals, cache = run_forward(cell, p, mask, False, 2)
    rng = np.random.default_rng(12)
    d_out = rng.standard_normal((5, 4, 3))
    d_fin = [rng.standard_normal(a.shape) for a in finals]
    fresh = run_backward(cell, p, mask, False, cache, d_out, d_fin, 2)
    start = {k: np.full_like(p[k], 0.75) for k in ("w", "u", "b", "rb") if k in p}
    acc = run_backward(cell, p, mask, False, cache, d_out, d_fin, 2, grads={k: v.copy() for k, v in start.items()})
    for k in start:
        np.testing.assert_allclose(acc[k], 0.75 + fresh[k], rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(acc["x"], fresh["x"])

    untouched = {k: v.copy() for k, v in start.items()}
    off = run_backward(cell, p, mask, False, cache, d_out, d_fin, 2, grads=untouched, need_dx=False,
                       need_dparams=False)
    assert off["x"].shape == (0, 4, 3)
    for k in start:
        np.testing.assert_array_equal(untouched[k], start[k])
    np.testing.assert_allclose(off["h0"], fresh["h0"], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_empty_output_gradient_means_zero(cell):
    p = _problem(cell, 4, 5, 3, 3, seed=13)
    _, finals, cache = run_forward(cell, p, NO_MASK, True, 2)
    d_fin = [np.ones_like(a) for a in finals]
    zeros = run_backward(cell, p, NO_MASK, True, cache, np.zeros((4, 5, 3)), d_fin, 2)
    empty = run_backward(cell, p, NO_MASK, True, cache, np.zeros((0, 0, 0)), d_fin, 2)
    for k in zeros:
        np.testing.assert_array_equal(zeros[k], empty[k])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_serial_and_parallel_paths_agree(cell):
    p = _problem(cell, 33, 12, 9, 17, seed=14)
    mask = _mask(33, 12, "lengths")
    results = []
    for nb in (1, 2, 3):
        out, finals, cache = run_forward(cell, p, mask, False, nb)
        d_out = np.cos(out)
        grads = run_backward(cell, p, mask, False, cache, d_out, [np.sin(a) for a in finals], nb)
        results.append((out, finals, grads))
    for out, finals, grads in results[1:]:
        np.testing.assert_allclose(out, results[0][0], rtol=1e-12, atol=1e-12)
        for a, b in zip(finals, results[0][1]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        for k in grads:
            np.testing.assert_allclose(grads[k], results[0][2][k], rtol=1e-10, atol=1e-12, err_msg=k)


# The LSTM split into groups of units (max(nblocks, unit_groups) > 1): the work of each step
# is shared out by units, with a wait between steps; the gradients come out in the standard
# column order.


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "lengths"])
@pytest.mark.parametrize("groups", [2, 3, 9])
def test_lstm_unit_groups_forward_matches_step_reference(reverse, mask_kind, groups):
    p = _problem("lstm", 7, 6, 5, 4, seed=1)
    mask = _mask(7, 6, mask_kind)
    out, finals, cache = run_forward("lstm", p, mask, reverse, 1, unit_groups=groups)
    assert cache[4].tolist() == ([0, 2, 4] if groups == 2 else [0, 1, 2, 4] if groups == 3 else [0, 1, 2, 3, 4])
    ref_out, ref_finals = run_reference("lstm", p, mask, reverse)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    for a, r in zip(finals, ref_finals):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "lengths"])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_unit_groups_backward_finite_differences(reverse, mask_kind, bias):
    p = _problem("lstm", 7, 5, 3, 3, seed=8, bias=bias)
    mask = _mask(7, 5, mask_kind)
    r_out, r_fin = _objective_grads("lstm", p, mask, reverse, "tanh")
    _, _, cache = run_forward("lstm", p, mask, reverse, 1, unit_groups=2)
    grads = run_backward("lstm", p, mask, reverse, cache, r_out, r_fin, 1)
    numeric = _numeric_grads("lstm", p, mask, reverse, "tanh", r_out, r_fin)
    for name in numeric:
        if name == "b" and not bias:
            continue
        np.testing.assert_allclose(grads[name], numeric[name], rtol=1e-6, atol=1e-8, err_msg=name)


def test_lstm_unit_groups_agree_with_row_blocks_and_flags():
    """Every split of the units (two parts asked for through nblocks, or 2, 3 and 5 groups)
    gives the same outputs and gradients (float64, to rounding), the parameter gradients
    accumulate, and need_dx / need_dparams are honoured."""
    p = _problem("lstm", 33, 12, 9, 17, seed=14)
    mask = _mask(33, 12, "lengths")
    out_r, fin_r, cache_r = run_forward("lstm", p, mask, True, 2)
    d_out = np.cos(out_r)
    d_fin = [np.sin(a) for a in fin_r]
    ref = run_backward("lstm", p, mask, True, cache_r, d_out, d_fin, 2)
    for groups in (2, 3, 5):
        out, fin, cache = run_forward("lstm", p, mask, True, 2, unit_groups=groups)
        np.testing.assert_allclose(out, out_r, rtol=1e-12, atol=1e-12)
        for a, b in zip(fin, fin_r):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        start = {k: np.full_like(p[k], 0.75) for k in ("w", "u", "b")}
        grads = run_backward("lstm", p, mask, True, cache, d_out, d_fin, 2, grads={k: v.copy() for k, v in start.items()})
        for k in ref:
            expected = ref[k] + 0.75 if k in start else ref[k]
            np.testing.assert_allclose(grads[k], expected, rtol=1e-10, atol=1e-12, err_msg=k)
        untouched = {k: v.copy() for k, v in start.items()}
        off = run_backward("lstm", p, mask, True, cache, d_out, d_fin, 2, grads=untouched, need_dx=False,
                           need_dparams=False)
        assert off["x"].shape == (0, 12, 9)
        for k in start:
            np.testing.assert_array_equal(untouched[k], start[k])
        np.testing.assert_allclose(off["h0"], ref["h0"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(off["c0"], ref["c0"], rtol=1e-12, atol=1e-12)


def test_lstm_unit_groups_float32_and_no_steps():
    p64 = _problem("lstm", 37, 20, 16, 64, seed=5)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    mask = _mask(37, 20, "lengths")
    out32, fin32, cache32 = run_forward("lstm", p32, mask, False, 2, unit_groups=2)
    out64, fin64, _ = run_forward("lstm", p64, mask, False, 1)
    assert out32.dtype == np.float32 and cache32[0].dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-5)
    rng = np.random.default_rng(6)
    d_out = rng.standard_normal(out64.shape)
    d_fin = [rng.standard_normal(a.shape) for a in fin64]
    _, _, cache64 = run_forward("lstm", p64, mask, False, 1)
    g64 = run_backward("lstm", p64, mask, False, cache64, d_out, d_fin, 1)
    g32 = run_backward("lstm", p32, mask, False, cache32, d_out.astype(np.float32),
                       [a.astype(np.float32) for a in d_fin], 2)
    for k in g64:
        assert g32[k].dtype == np.float32
        scale = np.abs(g64[k]).max() + 1.0
        np.testing.assert_allclose(g32[k], g64[k], rtol=0, atol=2e-4 * scale, err_msg=k)
    # No steps: the final states are the initial ones, whatever the split asked for.
    p0 = _problem("lstm", 3, 0, 2, 4, seed=2)
    out, (h, c), _ = run_forward("lstm", p0, NO_MASK, False, 2, unit_groups=2)
    assert out.shape == (3, 0, 4)
    np.testing.assert_array_equal(h, p0["h0"])
    np.testing.assert_array_equal(c, p0["c0"])


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 2e-15), (np.float32, 5e-7)])
def test_gate_functions_accuracy_extremes_and_nan(dtype, rtol):
    """The polynomial sigmoid and tanh the cells use: relative accuracy of a few ulp over a wide
    range, saturation without overflow, exact zero at zero, NaN in gives NaN out."""
    from nnjit.kernels.recurrent import _sigmoid_inplace, _tanh_inplace

    rng = np.random.default_rng(15)
    v = np.concatenate([rng.standard_normal(5000) * 6, [0.0, 1e-30, -1e-30, 1e-6, -1e-6, 20.0, -20.0, 1e4,
                                                        -1e4, np.inf, -np.inf, np.nan]]).astype(dtype)
    s = v.copy()
    _sigmoid_inplace(s)
    t = v.copy()
    _tanh_inplace(t)
    v64 = v.astype(np.float64)
    with np.errstate(over="ignore"):
        ref_s = 1.0 / (1.0 + np.exp(-v64))
    ref_t = np.tanh(v64)
    finite = np.isfinite(v) & (np.abs(v64) < 80)  # beyond, sigmoid underflows differently per type
    np.testing.assert_allclose(s[finite], ref_s[finite], rtol=rtol, atol=0)
    np.testing.assert_allclose(t[np.isfinite(v)], ref_t[np.isfinite(v)], rtol=rtol, atol=0)
    assert s[v == 0].tolist() == [0.5] and t[v == 0].tolist() == [0.0]
    assert s[v == np.inf].tolist() == [1.0] and s[v == -np.inf].max() < 1e-30
    assert t[v == np.inf].tolist() == [1.0] and t[v == -np.inf].tolist() == [-1.0]
    assert np.isnan(s[-1]) and np.isnan(t[-1])
