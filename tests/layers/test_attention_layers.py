"""LayerNormalization, MultiHeadAttention, PositionalEmbedding and TransformerEncoder
through the public API."""
import math

import numpy as np
import pytest

import nnjit as nj
from nnjit.layers import (Dense, Embedding, LayerNormalization, MultiHeadAttention, PositionalEmbedding,
                          TransformerEncoder)


def _x(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def layer_norm_reference(x, gamma, beta, eps):
    x = x.astype(np.float64)
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def mha_reference(layer, q_in, kv_in, key_mask=None):
    """Full T x T softmax, masks as -inf, fully masked rows output zero."""
    p = {k: v.astype(np.float64) for k, v in layer.params.items()}
    h = layer.num_heads
    b, tq, e = q_in.shape
    tk = kv_in.shape[1]
    d = e // h
    q = (q_in @ p["wq"] + p["bq"]).reshape(b, tq, h, d).transpose(0, 2, 1, 3)
    k = (kv_in @ p["wk"] + p["bk"]).reshape(b, tk, h, d).transpose(0, 2, 1, 3)
    v = (kv_in @ p["wv"] + p["bv"]).reshape(b, tk, h, d).transpose(0, 2, 1, 3)
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
    allowed = np.ones((b, 1, tq, tk), bool)
    if layer.causal:
        allowed &= np.tril(np.ones((tq, tk), bool), k=tk - tq)[None, None]
    if key_mask is not None:
        allowed &= key_mask.astype(bool)[:, None, None, :]
    s = np.where(allowed, s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True)
    w = np.where(allowed, np.exp(s - np.where(np.isfinite(m), m, 0)), 0.0)
    total = w.sum(-1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    out = (w @ v).transpose(0, 2, 1, 3).reshape(b, tq, e)
    return out @ p["wo"] + p["bo"], w


def _randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    for key, value in layer.params.items():
        value[...] = rng.standard_normal(value.shape) * (0.3 if value.ndim == 2 else 0.2)


# ---------------------------------------------------------------- LayerNormalization
def test_layer_norm_matches_reference_and_gradcheck():
    layer = LayerNormalization(epsilon=1e-3)
    x = _x((3, 4, 6)) * 3 + 1
    layer.ensure_built(x.shape[1:])
    _randomize(layer)
    np.testing.assert_allclose(layer(x.astype(np.float32)), layer_norm_reference(x, layer.params["gamma"],
                                                                                 layer.params["beta"], 1e-3),
                               rtol=1e-4, atol=1e-4)
    assert nj.gradcheck(layer, x) < 1e-6


def test_layer_norm_refuses_bad_input():
    with pytest.raises(ValueError, match="epsilon=-1"):
        LayerNormalization(epsilon=-1)
    layer = LayerNormalization()
    layer(_x((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="expected 5 features"):
        layer(_x((2, 4), dtype=np.float32))


# ---------------------------------------------------------------- MultiHeadAttention
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_full_softmax(causal):
    nj.set_seed(0)
    layer = MultiHeadAttention(4, causal=causal)
    x = _x((2, 7, 12), seed=2, dtype=np.float32)
    layer.ensure_built(x.shape[1:])
    _randomize(layer)
    y, scores = layer(x, return_attention_scores=True)
    ref, w = mha_reference(layer, x.astype(np.float64), x.astype(np.float64))
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scores, w, rtol=1e-4, atol=1e-5)
    assert scores.shape == (2, 4, 7, 7)
    if causal:
        assert np.all(scores[..., np.triu_indices(7, 1)[0], np.triu_indices(7, 1)[1]] == 0)


def test_cross_attention_with_key_padding_mask():
    nj.set_seed(1)
    layer = MultiHeadAttention(2)
    q, kv = _x((3, 4, 6), seed=3, dtype=np.float32), _x((3, 9, 6), seed=4, dtype=np.float32)
    mask = np.ones((3, 9), np.uint8)
    mask[1, 5:] = 0
    mask[2, :] = 0  # nothing to attend to: the attention output is zero, never NaN
    layer.ensure_built([q.shape[1:], kv.shape[1:]])
    _randomize(layer)
    y = layer(q, kv, mask=mask)
    ref, _ = mha_reference(layer, q.astype(np.float64), kv.astype(np.float64), mask)
    assert y.shape == (3, 4, 6) and np.isfinite(y).all()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_causal_output_ignores_later_steps():
    nj.set_seed(2)
    layer = MultiHeadAttention(2, causal=True)
    x = _x((1, 10, 8), seed=5, dtype=np.float32)
    y = layer(x)
    x2 = x.copy()
    x2[:, 6:] = _x((1, 4, 8), seed=6)
    y2 = layer(x2)
    np.testing.assert_array_equal(y[:, :6], y2[:, :6])
    assert not np.allclose(y[:, 6:], y2[:, 6:])


def test_torch_layout_agrees():
    torch = pytest.importorskip("torch")
    nj.set_seed(3)
    layer = MultiHeadAttention(4)
    x = _x((2, 5, 8), seed=7, dtype=np.float32)
    layer.ensure_built(x.shape[1:])
    _randomize(layer)
    ref = torch.nn.MultiheadAttention(8, 4, batch_first=True)
    p = {k: torch.from_numpy(v.T.copy() if v.ndim == 2 else v.copy()) for k, v in layer.params.items()}
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([p["wq"], p["wk"], p["wv"]]))
        ref.in_proj_bias.copy_(torch.cat([p["bq"], p["bk"], p["bv"]]))
        ref.out_proj.weight.copy_(p["wo"])
        ref.out_proj.bias.copy_(p["bo"])
        t = torch.from_numpy(x)
        expected = ref(t, t, t, need_weights=False)[0].numpy()
    np.testing.assert_allclose(layer(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_gradcheck(causal):
    nj.set_seed(4)
    assert nj.gradcheck(MultiHeadAttention(2, causal=causal), _x((2, 5, 6), seed=8)) < 1e-5
    assert nj.gradcheck(MultiHeadAttention(3, causal=causal), [_x((2, 4, 6), seed=9), _x((2, 7, 6), seed=10)]) < 1e-5


def test_attention_dropout_only_in_training():
    nj.set_seed(5)
    layer = MultiHeadAttention(2, dropout=0.5)
    x = _x((2, 6, 4), seed=11, dtype=np.float32)
    np.testing.assert_array_equal(layer(x), layer(x))
    y1, _ = layer.forward(x, training=True)
    y2, _ = layer.forward(x, training=True)
    assert not np.allclose(y1, y2)


def test_attention_refuses_bad_input():
    with pytest.raises(ValueError, match="num_heads=0"):
        MultiHeadAttention(0)
    with pytest.raises(ValueError, match="dropout=1.5"):
        MultiHeadAttention(2, dropout=1.5)
    with pytest.raises(ValueError, match="divisible by num_heads=3"):
        MultiHeadAttention(3)(_x((1, 4, 8), dtype=np.float32))
    layer = MultiHeadAttention(2)
    layer(_x((1, 4, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="expected query with 8 features"):
        layer(_x((1, 4, 6), dtype=np.float32))
    with pytest.raises(ValueError, match="batch, time, embed"):
        layer(_x((1, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="key mask of shape"):
        layer(_x((1, 4, 8), dtype=np.float32), mask=np.ones((1, 5)))


# ---------------------------------------------------------------- PositionalEmbedding
def test_positional_embedding_tokens_and_vectors():
    nj.set_seed(6)
    tokens = PositionalEmbedding(10, 4, input_dim=7)
    ids = np.array([[1, 2, 3], [6, 0, 0]])
    y = tokens(ids)
    np.testing.assert_allclose(y, tokens.params["embeddings"][ids] + tokens.params["positions"][:3], rtol=1e-6)
    vectors = PositionalEmbedding(10, 4)
    x = _x((2, 5, 4), dtype=np.float32)
    np.testing.assert_allclose(vectors(x), x + vectors.params["positions"][:5], rtol=1e-6)
    assert nj.gradcheck(PositionalEmbedding(6, 3), _x((2, 4, 3))) < 1e-6
    with pytest.raises(ValueError, match="max_len=10"):
        vectors(_x((1, 11, 4), dtype=np.float32))


# ---------------------------------------------------------------- TransformerEncoder
@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_encoder_matches_torch(norm_first):
    torch = pytest.importorskip("torch")
    nj.set_seed(7)
    block = TransformerEncoder(2, 12, norm_first=norm_first)
    x = _x((2, 5, 8), seed=12, dtype=np.float32)
    block.ensure_built(x.shape[1:])
    _randomize(block)
    ref = torch.nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=norm_first, layer_norm_eps=1e-5)
    p = {k: torch.from_numpy(v.T.copy() if v.ndim == 2 else v.copy()) for k, v in block.params.items()}
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([p["attention_wq"], p["attention_wk"], p["attention_wv"]]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([p["attention_bq"], p["attention_bk"], p["attention_bv"]]))
        ref.self_attn.out_proj.weight.copy_(p["attention_wo"])
        ref.self_attn.out_proj.bias.copy_(p["attention_bo"])
        ref.linear1.weight.copy_(p["ff1_kernel"]); ref.linear1.bias.copy_(p["ff1_bias"])
        ref.linear2.weight.copy_(p["ff2_kernel"]); ref.linear2.bias.copy_(p["ff2_bias"])
        ref.norm1.weight.copy_(p["norm1_gamma"]); ref.norm1.bias.copy_(p["norm1_beta"])
        ref.norm2.weight.copy_(p["norm2_gamma"]); ref.norm2.bias.copy_(p["norm2_beta"])
        ref.eval()
        expected = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(block(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_encoder_gradcheck(norm_first):
    nj.set_seed(8)
    assert nj.gradcheck(TransformerEncoder(2, 6, norm_first=norm_first, causal=True), _x((2, 4, 6), seed=13)) < 1e-5


def test_transformer_classifier_learns_a_sequence_task():
    """Is the first token of the sequence repeated anywhere later? Needs attention across steps."""
    rng = np.random.default_rng(0)
    n, steps = 2560, 8
    x = rng.integers(1, 9, (n, steps))
    y = (x[:, 1:] == x[:, :1]).any(axis=1).astype(np.int64)
    nj.set_seed(0)
    model = nj.Sequential([nj.Input((steps,)), PositionalEmbedding(steps, 16, input_dim=9),
                           TransformerEncoder(2, 32), nj.layers.GlobalAvgPool1D(), Dense(2)])
    model.compile(nj.optimizers.Adam(3e-3), nj.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x[:2048], y[:2048], epochs=20, batch_size=32, verbose=0)
    assert model.evaluate(x[2048:], y[2048:])["accuracy"] > 0.95  # always answering "yes" scores 0.61


def test_transformer_attention_scores_for_inspection():
    nj.set_seed(10)
    block = TransformerEncoder(2, 8, causal=True)
    x = _x((3, 5, 4), seed=14, dtype=np.float32)
    scores = block.attention_scores(x)
    assert scores.shape == (3, 2, 5, 5)
    np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.triu(scores[0, 0], 1) == 0)
    _, expected = block.attention(block.norm1(x), return_attention_scores=True)
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


def test_padding_mask_reaches_attention():
    nj.set_seed(9)
    model = nj.Sequential([nj.Input((6,)), Embedding(10, 8, mask_zero=True), TransformerEncoder(2, 8),
                           nj.layers.Flatten()])
    a = model.predict(np.array([[3, 4, 5, 0, 0, 0]]))
    b = model.predict(np.array([[3, 4, 5, 0, 0, 0]]))
    np.testing.assert_array_equal(a, b)
    # The real tokens' outputs do not depend on what the padded positions hold.
    emb = model.layers[0]
    emb.params["embeddings"][0] += 5.0
    c = model.predict(np.array([[3, 4, 5, 0, 0, 0]]))
    np.testing.assert_allclose(a.reshape(6, 8)[:3], c.reshape(6, 8)[:3], rtol=1e-5, atol=1e-6)
