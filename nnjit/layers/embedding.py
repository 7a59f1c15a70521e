"""Embedding: integer token ids to learned vectors."""
from __future__ import annotations

import numpy as np

from .. import initializers, runtime
from ..kernels.embedding import embedding_backward, embedding_forward
from .base import Layer, check_positive_int, shape_str
from .core import _config_of


def as_token_ids(ids, input_dim: int, owner: str, argument: str = "x") -> np.ndarray:
    """``ids`` as a C-contiguous int64 array, refusing non-integers and ids outside
    [0, input_dim) with an error naming the first bad value."""
    a = np.asarray(ids)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
                                 or a.dtype == bool):
        raise TypeError(f"{owner}: expected integer token ids for {argument}. Received: {argument} with dtype {a.dtype}")
    if a.ndim < 1 or a.size == 0:
        raise ValueError(f"{owner}: expected a non-empty array of token ids for {argument}. "
                         f"Received: {argument} with shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{owner}: token ids must be integers. Received: {argument}[{where}]={a[where]!r}")
    ids64 = np.ascontiguousarray(a, dtype=np.int64)
    low, high = int(ids64.min()), int(ids64.max())
    if low < 0 or high >= input_dim:
        value = low if low < 0 else high
        where = tuple(int(i) for i in np.argwhere(ids64 == value)[0])
        raise ValueError(f"{owner}: token ids must lie in [0, {input_dim}) (input_dim={input_dim}). "
                         f"Received: {argument}[{where}]={value}")
    return ids64


class Embedding(Layer):
    """Maps integer token ids to dense vectors: ``y[..., :] = embeddings[ids[...]]``.

    Args:
        input_dim: vocabulary size (ids lie in [0, input_dim)).
        output_dim: size of each vector.
        mask_zero: id 0 is padding: the layer emits a mask (ids != 0) that recurrent layers
            use to skip padded steps (state carried through, outputs zeroed).
        embeddings_initializer: name or callable; uniform in [-0.05, 0.05] by default.

    Input shape (batch, ...) of integer ids (float arrays holding integers are accepted);
    output shape (batch, ..., output_dim).  Parameter: embeddings (input_dim, output_dim).
    """

    _skips_input_grad = True
    supports_masking = True

    def __init__(self, input_dim, output_dim, mask_zero=False, embeddings_initializer="random_uniform",
                 name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.input_dim = check_positive_int(input_dim, "input_dim", "Embedding")
        self.output_dim = check_positive_int(output_dim, "output_dim", "Embedding")
        self.mask_zero = bool(mask_zero)
        initializers.get(embeddings_initializer, "embeddings_initializer")
        self.embeddings_initializer = embeddings_initializer

    def build(self, input_shape):
        self.add_weight("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def check_input_shape(self, shape):
        built = self.input_shape
        if built is not None and len(shape) != len(built):
            raise ValueError(f"{self.name}: expected token ids of shape {shape_str((None,) + tuple(built))}. "
                             f"Received: x with shape {shape_str((None,) + tuple(shape))}")

    def compute_mask(self, ids, mask=None):
        """The padding mask (N, ...) as uint8 (ids != 0) when ``mask_zero``, else None."""
        if not self.mask_zero:
            return None
        return (np.asarray(ids) != 0).astype(np.uint8)

    def forward(self, x, training=False):
        if not self.built:
            self.ensure_built(np.shape(x)[1:])
        ids = as_token_ids(x, self.input_dim, self.name)
        table = self.params["embeddings"]
        nblocks = runtime.blocks_for(ids.size * self.output_dim)
        y = embedding_forward(ids, table, nblocks)
        in_shape = np.shape(x)

        def backward(dy, need_dx=True):
            if self.trainable:
                dy_c = np.ascontiguousarray(dy, dtype=table.dtype)
                embedding_backward(ids, dy_c, self.grads["embeddings"], runtime.blocks_for(dy_c.size))
            # Token ids are not differentiable: their gradient is zero.
            return np.zeros(in_shape, dtype=table.dtype) if need_dx else None

        return y, backward

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "mask_zero": self.mask_zero, "embeddings_initializer": _config_of(self.embeddings_initializer)}

    def extra_repr(self):
        return f"input_dim={self.input_dim}, output_dim={self.output_dim}" + (", mask_zero=True" if self.mask_zero else "")
