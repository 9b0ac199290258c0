"""Block-wide sums in shared memory, for kernels where one block owns a reduction (a batch-norm
channel, a loss over rows): each thread first adds up its own strided share into a float64
partial, then a tree halves the active threads log2(T) times, one `cuda.syncthreads()` a step.

The lines are rendered into the kernel at the call site (unrolled: T is a literal); every
thread of the block must reach them, so no thread may return before a block sum.
"""

from __future__ import annotations

MOST = 256  # threads per block of a block-reduction kernel


def block_threads(n: int, most: int = MOST) -> int:
    """A power of two of threads for a block reducing n values: one each, 32 to `most`."""
    t = 32
    while t < min(n, most):
        t *= 2
    return t


def block_sum(names: list[str], threads: int) -> list[str]:
    """Lines replacing each float64 partial in `names` (one per thread) by the block's total,
    in every thread. Needs `tid = cuda.threadIdx.x`; each call declares its own arrays, so a
    kernel may sum several times without another barrier."""
    lines = [f"sh_{n} = cuda.shared.array({threads}, float64)" for n in names]
    lines += [f"sh_{n}[tid] = {n}" for n in names] + ["cuda.syncthreads()"]
    half = threads // 2
    while half:
        lines += [f"if tid < {half}:", *(f"    sh_{n}[tid] += sh_{n}[tid + {half}]" for n in names),
                  "cuda.syncthreads()"]
        half //= 2
    return lines + [f"{n} = sh_{n}[0]" for n in names]
