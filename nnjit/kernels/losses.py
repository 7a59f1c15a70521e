"""Loss kernels: the mean loss and its gradient computed together, in one pass where possible.

Every kernel returns the mean loss as a Python float and the gradient of that mean with
respect to its first argument, in the first argument's dtype.  Arithmetic is done in
float64 whatever the input dtype, so that sums over large batches stay accurate; the one
exception is the exp of the softmax, which runs in the input precision (see
``_softmax_row``).  Note that inside a kernel ``float(x)`` of a float32 stays float32 in
Numba; ``np.float64(x)`` widens.

Work is split into ``nblocks`` blocks run in parallel; ``nblocks == 1`` takes a serial
path that never starts the thread pool (``nnjit.runtime.blocks_for`` picks the number).
The loss does not depend on ``nblocks``, bit for bit: cross-entropies store one loss per
row and elementwise losses one partial sum per fixed chunk of elements, and these are
added in a fixed order at the end.  Results therefore do not change with the thread
count.

Kernels expect C-contiguous arrays; ``nnjit.losses`` reshapes model outputs of any rank
to 2-D (rows, classes) before calling them.  Argument checking with readable messages
happens there too; the kernels only refuse shapes that would make them read out of
bounds.  A class label outside [0, C) gives a NaN loss and a NaN gradient row instead of
reading memory it does not own.
"""
import math

import numpy as np
from numba import njit, prange

# Probabilities are clipped to [EPSILON, 1 - EPSILON] before taking logs, as Keras does
# (keras.backend.epsilon()); the gradient is zero where a value was clipped.
EPSILON = 1e-7

# Elementwise losses sum their terms in chunks of this many elements, one partial sum
# per chunk, so that the total is the same for every number of blocks.
CHUNK = 1024

# Codes of the elementwise losses, taken by ``_elementwise_loss``.
MSE, MAE, HUBER, SIGMOID_BCE, BCE = range(5)


# --------------------------------------------------------------------------------------
# Softmax + cross-entropy from logits
# --------------------------------------------------------------------------------------


@njit(cache=True)
def _softmax_row(z, probs, i):
    """probs[i] = softmax(z[i]); returns (max, sum of exp(z - max)) for the log-sum-exp.

    Subtracting the row maximum keeps every exp() in (0, 1], so logits of any magnitude
    neither overflow nor lose the largest term; the sum is at least 1.  The exp runs in
    the input precision (float32 exp is a third cheaper here, and the probabilities are
    stored in that precision anyway); the sum is float64.
    """
    c = z.shape[1]
    m = z[i, 0]
    for j in range(1, c):
        if z[i, j] > m:
            m = z[i, j]
    s = 0.0
    for j in range(c):
        e = math.exp(z[i, j] - m)
        probs[i, j] = e
        s += e
    inv = 1.0 / s
    for j in range(c):
        probs[i, j] *= inv
    return np.float64(m), s


@njit(cache=True)
def _softmax_ce_sparse_rows(z, labels, probs, dz, row_loss, inv_n, i0, i1):
    c = z.shape[1]
    for i in range(i0, i1):
        m, s = _softmax_row(z, probs, i)
        for j in range(c):
            dz[i, j] = probs[i, j] * inv_n
        y = labels[i]
        if y >= 0 and y < c:
            dz[i, y] -= inv_n
            # -log softmax(z)[y] = log(sum exp(z - m)) + (m - z[y]); both terms are
            # exact-ish in float64, no cancellation between large numbers.
            row_loss[i] = math.log(s) + (m - np.float64(z[i, y]))
        else:
            row_loss[i] = np.nan
            for j in range(c):
                dz[i, j] = np.nan


@njit(cache=True, parallel=True)
def softmax_cross_entropy_sparse(logits, labels, nblocks):
    """Softmax followed by cross-entropy against integer class labels, fused.

    logits: (N, C) float32/float64, C-contiguous; labels: (N,) int64 in [0, C).
    Returns (mean_loss, dlogits, probs): the mean over rows of -log softmax(logits)[label],
    its gradient (softmax - onehot) / N and the softmax, both (N, C) in the logits dtype.
    """
    n, c = logits.shape
    if labels.shape[0] != n:
        raise ValueError("softmax_cross_entropy_sparse: labels must have one entry per row of logits")
    probs = np.empty_like(logits)
    dz = np.empty_like(logits)
    if n == 0 or c == 0:
        return np.nan, dz, probs
    row_loss = np.empty(n, dtype=np.float64)
    inv_n = 1.0 / n
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _softmax_ce_sparse_rows(logits, labels, probs, dz, row_loss, inv_n, np.int64(0), np.int64(n))
    else:
        for t in prange(nb):
            _softmax_ce_sparse_rows(logits, labels, probs, dz, row_loss, inv_n, t * n // nb, (t + 1) * n // nb)
    total = 0.0
    for i in range(n):
        total += row_loss[i]
    return total * inv_n, dz, probs


@njit(cache=True)
def _softmax_ce_dense_rows(z, targets, probs, dz, row_loss, inv_n, i0, i1):
    c = z.shape[1]
    for i in range(i0, i1):
        m, s = _softmax_row(z, probs, i)
        log_s = math.log(s)
        t_sum = 0.0
        loss = 0.0
        for j in range(c):
            t = np.float64(targets[i, j])
            t_sum += t
            if t != 0.0:  # 0 * (m - z) would be NaN where z is -inf
                loss += t * (log_s + (m - np.float64(z[i, j])))
        # d/dz_j sum_k t_k (lse - z_k) = p_j * sum(t) - t_j; equals p - t for targets
        # that sum to one (one-hot or soft labels).
        for j in range(c):
            dz[i, j] = (probs[i, j] * t_sum - np.float64(targets[i, j])) * inv_n
        row_loss[i] = loss


@njit(cache=True, parallel=True)
def softmax_cross_entropy_dense(logits, targets, nblocks):
    """Softmax followed by cross-entropy against one-hot or soft targets, fused.

    logits, targets: (N, C), C-contiguous, float32/float64.
    Returns (mean_loss, dlogits, probs): the mean over rows of -sum_j t_j log softmax(z)_j,
    its gradient (softmax * sum(t) - t) / N and the softmax, in the logits dtype.
    """
    n, c = logits.shape
    if targets.shape[0] != n or targets.shape[1] != c:
        raise ValueError("softmax_cross_entropy_dense: targets must have the shape of logits")
    probs = np.empty_like(logits)
    dz = np.empty_like(logits)
    if n == 0 or c == 0:
        return np.nan, dz, probs
    row_loss = np.empty(n, dtype=np.float64)
    inv_n = 1.0 / n
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _softmax_ce_dense_rows(logits, targets, probs, dz, row_loss, inv_n, np.int64(0), np.int64(n))
    else:
        for t in prange(nb):
            _softmax_ce_dense_rows(logits, targets, probs, dz, row_loss, inv_n, t * n // nb, (t + 1) * n // nb)
    total = 0.0
    for i in range(n):
        total += row_loss[i]
    return total * inv_n, dz, probs


# --------------------------------------------------------------------------------------
# Cross-entropy on probabilities (from_logits=False without a fusable softmax)
# --------------------------------------------------------------------------------------
#
# As Keras: each row is first divided by its sum (so that it is a distribution), then
# clipped to [EPSILON, 1 - EPSILON], then -sum_j t_j log q_j.  With q = p / S and
# g_j = dL/dq_j (zero where q_j was clipped), the chain rule through the normalization
# gives dL/dp_j = (g_j - sum_k g_k q_k) / S.


@njit(cache=True)
def _row_scale(p, i):
    """1 / sum(p[i]); NaN for a row summing to zero (its loss is undefined, as in Keras)."""
    s = 0.0
    for j in range(p.shape[1]):
        s += np.float64(p[i, j])
    if s == 0.0:
        return np.nan
    return 1.0 / s


@njit(cache=True)
def _ce_probs_dense_rows(p, targets, dp, row_loss, inv_n, i0, i1):
    c = p.shape[1]
    hi = 1.0 - EPSILON
    for i in range(i0, i1):
        inv_s = _row_scale(p, i)
        loss = 0.0
        dot = 0.0
        for j in range(c):
            t = np.float64(targets[i, j])
            q = np.float64(p[i, j]) * inv_s
            if q < EPSILON:
                loss -= t * math.log(EPSILON)
            elif q > hi:
                loss -= t * math.log(hi)
            else:
                loss -= t * math.log(q)
                dot -= t  # g_j * q_j = -t_j
        for j in range(c):
            q = np.float64(p[i, j]) * inv_s
            g = 0.0
            if q >= EPSILON and q <= hi:
                g = -np.float64(targets[i, j]) / q
            elif q != q:  # NaN propagates, the comparisons above would hide it
                g = q
            dp[i, j] = (g - dot) * inv_s * inv_n
        row_loss[i] = loss


@njit(cache=True, parallel=True)
def categorical_cross_entropy_probs(probs, targets, nblocks):
    """Categorical cross-entropy on probabilities (Keras' from_logits=False).

    probs, targets: (N, C), C-contiguous, float32/float64.  Rows of ``probs`` are
    normalized to sum 1, then clipped to [EPSILON, 1 - EPSILON].
    Returns (mean_loss, dprobs) with dprobs (N, C) in the probs dtype.
    """
    n, c = probs.shape
    if targets.shape[0] != n or targets.shape[1] != c:
        raise ValueError("categorical_cross_entropy_probs: targets must have the shape of probs")
    dp = np.empty_like(probs)
    if n == 0 or c == 0:
        return np.nan, dp
    row_loss = np.empty(n, dtype=np.float64)
    inv_n = 1.0 / n
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _ce_probs_dense_rows(probs, targets, dp, row_loss, inv_n, np.int64(0), np.int64(n))
    else:
        for t in prange(nb):
            _ce_probs_dense_rows(probs, targets, dp, row_loss, inv_n, t * n // nb, (t + 1) * n // nb)
    total = 0.0
    for i in range(n):
        total += row_loss[i]
    return total * inv_n, dp


@njit(cache=True)
def _ce_probs_sparse_rows(p, labels, dp, row_loss, inv_n, i0, i1):
    c = p.shape[1]
    hi = 1.0 - EPSILON
    for i in range(i0, i1):
        y = labels[i]
        if y < 0 or y >= c:
            row_loss[i] = np.nan
            for j in range(c):
                dp[i, j] = np.nan
            continue
        inv_s = _row_scale(p, i)
        q = np.float64(p[i, y]) * inv_s
        g = 0.0
        dot = 0.0
        if q < EPSILON:
            row_loss[i] = -math.log(EPSILON)
        elif q > hi:
            row_loss[i] = -math.log(hi)
        elif q == q:
            row_loss[i] = -math.log(q)
            g = -1.0 / q
            dot = -1.0
        else:  # NaN in, NaN out
            row_loss[i] = q
            g = q
        scale = inv_s * inv_n
        for j in range(c):
            dp[i, j] = -dot * scale
        dp[i, y] = (g - dot) * scale


@njit(cache=True, parallel=True)
def sparse_categorical_cross_entropy_probs(probs, labels, nblocks):
    """Sparse categorical cross-entropy on probabilities (Keras' from_logits=False).

    probs: (N, C) C-contiguous float32/float64; labels: (N,) int64 in [0, C).  Rows are
    normalized to sum 1 and clipped to [EPSILON, 1 - EPSILON] as in
    ``categorical_cross_entropy_probs``.  Returns (mean_loss, dprobs).
    """
    n, c = probs.shape
    if labels.shape[0] != n:
        raise ValueError("sparse_categorical_cross_entropy_probs: labels must have one entry per row of probs")
    dp = np.empty_like(probs)
    if n == 0 or c == 0:
        return np.nan, dp
    row_loss = np.empty(n, dtype=np.float64)
    inv_n = 1.0 / n
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _ce_probs_sparse_rows(probs, labels, dp, row_loss, inv_n, np.int64(0), np.int64(n))
    else:
        for t in prange(nb):
            _ce_probs_sparse_rows(probs, labels, dp, row_loss, inv_n, t * n // nb, (t + 1) * n // nb)
    total = 0.0
    for i in range(n):
        total += row_loss[i]
    return total * inv_n, dp


# --------------------------------------------------------------------------------------
# Elementwise losses: mean over all elements
# --------------------------------------------------------------------------------------


@njit(cache=True)
def _elementwise_chunk(x, t, code, delta, grad, probs, inv_n, k0, k1):
    """Loss terms of elements k0..k1 (flat arrays); writes the gradient, returns the sum."""
    acc = 0.0
    if code == MSE:
        for k in range(k0, k1):
            d = np.float64(x[k]) - np.float64(t[k])
            acc += d * d
            grad[k] = 2.0 * d * inv_n
    elif code == MAE:
        for k in range(k0, k1):
            d = np.float64(x[k]) - np.float64(t[k])
            acc += abs(d)
            if d > 0.0:
                grad[k] = inv_n
            elif d < 0.0:
                grad[k] = -inv_n
            else:  # 0 at 0, NaN stays NaN
                grad[k] = d
    elif code == HUBER:
        for k in range(k0, k1):
            d = np.float64(x[k]) - np.float64(t[k])
            a = abs(d)
            if a <= delta:
                acc += 0.5 * d * d
                grad[k] = d * inv_n
            elif d > 0.0:
                acc += delta * (a - 0.5 * delta)
                grad[k] = delta * inv_n
            elif d < 0.0:
                acc += delta * (a - 0.5 * delta)
                grad[k] = -delta * inv_n
            else:  # NaN
                acc += d
                grad[k] = d
    elif code == SIGMOID_BCE:
        for k in range(k0, k1):
            z = np.float64(x[k])
            y = np.float64(t[k])
            # Stable form of -[y log s(z) + (1 - y) log(1 - s(z))]: exp only ever sees
            # -|z|, so it cannot overflow, and log1p keeps the small tail accurate.
            e = math.exp(-abs(z))
            acc += max(z, 0.0) - z * y + math.log1p(e)
            if z >= 0.0:
                s = 1.0 / (1.0 + e)
            else:
                s = e / (1.0 + e)
            probs[k] = s
            grad[k] = (s - y) * inv_n
    elif code == BCE:
        hi = 1.0 - EPSILON
        for k in range(k0, k1):
            p = np.float64(x[k])
            y = np.float64(t[k])
            if p < EPSILON:
                acc -= y * math.log(EPSILON) + (1.0 - y) * math.log(hi)
                grad[k] = 0.0
            elif p > hi:
                acc -= y * math.log(hi) + (1.0 - y) * math.log(EPSILON)
                grad[k] = 0.0
            else:  # includes NaN, which propagates through log
                acc -= y * math.log(p) + (1.0 - y) * math.log(1.0 - p)
                grad[k] = ((1.0 - y) / (1.0 - p) - y / p) * inv_n
    return acc


@njit(cache=True)
def _elementwise_chunks(x, t, code, delta, grad, probs, part, inv_n, size, c0, c1):
    for ci in range(c0, c1):
        k0 = ci * CHUNK
        k1 = min(size, k0 + CHUNK)
        part[ci] = _elementwise_chunk(x, t, code, delta, grad, probs, inv_n, k0, k1)


@njit(cache=True, parallel=True)
def _elementwise_loss(x, t, code, delta, nblocks):
    """Mean over all elements of an elementwise loss and its gradient.

    x, t: C-contiguous arrays of one shape; code: MSE, MAE, HUBER, SIGMOID_BCE or BCE.
    Returns (mean_loss, grad, probs), grad and probs with x's shape and dtype; probs
    (the sigmoid of x) is only filled for SIGMOID_BCE and is empty otherwise.
    """
    size = x.size
    if t.size != size:
        raise ValueError("elementwise loss: targets must have as many elements as predictions")
    xf = x.reshape(size)
    tf = t.reshape(size)
    grad = np.empty(size, dtype=x.dtype)
    probs = np.empty(size if code == SIGMOID_BCE else 0, dtype=x.dtype)
    if size == 0:
        return np.nan, grad.reshape(x.shape), probs
    inv_n = 1.0 / size
    nchunks = (size + CHUNK - 1) // CHUNK
    part = np.empty(nchunks, dtype=np.float64)
    nb = max(1, min(nchunks, nblocks))
    if nb == 1:
        _elementwise_chunks(xf, tf, code, delta, grad, probs, part, inv_n, size, 0, nchunks)
    else:
        for b in prange(nb):
            _elementwise_chunks(xf, tf, code, delta, grad, probs, part, inv_n, size,
                                b * nchunks // nb, (b + 1) * nchunks // nb)
    total = 0.0
    for ci in range(nchunks):
        total += part[ci]
    return total * inv_n, grad.reshape(x.shape), probs


@njit(cache=True)
def mse(pred, target, nblocks):
    """Mean squared error over all elements: (mean((pred - target)^2), 2 (pred - target) / n).

    pred, target: 2-D C-contiguous arrays of one shape.  Returns (mean_loss, dpred).
    """
    loss, grad, _ = _elementwise_loss(pred, target, MSE, 0.0, nblocks)
    return loss, grad


@njit(cache=True)
def mae(pred, target, nblocks):
    """Mean absolute error over all elements; the gradient is sign(pred - target) / n, 0 at 0.

    pred, target: 2-D C-contiguous arrays of one shape.  Returns (mean_loss, dpred).
    """
    loss, grad, _ = _elementwise_loss(pred, target, MAE, 0.0, nblocks)
    return loss, grad


@njit(cache=True)
def huber(pred, target, delta, nblocks):
    """Huber loss over all elements: 0.5 d^2 where |d| <= delta, else delta (|d| - delta / 2).

    pred, target: 2-D C-contiguous arrays of one shape; delta > 0.  Returns (mean_loss, dpred).
    """
    loss, grad, _ = _elementwise_loss(pred, target, HUBER, delta, nblocks)
    return loss, grad


@njit(cache=True)
def sigmoid_binary_cross_entropy(logits, targets, nblocks):
    """Sigmoid followed by binary cross-entropy, fused; mean over all elements.

    Each term is max(z, 0) - z t + log1p(exp(-|z|)), stable for logits of any size.
    logits, targets: 2-D C-contiguous arrays of one shape.
    Returns (mean_loss, dlogits, probs): dlogits = (sigmoid(z) - t) / n, probs = sigmoid(z).
    """
    loss, grad, probs = _elementwise_loss(logits, targets, SIGMOID_BCE, 0.0, nblocks)
    return loss, grad, probs.reshape(logits.shape)


@njit(cache=True)
def binary_cross_entropy_probs(probs, targets, nblocks):
    """Binary cross-entropy on probabilities clipped to [EPSILON, 1 - EPSILON] (Keras'
    from_logits=False); mean over all elements; zero gradient where clipped.

    probs, targets: 2-D C-contiguous arrays of one shape.  Returns (mean_loss, dprobs).
    """
    loss, grad, _ = _elementwise_loss(probs, targets, BCE, 0.0, nblocks)
    return loss, grad
