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
step is masked).  Everything else the kernels keep (gates, states) is indexed by input time t,
so that its rows line up with the rows of x.

Algorithm.  The input projection of all steps is one GEMM per row block, (rows*T, F) @ w + b,
written into the gate buffer.  The recurrence is independent per sample, so the batch is split
into ``nblocks`` row blocks and each block runs the whole time loop on its own (no
synchronisation between steps): per step one small GEMM h @ u accumulated into the step's
gate rows, then the gate arithmetic fused in one pass per row.  Backward walks the steps
backwards per row block, storing the pre-activation gradients dZ of every step and carrying
the state gradients (dh_prev = dZ_t @ u.T + ...); the parameter gradients are then big GEMMs
over all N*T rows (dw += X.T @ dZ, du += H_prev.T @ dZ, db += column sums of dZ), split across
threads by rows of the parameter (columns for the biases), so no thread writes what another
writes; dx = dZ @ w.T is one GEMM per row block.  ``nblocks == 1`` runs serial code that never
enters prange.

Backward conventions.  ``d_outputs`` (N, T, U) is the gradient of ``outputs`` (processing order;
pass a (0, 0, 0) array when no output is used) and ``d_h_last`` (and ``d_c_last``) the
gradient of the final state; the two are added.  A layer with return_sequences=False may put
the gradient of outputs[:, -1] either in ``d_outputs[:, -1]`` or in ``d_h_last`` -- the latter
is equivalent only when the last processed step is not masked, so the former is the exact one.
Gradient buffers dw, du, db (and drb) are accumulated into (+=); ``need_dparams=False`` leaves
them untouched and ``need_dx=False`` returns an empty (0, T, F) dx.

Caches (the last element returned by each forward; pass it unchanged to backward):

- SimpleRNN: (y, z, h_prev).  y (N, T, U): the activation of each step's pre-activation;
  z (N, T, U): the pre-activation when the activation's derivative needs it (gelu, swish),
  else a (0, 0, 0) array (y then overwrote it in place); h_prev (N, T, U): the state entering
  each step.
- LSTM: (gates, h_prev, c_prev, tanh_c).  gates (N, T, 4U): i, f, g, o after their
  activations; h_prev, c_prev (N, T, U): the states entering each step; tanh_c (N, T, U):
  tanh of the cell state each step produced.
- GRU: (gates, hn, h_prev).  gates (N, T, 3U): r, z, n after their activations; hn (N, T, U):
  h_prev @ u_n + rb_n, the recurrent part that r gates; h_prev (N, T, U) as above.

At masked steps the gate entries of the cache are unspecified (backward gives them zero
gradient and never reads them).
"""
import math

import numpy as np
from numba import njit, prange

from .activations import GELU, SWISH, activation_grad_rows, activation_rows, block_bounds
from .blas import gemm


@njit(cache=True, inline="always")
def _sigmoid(v):
    # exp(-|v|) never overflows; the two branches of activations._sigmoid become one select,
    # which keeps a random sign pattern from costing a mispredicted branch per element.
    e = math.exp(-abs(v))
    s = 1.0 / (1.0 + e)
    return s if v >= 0 else e * s


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
    for r in range(a.shape[0]):
        ar = a[r]
        for j in range(j0, j1):
            out[offset + j] += ar[j]


@njit(cache=True)
def _param_grads_part(x2, hp2, dz2, dw, du, db, part, nparts):
    """Part ``part`` (an int64) of nparts of dw += X.T @ dZ, du += H_prev.T @ dZ,
    db += sum(dZ): rows of dw and du and columns of db, so the parts write disjoint memory."""
    k0, k1 = block_bounds(part, nparts, dw.shape[0])
    gemm(x2[:, k0:k1], dz2, dw[k0:k1], True, False, 1.0, 1.0)
    k0, k1 = block_bounds(part, nparts, du.shape[0])
    gemm(hp2[:, k0:k1], dz2, du[k0:k1], True, False, 1.0, 1.0)
    if db.shape[0] > 0:
        j0, j1 = block_bounds(part, nparts, db.shape[0])
        _col_sums(dz2, db, j0, j1, 0)


@njit(cache=True)
def _time_of(s, steps, reverse):
    return steps - 1 - s if reverse else s


# ----------------------------------------------------------------------------------------
# SimpleRNN


@njit(cache=True)
def _rnn_forward_rows(x2, w, u, b, h0, code, mask, reverse, z, y, h_prev, outputs, h_last, i0, i1):
    n, steps, units = z.shape
    if i1 <= i0:
        return
    _project_rows(x2, w, b, z.reshape(n * steps, units), i0 * steps, i1 * steps)
    if steps == 0:
        h_last[i0:i1] = h0[i0:i1]
        return
    t = _time_of(0, steps, reverse)
    h_prev[i0:i1, t] = h0[i0:i1]
    masked = mask.shape[0] > 0
    for s in range(steps):
        t = _time_of(s, steps, reverse)
        tn = t - 1 if reverse else t + 1
        last = s == steps - 1
        gemm(h_prev[i0:i1, t], u, z[i0:i1, t], False, False, 1.0, 1.0)
        activation_rows(z[i0:i1, t], y[i0:i1, t], code, 0, i1 - i0)
        for i in range(i0, i1):
            hn = h_last[i] if last else h_prev[i, tn]
            out = outputs[i, s]
            if masked and mask[i, t] == 0:
                hp = h_prev[i, t]
                for j in range(units):
                    hn[j] = hp[j]
                    out[j] = 0.0
            else:
                yr = y[i, t]
                for j in range(units):
                    hn[j] = yr[j]
                    out[j] = yr[j]


@njit(cache=True, parallel=True)
def simple_rnn_forward(x, w, u, b, h0, code, mask, reverse, nblocks):
    """SimpleRNN over a sequence: h_t = act(x_t @ w + b + h_{t-1} @ u).

    x (N, T, F), w (F, U), u (U, U), b (U,) or (0,), h0 (N, U), code: activation code,
    mask (N, T) uint8 or (0, 0), reverse: bool.  Returns (outputs (N, T, U), h_last (N, U),
    cache); see the module docstring for the cache and the conventions.
    """
    n, steps, f = x.shape
    units = u.shape[0]
    dtype = x.dtype
    keep_z = code == GELU or code == SWISH
    z = np.empty((n, steps, units), dtype=dtype)
    y = np.empty((n, steps, units), dtype=dtype) if keep_z else z
    h_prev = np.empty((n, steps, units), dtype=dtype)
    outputs = np.empty((n, steps, units), dtype=dtype)
    h_last = np.empty((n, units), dtype=dtype)
    x2 = x.reshape(n * steps, f)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _rnn_forward_rows(x2, w, u, b, h0, code, mask, reverse, z, y, h_prev, outputs, h_last,
                          *block_bounds(0, 1, n))
    else:
        for blk in prange(nb):
            _rnn_forward_rows(x2, w, u, b, h0, code, mask, reverse, z, y, h_prev, outputs, h_last,
                              *block_bounds(blk, nb, n))
    if not keep_z:
        z = np.empty((0, 0, 0), dtype=dtype)
    return outputs, h_last, (y, z, h_prev)


@njit(cache=True)
def _rnn_backward_rows(d_outputs, d_h_last, u, code, mask, reverse, y, zs, w, dz, dh, dx2, i0, i1):
    n, steps, units = y.shape
    if i1 <= i0:
        return
    dh[i0:i1] = d_h_last[i0:i1]
    masked = mask.shape[0] > 0
    have_dout = d_outputs.shape[0] > 0
    for s in range(steps - 1, -1, -1):
        t = _time_of(s, steps, reverse)
        if have_dout:
            for i in range(i0, i1):
                if not (masked and mask[i, t] == 0):
                    dhr = dh[i]
                    dor = d_outputs[i, s]
                    for j in range(units):
                        dhr[j] += dor[j]
        activation_grad_rows(dh[i0:i1], y[i0:i1, t], zs[i0:i1, t], code, dz[i0:i1, t], 0, i1 - i0)
        for i in range(i0, i1):
            if masked and mask[i, t] == 0:
                # The state went through unchanged: its gradient passes straight back.
                dz[i, t] = 0.0
            else:
                dh[i] = 0.0
        gemm(dz[i0:i1, t], u, dh[i0:i1], False, True, 1.0, 1.0)
    if dx2.shape[0] > 0:
        gemm(dz.reshape(n * steps, units)[i0 * steps:i1 * steps], w, dx2[i0 * steps:i1 * steps], False, True)


@njit(cache=True, parallel=True)
def simple_rnn_backward(d_outputs, d_h_last, x, w, u, code, mask, reverse, cache, dw, du, db,
                        need_dx, need_dparams, nblocks):
    """Backward of ``simple_rnn_forward``.

    d_outputs (N, T, U) or (0, 0, 0), d_h_last (N, U); x, w, u, code, mask, reverse as given to
    the forward, cache as it returned.  Accumulates into dw (F, U), du (U, U), db (U,) (a (0,)
    array for no bias) when need_dparams.  Returns (dx (N, T, F) or (0, T, F), dh0 (N, U)).
    """
    y, z, h_prev = cache
    n, steps, f = x.shape
    units = u.shape[0]
    dtype = x.dtype
    zs = z if z.shape[0] > 0 else y
    dz = np.empty((n, steps, units), dtype=dtype)
    dh = np.empty((n, units), dtype=dtype)
    dx = np.empty((n if need_dx else 0, steps, f), dtype=dtype)
    dx2 = dx.reshape(dx.shape[0] * steps, f)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _rnn_backward_rows(d_outputs, d_h_last, u, code, mask, reverse, y, zs, w, dz, dh, dx2,
                           *block_bounds(0, 1, n))
    else:
        for blk in prange(nb):
            _rnn_backward_rows(d_outputs, d_h_last, u, code, mask, reverse, y, zs, w, dz, dh, dx2,
                               *block_bounds(blk, nb, n))
    if need_dparams:
        x2 = x.reshape(n * steps, f)
        hp2 = h_prev.reshape(n * steps, units)
        dz2 = dz.reshape(n * steps, units)
        if nblocks <= 1:
            _param_grads_part(x2, hp2, dz2, dw, du, db, np.int64(0), 1)
        else:
            for part in prange(nblocks):
                _param_grads_part(x2, hp2, dz2, dw, du, db, np.int64(part), nblocks)
    return dx, dh


# ----------------------------------------------------------------------------------------
# LSTM


@njit(cache=True)
def _lstm_forward_rows(x2, w, u, b, h0, c0, mask, reverse, gates, h_prev, c_prev, tanh_c, outputs,
                       h_last, c_last, i0, i1):
    n, steps, g4 = gates.shape
    units = u.shape[0]
    if i1 <= i0:
        return
    _project_rows(x2, w, b, gates.reshape(n * steps, g4), i0 * steps, i1 * steps)
    if steps == 0:
        h_last[i0:i1] = h0[i0:i1]
        c_last[i0:i1] = c0[i0:i1]
        return
    t = _time_of(0, steps, reverse)
    h_prev[i0:i1, t] = h0[i0:i1]
    c_prev[i0:i1, t] = c0[i0:i1]
    masked = mask.shape[0] > 0
    for s in range(steps):
        t = _time_of(s, steps, reverse)
        tn = t - 1 if reverse else t + 1
        last = s == steps - 1
        gemm(h_prev[i0:i1, t], u, gates[i0:i1, t], False, False, 1.0, 1.0)
        for i in range(i0, i1):
            hp = h_prev[i, t]
            cp = c_prev[i, t]
            hn = h_last[i] if last else h_prev[i, tn]
            cn = c_last[i] if last else c_prev[i, tn]
            out = outputs[i, s]
            if masked and mask[i, t] == 0:
                for j in range(units):
                    hn[j] = hp[j]
                    cn[j] = cp[j]
                    out[j] = 0.0
                continue
            zr = gates[i, t]
            tc = tanh_c[i, t]
            for j in range(units):
                ig = _sigmoid(zr[j])
                fg = _sigmoid(zr[units + j])
                gg = math.tanh(zr[2 * units + j])
                og = _sigmoid(zr[3 * units + j])
                c = fg * cp[j] + ig * gg
                th = math.tanh(c)
                h = og * th
                zr[j] = ig
                zr[units + j] = fg
                zr[2 * units + j] = gg
                zr[3 * units + j] = og
                tc[j] = th
                cn[j] = c
                hn[j] = h
                out[j] = h


@njit(cache=True, parallel=True)
def lstm_forward(x, w, u, b, h0, c0, mask, reverse, nblocks):
    """LSTM over a sequence, gate order i, f, g, o: z = x_t @ w + h_{t-1} @ u + b,
    c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t).

    x (N, T, F), w (F, 4U), u (U, 4U), b (4U,) or (0,), h0, c0 (N, U), mask (N, T) uint8 or
    (0, 0), reverse: bool.  Returns (outputs (N, T, U), h_last (N, U), c_last (N, U), cache).
    """
    n, steps, f = x.shape
    units = u.shape[0]
    dtype = x.dtype
    gates = np.empty((n, steps, 4 * units), dtype=dtype)
    h_prev = np.empty((n, steps, units), dtype=dtype)
    c_prev = np.empty((n, steps, units), dtype=dtype)
    tanh_c = np.empty((n, steps, units), dtype=dtype)
    outputs = np.empty((n, steps, units), dtype=dtype)
    h_last = np.empty((n, units), dtype=dtype)
    c_last = np.empty((n, units), dtype=dtype)
    x2 = x.reshape(n * steps, f)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _lstm_forward_rows(x2, w, u, b, h0, c0, mask, reverse, gates, h_prev, c_prev, tanh_c, outputs,
                           h_last, c_last, *block_bounds(0, 1, n))
    else:
        for blk in prange(nb):
            _lstm_forward_rows(x2, w, u, b, h0, c0, mask, reverse, gates, h_prev, c_prev, tanh_c, outputs,
                               h_last, c_last, *block_bounds(blk, nb, n))
    return outputs, h_last, c_last, (gates, h_prev, c_prev, tanh_c)


@njit(cache=True)
def _lstm_backward_rows(d_outputs, d_h_last, d_c_last, u, mask, reverse, gates, c_prev, tanh_c, w, dz,
                        dh, dc, dx2, i0, i1):
    n, steps, g4 = gates.shape
    units = u.shape[0]
    if i1 <= i0:
        return
    dh[i0:i1] = d_h_last[i0:i1]
    dc[i0:i1] = d_c_last[i0:i1]
    masked = mask.shape[0] > 0
    have_dout = d_outputs.shape[0] > 0
    for s in range(steps - 1, -1, -1):
        t = _time_of(s, steps, reverse)
        for i in range(i0, i1):
            dzr = dz[i, t]
            if masked and mask[i, t] == 0:
                dzr[:] = 0.0
                continue
            dhr = dh[i]
            dcr = dc[i]
            if have_dout:
                dor = d_outputs[i, s]
                for j in range(units):
                    dhr[j] += dor[j]
            zr = gates[i, t]
            cp = c_prev[i, t]
            tc = tanh_c[i, t]
            for j in range(units):
                ig = zr[j]
                fg = zr[units + j]
                gg = zr[2 * units + j]
                og = zr[3 * units + j]
                th = tc[j]
                d_h = dhr[j]
                d_c = dcr[j] + d_h * og * (1.0 - th * th)
                dzr[j] = d_c * gg * ig * (1.0 - ig)
                dzr[units + j] = d_c * cp[j] * fg * (1.0 - fg)
                dzr[2 * units + j] = d_c * ig * (1.0 - gg * gg)
                dzr[3 * units + j] = d_h * th * og * (1.0 - og)
                dcr[j] = d_c * fg
                dhr[j] = 0.0
        gemm(dz[i0:i1, t], u, dh[i0:i1], False, True, 1.0, 1.0)
    if dx2.shape[0] > 0:
        gemm(dz.reshape(n * steps, g4)[i0 * steps:i1 * steps], w, dx2[i0 * steps:i1 * steps], False, True)


@njit(cache=True, parallel=True)
def lstm_backward(d_outputs, d_h_last, d_c_last, x, w, u, mask, reverse, cache, dw, du, db,
                  need_dx, need_dparams, nblocks):
    """Backward of ``lstm_forward``.

    d_outputs (N, T, U) or (0, 0, 0), d_h_last, d_c_last (N, U); x, w, u, mask, reverse as given
    to the forward, cache as it returned.  Accumulates into dw (F, 4U), du (U, 4U), db (4U,) (or
    (0,)) when need_dparams.  Returns (dx (N, T, F) or (0, T, F), dh0 (N, U), dc0 (N, U)).
    """
    gates, h_prev, c_prev, tanh_c = cache
    n, steps, f = x.shape
    units = u.shape[0]
    dtype = x.dtype
    dz = np.empty((n, steps, 4 * units), dtype=dtype)
    dh = np.empty((n, units), dtype=dtype)
    dc = np.empty((n, units), dtype=dtype)
    dx = np.empty((n if need_dx else 0, steps, f), dtype=dtype)
    dx2 = dx.reshape(dx.shape[0] * steps, f)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _lstm_backward_rows(d_outputs, d_h_last, d_c_last, u, mask, reverse, gates, c_prev, tanh_c, w, dz,
                            dh, dc, dx2, *block_bounds(0, 1, n))
    else:
        for blk in prange(nb):
            _lstm_backward_rows(d_outputs, d_h_last, d_c_last, u, mask, reverse, gates, c_prev, tanh_c, w,
                                dz, dh, dc, dx2, *block_bounds(blk, nb, n))
    if need_dparams:
        x2 = x.reshape(n * steps, f)
        hp2 = h_prev.reshape(n * steps, units)
        dz2 = dz.reshape(n * steps, 4 * units)
        if nblocks <= 1:
            _param_grads_part(x2, hp2, dz2, dw, du, db, np.int64(0), 1)
        else:
            for part in prange(nblocks):
                _param_grads_part(x2, hp2, dz2, dw, du, db, np.int64(part), nblocks)
    return dx, dh, dc


# ----------------------------------------------------------------------------------------
# GRU


@njit(cache=True)
def _gru_forward_rows(x2, w, u, b, rb, h0, mask, reverse, gates, hn, h_prev, hu, outputs, h_last, i0, i1):
    n, steps, g3 = gates.shape
    units = u.shape[0]
    if i1 <= i0:
        return
    _project_rows(x2, w, b, gates.reshape(n * steps, g3), i0 * steps, i1 * steps)
    if steps == 0:
        h_last[i0:i1] = h0[i0:i1]
        return
    t = _time_of(0, steps, reverse)
    h_prev[i0:i1, t] = h0[i0:i1]
    masked = mask.shape[0] > 0
    for s in range(steps):
        t = _time_of(s, steps, reverse)
        tn = t - 1 if reverse else t + 1
        last = s == steps - 1
        # The recurrent part goes to its own buffer: r gates h @ u_n + rb_n separately.
        gemm(h_prev[i0:i1, t], u, hu[i0:i1])
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
            hur = hu[i]
            hnr = hn[i, t]
            for j in range(units):
                rg = _sigmoid(zr[j] + hur[j] + rb[j])
                zg = _sigmoid(zr[units + j] + hur[units + j] + rb[units + j])
                hv = hur[2 * units + j] + rb[2 * units + j]
                ng = math.tanh(zr[2 * units + j] + rg * hv)
                h = (1.0 - zg) * ng + zg * hp[j]
                zr[j] = rg
                zr[units + j] = zg
                zr[2 * units + j] = ng
                hnr[j] = hv
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
    rbias = rb if rb.shape[0] > 0 else np.zeros(3 * units, dtype=dtype)
    x2 = x.reshape(n * steps, f)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _gru_forward_rows(x2, w, u, b, rbias, h0, mask, reverse, gates, hn, h_prev, hu, outputs, h_last,
                          *block_bounds(0, 1, n))
    else:
        for blk in prange(nb):
            _gru_forward_rows(x2, w, u, b, rbias, h0, mask, reverse, gates, hn, h_prev, hu, outputs, h_last,
                              *block_bounds(blk, nb, n))
    return outputs, h_last, (gates, hn, h_prev)


@njit(cache=True)
def _gru_backward_rows(d_outputs, d_h_last, u, mask, reverse, gates, hn, h_prev, w, dzh, dxn, dh, dx2,
                       i0, i1):
    n, steps, g3 = gates.shape
    units = u.shape[0]
    if i1 <= i0:
        return
    dh[i0:i1] = d_h_last[i0:i1]
    masked = mask.shape[0] > 0
    have_dout = d_outputs.shape[0] > 0
    for s in range(steps - 1, -1, -1):
        t = _time_of(s, steps, reverse)
        for i in range(i0, i1):
            dzr = dzh[i, t]
            dxr = dxn[i, t]
            if masked and mask[i, t] == 0:
                dzr[:] = 0.0
                dxr[:] = 0.0
                continue
            dhr = dh[i]
            if have_dout:
                dor = d_outputs[i, s]
                for j in range(units):
                    dhr[j] += dor[j]
            zr = gates[i, t]
            hnr = hn[i, t]
            hp = h_prev[i, t]
            for j in range(units):
                rg = zr[j]
                zg = zr[units + j]
                ng = zr[2 * units + j]
                d_h = dhr[j]
                dn = d_h * (1.0 - zg) * (1.0 - ng * ng)
                dzr[j] = dn * hnr[j] * rg * (1.0 - rg)
                dzr[units + j] = d_h * (hp[j] - ng) * zg * (1.0 - zg)
                dzr[2 * units + j] = dn * rg
                dxr[j] = dn
                dhr[j] = d_h * zg
        # dzh holds the gradient of h @ u + rb (r, z and r-gated n parts): one GEMM per step.
        gemm(dzh[i0:i1, t], u, dh[i0:i1], False, True, 1.0, 1.0)
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
        _col_sums(dzh2, db, j0, min(j1, 2 * units), 0)
        _col_sums(dxn2, db, max(j0, 2 * units) - 2 * units, j1 - 2 * units, 2 * units)
    if drb.shape[0] > 0:
        _col_sums(dzh2, drb, j0, j1, 0)


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
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _gru_backward_rows(d_outputs, d_h_last, u, mask, reverse, gates, hn, h_prev, w, dzh, dxn, dh, dx2,
                           *block_bounds(0, 1, n))
    else:
        for blk in prange(nb):
            _gru_backward_rows(d_outputs, d_h_last, u, mask, reverse, gates, hn, h_prev, w, dzh, dxn, dh,
                               dx2, *block_bounds(blk, nb, n))
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
