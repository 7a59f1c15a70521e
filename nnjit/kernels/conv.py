"""2-D convolution kernels (NCHW): y = act(conv(x, w) + b) and its backward.

Shapes: x (N, C, H, W), w (F, C // groups, KH, KW), y (N, F, OH, OW), all C-contiguous.
Output pixel (oh, ow) of filter f reads input row ``oh * stride_h + i * dil_h - pad_top``
and column ``ow * stride_w + j * dil_w - pad_left`` for tap (i, j); rows and columns outside
the input read zero, so the bottom and right padding is whatever out_h and out_w imply.

Algorithms, chosen inside the kernels from the shapes alone:

- im2col + GEMM (the general path).  ``im2col`` lays one image out as a (C*KH*KW, OH*OW)
  matrix whose rows are ordered (channel, tap row, tap column); a group's channels are then a
  row block, so a grouped convolution is one GEMM per group on row blocks, and the GEMM result
  (F, OH*OW) is already the NCHW layout of the output.  When OH*OW is small the columns of a
  few images are placed side by side so that each GEMM has enough columns to run near peak.
- 1x1, stride 1, no padding: the image itself (C, H*W) is the column matrix (no copy).
- Direct loops when each output reads only a few inputs (C // groups * KH * KW small, as in
  the first layer of an image model, or depthwise convolution): a GEMM with an inner dimension
  of 9 spends its time packing, while the direct loop streams each input row once per tap.

Threads: the batch is split into ``nblocks`` blocks of images, one per prange iteration, each
with its own column buffer; BLAS runs single-threaded inside (see ``nnjit.runtime``).  The
weight gradient of each block goes to its own buffer (block 0 straight into dw) and the
buffers are summed once at the end.  ``nblocks == 1`` runs the serial path, no thread launch.
"""
import numpy as np
from numba import njit, prange

from .activations import GELU, LINEAR, RELU, SOFTMAX, SWISH, activation_grad_rows, activation_rows, block_bounds
from .blas import gemm

# At most this many multiply-adds per output (C // groups * KH * KW) take the direct forward
# loop instead of im2col + GEMM (perf/conv_shapes.py measures both).
DIRECT_MAX_TAPS = 16

# im2col places images side by side until a GEMM has about this many columns: below it
# OpenBLAS's packing of the weight matrix is paid for too few output columns.
GEMM_MIN_COLS = 256


@njit(cache=True)
def _out_range(offset, stride, size, out):
    """Outputs o in [o0, o1) of ``out`` with 0 <= o * stride + offset < size."""
    o0 = 0 if offset >= 0 else (stride - 1 - offset) // stride
    o1 = (size - offset + stride - 1) // stride
    o1 = max(0, min(o1, out))
    return min(o0, o1), o1


@njit(cache=True)
def im2col(x, n0, n1, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, cols):
    """Write the column matrix of images n0..n1 of x into ``cols``.

    x: (N, C, H, W).  cols: (C * kernel_h * kernel_w, (n1 - n0) * out_h * out_w), C-contiguous.
    Row ``(c * kernel_h + i) * kernel_w + j`` holds tap (i, j) of channel c; column
    ``(n - n0) * out_h * out_w + oh * out_w + ow`` holds output pixel (oh, ow) of image n:
    cols[row, col] = x[n, c, oh * stride_h + i * dil_h - pad_top, ow * stride_w + j * dil_w - pad_left],
    zero outside the image.  Then w.reshape(F, -1) @ cols is the convolution of those images,
    one (F, out_h * out_w) block of columns per image.
    """
    c_in = x.shape[1]
    h = x.shape[2]
    w = x.shape[3]
    p = out_h * out_w
    for n in range(n0, n1):
        base = (n - n0) * p
        for c in range(c_in):
            for i in range(kernel_h):
                off_h = i * dil_h - pad_top
                oh0, oh1 = _out_range(off_h, stride_h, h, out_h)
                for j in range(kernel_w):
                    row = cols[(c * kernel_h + i) * kernel_w + j]
                    off_w = j * dil_w - pad_left
                    ow0, ow1 = _out_range(off_w, stride_w, w, out_w)
                    for q in range(base, base + oh0 * out_w):
                        row[q] = 0.0
                    for oh in range(oh0, oh1):
                        src = x[n, c, oh * stride_h + off_h]
                        d = base + oh * out_w
                        for ow in range(ow0):
                            row[d + ow] = 0.0
                        if stride_w == 1:
                            for ow in range(ow0, ow1):
                                row[d + ow] = src[ow + off_w]
                        else:
                            for ow in range(ow0, ow1):
                                row[d + ow] = src[ow * stride_w + off_w]
                        for ow in range(ow1, out_w):
                            row[d + ow] = 0.0
                    for q in range(base + oh1 * out_w, base + p):
                        row[q] = 0.0


@njit(cache=True)
def col2im(cols, n0, n1, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, dx):
    """Add the column-matrix gradient ``cols`` of images n0..n1 into dx (the adjoint of im2col).

    cols: (C * kernel_h * kernel_w, (n1 - n0) * out_h * out_w) in the layout of ``im2col``;
    dx: (N, C, H, W), accumulated into (+=), entries that fall in the padding are dropped.
    """
    c_in = dx.shape[1]
    h = dx.shape[2]
    w = dx.shape[3]
    p = out_h * out_w
    for n in range(n0, n1):
        base = (n - n0) * p
        for c in range(c_in):
            for i in range(kernel_h):
                off_h = i * dil_h - pad_top
                oh0, oh1 = _out_range(off_h, stride_h, h, out_h)
                for j in range(kernel_w):
                    row = cols[(c * kernel_h + i) * kernel_w + j]
                    off_w = j * dil_w - pad_left
                    ow0, ow1 = _out_range(off_w, stride_w, w, out_w)
                    for oh in range(oh0, oh1):
                        dst = dx[n, c, oh * stride_h + off_h]
                        d = base + oh * out_w
                        if stride_w == 1:
                            for ow in range(ow0, ow1):
                                dst[ow + off_w] += row[d + ow]
                        else:
                            for ow in range(ow0, ow1):
                                dst[ow * stride_w + off_w] += row[d + ow]


@njit(cache=True)
def _softmax_channels(z, y):
    """y = softmax of z over its rows (the channel axis of one image), z, y: (F, P)."""
    f_, p = z.shape
    m = z[0].copy()
    for f in range(1, f_):
        for q in range(p):
            if z[f, q] > m[q]:
                m[q] = z[f, q]
    s = np.zeros_like(m)
    for f in range(f_):
        for q in range(p):
            e = np.exp(z[f, q] - m[q])
            y[f, q] = e
            s[q] += e
    for q in range(p):
        s[q] = 1.0 / s[q]
    for f in range(f_):
        for q in range(p):
            y[f, q] *= s[q]


@njit(cache=True)
def _store_rows(acc, col0, pitch, out_h, out_w, bias, code, y3, z3, n):
    """y3[n] = act(acc + bias), and z3[n] = acc + bias when z3 keeps the pre-activation.

    acc: (F, *) with output row oh of filter f at acc[f, col0 + oh * pitch : + out_w].
    acc may be y3[n] itself (col0 = 0, pitch = out_w): each element is read before it is written.
    """
    f_ = y3.shape[1]
    keep_z = z3.shape[0] > 0
    for f in range(f_):
        bv = bias[f]
        for oh in range(out_h):
            s = col0 + oh * pitch
            d = oh * out_w
            if keep_z:
                for ow in range(out_w):
                    z3[n, f, d + ow] = acc[f, s + ow] + bv
            elif code == RELU:
                # relu fused into the copy: one pass over the output instead of two
                for ow in range(out_w):
                    v = acc[f, s + ow] + bv
                    y3[n, f, d + ow] = v if v > 0 else 0.0
            else:
                for ow in range(out_w):
                    y3[n, f, d + ow] = acc[f, s + ow] + bv
    if keep_z:
        activation_rows(z3[n], y3[n], code, 0, f_)
    elif code == SOFTMAX:
        _softmax_channels(y3[n], y3[n])
    elif code != LINEAR and code != RELU:
        activation_rows(y3[n], y3[n], code, 0, f_)


@njit(cache=True)
def _is_pointwise(x, w, stride_h, stride_w, pad_top, pad_left, out_h, out_w):
    return (w.shape[2] == 1 and w.shape[3] == 1 and stride_h == 1 and stride_w == 1 and pad_top == 0
            and pad_left == 0 and out_h == x.shape[2] and out_w == x.shape[3])


@njit(cache=True)
def _images_per_chunk(p, pointwise):
    if pointwise:
        return 1
    return max(1, (GEMM_MIN_COLS + p - 1) // p)


@njit(cache=True)
def _forward_gemm(x, w, bias, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups, code,
                  y3, z3, i0, i1):
    c_in = x.shape[1]
    f_, cg, kh, kw = w.shape
    fg = f_ // groups
    cgk = cg * kh * kw
    rows = c_in * kh * kw
    p = out_h * out_w
    w2 = w.reshape((f_, cgk))
    x3 = x.reshape((x.shape[0], c_in, x.shape[2] * x.shape[3]))
    pointwise = _is_pointwise(x, w, stride_h, stride_w, pad_top, pad_left, out_h, out_w)
    nimg = _images_per_chunk(p, pointwise)
    cols_buf = np.empty(0 if pointwise else rows * nimg * p, dtype=x.dtype)
    out_buf = np.empty(f_ * nimg * p if nimg > 1 else 0, dtype=x.dtype)
    for s in range(i0, i1, nimg):
        e = min(s + nimg, i1)
        m = e - s
        if pointwise:
            cols = x3[s]
        else:
            cols = cols_buf[:rows * m * p].reshape((rows, m * p))
            im2col(x, s, e, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, cols)
        # One image: the GEMM writes straight into y.  Several: into a buffer whose column
        # blocks are then copied (with bias and activation) into each image's output.
        if m == 1:
            acc = y3[s]
        else:
            acc = out_buf[:f_ * m * p].reshape((f_, m * p))
        for g in range(groups):
            gemm(w2[g * fg:(g + 1) * fg], cols[g * cgk:(g + 1) * cgk], acc[g * fg:(g + 1) * fg])
        for k in range(m):
            _store_rows(acc, k * p, out_w, out_h, out_w, bias, code, y3, z3, s + k)


@njit(cache=True)
def _pad_image(x, n, pad_top, pad_left, xp, hp, wp):
    """Copy image n into the interior of xp (C, hp * wp); the border was zeroed once and the
    interior is the same region for every image, so it stays zero."""
    h = x.shape[2]
    w = x.shape[3]
    r0 = max(0, pad_top)
    r1 = min(hp, pad_top + h)
    q0 = max(0, pad_left)
    q1 = min(wp, pad_left + w)
    for c in range(x.shape[1]):
        for r in range(r0, r1):
            src = x[n, c, r - pad_top]
            d = r * wp
            for q in range(q0, q1):
                xp[c, d + q] = src[q - pad_left]


@njit(cache=True)
def _forward_direct(x, w, bias, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups, code,
                    y3, z3, i0, i1):
    c_in = x.shape[1]
    f_, cg, kh, kw = w.shape
    fg = f_ // groups
    hp = (out_h - 1) * stride_h + (kh - 1) * dil_h + 1
    wp = (out_w - 1) * stride_w + (kw - 1) * dil_w + 1
    # Stride 1: output row oh starts at oh * wp in a "wide" accumulator with the padded
    # image's row width, so that each tap is one contiguous loop over the whole image
    # (shifted by the tap's offset); the wp - out_w extra columns per row are discarded.
    flat = stride_h == 1 and stride_w == 1
    pitch = wp if flat else out_w
    span = (out_h - 1) * wp + out_w if flat else out_h * out_w
    xp = np.zeros((c_in, hp * wp), dtype=x.dtype)
    acc = np.empty((f_, out_h * pitch), dtype=x.dtype)
    for n in range(i0, i1):
        _pad_image(x, n, pad_top, pad_left, xp, hp, wp)
        for f in range(f_):
            a = acc[f]
            for q in range(span):
                a[q] = 0.0
            g = f // fg
            for cc in range(cg):
                src = xp[g * cg + cc]
                for i in range(kh):
                    for j in range(kw):
                        wv = w[f, cc, i, j]
                        if flat:
                            off = i * dil_h * wp + j * dil_w
                            for q in range(span):
                                a[q] += wv * src[off + q]
                        else:
                            for oh in range(out_h):
                                off = (oh * stride_h + i * dil_h) * wp + j * dil_w
                                d = oh * out_w
                                for ow in range(out_w):
                                    a[d + ow] += wv * src[off + ow * stride_w]
        _store_rows(acc, 0, pitch, out_h, out_w, bias, code, y3, z3, n)


@njit(cache=True)
def _use_direct(w):
    return w.shape[1] * w.shape[2] * w.shape[3] <= DIRECT_MAX_TAPS or w.shape[1] == 1


@njit(cache=True, parallel=True)
def conv2d_forward(x, w, b, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups, code,
                   nblocks):
    """Forward pass of a 2-D convolution with fused bias and activation.

    x: (N, C, H, W) C-contiguous; w: (F, C // groups, KH, KW) C-contiguous; b: (F,) or (0,)
    for no bias.  pad_top, pad_left: zero rows/columns before the input; out_h, out_w: output
    size (the bottom/right padding they imply reads zero).  dil_h, dil_w: dilation; groups
    divides C and F; code: activation code (softmax is over the channel axis); nblocks: number
    of parallel blocks of images (1: serial).
    Returns (y, z): y = act(conv(x, w) + b) of shape (N, F, out_h, out_w); z is the
    pre-activation of the same shape when backward needs it (gelu, swish), else an empty
    (0, F, out_h, out_w) array.
    """
    n = x.shape[0]
    f_ = w.shape[0]
    p = out_h * out_w
    keep_z = code == GELU or code == SWISH
    y3 = np.empty((n, f_, p), dtype=x.dtype)
    z3 = np.empty((n if keep_z else 0, f_, p), dtype=x.dtype)
    bias = np.zeros(f_, dtype=x.dtype)
    if b.shape[0] > 0:
        bias[:] = b
    direct = _use_direct(w)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        if direct:
            _forward_direct(x, w, bias, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups,
                            code, y3, z3, *block_bounds(0, 1, n))
        else:
            _forward_gemm(x, w, bias, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups,
                          code, y3, z3, *block_bounds(0, 1, n))
    else:
        for t in prange(nb):
            i0, i1 = block_bounds(t, nb, n)
            if direct:
                _forward_direct(x, w, bias, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w,
                                groups, code, y3, z3, i0, i1)
            else:
                _forward_gemm(x, w, bias, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w,
                              groups, code, y3, z3, i0, i1)
    return y3.reshape((n, f_, out_h, out_w)), z3.reshape((z3.shape[0], f_, out_h, out_w))


@njit(cache=True)
def _activation_grad_image(dy3, y3, z3, code, n, dz, col0, scratch):
    """dz[:, col0:col0 + P] = act'(.) * dy3[n] for image n (scratch: (F, P), may be dz itself
    when col0 == 0 and dz has P columns)."""
    f_ = dy3.shape[1]
    p = dy3.shape[2]
    if code == LINEAR:
        for f in range(f_):
            for q in range(p):
                dz[f, col0 + q] = dy3[n, f, q]
    elif code == RELU:
        for f in range(f_):
            for q in range(p):
                dz[f, col0 + q] = dy3[n, f, q] if y3[n, f, q] > 0 else 0.0
    elif code == SOFTMAX:
        # softmax over channels: dz = y * (dy - sum_f dy * y), the sum taken per pixel
        dot = np.zeros(p, dtype=dz.dtype)
        for f in range(f_):
            for q in range(p):
                dot[q] += dy3[n, f, q] * y3[n, f, q]
        for f in range(f_):
            for q in range(p):
                dz[f, col0 + q] = y3[n, f, q] * (dy3[n, f, q] - dot[q])
    else:
        zn = z3[n] if z3.shape[0] > 0 else y3[n]
        activation_grad_rows(dy3[n], y3[n], zn, code, scratch, 0, f_)
        if scratch is not dz:
            for f in range(f_):
                for q in range(p):
                    dz[f, col0 + q] = scratch[f, q]



@njit(cache=True)
def _backward_gemm(dy3, x, w, y3, z3, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups,
                   code, need_dx, need_dw, dx, dwt, dbt, i0, i1):
    """Backward of images i0..i1: overwrites their dx, adds their weight and bias gradients
    into dwt (F, C // groups * KH * KW) and dbt (F,) or (0,)."""
    c_in = x.shape[1]
    f_, cg, kh, kw = w.shape
    fg = f_ // groups
    cgk = cg * kh * kw
    rows = c_in * kh * kw
    p = out_h * out_w
    w2 = w.reshape((f_, cgk))
    x3 = x.reshape((x.shape[0], c_in, x.shape[2] * x.shape[3]))
    dx3 = dx.reshape((dx.shape[0], c_in, dx.shape[2] * dx.shape[3]))
    pointwise = _is_pointwise(x, w, stride_h, stride_w, pad_top, pad_left, out_h, out_w)
    nimg = _images_per_chunk(p, pointwise)
    cols_buf = np.empty(0 if pointwise else rows * nimg * p, dtype=x.dtype)
    dz_buf = np.empty(f_ * nimg * p, dtype=x.dtype)
    generic = code != LINEAR and code != RELU and code != SOFTMAX
    scratch = np.empty((f_ if generic and nimg > 1 else 0, p), dtype=x.dtype)
    # Bias gradient: per-pixel partial sums, vectorized across pixels, reduced over pixels
    # once at the end (a running scalar sum per filter would be one dependent add per element).
    has_db = need_dw and dbt.shape[0] > 0
    db_acc = np.zeros((f_ if has_db else 0, p), dtype=x.dtype)
    for s in range(i0, i1, nimg):
        e = min(s + nimg, i1)
        m = e - s
        if m == 1 and code == LINEAR:
            dz = dy3[s]
        else:
            dz = dz_buf[:f_ * m * p].reshape((f_, m * p))
            for k in range(m):
                _activation_grad_image(dy3, y3, z3, code, s + k, dz, k * p, dz if m == 1 else scratch)
        if has_db:
            for k in range(m):
                for f in range(f_):
                    for q in range(p):
                        db_acc[f, q] += dz[f, k * p + q]
        if need_dw:
            if pointwise:
                cols = x3[s]
            else:
                cols = cols_buf[:rows * m * p].reshape((rows, m * p))
                im2col(x, s, e, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, cols)
            for g in range(groups):
                gemm(dz[g * fg:(g + 1) * fg], cols[g * cgk:(g + 1) * cgk], dwt[g * fg:(g + 1) * fg],
                     False, True, 1.0, 1.0)
        if need_dx:
            # The column buffer is free again once dw is done: reuse it for the column gradient.
            if pointwise:
                dcols = dx3[s]
            else:
                dcols = cols_buf[:rows * m * p].reshape((rows, m * p))
            for g in range(groups):
                gemm(w2[g * fg:(g + 1) * fg], dz[g * fg:(g + 1) * fg], dcols[g * cgk:(g + 1) * cgk], True, False)
            if not pointwise:
                for k in range(s, e):
                    dx3[k] = 0.0
                col2im(dcols, s, e, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, dx)
    if has_db:
        for f in range(f_):
            t = 0.0
            for q in range(p):
                t += db_acc[f, q]
            dbt[f] += t


@njit(cache=True, parallel=True)
def conv2d_backward(dy, x, w, y, z, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, groups, code, dw, db,
                    need_dx, need_dw, nblocks):
    """Backward pass of a 2-D convolution.

    dy: (N, F, OH, OW) gradient of the output, C-contiguous; x, w, y, z and the geometry as in
    and out of ``conv2d_forward`` (OH, OW are read from dy).  The activation gradient is applied
    first.  Unless ``need_dw`` is False (a frozen layer), accumulates (+=) the weight gradient
    into dw (F, C // groups, KH, KW) and the bias gradient into db (F,) (a (0,) array when
    there is no bias).  Returns dx (N, C, H, W), or an empty (0, C, H, W) array when
    ``need_dx`` is False (the first layer of a model).
    """
    n, c_in, h, wd = x.shape
    f_, cg, kh, kw = w.shape
    out_h = dy.shape[2]
    out_w = dy.shape[3]
    p = out_h * out_w
    dy3 = dy.reshape((n, f_, p))
    y3 = y.reshape((y.shape[0], f_, p))
    z3 = z.reshape((z.shape[0], f_, p))
    dx = np.empty((n if need_dx else 0, c_in, h, wd), dtype=dy.dtype)
    dw2 = dw.reshape((f_, cg * kh * kw))
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _backward_gemm(dy3, x, w, y3, z3, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups,
                       code, need_dx, need_dw, dx, dw2, db, *block_bounds(0, 1, n))
    else:
        # Block 0 accumulates straight into dw and db, the others into their own buffers.
        dw_part = np.zeros((nb - 1, f_ if need_dw else 0, cg * kh * kw), dtype=dy.dtype)
        db_part = np.zeros((nb - 1, db.shape[0] if need_dw else 0), dtype=dy.dtype)
        for t in prange(nb):
            i0, i1 = block_bounds(t, nb, n)
            if t == 0:
                _backward_gemm(dy3, x, w, y3, z3, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w,
                               groups, code, need_dx, need_dw, dx, dw2, db, i0, i1)
            else:
                _backward_gemm(dy3, x, w, y3, z3, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w,
                               groups, code, need_dx, need_dw, dx, dw_part[t - 1], db_part[t - 1], i0, i1)
        if need_dw:
            for t in range(nb - 1):
                for f in range(f_):
                    for k in range(dw2.shape[1]):
                        dw2[f, k] += dw_part[t, f, k]
                for f in range(db_part.shape[1]):
                    db[f] += db_part[t, f]
    return dx
