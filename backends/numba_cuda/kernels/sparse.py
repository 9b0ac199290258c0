"""spmm, CSR(indptr, indices, data) @ x: one warp per output row.

The warp's 32 lanes stride over the row's feature columns, so each neighbour's row of x is read
(and the output row written) in coalesced 32-column runs; every lane walks the same entries, so
their index and weight are one broadcast load. Nothing per edge is materialised, and rows are
independent (no atomics). Sums run in float64 in entry order, as the reference's np.add.at.

A malformed structure (indptr not bounding [0, nnz], or a column outside x) makes the affected
row NaN instead of reading out of bounds: the CPU kernel raises, but a kernel cannot.
"""

from __future__ import annotations

from ....ir import Node, TensorType
from .common import KernelSource, plain_only

WARP = 32
WARPS = 8  # rows per block


def spmm(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    nnz = ins[1].shape[0]
    xrows, f = ins[3].shape
    rows = outs[0].shape[0]
    warps = max(1, min(WARPS, rows))
    body = f"""\
def KERNEL(indptr, indices, data, x, y):
    r = cuda.blockIdx.x * {warps} + cuda.threadIdx.x // {WARP}
    lane = cuda.threadIdx.x % {WARP}
    if r < {rows}:
        e0 = np.int64(indptr[r])
        e1 = np.int64(indptr[r + 1])
        bad = e0 < 0 or e1 < e0 or e1 > {nnz}
        for j in range(lane, {f}, {WARP}):
            acc = np.float64(0.0)
            if bad:
                acc = math.nan
            else:
                for e in range(e0, e1):
                    col = np.int64(indices[e])
                    if col < 0 or col >= {xrows}:
                        acc = math.nan
                        break
                    acc += np.float64(data[e]) * np.float64(x[col * {f} + j])
            y[r * {f} + j] = acc
"""
    note = f"spmm {rows} rows, {nnz} entries, {f} features: a warp per row, lanes over features"
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note,
                        grid=(max(1, -(-rows // warps)), warps * WARP))


TEMPLATES = {"spmm": plain_only(spmm)}
