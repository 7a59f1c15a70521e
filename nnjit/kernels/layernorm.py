"""Layer normalization kernels over the last axis of a 2-D view (rows, features).

The layer reshapes (batch, ..., features) to (rows, features) without copying.  Each row
is normalized on its own: y = gamma * (x - mean) * inv_std + beta with the row's mean and
biased variance, inv_std = 1 / sqrt(var + epsilon).

Rows are split into ``nblocks`` blocks, one per thread; ``nblocks == 1`` runs serial code
that never enters prange.  All passes over a row (mean, variance, output; or the two
gradient sums and dx) follow each other while the row is in L1 cache.

Statistics are two-pass (mean, then the mean of squared deviations) in float64, so a
large mean does not swallow the variance of float32 data; y and dx are computed in
float64 from x - mean and rounded once on store.  Row sums run over eight independent
float64 lanes: a single running sum cannot be reordered without fastmath and would run
one element per add latency.

The parameter gradients are sums over rows.  Each block adds its rows into its own
float64 row of a (blocks, features) buffer, elementwise (vectorized), and the rows are
added into dgamma and dbeta at the end, so no two threads write the same memory.
"""
import math

import numpy as np
from numba import njit, prange

from .activations import block_bounds

LANES = 8


@njit(cache=True, inline="always")
def _sum_dev(row, mu, squared):
    """Sum of row - mu, or of (row - mu)**2 when ``squared``, in float64 over eight lanes.

    The lanes are scalar locals, not an array: LLVM keeps them in registers, whereas stores
    into an array argument (which might alias the row) are kept in memory every step."""
    n = row.shape[0]
    head = n - n % LANES
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    if squared:
        for j in range(0, head, LANES):
            d0 = row[j] - mu
            d1 = row[j + 1] - mu
            d2 = row[j + 2] - mu
            d3 = row[j + 3] - mu
            d4 = row[j + 4] - mu
            d5 = row[j + 5] - mu
            d6 = row[j + 6] - mu
            d7 = row[j + 7] - mu
            s0 += d0 * d0
            s1 += d1 * d1
            s2 += d2 * d2
            s3 += d3 * d3
            s4 += d4 * d4
            s5 += d5 * d5
            s6 += d6 * d6
            s7 += d7 * d7
        for j in range(head, n):
            d0 = row[j] - mu
            s0 += d0 * d0
    else:
        for j in range(0, head, LANES):
            s0 += row[j] - mu
            s1 += row[j + 1] - mu
            s2 += row[j + 2] - mu
            s3 += row[j + 3] - mu
            s4 += row[j + 4] - mu
            s5 += row[j + 5] - mu
            s6 += row[j + 6] - mu
            s7 += row[j + 7] - mu
        for j in range(head, n):
            s0 += row[j] - mu
    return ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7))


@njit(cache=True, inline="always")
def _row_mean_var(row):
    """Mean and biased variance of a 1-D row in float64, two passes."""
    n = row.shape[0]
    mean = _sum_dev(row, 0.0, False) / n
    return mean, _sum_dev(row, mean, True) / n


@njit(cache=True, error_model="numpy")
def _forward_rows(x, gamma, beta, epsilon, y, mean, inv_std, i0, i1):
    n = x.shape[1]
    for i in range(i0, i1):
        xr = x[i]
        yr = y[i]
        mu, var = _row_mean_var(xr)
        r = 1.0 / math.sqrt(var + epsilon)
        mean[i] = mu
        inv_std[i] = r
        for j in range(n):
            yr[j] = (xr[j] - mu) * r * gamma[j] + beta[j]


@njit(cache=True, parallel=True)
def layer_norm_forward(x, gamma, beta, epsilon, nblocks):
    """Layer normalization of each row of x.

    x: (rows, features), C-contiguous, float32 or float64; gamma, beta: (features,) of
    x's dtype; epsilon: float.  Returns (y, mean, inv_std): y (rows, features) of x's
    dtype, y = gamma * (x - mean) * inv_std + beta; mean and inv_std (rows,) float64
    (whatever x's dtype), to be passed to ``layer_norm_backward``.
    """
    rows = x.shape[0]
    y = np.empty_like(x)
    mean = np.empty(rows, dtype=np.float64)
    inv_std = np.empty(rows, dtype=np.float64)
    nb = max(1, min(rows, nblocks))
    if nb == 1:
        _forward_rows(x, gamma, beta, epsilon, y, mean, inv_std, *block_bounds(0, 1, rows))
    else:
        for t in prange(nb):
            _forward_rows(x, gamma, beta, epsilon, y, mean, inv_std, *block_bounds(t, nb, rows))
    return y, mean, inv_std


@njit(cache=True, inline="always")
def _gradient_sums(gr, xr, gamma, mu, r):
    """Sums of g = dy * gamma and of g * xhat over a row, in float64 over four lanes each
    (scalar locals, as in ``_sum_dev``)."""
    n = xr.shape[0]
    head = n - n % 4
    a0 = a1 = a2 = a3 = 0.0
    b0 = b1 = b2 = b3 = 0.0
    for j in range(0, head, 4):
        g0 = np.float64(gr[j]) * gamma[j]
        g1 = np.float64(gr[j + 1]) * gamma[j + 1]
        g2 = np.float64(gr[j + 2]) * gamma[j + 2]
        g3 = np.float64(gr[j + 3]) * gamma[j + 3]
        a0 += g0
        a1 += g1
        a2 += g2
        a3 += g3
        b0 += g0 * ((xr[j] - mu) * r)
        b1 += g1 * ((xr[j + 1] - mu) * r)
        b2 += g2 * ((xr[j + 2] - mu) * r)
        b3 += g3 * ((xr[j + 3] - mu) * r)
    for j in range(head, n):
        g0 = np.float64(gr[j]) * gamma[j]
        a0 += g0
        b0 += g0 * ((xr[j] - mu) * r)
    return (a0 + a2) + (a1 + a3), (b0 + b2) + (b1 + b3)


@njit(cache=True, error_model="numpy")
def _backward_rows(dy, x, mean, inv_std, gamma, need_dx, need_dparams, dx, dgamma_part, dbeta_part, i0, i1):
    n = x.shape[1]
    for j in range(dgamma_part.shape[0]):
        dgamma_part[j] = 0.0
        dbeta_part[j] = 0.0
    for i in range(i0, i1):
        xr = x[i]
        gr = dy[i]
        mu = mean[i]
        r = inv_std[i]
        if need_dparams:
            for j in range(n):
                g = np.float64(gr[j])
                dgamma_part[j] += g * ((xr[j] - mu) * r)
                dbeta_part[j] += g
        if need_dx:
            # dx = inv_std * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma: the
            # gradient through the row's mean and variance.
            sum_g, sum_gx = _gradient_sums(gr, xr, gamma, mu, r)
            mean_g = sum_g / n
            mean_gx = sum_gx / n
            out = dx[i]
            for j in range(n):
                out[j] = r * (np.float64(gr[j]) * gamma[j] - mean_g - (xr[j] - mu) * r * mean_gx)


@njit(cache=True, parallel=True)
def layer_norm_backward(dy, x, mean, inv_std, gamma, dgamma, dbeta, need_dx, need_dparams, nblocks):
    """Layer normalization backward.

    dy, x: (rows, features), C-contiguous, one dtype; mean, inv_std: (rows,) float64 as
    returned by ``layer_norm_forward``; gamma: (features,).  Adds the parameter
    gradients into dgamma and dbeta (features,) when ``need_dparams``
    (dgamma += sum over rows of dy * xhat, dbeta += sum of dy).  Returns dx
    (rows, features), or an empty (0, features) array when ``need_dx`` is False.
    """
    rows, features = x.shape
    dx = np.empty((rows if need_dx else 0, features), dtype=dy.dtype)
    if not (need_dx or need_dparams) or rows == 0:
        return dx
    nb = max(1, min(rows, nblocks))
    width = features if need_dparams else 0
    # np.empty, zeroed by each block: np.zeros in a parallel kernel becomes a parallel loop
    # of its own, which wakes the thread pool even on the serial path.
    dgamma_part = np.empty((nb, width), dtype=np.float64)
    dbeta_part = np.empty((nb, width), dtype=np.float64)
    if nb == 1:
        _backward_rows(dy, x, mean, inv_std, gamma, need_dx, need_dparams, dx, dgamma_part[0], dbeta_part[0],
                       *block_bounds(0, 1, rows))
    else:
        for t in prange(nb):
            _backward_rows(dy, x, mean, inv_std, gamma, need_dx, need_dparams, dx, dgamma_part[t], dbeta_part[t],
                           *block_bounds(t, nb, rows))
    if need_dparams:
        for j in range(features):
            sg = 0.0
            sb = 0.0
            for t in range(nb):
                sg += dgamma_part[t, j]
                sb += dbeta_part[t, j]
            dgamma[j] += sg
            dbeta[j] += sb
    return dx
