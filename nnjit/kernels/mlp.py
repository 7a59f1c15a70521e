"""Fused kernels for a plain stack of dense layers (a multi-layer perceptron).

Run layer by layer, a small MLP pays a kernel dispatch, a thread launch and a few
Python calls per layer and per direction, a large share of a step whose arithmetic takes
tens of microseconds.  ``mlp_train_step`` runs forward, loss and backward of the whole
stack in one call, and ``mlp_forward`` runs inference.

How a training step is split:

1. Forward, the loss gradient with respect to the output and the chain of input
   gradients (dz of every layer) are independent per row of the batch, so one pass
   over row blocks (one block per thread) runs all layers forward, the loss and all
   layers backward while a block's activations are still in cache.
2. The weight gradients dW_l = h_{l-1}^T @ dz_l sum over the whole batch.  A second
   pass splits each layer's kernel by rows (and its bias by columns) across threads,
   so that every thread writes its own part and no reduction buffers are needed.

``nblocks == 1`` runs both passes serially, without a thread launch.

Every kernel compiles for one signature whatever the depth of the stack: the weights
are taken from the model's flat parameter buffer, described by an int64 layout table
with one row per layer (columns below), and every intermediate array is a view into
one flat workspace the caller allocates (``workspace_size``).

Layout table columns (``LAYOUT_WIDTH`` of them):

- ``FAN_IN``, ``FAN_OUT``: the kernel's shape (K, M);
- ``W_OFFSET``: where the kernel starts in the flat buffers (row-major, K * M values);
- ``B_OFFSET``: where the bias starts, -1 for a layer without bias;
- ``ACTIVATION``: activation code (``nnjit.kernels.activations``); the caller puts
  LINEAR on the last layer when the loss absorbs its softmax or sigmoid;
- ``NEED_DW``: 1 to compute the layer's gradients (0 for a frozen layer: its gradients
  are set to zero, as a model zeroes all gradients before a step);
- ``NEED_DZ``: 1 when the layer's output gradient is needed (the layer or one below
  it trains);
- ``NEED_DX``: 1 when the gradient of the layer's input is needed (a layer below trains;
  never for the first layer).

Loss codes (``loss_code``): SOFTMAX_CE_SPARSE and SOFTMAX_CE_DENSE (softmax and
cross-entropy from logits against labels or one-hot / soft targets),
CE_PROBS_SPARSE and CE_PROBS_DENSE (cross-entropy on probabilities), and the
elementwise MSE, MAE, HUBER, SIGMOID_BCE (sigmoid + binary cross-entropy from logits)
and BCE (binary cross-entropy on probabilities).  Each family (softmax cross-entropy,
cross-entropy on probabilities, elementwise) has its own compiled kernel behind
``mlp_train_step``, so that a cold start compiles only the loss in use.  They reuse the
row and element helpers of ``nnjit.kernels.losses``, so values and gradients follow the same rules
(float64 accumulation, clipping, NaN for a label out of range).  The mean of the
cross-entropies is over rows; of the elementwise losses over all elements.  Row losses
are summed in a fixed order whatever ``nblocks`` (BLAS may still round the products of
another block of rows differently in the last bits).
"""
import numpy as np
from numba import njit, prange

from . import losses as _losses
from .activations import LINEAR, activation_grad_rows, block_bounds
from .blas import GEMV_MAX_ROWS, gemm
from .dense import _dense_forward_rows, _partial_product, _sum_partials
from .losses import (_ce_probs_dense_rows, _ce_probs_sparse_rows, _elementwise_chunk, _softmax_ce_dense_rows,
                     _softmax_ce_sparse_rows)

FAN_IN, FAN_OUT, W_OFFSET, B_OFFSET, ACTIVATION, NEED_DW, NEED_DZ, NEED_DX = range(8)
LAYOUT_WIDTH = 8

SOFTMAX_CE_SPARSE, SOFTMAX_CE_DENSE, CE_PROBS_SPARSE, CE_PROBS_DENSE, MSE, MAE, HUBER, SIGMOID_BCE, BCE = range(9)
SPARSE_LOSSES = frozenset({SOFTMAX_CE_SPARSE, CE_PROBS_SPARSE})
# The elementwise codes, minus MSE, are those of nnjit.kernels.losses.
assert (MAE - MSE, HUBER - MSE, SIGMOID_BCE - MSE, BCE - MSE) == (
    _losses.MAE, _losses.HUBER, _losses.SIGMOID_BCE, _losses.BCE) and _losses.MSE == 0

# Columns of the workspace offset table, -1 where a layer has none: a layer's output (the
# last layer writes the caller's ``out``), its pre-activation, the gradient with respect
# to its output and the gradient with respect to its pre-activation (the same array as
# the former for a linear layer).
#
# Every activation, and its gradient, reads one array and writes another.  In place
# (z and y, or dy and dz, the same memory) LLVM's run-time overlap check fails and the
# loop runs scalar: a relu gradient over 128 x 64 float32 took 2.4 us in place against
# 0.65 us between two arrays.  Hence a pre-activation buffer for every non-linear layer
# and separate dy and dz buffers.
_H, _Z, _G, _D = range(4)


@njit(cache=True)
def _offsets(layout, n, training):
    """Offsets of each layer's arrays in the workspace for a batch of n rows, and the
    workspace size."""
    nl = layout.shape[0]
    offs = np.full((nl, 4), -1, dtype=np.int64)
    pos = np.int64(0)
    for l in range(nl):
        size = n * layout[l, FAN_OUT]
        linear = layout[l, ACTIVATION] == LINEAR
        if l < nl - 1:
            offs[l, _H] = pos
            pos += size
        if not linear:
            offs[l, _Z] = pos
            pos += size
        if training and (layout[l, NEED_DZ] != 0 or l == nl - 1):
            offs[l, _G] = pos
            pos += size
            if linear:
                offs[l, _D] = offs[l, _G]
            elif layout[l, NEED_DZ] != 0:
                offs[l, _D] = pos
                pos += size
    return offs, pos


@njit(cache=True)
def workspace_size(layout, n, training):
    """Elements of workspace that ``mlp_train_step`` (training) or ``mlp_forward`` needs
    for a batch of n rows."""
    return _offsets(layout, n, training)[1]


# Compile time shapes the helpers below.  Every separately compiled function links,
# optimizes and emits machine code once more for all the functions it calls, so a deep
# chain of helpers multiplies the cold compile: the helpers that only reorganize work are
# inlined into their callers (Numba IR inlining; about 2 s less for the first training
# step), except those called from several places in one kernel (``_layer``,
# ``_forward_block``), which would then be compiled once per call site.
@njit(cache=True)
def _layer(x, params, layout, offs, work, out, l):
    """Views of layer l: (input, kernel, bias, output, pre-activation)."""
    n = x.shape[0]
    nl = layout.shape[0]
    k = layout[l, FAN_IN]
    m = layout[l, FAN_OUT]
    wo = layout[l, W_OFFSET]
    w = params[wo:wo + k * m].reshape((k, m))
    bo = layout[l, B_OFFSET]
    b = params[bo:bo + m] if bo >= 0 else params[:0]
    if l == 0:
        h_in = x
    else:
        ho = offs[l - 1, _H]
        h_in = work[ho:ho + n * k].reshape((n, k))
    if l == nl - 1:
        h_out = out
    else:
        ho = offs[l, _H]
        h_out = work[ho:ho + n * m].reshape((n, m))
    zo = offs[l, _Z]
    if zo >= 0:
        z = work[zo:zo + n * m].reshape((n, m))
    else:
        z = work[:0].reshape((0, m))
    return h_in, w, b, h_out, z


@njit(cache=True, inline="always")
def _grad_view(work, offs, l, which, n, m):
    """The (n, m) gradient array ``which`` (_G or _D) of layer l."""
    o = offs[l, which]
    return work[o:o + n * m].reshape((n, m))


@njit(cache=True, inline="always")
def _forward_rows(x, params, layout, offs, work, out, i0, i1):
    for l in range(layout.shape[0]):
        h_in, w, b, h_out, z = _layer(x, params, layout, offs, work, out, l)
        _dense_forward_rows(h_in, w, b, layout[l, ACTIVATION], h_out, z, i0, i1)


@njit(cache=True, inline="always")
def _backward_rows(x, params, layout, offs, work, out, i0, i1):
    """The chain of gradients, last layer first, for rows i0..i1: dL/d(output) of each
    layer (the loss writes the last one) to dL/d(pre-activation), and that through the
    kernel to dL/d(output) of the layer below."""
    n = x.shape[0]
    for l in range(layout.shape[0] - 1, -1, -1):
        if layout[l, NEED_DZ] == 0:
            break
        h_in, w, b, h_out, z = _layer(x, params, layout, offs, work, out, l)
        m = w.shape[1]
        code = layout[l, ACTIVATION]
        d = _grad_view(work, offs, l, _D, n, m)
        if code != LINEAR:
            activation_grad_rows(_grad_view(work, offs, l, _G, n, m), h_out, z, code, d, i0, i1)
        if layout[l, NEED_DX] != 0:
            g_in = _grad_view(work, offs, l - 1, _G, n, w.shape[0])
            gemm(d[i0:i1], w, g_in[i0:i1], False, True)


# One row pass (forward, loss, backward) and one kernel per family of losses, so that a
# cold start compiles only the loss it trains with: one kernel covering every loss took
# 3.7 s longer to compile (the parallel kernel links and compiles its whole call tree
# more than once).
@njit(cache=True)
def _rows_softmax_ce(x, labels, targets, params, layout, offs, work, out, probs, loss_code, delta, row_loss,
                     i0, i1):
    _forward_rows(x, params, layout, offs, work, out, i0, i1)
    n, c = out.shape
    dout = _grad_view(work, offs, layout.shape[0] - 1, _G, n, c)
    if loss_code == SOFTMAX_CE_SPARSE:
        _softmax_ce_sparse_rows(out, labels, probs, dout, row_loss, 1.0 / n, i0, i1)
    else:
        _softmax_ce_dense_rows(out, targets, probs, dout, row_loss, 1.0 / n, i0, i1)
    _backward_rows(x, params, layout, offs, work, out, i0, i1)


@njit(cache=True)
def _rows_ce_probs(x, labels, targets, params, layout, offs, work, out, probs, loss_code, delta, row_loss,
                   i0, i1):
    _forward_rows(x, params, layout, offs, work, out, i0, i1)
    n, c = out.shape
    dout = _grad_view(work, offs, layout.shape[0] - 1, _G, n, c)
    if loss_code == CE_PROBS_SPARSE:
        _ce_probs_sparse_rows(out, labels, dout, row_loss, 1.0 / n, i0, i1)
    else:
        _ce_probs_dense_rows(out, targets, dout, row_loss, 1.0 / n, i0, i1)
    _backward_rows(x, params, layout, offs, work, out, i0, i1)


@njit(cache=True)
def _rows_elementwise(x, labels, targets, params, layout, offs, work, out, probs, loss_code, delta, row_loss,
                      i0, i1):
    _forward_rows(x, params, layout, offs, work, out, i0, i1)
    n, c = out.shape
    size = n * c
    dout = _grad_view(work, offs, layout.shape[0] - 1, _G, n, c).reshape(size)
    flat_out = out.reshape(size)
    flat_t = targets.reshape(size)
    flat_p = probs.reshape(size)
    inv = 1.0 / size
    code = loss_code - MSE
    for i in range(i0, i1):
        row_loss[i] = _elementwise_chunk(flat_out, flat_t, code, delta, dout, flat_p, inv, i * c, (i + 1) * c)
    _backward_rows(x, params, layout, offs, work, out, i0, i1)


@njit(cache=True)
def _weight_grads_block(x, params, grads, layout, offs, work, out, t, nb):
    """Block t of nb of every layer's gradients: kernel rows and bias columns split
    evenly, overwritten (the step's gradient, not accumulated)."""
    n = x.shape[0]
    for l in range(layout.shape[0]):
        k = layout[l, FAN_IN]
        m = layout[l, FAN_OUT]
        k0, k1 = block_bounds(t, nb, k)
        j0, j1 = block_bounds(t, nb, m)
        wo = layout[l, W_OFFSET]
        bo = layout[l, B_OFFSET]
        dw = grads[wo:wo + k * m].reshape((k, m))
        db = grads[bo + j0:bo + j1] if bo >= 0 else grads[:0]
        if layout[l, NEED_DW] == 0:
            dw[k0:k1] = 0.0
            db[:] = 0.0
            continue
        h_in, w, b, h_out, z = _layer(x, params, layout, offs, work, out, l)
        d = _grad_view(work, offs, l, _D, n, m)
        if k1 > k0:
            # dw[k0:k1] = h_in[:, k0:k1].T @ d: BLAS reads the column slice in place.
            gemm(h_in[:, k0:k1], d, dw[k0:k1], True, False, 1.0, 0.0)
        if db.shape[0] > 0:
            db[:] = 0.0
            for i in range(n):
                row = d[i, j0:j1]
                for j in range(db.shape[0]):
                    db[j] += row[j]


@njit(cache=True, inline="always")
def _mean_loss(row_loss, loss_code, c):
    n = row_loss.shape[0]
    total = 0.0
    for i in range(n):
        total += row_loss[i]
    if loss_code >= MSE:
        return total * (1.0 / (n * c))
    return total * (1.0 / n)


# The three kernels differ only in their row pass (see mlp_train_step for arguments).
@njit(cache=True, parallel=True)
def _train_step_softmax_ce(x, labels, targets, params, grads, layout, work, out, probs, loss_code, delta, nblocks):
    n = x.shape[0]
    offs, _ = _offsets(layout, n, True)
    row_loss = np.empty(n, dtype=np.float64)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _rows_softmax_ce(x, labels, targets, params, layout, offs, work, out, probs, loss_code, delta, row_loss,
                         np.int64(0), np.int64(n))
        _weight_grads_block(x, params, grads, layout, offs, work, out, np.int64(0), np.int64(1))
    else:
        for t in prange(nb):
            i0, i1 = block_bounds(t, nb, n)
            _rows_softmax_ce(x, labels, targets, params, layout, offs, work, out, probs, loss_code, delta,
                             row_loss, i0, i1)
        for t in prange(nb):
            _weight_grads_block(x, params, grads, layout, offs, work, out, np.int64(t), np.int64(nb))
    return _mean_loss(row_loss, loss_code, out.shape[1])


@njit(cache=True, parallel=True)
def _train_step_ce_probs(x, labels, targets, params, grads, layout, work, out, probs, loss_code, delta, nblocks):
    n = x.shape[0]
    offs, _ = _offsets(layout, n, True)
    row_loss = np.empty(n, dtype=np.float64)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _rows_ce_probs(x, labels, targets, params, layout, offs, work, out, probs, loss_code, delta, row_loss,
                       np.int64(0), np.int64(n))
        _weight_grads_block(x, params, grads, layout, offs, work, out, np.int64(0), np.int64(1))
    else:
        for t in prange(nb):
            i0, i1 = block_bounds(t, nb, n)
            _rows_ce_probs(x, labels, targets, params, layout, offs, work, out, probs, loss_code, delta,
                           row_loss, i0, i1)
        for t in prange(nb):
            _weight_grads_block(x, params, grads, layout, offs, work, out, np.int64(t), np.int64(nb))
    return _mean_loss(row_loss, loss_code, out.shape[1])


@njit(cache=True, parallel=True)
def _train_step_elementwise(x, labels, targets, params, grads, layout, work, out, probs, loss_code, delta,
                            nblocks):
    n = x.shape[0]
    offs, _ = _offsets(layout, n, True)
    row_loss = np.empty(n, dtype=np.float64)
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _rows_elementwise(x, labels, targets, params, layout, offs, work, out, probs, loss_code, delta, row_loss,
                          np.int64(0), np.int64(n))
        _weight_grads_block(x, params, grads, layout, offs, work, out, np.int64(0), np.int64(1))
    else:
        for t in prange(nb):
            i0, i1 = block_bounds(t, nb, n)
            _rows_elementwise(x, labels, targets, params, layout, offs, work, out, probs, loss_code, delta,
                              row_loss, i0, i1)
        for t in prange(nb):
            _weight_grads_block(x, params, grads, layout, offs, work, out, np.int64(t), np.int64(nb))
    return _mean_loss(row_loss, loss_code, out.shape[1])


def train_step_kernel(loss_code):
    """The compiled kernel ``mlp_train_step`` runs for ``loss_code``."""
    if loss_code in (SOFTMAX_CE_SPARSE, SOFTMAX_CE_DENSE):
        return _train_step_softmax_ce
    if loss_code in (CE_PROBS_SPARSE, CE_PROBS_DENSE):
        return _train_step_ce_probs
    if MSE <= loss_code <= BCE:
        return _train_step_elementwise
    raise ValueError(f"mlp_train_step: unknown loss code. Received: loss_code={loss_code!r}")


def mlp_train_step(x, labels, targets, params, grads, layout, work, out, probs, loss_code, delta, nblocks):
    """Forward, loss and backward of a stack of dense layers in one kernel call.

    x: (N, K0) C-contiguous input, N >= 1; labels: (N,) int64 for the sparse losses,
    else (0,); targets: (N, C) in the dtype of x for the other losses, else (0, 0);
    params, grads: the flat parameter and gradient buffers (1-D, dtype of x); layout:
    (L, LAYOUT_WIDTH) int64 table (module docstring); work: at least
    ``workspace_size(layout, N, True)`` elements; out: (N, C), receives the last
    layer's output (the logits when the loss absorbs the final activation); probs:
    (N, C), receives the softmax / sigmoid for the losses that compute one (anything
    else leaves it untouched); loss_code: a loss code; delta: Huber's delta.

    Writes the gradient of the mean loss into ``grads`` for every layer with NEED_DW
    (overwriting it; zero for frozen layers) and returns the mean loss (float64).
    Callers that run many steps look the kernel up once with ``train_step_kernel``.
    """
    return train_step_kernel(loss_code)(x, labels, targets, params, grads, layout, work, out, probs, loss_code,
                                        delta, nblocks)


@njit(cache=True)
def _all_finite(x):
    """True when no element of the C-contiguous array x is NaN or infinite: v - v is 0
    for a finite v and NaN otherwise.  An AND of booleans vectorizes where a float sum
    would not (LLVM may not reorder it): 784,000 float32 took 0.04 ms against 0.24 ms."""
    f = x.reshape(x.size)
    ok = True
    for i in range(f.shape[0]):
        v = f[i]
        ok &= (v - v) == 0.0
    return ok


@njit(cache=True)
def _forward_block(x, params, layout, offs, work, out, i0, i1):
    # Compiled once and called from two places (inlined, it compiled twice).
    _forward_rows(x, params, layout, offs, work, out, i0, i1)


@njit(cache=True, parallel=True)
def mlp_forward(x, params, layout, work, out, k_blocks, nblocks):
    """Inference through a stack of dense layers in one call.

    x: (N, K0) C-contiguous; params, layout as for ``mlp_train_step`` (only the first
    five columns of the layout are read); work: at least ``workspace_size(layout, N,
    False)`` elements; out: (N, C), receives the output.

    More than GEMV_MAX_ROWS rows: the batch is split into ``nblocks`` row blocks, each
    running the whole stack.  A few rows (single samples): each layer's kernel rows are
    split into ``k_blocks[l]`` blocks across threads (1: serial), because then the work is
    reading the kernels; the partial products are summed before bias and activation.

    Returns False, without computing anything, when x holds NaN or infinity.
    """
    if not _all_finite(x):
        return False
    n = x.shape[0]
    offs, _ = _offsets(layout, n, False)
    if n <= GEMV_MAX_ROWS:
        for l in range(layout.shape[0]):
            h_in, w, b, h_out, z = _layer(x, params, layout, offs, work, out, l)
            code = layout[l, ACTIVATION]
            kb = min(k_blocks[l], w.shape[0])
            if kb > 1:
                part = np.empty((kb, n, w.shape[1]), dtype=x.dtype)
                for t in prange(kb):
                    _partial_product(h_in, w, part, np.int64(t), kb)
                _sum_partials(part, b, code, h_out, z)
            else:
                _dense_forward_rows(h_in, w, b, code, h_out, z, *block_bounds(0, 1, n))
        return True
    nb = max(1, min(n, nblocks))
    if nb == 1:
        _forward_block(x, params, layout, offs, work, out, np.int64(0), np.int64(n))
    else:
        for t in prange(nb):
            i0, i1 = block_bounds(t, nb, n)
            _forward_block(x, params, layout, offs, work, out, i0, i1)
    return True
