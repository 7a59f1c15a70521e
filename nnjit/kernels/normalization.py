"""Batch normalization kernels over a 3-D view (A, C, S) of the input.

C is the normalized axis; statistics run over A and S.  The layer reshapes its input to
this view without copying: NCHW is (N, C, H*W), (batch, features) is (N, C, 1) and
(batch, time, features) normalized over the last axis is (N*T, C, 1).

Threads split the channels, so each thread owns its channels' statistics and parameter
gradients outright and nothing needs merging.  Two loop shapes cover the views:

- S > 1 (images): one channel at a time, its A rows of S contiguous elements.  The
  passes over a channel (mean, variance, output) follow each other while its data is
  still in cache.
- S == 1 (dense features): each row's slice of the thread's channels is contiguous, so
  the loops run along the channels with one float64 accumulator per channel, which
  vectorizes.

Statistics are two-pass (mean, then the mean of squared deviations) in float64: a
one-pass sum of squares loses the variance of float32 data with a large mean, e.g.
1000 + noise of 0.01.  The output and dx are computed in float64 from x - mean for
the same reason and rounded once on store.
"""
import math

import numpy as np
from numba import njit, prange

from .activations import block_bounds
from .pooling import sum_float64


@njit(cache=True)
def _channel_sum(x, c):
    size = x.shape[2]
    s = 0.0
    for a in range(x.shape[0]):
        s += sum_float64(x[a, c], 0, size)
    return s


@njit(cache=True)
def _channel_squared_deviation(x, c, mean):
    size = x.shape[2]
    m = size // 4 * 4
    # Independent partial sums for the same reason as in sum_float64.
    s0 = s1 = s2 = s3 = 0.0
    for a in range(x.shape[0]):
        row = x[a, c]
        for i in range(0, m, 4):
            d0 = row[i] - mean
            d1 = row[i + 1] - mean
            d2 = row[i + 2] - mean
            d3 = row[i + 3] - mean
            s0 += d0 * d0
            s1 += d1 * d1
            s2 += d2 * d2
            s3 += d3 * d3
        for i in range(m, size):
            d = row[i] - mean
            s0 += d * d
    return (s0 + s1) + (s2 + s3)


@njit(cache=True)
def _statistics(x, c0, c1, mean, var):
    """Batch mean and biased variance of channels [c0, c1) into mean[k], var[k], k = c - c0."""
    rows, size = x.shape[0], x.shape[2]
    count = rows * size
    if size == 1:
        width = c1 - c0
        for k in range(width):
            mean[k] = 0.0
            var[k] = 0.0
        for a in range(rows):
            for k in range(width):
                mean[k] += x[a, c0 + k, 0]
        for k in range(width):
            mean[k] /= count
        for a in range(rows):
            for k in range(width):
                d = x[a, c0 + k, 0] - mean[k]
                var[k] += d * d
        for k in range(width):
            var[k] /= count
    else:
        for c in range(c0, c1):
            mu = _channel_sum(x, c) / count
            mean[c - c0] = mu
            var[c - c0] = _channel_squared_deviation(x, c, mu) / count


@njit(cache=True)
def _affine(x, y, c0, c1, mean, scale, shift):
    """y = (x - mean[k]) * scale[k] + shift[k] over channels [c0, c1), k = c - c0.

    In float64, so that a large mean cancels exactly, rounded once on store."""
    rows, size = x.shape[0], x.shape[2]
    if size == 1:
        width = c1 - c0
        for a in range(rows):
            for k in range(width):
                y[a, c0 + k, 0] = (x[a, c0 + k, 0] - mean[k]) * scale[k] + shift[k]
    else:
        for c in range(c0, c1):
            mu = mean[c - c0]
            sc = scale[c - c0]
            sh = shift[c - c0]
            for a in range(rows):
                xr = x[a, c]
                yr = y[a, c]
                for i in range(size):
                    yr[i] = (xr[i] - mu) * sc + sh


@njit(cache=True)
def _gradient_sums(dy, x, c0, c1, mean, sum_dy, sum_dy_xmu):
    """Per channel sums of dy and of dy * (x - mean), in float64, k = c - c0."""
    rows, size = x.shape[0], x.shape[2]
    if size == 1:
        width = c1 - c0
        for k in range(width):
            sum_dy[k] = 0.0
            sum_dy_xmu[k] = 0.0
        for a in range(rows):
            for k in range(width):
                g = np.float64(dy[a, c0 + k, 0])
                sum_dy[k] += g
                sum_dy_xmu[k] += g * (x[a, c0 + k, 0] - mean[k])
    else:
        m = size // 4 * 4
        for c in range(c0, c1):
            mu = mean[c - c0]
            # Independent partial sums for the same reason as in sum_float64.
            g0 = g1 = g2 = g3 = 0.0
            h0 = h1 = h2 = h3 = 0.0
            for a in range(rows):
                xr = x[a, c]
                gr = dy[a, c]
                for i in range(0, m, 4):
                    g0 += gr[i]
                    g1 += gr[i + 1]
                    g2 += gr[i + 2]
                    g3 += gr[i + 3]
                    h0 += gr[i] * (xr[i] - mu)
                    h1 += gr[i + 1] * (xr[i + 1] - mu)
                    h2 += gr[i + 2] * (xr[i + 2] - mu)
                    h3 += gr[i + 3] * (xr[i + 3] - mu)
                for i in range(m, size):
                    g0 += gr[i]
                    h0 += gr[i] * (xr[i] - mu)
            sum_dy[c - c0] = (g0 + g1) + (g2 + g3)
            sum_dy_xmu[c - c0] = (h0 + h1) + (h2 + h3)


@njit(cache=True)
def _input_gradient(dy, x, dx, c0, c1, mean, coef_dy, coef_xmu, const):
    """dx = coef_dy[k] * dy + coef_xmu[k] * (x - mean[k]) + const[k], in float64."""
    rows, size = x.shape[0], x.shape[2]
    if size == 1:
        width = c1 - c0
        for a in range(rows):
            for k in range(width):
                c = c0 + k
                dx[a, c, 0] = coef_dy[k] * dy[a, c, 0] + coef_xmu[k] * (x[a, c, 0] - mean[k]) + const[k]
    else:
        for c in range(c0, c1):
            k = c - c0
            p = coef_dy[k]
            q = coef_xmu[k]
            mu = mean[k]
            r = const[k]
            for a in range(rows):
                xr = x[a, c]
                gr = dy[a, c]
                out = dx[a, c]
                for i in range(size):
                    out[i] = p * gr[i] + q * (xr[i] - mu) + r


@njit(cache=True)
def _channel_step(x, c0, c1):
    # Images go one channel at a time so that all passes over a channel find it in
    # cache; dense features take the whole block, whose loops run along the channels.
    return max(1, c1 - c0) if x.shape[2] == 1 else 1


@njit(cache=True)
def _train_block(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon, y, mean_out,
                 inv_std_out, c0, c1):
    count = x.shape[0] * x.shape[2]
    step = _channel_step(x, c0, c1)
    for cb in range(c0, c1, step):
        ce = min(cb + step, c1)
        width = ce - cb
        mean = np.empty(width, dtype=np.float64)
        var = np.empty(width, dtype=np.float64)
        scale = np.empty(width, dtype=np.float64)
        shift = np.empty(width, dtype=np.float64)
        _statistics(x, cb, ce, mean, var)
        for k in range(width):
            c = cb + k
            inv_std = 1.0 / math.sqrt(var[k] + epsilon)
            scale[k] = gamma[c] * inv_std
            shift[k] = beta[c]
            mean_out[c] = mean[k]
            inv_std_out[c] = inv_std
            # The running variance estimates the population's: unbiased batch variance.
            unbiased = var[k] * count / (count - 1) if count > 1 else var[k]
            moving_mean[c] = momentum * moving_mean[c] + (1.0 - momentum) * mean[k]
            moving_variance[c] = momentum * moving_variance[c] + (1.0 - momentum) * unbiased
        _affine(x, y, cb, ce, mean, scale, shift)


@njit(cache=True, parallel=True)
def batch_norm_forward_train(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon, nblocks):
    """Training-mode batch normalization with the batch's statistics.

    x: (A, C, S), C-contiguous; gamma, beta, moving_mean, moving_variance: (C,).
    Normalizes with the batch mean and biased variance over A and S:
    y = gamma * (x - mean) * inv_std + beta, inv_std = 1 / sqrt(var + epsilon).
    Updates moving_mean and moving_variance in place:
    running = momentum * running + (1 - momentum) * batch, with the unbiased variance
    var * m / (m - 1), m = A * S, for the running variance (the biased one, 0, if m == 1).
    Returns (y, mean, inv_std): y (A, C, S) of x's dtype; mean and inv_std (C,) float64,
    to be passed to ``batch_norm_backward``.
    """
    channels = x.shape[1]
    y = np.empty_like(x)
    mean = np.empty(channels, dtype=np.float64)
    inv_std = np.empty(channels, dtype=np.float64)
    nb = max(1, min(channels, nblocks))
    if nb == 1:
        _train_block(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon, y, mean, inv_std,
                     *block_bounds(0, 1, channels))
    else:
        for t in prange(nb):
            _train_block(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon, y, mean, inv_std,
                         *block_bounds(t, nb, channels))
    return y, mean, inv_std


@njit(cache=True)
def _infer_block(x, gamma, beta, moving_mean, moving_variance, epsilon, y, c0, c1):
    width = c1 - c0
    mean = np.empty(width, dtype=np.float64)
    scale = np.empty(width, dtype=np.float64)
    shift = np.empty(width, dtype=np.float64)
    for k in range(width):
        c = c0 + k
        mean[k] = moving_mean[c]
        scale[k] = gamma[c] / math.sqrt(np.float64(moving_variance[c]) + epsilon)
        shift[k] = beta[c]
    _affine(x, y, c0, c1, mean, scale, shift)


@njit(cache=True, parallel=True)
def batch_norm_forward_infer(x, gamma, beta, moving_mean, moving_variance, epsilon, nblocks):
    """Inference-mode batch normalization with the moving statistics.

    x: (A, C, S); gamma, beta, moving_mean, moving_variance: (C,).
    Returns y = gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta,
    (A, C, S) of x's dtype.
    """
    channels = x.shape[1]
    y = np.empty_like(x)
    nb = max(1, min(channels, nblocks))
    if nb == 1:
        _infer_block(x, gamma, beta, moving_mean, moving_variance, epsilon, y, *block_bounds(0, 1, channels))
    else:
        for t in prange(nb):
            _infer_block(x, gamma, beta, moving_mean, moving_variance, epsilon, y, *block_bounds(t, nb, channels))
    return y


@njit(cache=True)
def _backward_block(dy, x, mean_in, inv_std_in, gamma, dgamma, dbeta, need_dx, need_dparams, dx, c0, c1):
    count = x.shape[0] * x.shape[2]
    step = _channel_step(x, c0, c1)
    for cb in range(c0, c1, step):
        ce = min(cb + step, c1)
        width = ce - cb
        mean = np.empty(width, dtype=np.float64)
        sum_dy = np.empty(width, dtype=np.float64)
        sum_dy_xmu = np.empty(width, dtype=np.float64)
        for k in range(width):
            mean[k] = mean_in[cb + k]
        _gradient_sums(dy, x, cb, ce, mean, sum_dy, sum_dy_xmu)
        if need_dparams:
            for k in range(width):
                c = cb + k
                dgamma[c] += sum_dy_xmu[k] * inv_std_in[c]
                dbeta[c] += sum_dy[k]
        if need_dx:
            # dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)), the
            # gradient through the batch mean and variance, as coefficients per channel.
            coef_dy = np.empty(width, dtype=np.float64)
            coef_xmu = np.empty(width, dtype=np.float64)
            const = np.empty(width, dtype=np.float64)
            for k in range(width):
                c = cb + k
                inv_std = inv_std_in[c]
                p = gamma[c] * inv_std
                coef_dy[k] = p
                coef_xmu[k] = -p * inv_std * inv_std * sum_dy_xmu[k] / count
                const[k] = -p * sum_dy[k] / count
            _input_gradient(dy, x, dx, cb, ce, mean, coef_dy, coef_xmu, const)


@njit(cache=True, parallel=True)
def batch_norm_backward(dy, x, mean, inv_std, gamma, dgamma, dbeta, need_dx, need_dparams, nblocks):
    """Training-mode batch normalization backward, through the batch statistics.

    dy, x: (A, C, S); mean, inv_std: (C,) as returned by ``batch_norm_forward_train``;
    gamma: (C,).  Adds the parameter gradients into dgamma and dbeta (C,) when
    ``need_dparams``.  Returns dx (A, C, S), or an empty (0, C, S) array when
    ``need_dx`` is False.
    """
    channels = x.shape[1]
    dx = np.empty((x.shape[0] if need_dx else 0, channels, x.shape[2]), dtype=dy.dtype)
    if not (need_dx or need_dparams):
        return dx
    nb = max(1, min(channels, nblocks))
    if nb == 1:
        _backward_block(dy, x, mean, inv_std, gamma, dgamma, dbeta, need_dx, need_dparams, dx,
                        *block_bounds(0, 1, channels))
    else:
        for t in prange(nb):
            _backward_block(dy, x, mean, inv_std, gamma, dgamma, dbeta, need_dx, need_dparams, dx,
                            *block_bounds(t, nb, channels))
    return dx


@njit(cache=True)
def _backward_infer_block(dy, x, moving_mean, moving_variance, gamma, epsilon, dgamma, dbeta,
                          need_dx, need_dparams, dx, c0, c1):
    width = c1 - c0
    mean = np.empty(width, dtype=np.float64)
    scale = np.empty(width, dtype=np.float64)
    zero = np.zeros(width, dtype=np.float64)
    for k in range(width):
        c = c0 + k
        mean[k] = moving_mean[c]
        scale[k] = 1.0 / math.sqrt(np.float64(moving_variance[c]) + epsilon)
    if need_dparams:
        sum_dy = np.empty(width, dtype=np.float64)
        sum_dy_xmu = np.empty(width, dtype=np.float64)
        _gradient_sums(dy, x, c0, c1, mean, sum_dy, sum_dy_xmu)
        for k in range(width):
            c = c0 + k
            dgamma[c] += sum_dy_xmu[k] * scale[k]
            dbeta[c] += sum_dy[k]
    if need_dx:
        # The statistics are constants here: the layer is an affine map per channel.
        for k in range(width):
            scale[k] *= gamma[c0 + k]
        _affine(dy, dx, c0, c1, zero, scale, zero)


@njit(cache=True, parallel=True)
def batch_norm_backward_infer(dy, x, moving_mean, moving_variance, gamma, epsilon, dgamma, dbeta,
                              need_dx, need_dparams, nblocks):
    """Batch normalization backward with constant statistics (inference mode, frozen layer).

    dy, x: (A, C, S); moving_mean, moving_variance, gamma: (C,).
    dx = dy * gamma / sqrt(moving_variance + epsilon).  Adds the parameter gradients
    into dgamma and dbeta (C,) when ``need_dparams``.  Returns dx (A, C, S), or an empty
    (0, C, S) array when ``need_dx`` is False.
    """
    channels = x.shape[1]
    dx = np.empty((x.shape[0] if need_dx else 0, channels, x.shape[2]), dtype=dy.dtype)
    if not (need_dx or need_dparams):
        return dx
    nb = max(1, min(channels, nblocks))
    if nb == 1:
        _backward_infer_block(dy, x, moving_mean, moving_variance, gamma, epsilon, dgamma, dbeta,
                              need_dx, need_dparams, dx, *block_bounds(0, 1, channels))
    else:
        for t in prange(nb):
            _backward_infer_block(dy, x, moving_mean, moving_variance, gamma, epsilon, dgamma, dbeta,
                                  need_dx, need_dparams, dx, *block_bounds(t, nb, channels))
    return dx
