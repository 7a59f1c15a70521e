"""Pooling kernels over NCHW arrays: max, average and global average pooling.

Every kernel splits the N*C planes into ``nblocks`` blocks, one per thread: planes are
independent, so no two threads ever write the same element, even when windows overlap
in backward.  ``nblocks == 1`` takes a serial path that never launches the thread pool.

Padding is described by the padding before the input (``pad_top``, ``pad_left``) and
the output size; windows may run past the bottom and right edges, and the positions
they cover there count as padding.  Padded positions never take part: they never win
a max and are left out of an average's count (Keras/TF "same" pooling, PyTorch's
``count_include_pad=False``).

2x2 windows with stride 2 and no leading padding are the hot case in convolutional
networks; they take a specialised loop whose four loads per output need no bounds
arithmetic and which vectorizes along rows of 16 or more outputs (3-12x faster than
the general loop on the benchmark shapes, measured); only the ragged last row and
column of "same" padding go through the general loop.
"""
import numpy as np
from numba import njit, prange

from .activations import block_bounds


@njit(cache=True)
def _fast_extent(x, y, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    """Output rows and columns (full_h, full_w) that the 2x2/stride-2 loop computes:
    those whose windows lie inside the input.  (0, 0) for any other geometry."""
    if pool_h == 2 and pool_w == 2 and stride_h == 2 and stride_w == 2 and pad_top == 0 and pad_left == 0:
        return min(y.shape[2], x.shape[2] // 2), min(y.shape[3], x.shape[3] // 2)
    return np.int64(0), np.int64(0)


@njit(cache=True)
def _max_pool_region(xp, yp, ap, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, i0, i1, j0, j1):
    # General windows for outputs [i0, i1) x [j0, j1) of one plane, clipped to the input.
    in_h, in_w = xp.shape
    for i in range(i0, i1):
        h0 = i * stride_h - pad_top
        ha = max(h0, 0)
        hb = min(h0 + pool_h, in_h)
        for j in range(j0, j1):
            w0 = j * stride_w - pad_left
            wa = max(w0, 0)
            wb = min(w0 + pool_w, in_w)
            if ha >= hb or wa >= wb:
                # A window entirely in the padding: nothing to pick, and backward skips -1.
                yp[i, j] = -np.inf
                ap[i, j] = -1
                continue
            # Start from a real element rather than -inf so that a window of -inf values
            # still records a valid index.
            best = xp[ha, wa]
            k = ha * in_w + wa
            for h in range(ha, hb):
                for w in range(wa, wb):
                    v = xp[h, w]
                    # Strict > keeps the first maximum on ties; "| (v != v)" lets a NaN
                    # through (as torch and NumPy propagate NaN through max), and once
                    # best is NaN no number replaces it.
                    if (v > best) | (v != v):
                        best = v
                        k = h * in_w + w
            yp[i, j] = best
            ap[i, j] = k


@njit(cache=True)
def _max_pool_2x2_interior(xp, yp, ap, full_h, full_w):
    # Outputs [0, full_h) x [0, full_w) of 2x2 windows at stride 2, all inside the input.
    # Kept apart from the general loop for the edges: with those calls in the same
    # function this loop ran up to 1.9x slower (measured).
    in_w = xp.shape[1]
    for i in range(full_h):
        r0 = 2 * i
        r1 = r0 + 1
        base0 = r0 * in_w
        base1 = base0 + in_w
        for j in range(full_w):
            c0 = 2 * j
            a = xp[r0, c0]
            b = xp[r0, c0 + 1]
            c = xp[r1, c0]
            d = xp[r1, c0 + 1]
            # A tree of selects instead of a chain of branches: no mispredictions on
            # random data, and it vectorizes.  Each comparison prefers the earlier
            # element, so ties keep the first maximum in row-major order, as in the
            # general loop; "| (v != v)" lets NaN through likewise.
            take_b = (b > a) | (b != b)
            top = b if take_b else a
            k_top = base0 + c0 + 1 if take_b else base0 + c0
            take_d = (d > c) | (d != d)
            bottom = d if take_d else c
            k_bottom = base1 + c0 + 1 if take_d else base1 + c0
            take_bottom = (bottom > top) | (bottom != bottom)
            yp[i, j] = bottom if take_bottom else top
            ap[i, j] = k_bottom if take_bottom else k_top


@njit(cache=True)
def _max_pool_planes(x, y, argmax, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, p0, p1):
    channels = x.shape[1]
    out_h, out_w = y.shape[2], y.shape[3]
    full_h, full_w = _fast_extent(x, y, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    zero = np.int64(0)
    for p in range(p0, p1):
        n = p // channels
        c = p - n * channels
        xp, yp, ap = x[n, c], y[n, c], argmax[n, c]
        if full_h > 0:
            _max_pool_2x2_interior(xp, yp, ap, full_h, full_w)
        # The general loop takes what the fast loop leaves: everything, or the ragged
        # last column and row when 2x2 windows run past the input.
        if full_h > 0 and full_w < out_w:
            _max_pool_region(xp, yp, ap, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                             zero, full_h, full_w, out_w)
        if full_h < out_h:
            _max_pool_region(xp, yp, ap, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                             full_h, out_h, zero, out_w)


@njit(cache=True, parallel=True)
def max_pool2d_forward(x, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w, nblocks):
    """Max pooling forward.

    x: (N, C, H, W).  pool_h, pool_w: window size; stride_h, stride_w: strides;
    pad_top, pad_left: padding before the input (bottom/right padding is implied by
    out_h, out_w, computed by the caller).  Padded positions never win.
    Returns (y, argmax): y (N, C, out_h, out_w) of x's dtype, and argmax, int32 of the
    same shape, holding the flat index h * W + w of the winner within its input plane
    (the first maximum on ties; -1 only for a window lying wholly in the padding, whose
    output is -inf).
    """
    n, c = x.shape[0], x.shape[1]
    y = np.empty((n, c, out_h, out_w), dtype=x.dtype)
    argmax = np.empty((n, c, out_h, out_w), dtype=np.int32)
    planes = n * c
    nb = max(1, min(planes, nblocks))
    if nb == 1:
        _max_pool_planes(x, y, argmax, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                         *block_bounds(0, 1, planes))
    else:
        for t in prange(nb):
            _max_pool_planes(x, y, argmax, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                             *block_bounds(t, nb, planes))
    return y, argmax


@njit(cache=True)
def _zero(a):
    # A loop from 0 over a view, not range(i0, i1) over the whole array: with a start
    # LLVM cannot prove non-negative, Numba's wraparound check on each index kept this
    # from becoming a memset and made it ten times slower (measured).
    for k in range(a.shape[0]):
        a[k] = 0.0


@njit(cache=True)
def _max_unpool_planes(dy, argmax, dx_flat, plane_size, p0, p1):
    channels = dy.shape[1]
    out_h, out_w = dy.shape[2], dy.shape[3]
    # Zero the block's planes in one contiguous run (spread over the threads instead of
    # a serial np.zeros), then scatter into them while they are still in cache.
    _zero(dx_flat[p0 * plane_size:p1 * plane_size])
    for p in range(p0, p1):
        n = p // channels
        c = p - n * channels
        base = p * plane_size
        for i in range(out_h):
            for j in range(out_w):
                k = argmax[n, c, i, j]
                if k >= 0:
                    dx_flat[base + k] += dy[n, c, i, j]


@njit(cache=True, parallel=True)
def max_pool2d_backward(dy, argmax, in_h, in_w, nblocks):
    """Max pooling backward: scatter-add of dy to the winners recorded in argmax.

    dy: (N, C, out_h, out_w); argmax: int32 (N, C, out_h, out_w) from
    ``max_pool2d_forward``; in_h, in_w: input plane size.  Overlapping windows
    (stride < pool) that share a winner add up.  Returns dx (N, C, in_h, in_w).
    """
    n, c = dy.shape[0], dy.shape[1]
    dx = np.empty((n, c, in_h, in_w), dtype=dy.dtype)
    dx_flat = dx.reshape(dx.size)
    plane_size = in_h * in_w
    planes = n * c
    nb = max(1, min(planes, nblocks))
    if nb == 1:
        _max_unpool_planes(dy, argmax, dx_flat, plane_size, *block_bounds(0, 1, planes))
    else:
        for t in prange(nb):
            _max_unpool_planes(dy, argmax, dx_flat, plane_size, *block_bounds(t, nb, planes))
    return dx


@njit(cache=True)
def _avg_pool_region(xp, yp, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, i0, i1, j0, j1):
    in_h, in_w = xp.shape
    for i in range(i0, i1):
        h0 = i * stride_h - pad_top
        ha = max(h0, 0)
        hb = min(h0 + pool_h, in_h)
        for j in range(j0, j1):
            w0 = j * stride_w - pad_left
            wa = max(w0, 0)
            wb = min(w0 + pool_w, in_w)
            count = max(hb - ha, 0) * max(wb - wa, 0)
            s = 0.0
            for h in range(ha, hb):
                for w in range(wa, wb):
                    s += xp[h, w]
            # A window wholly in the padding averages nothing: 0, not 0/0.
            yp[i, j] = s / count if count > 0 else 0.0


@njit(cache=True)
def _avg_pool_2x2_interior(xp, yp, full_h, full_w):
    for i in range(full_h):
        r0 = 2 * i
        r1 = r0 + 1
        for j in range(full_w):
            c0 = 2 * j
            # float32(0.25) is exact in both precisions and keeps float32 arithmetic
            # in float32 (a float64 constant would widen it).
            yp[i, j] = ((xp[r0, c0] + xp[r0, c0 + 1]) + (xp[r1, c0] + xp[r1, c0 + 1])) * np.float32(0.25)


@njit(cache=True)
def _avg_pool_planes(x, y, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, p0, p1):
    channels = x.shape[1]
    out_h, out_w = y.shape[2], y.shape[3]
    full_h, full_w = _fast_extent(x, y, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    zero = np.int64(0)
    for p in range(p0, p1):
        n = p // channels
        c = p - n * channels
        xp, yp = x[n, c], y[n, c]
        if full_h > 0:
            _avg_pool_2x2_interior(xp, yp, full_h, full_w)
        if full_h > 0 and full_w < out_w:
            _avg_pool_region(xp, yp, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, zero, full_h, full_w, out_w)
        if full_h < out_h:
            _avg_pool_region(xp, yp, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, full_h, out_h, zero, out_w)


@njit(cache=True, parallel=True)
def avg_pool2d_forward(x, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w, nblocks):
    """Average pooling forward.

    x: (N, C, H, W); window, strides and padding as in ``max_pool2d_forward``.  Each
    output is the mean over the window's positions inside the input (padding is not
    counted).  Returns y (N, C, out_h, out_w).
    """
    n, c = x.shape[0], x.shape[1]
    y = np.empty((n, c, out_h, out_w), dtype=x.dtype)
    planes = n * c
    nb = max(1, min(planes, nblocks))
    if nb == 1:
        _avg_pool_planes(x, y, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                         *block_bounds(0, 1, planes))
    else:
        for t in prange(nb):
            _avg_pool_planes(x, y, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                             *block_bounds(t, nb, planes))
    return y


@njit(cache=True)
def _avg_unpool_region(dyp, dxp, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, i0, i1, j0, j1):
    in_h, in_w = dxp.shape
    for i in range(i0, i1):
        h0 = i * stride_h - pad_top
        ha = max(h0, 0)
        hb = min(h0 + pool_h, in_h)
        for j in range(j0, j1):
            w0 = j * stride_w - pad_left
            wa = max(w0, 0)
            wb = min(w0 + pool_w, in_w)
            count = max(hb - ha, 0) * max(wb - wa, 0)
            if count == 0:
                continue
            g = dyp[i, j] / count
            for h in range(ha, hb):
                for w in range(wa, wb):
                    dxp[h, w] += g


@njit(cache=True)
def _avg_unpool_2x2_interior(dyp, dxp, full_h, full_w):
    # Windows do not overlap, so the interior is written, not accumulated.
    for i in range(full_h):
        r0 = 2 * i
        r1 = r0 + 1
        for j in range(full_w):
            c0 = 2 * j
            g = dyp[i, j] * np.float32(0.25)
            dxp[r0, c0] = g
            dxp[r0, c0 + 1] = g
            dxp[r1, c0] = g
            dxp[r1, c0 + 1] = g


@njit(cache=True)
def _avg_unpool_planes(dy, dx, dx_flat, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, p0, p1):
    channels = dy.shape[1]
    out_h, out_w = dy.shape[2], dy.shape[3]
    full_h, full_w = _fast_extent(dx, dy, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    plane_size = dx.shape[2] * dx.shape[3]
    # Positions no window covers (rows and columns that "valid" drops) must read 0,
    # and overlapping windows accumulate: zero the block's planes in one run first.
    _zero(dx_flat[p0 * plane_size:p1 * plane_size])
    zero = np.int64(0)
    for p in range(p0, p1):
        n = p // channels
        c = p - n * channels
        dyp, dxp = dy[n, c], dx[n, c]
        if full_h > 0:
            _avg_unpool_2x2_interior(dyp, dxp, full_h, full_w)
        if full_h > 0 and full_w < out_w:
            _avg_unpool_region(dyp, dxp, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                               zero, full_h, full_w, out_w)
        if full_h < out_h:
            _avg_unpool_region(dyp, dxp, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                               full_h, out_h, zero, out_w)


@njit(cache=True, parallel=True)
def avg_pool2d_backward(dy, in_h, in_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, nblocks):
    """Average pooling backward.

    dy: (N, C, out_h, out_w); in_h, in_w: input plane size; window, strides and
    padding as given to ``avg_pool2d_forward``.  Each output's gradient is spread evenly
    over the window's positions inside the input; overlapping windows add up.
    Returns dx (N, C, in_h, in_w).
    """
    n, c = dy.shape[0], dy.shape[1]
    dx = np.empty((n, c, in_h, in_w), dtype=dy.dtype)
    dx_flat = dx.reshape(dx.size)
    planes = n * c
    nb = max(1, min(planes, nblocks))
    if nb == 1:
        _avg_unpool_planes(dy, dx, dx_flat, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                           *block_bounds(0, 1, planes))
    else:
        for t in prange(nb):
            _avg_unpool_planes(dy, dx, dx_flat, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                               *block_bounds(t, nb, planes))
    return dx


@njit(cache=True)
def _sum_float64(a, i0, i1):
    """Sum of a[i0:i1] of a 1-D array, accumulated in float64.

    Eight independent partial sums: without fastmath LLVM may not reorder a single
    running sum, whose add latency then bounds the loop; eight chains run about twice
    as fast and round no worse.
    """
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    m = i0 + (i1 - i0) // 8 * 8
    for i in range(i0, m, 8):
        s0 += a[i]
        s1 += a[i + 1]
        s2 += a[i + 2]
        s3 += a[i + 3]
        s4 += a[i + 4]
        s5 += a[i + 5]
        s6 += a[i + 6]
        s7 += a[i + 7]
    for i in range(m, i1):
        s0 += a[i]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True)
def _global_avg_planes(x, y, p0, p1):
    channels = x.shape[1]
    size = x.shape[2] * x.shape[3]
    for p in range(p0, p1):
        n = p // channels
        c = p - n * channels
        y[n, c] = _sum_float64(x[n, c].reshape(size), 0, size) / size


@njit(cache=True, parallel=True)
def global_avg_pool2d_forward(x, nblocks):
    """Global average pooling: x (N, C, H, W) -> y (N, C), the mean of each plane
    (summed in float64)."""
    n, c = x.shape[0], x.shape[1]
    y = np.empty((n, c), dtype=x.dtype)
    planes = n * c
    nb = max(1, min(planes, nblocks))
    if nb == 1:
        _global_avg_planes(x, y, *block_bounds(0, 1, planes))
    else:
        for t in prange(nb):
            _global_avg_planes(x, y, *block_bounds(t, nb, planes))
    return y


@njit(cache=True)
def _global_avg_unpool_planes(dy, dx_flat, plane_size, p0, p1):
    channels = dy.shape[1]
    for p in range(p0, p1):
        n = p // channels
        c = p - n * channels
        g = dy[n, c] / plane_size
        plane = dx_flat[p * plane_size:(p + 1) * plane_size]
        for k in range(plane_size):
            plane[k] = g


@njit(cache=True, parallel=True)
def global_avg_pool2d_backward(dy, in_h, in_w, nblocks):
    """Backward of global average pooling: dy (N, C) -> dx (N, C, in_h, in_w), each
    plane filled with dy / (in_h * in_w)."""
    n, c = dy.shape
    dx = np.empty((n, c, in_h, in_w), dtype=dy.dtype)
    dx_flat = dx.reshape(dx.size)
    planes = n * c
    nb = max(1, min(planes, nblocks))
    if nb == 1:
        _global_avg_unpool_planes(dy, dx_flat, in_h * in_w, *block_bounds(0, 1, planes))
    else:
        for t in prange(nb):
            _global_avg_unpool_planes(dy, dx_flat, in_h * in_w, *block_bounds(t, nb, planes))
    return dx


@njit(cache=True)
def _global_avg_1d_rows(x, y, i0, i1):
    steps, features = x.shape[1], x.shape[2]
    acc = np.empty(features, dtype=np.float64)
    # Accumulate whole time steps into a feature vector: the inner loop runs along
    # contiguous features and vectorizes, unlike a strided sum down each column.
    for i in range(i0, i1):
        for f in range(features):
            acc[f] = 0.0
        for t in range(steps):
            for f in range(features):
                acc[f] += x[i, t, f]
        inv = 1.0 / steps
        for f in range(features):
            y[i, f] = acc[f] * inv


@njit(cache=True, parallel=True)
def global_avg_pool1d_forward(x, nblocks):
    """Global average pooling over time: x (N, T, F) -> y (N, F), the mean over axis 1
    (summed in float64)."""
    n = x.shape[0]
    y = np.empty((n, x.shape[2]), dtype=x.dtype)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _global_avg_1d_rows(x, y, *block_bounds(0, 1, n))
    else:
        for t in prange(nb):
            _global_avg_1d_rows(x, y, *block_bounds(t, nb, n))
    return y


@njit(cache=True)
def _global_avg_1d_unpool_rows(dy, dx, i0, i1):
    steps, features = dx.shape[1], dx.shape[2]
    for i in range(i0, i1):
        for t in range(steps):
            for f in range(features):
                dx[i, t, f] = dy[i, f] / steps


@njit(cache=True, parallel=True)
def global_avg_pool1d_backward(dy, steps, nblocks):
    """Backward of global average pooling over time: dy (N, F) -> dx (N, steps, F),
    each time step receiving dy / steps."""
    n, features = dy.shape
    dx = np.empty((n, steps, features), dtype=dy.dtype)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _global_avg_1d_unpool_rows(dy, dx, *block_bounds(0, 1, n))
    else:
        for t in prange(nb):
            _global_avg_1d_unpool_rows(dy, dx, *block_bounds(t, nb, n))
    return dx
