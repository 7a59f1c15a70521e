"""Stages of parts shared by the threads of one parallel loop, without deadlock.

Some kernels are a sequence of stages (an LSTM: one stage per time step), each split into
parts that threads can run at once (the cell's units in groups), where a stage may start only
when every part of the one before it is done.  A barrier per stage would hang if the threading
layer ran two of the loop's iterations one after the other on the same thread (TBB may, and a
machine busy with other work delays a thread for long), so parts are *claimed* instead:

    for stage in range(nstages):
        for q in range(nparts):
            p = (me + q) % nparts            # a worker's own part first, then the others
            if claim(state, stage, p, nparts):
                ...                          # run part p of the stage
                publish(state, stage, p, nparts)
        wait_stage(state, stage, nparts)

Each part is run by exactly one worker, whichever claims it first; a worker waits only for
parts that another worker has claimed and is running, so any number of workers, run in any
order or even one after the other, finishes.  In the usual case every worker runs its own part
and finds the others claimed by the time it has finished.

``state`` is an int64 array of ``2 * nstages * nparts`` zeros (``new_state``): claim counters,
then done flags.  The flags are written with release and read with acquire ordering, so what
a part wrote before ``publish`` is visible to a worker after ``wait_stage``.
"""
import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _item_pointer(context, builder, aryty, ary, idx, idxty):
    array = context.make_array(aryty)(context, builder, ary)
    index = context.cast(builder, idx, idxty, types.intp)
    return cgutils.get_item_pointer(context, builder, aryty, array, [index])


def _int64_item(ary, idx):
    """Typing check shared by the intrinsics: an int64 array and an integer index."""
    return isinstance(ary, types.Array) and ary.dtype == types.int64 and isinstance(idx, types.Integer)


@intrinsic
def _fetch_add(typingctx, ary, idx):
    """ary[idx] += 1 atomically (acquire-release); returns the value before."""
    if not _int64_item(ary, idx):
        return None

    def codegen(context, builder, signature, args):
        ptr = _item_pointer(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        return builder.atomic_rmw("add", ptr, ir.Constant(ir.IntType(64), 1), "acq_rel")

    return types.int64(ary, idx), codegen


@intrinsic
def _load_acquire(typingctx, ary, idx):
    if not _int64_item(ary, idx):
        return None

    def codegen(context, builder, signature, args):
        ptr = _item_pointer(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(ary, idx), codegen


@intrinsic
def _store_release(typingctx, ary, idx):
    """ary[idx] = 1 with release ordering."""
    if not _int64_item(ary, idx):
        return None

    def codegen(context, builder, signature, args):
        ptr = _item_pointer(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        builder.store_atomic(ir.Constant(ir.IntType(64), 1), ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(ary, idx), codegen


@intrinsic
def _spin_pause(typingctx):
    """The x86 ``pause`` hint inside a spin loop (nothing elsewhere)."""

    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@njit(cache=True)
def new_state(nstages, nparts):
    return np.zeros(2 * nstages * nparts, dtype=np.int64)


@njit(cache=True)
def claim(state, stage, part, nparts):
    """True for the one worker that is first to claim ``part`` of ``stage``."""
    return _fetch_add(state, stage * nparts + part) == 0


@njit(cache=True)
def publish(state, stage, part, nparts):
    """Mark ``part`` of ``stage`` done (after everything it wrote)."""
    _store_release(state, state.shape[0] // 2 + stage * nparts + part)


@njit(cache=True)
def wait_stage(state, stage, nparts):
    """Return once every part of ``stage`` is done."""
    base = state.shape[0] // 2 + stage * nparts
    for p in range(nparts):
        while _load_acquire(state, base + p) == 0:
            _spin_pause()
