"""Parallel launches through one shared prange, so kernels need no parallel compile of their own.

numba compiles a `prange` loop into a gufunc of its own, and that costs 2-4 s per kernel here
(its parallel-loop analysis and lowering, then LLVM optimising the job body a second time inside
the gufunc's module): more than half of a conv kernel's compile. So a job kernel (a template
written with `job_function`) compiles its job function serially and exports it as a C callback
with one fixed signature,

    void job(int64 *argv, int64 job)

argv holding (address, element count) for each of its arrays, and the prange lives here, in
`launch_parallel`, compiled once per machine and cached with kiln's code: it calls the callback
by address for every job. The callback's body is never linked into the caller, so the driver
stays small too.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

_I64 = ir.IntType(64)
_JOB = ir.FunctionType(ir.VoidType(), [_I64.as_pointer(), _I64])


@intrinsic
def call_job(typingctx, fn, argv, job):
    """Call the job callback at address `fn` with argv's data and the job index."""
    if not (isinstance(argv, types.Array) and argv.dtype == types.int64 and argv.ndim == 1):
        raise TypeError(f"argv must be a 1-D int64 array, got {argv}")

    def codegen(context, builder, sig, args):
        ptr = builder.inttoptr(args[0], _JOB.as_pointer())
        table = context.make_array(sig.args[1])(context, builder, args[1])
        builder.call(ptr, [table.data, context.cast(builder, args[2], sig.args[2], types.int64)])
        return context.get_dummy_value()

    return types.none(types.int64, argv, job), codegen


@intrinsic
def address_as_voidptr(typingctx, addr):
    """An int64 address as a void pointer (for numba.carray)."""
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


# numba starts its threading layer when it compiles a prange, not when it loads one from its cache;
# launch_parallel loaded from the cache into a process that has compiled no prange would call an
# unresolved symbol (allocate_sched). Start it now.
numba.get_num_threads()


@njit(cache=True, nogil=True, parallel=True)
def launch_parallel(fn, argv, jobs):
    for j in prange(jobs):
        call_job(fn, argv, np.int64(j))


@njit(cache=True, nogil=True)
def launch_serial(fn, argv, jobs):
    for j in range(jobs):
        call_job(fn, argv, np.int64(j))


def argv_for(arrays) -> np.ndarray:
    """The argv table of a job callback for these (contiguous) arrays."""
    out = np.empty(2 * len(arrays), np.int64)
    for i, a in enumerate(arrays):
        out[2 * i], out[2 * i + 1] = a.ctypes.data, a.size
    return out
