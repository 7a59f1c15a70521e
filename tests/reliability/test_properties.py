"""Property-based tests: random layer configurations and shapes against independent
NumPy references (float64), through the layers' public ``forward`` and backward.

Shapes stay small so that each example is cheap once the kernels are compiled.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import nnjit as nj
from nnjit.layers import (GRU, LSTM, AvgPool2D, BatchNormalization, Conv2D, Dense, LayerNormalization, MaxPool2D,
                          MultiHeadAttention, SimpleRNN)
from numpy_reference import activation as _act
from numpy_reference import activation_grad as _act_grad
from numpy_reference import sigmoid as _sigmoid

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2 ** 31 - 1)
RTOL, ATOL = 2e-4, 2e-5


def _close(actual, expected, rtol=RTOL, atol=ATOL):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol * scale)


def _rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _p(layer, key):
    return layer.params[key].astype(np.float64)


# ------------------------------------------------------------------ activations
ACTIVATIONS = ["linear", "relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "softmax", "swish"]


@SETTINGS
@given(seed=seeds, n=st.integers(1, 9), k=st.integers(1, 17), m=st.integers(1, 13),
       activation=st.sampled_from(ACTIVATIONS), use_bias=st.booleans())
def test_dense_forward_backward(seed, n, k, m, activation, use_bias):
    rng = np.random.default_rng(seed)
    nj.set_seed(seed)
    layer = Dense(m, activation=activation, use_bias=use_bias)
    layer.ensure_built((k,))
    if use_bias:
        layer.params["bias"][...] = _rand(rng, (m,), 0.5)
    x, dy = _rand(rng, (n, k)), _rand(rng, (n, m))
    y, back = layer.forward(x, training=True)
    w = _p(layer, "kernel")
    z = x.astype(np.float64) @ w + (_p(layer, "bias") if use_bias else 0)
    _close(y, _act(activation, z))
    dx = back(dy)
    dz = _act_grad(activation, z, dy.astype(np.float64))
    _close(dx, dz @ w.T)
    _close(layer.grads["kernel"], x.T.astype(np.float64) @ dz)
    if use_bias:
        _close(layer.grads["bias"], dz.sum(0))


# ------------------------------------------------------------------ conv and pooling
def _pads(size, k, s, d, padding):
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        return total // 2, total - total // 2
    return padding, padding


def _conv_reference(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    pt, pb = _pads(h, kh, sh, dh, padding)
    pl, pr = _pads(wd, kw, sw, dw, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((n, f, oh, ow))
    fg = f // groups
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
                out[:, g * fg:(g + 1) * fg] += np.einsum("nchw,fc->nfhw", patch, w[g * fg:(g + 1) * fg, :, i, j])
    return out + b[None, :, None, None]


@SETTINGS
@given(seed=seeds, n=st.integers(1, 3), groups=st.integers(1, 3), cg=st.integers(1, 3), fg=st.integers(1, 3),
       h=st.integers(3, 9), w=st.integers(3, 9), kh=st.integers(1, 3), kw=st.integers(1, 3),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       padding=st.sampled_from(["valid", "same", 0, 1, 2]), activation=st.sampled_from(["linear", "relu", "tanh"]))
def test_conv2d_forward(seed, n, groups, cg, fg, h, w, kh, kw, stride, dilation, padding, activation):
    if padding == "valid" or isinstance(padding, int):
        pad = 0 if padding == "valid" else padding
        assume(h + 2 * pad >= (kh - 1) * dilation[0] + 1 and w + 2 * pad >= (kw - 1) * dilation[1] + 1)
    rng = np.random.default_rng(seed)
    nj.set_seed(seed)
    layer = Conv2D(groups * fg, (kh, kw), strides=stride, padding=padding, dilation_rate=dilation, groups=groups,
                   activation=activation)
    layer.ensure_built((groups * cg, h, w))
    layer.params["bias"][...] = _rand(rng, (groups * fg,), 0.5)
    x = _rand(rng, (n, groups * cg, h, w))
    y, _ = layer.forward(x, training=False)
    ref = _act(activation, _conv_reference(x.astype(np.float64), _p(layer, "kernel"), _p(layer, "bias"), stride,
                                           padding, dilation, groups))
    assert y.shape == ref.shape
    _close(y, ref)


@SETTINGS
@given(seed=seeds, n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(2, 9), w=st.integers(2, 9),
       pool=st.tuples(st.integers(1, 3), st.integers(1, 3)), strides=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
       kind=st.sampled_from(["max", "avg"]))
def test_pooling_forward_backward(seed, n, c, h, w, pool, strides, kind):
    assume(pool[0] <= h and pool[1] <= w)
    rng = np.random.default_rng(seed)
    layer = (MaxPool2D if kind == "max" else AvgPool2D)(pool, strides)
    layer.ensure_built((c, h, w))
    x = _rand(rng, (n, c, h, w))
    sh, sw = strides or pool
    oh, ow = (h - pool[0]) // sh + 1, (w - pool[1]) // sw + 1
    windows = np.stack([x[:, :, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw]
                        for i in range(pool[0]) for j in range(pool[1])]).astype(np.float64)
    y, back = layer.forward(x, training=True)
    _close(y, windows.max(0) if kind == "max" else windows.mean(0))
    dy = _rand(rng, y.shape)
    dx = back(dy)
    ref = np.zeros((n, c, h, w))
    for a in range(pool[0]):
        for b in range(pool[1]):
            idx = a * pool[1] + b
            if kind == "max":
                # the gradient goes to the first maximum of each window, in row-major order
                first = np.argmax(windows, axis=0) == idx
                contrib = dy * first
            else:
                contrib = dy / (pool[0] * pool[1])
            ref[:, :, a:a + (oh - 1) * sh + 1:sh, b:b + (ow - 1) * sw + 1:sw] += contrib
    _close(dx, ref)


# ------------------------------------------------------------------ normalization
@SETTINGS
@given(seed=seeds, shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), f=st.integers(2, 24))
def test_layer_norm_forward_backward(seed, shape, f):
    rng = np.random.default_rng(seed)
    layer = LayerNormalization()
    layer.ensure_built(tuple(shape[1:]) + (f,))
    layer.params["gamma"][...] = _rand(rng, (f,), 0.5) + 1
    layer.params["beta"][...] = _rand(rng, (f,), 0.5)
    x = _rand(rng, tuple(shape) + (f,), 2.0) + 1.0
    dy = _rand(rng, x.shape)
    y, back = layer.forward(x, training=True)
    xd, g = x.astype(np.float64), _p(layer, "gamma")
    mu = xd.mean(-1, keepdims=True)
    inv = 1 / np.sqrt(xd.var(-1, keepdims=True) + 1e-5)
    xhat = (xd - mu) * inv
    _close(y, xhat * g + _p(layer, "beta"))
    dx = back(dy)
    dxhat = dy * g
    ref = inv * (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    _close(dx, ref, rtol=1e-3, atol=1e-4)
    _close(layer.grads["gamma"], (dy * xhat).reshape(-1, f).sum(0), rtol=1e-3, atol=1e-4)
    _close(layer.grads["beta"], dy.reshape(-1, f).sum(0), rtol=1e-3, atol=1e-4)


@SETTINGS
@given(seed=seeds, n=st.integers(2, 6), c=st.integers(1, 5), spatial=st.sampled_from([(), (3, 4), (1, 1), (2, 5)]),
       momentum=st.sampled_from([0.0, 0.9, 0.99]))
def test_batch_norm_training_and_inference(seed, n, c, spatial, momentum):
    rng = np.random.default_rng(seed)
    layer = BatchNormalization(momentum=momentum)
    layer.ensure_built((c,) + spatial)
    layer.params["gamma"][...] = _rand(rng, (c,), 0.3) + 1
    layer.params["beta"][...] = _rand(rng, (c,), 0.3)
    x = _rand(rng, (n, c) + spatial, 1.5) + 0.5
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, c) + (1,) * len(spatial)
    xd = x.astype(np.float64)
    mean, var = xd.mean(axes), xd.var(axes)
    count = xd.size // c
    y, _ = layer.forward(x, training=True)
    g, b = _p(layer, "gamma").reshape(bshape), _p(layer, "beta").reshape(bshape)
    _close(y, (xd - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-3) * g + b, rtol=1e-3, atol=1e-4)
    _close(layer.state["moving_mean"], (1 - momentum) * mean, rtol=1e-3, atol=1e-5)
    _close(layer.state["moving_variance"], momentum + (1 - momentum) * var * count / (count - 1), rtol=1e-3, atol=1e-5)
    mm, mv = layer.state["moving_mean"].astype(np.float64), layer.state["moving_variance"].astype(np.float64)
    y_inf, _ = layer.forward(x, training=False)
    _close(y_inf, (xd - mm.reshape(bshape)) / np.sqrt(mv.reshape(bshape) + 1e-3) * g + b, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------ attention
@SETTINGS
@given(seed=seeds, n=st.integers(1, 3), tq=st.integers(1, 6), heads=st.integers(1, 3), d=st.integers(1, 4),
       causal=st.booleans(), masked=st.booleans())
def test_self_attention_forward(seed, n, tq, heads, d, causal, masked):
    rng = np.random.default_rng(seed)
    nj.set_seed(seed)
    embed = heads * d
    layer = MultiHeadAttention(heads, causal=causal)
    layer.ensure_built((tq, embed))
    for key in ("bq", "bk", "bv", "bo"):
        layer.params[key][...] = _rand(rng, (embed,), 0.3)
    x = _rand(rng, (n, tq, embed))
    mask = None
    if masked:
        mask = rng.random((n, tq)) > 0.4
        mask[:, 0] = True  # every query sees at least one key
    y, _ = layer.forward(x, training=False, mask=mask)
    xd = x.astype(np.float64)
    q, k, v = (xd @ _p(layer, "w" + s) + _p(layer, "b" + s) for s in "qkv")
    split = lambda a: a.reshape(n, tq, heads, d).transpose(0, 2, 1, 3)  # noqa: E731
    qh, kh, vh = split(q), split(k), split(v)
    s = qh @ kh.transpose(0, 1, 3, 2) / math.sqrt(d)
    allowed = np.ones((n, 1, tq, tq), dtype=bool)
    if causal:
        allowed &= np.tril(np.ones((tq, tq), dtype=bool))[None, None]
    if mask is not None:
        allowed &= mask[:, None, None, :]
    s = np.where(allowed, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = (p @ vh).transpose(0, 2, 1, 3).reshape(n, tq, embed)
    _close(y, o @ _p(layer, "wo") + _p(layer, "bo"), rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------ recurrent
def _rnn_reference(kind, layer, x, units):
    xd = x.astype(np.float64)
    n, t, _ = x.shape
    W, U, b = _p(layer, "kernel"), _p(layer, "recurrent_kernel"), _p(layer, "bias")
    h = np.zeros((n, units))
    c = np.zeros((n, units))
    outs = []
    for s in range(t):
        zx = xd[:, s] @ W + b
        if kind == "simple":
            h = np.tanh(zx + h @ U)
        elif kind == "lstm":
            z = zx + h @ U
            i, f, g, o = (z[:, j * units:(j + 1) * units] for j in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:
            zh = h @ U + _p(layer, "recurrent_bias")
            r = _sigmoid(zx[:, :units] + zh[:, :units])
            zg = _sigmoid(zx[:, units:2 * units] + zh[:, units:2 * units])
            nn = np.tanh(zx[:, 2 * units:] + r * zh[:, 2 * units:])
            h = (1 - zg) * nn + zg * h
        outs.append(h)
    return np.stack(outs, axis=1)


@SETTINGS
@given(seed=seeds, kind=st.sampled_from(["simple", "lstm", "gru"]), n=st.integers(1, 4), t=st.integers(1, 5),
       f=st.integers(1, 5), units=st.integers(1, 6))
def test_recurrent_forward(seed, kind, n, t, f, units):
    rng = np.random.default_rng(seed)
    nj.set_seed(seed)
    layer = {"simple": SimpleRNN, "lstm": LSTM, "gru": GRU}[kind](units, return_sequences=True)
    layer.ensure_built((t, f))
    for key in layer.params:
        if "bias" in key:
            layer.params[key][...] = _rand(rng, layer.params[key].shape, 0.3)
    x = _rand(rng, (n, t, f))
    y, _ = layer.forward(x, training=False)
    _close(y, _rnn_reference(kind, layer, x, units), rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------ losses
@SETTINGS
@given(seed=seeds, n=st.integers(1, 8), c=st.integers(2, 6),
       name=st.sampled_from(["mse", "mae", "huber", "binary_crossentropy", "categorical_crossentropy",
                             "sparse_categorical_crossentropy"]))
def test_losses_value_and_gradient(seed, n, c, name):
    rng = np.random.default_rng(seed)
    loss = nj.losses.get(name)
    if name in ("mse", "mae", "huber"):
        t, p = _rand(rng, (n, c)), _rand(rng, (n, c))
        diff = p.astype(np.float64) - t
        if name == "mse":
            ref, grad = (diff ** 2).mean(), 2 * diff / diff.size
        elif name == "mae":
            ref, grad = np.abs(diff).mean(), np.sign(diff) / diff.size
        else:
            a = np.abs(diff)
            ref = np.where(a <= 1.0, 0.5 * diff ** 2, a - 0.5).mean()
            grad = np.clip(diff, -1.0, 1.0) / diff.size
    elif name == "binary_crossentropy":
        t = (rng.random((n, c)) > 0.5).astype(np.float32)
        p = (0.05 + 0.9 * rng.random((n, c))).astype(np.float32)
        pd = p.astype(np.float64)
        ref = -(t * np.log(pd) + (1 - t) * np.log(1 - pd)).mean()
        grad = (pd - t) / (pd * (1 - pd)) / pd.size
    else:
        logits = rng.standard_normal((n, c))
        pd = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        p = pd.astype(np.float32)
        pd = p.astype(np.float64)
        labels = rng.integers(0, c, n)
        onehot = np.eye(c)[labels]
        t = labels if name.startswith("sparse") else onehot.astype(np.float32)
        # as Keras: the probabilities are first divided by their sum
        total = pd.sum(1, keepdims=True)
        ref = -(onehot * np.log(pd / total)).sum(1).mean()
        grad = (-onehot / pd + 1 / total) / n
    value = loss(t, p)
    _close(value, ref, rtol=1e-4, atol=1e-6)
    y_true = loss.prepare_targets(t, (c,), argument="y")
    v2, g = loss.value_and_grad(y_true, p)
    _close(v2, ref, rtol=1e-4, atol=1e-6)
    _close(g, grad, rtol=1e-3, atol=1e-5)
