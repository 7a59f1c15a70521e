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


# Per-channel sums over rows of S contiguous elements are taken column-wise: each row
# is added into a float64 buffer of up to CHUNK partial sums, and the buffer is summed
# at the end.  Adding a row into the buffer is elementwise, so LLVM vectorizes it
# without fastmath, whereas a single running sum cannot be reordered and runs one
# element per add latency (about 4x slower, measured).
CHUNK = 1024


@njit(cache=True)
def _channel_sum(x, c, buf):
    rows, size = x.shape[0], x.shape[2]
    total = 0.0
    for s0 in range(0, size, CHUNK):
        n = min(CHUNK, size - s0)
        for i in range(n):
            buf[i] = 0.0
        for a in range(rows):
            row = x[a, c, s0:s0 + n]
            for i in range(n):
                buf[i] += row[i]
        for i in range(n):
            total += buf[i]
    return total


@njit(cache=True)
def _channel_squared_deviation(x, c, mean, buf):
    rows, size = x.shape[0], x.shape[2]
    total = 0.0
    for s0 in range(0, size, CHUNK):
        n = min(CHUNK, size - s0)
        for i in range(n):
            buf[i] = 0.0
        for a in range(rows):
            row = x[a, c, s0:s0 + n]
            for i in range(n):
                d = row[i] - mean
                buf[i] += d * d
        for i in range(n):
            total += buf[i]
    return total


@njit(cache=True)
def _channel_gradient_sums(dy, x, c, mean, buf_dy, buf_dy_xmu):
    rows, size = x.shape[0], x.shape[2]
    sum_dy = 0.0
    sum_dy_xmu = 0.0
    for s0 in range(0, size, CHUNK):
        n = min(CHUNK, size - s0)
        for i in range(n):
            buf_dy[i] = 0.0
            buf_dy_xmu[i] = 0.0
        for a in range(rows):
            xr = x[a, c, s0:s0 + n]
            gr = dy[a, c, s0:s0 + n]
            for i in range(n):
                g = np.float64(gr[i])
                buf_dy[i] += g
                buf_dy_xmu[i] += g * (xr[i] - mean)
        for i in range(n):
            sum_dy += buf_dy[i]
            sum_dy_xmu += buf_dy_xmu[i]
    return sum_dy, sum_dy_xmu


@njit(cache=True)
def _buffer(x):
    return np.empty(min(CHUNK, x.shape[2]), dtype=np.float64)


@njit(cache=True)
def _features(x):
    # (A, C, 1) as (A, C): a row's slice [c0:c1] of a 2-D C array is typed contiguous
    # and indexed from 0, which LLVM vectorizes.  Indexing x[a, c0 + k, 0] instead
    # carries Numba's negative-index wraparound check on every element and does not.
    return x.reshape(x.shape[0], x.shape[1])


@njit(cache=True)
def _statistics(x, c0, c1, mean, var, buf):
    """Batch mean and biased variance of channels [c0, c1) into mean[k], var[k], k = c - c0;
    buf: scratch from ``_buffer``."""
    rows, size = x.shape[0], x.shape[2]
    count = rows * size
    if size == 1:
        x2 = _features(x)
        width = c1 - c0
        for k in range(width):
            mean[k] = 0.0
            var[k] = 0.0
        for a in range(rows):
            xr = x2[a, c0:c1]
            for k in range(width):
                mean[k] += xr[k]
        for k in range(width):
            mean[k] /= count
        for a in range(rows):
            xr = x2[a, c0:c1]
            for k in range(width):
                d = xr[k] - mean[k]
                var[k] += d * d
        for k in range(width):
            var[k] /= count
    else:
        for c in range(c0, c1):
            mu = _channel_sum(x, c, buf) / count
            mean[c - c0] = mu
            var[c - c0] = _channel_squared_deviation(x, c, mu, buf) / count


@njit(cache=True)
def _affine(x, y, c0, c1, mean, scale, shift):
    """y = (x - mean[k]) * scale[k] + shift[k] over channels [c0, c1), k = c - c0.

    In float64, so that a large mean cancels exactly, rounded once on store."""
    rows, size = x.shape[0], x.shape[2]
    if size == 1:
        x2 = _features(x)
        y2 = _features(y)
        width = c1 - c0
        for a in range(rows):
            xr = x2[a, c0:c1]
            yr = y2[a, c0:c1]
            for k in range(width):
                yr[k] = (xr[k] - mean[k]) * scale[k] + shift[k]
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
def _gradient_sums(dy, x, c0, c1, mean, sum_dy, sum_dy_xmu, buf_dy, buf_dy_xmu):
    """Per channel sums of dy and of dy * (x - mean), in float64, k = c - c0;
    buf_dy, buf_dy_xmu: scratch from ``_buffer``."""
    rows, size = x.shape[0], x.shape[2]
    if size == 1:
        x2 = _features(x)
        dy2 = _features(dy)
        width = c1 - c0
        for k in range(width):
            sum_dy[k] = 0.0
            sum_dy_xmu[k] = 0.0
        for a in range(rows):
            xr = x2[a, c0:c1]
            gr = dy2[a, c0:c1]
            for k in range(width):
                g = np.float64(gr[k])
                sum_dy[k] += g
                sum_dy_xmu[k] += g * (xr[k] - mean[k])
    else:
        for c in range(c0, c1):
            sum_dy[c - c0], sum_dy_xmu[c - c0] = _channel_gradient_sums(dy, x, c, mean[c - c0], buf_dy, buf_dy_xmu)


@njit(cache=True)
def _input_gradient(dy, x, dx, c0, c1, mean, coef_dy, coef_xmu, const):
    """dx = coef_dy[k] * dy + coef_xmu[k] * (x - mean[k]) + const[k], in float64."""
    rows, size = x.shape[0], x.shape[2]
    if size == 1:
        x2 = _features(x)
        dy2 = _features(dy)
        dx2 = _features(dx)
        width = c1 - c0
        for a in range(rows):
            xr = x2[a, c0:c1]
            gr = dy2[a, c0:c1]
            out = dx2[a, c0:c1]
            for k in range(width):
                out[k] = coef_dy[k] * gr[k] + coef_xmu[k] * (xr[k] - mean[k]) + const[k]
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
    width = c1 - c0
    mean = np.empty(width, dtype=np.float64)
    var = np.empty(width, dtype=np.float64)
    scale = np.empty(width, dtype=np.float64)
    shift = np.empty(width, dtype=np.float64)
    buf = _buffer(x)
    step = _channel_step(x, c0, c1)
    for cb in range(c0, c1, step):
        ce = min(cb + step, c1)
        k0, k1 = cb - c0, ce - c0
        _statistics(x, cb, ce, mean[k0:k1], var[k0:k1], buf)
        for k in range(k0, k1):
            c = c0 + k
            inv_std = 1.0 / math.sqrt(var[k] + epsilon)
            scale[k] = gamma[c] * inv_std
            shift[k] = beta[c]
            mean_out[c] = mean[k]
            inv_std_out[c] = inv_std
            # The running variance estimates the population's: unbiased batch variance.
            unbiased = var[k] * count / (count - 1) if count > 1 else var[k]
            moving_mean[c] = momentum * moving_mean[c] + (1.0 - momentum) * mean[k]
            moving_variance[c] = momentum * moving_variance[c] + (1.0 - momentum) * unbiased
        _affine(x, y, cb, ce, mean[k0:k1], scale[k0:k1], shift[k0:k1])


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
    width = c1 - c0
    mean = np.empty(width, dtype=np.float64)
    sum_dy = np.empty(width, dtype=np.float64)
    sum_dy_xmu = np.empty(width, dtype=np.float64)
    coef_dy = np.empty(width, dtype=np.float64)
    coef_xmu = np.empty(width, dtype=np.float64)
    const = np.empty(width, dtype=np.float64)
    buf_dy = _buffer(x)
    buf_dy_xmu = _buffer(x)
    for k in range(width):
        mean[k] = mean_in[c0 + k]
    step = _channel_step(x, c0, c1)
    for cb in range(c0, c1, step):
        ce = min(cb + step, c1)
        k0, k1 = cb - c0, ce - c0
        _gradient_sums(dy, x, cb, ce, mean[k0:k1], sum_dy[k0:k1], sum_dy_xmu[k0:k1], buf_dy, buf_dy_xmu)
        if need_dparams:
            for k in range(k0, k1):
                c = c0 + k
                dgamma[c] += sum_dy_xmu[k] * inv_std_in[c]
                dbeta[c] += sum_dy[k]
        if need_dx:
            # dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)), the
            # gradient through the batch mean and variance, as coefficients per channel.
            for k in range(k0, k1):
                c = c0 + k
                inv_std = inv_std_in[c]
                p = gamma[c] * inv_std
                coef_dy[k] = p
                coef_xmu[k] = -p * inv_std * inv_std * sum_dy_xmu[k] / count
                const[k] = -p * sum_dy[k] / count
            _input_gradient(dy, x, dx, cb, ce, mean[k0:k1], coef_dy[k0:k1], coef_xmu[k0:k1], const[k0:k1])


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
        _gradient_sums(dy, x, c0, c1, mean, sum_dy, sum_dy_xmu, _buffer(x), _buffer(x))
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
