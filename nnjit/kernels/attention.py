"""Scaled dot-product attention over projected, head-split tensors, forward and backward.

Shapes.  q: (B, H, Tq, d); k, v: (B, H, Tk, d); float32 or float64, one dtype; C-contiguous,
or any view whose last axis is contiguous, such as a projection's (B, T, H, d) output viewed
as (B, H, T, d) with ``transpose(0, 2, 1, 3)`` (no copy; each layout compiles its own
specialization).  Outputs are C-contiguous.  ``key_mask`` is a (B, Tk) uint8 array, 1
where a key may be attended and 0 for padding, or a (0, 0) array for none.  With ``causal``
query i attends keys j <= i + (Tk - Tq): the two sequences are aligned at their ends, which
for self-attention (Tq == Tk) is j <= i.  ``scale`` multiplies the scores (1 / sqrt(d)
normally).

    out[b, h, i] = sum_j A[b, h, i, j] * v[b, h, j],
    A[b, h, i] = softmax_j(scale * q[b, h, i] . k[b, h, j], over the attended keys j)

A query with no key to attend (every key padded, or none allowed by causality) outputs
zeros, has lse = -inf and gets zero gradient.

Algorithm (FlashAttention).  The (Tq, Tk) score matrix is never stored.  Each (b, h) pair
is cut into query tiles of QUERY_TILE rows; a query tile loops over key tiles of KEY_TILE
keys: the scores of the tile pair are one small GEMM into a scratch tile, then an online
softmax keeps, per query, the running maximum m and the running sum l of exp(score - m),
rescales the output rows accumulated so far when m grows, and adds P @ V_tile into them
with a second GEMM.  At the end the rows are divided by l and lse = m + log(l) is kept:
backward recomputes each probability as exp(score - lse) instead of storing them.  Memory
beyond the inputs and outputs is one scratch tile per thread, so it grows linearly with
the sequence length.  Key tiles that causality masks entirely, and key tiles whose keys
are all padding, are skipped.

Scores are kept transposed, S^T = K_tile @ Q_tile^T of shape (keys, queries): the softmax
statistics are then reductions over rows, done elementwise along contiguous rows of
queries (vectorized), and the causal mask of a key row is a contiguous range of queries.
exp is a polynomial (``_exp_nonpositive``) so that these loops vectorize.  Precision:
scores, the running maximum (exact) and exp run in the dtype, so float32 data uses float32
lanes; each tile's sums of exp are added into a float64 running sum, and lse is float64.

Backward (FlashAttention-2) per (b, h): D_i = dO_i . O_i; then per key tile and query tile
P = exp(S - lse), dV += P^T dO, dP = dO V^T, dS = P * (dP - D), dQ += scale * dS K and
dK += scale * dS^T Q, all as GEMMs on the tile pair.

Threads.  The forward splits the (b, h, query tile) items into ``nblocks`` blocks; the
backward splits the (b, h) pairs, so each thread owns its pairs' dq, dk and dv outright.
``nblocks == 1`` runs serial code that never enters prange.

Dropout on the attention weights.  With ``dropout_rate`` > 0 each weight A[b, h, i, j] is
kept with probability 1 - rate and scaled by 1 / (1 - rate), or set to zero; the softmax
normalization uses all weights (dropout applies after it, as in PyTorch).  The keep
decision is a pure function of (seed, b, h, i, j), so backward regenerates the same mask
without storing it: with n = ((b * H + h) * Tq + i) * Tk + j, the n-th output of the
SplitMix64 generator started at ``seed``,

    z = seed + (n + 1) * 0x9E3779B97F4A7C15 (mod 2**64),
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9, z = (z ^ (z >> 27)) * 0x94D049BB133111EB,
    z = z ^ (z >> 31),

gives u = (z >> 11) / 2**53 uniform in [0, 1), and the weight is kept when u >= rate.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from .activations import block_bounds
from .blas import gemm

# Tile sizes, measured at d = 32 on one thread (B = 1, H = 4, T = 1024, float32): 128 x 128
# ran forward and backward about 17% faster than 64 x 64 (bigger GEMMs) and within 5% of
# 256 x 256; the backward's three (KEY_TILE, QUERY_TILE) scratch tiles (192 KB in float32)
# stay in L2.  Shorter sequences use one tile of their own length.
QUERY_TILE = 128
KEY_TILE = 128

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)

# gemm's transpose flags as np.bool_ constants, which Numba types as plain booleans: literal
# True and False would compile one specialization of gemm per combination.
_NT = np.bool_(False)
_TR = np.bool_(True)


# ----------------------------------------------------------------------------------------
# Elementwise helpers


@intrinsic
def _pow2(typingctx, k):
    """2 ** k for an integral float k in the normal exponent range, built from its bits:
    no call and no branch, so loops using it vectorize.  Adding 2**52 + 1023 (float64) or
    2**23 + 127 (float32) leaves k + bias in the low mantissa bits, which a shift moves
    into the exponent field."""
    if k == types.float64:
        fty, ity, magic, shift = ir.DoubleType(), ir.IntType(64), 4503599627370496.0 + 1023.0, 52
    elif k == types.float32:
        fty, ity, magic, shift = ir.FloatType(), ir.IntType(32), 8388608.0 + 127.0, 23
    else:
        return None

    def codegen(context, builder, signature, args):
        shifted = builder.fadd(args[0], ir.Constant(fty, magic))
        bits = builder.shl(builder.bitcast(shifted, ity), ir.Constant(ity, shift))
        return builder.bitcast(bits, fty)

    return k(k), codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # Cody-Waite split of ln 2 (fdlibm)
_LN2_LO = 1.90821492927058770002e-10

# float32 constants (Cephes expf): float64 constants would promote the arithmetic.
_F32 = np.float32
_LIMIT_F32 = _F32(-87.0)
_LOG2E_F32 = _F32(_LOG2E)
_HALF_F32 = _F32(0.5)
_ONE_F32 = _F32(1.0)
_LN2_HI_F32 = _F32(0.693359375)
_LN2_LO_F32 = _F32(-2.12194440e-4)
_EXPF = (_F32(1.9875691500e-4), _F32(1.3981999507e-3), _F32(8.3334519073e-3), _F32(4.1665795894e-2),
         _F32(1.6666665459e-1), _F32(5.0000001201e-1))


def _exp_f64(y):
    y = -708.0 if y < -708.0 else y
    n = np.floor(y * _LOG2E + 0.5)
    r = (y - n * _LN2_HI) - n * _LN2_LO  # |r| <= ln(2) / 2
    # Taylor series of exp to degree 13: the remainder is below 1e-17 relative on |r| <= 0.35.
    p = 1.0 + r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (
        1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (
            1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600 + r * (1.0 / 6227020800)))))))))))))
    return p * _pow2(n)


def _exp_f32(y):
    y = _LIMIT_F32 if y < _LIMIT_F32 else y
    n = np.floor(y * _LOG2E_F32 + _HALF_F32)
    r = (y - n * _LN2_HI_F32) - n * _LN2_LO_F32
    c0, c1, c2, c3, c4, c5 = _EXPF
    p = (((((c0 * r + c1) * r + c2) * r + c3) * r + c4) * r + c5) * (r * r) + r + _ONE_F32
    return p * _pow2(n)


def _exp_nonpositive(y):
    """exp(y) for y <= 0 in y's own precision, to about 1 ulp (float64) or 1.5 ulp
    (float32), as plain arithmetic.

    math.exp is a call into libm that keeps the loop around it scalar; softmax arguments
    are score - max <= 0, so no overflow branch is needed.  Arguments below -708 (float64)
    or -87 (float32) are clamped there: exp is about 3e-308 or 2e-38, as good as zero next
    to the maximum's 1.  float32 runs twice the lanes of float64 with half the terms.
    """
    return math.exp(y)


@overload(_exp_nonpositive, inline="always")
def _exp_nonpositive_typed(y):
    if y == types.float32:
        return _exp_f32
    if y == types.float64:
        return _exp_f64
    return None


@njit(cache=True, inline="always")
def _dropout_threshold(rate):
    """Keep a weight when the top 53 bits of its hash are >= this (rate * 2**53)."""
    return np.uint64(rate * 9007199254740992.0)


@njit(cache=True, inline="always")
def _hash_bits(seed, n):
    """Top 53 bits of the n-th SplitMix64 output from ``seed`` (both uint64)."""
    z = seed + (n + _ONE) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return z >> _S11


# The loops below run over views indexed from 0: a loop from a variable start keeps Numba's
# negative-index wraparound in every access, and LLVM then leaves the loop scalar.


@njit(cache=True, error_model="numpy")
def _dropout_row(row, seed, n0, stride, threshold, inv_keep):
    """Dropout along a row of weights whose counters are n0 + i * stride (uint64)."""
    for i in range(row.shape[0]):
        keep = _hash_bits(seed, n0 + np.uint64(i) * stride) >= threshold
        row[i] = row[i] * inv_keep if keep else 0.0


@njit(cache=True, inline="always")
def _zero(a):
    for i in range(a.shape[0]):
        a[i] = 0.0


@njit(cache=True, inline="always")
def _zero_rows(a):
    for r in range(a.shape[0]):
        _zero(a[r])


@njit(cache=True, inline="always")
def _max_into(row, top):
    """top = max(top, row) elementwise."""
    for i in range(row.shape[0]):
        x = row[i]
        top[i] = x if x > top[i] else top[i]


@njit(cache=True, inline="always")
def _exp_sum(row, m, l):
    """row = exp(row - m) and l += row, elementwise (row <= m), all in the dtype."""
    for i in range(row.shape[0]):
        p = _exp_nonpositive(row[i] - m[i])
        row[i] = p
        l[i] += p


@njit(cache=True, inline="always")
def _exp_rows(row, lse):
    """row = exp(row - lse), elementwise: probabilities recomputed from the log-sum-exp."""
    for i in range(row.shape[0]):
        row[i] = _exp_nonpositive(row[i] - lse[i])


@njit(cache=True, inline="always")
def _dot(a, b):
    """a . b in float64 over four independent sums: one running sum would wait for each
    add in turn (a float sum cannot be reordered without fastmath)."""
    n = a.shape[0]
    head = n - n % 4
    s0 = s1 = s2 = s3 = 0.0
    for c in range(0, head, 4):
        s0 += np.float64(a[c]) * b[c]
        s1 += np.float64(a[c + 1]) * b[c + 1]
        s2 += np.float64(a[c + 2]) * b[c + 2]
        s3 += np.float64(a[c + 3]) * b[c + 3]
    for c in range(head, n):
        s0 += np.float64(a[c]) * b[c]
    return (s0 + s2) + (s1 + s3)


@njit(cache=True, inline="always")
def _causal_start(gj, offset, i0, causal):
    """First query (relative to the tile start i0) that may attend key gj."""
    if not causal:
        return np.int64(0)
    return max(np.int64(0), gj - offset - i0)


@njit(cache=True)
def _key_tile_padded(key_mask, b, j0, j1):
    """True when the key mask pads every key in [j0, j1)."""
    if key_mask.shape[0] == 0:
        return False
    for j in range(j0, j1):
        if key_mask[b, j] != 0:
            return False
    return True


# ----------------------------------------------------------------------------------------
# Forward


# The heavy helpers are one function each (no helper of a helper): Numba re-optimizes a
# callee's code inside every caller that links it, so each extra level of a large body adds
# about a second of cold compile.  GEMM operands are all passed as 'A'-layout views
# (``a[i0:i1, :]``) with flags _NT and _TR so that one specialization of ``gemm`` per dtype
# serves every call.


@njit(cache=True, error_model="numpy")
def _forward_items(q, k, v, key_mask, causal, scale, dropout_rate, seed, out, lse, t0, t1):
    """Items [t0, t1) of the (b, h, query tile) items, in that order: output rows
    [i0, i1) of pair (b, h) per item.

    The running maximum m is kept in the dtype (a maximum is exact), so that score - m and
    its exp run in float32 for float32 data; the running sum l is float64."""
    n_heads, tq, tk = q.shape[1], q.shape[2], k.shape[2]
    offset = tk - tq
    tiles = (tq + QUERY_TILE - 1) // QUERY_TILE
    st = np.empty((KEY_TILE, min(QUERY_TILE, tq)), dtype=q.dtype)
    m = np.empty(QUERY_TILE, dtype=q.dtype)
    top = np.empty(QUERY_TILE, dtype=q.dtype)
    l = np.empty(QUERY_TILE, dtype=np.float64)
    alpha = np.empty(QUERY_TILE, dtype=np.float64)
    masked = key_mask.shape[0] > 0
    dropout = dropout_rate > 0.0
    threshold = _dropout_threshold(dropout_rate)
    inv_keep = 1.0 / (1.0 - dropout_rate) if dropout else 1.0
    useed = np.uint64(seed)
    for t in range(t0, t1):
        pair = t // tiles
        b = pair // n_heads
        h = pair % n_heads
        i0 = (t % tiles) * QUERY_TILE
        i1 = min(i0 + QUERY_TILE, tq)
        ni = i1 - i0
        qt = q[b, h, i0:i1, :]
        kb = k[b, h]
        vb = v[b, h]
        ot = out[b, h, i0:i1, :]  # for gemm ('A')
        oc = out[b, h, i0:i1]  # for the elementwise loops (C)
        _zero_rows(oc)
        for i in range(ni):
            m[i] = -np.inf
            l[i] = 0.0
        n_pair = np.uint64(pair) * np.uint64(tq)
        jend = min(tk, i1 + offset) if causal else tk
        first = True
        for j0 in range(0, jend, KEY_TILE):
            j1 = min(j0 + KEY_TILE, jend)
            nj = j1 - j0
            if _key_tile_padded(key_mask, b, j0, j1):
                continue
            s = st[:nj, :ni]
            gemm(kb[j0:j1, :], qt, s, _NT, _TR, scale, 0.0)
            for i in range(ni):
                top[i] = -np.inf
            for r in range(nj):
                gj = j0 + r
                if masked and key_mask[b, gj] == 0:
                    continue
                lo = min(_causal_start(gj, offset, i0, causal), ni)
                _max_into(st[r, lo:ni], top[lo:ni])
            rescale = False
            for i in range(ni):
                if top[i] > m[i]:
                    a = math.exp(np.float64(m[i]) - np.float64(top[i]))  # 0 while m is -inf
                    m[i] = top[i]
                    l[i] *= a
                    alpha[i] = a
                    rescale = True
                else:
                    alpha[i] = 1.0
            if rescale and not first:
                for i in range(ni):
                    a = alpha[i]
                    if a != 1.0:
                        orow = oc[i]
                        for c in range(orow.shape[0]):
                            orow[c] *= a
            # The tile's sums go into top (free now) in the dtype, then into l in float64:
            # a float32 sum of at most KEY_TILE terms in [0, 1] loses at most KEY_TILE ulp.
            tile_sum = top
            _zero(tile_sum[:ni])
            for r in range(nj):
                gj = j0 + r
                if masked and key_mask[b, gj] == 0:
                    _zero(st[r, :ni])
                    continue
                lo = min(_causal_start(gj, offset, i0, causal), ni)
                _zero(st[r, :lo])
                _exp_sum(st[r, lo:ni], m[lo:ni], tile_sum[lo:ni])
                if dropout:
                    _dropout_row(st[r, lo:ni], useed, (n_pair + np.uint64(i0 + lo)) * np.uint64(tk) + np.uint64(gj),
                                 np.uint64(tk), threshold, inv_keep)
            for i in range(ni):
                l[i] += tile_sum[i]
            gemm(s, vb[j0:j1, :], ot, _TR, _NT, 1.0, 1.0)
            first = False
        for i in range(ni):
            if l[i] > 0.0:
                inv = 1.0 / l[i]
                orow = oc[i]
                for c in range(orow.shape[0]):
                    orow[c] *= inv
                lse[b, h, i0 + i] = np.float64(m[i]) + math.log(l[i])
            else:
                lse[b, h, i0 + i] = -np.inf


@njit(cache=True, parallel=True)
def attention_forward(q, k, v, key_mask, causal, scale, dropout_rate, seed, nblocks):
    """Scaled dot-product attention, tiled with an online softmax (see the module docstring).

    q: (B, H, Tq, d); k, v: (B, H, Tk, d); key_mask: (B, Tk) uint8 or (0, 0); causal: bool;
    scale: float; dropout_rate: float in [0, 1) (0.0 = off); seed: int64 (the dropout
    stream; ignored when the rate is 0); nblocks: number of thread blocks.
    Returns (out, lse): out (B, H, Tq, d) of q's dtype; lse (B, H, Tq) float64, the
    log-sum-exp of each query's scaled scores over its attended keys (-inf for a query
    with none, whose output is zero), to be passed to ``attention_backward``.
    """
    n_batch, n_heads, tq, dim = q.shape
    out = np.empty((n_batch, n_heads, tq, dim), dtype=q.dtype)
    lse = np.empty((n_batch, n_heads, tq), dtype=np.float64)
    items = n_batch * n_heads * ((tq + QUERY_TILE - 1) // QUERY_TILE)
    nb = max(1, min(items, nblocks))
    if nb == 1:
        _forward_items(q, k, v, key_mask, causal, scale, dropout_rate, seed, out, lse, *block_bounds(0, 1, items))
    else:
        for t in prange(nb):
            _forward_items(q, k, v, key_mask, causal, scale, dropout_rate, seed, out, lse,
                           *block_bounds(t, nb, items))
    return out, lse


# ----------------------------------------------------------------------------------------
# Backward


@njit(cache=True, error_model="numpy")
def _backward_pairs(dout, q, k, v, out, lse, key_mask, causal, scale, dropout_rate, seed, dq, dk, dv, t0, t1):
    """Gradients of pairs [t0, t1) of the B * H (b, h) pairs into dq, dk, dv.

    D and lse are rounded to the dtype per pair (delta, lse_row) so that the elementwise
    loops run in float32 for float32 data."""
    n_heads, tq, tk = q.shape[1], q.shape[2], k.shape[2]
    offset = tk - tq
    width = min(QUERY_TILE, tq)
    p_buf = np.empty((KEY_TILE, width), dtype=q.dtype)
    pd_buf = np.empty((KEY_TILE if dropout_rate > 0.0 else 0, width), dtype=q.dtype)  # dropped P
    dp_buf = np.empty((KEY_TILE, width), dtype=q.dtype)
    delta = np.empty(tq, dtype=q.dtype)
    lse_row = np.empty(tq, dtype=q.dtype)
    masked = key_mask.shape[0] > 0
    dropout = dropout_rate > 0.0
    threshold = _dropout_threshold(dropout_rate)
    inv_keep = 1.0 / (1.0 - dropout_rate) if dropout else 1.0
    useed = np.uint64(seed)
    for t in range(t0, t1):
        b = t // n_heads
        h = t % n_heads
        qb, kb, vb = q[b, h], k[b, h], v[b, h]
        gb, ob = dout[b, h], out[b, h]
        dqb, dkb, dvb = dq[b, h], dk[b, h], dv[b, h]
        _zero_rows(dqb)
        _zero_rows(dkb)
        _zero_rows(dvb)
        for i in range(tq):
            lse_row[i] = lse[b, h, i]
            delta[i] = _dot(gb[i], ob[i])
        n_pair = np.uint64(t) * np.uint64(tq)
        for j0 in range(0, tk, KEY_TILE):
            j1 = min(j0 + KEY_TILE, tk)
            nj = j1 - j0
            if _key_tile_padded(key_mask, b, j0, j1):
                continue
            kt, vt, dkt, dvt = kb[j0:j1, :], vb[j0:j1, :], dkb[j0:j1, :], dvb[j0:j1, :]
            # The first query tile that may attend key j0 under causality.
            i_first = (max(0, j0 - offset) // QUERY_TILE) * QUERY_TILE if causal else 0
            for i0 in range(i_first, tq, QUERY_TILE):
                i1 = min(i0 + QUERY_TILE, tq)
                ni = i1 - i0
                qt, gt, dqt = qb[i0:i1, :], gb[i0:i1, :], dqb[i0:i1, :]
                p = p_buf[:nj, :ni]
                dp = dp_buf[:nj, :ni]
                gemm(kt, qt, p, _NT, _TR, scale, 0.0)
                for r in range(nj):
                    gj = j0 + r
                    if masked and key_mask[b, gj] == 0:
                        _zero(p_buf[r, :ni])
                        continue
                    lo = min(_causal_start(gj, offset, i0, causal), ni)
                    _zero(p_buf[r, :lo])
                    # A query with nothing to attend has lse = -inf but no unmasked entry,
                    # so it never reaches this exp.
                    _exp_rows(p_buf[r, lo:ni], lse_row[i0 + lo:i1])
                if dropout:
                    for r in range(nj):
                        gj = j0 + r
                        src = p_buf[r, :ni]
                        dst = pd_buf[r, :ni]
                        for i in range(ni):
                            dst[i] = src[i]
                        lo = min(_causal_start(gj, offset, i0, causal), ni)
                        _dropout_row(dst[lo:], useed, (n_pair + np.uint64(i0 + lo)) * np.uint64(tk) + np.uint64(gj),
                                     np.uint64(tk), threshold, inv_keep)
                    gemm(pd_buf[:nj, :ni], gt, dvt, _NT, _NT, 1.0, 1.0)
                else:
                    gemm(p, gt, dvt, _NT, _NT, 1.0, 1.0)
                gemm(vt, gt, dp, _NT, _TR, 1.0, 0.0)
                # dS = P * (dP_dropped - D); with dropout dP_dropped = dP * inv_keep where the
                # weight was kept (pd != 0; where pd == 0 but was kept, P == 0 as well).
                dl = delta[i0:i1]
                for r in range(nj):
                    prow = p_buf[r, :ni]
                    drow = dp_buf[r, :ni]
                    if dropout:
                        pdrow = pd_buf[r, :ni]
                        for i in range(ni):
                            g = drow[i] * inv_keep if pdrow[i] != 0.0 else 0.0
                            drow[i] = prow[i] * (g - dl[i])
                    else:
                        for i in range(ni):
                            drow[i] = prow[i] * (drow[i] - dl[i])
                gemm(dp, kt, dqt, _TR, _NT, scale, 1.0)
                gemm(dp, qt, dkt, _NT, _NT, scale, 1.0)


@njit(cache=True, parallel=True)
def attention_backward(dout, q, k, v, out, lse, key_mask, causal, scale, dropout_rate, seed, nblocks):
    """Gradients of scaled dot-product attention.

    dout: (B, H, Tq, d), the gradient of ``out``; q, k, v, key_mask, causal, scale,
    dropout_rate and seed as given to ``attention_forward`` (the same seed regenerates the
    same dropout mask); out, lse as it returned.  Returns (dq, dk, dv) of the shapes and
    dtype of q, k, v.
    """
    n_batch, n_heads = q.shape[0], q.shape[1]
    dq = np.empty_like(q)
    dk = np.empty_like(k)
    dv = np.empty_like(v)
    pairs = n_batch * n_heads
    nb = max(1, min(pairs, nblocks))
    if nb == 1:
        _backward_pairs(dout, q, k, v, out, lse, key_mask, causal, scale, dropout_rate, seed, dq, dk, dv,
                        *block_bounds(0, 1, pairs))
    else:
        for t in prange(nb):
            _backward_pairs(dout, q, k, v, out, lse, key_mask, causal, scale, dropout_rate, seed, dq, dk, dv,
                            *block_bounds(t, nb, pairs))
    return dq, dk, dv


# ----------------------------------------------------------------------------------------
# Weights, for inspection


@njit(cache=True, error_model="numpy")
def _weights_pairs(q, k, key_mask, causal, scale, weights, t0, t1):
    n_heads, tq, tk = q.shape[1], q.shape[2], k.shape[2]
    offset = tk - tq
    masked = key_mask.shape[0] > 0
    for t in range(t0, t1):
        b = t // n_heads
        h = t % n_heads
        w = weights[b, h]
        gemm(q[b, h, :, :], k[b, h, :, :], weights[b, h, :, :], _NT, _TR, scale, 0.0)
        for i in range(tq):
            row = w[i]
            jend = min(tk, max(0, i + offset + 1)) if causal else tk
            top = -np.inf
            for j in range(jend):
                if not (masked and key_mask[b, j] == 0):
                    top = row[j] if row[j] > top else top
            if top == -np.inf:  # nothing to attend
                for j in range(tk):
                    row[j] = 0.0
                continue
            total = 0.0
            for j in range(jend):
                if masked and key_mask[b, j] == 0:
                    row[j] = 0.0
                else:
                    e = _exp_nonpositive(row[j] - top)
                    row[j] = e
                    total += e
            for j in range(jend, tk):
                row[j] = 0.0
            inv = 1.0 / total
            for j in range(jend):
                row[j] *= inv


@njit(cache=True, parallel=True)
def attention_weights(q, k, key_mask, causal, scale, nblocks):
    """The attention probabilities, (B, H, Tq, Tk) of q's dtype, without dropout.

    Arguments as for ``attention_forward``.  This materializes the full score matrix and
    is meant for inspection (return_attention_scores), not for training.  Rows of queries
    with nothing to attend are zero.
    """
    n_batch, n_heads, tq = q.shape[0], q.shape[1], q.shape[2]
    tk = k.shape[2]
    weights = np.empty((n_batch, n_heads, tq, tk), dtype=q.dtype)
    pairs = n_batch * n_heads
    nb = max(1, min(pairs, nblocks))
    if nb == 1:
        _weights_pairs(q, k, key_mask, causal, scale, weights, *block_bounds(0, 1, pairs))
    else:
        for t in prange(nb):
            _weights_pairs(q, k, key_mask, causal, scale, weights, *block_bounds(t, nb, pairs))
    return weights
