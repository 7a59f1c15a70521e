"""Fused dense kernels: y = act(x @ w + b) and its backward.

The batch is split into one row block per thread; each block calls a single-threaded
GEMM and applies bias and activation while its output is still hot in cache.  BLAS
stays single-threaded (see ``nnjit.runtime``) so that only Numba's pool does parallel
work.  ``nblocks == 1`` takes a serial path that never launches the thread pool,
which is what small layers need: a parallel launch costs more than their arithmetic.
"""
import numpy as np
from numba import njit, prange

from .activations import GELU, LINEAR, SWISH, activation_grad_rows, activation_rows, block_bounds
from .blas import GEMV_MAX_ROWS, gemm


@njit(cache=True)
def _bias_activation_rows(y, b, code, z, i0, i1):
    """Rows i0..i1 of y = x @ w become act(y + b); z receives y + b when it has rows."""
    m = y.shape[1]
    if z.shape[0] > 0:
        if b.shape[0] > 0:
            for i in range(i0, i1):
                for j in range(m):
                    z[i, j] = y[i, j] + b[j]
        else:
            for i in range(i0, i1):
                for j in range(m):
                    z[i, j] = y[i, j]
        activation_rows(z, y, code, i0, i1)
    else:
        if b.shape[0] > 0:
            for i in range(i0, i1):
                for j in range(m):
                    y[i, j] += b[j]
        if code != LINEAR:
            activation_rows(y, y, code, i0, i1)


@njit(cache=True)
def _dense_forward_rows(x, w, b, code, y, z, i0, i1):
    gemm(x[i0:i1], w, y[i0:i1])
    _bias_activation_rows(y, b, code, z, i0, i1)


@njit(cache=True)
def _partial_product(x, w, part, t, nb):
    # A few rows (inference on single samples): the work is reading w, so each thread
    # reads one contiguous block of w's rows (its share stays in that core's cache from
    # call to call) and writes its partial product part[t] = x[:, k0:k1] @ w[k0:k1].
    k0, k1 = block_bounds(t, nb, w.shape[0])
    gemm(x[:, k0:k1], w[k0:k1], part[t])


@njit(cache=True)
def _sum_partials(part, b, code, y, z):
    n, m = y.shape
    for i in range(n):
        for j in range(m):
            s = part[0, i, j]
            for t in range(1, part.shape[0]):
                s += part[t, i, j]
            y[i, j] = s
    _bias_activation_rows(y, b, code, z, np.int64(0), np.int64(n))


@njit(cache=True, parallel=True)
def dense_forward(x, w, b, code, nblocks):
    """Forward pass of a dense layer.

    x: (N, K), w: (K, M), b: (M,) or (0,) for no bias, code: activation code.
    Returns (y, z): y = act(x @ w + b) of shape (N, M); z is the pre-activation when
    backward needs it (gelu, swish), else an empty (0, M) array.
    """
    n = x.shape[0]
    m = w.shape[1]
    y = np.empty((n, m), dtype=x.dtype)
    keep_z = code == GELU or code == SWISH
    z = np.empty((n if keep_z else 0, m), dtype=x.dtype)
    nb = max(1, min(n, nblocks))
    if n <= GEMV_MAX_ROWS and nblocks > 1:
        kb = max(1, min(x.shape[1], nblocks))
        part = np.empty((kb, n, m), dtype=x.dtype)
        for t in prange(kb):
            _partial_product(x, w, part, np.int64(t), kb)
        _sum_partials(part, b, code, y, z)
    elif nb == 1:
        _dense_forward_rows(x, w, b, code, y, z, *block_bounds(0, 1, n))
    else:
        for t in prange(nb):
            _dense_forward_rows(x, w, b, code, y, z, *block_bounds(t, nb, n))
    return y, z


@njit(cache=True)
def _dense_backward_rows(dy, w, y, z, code, dz, dx, db_row, i0, i1):
    if code != LINEAR:
        activation_grad_rows(dy, y, z, code, dz, i0, i1)
    m = dz.shape[1]
    if db_row.shape[0] > 0:
        for i in range(i0, i1):
            for j in range(m):
                db_row[j] += dz[i, j]
    if dx.shape[0] > 0:
        gemm(dz[i0:i1], w, dx[i0:i1], False, True)


@njit(cache=True)
def _dense_weight_grad_cols(x, dz, dw, k0, k1):
    # dw[k0:k1] += x[:, k0:k1].T @ dz: BLAS reads the column slice in place (transposed,
    # with x's row stride) and accumulates with beta = 1, so no copy and no temporary.
    gemm(x[:, k0:k1], dz, dw[k0:k1], True, False, 1.0, 1.0)


@njit(cache=True, parallel=True)
def dense_backward(dy, x, w, y, z, code, dw, db, need_dx, need_dw, nblocks):
    """Backward pass of a dense layer.

    dy: (N, M) gradient of the output; x, w, y, z as in and out of ``dense_forward``.
    Accumulates the weight gradient into dw (K, M) and the bias gradient into db (M,)
    (pass a (0,) array when there is no bias) unless ``need_dw`` is False (a frozen
    layer).  Returns dx (N, K), or an empty (0, K) array when ``need_dx`` is False
    (the first layer of a model).
    """
    n, k = x.shape
    m = w.shape[1]
    if code == LINEAR:
        dz = dy
    else:
        dz = np.empty((n, m), dtype=dy.dtype)
    dx = np.empty((n if need_dx else 0, k), dtype=dy.dtype)
    nb = max(1, min(n, nblocks))
    db_part = np.zeros((nb, db.shape[0] if need_dw else 0), dtype=dy.dtype)
    if nb == 1:
        _dense_backward_rows(dy, w, y, z, code, dz, dx, db_part[0], *block_bounds(0, 1, n))
        if need_dw:
            _dense_weight_grad_cols(x, dz, dw, *block_bounds(0, 1, k))
    else:
        for t in prange(nb):
            _dense_backward_rows(dy, w, y, z, code, dz, dx, db_part[t], *block_bounds(t, nb, n))
        if need_dw:
            kb = max(1, min(k, nblocks))
            for t in prange(kb):
                _dense_weight_grad_cols(x, dz, dw, *block_bounds(t, kb, k))
    for j in range(db_part.shape[1]):
        s = db[j]
        for t in range(nb):
            s += db_part[t, j]
        db[j] = s
    return dx
