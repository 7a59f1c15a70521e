"""A direct call to BLAS ``?gemm`` from kernels, with alpha, beta and transposes.

``np.dot`` inside Numba covers only ``C = A @ B``: accumulating (beta = 1) needs a
temporary, a transposed operand that is a column slice needs a copy, and its
shape-error paths compile string formatting into every kernel that uses it (seconds
of cold start).  ``gemm`` calls the same SciPy BLAS that ``np.dot`` uses, through
Numba's own ``numba_xxgemm`` helper, so kernels using it still cache.

All matrices are row-major views with unit stride along rows (C-contiguous arrays,
their row blocks, or column slices of them); the leading dimension is read from the
row stride.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import ensure_blas

_ll_char = ir.IntType(8)
_ll_void_p = ir.IntType(8).as_pointer()


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major ``c = alpha * op(a) @ op(b) + beta * c`` (BLAS argument order)."""
    if not (isinstance(a, types.Array) and isinstance(b, types.Array) and isinstance(c, types.Array)):
        return None
    if not (a.dtype == b.dtype == c.dtype) or c.dtype not in (types.float32, types.float64):
        return None
    ensure_blas()
    dtype = c.dtype
    kind = ord("s" if dtype == types.float32 else "d")
    sig = types.int32(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        (ta, tb, m_, n_, k_, alpha_, a_, lda_, b_, ldb_, beta_, c_, ldc_) = args
        intp_t = context.get_value_type(types.intp)
        fnty = ir.FunctionType(ir.IntType(32), [
            _ll_char, _ll_char, _ll_char, intp_t, intp_t, intp_t,
            _ll_void_p, _ll_void_p, intp_t, _ll_void_p, intp_t, _ll_void_p, _ll_void_p, intp_t])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        ll_dtype = context.get_value_type(dtype)

        def slot(value, ty):
            v = context.cast(builder, value, ty, dtype)
            ptr = cgutils.alloca_once(builder, ll_dtype)
            builder.store(v, ptr)
            return builder.bitcast(ptr, _ll_void_p)

        def data(value, ty):
            return builder.bitcast(cgutils.create_struct_proxy(ty)(context, builder, value=value).data, _ll_void_p)

        def as_intp(value, ty):
            return context.cast(builder, value, ty, types.intp)

        def as_char(value, ty):
            return builder.trunc(context.cast(builder, value, ty, types.int64), _ll_char)

        tys = signature.args
        return builder.call(fn, (
            ir.Constant(_ll_char, kind), as_char(ta, tys[0]), as_char(tb, tys[1]),
            as_intp(m_, tys[2]), as_intp(n_, tys[3]), as_intp(k_, tys[4]),
            slot(alpha_, tys[5]), data(a_, tys[6]), as_intp(lda_, tys[7]),
            data(b_, tys[8]), as_intp(ldb_, tys[9]), slot(beta_, tys[10]),
            data(c_, tys[11]), as_intp(ldc_, tys[12])))

    return sig, codegen


@intrinsic
def _xxgemv(typingctx, trans, m, n, alpha, a, lda, x, beta, y):
    """Column-major ``y = alpha * op(a) @ x + beta * y`` on contiguous vectors."""
    if not (isinstance(a, types.Array) and isinstance(x, types.Array) and isinstance(y, types.Array)):
        return None
    if not (a.dtype == x.dtype == y.dtype) or y.dtype not in (types.float32, types.float64):
        return None
    ensure_blas()
    dtype = y.dtype
    kind = ord("s" if dtype == types.float32 else "d")
    sig = types.int32(trans, m, n, alpha, a, lda, x, beta, y)

    def codegen(context, builder, signature, args):
        (t_, m_, n_, alpha_, a_, lda_, x_, beta_, y_) = args
        intp_t = context.get_value_type(types.intp)
        fnty = ir.FunctionType(ir.IntType(32), [
            _ll_char, _ll_char, intp_t, intp_t, _ll_void_p, _ll_void_p, intp_t,
            _ll_void_p, _ll_void_p, _ll_void_p])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemv")
        ll_dtype = context.get_value_type(dtype)
        tys = signature.args

        def slot(value, ty):
            ptr = cgutils.alloca_once(builder, ll_dtype)
            builder.store(context.cast(builder, value, ty, dtype), ptr)
            return builder.bitcast(ptr, _ll_void_p)

        def data(value, ty):
            return builder.bitcast(cgutils.create_struct_proxy(ty)(context, builder, value=value).data, _ll_void_p)

        return builder.call(fn, (
            ir.Constant(_ll_char, kind),
            builder.trunc(context.cast(builder, t_, tys[0], types.int64), _ll_char),
            context.cast(builder, m_, tys[1], types.intp), context.cast(builder, n_, tys[2], types.intp),
            slot(alpha_, tys[3]), data(a_, tys[4]), context.cast(builder, lda_, tys[5], types.intp),
            data(x_, tys[6]), slot(beta_, tys[7]), data(y_, tys[8])))

    return sig, codegen


# Below this many rows of the result, OpenBLAS's gemm (which packs the whole right-hand
# matrix on every call) loses to one matrix-vector product per row: 10x at one row.
GEMV_MAX_ROWS = 4

_N = ord("n")
_T = ord("t")


@njit(cache=True)
def gemm(a, b, c, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """Row-major ``c = alpha * op(a) @ op(b) + beta * c`` with op(x) = x or x.T.

    a, b, c: 2-D float arrays of one dtype with unit stride along rows.  Shapes must
    agree (op(a): (m, k), op(b): (k, n), c: (m, n)); the caller guarantees it, as
    kernels check shapes in the layer before any work starts.
    """
    m = c.shape[0]
    n = c.shape[1]
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        if beta == 0.0:
            c[:, :] = 0.0
        else:
            for i in range(m):
                for j in range(n):
                    c[i, j] *= beta
        return
    item = c.itemsize
    lda = max(1, a.strides[0] // item)
    ldb = max(1, b.strides[0] // item)
    ldc = max(1, c.strides[0] // item)
    if m <= GEMV_MAX_ROWS and not trans_a and a.strides[1] == item and c.strides[1] == item:
        # Row i of C is alpha * op(B)^T @ a[i] + beta * c[i].  B's storage read column-major
        # is B^T (n x k, leading dimension ldb), or B itself when trans_b.
        for i in range(m):
            if trans_b:
                _xxgemv(_T, k, n, alpha, b, ldb, a[i], beta, c[i])
            else:
                _xxgemv(_N, n, k, alpha, b, ldb, a[i], beta, c[i])
        return
    # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
    _xxgemm(_T if trans_b else _N, _T if trans_a else _N, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc)


@njit(cache=True)
def _touch(a, c):
    gemm(a, a, c)
    gemm(a[:1], a, c[:1])


def resolve_blas() -> None:
    """Make Numba resolve its BLAS entry points (gemm, gemv; single and double) from
    one thread.  Numba looks each up lazily on first call; the first call must not
    happen in several threads of a parallel region at once."""
    for dtype in (np.float32, np.float64):
        a = np.ones((2, 2), dtype=dtype)
        _touch(a, np.empty_like(a))
