"""2-D convolution kernels (NCHW): y = act(conv(x, w) + b) and its backward.

Shapes: x (N, C, H, W), w (F, C // groups, KH, KW), y (N, F, OH, OW), all C-contiguous.
Output pixel (oh, ow) of filter f reads input row ``oh * stride_h + i * dil_h - pad_top``
and column ``ow * stride_w + j * dil_w - pad_left`` for tap (i, j); rows and columns outside
the input read zero, so the bottom and right padding is whatever out_h and out_w imply.

Algorithms, chosen inside the kernels from the shapes alone (perf/conv_shapes.py times them
against PyTorch on the reference workloads' shapes):

- Winograd F(2x2, 3x3) for 3x3 stride-1 ungrouped convolutions with at least 8 input and
  output channels (and for their input gradient from 32 input channels): 16 GEMMs on
  transformed 4x4 tiles, 2.25x fewer multiply-adds than im2col.
- Direct loops when each output reads only a few inputs (C // groups * KH * KW <= 32, as in
  the first layer of an image model, or one channel per group, depthwise): a GEMM with an
  inner dimension of 9 or 27 spends its time packing, while the direct loop streams each
  input row once per tap.  Their backward stays on GEMMs: for the weight gradient, a GEMM
  over all pixels beats direct dot products, which do not vectorize without reassociation.
- im2col + GEMM otherwise.  ``im2col`` lays one image out as a (C*KH*KW, OH*OW) matrix whose
  rows are ordered (channel, tap row, tap column); a group's channels are then a row block,
  so a grouped convolution is one GEMM per group on row blocks, and the GEMM result
  (F, OH*OW) is already the NCHW layout of the output.  When OH*OW is small the columns of a
  few images are placed side by side.  A 1x1 stride-1 unpadded convolution uses the image
  itself (C, H*W) as the column matrix.  The weight gradient is a GEMM on the same columns
  (recomputed in backward, never stored for the batch), the input gradient a GEMM into
  columns followed by ``col2im``.

Threads: the batch is split into ``nblocks`` blocks of images, one per prange iteration, each
with its own buffers; BLAS runs single-threaded inside (see ``nnjit.runtime``).  The weight
gradient of each block goes to its own buffer (block 0 straight into dw when the orientation
allows) and the buffers are summed once at the end.  ``nblocks == 1`` runs the serial path,
which launches no threads.
"""
import numpy as np
from numba import njit, prange, uint64

from .activations import GELU, LINEAR, RELU, SOFTMAX, SWISH, activation_grad_rows, activation_rows, block_bounds
from .blas import gemm

# At most this many multiply-adds per output (C // groups * KH * KW) take the direct forward
# loop instead of im2col + GEMM (perf/conv_shapes.py measures both).
DIRECT_MAX_TAPS = 32

# im2col places images side by side until a GEMM has about this many columns: below it
# OpenBLAS's packing of the weight matrix is paid for too few output columns.
GEMM_MIN_COLS = 256

# Winograd for 3x3 stride-1 convolutions with at least this many input and output channels
# (fewer make its 16 GEMMs, of inner dimension C, too thin), and for their input gradient
# when the layer has at least WINOGRAD_MIN_GRAD_CHANNELS input channels (the gradient's
# GEMMs have C rows; with fewer, im2col's single GEMM of C * 9 rows is faster), on chunks of
# images with at least WINOGRAD_MIN_TILES 2x2 tiles in all (perf/conv_shapes.py measures).
WINOGRAD_MIN_CHANNELS = 8
WINOGRAD_MIN_GRAD_CHANNELS = 32
WINOGRAD_MIN_TILES = 128


@njit(cache=True)
def _padded_size(out, kernel, stride, dil):
    """Rows (or columns) of the zero-padded input that outputs 0..out-1 read."""
    return (out - 1) * stride + (kernel - 1) * dil + 1


# Inner loops below index either 1-D views from 0 (a row sliced at its offset) or with
# unsigned offsets, never a signed ``offset + q``: Numba wraps negative signed indices, and
# only an index that LLVM can prove non-negative leaves a loop it can vectorize.  Unsigned
# offsets also avoid creating a view per short row, which costs more than copying the row.


@njit(cache=True)
def _pad_planes(src, col0, h, w, pad_top, pad_left, xp, hp, wp):
    """Copy the (h, w) planes src[c, col0:col0 + h * w] into the interior of xp (C, hp * wp),
    shifted by (pad_top, pad_left), which may be negative (leading rows and columns dropped).
    The border is zeroed when xp is allocated and the interior is the same region for every
    image, so it stays zero."""
    r0 = max(0, pad_top)
    r1 = min(hp, pad_top + h)
    q0 = max(0, pad_left)
    q1 = max(q0, min(wp, pad_left + w))
    for c in range(xp.shape[0]):
        for r in range(r0, r1):
            s = src[c, col0 + (r - pad_top) * w + q0 - pad_left:]
            dst = xp[c, r * wp + q0:]
            for q in range(q1 - q0):
                dst[q] = s[q]


@njit(cache=True)
def _crop_image(dxp, pad_top, pad_left, hp, wp, dx, n):
    """dx[n] = the interior of the padded gradient dxp (C, hp * wp); input rows and columns
    that no output reads (beyond hp, wp) get zero."""
    h = dx.shape[2]
    w = dx.shape[3]
    q0 = max(0, -pad_left)
    q1 = max(q0, min(w, wp - pad_left))
    for c in range(dx.shape[1]):
        for r in range(h):
            dst = dx[n, c, r]
            rr = r + pad_top
            if rr < 0 or rr >= hp:
                for q in range(w):
                    dst[q] = 0.0
                continue
            src = dxp[c, rr * wp + q0 + pad_left:rr * wp + q1 + pad_left]
            for q in range(q0):
                dst[q] = 0.0
            part = dst[q0:q1]
            for q in range(q1 - q0):
                part[q] = src[q]
            for q in range(q1, w):
                dst[q] = 0.0


@njit(cache=True)
def _im2col_image(xp, wp, kernel_h, kernel_w, stride_h, stride_w, dil_h, dil_w, out_h, out_w, cols, col0):
    """Columns col0 .. col0 + out_h * out_w of cols from one zero-padded image xp (C, hp * wp).

    Rows are short (out_w elements) and there are C * KH * KW * out_h of them, so the per-row
    cost dominates: unsigned indices (no negative-index wrapping, no view per row) keep it low.
    """
    ow = uint64(out_w)
    sw = uint64(stride_w)
    for c in range(xp.shape[0]):
        src = xp[c]
        for i in range(kernel_h):
            for j in range(kernel_w):
                row = cols[(c * kernel_h + i) * kernel_w + j]
                for oh in range(out_h):
                    s = uint64((oh * stride_h + i * dil_h) * wp + j * dil_w)
                    d = uint64(col0 + oh * out_w)
                    if stride_w == 1:
                        for q in range(ow):
                            row[d + q] = src[s + q]
                    else:
                        for q in range(ow):
                            row[d + q] = src[s + q * sw]


@njit(cache=True)
def _col2im_image(cols, col0, kernel_h, kernel_w, stride_h, stride_w, dil_h, dil_w, out_h, out_w, dxp, wp):
    """Add columns col0 .. col0 + out_h * out_w of cols into the padded image gradient dxp."""
    ow = uint64(out_w)
    sw = uint64(stride_w)
    for c in range(dxp.shape[0]):
        dst = dxp[c]
        for i in range(kernel_h):
            for j in range(kernel_w):
                row = cols[(c * kernel_h + i) * kernel_w + j]
                for oh in range(out_h):
                    d = uint64((oh * stride_h + i * dil_h) * wp + j * dil_w)
                    s = uint64(col0 + oh * out_w)
                    if stride_w == 1:
                        for q in range(ow):
                            dst[d + q] += row[s + q]
                    else:
                        for q in range(ow):
                            dst[d + q * sw] += row[s + q]


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
    hp = _padded_size(out_h, kernel_h, stride_h, dil_h)
    wp = _padded_size(out_w, kernel_w, stride_w, dil_w)
    xp = np.zeros((x.shape[1], hp * wp), dtype=x.dtype)
    x3 = x.reshape((x.shape[0], x.shape[1], x.shape[2] * x.shape[3]))
    p = out_h * out_w
    for n in range(n0, n1):
        _pad_planes(x3[n], 0, x.shape[2], x.shape[3], pad_top, pad_left, xp, hp, wp)
        _im2col_image(xp, wp, kernel_h, kernel_w, stride_h, stride_w, dil_h, dil_w, out_h, out_w, cols, (n - n0) * p)


@njit(cache=True)
def col2im(cols, n0, n1, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, dx):
    """Add the column-matrix gradient ``cols`` of images n0..n1 into dx (the adjoint of im2col).

    cols: (C * kernel_h * kernel_w, (n1 - n0) * out_h * out_w) in the layout of ``im2col``;
    dx: (N, C, H, W), accumulated into (+=); entries that fall in the padding are dropped.
    """
    hp = _padded_size(out_h, kernel_h, stride_h, dil_h)
    wp = _padded_size(out_w, kernel_w, stride_w, dil_w)
    dxp = np.empty((dx.shape[1], hp * wp), dtype=dx.dtype)
    part = np.empty((n1 - n0, dx.shape[1], dx.shape[2], dx.shape[3]), dtype=dx.dtype)
    p = out_h * out_w
    for n in range(n0, n1):
        dxp[:] = 0.0
        _col2im_image(cols, (n - n0) * p, kernel_h, kernel_w, stride_h, stride_w, dil_h, dil_w, out_h, out_w, dxp, wp)
        _crop_image(dxp, pad_top, pad_left, hp, wp, part, n - n0)
        dx[n] += part[n - n0]


@njit(cache=True)
def _softmax_channels(z, y):
    """y = softmax of z over its rows (the channel axis of one image); z, y: (F, P), may be one array."""
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


@njit(cache=True, inline="always")
def _bias_row(src, dst, bv, relu, n):
    if relu:
        # relu fused into the copy: one pass over the output instead of two
        for q in range(n):
            v = src[q] + bv
            dst[q] = 0.0 if v <= 0 else v  # NaN stays NaN
    else:
        for q in range(n):
            dst[q] = src[q] + bv


@njit(cache=True)
def _store_filter(arow, pitch, out_h, out_w, bias, code, y3, z3, n, f):
    """Output f of image n from arow, whose output row oh starts at arow[oh * pitch]: z3[n, f]
    = arow + bias when z3 keeps the pre-activation, else y3[n, f] = arow + bias (relu fused).
    Other activations follow for the whole image in ``_activate_image``."""
    keep_z = z3.shape[0] > 0
    dst = z3[n, f] if keep_z else y3[n, f]
    relu = code == RELU and not keep_z
    # Compact rows (pitch == out_w) are one row of out_h * out_w: one loop for both layouts.
    rows = 1 if pitch == out_w else out_h
    width = out_h * out_w if pitch == out_w else out_w
    for oh in range(rows):
        _bias_row(arow[oh * pitch:], dst[oh * out_w:], bias[f], relu, width)


@njit(cache=True)
def _activate_image(code, y3, z3, n):
    if z3.shape[0] > 0:
        activation_rows(z3[n], y3[n], code, 0, y3.shape[1])
    elif code == SOFTMAX:
        _softmax_channels(y3[n], y3[n])
    elif code != LINEAR and code != RELU:
        activation_rows(y3[n], y3[n], code, 0, y3.shape[1])


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
    hp = _padded_size(out_h, kh, stride_h, dil_h)
    wp = _padded_size(out_w, kw, stride_w, dil_w)
    xp = np.zeros((0 if pointwise else c_in, hp * wp), dtype=x.dtype)
    cols_buf = np.empty(0 if pointwise else rows * nimg * p, dtype=x.dtype)
    out_buf = np.empty(f_ * nimg * p if nimg > 1 else 0, dtype=x.dtype)
    for s in range(i0, i1, nimg):
        e = min(s + nimg, i1)
        m = e - s
        if pointwise:
            cols = x3[s]
        else:
            cols = cols_buf[:rows * m * p].reshape((rows, m * p))
            for k in range(m):
                _pad_planes(x3[s + k], 0, x.shape[2], x.shape[3], pad_top, pad_left, xp, hp, wp)
                _im2col_image(xp, wp, kh, kw, stride_h, stride_w, dil_h, dil_w, out_h, out_w, cols, k * p)
        # One image: the GEMM writes straight into y.  Several: into a buffer whose column
        # blocks are then copied (with bias and activation) into each image's output.
        if m == 1:
            acc = y3[s]
        else:
            acc = out_buf[:f_ * m * p].reshape((f_, m * p))
        for g in range(groups):
            gemm(w2[g * fg:(g + 1) * fg], cols[g * cgk:(g + 1) * cgk], acc[g * fg:(g + 1) * fg])
        for k in range(m):
            for f in range(f_):
                _store_filter(acc[f, k * p:], out_w, out_h, out_w, bias, code, y3, z3, s + k, f)
            _activate_image(code, y3, z3, s + k)


@njit(cache=True)
def _direct_taps_3x3(xp, w, f, c0, wp, dil_h, dil_w, span, acc):
    """acc[:span] = sum over the group's channels and the nine taps of a 3x3 kernel (stride 1,
    wide rows): one pass per channel, nine loads and one store per output instead of a
    load and store of acc per tap."""
    for cc in range(w.shape[1]):
        src = xp[c0 + cc]
        r1 = dil_h * wp
        r2 = 2 * dil_h * wp
        s00 = src[0:]
        s01 = src[dil_w:]
        s02 = src[2 * dil_w:]
        s10 = src[r1:]
        s11 = src[r1 + dil_w:]
        s12 = src[r1 + 2 * dil_w:]
        s20 = src[r2:]
        s21 = src[r2 + dil_w:]
        s22 = src[r2 + 2 * dil_w:]
        w00 = w[f, cc, 0, 0]
        w01 = w[f, cc, 0, 1]
        w02 = w[f, cc, 0, 2]
        w10 = w[f, cc, 1, 0]
        w11 = w[f, cc, 1, 1]
        w12 = w[f, cc, 1, 2]
        w20 = w[f, cc, 2, 0]
        w21 = w[f, cc, 2, 1]
        w22 = w[f, cc, 2, 2]
        if cc == 0:
            for q in range(span):
                acc[q] = (w00 * s00[q] + w01 * s01[q] + w02 * s02[q] + w10 * s10[q] + w11 * s11[q]
                          + w12 * s12[q] + w20 * s20[q] + w21 * s21[q] + w22 * s22[q])
        else:
            for q in range(span):
                acc[q] += (w00 * s00[q] + w01 * s01[q] + w02 * s02[q] + w10 * s10[q] + w11 * s11[q]
                           + w12 * s12[q] + w20 * s20[q] + w21 * s21[q] + w22 * s22[q])


@njit(cache=True)
def _direct_taps(xp, w, f, c0, stride_h, stride_w, dil_h, dil_w, out_h, out_w, wp, flat, span, acc):
    """acc = the sum over the group's channels and all taps for filter f (any kernel size)."""
    kh = w.shape[2]
    kw = w.shape[3]
    for q in range(span):
        acc[q] = 0.0
    for cc in range(w.shape[1]):
        src = xp[c0 + cc]
        for i in range(kh):
            if flat:
                # Three taps of a row per pass: one load and store of acc per three
                # multiply-adds instead of per one.
                j = 0
                while j + 3 <= kw:
                    w0 = w[f, cc, i, j]
                    w1 = w[f, cc, i, j + 1]
                    w2 = w[f, cc, i, j + 2]
                    s0 = src[i * dil_h * wp + j * dil_w:]
                    s1 = src[i * dil_h * wp + (j + 1) * dil_w:]
                    s2 = src[i * dil_h * wp + (j + 2) * dil_w:]
                    for q in range(span):
                        acc[q] += w0 * s0[q] + w1 * s1[q] + w2 * s2[q]
                    j += 3
                while j < kw:
                    w0 = w[f, cc, i, j]
                    s0 = src[i * dil_h * wp + j * dil_w:]
                    for q in range(span):
                        acc[q] += w0 * s0[q]
                    j += 1
            else:
                for j in range(kw):
                    w0 = w[f, cc, i, j]
                    for oh in range(out_h):
                        s0 = src[(oh * stride_h + i * dil_h) * wp + j * dil_w:]
                        a = acc[oh * out_w:]
                        for q in range(out_w):
                            a[q] += w0 * s0[q * stride_w]


@njit(cache=True)
def _forward_direct(x, w, bias, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups, code,
                    y3, z3, i0, i1):
    c_in = x.shape[1]
    f_, cg, kh, kw = w.shape
    fg = f_ // groups
    hp = _padded_size(out_h, kh, stride_h, dil_h)
    wp = _padded_size(out_w, kw, stride_w, dil_w)
    # Stride 1: output row oh starts at oh * wp in a "wide" accumulator with the padded
    # image's row width, so that each tap is one contiguous loop over the whole image
    # (shifted by the tap's offset); the wp - out_w extra columns per row are discarded.
    flat = stride_h == 1 and stride_w == 1
    pitch = wp if flat else out_w
    span = (out_h - 1) * wp + out_w if flat else out_h * out_w
    xp = np.zeros((c_in, hp * wp), dtype=x.dtype)
    x3 = x.reshape((x.shape[0], c_in, x.shape[2] * x.shape[3]))
    acc = np.empty(span, dtype=x.dtype)
    for n in range(i0, i1):
        _pad_planes(x3[n], 0, x.shape[2], x.shape[3], pad_top, pad_left, xp, hp, wp)
        for f in range(f_):
            c0 = (f // fg) * cg
            if flat and kh == 3 and kw == 3:
                _direct_taps_3x3(xp, w, f, c0, wp, dil_h, dil_w, span, acc)
            else:
                _direct_taps(xp, w, f, c0, stride_h, stride_w, dil_h, dil_w, out_h, out_w, wp, flat, span, acc)
            _store_filter(acc, pitch, out_h, out_w, bias, code, y3, z3, n, f)
        _activate_image(code, y3, z3, n)


# ---------------------------------------------------------------- Winograd F(2x2, 3x3)
#
# A 3x3 stride-1 convolution computed on 2x2 output tiles: each 4x4 input tile d and each
# filter g are transformed (V = B^T d B, U = G g G^T, additions only), the 16 transformed
# positions t are 16 independent GEMMs M[t] = U[t] @ V[t] over (filters x channels) @
# (channels x tiles), and Y = A^T M A gives the 2x2 outputs (Lavin and Gray, 2016).  That is
# 16 multiply-adds per tile per channel pair instead of 36: the GEMMs are 2.25x smaller than
# im2col's, for transforms that are a few additions per element.  The rounding error grows by
# about 2x over a direct sum (1e-6 relative in float32).


@njit(cache=True)
def _use_winograd(w, stride_h, stride_w, dil_h, dil_w, groups, input_grad):
    """Winograd for 3x3, stride 1, no dilation, ungrouped, with enough channels for its 16
    GEMMs to beat im2col's one (the input gradient's need more input channels)."""
    channels = WINOGRAD_MIN_GRAD_CHANNELS if input_grad else WINOGRAD_MIN_CHANNELS
    return (w.shape[2] == 3 and w.shape[3] == 3 and stride_h == 1 and stride_w == 1 and dil_h == 1 and dil_w == 1
            and groups == 1 and min(w.shape[0], w.shape[1]) >= WINOGRAD_MIN_CHANNELS and w.shape[1] >= channels)


@njit(cache=True, inline="always")
def _g_transform(a, b, c):
    """G @ (a, b, c) for Winograd F(2, 3): G = [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]."""
    return a, 0.5 * (a + b + c), 0.5 * (a - b + c), c


@njit(cache=True)
def _winograd_weights(w, flip):
    """U = G g G^T of every filter w[f, c] (3x3) in u[:, :F, :C] of a (16, F + 1, C) array;
    with ``flip`` the transform of the kernel the input gradient needs instead, u[:, :C, :F]
    of (16, C + 1, F) from w[f, c] rotated by 180 degrees.  The unused last row keeps the 16
    planes off power-of-two strides (128 x 64 filters would map all 16 to one cache set)."""
    f_, c_ = w.shape[0], w.shape[1]
    rows, cols = (c_, f_) if flip else (f_, c_)
    u = np.zeros((16, rows + 1, cols), dtype=w.dtype)
    # Row-major over u's (rows, cols) so that each of its 16 planes is written in order.
    for r in range(rows):
        for s in range(cols):
            g = w[s, r] if flip else w[r, s]
            if flip:
                g00, g01, g02 = g[2, 2], g[2, 1], g[2, 0]
                g10, g11, g12 = g[1, 2], g[1, 1], g[1, 0]
                g20, g21, g22 = g[0, 2], g[0, 1], g[0, 0]
            else:
                g00, g01, g02 = g[0, 0], g[0, 1], g[0, 2]
                g10, g11, g12 = g[1, 0], g[1, 1], g[1, 2]
                g20, g21, g22 = g[2, 0], g[2, 1], g[2, 2]
            # G g: the transform of each column of g, then of each row of the result.
            a0, a1, a2, a3 = _g_transform(g00, g10, g20)
            b0, b1, b2, b3 = _g_transform(g01, g11, g21)
            c0, c1, c2, c3 = _g_transform(g02, g12, g22)
            u[0, r, s], u[1, r, s], u[2, r, s], u[3, r, s] = _g_transform(a0, b0, c0)
            u[4, r, s], u[5, r, s], u[6, r, s], u[7, r, s] = _g_transform(a1, b1, c1)
            u[8, r, s], u[9, r, s], u[10, r, s], u[11, r, s] = _g_transform(a2, b2, c2)
            u[12, r, s], u[13, r, s], u[14, r, s], u[15, r, s] = _g_transform(a3, b3, c3)
    return u


@njit(cache=True)
def _winograd_input(xp, wp, th, tw, v, col0):
    """v[t, c, col0 + ty * tw + tx] = (B^T d B)[t] for the 4x4 tile d of the padded planes xp
    (C, (2 th + 2) * wp) at row 2 ty, column 2 tx.

    v's 16 planes are addressed from one flat view with unsigned offsets: with 16 views LLVM
    would need a runtime overlap check per pair of arrays, give up, and leave the loop scalar."""
    cp = v.shape[1]
    nt = v.shape[2]
    vf = v.reshape(-1)
    plane = uint64(cp * nt)
    w1 = uint64(wp)
    w2 = uint64(2 * wp)
    w3 = uint64(3 * wp)
    one = uint64(1)
    two = uint64(2)
    three = uint64(3)
    for c in range(xp.shape[0]):
        src = xp[c]
        for ty in range(th):
            base = uint64(2 * ty * wp)
            d = uint64(c * nt + col0 + ty * tw)
            for tx in range(uint64(tw)):
                o = base + two * tx
                a0, a1, a2, a3 = src[o], src[o + one], src[o + two], src[o + three]
                b0, b1, b2, b3 = src[o + w1], src[o + w1 + one], src[o + w1 + two], src[o + w1 + three]
                c0, c1, c2, c3 = src[o + w2], src[o + w2 + one], src[o + w2 + two], src[o + w2 + three]
                e0, e1, e2, e3 = src[o + w3], src[o + w3 + one], src[o + w3 + two], src[o + w3 + three]
                # rows of B^T d, then the same combination of their columns
                r00, r01, r02, r03 = a0 - c0, a1 - c1, a2 - c2, a3 - c3
                r10, r11, r12, r13 = b0 + c0, b1 + c1, b2 + c2, b3 + c3
                r20, r21, r22, r23 = c0 - b0, c1 - b1, c2 - b2, c3 - b3
                r30, r31, r32, r33 = b0 - e0, b1 - e1, b2 - e2, b3 - e3
                q = d + tx
                vf[q] = r00 - r02
                vf[q + plane] = r01 + r02
                vf[q + two * plane] = r02 - r01
                vf[q + three * plane] = r01 - r03
                vf[q + uint64(4) * plane] = r10 - r12
                vf[q + uint64(5) * plane] = r11 + r12
                vf[q + uint64(6) * plane] = r12 - r11
                vf[q + uint64(7) * plane] = r11 - r13
                vf[q + uint64(8) * plane] = r20 - r22
                vf[q + uint64(9) * plane] = r21 + r22
                vf[q + uint64(10) * plane] = r22 - r21
                vf[q + uint64(11) * plane] = r21 - r23
                vf[q + uint64(12) * plane] = r30 - r32
                vf[q + uint64(13) * plane] = r31 + r32
                vf[q + uint64(14) * plane] = r32 - r31
                vf[q + uint64(15) * plane] = r31 - r33


@njit(cache=True)
def _winograd_output(m, rows, th, tw, col0, bias, relu, out):
    """out[f] (2 th rows of 2 tw) = A^T M A + bias[f] of the tiles m[:, f, col0:col0 + th * tw]
    for f < rows, relu applied when ``relu``.  out may be the output itself when the tiles
    cover it exactly (even height and width): the transform then also does the bias and relu
    pass."""
    fp = m.shape[1]
    nt = m.shape[2]
    mf = m.reshape(-1)
    plane = uint64(fp * nt)
    pitch = 2 * tw
    one = uint64(1)
    two = uint64(2)
    three = uint64(3)
    for f in range(rows):
        dst = out[f]
        bv = bias[f]
        for ty in range(th):
            s = uint64(f * nt + col0 + ty * tw)
            d0 = uint64(2 * ty * pitch)
            d1 = d0 + uint64(pitch)
            for tx in range(uint64(tw)):
                q = s + tx
                m0, m1, m2, m3 = mf[q], mf[q + plane], mf[q + two * plane], mf[q + three * plane]
                m4, m5 = mf[q + uint64(4) * plane], mf[q + uint64(5) * plane]
                m6, m7 = mf[q + uint64(6) * plane], mf[q + uint64(7) * plane]
                m8, m9 = mf[q + uint64(8) * plane], mf[q + uint64(9) * plane]
                m10, m11 = mf[q + uint64(10) * plane], mf[q + uint64(11) * plane]
                m12, m13 = mf[q + uint64(12) * plane], mf[q + uint64(13) * plane]
                m14, m15 = mf[q + uint64(14) * plane], mf[q + uint64(15) * plane]
                t00, t01, t02, t03 = m0 + m4 + m8, m1 + m5 + m9, m2 + m6 + m10, m3 + m7 + m11
                t10, t11, t12, t13 = m4 - m8 - m12, m5 - m9 - m13, m6 - m10 - m14, m7 - m11 - m15
                y00 = t00 + t01 + t02 + bv
                y01 = t01 - t02 - t03 + bv
                y10 = t10 + t11 + t12 + bv
                y11 = t11 - t12 - t13 + bv
                if relu:
                    y00 = 0.0 if y00 <= 0 else y00
                    y01 = 0.0 if y01 <= 0 else y01
                    y10 = 0.0 if y10 <= 0 else y10
                    y11 = 0.0 if y11 <= 0 else y11
                o = two * tx
                dst[d0 + o] = y00
                dst[d0 + o + one] = y01
                dst[d1 + o] = y10
                dst[d1 + o + one] = y11


@njit(cache=True)
def _winograd_tiles(src, col0, h, w, pad_top, pad_left, th, tw, xp, v, vcol0):
    """Pad one image's planes src[c, col0:col0 + h * w] into xp and transform its th x tw
    tiles into v[:, :, vcol0:vcol0 + th * tw]."""
    wp = 2 * tw + 2
    _pad_planes(src, col0, h, w, pad_top, pad_left, xp, 2 * th + 2, wp)
    _winograd_input(xp, wp, th, tw, v, vcol0)


@njit(cache=True)
def _winograd_buffers(cin, cout, cols, vbuf, mbuf):
    """v (16, cin + 1, cols) and m (16, cout + 1, cols) views of flat buffers.  The extra row
    keeps the 16 planes off power-of-two strides (64 tiles x 32 channels would put all 16 in
    the same cache sets)."""
    v = vbuf[:16 * (cin + 1) * cols].reshape((16, cin + 1, cols))
    m = mbuf[:16 * (cout + 1) * cols].reshape((16, cout + 1, cols))
    return v, m


@njit(cache=True)
def _winograd_products(u, v, m):
    """m[t] = u[t] @ v[t] for the 16 transformed positions (u: (16, Cout + 1, Cin))."""
    cout = u.shape[1] - 1
    cin = u.shape[2]
    for t in range(16):
        gemm(u[t][:cout], v[t][:cin], m[t][:cout])


@njit(cache=True)
def _forward_winograd(x, u, bias, pad_top, pad_left, out_h, out_w, code, y3, z3, i0, i1):
    """Forward of images i0..i1 by Winograd (u: transformed weights (16, F + 1, C))."""
    cin = u.shape[2]
    cout = u.shape[1] - 1
    h = x.shape[2]
    w = x.shape[3]
    x3 = x.reshape((x.shape[0], cin, h * w))
    th = (out_h + 1) // 2
    tw = (out_w + 1) // 2
    tiles = th * tw
    nimg = max(1, (WINOGRAD_MIN_TILES + tiles - 1) // tiles)
    xp = np.zeros((cin, (2 * th + 2) * (2 * tw + 2)), dtype=x.dtype)
    vbuf = np.empty(16 * (cin + 1) * nimg * tiles, dtype=x.dtype)
    mbuf = np.empty(16 * (cout + 1) * nimg * tiles, dtype=x.dtype)
    # Even output sizes with a linear or relu output: the output transform writes y itself.
    exact = out_h % 2 == 0 and out_w % 2 == 0 and z3.shape[0] == 0 and (code == LINEAR or code == RELU)
    out = np.empty((0 if exact else cout, 4 * tiles), dtype=x.dtype)
    zero = np.zeros(cout, dtype=x.dtype)
    for s in range(i0, i1, nimg):
        m = min(nimg, i1 - s)
        v, mm = _winograd_buffers(cin, cout, m * tiles, vbuf, mbuf)
        for k in range(m):
            _winograd_tiles(x3[s + k], 0, h, w, pad_top, pad_left, th, tw, xp, v, k * tiles)
        _winograd_products(u, v, mm)
        for k in range(m):
            if exact:
                _winograd_output(mm, cout, th, tw, k * tiles, bias, code == RELU, y3[s + k])
            else:
                _winograd_output(mm, cout, th, tw, k * tiles, zero, False, out)
                for f in range(cout):
                    _store_filter(out[f], 2 * tw, out_h, out_w, bias, code, y3, z3, s + k, f)
                _activate_image(code, y3, z3, s + k)


@njit(cache=True)
def _use_direct(w):
    """Direct loops for few taps per output, except 1x1 kernels over several channels (a GEMM
    on the image itself, no im2col), and always for one channel per group (depthwise), where
    each group's GEMM would be a matrix-vector product."""
    if w.shape[1] == 1:
        return True
    taps = w.shape[1] * w.shape[2] * w.shape[3]
    return taps <= DIRECT_MAX_TAPS and w.shape[2] * w.shape[3] > 1


@njit(cache=True, inline="always")
def _forward_images(x, w, u, bias, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups, code,
                    y3, z3, i0, i1):
    if u.shape[1] > 0:
        _forward_winograd(x, u, bias, pad_top, pad_left, out_h, out_w, code, y3, z3, i0, i1)
    elif _use_direct(w):
        _forward_direct(x, w, bias, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups, code,
                        y3, z3, i0, i1)
    else:
        _forward_gemm(x, w, bias, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups, code,
                      y3, z3, i0, i1)


@njit(cache=True)
def _forward_buffers(x, w, b, stride_h, stride_w, out_h, out_w, dil_h, dil_w, groups, code):
    """y3, z3 (N or 0, F, P), the bias as a full (F,) vector (zeros for no bias) and the
    Winograd weights (an empty (16, 0, 0) array when Winograd does not apply).  Allocated
    outside the parallel kernel, where np.zeros and slice assignments would each become a
    parallel loop of their own (compile time, and a thread launch each)."""
    n = x.shape[0]
    f_ = w.shape[0]
    p = out_h * out_w
    keep_z = code == GELU or code == SWISH
    y3 = np.empty((n, f_, p), dtype=x.dtype)
    z3 = np.empty((n if keep_z else 0, f_, p), dtype=x.dtype)
    bias = np.zeros(f_, dtype=x.dtype)
    for f in range(b.shape[0]):
        bias[f] = b[f]
    if _use_winograd(w, stride_h, stride_w, dil_h, dil_w, groups, False):
        u = _winograd_weights(w, False)
    else:
        u = np.empty((16, 0, 0), dtype=x.dtype)
    return y3, z3, bias, u


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
    y3, z3, bias, u = _forward_buffers(x, w, b, stride_h, stride_w, out_h, out_w, dil_h, dil_w, groups, code)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        i0, i1 = block_bounds(0, 1, n)
        _forward_images(x, w, u, bias, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups,
                        code, y3, z3, i0, i1)
    else:
        for t in prange(nb):
            i0, i1 = block_bounds(t, nb, n)
            _forward_images(x, w, u, bias, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w,
                            groups, code, y3, z3, i0, i1)
    return y3.reshape((n, f_, out_h, out_w)), z3.reshape((z3.shape[0], f_, out_h, out_w))


@njit(cache=True)
def _activation_grad_image(dy3, y3, z3, code, n, dz, col0, scratch):
    """dz[:, col0:col0 + P] = act'(.) * dy3[n] for image n, computed in scratch (F, P), which
    is dz itself when col0 == 0 and dz has P columns (then nothing is copied)."""
    f_ = dy3.shape[1]
    p = dy3.shape[2]
    if code == SOFTMAX:
        # softmax over channels: dz = y * (dy - sum_f dy * y), the sum taken per pixel
        dot = np.zeros(p, dtype=dz.dtype)
        for f in range(f_):
            g = dy3[n, f]
            yr = y3[n, f]
            for q in range(p):
                dot[q] += g[q] * yr[q]
        for f in range(f_):
            g = dy3[n, f]
            yr = y3[n, f]
            dst = scratch[f]
            for q in range(p):
                dst[q] = yr[q] * (g[q] - dot[q])
    else:
        zn = z3[n] if z3.shape[0] > 0 else y3[n]
        activation_grad_rows(dy3[n], y3[n], zn, code, scratch, 0, f_)
    if scratch is not dz:
        for f in range(f_):
            src = scratch[f]
            dst = dz[f, col0:col0 + p]
            for q in range(p):
                dst[q] = src[q]


@njit(cache=True)
def _dw_transposed(w, groups):
    """Whether the weight gradient is computed transposed, dw.T = cols @ dz.T per group: OpenBLAS
    runs that orientation 10-20 % faster when the taps per filter outnumber the filters, and
    slower when they are few (a first layer's 9 or 27 taps against 32 filters).  Never for one
    channel per group (depthwise): its few filters per group make each plain GEMM a handful of
    matrix-vector products."""
    return w.shape[1] > 1 and w.shape[1] * w.shape[2] * w.shape[3] >= w.shape[0] // groups


@njit(cache=True)
def _backward_gemm(dy3, x, w, u, y3, z3, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w, groups,
                   code, need_dx, need_dw, dx, dwt, dbt, i0, i1):
    """Backward of images i0..i1: overwrites their dx, adds their weight and bias gradients
    into dwt (groups, F // groups, C // groups * KH * KW), or its transpose per group when
    ``_dw_transposed``, and into dbt (F,) or (0,).  The input gradient is a Winograd
    convolution of dz when u (16, C + 1, F) holds the flipped kernel's transform (``u.shape[1] >
    0``), else a GEMM into columns and col2im."""
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
    transposed = _dw_transposed(w, groups)
    nimg = _images_per_chunk(p, pointwise)
    hp = _padded_size(out_h, kh, stride_h, dil_h)
    wp = _padded_size(out_w, kw, stride_w, dil_w)
    xp = np.zeros((0 if pointwise else c_in, hp * wp), dtype=x.dtype)
    cols_buf = np.empty(0 if pointwise else rows * nimg * p, dtype=x.dtype)
    dz_buf = np.empty(f_ * nimg * p, dtype=x.dtype)
    scratch = np.empty((f_ if nimg > 1 else 0, p), dtype=x.dtype)
    # Bias gradient: per-pixel partial sums, vectorized across pixels, reduced over pixels
    # once at the end (a running scalar sum per filter is one dependent add per element).
    has_db = need_dw and dbt.shape[0] > 0
    db_acc = np.zeros((f_ if has_db else 0, p), dtype=x.dtype)
    # Winograd input gradient: dx = dz (padded by 2 - pad) correlated with the flipped kernel.
    wino = need_dx and u.shape[1] > 0
    h = x.shape[2]
    wd = x.shape[3]
    th = (h + 1) // 2
    tw = (wd + 1) // 2
    tiles = th * tw if wino else 0
    dzp = np.zeros((f_ if wino else 0, (2 * th + 2) * (2 * tw + 2)), dtype=x.dtype)
    vbuf = np.empty(16 * (f_ + 1) * nimg * tiles, dtype=x.dtype)
    mbuf = np.empty(16 * (c_in + 1) * nimg * tiles, dtype=x.dtype)
    exact = h % 2 == 0 and wd % 2 == 0
    out = np.empty((c_in if wino and not exact else 0, 4 * tiles), dtype=x.dtype)
    zero_bias = np.zeros(c_in, dtype=x.dtype)
    no_z = np.empty((0, c_in, h * wd), dtype=x.dtype)
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
            for f in range(f_):
                acc = db_acc[f]
                for k in range(m):
                    src = dz[f, k * p:(k + 1) * p]
                    for q in range(p):
                        acc[q] += src[q]
        if need_dw:
            if pointwise:
                cols = x3[s]
            else:
                cols = cols_buf[:rows * m * p].reshape((rows, m * p))
                for k in range(m):
                    _pad_planes(x3[s + k], 0, x.shape[2], x.shape[3], pad_top, pad_left, xp, hp, wp)
                    _im2col_image(xp, wp, kh, kw, stride_h, stride_w, dil_h, dil_w, out_h, out_w, cols, k * p)
            for g in range(groups):
                if transposed:
                    gemm(cols[g * cgk:(g + 1) * cgk], dz[g * fg:(g + 1) * fg], dwt[g], False, True, 1.0, 1.0)
                else:
                    gemm(dz[g * fg:(g + 1) * fg], cols[g * cgk:(g + 1) * cgk], dwt[g], False, True, 1.0, 1.0)
        if wino:
            v, mm = _winograd_buffers(f_, c_in, m * tiles, vbuf, mbuf)
            for k in range(m):
                _winograd_tiles(dz, k * p, out_h, out_w, 2 - pad_top, 2 - pad_left, th, tw, dzp, v, k * tiles)
            _winograd_products(u, v, mm)
            for k in range(m):
                if exact:
                    _winograd_output(mm, c_in, th, tw, k * tiles, zero_bias, False, dx3[s + k])
                else:
                    _winograd_output(mm, c_in, th, tw, k * tiles, zero_bias, False, out)
                    for c in range(c_in):
                        _store_filter(out[c], 2 * tw, h, wd, zero_bias, LINEAR, dx3, no_z, s + k, c)
        elif need_dx:
            # The column buffer is free again once dw is done: reuse it for the column
            # gradient, and xp for the padded image gradient.
            if pointwise:
                dcols = dx3[s]
            else:
                dcols = cols_buf[:rows * m * p].reshape((rows, m * p))
            for g in range(groups):
                gemm(w2[g * fg:(g + 1) * fg], dz[g * fg:(g + 1) * fg], dcols[g * cgk:(g + 1) * cgk], True, False)
            if not pointwise:
                for k in range(m):
                    for c in range(c_in):
                        row = xp[c]
                        for q in range(hp * wp):
                            row[q] = 0.0
                    _col2im_image(dcols, k * p, kh, kw, stride_h, stride_w, dil_h, dil_w, out_h, out_w, xp, wp)
                    _crop_image(xp, pad_top, pad_left, hp, wp, dx, s + k)
                if need_dw:
                    # xp's border must be zero again for the next chunk's im2col
                    for c in range(c_in):
                        row = xp[c]
                        for q in range(hp * wp):
                            row[q] = 0.0
    if has_db:
        for f in range(f_):
            t = 0.0
            acc = db_acc[f]
            for q in range(p):
                t += acc[q]
            dbt[f] += t


@njit(cache=True)
def _backward_buffers(x, w, db, stride_h, stride_w, dil_h, dil_w, groups, need_dx, need_dw, nb):
    """dx, the per-block gradient buffers and the Winograd transform of the flipped kernel
    (empty when not used), allocated outside the parallel kernel (see ``_forward_buffers``).
    Block 0 accumulates straight into dw and db, the other blocks into their own buffers; a
    transposed weight gradient goes to buffers from every block."""
    f_, cg, kh, kw = w.shape
    fg = f_ // groups
    cgk = cg * kh * kw
    dx = np.empty((x.shape[0] if need_dx else 0, x.shape[1], x.shape[2], x.shape[3]), dtype=x.dtype)
    transposed = _dw_transposed(w, groups)
    first = 0 if transposed else 1
    if not need_dw:
        dw_part = np.zeros((nb - first, groups, 0, 0), dtype=x.dtype)
    elif transposed:
        dw_part = np.zeros((nb, groups, cgk, fg), dtype=x.dtype)
    else:
        dw_part = np.zeros((nb - 1, groups, fg, cgk), dtype=x.dtype)
    db_part = np.zeros((nb - 1, db.shape[0] if need_dw else 0), dtype=x.dtype)
    if need_dx and _use_winograd(w, stride_h, stride_w, dil_h, dil_w, groups, True):
        u = _winograd_weights(w, True)
    else:
        u = np.empty((16, 0, 0), dtype=x.dtype)
    return dx, dw_part, db_part, first, u


@njit(cache=True)
def _reduce_parts(dwv, db, dw_part, db_part, transposed):
    """Add the per-block weight and bias gradients into dw (viewed (groups, F // groups, -1)) and db."""
    for t in range(dw_part.shape[0]):
        for g in range(dwv.shape[0]):
            for f in range(dwv.shape[1]):
                row = dwv[g, f]
                if transposed:
                    for k in range(row.shape[0]):
                        row[k] += dw_part[t, g, k, f]
                else:
                    part = dw_part[t, g, f]
                    for k in range(row.shape[0]):
                        row[k] += part[k]
    for t in range(db_part.shape[0]):
        for f in range(db_part.shape[1]):
            db[f] += db_part[t, f]


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
    n = x.shape[0]
    f_ = w.shape[0]
    out_h = dy.shape[2]
    out_w = dy.shape[3]
    p = out_h * out_w
    dy3 = dy.reshape((n, f_, p))
    y3 = y.reshape((y.shape[0], f_, p))
    z3 = z.reshape((z.shape[0], f_, p))
    dwv = dw.reshape((groups, f_ // groups, dw.size // f_))
    nb = max(1, min(n, nblocks))
    dx, dw_part, db_part, first, u = _backward_buffers(x, w, db, stride_h, stride_w, dil_h, dil_w, groups, need_dx,
                                                       need_dw, nb)
    if nb == 1:
        dwt = dwv if first == 1 else dw_part[0]
        i0, i1 = block_bounds(0, 1, n)
        _backward_gemm(dy3, x, w, u, y3, z3, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w,
                       groups, code, need_dx, need_dw, dx, dwt, db, i0, i1)
    else:
        for t in prange(nb):
            i0, i1 = block_bounds(t, nb, n)
            dwt = dwv if t < first else dw_part[t - first]
            dbt = db if t == 0 else db_part[t - 1]
            _backward_gemm(dy3, x, w, u, y3, z3, stride_h, stride_w, pad_top, pad_left, out_h, out_w, dil_h, dil_w,
                           groups, code, need_dx, need_dw, dx, dwt, dbt, i0, i1)
    if need_dw:
        _reduce_parts(dwv, db, dw_part, db_part, first == 0)
    return dx
