"""Embedding kernels: a gather of table rows and its backward, a scatter-add.

ids: an int32 or int64 C-contiguous array of any shape with values in [0, V) (the layer
checks the range; a kernel reading an id outside it reads or writes the wrong row);
table: (V, D) C-contiguous float32 or float64.
"""
import numpy as np
from numba import njit, prange

from .activations import block_bounds


@njit(cache=True)
def _gather_rows(flat, table, out, r0, r1):
    d = table.shape[1]
    for r in range(r0, r1):
        src = table[flat[r]]
        dst = out[r]
        for j in range(d):
            dst[j] = src[j]


@njit(cache=True, parallel=True)
def embedding_forward(ids, table, nblocks):
    """Rows of ``table`` picked by ``ids``: returns an array of shape ids.shape + (D,)."""
    flat = ids.reshape(ids.size)
    m = flat.shape[0]
    d = table.shape[1]
    out = np.empty((m, d), dtype=table.dtype)
    nb = max(1, min(m, nblocks))
    if nb == 1:
        _gather_rows(flat, table, out, *block_bounds(0, 1, m))
    else:
        for t in prange(nb):
            _gather_rows(flat, table, out, *block_bounds(t, nb, m))
    return out.reshape(ids.shape + (d,))


@njit(cache=True)
def _scatter_add_cols(flat, d_out, d_table, j0, j1):
    # Every part walks all ids in order but owns the columns [j0, j1) of the table, so
    # repeated ids accumulate without two threads ever writing the same element.
    for r in range(flat.shape[0]):
        src = d_out[r]
        dst = d_table[flat[r]]
        for j in range(j0, j1):
            dst[j] += src[j]


@njit(cache=True, parallel=True)
def embedding_backward(ids, d_out, d_table, nblocks):
    """Scatter-add the output gradient into the table gradient, in place:
    d_table[ids[k]] += d_out[k] for every position k (repeated ids add up).

    ids as given to ``embedding_forward``; d_out: C-contiguous, shape ids.shape + (D,);
    d_table: (V, D).  Threads split the D columns (at most D parts).
    """
    flat = ids.reshape(ids.size)
    m = flat.shape[0]
    d = d_table.shape[1]
    d_out2 = d_out.reshape(m, d)
    nb = max(1, min(d, nblocks))
    if nb == 1:
        _scatter_add_cols(flat, d_out2, d_table, *block_bounds(0, 1, d))
    else:
        for t in prange(nb):
            _scatter_add_cols(flat, d_out2, d_table, *block_bounds(t, nb, d))
