"""MultiHeadAttention, PositionalEmbedding and TransformerEncoder."""
from __future__ import annotations

import math

import numpy as np

from .. import initializers, runtime
from ..kernels.activations import LINEAR
from ..kernels.attention import attention_backward, attention_forward, attention_weights
from ..kernels.dense import dense_backward, dense_forward
from ..kernels.embedding import embedding_backward, embedding_forward
from .base import Layer, check_positive_int, check_rate, shape_str
from .composite import CompositeLayer
from .core import Dense, Dropout, _config_of, _empty
from .embedding import as_token_ids
from .normalization import LayerNormalization

_NO_KEY_MASK = np.zeros((0, 0), dtype=np.uint8)


def _split_heads(a2, batch, steps, heads):
    """(batch*steps, heads*d) -> (batch, heads, steps, d), contiguous."""
    d = a2.shape[1] // heads
    return np.ascontiguousarray(a2.reshape(batch, steps, heads, d).transpose(0, 2, 1, 3))


def _merge_heads(a4):
    """(batch, heads, steps, d) -> (batch*steps, heads*d), contiguous."""
    b, h, t, d = a4.shape
    return np.ascontiguousarray(a4.transpose(0, 2, 1, 3)).reshape(b * t, h * d)


def _sequence_shape(layer, shape, argument):
    if len(shape) != 2 or any(s is None for s in shape[1:]):
        raise ValueError(f"{layer.name}: expected {argument} of shape (batch, time, embed). "
                         f"Received: {argument} with shape {shape_str((None,) + tuple(shape))}")


class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention (PyTorch's layout).

    ``mha(x)`` is self-attention; ``mha(query, key_value)`` cross-attention.  Queries, keys
    and values are projected (``x @ wq + bq`` ...), head h uses the contiguous columns
    h*d ... (h+1)*d - 1 of each projection (d = embed / num_heads), scores are scaled by
    1/sqrt(d), and the heads' outputs are concatenated and projected by ``wo``, ``bo``.
    The attention kernel works in tiles with an online softmax, so its memory grows
    linearly with the sequence length.

    Args:
        num_heads: number of heads; must divide the embedding size.
        causal: a query attends only to keys at its own position or before.
        dropout: rate of dropout on the attention weights during training.

    Calling on arrays with ``return_attention_scores=True`` returns ``(output, scores)``
    with scores (batch, heads, query time, key time).  A key padding mask (batch, key
    time), nonzero where a key is real, comes from ``Embedding(mask_zero=True)`` or
    ``mask=``.  Parameters: wq, wk, wv, wo (embed, embed); bq, bk, bv, bo (embed,).
    """

    _skips_input_grad = True
    _accepts_mask = True
    supports_masking = True

    def __init__(self, num_heads, causal=False, dropout=0.0, use_bias=True, kernel_initializer="glorot_uniform",
                 name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.num_heads = check_positive_int(num_heads, "num_heads", "MultiHeadAttention")
        self.causal = bool(causal)
        self.dropout = check_rate(dropout, "dropout", "MultiHeadAttention")
        self.use_bias = bool(use_bias)
        initializers.get(kernel_initializer, "kernel_initializer")
        self.kernel_initializer = kernel_initializer

    @staticmethod
    def _split_shapes(input_shape):
        if input_shape and isinstance(input_shape[0], (tuple, list)):
            if len(input_shape) != 2:
                raise ValueError(f"MultiHeadAttention: expected a query or [query, key_value]. "
                                 f"Received {len(input_shape)} inputs")
            return tuple(input_shape[0]), tuple(input_shape[1])
        return tuple(input_shape), None

    def build(self, input_shape):
        q_shape, kv_shape = self._split_shapes(input_shape)
        _sequence_shape(self, q_shape, "query")
        embed = q_shape[-1]
        if embed % self.num_heads:
            raise ValueError(f"{self.name}: the embedding size must be divisible by num_heads={self.num_heads}. "
                             f"Received: query with {embed} features")
        for key in ("wq", "wk", "wv", "wo"):
            self.add_weight(key, (embed, embed), self.kernel_initializer)
        if self.use_bias:
            for key in ("bq", "bk", "bv", "bo"):
                self.add_weight(key, (embed,), "zeros")

    def check_input_shape(self, shape):
        q_shape, kv_shape = self._split_shapes(shape)
        embed = self.params["wq"].shape[0]
        for argument, s in (("query", q_shape), ("key_value", kv_shape)):
            if s is None:
                continue
            _sequence_shape(self, s, argument)
            if s[-1] != embed:
                raise ValueError(f"{self.name}: expected {argument} with {embed} features, as the layer was built. "
                                 f"Received: {argument} with shape {shape_str((None,) + tuple(s))}")

    def compute_output_shape(self, input_shape):
        return self._split_shapes(input_shape)[0]

    def compute_mask(self, x, mask=None):
        return None if isinstance(x, (list, tuple)) else mask

    def __call__(self, query, key_value=None, training=False, return_attention_scores=False, mask=None):
        from .input import SymbolicTensor

        inputs = query if key_value is None else [query, key_value]
        if isinstance(query, SymbolicTensor):
            return super().__call__(inputs)
        from ..models.validation import as_input_array

        arrays = [as_input_array(a, "query" if i == 0 else "key_value", self.name)
                  for i, a in enumerate(inputs if key_value is not None else [query])]
        shapes = [a.shape[1:] for a in arrays]
        self.ensure_built(shapes if key_value is not None else shapes[0])
        self.check_input_shape(shapes if key_value is not None else shapes[0])
        x = arrays if key_value is not None else arrays[0]
        y, _ = self.forward(x, training=training, mask=mask)
        if not return_attention_scores:
            return y
        return y, self._scores(x, mask)

    def _weights(self, dtype):
        p = self.params
        if self.use_bias:
            return [(p["w" + k], p["b" + k]) for k in "qkvo"]
        return [(p["w" + k], _empty(dtype)) for k in "qkvo"]

    def _project(self, a2, w, b, nblocks):
        y, z = dense_forward(a2, w, b, LINEAR, nblocks)
        return y, z

    def _key_mask(self, mask, batch, steps):
        if mask is None:
            return _NO_KEY_MASK
        m = np.asarray(mask)
        if m.shape != (batch, steps):
            raise ValueError(f"{self.name}: expected a key mask of shape ({batch}, {steps}) (batch, key time). "
                             f"Received: mask with shape {m.shape}")
        return np.ascontiguousarray(m != 0, dtype=np.uint8)

    def _heads(self, inputs, mask):
        """Projected, head-split q, k, v and everything backward needs."""
        cross = isinstance(inputs, (list, tuple))
        q_in, kv_in = (inputs[0], inputs[1]) if cross else (inputs, inputs)
        if not self.built:
            self.ensure_built([q_in.shape[1:], kv_in.shape[1:]] if cross else q_in.shape[1:])
        dtype = self.params["wq"].dtype
        q_in = np.ascontiguousarray(q_in, dtype=dtype)
        kv_in = q_in if not cross else np.ascontiguousarray(kv_in, dtype=dtype)
        _sequence_shape(self, q_in.shape[1:], "query")
        _sequence_shape(self, kv_in.shape[1:], "key_value")
        if kv_in.shape[0] != q_in.shape[0]:
            raise ValueError(f"{self.name}: query and key_value must have the same batch size. "
                             f"Received: {q_in.shape[0]} and {kv_in.shape[0]}")
        batch, tq, embed = q_in.shape
        tk = kv_in.shape[1]
        heads = self.num_heads
        q2, kv2 = q_in.reshape(batch * tq, embed), kv_in.reshape(batch * tk, embed)
        nblocks = runtime.blocks_for(batch * (tq + 2 * tk) * embed * embed)
        (wq, bq), (wk, bk), (wv, bv), _ = self._weights(dtype)
        qp, zq = self._project(q2, wq, bq, nblocks)
        kp, zk = self._project(kv2, wk, bk, nblocks)
        vp, zv = self._project(kv2, wv, bv, nblocks)
        qh, kh, vh = (_split_heads(qp, batch, tq, heads), _split_heads(kp, batch, tk, heads),
                      _split_heads(vp, batch, tk, heads))
        key_mask = self._key_mask(mask, batch, tk)
        return cross, q2, kv2, (qp, zq), (kp, zk), (vp, zv), qh, kh, vh, key_mask, nblocks

    def _scores(self, inputs, mask):
        *_, qh, kh, _, key_mask, nblocks = self._heads(inputs, mask)
        scale = 1.0 / math.sqrt(qh.shape[-1])
        return attention_weights(qh, kh, key_mask, self.causal, scale, runtime.blocks_for(qh.size * kh.shape[2]))

    def forward(self, inputs, training=False, mask=None):
        """``inputs``: x (self-attention) or [query, key_value].  Returns the output and a
        backward closure returning dx (or [d_query, d_key_value])."""
        cross, q2, kv2, (qp, zq), (kp, zk), (vp, zv), qh, kh, vh, key_mask, nblocks = self._heads(inputs, mask)
        batch, heads, tq, d = qh.shape
        scale = 1.0 / math.sqrt(d)
        rate = self.dropout if training else 0.0
        seed = int(runtime.rng().integers(1, 2 ** 62)) if rate > 0 else 0
        att_blocks = runtime.blocks_for(batch * heads * tq * kh.shape[2] * d * 4)
        oh, lse = attention_forward(qh, kh, vh, key_mask, self.causal, scale, rate, seed, att_blocks)
        o2 = _merge_heads(oh)
        dtype = o2.dtype
        (wq, bq), (wk, bk), (wv, bv), (wo, bo) = self._weights(dtype)
        y2, zo = dense_forward(o2, wo, bo, LINEAR, nblocks)
        embed = wo.shape[1]

        def grads_of(k):
            if not self.trainable:
                return self.params["w" + k], _empty(dtype)
            return self.grads["w" + k], (self.grads["b" + k] if self.use_bias else _empty(dtype))

        def backward(dy, need_dx=True):
            train = self.trainable
            dy2 = np.ascontiguousarray(dy, dtype=dtype).reshape(batch * tq, embed)
            do2 = dense_backward(dy2, o2, wo, y2, zo, LINEAR, *grads_of("o"), True, train, nblocks)
            doh = _split_heads(do2, batch, tq, heads)
            dqh, dkh, dvh = attention_backward(doh, qh, kh, vh, oh, lse, key_mask, self.causal, scale, rate, seed,
                                               att_blocks)
            tk = kh.shape[2]
            dq2 = dense_backward(_merge_heads(dqh), q2, wq, qp, zq, LINEAR, *grads_of("q"), need_dx, train, nblocks)
            dk2 = dense_backward(_merge_heads(dkh), kv2, wk, kp, zk, LINEAR, *grads_of("k"), need_dx, train, nblocks)
            dv2 = dense_backward(_merge_heads(dvh), kv2, wv, vp, zv, LINEAR, *grads_of("v"), need_dx, train, nblocks)
            if not need_dx:
                return None
            if cross:
                return [dq2.reshape(batch, tq, embed), (dk2 + dv2).reshape(batch, tk, embed)]
            return (dq2 + dk2 + dv2).reshape(batch, tq, embed)

        return y2.reshape(batch, tq, embed), backward

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "causal": self.causal, "dropout": self.dropout,
                "use_bias": self.use_bias, "kernel_initializer": _config_of(self.kernel_initializer)}

    def extra_repr(self):
        return f"num_heads={self.num_heads}" + (", causal=True" if self.causal else "") + \
            (f", dropout={self.dropout}" if self.dropout else "")


class PositionalEmbedding(Layer):
    """Adds a learned embedding of each position to the sequence.

    Args:
        max_len: longest sequence the layer accepts.
        output_dim: embedding size.
        input_dim: vocabulary size.  When given, inputs are token ids (batch, time) and the
            layer returns token embedding + position embedding; when None, inputs are
            vectors (batch, time, output_dim) and the position embedding is added to them.
        mask_zero: with token ids, id 0 is padding and the layer emits a key mask.

    Parameters: positions (max_len, output_dim), and embeddings (input_dim, output_dim)
    with ``input_dim``.
    """

    _skips_input_grad = True
    supports_masking = True

    def __init__(self, max_len, output_dim, input_dim=None, mask_zero=False, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.max_len = check_positive_int(max_len, "max_len", "PositionalEmbedding")
        self.output_dim = check_positive_int(output_dim, "output_dim", "PositionalEmbedding")
        self.input_dim = None if input_dim is None else check_positive_int(input_dim, "input_dim", "PositionalEmbedding")
        self.mask_zero = bool(mask_zero) and self.input_dim is not None

    def _check(self, shape):
        tokens = self.input_dim is not None
        rank = 1 if tokens else 2
        if len(shape) != rank or (not tokens and shape[-1] != self.output_dim):
            layout = "(batch, time) token ids" if tokens else f"(batch, time, {self.output_dim})"
            raise ValueError(f"{self.name}: expected inputs of shape {layout}. "
                             f"Received: x with shape {shape_str((None,) + tuple(shape))}")
        if shape[0] is not None and shape[0] > self.max_len:
            raise ValueError(f"{self.name}: sequences may have at most max_len={self.max_len} steps. "
                             f"Received: x with {shape[0]} steps")

    def build(self, input_shape):
        self._check(tuple(input_shape))
        if self.input_dim is not None:
            self.add_weight("embeddings", (self.input_dim, self.output_dim), "random_uniform")
        self.add_weight("positions", (self.max_len, self.output_dim), "random_uniform")

    def check_input_shape(self, shape):
        self._check(tuple(shape))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def compute_mask(self, x, mask=None):
        if self.mask_zero:
            return (np.asarray(x) != 0).astype(np.uint8)
        return mask

    def forward(self, x, training=False):
        if not self.built:
            self.ensure_built(np.shape(x)[1:])
        self._check(np.shape(x)[1:])
        pos = self.params["positions"]
        steps = np.shape(x)[1]
        if self.input_dim is not None:
            ids = as_token_ids(x, self.input_dim, self.name)
            y = embedding_forward(ids, self.params["embeddings"], runtime.blocks_for(ids.size * self.output_dim))
        else:
            ids = None
            y = np.array(x, dtype=pos.dtype)
        y += pos[:steps]
        in_shape = np.shape(x)

        def backward(dy, need_dx=True):
            dy = np.ascontiguousarray(dy, dtype=pos.dtype)
            if self.trainable:
                self.grads["positions"][:steps] += dy.sum(axis=0)
                if ids is not None:
                    embedding_backward(ids, dy, self.grads["embeddings"], runtime.blocks_for(dy.size))
            if not need_dx:
                return None
            return np.zeros(in_shape, dtype=pos.dtype) if ids is not None else dy

        return y, backward

    def get_config(self):
        return {**super().get_config(), "max_len": self.max_len, "output_dim": self.output_dim,
                "input_dim": self.input_dim, "mask_zero": self.mask_zero}


class TransformerEncoder(CompositeLayer):
    """A Transformer encoder block over (batch, time, embed).

    ``norm_first=True`` (pre-norm, the default):
        h = x + Dropout(MHA(LayerNorm(x)));  y = h + Dropout(FF(LayerNorm(h)))
    ``norm_first=False`` (post-norm, the original Transformer):
        h = LayerNorm(x + Dropout(MHA(x)));  y = LayerNorm(h + Dropout(FF(h)))
    with FF(h) = Dense(embed)(Dense(ff_dim, activation)(h)).

    Args:
        num_heads: attention heads (must divide embed).
        ff_dim: width of the feed-forward layer.
        dropout: rate of the dropouts (attention weights, and after attention and FF).
        norm_first: pre-norm (True) or post-norm.
        activation: of the feed-forward layer, "gelu" by default.
        causal: each position attends only to itself and earlier ones (language models).
        epsilon: of the layer normalizations.

    A key padding mask from ``Embedding``/``PositionalEmbedding(mask_zero=True)`` is applied.
    """

    _skips_input_grad = True
    _accepts_mask = True
    supports_masking = True

    def __init__(self, num_heads, ff_dim, dropout=0.0, norm_first=True, activation="gelu", causal=False,
                 epsilon=1e-5, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.num_heads = check_positive_int(num_heads, "num_heads", "TransformerEncoder")
        self.ff_dim = check_positive_int(ff_dim, "ff_dim", "TransformerEncoder")
        self.dropout = check_rate(dropout, "dropout", "TransformerEncoder")
        self.norm_first = bool(norm_first)
        self.activation = activation
        self.causal = bool(causal)
        self.epsilon = float(epsilon)
        base = self.name
        self.norm1 = LayerNormalization(epsilon, name=f"{base}/norm1")
        self.attention = MultiHeadAttention(num_heads, causal=causal, dropout=dropout, name=f"{base}/attention")
        self.norm2 = LayerNormalization(epsilon, name=f"{base}/norm2")
        self.ff1 = Dense(ff_dim, activation=activation, name=f"{base}/ff1")
        self.ff2 = None  # its width is the embedding size, known at build
        self.drop1 = Dropout(dropout, name=f"{base}/dropout1")
        self.drop2 = Dropout(dropout, name=f"{base}/dropout2")

    def _sublayers(self):
        return [("norm1_", self.norm1), ("attention_", self.attention), ("norm2_", self.norm2),
                ("ff1_", self.ff1), ("ff2_", self.ff2)]

    def build(self, input_shape):
        _sequence_shape(self, tuple(input_shape), "x")
        embed = input_shape[-1]
        self.ff2 = Dense(embed, name=f"{self.name}/ff2")
        self.attention.ensure_built(input_shape)
        self.norm1.ensure_built(input_shape)
        self.norm2.ensure_built(input_shape)
        self.ff1.ensure_built(input_shape)
        self.ff2.ensure_built(tuple(input_shape[:-1]) + (self.ff_dim,))
        self._adopt()

    def check_input_shape(self, shape):
        self.attention.check_input_shape(tuple(shape))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False, mask=None):
        if not self.built:
            self.ensure_built(x.shape[1:])
        self._sync()
        x = np.ascontiguousarray(x, dtype=self.params["attention_wq"].dtype)
        backs = []

        def run(layer, h, **kw):
            out, back = layer.forward(h, training, **kw)
            backs.append(back)
            return out

        if self.norm_first:
            a = run(self.drop1, run(self.attention, run(self.norm1, x), mask=mask))
            h = x + a
            f = run(self.drop2, run(self.ff2, run(self.ff1, run(self.norm2, h))))
            y = h + f
        else:
            a = run(self.drop1, run(self.attention, x, mask=mask))
            h = run(self.norm1, x + a)
            f = run(self.drop2, run(self.ff2, run(self.ff1, h)))
            y = run(self.norm2, h + f)

        def backward(dy, need_dx=True):
            b = list(backs)
            if self.norm_first:
                # backs: norm1, attention, drop1, norm2, ff1, ff2, drop2
                d_h = dy + b[3](b[4](b[5](b[6](dy))))
                return d_h + b[0](b[1](b[2](d_h)))
            # backs: attention, drop1, norm1, ff1, ff2, drop2, norm2
            d_sum2 = b[6](dy)
            d_h = d_sum2 + b[3](b[4](b[5](d_sum2)))
            d_sum1 = b[2](d_h)
            return d_sum1 + b[0](b[1](d_sum1))

        return y, backward

    def attention_scores(self, x, mask=None):
        """The attention weights (batch, heads, time, time) of this block for inputs ``x``
        (inference mode), for inspection."""
        from ..models.validation import as_input_array

        x = as_input_array(x, "x", self.name)
        self.ensure_built(x.shape[1:])
        self.check_input_shape(x.shape[1:])
        self._sync()
        attention_input = self.norm1(x) if self.norm_first else x
        return self.attention(attention_input, return_attention_scores=True, mask=mask)[1]

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "ff_dim": self.ff_dim, "dropout": self.dropout,
                "norm_first": self.norm_first, "activation": self.activation, "causal": self.causal,
                "epsilon": self.epsilon}

    def extra_repr(self):
        return f"num_heads={self.num_heads}, ff_dim={self.ff_dim}" + (", causal=True" if self.causal else "")
