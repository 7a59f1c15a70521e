"""Fused, in-place optimizer kernels over a range of a flat parameter buffer.

A model keeps every parameter in one flat 1-D buffer and every gradient in a second
buffer of the same size, so one update rule is one loop over ``[start, stop)``: read
the gradient, apply gradient clipping, update the slots and the parameter, all while
the element is in a register.  The rules follow Keras 3 (Adam and AdamW with PyTorch's
epsilon placement, as the API contract states).

Common arguments:

- ``p``, ``g``: parameter and gradient buffers (1-D, same dtype); ``g`` is only read.
- slot buffers (``vel``, ``m``, ``v``, ``mom``): 1-D, same size and dtype as ``p``;
  a rule that does not need a slot takes an empty (0,) array in its place.
- ``start``, ``stop``: the range to update.
- ``gscale``: factor applied to every gradient first (clipnorm / max(norm, clipnorm),
  1 when not clipping by norm).
- ``clipvalue``: gradients are clipped to [-clipvalue, clipvalue] after scaling; pass
  ``inf`` for no clipping (NaN passes through either way).
- ``nblocks``: 1 runs the serial loop (no thread launch); more splits the range into
  that many contiguous blocks run in parallel.

Scalars should have the dtype of ``p`` (the caller casts them), so that a float32
update runs in float32 as Keras' does and each kernel compiles once per dtype.  For the
same reason the kernels take ``1 - beta`` as an argument: ``1 - beta`` inside a kernel
would be an int64 minus a float32, which Numba widens to float64.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _clip(gi, clipvalue):
    # Two comparisons rather than min/max: a NaN gradient stays NaN (so that a diverging
    # run is seen as one) instead of being replaced by a bound.
    if gi > clipvalue:
        return clipvalue
    if gi < -clipvalue:
        return -clipvalue
    return gi


# Why the block loops look the way they do (measured: Adam over 270k float32 elements
# went from 0.61 ms to 0.06 ms on one core):
# - they loop over slices with ``range(n)``: indexing with ``range(i0, i1)`` keeps
#   Numba's negative-index wraparound in the loop, which stops LLVM from vectorizing;
# - the rules that divide compile with ``error_model="numpy"``: Numba's default Python
#   error model tests every float division for a zero divisor (to raise
#   ZeroDivisionError), which also stops vectorization.  With the NumPy model x / 0
#   gives inf or nan as IEEE says, which is what an update should produce.  This is not
#   fastmath: no flag lets LLVM reorder arithmetic or assume away NaN and infinity;
# - clipping by value has its own copy of the loop, so the common unclipped loop carries
#   no comparisons.


# ---------------------------------------------------------------------------- SGD


@njit(cache=True, inline="always")
def _sgd_elem(p, vel, i, gi, lr, momentum, nesterov, decay):
    if vel.shape[0] == 0:
        p[i] = p[i] * decay - lr * gi
    else:
        vi = momentum * vel[i] - lr * gi
        vel[i] = vi
        if nesterov:
            p[i] = p[i] * decay + (momentum * vi - lr * gi)
        else:
            p[i] = p[i] * decay + vi


@njit(cache=True)
def _sgd_block(p, g, vel, i0, i1, lr, momentum, nesterov, decay, gscale, clipvalue):
    p = p[i0:i1]
    g = g[i0:i1]
    if vel.shape[0] > 0:
        vel = vel[i0:i1]
    # The branches on vel and nesterov inside _sgd_elem are loop-invariant; LLVM unswitches
    # them out of the loop.
    if clipvalue < np.inf:
        for i in range(p.shape[0]):
            _sgd_elem(p, vel, i, _clip(g[i] * gscale, clipvalue), lr, momentum, nesterov, decay)
    else:
        for i in range(p.shape[0]):
            _sgd_elem(p, vel, i, g[i] * gscale, lr, momentum, nesterov, decay)


@njit(cache=True, parallel=True)
def sgd_update(p, g, vel, start, stop, lr, momentum, nesterov, decay, gscale, clipvalue, nblocks):
    """One SGD step over ``p[start:stop]`` (Keras 3 rule).

    ``decay`` = 1 - lr * weight_decay (1 for none) is applied first, as Keras' decoupled
    weight decay ``p -= p * wd * lr``.  Without momentum pass an empty ``vel``:
    ``p -= lr * g``.  With momentum: ``vel = momentum * vel - lr * g``, then
    ``p += vel`` or, with ``nesterov``, ``p += momentum * vel - lr * g``.
    """
    n = stop - start
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _sgd_block(p, g, vel, start, stop, lr, momentum, nesterov, decay, gscale, clipvalue)
    else:
        for t in prange(nb):
            _sgd_block(p, g, vel, start + t * n // nb, start + (t + 1) * n // nb,
                       lr, momentum, nesterov, decay, gscale, clipvalue)


# ------------------------------------------------------------------------ RMSprop


@njit(cache=True, inline="always")
def _rmsprop_elem(p, v, mom, i, gi, lr, rho, one_minus_rho, momentum, epsilon):
    vi = rho * v[i] + one_minus_rho * (gi * gi)
    v[i] = vi
    inc = lr * gi / np.sqrt(vi + epsilon)
    if mom.shape[0] == 0:
        p[i] -= inc
    else:
        mi = momentum * mom[i] + inc
        mom[i] = mi
        p[i] -= mi


@njit(cache=True, error_model="numpy")
def _rmsprop_block(p, g, v, mom, i0, i1, lr, rho, one_minus_rho, momentum, epsilon, gscale,
                   clipvalue):
    p = p[i0:i1]
    g = g[i0:i1]
    v = v[i0:i1]
    if mom.shape[0] > 0:
        mom = mom[i0:i1]
    if clipvalue < np.inf:
        for i in range(p.shape[0]):
            _rmsprop_elem(p, v, mom, i, _clip(g[i] * gscale, clipvalue), lr, rho, one_minus_rho,
                          momentum, epsilon)
    else:
        for i in range(p.shape[0]):
            _rmsprop_elem(p, v, mom, i, g[i] * gscale, lr, rho, one_minus_rho, momentum, epsilon)


@njit(cache=True, parallel=True)
def rmsprop_update(p, g, v, mom, start, stop, lr, rho, one_minus_rho, momentum, epsilon, gscale,
                   clipvalue, nblocks):
    """One RMSprop step over ``p[start:stop]`` (Keras 3 rule, not centered).

    ``v = rho * v + one_minus_rho * g**2``; ``inc = lr * g / sqrt(v + epsilon)`` (epsilon
    inside the root, as Keras); without momentum (empty ``mom``) ``p -= inc``, else
    ``mom = momentum * mom + inc; p -= mom``.
    """
    n = stop - start
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _rmsprop_block(p, g, v, mom, start, stop, lr, rho, one_minus_rho, momentum, epsilon,
                       gscale, clipvalue)
    else:
        for t in prange(nb):
            _rmsprop_block(p, g, v, mom, start + t * n // nb, start + (t + 1) * n // nb,
                           lr, rho, one_minus_rho, momentum, epsilon, gscale, clipvalue)


# --------------------------------------------------------------------- Adam, AdamW


@njit(cache=True, inline="always")
def _adam_elem(p, m, v, i, gi, step_size, inv_sqrt_bc2, one_minus_b1, beta_2, one_minus_b2,
               epsilon, decay):
    mi = m[i] + one_minus_b1 * (gi - m[i])
    vi = beta_2 * v[i] + one_minus_b2 * (gi * gi)
    m[i] = mi
    v[i] = vi
    p[i] = p[i] * decay - step_size * mi / (np.sqrt(vi) * inv_sqrt_bc2 + epsilon)


@njit(cache=True, error_model="numpy")
def _adam_block(p, g, m, v, i0, i1, step_size, inv_sqrt_bc2, one_minus_b1, beta_2, one_minus_b2,
                epsilon, decay, gscale, clipvalue):
    p = p[i0:i1]
    g = g[i0:i1]
    m = m[i0:i1]
    v = v[i0:i1]
    if clipvalue < np.inf:
        for i in range(p.shape[0]):
            _adam_elem(p, m, v, i, _clip(g[i] * gscale, clipvalue), step_size, inv_sqrt_bc2,
                       one_minus_b1, beta_2, one_minus_b2, epsilon, decay)
    else:
        for i in range(p.shape[0]):
            _adam_elem(p, m, v, i, g[i] * gscale, step_size, inv_sqrt_bc2, one_minus_b1, beta_2,
                       one_minus_b2, epsilon, decay)


@njit(cache=True, parallel=True)
def adam_update(p, g, m, v, start, stop, step_size, inv_sqrt_bc2, one_minus_b1, beta_2,
                one_minus_b2, epsilon, decay, gscale, clipvalue, nblocks):
    """One Adam (AdamW with ``decay`` < 1) step over ``p[start:stop]``.

    ``m += one_minus_b1 * (g - m)``; ``v = beta_2 * v + one_minus_b2 * g**2``;
    ``p = p * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + epsilon)``, where the
    caller passes ``step_size = lr / (1 - beta_1**t)``,
    ``inv_sqrt_bc2 = 1 / sqrt(1 - beta_2**t)`` and ``decay = 1 - lr * weight_decay``.
    That is ``m_hat / (sqrt(v_hat) + epsilon)`` with bias-corrected moments.
    """
    n = stop - start
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _adam_block(p, g, m, v, start, stop, step_size, inv_sqrt_bc2, one_minus_b1, beta_2,
                    one_minus_b2, epsilon, decay, gscale, clipvalue)
    else:
        for t in prange(nb):
            _adam_block(p, g, m, v, start + t * n // nb, start + (t + 1) * n // nb, step_size,
                        inv_sqrt_bc2, one_minus_b1, beta_2, one_minus_b2, epsilon, decay, gscale,
                        clipvalue)


# ---------------------------------------------------------------------- clipping


@njit(cache=True)
def _sum_of_squares_block(x, i0, i1):
    # float64 accumulators: a float32 sum over 10^5..10^7 elements would lose digits.
    # Eight independent partial sums let LLVM vectorize a reduction it may not reorder
    # (no fastmath), at a fixed, documented summation order.
    x = x[i0:i1]
    n = x.shape[0]
    n8 = n - n % 8
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    for i in range(0, n8, 8):
        a = np.float64(x[i])
        b = np.float64(x[i + 1])
        c = np.float64(x[i + 2])
        d = np.float64(x[i + 3])
        e = np.float64(x[i + 4])
        f = np.float64(x[i + 5])
        h = np.float64(x[i + 6])
        k = np.float64(x[i + 7])
        s0 += a * a
        s1 += b * b
        s2 += c * c
        s3 += d * d
        s4 += e * e
        s5 += f * f
        s6 += h * h
        s7 += k * k
    tail = 0.0
    for i in range(n8, n):
        xi = np.float64(x[i])
        tail += xi * xi
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)) + tail


@njit(cache=True, parallel=True)
def sum_of_squares(x, start, stop, nblocks):
    """Sum of ``x[start:stop]**2`` accumulated in float64 (returns a float)."""
    n = stop - start
    nb = max(1, min(n, nblocks))
    if nb == 1:
        return _sum_of_squares_block(x, start, stop)
    partial = np.zeros(nb)
    for t in prange(nb):
        partial[t] = _sum_of_squares_block(x, start + t * n // nb, start + (t + 1) * n // nb)
    return partial.sum()


@njit(cache=True)
def _scale_block(x, i0, i1, factor):
    x = x[i0:i1]
    for i in range(x.shape[0]):
        x[i] *= factor


@njit(cache=True, parallel=True)
def scale_range(x, start, stop, factor, nblocks):
    """``x[start:stop] *= factor`` in place."""
    n = stop - start
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _scale_block(x, start, stop, factor)
    else:
        for t in prange(nb):
            _scale_block(x, start + t * n // nb, start + (t + 1) * n // nb, factor)


@njit(cache=True)
def _clip_block(x, i0, i1, clipvalue):
    x = x[i0:i1]
    for i in range(x.shape[0]):
        x[i] = _clip(x[i], clipvalue)


@njit(cache=True, parallel=True)
def clip_range(x, start, stop, clipvalue, nblocks):
    """Clip ``x[start:stop]`` to ``[-clipvalue, clipvalue]`` in place (NaN stays NaN)."""
    n = stop - start
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _clip_block(x, start, stop, clipvalue)
    else:
        for t in prange(nb):
            _clip_block(x, start + t * n // nb, start + (t + 1) * n // nb, clipvalue)


@njit(cache=True)
def clip_by_norm(x, ranges, clipnorm, nblocks):
    """Scale ``x`` over all ``ranges`` by ``clipnorm / max(norm, clipnorm)`` in place.

    ``ranges``: int64 array of shape (k, 2) with rows (start, stop); the norm is the
    L2 norm over all ranges together.  Returns the norm before clipping.
    """
    s = 0.0
    for r in range(ranges.shape[0]):
        s += sum_of_squares(x, ranges[r, 0], ranges[r, 1], nblocks)
    norm = np.sqrt(s)
    if norm > clipnorm:
        factor = clipnorm / norm
        for r in range(ranges.shape[0]):
            scale_range(x, ranges[r, 0], ranges[r, 1], factor, nblocks)
    return norm


@njit(cache=True)
def clip_by_value(x, ranges, clipvalue, nblocks):
    """Clip ``x`` over all ``ranges`` (int64 (k, 2) array) to ``[-clipvalue, clipvalue]``."""
    for r in range(ranges.shape[0]):
        clip_range(x, ranges[r, 0], ranges[r, 1], clipvalue, nblocks)
