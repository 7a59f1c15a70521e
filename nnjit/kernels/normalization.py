"""Batch normalization kernels over a 3-D view (A, C, S) of the input.

C is the normalized axis; statistics run over A and S.  The layer reshapes its input to
this view without copying: NCHW is (N, C, H*W), (batch, features) is (N, C, 1) and
(batch, time, features) normalized over the last axis is (N*T, C, 1).

Threads split the channels, so each thread owns its channels' statistics and parameter
gradients outright and nothing needs merging.

Within a thread's channels the work goes tile by tile.  A tile is a run of whole
channels, or a slice of one channel when a channel holds more than TILE positions; its
part of each row a, x[a, channels, positions], is one contiguous run of at most TILE
elements.  Every pass is a loop over the rows with an elementwise inner loop along that
run, which LLVM vectorizes without fastmath whatever S is (dense features, S = 1, and
small feature maps included):

- sums over A add each row into a float64 buffer of per-position partial sums, which
  is summed per channel at the end (a single running sum cannot be reordered and runs
  one element per add latency);
- in a tile of several channels, per-channel constants (mean, scale, shift) are spread
  into per-position buffers so that the elementwise loops need no channel lookup; a
  tile of one channel passes them as scalars (see ``_at``).

A tile's data (A rows of at most TILE elements) stays in the L2 cache between the
passes over it.  Compared with one channel at a time, tiles run about twice as fast
on 8x8 feature maps and the same on larger ones (measured).

Statistics are two-pass (mean, then the mean of squared deviations) in float64: a
one-pass sum of squares loses the variance of float32 data with a large mean, e.g.
1000 + noise of 0.01.  The output and dx are computed in float64 from x - mean for
the same reason and rounded once on store.
"""
import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .activations import block_bounds

TILE = 1024


@njit(cache=True)
def _rows(x):
    # (A, C, S) as (A, C*S): a row's slice of a 2-D C array is typed contiguous and
    # indexed from 0, so the inner loops carry no negative-index wraparound checks.
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2])


@njit(cache=True)
def _tile_shape(size):
    """Channels per tile and positions per chunk: whole channels up to TILE elements,
    or one channel in chunks of TILE positions."""
    if size >= TILE:
        return 1, TILE
    return max(1, TILE // size), size


@njit(cache=True)
def _spread(values, k0, width, run, out):
    """out[k * run + s] = values[k0 + k]: per-channel values as per-position values."""
    for k in range(width):
        v = values[k0 + k]
        seg = out[k * run:(k + 1) * run]
        for s in range(run):
            seg[s] = v


@njit(cache=True)
def _collect(buf, width, run, out, k0):
    """out[k0 + k] += sum of buf[k * run:(k + 1) * run]: per-position sums to channels."""
    for k in range(width):
        seg = buf[k * run:(k + 1) * run]
        total = 0.0
        for s in range(run):
            total += seg[s]
        out[k0 + k] += total


def _at(values, i):
    """values[i] for a per-position buffer, values itself for a per-channel scalar."""
    return values if np.isscalar(values) else values[i]


@overload(_at)
def _at_overload(values, i):
    # A tile of one channel passes its constants as scalars: spreading them into
    # buffers would cost a load per constant per element for nothing (up to 1.5x
    # slower on feature maps of 1024 positions, measured).  Each tile loop compiles
    # once for scalars and once for buffers.
    if isinstance(values, types.Array):
        return lambda values, i: values[i]
    return lambda values, i: values


@njit(cache=True)
def _tile_sum(x2, start, length, buf):
    for i in range(length):
        buf[i] = 0.0
    for a in range(x2.shape[0]):
        row = x2[a, start:start + length]
        for i in range(length):
            buf[i] += row[i]


@njit(cache=True)
def _tile_squared_deviation(x2, start, length, mean, buf):
    for i in range(length):
        buf[i] = 0.0
    for a in range(x2.shape[0]):
        row = x2[a, start:start + length]
        for i in range(length):
            d = row[i] - _at(mean, i)
            buf[i] += d * d


@njit(cache=True)
def _tile_affine(x2, y2, start, length, mean, scale, shift):
    # y = (x - mean) * scale + shift in float64, so that a large mean cancels exactly.
    for a in range(x2.shape[0]):
        xr = x2[a, start:start + length]
        yr = y2[a, start:start + length]
        for i in range(length):
            yr[i] = (xr[i] - _at(mean, i)) * _at(scale, i) + _at(shift, i)


@njit(cache=True)
def _tile_gradient_sums(dy2, x2, start, length, mean, buf_dy, buf_dy_xmu):
    for i in range(length):
        buf_dy[i] = 0.0
        buf_dy_xmu[i] = 0.0
    for a in range(x2.shape[0]):
        xr = x2[a, start:start + length]
        gr = dy2[a, start:start + length]
        for i in range(length):
            g = np.float64(gr[i])
            buf_dy[i] += g
            buf_dy_xmu[i] += g * (xr[i] - _at(mean, i))


@njit(cache=True)
def _tile_input_gradient(dy2, x2, dx2, start, length, mean, coef_dy, coef_xmu, const):
    for a in range(x2.shape[0]):
        xr = x2[a, start:start + length]
        gr = dy2[a, start:start + length]
        out = dx2[a, start:start + length]
        for i in range(length):
            out[i] = _at(coef_dy, i) * gr[i] + _at(coef_xmu, i) * (xr[i] - _at(mean, i)) + _at(const, i)


@njit(cache=True)
def _tile_scale(dy2, dx2, start, length, scale):
    for a in range(dy2.shape[0]):
        gr = dy2[a, start:start + length]
        out = dx2[a, start:start + length]
        for i in range(length):
            out[i] = gr[i] * _at(scale, i)


@njit(cache=True)
def _scratch():
    return np.empty(TILE, dtype=np.float64)


@njit(cache=True)
def _apply_affine(x2, y2, size, g0, width, c0, mean, scale, shift, buf_mean, buf_scale, buf_shift):
    # y = (x - mean) * scale + shift over channels [g0, g0 + width); the per-channel
    # arrays are indexed from the block's first channel c0.
    k = g0 - c0
    if width == 1:
        # No buffers to keep in cache: the channel's rows in one piece.
        _tile_affine(x2, y2, g0 * size, size, mean[k], scale[k], shift[k])
    else:
        _spread(mean, k, width, size, buf_mean)
        _spread(scale, k, width, size, buf_scale)
        _spread(shift, k, width, size, buf_shift)
        _tile_affine(x2, y2, g0 * size, width * size, buf_mean, buf_scale, buf_shift)


@njit(cache=True)
def _gradient_sums(dy2, x2, size, g0, width, c0, mean, sum_dy, sum_dy_xmu, buf_mean, buf_dy, buf_dy_xmu):
    # Adds sum(dy) and sum(dy * (x - mean)) of channels [g0, g0 + width) into
    # sum_dy[c - c0] and sum_dy_xmu[c - c0].
    chunk = _tile_shape(size)[1]
    for s0 in range(0, size, chunk):
        run = min(chunk, size - s0)
        if width == 1:
            _tile_gradient_sums(dy2, x2, g0 * size + s0, run, mean[g0 - c0], buf_dy, buf_dy_xmu)
        else:
            _spread(mean, g0 - c0, width, run, buf_mean)
            _tile_gradient_sums(dy2, x2, g0 * size + s0, width * run, buf_mean, buf_dy, buf_dy_xmu)
        _collect(buf_dy, width, run, sum_dy, g0 - c0)
        _collect(buf_dy_xmu, width, run, sum_dy_xmu, g0 - c0)


@njit(cache=True)
def _train_block(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon, y, mean_out,
                 inv_std_out, c0, c1):
    size = x.shape[2]
    count = x.shape[0] * size
    x2, y2 = _rows(x), _rows(y)
    group, chunk = _tile_shape(size)
    width_all = c1 - c0
    sums = np.zeros(width_all, dtype=np.float64)
    squares = np.zeros(width_all, dtype=np.float64)
    mean = np.empty(width_all, dtype=np.float64)
    scale = np.empty(width_all, dtype=np.float64)
    shift = np.empty(width_all, dtype=np.float64)
    buf, buf_mean, buf_scale, buf_shift = _scratch(), _scratch(), _scratch(), _scratch()
    for g0 in range(c0, c1, group):
        width = min(group, c1 - g0)
        # Mean, squared deviations from it, output: three passes over the tile while
        # it is in cache.
        for s0 in range(0, size, chunk):
            run = min(chunk, size - s0)
            _tile_sum(x2, g0 * size + s0, width * run, buf)
            _collect(buf, width, run, sums, g0 - c0)
        for k in range(g0 - c0, g0 - c0 + width):
            mean[k] = sums[k] / count
        for s0 in range(0, size, chunk):
            run = min(chunk, size - s0)
            if width == 1:
                _tile_squared_deviation(x2, g0 * size + s0, run, mean[g0 - c0], buf)
            else:
                _spread(mean, g0 - c0, width, run, buf_mean)
                _tile_squared_deviation(x2, g0 * size + s0, width * run, buf_mean, buf)
            _collect(buf, width, run, squares, g0 - c0)
        for c in range(g0, g0 + width):
            k = c - c0
            var = squares[k] / count
            inv_std = 1.0 / math.sqrt(var + epsilon)
            scale[k] = gamma[c] * inv_std
            shift[k] = beta[c]
            mean_out[c] = mean[k]
            inv_std_out[c] = inv_std
            # The running variance estimates the population's: unbiased batch variance.
            unbiased = var * count / (count - 1) if count > 1 else var
            moving_mean[c] = momentum * moving_mean[c] + (1.0 - momentum) * mean[k]
            moving_variance[c] = momentum * moving_variance[c] + (1.0 - momentum) * unbiased
        _apply_affine(x2, y2, size, g0, width, c0, mean, scale, shift, buf_mean, buf_scale, buf_shift)


@njit(cache=True)
def _infer_block(x, gamma, beta, moving_mean, moving_variance, epsilon, y, c0, c1):
    size = x.shape[2]
    width_all = c1 - c0
    mean = np.empty(width_all, dtype=np.float64)
    scale = np.empty(width_all, dtype=np.float64)
    shift = np.empty(width_all, dtype=np.float64)
    for k in range(width_all):
        c = c0 + k
        mean[k] = moving_mean[c]
        scale[k] = gamma[c] / math.sqrt(np.float64(moving_variance[c]) + epsilon)
        shift[k] = beta[c]
    x2, y2 = _rows(x), _rows(y)
    group = _tile_shape(size)[0]
    buf_mean, buf_scale, buf_shift = _scratch(), _scratch(), _scratch()
    for g0 in range(c0, c1, group):
        _apply_affine(x2, y2, size, g0, min(group, c1 - g0), c0, mean, scale, shift, buf_mean, buf_scale,
                      buf_shift)


@njit(cache=True)
def _backward_block(dy, x, mean_in, inv_std_in, gamma, dgamma, dbeta, need_dx, need_dparams, dx, c0, c1):
    size = x.shape[2]
    count = x.shape[0] * size
    x2, dy2 = _rows(x), _rows(dy)
    group = _tile_shape(size)[0]
    width_all = c1 - c0
    mean = np.empty(width_all, dtype=np.float64)
    sum_dy = np.zeros(width_all, dtype=np.float64)
    sum_dy_xmu = np.zeros(width_all, dtype=np.float64)
    coef_dy = np.empty(width_all, dtype=np.float64)
    coef_xmu = np.empty(width_all, dtype=np.float64)
    const = np.empty(width_all, dtype=np.float64)
    for k in range(width_all):
        mean[k] = mean_in[c0 + k]
    buf_mean, buf_a, buf_b, buf_c = _scratch(), _scratch(), _scratch(), _scratch()
    for g0 in range(c0, c1, group):
        width = min(group, c1 - g0)
        _gradient_sums(dy2, x2, size, g0, width, c0, mean, sum_dy, sum_dy_xmu, buf_mean, buf_a, buf_b)
        for c in range(g0, g0 + width):
            k = c - c0
            inv_std = inv_std_in[c]
            if need_dparams:
                dgamma[c] += sum_dy_xmu[k] * inv_std
                dbeta[c] += sum_dy[k]
            # dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)), the
            # gradient through the batch mean and variance, as coefficients per channel.
            p = gamma[c] * inv_std
            coef_dy[k] = p
            coef_xmu[k] = -p * inv_std * inv_std * sum_dy_xmu[k] / count
            const[k] = -p * sum_dy[k] / count
        if need_dx:
            dx2 = _rows(dx)
            k = g0 - c0
            if width == 1:
                _tile_input_gradient(dy2, x2, dx2, g0 * size, size, mean[k], coef_dy[k], coef_xmu[k], const[k])
            else:
                _spread(mean, k, width, size, buf_mean)
                _spread(coef_dy, k, width, size, buf_a)
                _spread(coef_xmu, k, width, size, buf_b)
                _spread(const, k, width, size, buf_c)
                _tile_input_gradient(dy2, x2, dx2, g0 * size, width * size, buf_mean, buf_a, buf_b, buf_c)


@njit(cache=True)
def _backward_infer_block(dy, x, moving_mean, moving_variance, gamma, epsilon, dgamma, dbeta,
                          need_dx, need_dparams, dx, c0, c1):
    size = x.shape[2]
    x2, dy2 = _rows(x), _rows(dy)
    group = _tile_shape(size)[0]
    width_all = c1 - c0
    mean = np.empty(width_all, dtype=np.float64)
    inv_std = np.empty(width_all, dtype=np.float64)
    scale = np.empty(width_all, dtype=np.float64)
    sum_dy = np.zeros(width_all, dtype=np.float64)
    sum_dy_xmu = np.zeros(width_all, dtype=np.float64)
    for k in range(width_all):
        c = c0 + k
        mean[k] = moving_mean[c]
        inv_std[k] = 1.0 / math.sqrt(np.float64(moving_variance[c]) + epsilon)
        # The statistics are constants here: the layer is an affine map per channel.
        scale[k] = gamma[c] * inv_std[k]
    buf_mean, buf_a, buf_b = _scratch(), _scratch(), _scratch()
    for g0 in range(c0, c1, group):
        width = min(group, c1 - g0)
        if need_dparams:
            _gradient_sums(dy2, x2, size, g0, width, c0, mean, sum_dy, sum_dy_xmu, buf_mean, buf_a, buf_b)
            for c in range(g0, g0 + width):
                dgamma[c] += sum_dy_xmu[c - c0] * inv_std[c - c0]
                dbeta[c] += sum_dy[c - c0]
        if need_dx:
            dx2 = _rows(dx)
            if width == 1:
                _tile_scale(dy2, dx2, g0 * size, size, scale[g0 - c0])
            else:
                _spread(scale, g0 - c0, width, size, buf_a)
                _tile_scale(dy2, dx2, g0 * size, width * size, buf_a)


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
