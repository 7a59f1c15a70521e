"""Weight-penalty kernel: L1 and L2 penalty and gradient in one pass over the weights.

penalty = l1 * sum(|w|) + l2 * sum(w**2); gradient (added into g in place)
l1 * sign(w) + 2 * l2 * w, with sign(0) = 0 (as TensorFlow's gradient of |w|).
"""
import numpy as np
from numba import njit, prange


@njit(cache=True)
def _penalty_block(w, g, i0, i1, l1, two_l2, out, t):
    w = w[i0:i1]
    n = w.shape[0]
    # The gradient and the sums run as two loops: together, the sign test became a
    # mispredicted branch per element (10x slower on weights of mixed sign); alone, each
    # loop vectorizes (the sign test becomes a select).
    if g.shape[0] > 0:
        g = g[i0:i1]
        for i in range(n):
            wi = w[i]
            gi = g[i] + two_l2 * wi
            if wi > 0:
                gi += l1
            elif wi < 0:
                gi -= l1
            g[i] = gi
    # Sums in float64 with eight independent partial sums per quantity: the fixed order
    # lets LLVM vectorize a reduction it may not reorder (no fastmath), and float32
    # weights do not lose digits over 10^5..10^7 elements.
    n8 = n - n % 8
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    q0 = q1 = q2 = q3 = q4 = q5 = q6 = q7 = 0.0
    for j in range(0, n8, 8):
        x0 = np.float64(w[j])
        x1 = np.float64(w[j + 1])
        x2 = np.float64(w[j + 2])
        x3 = np.float64(w[j + 3])
        x4 = np.float64(w[j + 4])
        x5 = np.float64(w[j + 5])
        x6 = np.float64(w[j + 6])
        x7 = np.float64(w[j + 7])
        a0 += abs(x0)
        a1 += abs(x1)
        a2 += abs(x2)
        a3 += abs(x3)
        a4 += abs(x4)
        a5 += abs(x5)
        a6 += abs(x6)
        a7 += abs(x7)
        q0 += x0 * x0
        q1 += x1 * x1
        q2 += x2 * x2
        q3 += x3 * x3
        q4 += x4 * x4
        q5 += x5 * x5
        q6 += x6 * x6
        q7 += x7 * x7
    tail_abs = 0.0
    tail_sq = 0.0
    for i in range(n8, n):
        x = np.float64(w[i])
        tail_abs += abs(x)
        tail_sq += x * x
    out[t, 0] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + tail_abs
    out[t, 1] = ((q0 + q1) + (q2 + q3)) + ((q4 + q5) + (q6 + q7)) + tail_sq


@njit(cache=True, parallel=True)
def l1l2_penalty_and_grad(w, g, l1, two_l2, nblocks):
    """Return (sum(|w|), sum(w**2)) in float64 and, unless ``g`` is empty (shape (0,)),
    add ``l1 * sign(w) + two_l2 * w`` into ``g`` in place.

    w, g: 1-D contiguous, same size and dtype; l1, two_l2: scalars in that dtype.  The
    caller forms the penalty ``l1 * sum_abs + l2 * sum_sq``.
    """
    n = w.shape[0]
    nb = max(1, min(n, nblocks))
    out = np.zeros((nb, 2))
    if nb == 1:
        _penalty_block(w, g, 0, n, l1, two_l2, out, 0)
    else:
        for t in prange(nb):
            _penalty_block(w, g, t * n // nb, (t + 1) * n // nb, l1, two_l2, out, t)
    sum_abs = 0.0
    sum_sq = 0.0
    for t in range(nb):
        sum_abs += out[t, 0]
        sum_sq += out[t, 1]
    return sum_abs, sum_sq
