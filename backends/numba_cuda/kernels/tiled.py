"""The one matrix-product kernel every conv and gemm on the CUDA target is built from.

C[rows, cols] = A[rows, K] @ B[K, cols], where each template says how to read an element of A
(`va` from `row`, `k`) and of B (`vb` from `k`, `col`) and how to store one of C (from `acc`):
so a convolution is an implicit GEMM whose B reads the input's windows in place, with no
unfolded matrix in memory. blockIdx.z indexes a batch (conv groups, matmul batches).

A block of 16 x 16 threads computes a BM x BN tile of C, each thread a TM x TN grid of it
(rows ty + 16 i, columns tx + 16 j) held in registers (a local array with constant indices).
Each step stages a 16-deep slice of A (BM x 16) and of B (16 x BN) in shared memory, every
thread loading TM elements of A and TN of B (consecutive threads take consecutive k of A and
consecutive columns of B, so global reads coalesce), then runs 16 rank-1 updates of its
accumulators from registers: each shared element a thread reads feeds TN (or TM) products
instead of one. TM and TN are 4, 2 or 1, chosen from the shape (tiles.TM_TN): 64 x 64 tiles for
large products, down to 16 x 16 for narrower ones.

A product with at most THIN rows or columns (a batch-1 linear layer: one row; a convolution
whose output is 1 x 1 at batch 1: one column) would leave 15 of every 16 threads of a tile
idle, so it runs one thread per element of C instead, each walking K on its own (consecutive
threads take consecutive columns, so B's rows are read coalesced): a matrix-vector product is
bound by reading the matrix once, which this does.
"""

from __future__ import annotations

from collections.abc import Sequence

from .common import CUDA_TYPES, TILE, indent, lit

THREADS_2D = TILE * TILE


def _per_thread(extent: int) -> int:
    """Rows (or columns) of C per thread: 4 when the extent fills a 64-wide tile, else less."""
    return 4 if extent >= 4 * TILE else 2 if extent >= 2 * TILE else 1


def tile_shape(rows: int, cols: int) -> tuple[int, int]:
    """(TM, TN) for C[rows, cols]; the block tile is 16 TM x 16 TN."""
    return _per_thread(rows), _per_thread(cols)


THIN = 4  # at most this many rows or columns: one thread per element of C
THREADS_THIN = 256


def _thin(rows: int, cols: int) -> bool:
    return min(rows, cols) <= THIN


def tiled_kernel(params: Sequence[str], rows: int, cols: int, depth: int, dtype: str,
                 load_a: Sequence[str], load_b: Sequence[str], store: Sequence[str]) -> str:
    """Source of C = A @ B for one batch index z; `depth` is K. Launch it with grid_for."""
    t = CUDA_TYPES[dtype]
    zero = lit(0, dtype)
    if _thin(rows, cols):
        return f"""\
def KERNEL({', '.join(params)}):
    gi = cuda.blockIdx.x * {THREADS_THIN} + cuda.threadIdx.x
    z = cuda.blockIdx.y
    if gi < {rows * cols}:
        row = gi // {cols}
        col = gi - row * {cols}
        acc = {zero}
        for k in range({depth}):
            va = {zero}
{indent(load_a, 3)}
            vb = {zero}
{indent(load_b, 3)}
            acc += va * vb
{indent(store, 2)}
"""
    tm, tn = tile_shape(rows, cols)
    bm, bn = TILE * tm, TILE * tn
    body = f"""\
def KERNEL({', '.join(params)}):
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * {TILE} + tx
    r0 = cuda.blockIdx.y * {bm}
    c0 = cuda.blockIdx.x * {bn}
    z = cuda.blockIdx.z
    sa = cuda.shared.array(({TILE}, {bm}), {t})
    sb = cuda.shared.array(({TILE}, {bn}), {t})
    accs = cuda.local.array(({tm}, {tn}), {t})
    ra = cuda.local.array({tm}, {t})
    rb = cuda.local.array({tn}, {t})
    for ti in range({tm}):
        for tj in range({tn}):
            accs[ti, tj] = {zero}
    for k0 in range(0, {depth}, {TILE}):
        for li in range({tm}):
            e = tid + li * {THREADS_2D}
            row = r0 + e // {TILE}
            k = k0 + e % {TILE}
            va = {zero}
            if row < {rows} and k < {depth}:
{indent(load_a, 4)}
            sa[e % {TILE}, e // {TILE}] = va
        for li in range({tn}):
            e = tid + li * {THREADS_2D}
            col = c0 + e % {bn}
            k = k0 + e // {bn}
            vb = {zero}
            if col < {cols} and k < {depth}:
{indent(load_b, 4)}
            sb[e // {bn}, e % {bn}] = vb
        cuda.syncthreads()
        for kk in range({TILE}):
            for ti in range({tm}):
                ra[ti] = sa[kk, ty + {TILE} * ti]
            for tj in range({tn}):
                rb[tj] = sb[kk, tx + {TILE} * tj]
            for ti in range({tm}):
                for tj in range({tn}):
                    accs[ti, tj] += ra[ti] * rb[tj]
        cuda.syncthreads()
    for ti in range({tm}):
        row = r0 + ty + {TILE} * ti
        for tj in range({tn}):
            col = c0 + tx + {TILE} * tj
            if row < {rows} and col < {cols}:
                acc = accs[ti, tj]
{indent(store, 4)}
"""
    return body


def tile_note(rows: int, cols: int) -> str:
    if _thin(rows, cols):
        return "one thread per output, K in a loop (thin product)"
    tm, tn = tile_shape(rows, cols)
    return f"{TILE * tm}x{TILE * tn} tiles, {tm}x{tn} per thread"


def grid_for(rows: int, cols: int, batch: int) -> tuple:
    if _thin(rows, cols):
        return (max(1, -(-rows * cols // THREADS_THIN)), max(1, batch)), THREADS_THIN
    tm, tn = tile_shape(rows, cols)
    return ((max(1, -(-cols // (TILE * tn))), max(1, -(-rows // (TILE * tm))), max(1, batch)), (TILE, TILE))
