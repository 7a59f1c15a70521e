"""Recurrent kernels over whole sequences: SimpleRNN, LSTM and GRU, forward and backward.

Shapes.  x: (N, T, F) C-contiguous.  A cell has G gates of U units (SimpleRNN 1; LSTM 4 in
the order i, f, g, o; GRU 3 in the order r, z, n); w: (F, G*U), u: (U, G*U), b: (G*U,) or a
(0,) array for no bias; the GRU's recurrent bias rb: (G*U,).  Initial states h0, c0: (N, U),
supplied by the caller (zeros by default in the layers).  All arrays C-contiguous, float32 or
float64, one dtype.

Options.  ``reverse`` processes t = T-1 .. 0 (Keras' go_backwards).  ``mask`` is an (N, T)
uint8 array indexed by input time (a (0, 0) array for none): at a step with mask 0 the state is
carried through unchanged and the output of the step is zero.  ``outputs[:, s]`` is the output
of the s-th *processed* step, so with ``reverse`` outputs[:, 0] belongs to t = T-1, and
``outputs[:, -1]`` is the output of the last processed step (equal to ``h_last`` unless that
step is masked).  Everything else the GRU kernels keep (gates, states) is indexed by input
time t, so that its rows line up with the rows of x.

Algorithm of the GRU (the SimpleRNN and LSTM hold the batch as columns and split the work by
units instead: see the LSTM section below).  The input projection of all steps is one GEMM per
row block, (rows*T, F) @ w + b, written into the gate buffer.  The recurrence is independent per sample, so the batch is split
into ``nblocks`` row blocks and each block runs the whole time loop on its own (no
synchronisation between steps): per step one small GEMM h @ u (computed transposed, see
_step_product) added into the step's gate rows, then the gate arithmetic on each row while it
is hot in cache (short loops that LLVM vectorizes, with a polynomial sigmoid and tanh).
Backward walks the steps backwards per row block, storing the pre-activation gradients dZ of
every step and carrying the state gradients (dh_prev = dZ_t @ u.T + ...); the parameter
gradients are then big GEMMs over all N*T rows (dw += X.T @ dZ, du += H_prev.T @ dZ,
db += column sums of dZ), split across threads by rows of the parameter (columns for the
biases), so no thread writes what another writes; dx = dZ @ w.T is one GEMM per row block.
``nblocks == 1`` runs serial code that never enters prange.

Backward conventions.  ``d_outputs`` (N, T, U) is the gradient of ``outputs`` (processing order;
pass a (0, 0, 0) array when no output of the sequence is used) and ``d_h_last`` (and
``d_c_last``) the gradient of the final state; the two are added, each being the exact gradient
of its own quantity.  For return_sequences=False the recommended output is ``h_last``, with its
gradient in ``d_h_last`` and an empty ``d_outputs``: with masks it is the state after the last
unmasked step (Keras' last output), and no (N, T, U) gradient needs filling.  (Using
``outputs[:, -1]`` instead, with its gradient in ``d_outputs[:, -1]``, is also exact, but gives
zero for a row whose last processed step is masked.)  Gradient buffers dw, du, db (and drb)
are accumulated into (+=); ``need_dparams=False`` leaves them untouched and ``need_dx=False``
returns an empty (0, T, F) dx.

Caches (the last element returned by each forward; pass it unchanged to backward):

- SimpleRNN: (xh, z, bounds), step-major with the batch as columns and indexed by processing
  step (see its section).
- LSTM: (gates, xh, cs, tanh_c, bounds), step-major with the batch as columns and indexed by
  processing step (see the LSTM section).
- GRU: (gates, hn, h_prev).  gates (N, T, 3U): r, z, n after their activations; hn (N, T, U):
  h_prev @ u_n + rb_n, the recurrent part that r gates; h_prev (N, T, U) as above.

At masked steps the gate entries of the cache are unspecified (backward gives them zero
gradient and never reads them).
"""
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from .activations import (GELU, LINEAR, RELU, SIGMOID, SOFTMAX, SWISH, TANH, activation_grad_rows,
                          activation_rows, block_bounds)
from .blas import GEMV_MAX_ROWS, gemm
from .staged import claim, new_state, publish, wait_stage


@intrinsic
def _pow2(typingctx, k):
    """2.0 ** k for an integral float k (float64: [-1022, 1023]; float32: [-126, 127]), built
    from its bits.  No call and no branch, so loops using it vectorize: k + 2**52 + 1023 holds
    k + 1023 in its low mantissa bits, which a shift moves into the exponent field (float32:
    2**23, 127 and 23)."""
    if k == types.float64:
        ftype, itype, magic, shift = ir.DoubleType(), ir.IntType(64), 4503599627370496.0 + 1023.0, 52
    elif k == types.float32:
        ftype, itype, magic, shift = ir.FloatType(), ir.IntType(32), 8388608.0 + 127.0, 23
    else:
        return None

    def codegen(context, builder, signature, args):
        shifted = builder.fadd(args[0], ir.Constant(ftype, magic))
        bits = builder.shl(builder.bitcast(shifted, itype), ir.Constant(itype, shift))
        return builder.bitcast(bits, ftype)

    return k(k), codegen


# math.exp and math.tanh are calls into libm that keep every loop around them scalar (and
# math.tanh on float32 costs about 20 ns).  exp(y) for y <= 0 is computed here as plain
# arithmetic: y = n ln 2 + r with |r| <= ln(2) / 2 (Cody-Waite: n * LN2_HI is exact), then
# exp(y) = 2**n * (1 + q) with q = expm1(r) from its Taylor series, accurate to a few ulp of
# the type.  Returning (2**n, q) rather than exp(y) lets tanh form expm1(y) = 2**n q + (2**n - 1)
# without the cancellation of exp(y) - 1.  Below the clamp exp underflows anyway; NaN
# propagates.  float32 runs in float32 (16 lanes and a degree-7 polynomial instead of 8 lanes
# and degree 13): 3x faster.
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # fdlibm split, exact products for |n| < 2**11
_LN2_LO = 1.90821492927058770002e-10
_F32 = np.float32
_LOG2E_32 = np.float32(_LOG2E)
_LN2_HI_32 = np.float32(0.693359375)  # 9 significant bits: exact products for |n| < 2**15
_LN2_LO_32 = np.float32(-2.12194440e-4)


@njit(cache=True, inline="always")
def _exp_split64(y):
    y = -708.0 if y < -708.0 else y
    n = np.floor(y * _LOG2E + 0.5)
    r = (y - n * _LN2_HI) - n * _LN2_LO
    # Remainder of the degree-13 series below 1e-17 relative on |r| <= 0.35.
    q = r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (
        1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (
            1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600 + r * (1.0 / 6227020800)))))))))))))
    return _pow2(n), q


@njit(cache=True, inline="always")
def _exp_split32(y):
    y = _F32(-87.0) if y < _F32(-87.0) else y
    n = np.floor(y * _LOG2E_32 + _F32(0.5))
    r = (y - n * _LN2_HI_32) - n * _LN2_LO_32
    # Remainder of the degree-7 series below 1e-8 relative on |r| <= 0.35.
    q = r * (_F32(1.0) + r * (_F32(1.0 / 2) + r * (_F32(1.0 / 6) + r * (_F32(1.0 / 24) + r * (
        _F32(1.0 / 120) + r * (_F32(1.0 / 720) + r * _F32(1.0 / 5040)))))))
    return _pow2(n), q


def _sigmoid(v):
    """Logistic function of a float scalar, for compiled code (overloaded per type below)."""
    raise NotImplementedError


def _tanh(v):
    """tanh of a float scalar, for compiled code (overloaded per type below)."""
    raise NotImplementedError


@overload(_sigmoid, inline="always")
def _sigmoid_typed(v):
    # exp(-|v|) never overflows: the two branches of activations._sigmoid as one select.
    if v == types.float32:
        def sigmoid32(v):
            s, q = _exp_split32(-abs(v))
            e = s + s * q
            p = _F32(1.0) / (_F32(1.0) + e)
            return p if v >= _F32(0.0) else e * p
        return sigmoid32

    def sigmoid64(v):
        s, q = _exp_split64(-abs(v))
        e = s + s * q
        p = 1.0 / (1.0 + e)
        return p if v >= 0.0 else e * p
    return sigmoid64


@overload(_tanh, inline="always")
def _tanh_typed(v):
    # tanh|v| = -expm1(-2|v|) / (2 + expm1(-2|v|)), full relative precision for small |v|.
    if v == types.float32:
        def tanh32(v):
            s, q = _exp_split32(_F32(-2.0) * abs(v))
            em1 = s * q + (s - _F32(1.0))
            t = (_F32(0.0) - em1) / (_F32(2.0) + em1)  # + 0 for v = 0, not -0
            return t if v >= _F32(0.0) else -t
        return tanh32

    def tanh64(v):
        s, q = _exp_split64(-2.0 * abs(v))
        em1 = s * q + (s - 1.0)
        t = (0.0 - em1) / (2.0 + em1)
        return t if v >= 0.0 else -t
    return tanh64


# The elementwise helpers run with error_model="numpy": Numba's default checks every float
# division for zero and raises, and that branch alone keeps a loop from vectorizing.  They are
# separate (not inlined) functions so that the long polynomial is compiled once per dtype
# rather than once per loop that needs it.


@njit(cache=True, error_model="numpy")
def _sigmoid_inplace(a):
    for j in range(a.shape[0]):
        a[j] = _sigmoid(a[j])


@njit(cache=True, error_model="numpy")
def _tanh_inplace(a):
    for j in range(a.shape[0]):
        a[j] = _tanh(a[j])


@njit(cache=True, error_model="numpy")
def _tanh_into(src, dst):
    for j in range(src.shape[0]):
        dst[j] = _tanh(src[j])


# Copies and fills are explicit loops: a slice assignment from an array compiles Numba's
# shape-mismatch message (string formatting: seconds of cold start per kernel).


@njit(cache=True)
def _copy_rows(src, dst, i0, i1):
    """dst[i] = src[i] for rows i0..i1 of two (N, U) arrays."""
    for i in range(i0, i1):
        a = src[i]
        b = dst[i]
        for j in range(a.shape[0]):
            b[j] = a[j]


@njit(cache=True)
def _copy_rows_to_step(src, dst, t, i0, i1):
    """dst[i, t] = src[i] for rows i0..i1: src (N, U), dst (N, T, U)."""
    for i in range(i0, i1):
        a = src[i]
        b = dst[i, t]
        for j in range(a.shape[0]):
            b[j] = a[j]


@njit(cache=True, inline="always")
def _zero(a):
    for j in range(a.shape[0]):
        a[j] = 0.0


@njit(cache=True)
def _project_rows(x2, w, b, z2, r0, r1):
    """z2[r0:r1] = x2[r0:r1] @ w + b: the input projection of a block's steps in one GEMM."""
    gemm(x2[r0:r1], w, z2[r0:r1])
    m = z2.shape[1]
    if b.shape[0] > 0:
        for r in range(r0, r1):
            zr = z2[r]
            for j in range(m):
                zr[j] += b[j]


@njit(cache=True)
def _col_sums(a, out, j0, j1, offset):
    """out[offset + j] += sum over rows of a[:, j] for j in [j0, j1)."""
    if j1 <= j0:
        return
    dst = out[offset + j0:offset + j1]
    for r in range(a.shape[0]):
        src = a[r, j0:j1]
        for j in range(j1 - j0):
            dst[j] += src[j]


@njit(cache=True)
def _time_of(s, steps, reverse):
    return steps - 1 - s if reverse else s


@njit(cache=True)
def _cols_of_step(a, t, at, i0, i1):
    """at[:, i] = a[i, t] for rows i0..i1: a step of an (N, T, K) array as columns of (K, N)."""
    for i in range(i0, i1):
        row = a[i, t]
        for k in range(row.shape[0]):
            at[k, i] = row[k]


@njit(cache=True)
def _cols_into_rows(ct, c, t, accumulate, i0, i1):
    """c[i, t] (+)= ct[:, i] for rows i0..i1 of a 3-D c.  Tiles of 16 rows of ct keep the
    strided reads in a few cache lines while each contiguous row piece of c is written."""
    m = ct.shape[0]
    for j0 in range(0, m, 16):
        j1 = min(j0 + 16, m)
        for i in range(i0, i1):
            dst = c[i, t, j0:j1]
            if accumulate:
                for j in range(j1 - j0):
                    dst[j] += ct[j0 + j, i]
            else:
                for j in range(j1 - j0):
                    dst[j] = ct[j0 + j, i]


@njit(cache=True)
def _step_product(a, t, b, bt, trans_b, c, tc, accumulate, at, ct, i0, i1):
    """c[i0:i1, tc] (+)= a[i0:i1, t] @ op(b) for a row block of 3-D arrays a (N, T, K) and
    c (N, T', M), op(b) = b or b.T, bt = op(b).T C-contiguous.

    Computed transposed, ct = bt @ a_t.T, through the scratch columns at (K, N) and ct (M, N):
    for 8..64 rows OpenBLAS runs that orientation 25-40 % faster (it packs the large operand
    more cheaply on that side), more than paying for the two transposed copies.  A few rows
    take the direct product, which gemm turns into matrix-vector calls.
    """
    if i1 - i0 <= GEMV_MAX_ROWS:
        gemm(a[i0:i1, t], b, c[i0:i1, tc], False, trans_b, 1.0, 1.0 if accumulate else 0.0)
        return
    _cols_of_step(a, t, at, i0, i1)
    gemm(bt, at[:, i0:i1], ct[:, i0:i1])
    _cols_into_rows(ct, c, tc, accumulate, i0, i1)


@njit(cache=True)
def _transposed(u):
    """A C-contiguous copy of u.T (made here: in a parallel kernel the copy would become a
    parallel loop of its own and start the thread pool on the serial path)."""
    ut = np.empty((u.shape[1], u.shape[0]), dtype=u.dtype)
    for i in range(u.shape[0]):
        for j in range(u.shape[1]):
            ut[j, i] = u[i, j]
    return ut


@njit(cache=True)
def _zeros1(d0, like):
    return np.zeros(d0, dtype=like.dtype)


# ----------------------------------------------------------------------------------------
# SimpleRNN


# The SimpleRNN kernels hold the batch as columns, as the LSTM's do (see the LSTM section for
# the layout of xh and wu): step s is one GEMM wu @ xh[:, s N:(s+1) N] giving the input
# projection, the bias and the recurrent product at once, the activation runs over the
# contiguous (units, N) block, and the units are split into groups, one part per thread, in a
# staged loop.  A softmax state (a kernel-level option: the layer refuses it) needs every unit
# of a column at once, so it runs as a single group.  The cache (xh, z, bounds): xh holds the
# inputs and every state h (the output of step s is column block s + 1); z (T, U, N) the
# pre-activations when the activation's derivative needs them (gelu, swish), else a
# (0, 0, 0) array; bounds the groups' bounds.


@njit(cache=True)
def _lay_out(p, bounds, x, w, u, b, h0, reverse, wu, xh, ngates):
    """Stage 0 of a batch-as-columns forward for part p: the group's rows of wu (its ngates
    gate blocks of k rows side by side), a share of the input rows of xh, the row of ones and
    the group's rows of the initial state.  Transposed copies read along rows: the few columns
    they write stay in cache."""
    n, steps, f = x.shape
    units = u.shape[0]
    nparts = bounds.shape[0] - 1
    hoff = xh.shape[0] - units
    a = bounds[p]
    k = bounds[p + 1] - a
    for r in range(f + units):
        src = w[r] if r < f else u[r - f]
        c = r if r < f else hoff + r - f
        for g in range(ngates):
            for j in range(k):
                wu[ngates * a + g * k + j, c] = src[g * units + a + j]
    if hoff > f:
        for g in range(ngates):
            for j in range(k):
                wu[ngates * a + g * k + j, f] = b[g * units + a + j]
    f0, f1 = block_bounds(p, nparts, f)
    for s in range(steps):
        t = _time_of(s, steps, reverse)
        for i in range(n):
            src = x[i, t]
            for r in range(f0, f1):
                xh[r, s * n + i] = src[r]
    if hoff > f and p == 0:
        for c in range((steps + 1) * n):
            xh[f, c] = 1.0
    for j in range(k):
        for i in range(n):
            xh[hoff + a + j, i] = h0[i, a + j]


@njit(cache=True, error_model="numpy")
def _rnn_activate(code, zb, yb):
    """yb = act(zb) for a group's (k, N) block of a step (yb a view into xh); zb may be
    overwritten unless the derivative needs it (gelu, swish)."""
    k, n = zb.shape
    if code == TANH or code == SIGMOID or code == RELU or code == LINEAR:
        flat = zb.reshape(k * n)
        if code == TANH:
            _tanh_inplace(flat)
        elif code == SIGMOID:
            _sigmoid_inplace(flat)
        elif code == RELU:
            for e in range(k * n):
                v = flat[e]
                flat[e] = 0.0 if v <= 0 else v  # NaN stays NaN
        for j in range(k):
            src = zb[j]
            dst = yb[j]
            for i in range(n):
                dst[i] = src[i]
        return
    # Other activations (and softmax, over the units of a sample) on rows of samples.
    zt = np.empty((n, k), dtype=zb.dtype)
    for j in range(k):
        for i in range(n):
            zt[i, j] = zb[j, i]
    yt = np.empty((n, k), dtype=zb.dtype)
    activation_rows(zt, yt, code, 0, n)
    for j in range(k):
        for i in range(n):
            yb[j, i] = yt[i, j]


@njit(cache=True)
def _rnn_forward_part(stage, p, bounds, x, w, u, b, h0, code, mask, reverse, wu, xh, z, outputs, h_last):
    n, steps, f = x.shape
    units = u.shape[0]
    nparts = bounds.shape[0] - 1
    hoff = xh.shape[0] - units
    a = bounds[p]
    k = bounds[p + 1] - a
    if stage == 0:
        _lay_out(p, bounds, x, w, u, b, h0, reverse, wu, xh, 1)
        return
    if stage <= steps:
        s = stage - 1
        c_in = s * n
        c_out = (s + 1) * n
        zb = z[s, a:a + k]
        gemm(wu[a:a + k], xh[:, c_in:c_out], zb)
        yb = xh[hoff + a:hoff + a + k, c_out:c_out + n]
        _rnn_activate(code, zb, yb)
        for i in range(n):
            out = outputs[i, s, a:a + k]
            for j in range(k):
                out[j] = yb[j, i]
        t = _time_of(s, steps, reverse)
        if _step_has_mask(mask, t):
            for i in range(n):
                if mask[i, t] == 0:
                    out = outputs[i, s, a:a + k]
                    for j in range(k):
                        row = xh[hoff + a + j]
                        row[c_out + i] = row[c_in + i]
                        out[j] = 0.0
        return
    i0, i1 = block_bounds(p, nparts, n)
    for i in range(i0, i1):
        for j in range(units):
            h_last[i, j] = xh[hoff + j, steps * n + i]


@njit(cache=True)
def _rnn_forward_worker(me, state, bounds, x, w, u, b, h0, code, mask, reverse, wu, xh, z, outputs, h_last):
    nparts = bounds.shape[0] - 1
    for stage in range(x.shape[1] + 2):
        for q in range(nparts):
            p = (me + q) % nparts
            if claim(state, stage, p, nparts):
                _rnn_forward_part(stage, p, bounds, x, w, u, b, h0, code, mask, reverse, wu, xh, z, outputs, h_last)
                publish(state, stage, p, nparts)
        wait_stage(state, stage, nparts)


@njit(cache=True, parallel=True)
def simple_rnn_forward(x, w, u, b, h0, code, mask, reverse, nblocks, unit_groups):
    """SimpleRNN over a sequence: h_t = act(x_t @ w + b + h_{t-1} @ u).

    x (N, T, F), w (F, U), u (U, U), b (U,) or (0,), h0 (N, U), code: activation code,
    mask (N, T) uint8 or (0, 0), reverse: bool.  The units are split into
    max(nblocks, unit_groups) groups (at most U; one for softmax), one part per thread; one
    group runs serial code that never enters prange.  Returns (outputs (N, T, U),
    h_last (N, U), cache); see the module docstring for the conventions.
    """
    n, steps, f = x.shape
    units = u.shape[0]
    dtype = x.dtype
    kk = f + (1 if b.shape[0] > 0 else 0) + units
    outputs = np.empty((n, steps, units), dtype=dtype)
    h_last = np.empty((n, units), dtype=dtype)
    xh = np.empty((kk, (steps + 1) * n), dtype=dtype)
    wu = np.empty((units, kk), dtype=dtype)
    z = np.empty((steps, units, n), dtype=dtype)
    single = steps == 0 or n == 0 or code == SOFTMAX
    bounds = _unit_groups(units, 1 if single else max(nblocks, unit_groups))
    nparts = bounds.shape[0] - 1
    state = new_state(steps + 2, nparts)
    if nparts == 1:
        _rnn_forward_worker(0, state, bounds, x, w, u, b, h0, code, mask, reverse, wu, xh, z, outputs, h_last)
    else:
        for me in prange(nparts):
            _rnn_forward_worker(me, state, bounds, x, w, u, b, h0, code, mask, reverse, wu, xh, z, outputs, h_last)
    if not (code == GELU or code == SWISH):
        z = np.empty((0, 0, 0), dtype=dtype)
    return outputs, h_last, (xh, z, bounds)


@njit(cache=True, error_model="numpy")
def _rnn_step_grad(code, dhb, yb, zb, dzb):
    """dzb = dhb * act'(...) for a group's (k, N) block of a step (yb a view into xh, zb the
    pre-activations or an unused block)."""
    k, n = dhb.shape
    one = dhb.dtype.type(1.0)  # a literal 1.0 would widen float32 loops to float64
    if code == TANH or code == SIGMOID or code == RELU or code == LINEAR:
        for j in range(k):
            dh = dhb[j]
            y = yb[j]
            dz = dzb[j]
            if code == TANH:
                for i in range(n):
                    dz[i] = dh[i] * (one - y[i] * y[i])
            elif code == SIGMOID:
                for i in range(n):
                    dz[i] = dh[i] * y[i] * (one - y[i])
            elif code == RELU:
                for i in range(n):
                    dz[i] = dh[i] if y[i] > 0 else 0.0
            else:
                for i in range(n):
                    dz[i] = dh[i]
        return
    dyt = np.empty((n, k), dtype=dhb.dtype)
    yt = np.empty((n, k), dtype=dhb.dtype)
    zt = np.empty((n, k), dtype=dhb.dtype)
    dzt = np.empty((n, k), dtype=dhb.dtype)
    for j in range(k):
        for i in range(n):
            dyt[i, j] = dhb[j, i]
            yt[i, j] = yb[j, i]
            zt[i, j] = zb[j, i]
    activation_grad_rows(dyt, yt, zt, code, dzt, 0, n)
    for j in range(k):
        for i in range(n):
            dzb[j, i] = dzt[i, j]


@njit(cache=True)
def _params_and_dx_part(p, nparts, xh, dz, dwub, dw, du, db, w, dx, f, hoff, n, steps, reverse, need_dparams):
    """The last stage of a batch-as-columns backward for part p: dW = xh @ dZ.T as one GEMM
    over a share of the rows of [w; b; u] (rows f..hoff are the bias), added where they
    belong, and dx = dZ.T @ w.T for a share of the steps."""
    cols = steps * n
    if need_dparams and cols > 0:
        r0, r1 = block_bounds(p, nparts, xh.shape[0])
        gemm(xh[r0:r1, :cols], dz, dwub[r0:r1], False, True)
        width = dwub.shape[1]
        for r in range(r0, r1):
            if r < f:
                dst = dw[r]
            elif r < hoff:
                dst = db
            else:
                dst = du[r - hoff]
            src = dwub[r]
            for c in range(width):
                dst[c] += src[c]
    if dx.shape[0] > 0:
        s0, s1 = block_bounds(p, nparts, steps)
        for s in range(s0, s1):
            gemm(dz[:, s * n:(s + 1) * n], w, dx[:, _time_of(s, steps, reverse), :], True, True)


@njit(cache=True)
def _rnn_backward_part(stage, p, bounds, d_outputs, d_h_last, w, u, code, mask, reverse, xh, z, dz, dh, partial,
                       dwub, dw, du, db, dx, dh0, need_dparams, steps):
    """Part p of a stage of the backward: stage k < T runs processed step T-1-k for the
    group's units (after adding its rows of the product of the step after it), stage T adds
    that of the first step and writes the group's columns of dh0, stage T + 1 a share of the
    rows of the parameter gradients and of the steps of dx."""
    units = u.shape[0]
    n = dh.shape[1]
    nparts = bounds.shape[0] - 1
    hoff = xh.shape[0] - units
    f = w.shape[0]
    a = bounds[p]
    k = bounds[p + 1] - a
    if stage == 0:
        for j in range(k):
            for i in range(n):
                dh[a + j, i] = d_h_last[i, a + j]
    elif stage <= steps:
        _add_partials(partial[(stage - 1) % 2], dh, a, k)
    if stage < steps:
        s = steps - 1 - stage
        t = _time_of(s, steps, reverse)
        has_mask = _step_has_mask(mask, t)
        if d_outputs.shape[0] > 0:
            for j in range(k):
                for i in range(n):
                    if not has_mask or mask[i, t] != 0:
                        dh[a + j, i] += d_outputs[i, s, a + j]
        c0s = s * n
        dhb = dh[a:a + k]
        dzb = dz[a:a + k, c0s:c0s + n]
        yb = xh[hoff + a:hoff + a + k, c0s + n:c0s + 2 * n]
        zb = z[s, a:a + k] if z.shape[0] > 0 else yb
        _rnn_step_grad(code, dhb, yb, zb, dzb)
        for j in range(k):
            dhr = dhb[j]
            dzr = dzb[j]
            if has_mask:
                # Masked columns carry dh through; their pre-activations get no gradient.
                for i in range(n):
                    if mask[i, t] == 0:
                        dzr[i] = 0.0
                    else:
                        dhr[i] = 0.0
            else:
                for i in range(n):
                    dhr[i] = 0.0
        # This group's share of dh entering the step, for every unit: the other parts add the
        # rows of their units at the next stage.
        gemm(u[:, a:a + k], dzb, partial[stage % 2, p])
        return
    if stage == steps:
        for i in range(n):
            for j in range(k):
                dh0[i, a + j] = dh[a + j, i]
        return
    _params_and_dx_part(p, nparts, xh, dz, dwub, dw, du, db, w, dx, f, hoff, n, steps, reverse, need_dparams)


@njit(cache=True)
def _rnn_backward_worker(me, state, bounds, d_outputs, d_h_last, w, u, code, mask, reverse, xh, z, dz, dh, partial,
                         dwub, dw, du, db, dx, dh0, need_dparams, steps):
    nparts = bounds.shape[0] - 1
    for stage in range(steps + 2):
        for q in range(nparts):
            p = (me + q) % nparts
            if claim(state, stage, p, nparts):
                _rnn_backward_part(stage, p, bounds, d_outputs, d_h_last, w, u, code, mask, reverse, xh, z, dz, dh,
                                   partial, dwub, dw, du, db, dx, dh0, need_dparams, steps)
                publish(state, stage, p, nparts)
        wait_stage(state, stage, nparts)


@njit(cache=True, parallel=True)
def simple_rnn_backward(d_outputs, d_h_last, x, w, u, code, mask, reverse, cache, dw, du, db,
                        need_dx, need_dparams, nblocks):
    """Backward of ``simple_rnn_forward``.

    d_outputs (N, T, U) or (0, 0, 0), d_h_last (N, U); x, w, u, code, mask, reverse as given to
    the forward, cache as it returned (which also fixes the split: ``nblocks`` is unused).
    Accumulates into dw (F, U), du (U, U), db (U,) (a (0,) array for no bias) when
    need_dparams.  Returns (dx (N, T, F) or (0, T, F), dh0 (N, U)).
    """
    xh, z, bounds = cache
    n, steps, f = x.shape
    units = u.shape[0]
    dtype = x.dtype
    dz = np.empty((units, steps * n), dtype=dtype)
    dh = np.empty((units, n), dtype=dtype)
    dh0 = np.empty((n, units), dtype=dtype)
    dx = np.empty((n if need_dx else 0, steps, f), dtype=dtype)
    nparts = bounds.shape[0] - 1
    partial = np.empty((2, nparts, units, n), dtype=dtype)
    dwub = np.empty((xh.shape[0] if need_dparams else 0, units), dtype=dtype)
    state = new_state(steps + 2, nparts)
    if nparts == 1:
        _rnn_backward_worker(0, state, bounds, d_outputs, d_h_last, w, u, code, mask, reverse, xh, z, dz, dh, partial,
                             dwub, dw, du, db, dx, dh0, need_dparams, steps)
    else:
        for me in prange(nparts):
            _rnn_backward_worker(me, state, bounds, d_outputs, d_h_last, w, u, code, mask, reverse, xh, z, dz, dh,
                                 partial, dwub, dw, du, db, dx, dh0, need_dparams, steps)
    return dx, dh0


# ----------------------------------------------------------------------------------------
# LSTM
#
# The LSTM kernels hold the batch as columns: every per-step quantity of step s (processing
# order) is a (rows, N) block, so that a step is one GEMM with the large operand on the left and
# its gate arithmetic runs over long contiguous runs.
#
#   xh (K, (T+1) N), K = F + nb + U (nb = 1 with a bias, else 0): column block s holds the input
#     of step s (rows 0..F), a row of ones (row F, with a bias) and the state h entering step s
#     (rows F+nb..); block T holds the final state.
#   wu (4U, K): [w.T, b, u.T] with its rows in grouped order, so that one product wu @ xh[:, s]
#     gives the input projection, the bias and the recurrent product of step s at once.
#
# The units are split into groups, one part per thread (a single group on one thread).  Group p
# (units a..b, k = b - a) owns rows 4a..4b of wu and of the gates: its i, f, g, o rows, k each,
# side by side.  Each step is a stage of a staged loop (staged.py): part p computes its rows of
# the step's product, its units' gate arithmetic and its rows of the next state, and the next
# step waits for every part.  Each thread packs only its share of the weights, for the whole
# batch.  The cache (gates, xh, cs, tanh_c, bounds):
#
#   gates (T, 4U, N): i, f, g, o after their activations, grouped order;
#   xh as above (the inputs and every state h, which the weight gradients need);
#   cs (T+1, U, N): the cell state entering each step, the final one last;
#   tanh_c (T, U, N): tanh of the cell state each step produced;
#   bounds (groups + 1,): the groups' bounds.
#
# Backward walks the steps backwards with the same parts: part p adds its rows of u @ dZ of the
# step after (dh of its units), runs its units' gate backward and writes its rows of dZ
# (4U, T N, standard gate order).  Then dW = xh @ dZ.T is one GEMM per part over a share of the
# rows of xh (the rows of w, b and u), and dx one GEMM per step, split by steps.


@njit(cache=True)
def _unit_groups(units, groups):
    """Bounds (groups + 1,) of ``groups`` groups of units (at most ``units``, at least 1)."""
    nparts = max(1, min(groups, units))
    bounds = np.empty(nparts + 1, dtype=np.int64)
    for p in range(nparts + 1):
        bounds[p] = (units * p) // nparts
    return bounds


@njit(cache=True, error_model="numpy")
def _lstm_cells(z, cp, cn, tc):
    """Gate arithmetic of one group's step on flat blocks: z (4m,) holds the pre-activations
    i, f, g, o (m each) and is overwritten with the activations; cp, cn, tc (m,): the cell
    state entering the step, the one it produces and its tanh."""
    m = cp.shape[0]
    _sigmoid_inplace(z[:2 * m])
    _tanh_inplace(z[2 * m:3 * m])
    _sigmoid_inplace(z[3 * m:])
    zi = z[:m]
    zf = z[m:2 * m]
    zg = z[2 * m:3 * m]
    for j in range(m):
        cn[j] = zf[j] * cp[j] + zi[j] * zg[j]
    _tanh_into(cn, tc)


@njit(cache=True, error_model="numpy")
def _lstm_cells_backward(z, cp, tc, dh, dc, dz):
    """Backward of ``_lstm_cells`` on flat blocks: from the gradients of h (dh, zeroed after
    use) and of the cell state (dc), the pre-activation gradients dz (4m,), and dc becomes the
    gradient of the cell state entering the step."""
    m = cp.shape[0]
    one = z.dtype.type(1.0)  # a literal 1.0 would widen float32 loops to float64
    zi = z[:m]
    zf = z[m:2 * m]
    zg = z[2 * m:3 * m]
    zo = z[3 * m:]
    dzi = dz[:m]
    dzf = dz[m:2 * m]
    dzg = dz[2 * m:3 * m]
    dzo = dz[3 * m:]
    for j in range(m):
        og = zo[j]
        th = tc[j]
        dzo[j] = dh[j] * th * og * (one - og)
        dc[j] += dh[j] * og * (one - th * th)
    for j in range(m):
        dzi[j] = dc[j] * zg[j] * zi[j] * (one - zi[j])
    for j in range(m):
        dzf[j] = dc[j] * cp[j] * zf[j] * (one - zf[j])
    for j in range(m):
        dzg[j] = dc[j] * zi[j] * (one - zg[j] * zg[j])
    for j in range(m):
        dc[j] *= zf[j]
        dh[j] = 0.0


@njit(cache=True)
def _step_has_mask(mask, t):
    if mask.shape[0] == 0:
        return False
    for i in range(mask.shape[0]):
        if mask[i, t] == 0:
            return True
    return False


@njit(cache=True)
def _lstm_forward_part(stage, p, bounds, x, w, u, b, h0, c0, mask, reverse, wu, xh, gates, cs, tanh_c,
                       outputs, h_last, c_last):
    """Part p of a stage of the forward: stage 0 lays out the group's rows of wu, a share of
    the inputs and the group's initial states; stage s + 1 runs step s for the group's units;
    the last stage writes a block of rows of the outputs and final states."""
    n, steps, f = x.shape
    units = u.shape[0]
    nparts = bounds.shape[0] - 1
    hoff = xh.shape[0] - units
    a = bounds[p]
    k = bounds[p + 1] - a
    if stage == 0:
        _lay_out(p, bounds, x, w, u, b, h0, reverse, wu, xh, 4)
        for j in range(k):
            for i in range(n):
                cs[0, a + j, i] = c0[i, a + j]
        return
    if stage <= steps:
        s = stage - 1
        r0 = 4 * a
        r1 = 4 * (a + k)
        gemm(wu[r0:r1], xh[:, s * n:(s + 1) * n], gates[s, r0:r1])
        cp = cs[s, a:a + k].reshape(k * n)
        cn = cs[s + 1, a:a + k].reshape(k * n)
        tc = tanh_c[s, a:a + k].reshape(k * n)
        z = gates[s, r0:r1].reshape(4 * k * n)
        _lstm_cells(z, cp, cn, tc)
        zo = z[3 * k * n:]
        c_in = s * n
        c_out = (s + 1) * n
        for j in range(k):
            row = xh[hoff + a + j]
            for i in range(n):
                row[c_out + i] = zo[j * n + i] * tc[j * n + i]
        # The group's columns of the step's outputs, read from the block while it is in cache.
        for i in range(n):
            out = outputs[i, s, a:a + k]
            for j in range(k):
                out[j] = zo[j * n + i] * tc[j * n + i]
        t = _time_of(s, steps, reverse)
        if _step_has_mask(mask, t):
            for i in range(n):
                if mask[i, t] == 0:
                    out = outputs[i, s, a:a + k]
                    for j in range(k):
                        row = xh[hoff + a + j]
                        row[c_out + i] = row[c_in + i]
                        cn[j * n + i] = cp[j * n + i]
                        out[j] = 0.0
        return
    i0, i1 = block_bounds(p, nparts, n)
    for i in range(i0, i1):
        for j in range(units):
            h_last[i, j] = xh[hoff + j, steps * n + i]
            c_last[i, j] = cs[steps, j, i]


@njit(cache=True)
def _lstm_forward_worker(me, state, bounds, x, w, u, b, h0, c0, mask, reverse, wu, xh, gates, cs, tanh_c,
                         outputs, h_last, c_last):
    nparts = bounds.shape[0] - 1
    for stage in range(x.shape[1] + 2):
        for q in range(nparts):
            p = (me + q) % nparts
            if claim(state, stage, p, nparts):
                _lstm_forward_part(stage, p, bounds, x, w, u, b, h0, c0, mask, reverse, wu, xh, gates, cs, tanh_c,
                                   outputs, h_last, c_last)
                publish(state, stage, p, nparts)
        wait_stage(state, stage, nparts)


@njit(cache=True, parallel=True)
def lstm_forward(x, w, u, b, h0, c0, mask, reverse, nblocks, unit_groups):
    """LSTM over a sequence, gate order i, f, g, o: z = x_t @ w + h_{t-1} @ u + b,
    c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t).

    x (N, T, F), w (F, 4U), u (U, 4U), b (4U,) or (0,), h0, c0 (N, U), mask (N, T) uint8 or
    (0, 0), reverse: bool.  The units are split into max(nblocks, unit_groups) groups (at most
    U), one part per thread; one group runs serial code that never enters prange.  Returns
    (outputs (N, T, U), h_last (N, U), c_last (N, U), cache).
    """
    n, steps, f = x.shape
    units = u.shape[0]
    dtype = x.dtype
    kk = f + (1 if b.shape[0] > 0 else 0) + units
    outputs = np.empty((n, steps, units), dtype=dtype)
    h_last = np.empty((n, units), dtype=dtype)
    c_last = np.empty((n, units), dtype=dtype)
    xh = np.empty((kk, (steps + 1) * n), dtype=dtype)
    wu = np.empty((4 * units, kk), dtype=dtype)
    gates = np.empty((steps, 4 * units, n), dtype=dtype)
    cs = np.empty((steps + 1, units, n), dtype=dtype)
    tanh_c = np.empty((steps, units, n), dtype=dtype)
    bounds = _unit_groups(units, max(nblocks, unit_groups) if steps > 0 and n > 0 else 1)
    nparts = bounds.shape[0] - 1
    state = new_state(steps + 2, nparts)
    if nparts == 1:
        _lstm_forward_worker(0, state, bounds, x, w, u, b, h0, c0, mask, reverse, wu, xh, gates, cs, tanh_c,
                             outputs, h_last, c_last)
    else:
        for me in prange(nparts):
            _lstm_forward_worker(me, state, bounds, x, w, u, b, h0, c0, mask, reverse, wu, xh, gates, cs, tanh_c,
                                 outputs, h_last, c_last)
    return outputs, h_last, c_last, (gates, xh, cs, tanh_c, bounds)


@njit(cache=True)
def _lstm_backward_part(stage, p, bounds, d_outputs, d_h_last, d_c_last, w, u, ug, mask, reverse, gates, xh, cs,
                        tanh_c, dz, dh, dc, scratch, partial, dwub, dw, du, db, dx, dh0, dc0, need_dparams):
    """Part p of a stage of the backward: stage k < T runs processed step T-1-k for the
    group's units (after adding its rows of the product of the step after it), stage T adds
    that of the first step and writes the group's columns of dh0 and dc0, stage T + 1 a share
    of the rows of the parameter gradients and of the steps of dx."""
    steps, _, n = gates.shape
    units = u.shape[0]
    nparts = bounds.shape[0] - 1
    hoff = xh.shape[0] - units
    f = w.shape[0]
    a = bounds[p]
    k = bounds[p + 1] - a
    m = k * n
    if stage == 0:
        for j in range(k):
            for i in range(n):
                dh[a + j, i] = d_h_last[i, a + j]
                dc[a + j, i] = d_c_last[i, a + j]
        for r in range(units):
            src = u[r]
            dst = ug[r]
            for g in range(4):
                for j in range(k):
                    dst[4 * a + g * k + j] = src[g * units + a + j]
    elif stage <= steps:
        _add_partials(partial[(stage - 1) % 2], dh, a, k)
    if stage < steps:
        s = steps - 1 - stage
        t = _time_of(s, steps, reverse)
        has_mask = _step_has_mask(mask, t)
        if d_outputs.shape[0] > 0:
            for j in range(k):
                for i in range(n):
                    if not has_mask or mask[i, t] != 0:
                        dh[a + j, i] += d_outputs[i, s, a + j]
        z = gates[s, 4 * a:4 * (a + k)].reshape(4 * m)
        cp = cs[s, a:a + k].reshape(m)
        tc = tanh_c[s, a:a + k].reshape(m)
        dhb = dh[a:a + k].reshape(m)
        dcb = dc[a:a + k].reshape(m)
        dzb = scratch[4 * a * n:4 * (a + k) * n]
        if has_mask:
            # Carry dh and dc through the masked columns, whose pre-activations get no gradient.
            keep_h = np.empty(m, dtype=dhb.dtype)
            keep_c = np.empty(m, dtype=dhb.dtype)
            for e in range(m):
                keep_h[e] = dhb[e]
                keep_c[e] = dcb[e]
            _lstm_cells_backward(z, cp, tc, dhb, dcb, dzb)
            for i in range(n):
                if mask[i, t] == 0:
                    for j in range(k):
                        e = j * n + i
                        dhb[e] = keep_h[e]
                        dcb[e] = keep_c[e]
                        for g in range(4):
                            dzb[g * m + e] = 0.0
        else:
            _lstm_cells_backward(z, cp, tc, dhb, dcb, dzb)
        c0s = s * n
        for g in range(4):
            for j in range(k):
                row = dz[g * units + a + j]
                src = g * m + j * n
                for i in range(n):
                    row[c0s + i] = dzb[src + i]
        # This group's share of dh entering the step, for every unit: the other parts add the
        # rows of their units at the next stage.
        gemm(ug[:, 4 * a:4 * (a + k)], dzb.reshape(4 * k, n), partial[stage % 2, p])
        return
    if stage == steps:
        for i in range(n):
            for j in range(k):
                dh0[i, a + j] = dh[a + j, i]
                dc0[i, a + j] = dc[a + j, i]
        return
    _params_and_dx_part(p, nparts, xh, dz, dwub, dw, du, db, w, dx, f, hoff, n, steps, reverse, need_dparams)


@njit(cache=True)
def _add_partials(partial, dh, a, k):
    """dh[a:a+k] += the sum over parts of partial[q, a:a+k]."""
    n = dh.shape[1]
    for q in range(partial.shape[0]):
        src = partial[q, a:a + k].reshape(k * n)
        dst = dh[a:a + k].reshape(k * n)
        for e in range(k * n):
            dst[e] += src[e]


@njit(cache=True)
def _lstm_backward_worker(me, state, bounds, d_outputs, d_h_last, d_c_last, w, u, ug, mask, reverse, gates, xh, cs,
                          tanh_c, dz, dh, dc, scratch, partial, dwub, dw, du, db, dx, dh0, dc0, need_dparams):
    nparts = bounds.shape[0] - 1
    for stage in range(gates.shape[0] + 2):
        for q in range(nparts):
            p = (me + q) % nparts
            if claim(state, stage, p, nparts):
                _lstm_backward_part(stage, p, bounds, d_outputs, d_h_last, d_c_last, w, u, ug, mask, reverse, gates,
                                    xh, cs, tanh_c, dz, dh, dc, scratch, partial, dwub, dw, du, db, dx, dh0, dc0,
                                    need_dparams)
                publish(state, stage, p, nparts)
        wait_stage(state, stage, nparts)


@njit(cache=True, parallel=True)
def lstm_backward(d_outputs, d_h_last, d_c_last, x, w, u, mask, reverse, cache, dw, du, db,
                  need_dx, need_dparams, nblocks):
    """Backward of ``lstm_forward``.

    d_outputs (N, T, U) or (0, 0, 0), d_h_last, d_c_last (N, U); x, w, u, mask, reverse as given
    to the forward, cache as it returned (which also fixes the split: ``nblocks`` is unused).
    Accumulates into dw (F, 4U), du (U, 4U), db (4U,) (or (0,)) when need_dparams.  Returns
    (dx (N, T, F) or (0, T, F), dh0 (N, U), dc0 (N, U)).
    """
    gates, xh, cs, tanh_c, bounds = cache
    n, steps, f = x.shape
    units = u.shape[0]
    dtype = x.dtype
    dz = np.empty((4 * units, steps * n), dtype=dtype)
    dh = np.empty((units, n), dtype=dtype)
    dc = np.empty((units, n), dtype=dtype)
    scratch = np.empty(4 * units * n, dtype=dtype)
    dh0 = np.empty((n, units), dtype=dtype)
    dc0 = np.empty((n, units), dtype=dtype)
    dx = np.empty((n if need_dx else 0, steps, f), dtype=dtype)
    nparts = bounds.shape[0] - 1
    ug = np.empty((units, 4 * units), dtype=dtype)
    partial = np.empty((2, nparts, units, n), dtype=dtype)
    dwub = np.empty((xh.shape[0] if need_dparams else 0, 4 * units), dtype=dtype)
    state = new_state(steps + 2, nparts)
    if nparts == 1:
        _lstm_backward_worker(0, state, bounds, d_outputs, d_h_last, d_c_last, w, u, ug, mask, reverse, gates, xh,
                              cs, tanh_c, dz, dh, dc, scratch, partial, dwub, dw, du, db, dx, dh0, dc0, need_dparams)
    else:
        for me in prange(nparts):
            _lstm_backward_worker(me, state, bounds, d_outputs, d_h_last, d_c_last, w, u, ug, mask, reverse, gates,
                                  xh, cs, tanh_c, dz, dh, dc, scratch, partial, dwub, dw, du, db, dx, dh0, dc0,
                                  need_dparams)
    return dx, dh0, dc0


# ----------------------------------------------------------------------------------------
# GRU


@njit(cache=True)
def _gru_forward_rows(x2, w, u, ut, b, rb, h0, mask, reverse, gates, hn, h_prev, hu, outputs, h_last, hts, zts,
                      i0, i1):
    n, steps, g3 = gates.shape
    units = u.shape[0]
    if i1 <= i0:
        return
    hu3 = hu.reshape(hu.shape[0], 1, hu.shape[1])
    _project_rows(x2, w, b, gates.reshape(n * steps, g3), i0 * steps, i1 * steps)
    if steps == 0:
        _copy_rows(h0, h_last, i0, i1)
        return
    t = _time_of(0, steps, reverse)
    _copy_rows_to_step(h0, h_prev, t, i0, i1)
    masked = mask.shape[0] > 0
    rb_rz = rb[:2 * units]
    rb_n = rb[2 * units:]
    for s in range(steps):
        t = _time_of(s, steps, reverse)
        tn = t - 1 if reverse else t + 1
        last = s == steps - 1
        # The recurrent part goes to its own buffer: r gates h @ u_n + rb_n separately.
        _step_product(h_prev, t, u, ut, False, hu3, 0, False, hts, zts, i0, i1)
        for i in range(i0, i1):
            hp = h_prev[i, t]
            hnext = h_last[i] if last else h_prev[i, tn]
            out = outputs[i, s]
            if masked and mask[i, t] == 0:
                for j in range(units):
                    hnext[j] = hp[j]
                    out[j] = 0.0
                continue
            zr = gates[i, t]
            zrz = zr[:2 * units]
            rg = zr[:units]
            zg = zr[units:2 * units]
            ng = zr[2 * units:]
            hur = hu[i]
            hu_rz = hur[:2 * units]
            hu_n = hur[2 * units:]
            hnr = hn[i, t]
            for j in range(2 * units):
                zrz[j] += hu_rz[j] + rb_rz[j]
            _sigmoid_inplace(zrz)
            for j in range(units):
                hnr[j] = hu_n[j] + rb_n[j]
            for j in range(units):
                ng[j] += rg[j] * hnr[j]
            _tanh_inplace(ng)
            for j in range(units):
                h = ng[j] + zg[j] * (hp[j] - ng[j])  # (1 - z) n + z h
                hnext[j] = h
                out[j] = h


@njit(cache=True, parallel=True)
def gru_forward(x, w, u, b, rb, h0, mask, reverse, nblocks):
    """GRU over a sequence, gate order r, z, n (reset gate after the recurrent product, as
    PyTorch and Keras' reset_after): xr, xz, xn = x_t @ w + b; hr, hz, hn = h_{t-1} @ u + rb;
    r = sigmoid(xr + hr), z = sigmoid(xz + hz), n = tanh(xn + r * hn),
    h_t = (1 - z) * n + z * h_{t-1}.

    x (N, T, F), w (F, 3U), u (U, 3U), b (3U,) or (0,), rb (3U,) or (0,), h0 (N, U), mask (N, T)
    uint8 or (0, 0), reverse: bool.  Returns (outputs (N, T, U), h_last (N, U), cache).
    """
    n, steps, f = x.shape
    units = u.shape[0]
    dtype = x.dtype
    gates = np.empty((n, steps, 3 * units), dtype=dtype)
    hn = np.empty((n, steps, units), dtype=dtype)
    h_prev = np.empty((n, steps, units), dtype=dtype)
    hu = np.empty((n, 3 * units), dtype=dtype)
    outputs = np.empty((n, steps, units), dtype=dtype)
    h_last = np.empty((n, units), dtype=dtype)
    rbias = rb if rb.shape[0] > 0 else _zeros1(3 * units, x)
    x2 = x.reshape(n * steps, f)
    ut = _transposed(u)
    hts = np.empty((units, n), dtype=dtype)
    zts = np.empty((3 * units, n), dtype=dtype)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _gru_forward_rows(x2, w, u, ut, b, rbias, h0, mask, reverse, gates, hn, h_prev, hu, outputs, h_last, hts,
                          zts, *block_bounds(0, 1, n))
    else:
        for blk in prange(nb):
            _gru_forward_rows(x2, w, u, ut, b, rbias, h0, mask, reverse, gates, hn, h_prev, hu, outputs, h_last,
                              hts, zts, *block_bounds(blk, nb, n))
    return outputs, h_last, (gates, hn, h_prev)


@njit(cache=True)
def _gru_backward_rows(d_outputs, d_h_last, u, mask, reverse, gates, hn, h_prev, w, dzh, dxn, dh, dx2,
                       dzts, dhts, i0, i1):
    n, steps, g3 = gates.shape
    units = u.shape[0]
    one = gates.dtype.type(1.0)  # a literal 1.0 would widen float32 loops to float64
    if i1 <= i0:
        return
    dh3 = dh.reshape(dh.shape[0], 1, dh.shape[1])  # (N, 1, U): the 3-D form _step_product takes
    _copy_rows(d_h_last, dh, i0, i1)
    masked = mask.shape[0] > 0
    have_dout = d_outputs.shape[0] > 0
    for s in range(steps - 1, -1, -1):
        t = _time_of(s, steps, reverse)
        for i in range(i0, i1):
            dzr = dzh[i, t]
            dxr = dxn[i, t]
            if masked and mask[i, t] == 0:
                _zero(dzr)
                _zero(dxr)
                continue
            dhr = dh[i]
            if have_dout:
                dor = d_outputs[i, s]
                for j in range(units):
                    dhr[j] += dor[j]
            zr = gates[i, t]
            rg = zr[:units]
            zg = zr[units:2 * units]
            ng = zr[2 * units:]
            d_r = dzr[:units]
            d_z = dzr[units:2 * units]
            d_hn = dzr[2 * units:]
            hnr = hn[i, t]
            hp = h_prev[i, t]
            for j in range(units):
                dxr[j] = dhr[j] * (one - zg[j]) * (one - ng[j] * ng[j])
            for j in range(units):
                d_z[j] = dhr[j] * (hp[j] - ng[j]) * zg[j] * (one - zg[j])
            for j in range(units):
                d_r[j] = dxr[j] * hnr[j] * rg[j] * (one - rg[j])
            for j in range(units):
                d_hn[j] = dxr[j] * rg[j]
            for j in range(units):
                dhr[j] *= zg[j]
        # dzh holds the gradient of h @ u + rb (r, z and r-gated n parts): one GEMM per step.
        _step_product(dzh, t, u, u, True, dh3, 0, True, dzts, dhts, i0, i1)
    if dx2.shape[0] > 0:
        # The input side differs from dzh only in the n third (dxn, not gated by r).
        r0 = i0 * steps
        r1 = i1 * steps
        gemm(dzh.reshape(n * steps, g3)[r0:r1, :2 * units], w[:, :2 * units], dx2[r0:r1], False, True)
        gemm(dxn.reshape(n * steps, units)[r0:r1], w[:, 2 * units:], dx2[r0:r1], False, True, 1.0, 1.0)


@njit(cache=True)
def _gru_param_grads_part(x2, hp2, dzh2, dxn2, dw, du, db, drb, part, nparts):
    units = du.shape[0]
    k0, k1 = block_bounds(part, nparts, dw.shape[0])
    gemm(x2[:, k0:k1], dzh2[:, :2 * units], dw[k0:k1, :2 * units], True, False, 1.0, 1.0)
    gemm(x2[:, k0:k1], dxn2, dw[k0:k1, 2 * units:], True, False, 1.0, 1.0)
    k0, k1 = block_bounds(part, nparts, units)
    gemm(hp2[:, k0:k1], dzh2, du[k0:k1], True, False, 1.0, 1.0)
    j0, j1 = block_bounds(part, nparts, 3 * units)
    if db.shape[0] > 0:
        _col_sums(dzh2, db, j0, min(j1, 2 * units), np.int64(0))
        _col_sums(dxn2, db, max(j0, 2 * units) - 2 * units, j1 - 2 * units, 2 * units)
    if drb.shape[0] > 0:
        _col_sums(dzh2, drb, j0, j1, np.int64(0))


@njit(cache=True, parallel=True)
def gru_backward(d_outputs, d_h_last, x, w, u, mask, reverse, cache, dw, du, db, drb,
                 need_dx, need_dparams, nblocks):
    """Backward of ``gru_forward``.

    d_outputs (N, T, U) or (0, 0, 0), d_h_last (N, U); x, w, u, mask, reverse as given to the
    forward, cache as it returned.  Accumulates into dw (F, 3U), du (U, 3U), db (3U,) and
    drb (3U,) (either bias may be (0,)) when need_dparams.  Returns (dx (N, T, F) or (0, T, F),
    dh0 (N, U)).
    """
    gates, hn, h_prev = cache
    n, steps, f = x.shape
    units = u.shape[0]
    dtype = x.dtype
    dzh = np.empty((n, steps, 3 * units), dtype=dtype)
    dxn = np.empty((n, steps, units), dtype=dtype)
    dh = np.empty((n, units), dtype=dtype)
    dx = np.empty((n if need_dx else 0, steps, f), dtype=dtype)
    dx2 = dx.reshape(dx.shape[0] * steps, f)
    dzts = np.empty((3 * units, n), dtype=dtype)
    dhts = np.empty((units, n), dtype=dtype)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _gru_backward_rows(d_outputs, d_h_last, u, mask, reverse, gates, hn, h_prev, w, dzh, dxn, dh, dx2,
                           dzts, dhts, *block_bounds(0, 1, n))
    else:
        for blk in prange(nb):
            _gru_backward_rows(d_outputs, d_h_last, u, mask, reverse, gates, hn, h_prev, w, dzh, dxn, dh,
                               dx2, dzts, dhts, *block_bounds(blk, nb, n))
    if need_dparams:
        x2 = x.reshape(n * steps, f)
        hp2 = h_prev.reshape(n * steps, units)
        dzh2 = dzh.reshape(n * steps, 3 * units)
        dxn2 = dxn.reshape(n * steps, units)
        if nblocks <= 1:
            _gru_param_grads_part(x2, hp2, dzh2, dxn2, dw, du, db, drb, np.int64(0), 1)
        else:
            for part in prange(nblocks):
                _gru_param_grads_part(x2, hp2, dzh2, dxn2, dw, du, db, drb, np.int64(part), nblocks)
    return dx, dh
