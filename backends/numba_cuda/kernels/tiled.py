"""The one matrix-product kernel every conv and gemm on the CUDA target is built from.

C[rows, cols] = A[rows, K] @ B[K, cols], where each template says how to read an element of A
(`va` from `row`, `k`) and of B (`vb` from `k`, `col`) and how to store one of C (from `acc`):
so a convolution is an implicit GEMM whose B reads the input's windows in place, with no
unfolded matrix in memory. A block of TILE x TILE threads computes one tile of C; each step
stages a TILE-wide slice of A and of B in shared memory, so every global element is read once
per tile instead of once per product. blockIdx.z indexes a batch (conv groups, matmul batches).
"""

from __future__ import annotations

from collections.abc import Sequence

from .common import CUDA_TYPES, TILE, indent, lit


def tiled_kernel(params: Sequence[str], rows: int, cols: int, depth: int, dtype: str,
                 load_a: Sequence[str], load_b: Sequence[str], store: Sequence[str]) -> str:
    """Source of C = A @ B for one blockIdx.z; `depth` is K. Launch it with grid_for."""
    t = CUDA_TYPES[dtype]
    zero = lit(0, dtype)
    body = f"""\
def KERNEL({', '.join(params)}):
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.y * {TILE} + ty
    col = cuda.blockIdx.x * {TILE} + tx
    z = cuda.blockIdx.z
    sa = cuda.shared.array(({TILE}, {TILE}), {t})
    sb = cuda.shared.array(({TILE}, {TILE}), {t})
    acc = {zero}
    for k0 in range(0, {depth}, {TILE}):
        k = k0 + tx
        va = {zero}
        if row < {rows} and k < {depth}:
{indent(load_a, 3)}
        sa[ty, tx] = va
        k = k0 + ty
        vb = {zero}
        if col < {cols} and k < {depth}:
{indent(load_b, 3)}
        sb[ty, tx] = vb
        cuda.syncthreads()
        for kk in range({TILE}):
            acc += sa[ty, kk] * sb[kk, tx]
        cuda.syncthreads()
    if row < {rows} and col < {cols}:
{indent(store, 2)}
"""
    return body


def grid_for(rows: int, cols: int, batch: int) -> tuple:
    return ((max(1, -(-cols // TILE)), max(1, -(-rows // TILE)), max(1, batch)), (TILE, TILE))
