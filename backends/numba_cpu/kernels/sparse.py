"""Sparse x dense kernels: spmm, CSR(indptr, indices, data) @ x.

Rows are independent, so the kernel is a prange over output rows; each row scales and adds the
rows of x its entries name straight into the (contiguous) output row, so nothing per edge is
ever materialised. The CSR arrays are checked first (a serial pass over indptr and indices, cheap
next to the product): a malformed or out-of-range structure raises ValueError instead of reading
outside x.
"""

from __future__ import annotations

from ....ir import Node, TensorType
from .common import PARALLEL_MIN, KernelSource, plain_only


def spmm(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    nnz = ins[1].shape[0]
    xrows, f = ins[3].shape
    rows = outs[0].shape[0]
    par = rows > 1 and nnz * f >= PARALLEL_MIN
    body = f"""\
def KERNEL(indptr, indices, data, x, y):
    if np.int64(indptr[0]) != 0 or np.int64(indptr[{rows}]) != {nnz}:
        raise ValueError("spmm: indptr must start at 0 and end at the number of entries")
    for r in range({rows}):
        if np.int64(indptr[r + 1]) < np.int64(indptr[r]):
            raise ValueError("spmm: indptr must not decrease")
    for e in range({nnz}):
        if np.int64(indices[e]) < 0 or np.int64(indices[e]) >= {xrows}:
            raise ValueError("spmm: a column index is outside x's rows")
    for r in {'prange' if par else 'range'}({rows}):
        yb = r * {f}
        for j in range({f}):
            y[yb + j] = 0
        for e in range(np.int64(indptr[r]), np.int64(indptr[r + 1])):
            v = data[e]
            xb = np.int64(indices[e]) * {f}
            for j in range({f}):
                y[yb + j] += v * x[xb + j]
"""
    note = f"spmm {rows} rows, {nnz} entries, {f} features: row-parallel CSR, validated first"
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note, parallel=par)


TEMPLATES = {"spmm": plain_only(spmm)}
