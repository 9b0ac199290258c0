"""Sparse x dense products for graph networks.

A sparse matrix is three values in CSR form: `indptr` (i32 or i64, rows + 1), `indices` (same
integer type, nnz column indices) and `data` (float, nnz). `spmm(indptr, indices, data, x)`
computes A @ x for the [rows, x.rows] matrix A they describe; aggregation reads each row's
neighbours in place and never materialises per-edge messages.
"""

from __future__ import annotations

import numpy as np

from ..registry import Cost, OpDef, bytes_moved, expect, register
from ..types import FLOAT_DTYPES, INT_DTYPES, TensorType


def _infer(types, a):
    indptr, indices, data, x = types
    expect(indptr.rank == 1 and indptr.shape[0] >= 1 and indptr.dtype in INT_DTYPES,
           f"indptr must be a 1-D integer tensor of rows + 1, got {indptr}")
    expect(indices.rank == 1 and indices.dtype == indptr.dtype,
           f"indices must be 1-D {indptr.dtype}, got {indices}")
    expect(data.rank == 1 and data.shape == indices.shape,
           f"data must be 1-D with one value per index ({indices.shape[0]}), got {data}")
    expect(x.rank == 2 and x.dtype in FLOAT_DTYPES and data.dtype == x.dtype,
           f"x must be a 2-D float tensor of data's dtype {data.dtype}, got {x}")
    return [TensorType(x.dtype, (indptr.shape[0] - 1, x.shape[1]))]


def spmm_reference(indptr, indices, data, x) -> np.ndarray:
    rows = len(indptr) - 1
    counts = np.diff(indptr)
    expect(bool((counts >= 0).all()) and indptr[-1] == len(indices), "indptr is not a valid CSR row pointer")
    expect(len(indices) == 0 or (indices.min() >= 0 and indices.max() < x.shape[0]),
           f"column indices out of range for x with {x.shape[0]} rows")
    out = np.zeros((rows, x.shape[1]), np.float64)
    row_of = np.repeat(np.arange(rows), counts)
    np.add.at(out, row_of, data[:, None].astype(np.float64) * x[indices])
    return out.astype(x.dtype)


def _cost(ins, outs, a):
    nnz, cols = ins[2].shape[0], ins[3].shape[1]
    return Cost(nnz * cols, 2 * nnz * cols, bytes_moved(ins, outs))


def csr_transpose(indptr, indices, data, cols: int):
    """CSR of the transposed matrix (a stable counting sort of the entries by column)."""
    rows = len(indptr) - 1
    row_of = np.repeat(np.arange(rows), np.diff(indptr))
    order = np.argsort(indices, kind="stable")
    t_indptr = np.zeros(cols + 1, indptr.dtype)
    np.cumsum(np.bincount(indices, minlength=cols), out=t_indptr[1:])
    return t_indptr, row_of[order].astype(indices.dtype), data[order].copy()


def _spmm_grad(ctx, node, dys):
    """d x = A^T dy. A^T is built once, at compile time, so the adjacency must be constant;
    gradients for the adjacency's own values are not built."""
    indptr, indices, data, x = node.inputs
    if ctx.needs(node, 2):
        return ctx.unsupported(node, "gradients for the adjacency values (trainable edge weights) are not built")
    arrays = [ctx.const_data(v) for v in (indptr, indices, data)]
    if any(arr is None for arr in arrays):
        return ctx.unsupported(node, "spmm's gradient needs a constant adjacency (indptr, indices, data params)")
    t = csr_transpose(*arrays, ctx.type(x).shape[0])
    names = [ctx.const(arr, base) for arr, base in zip(t, ("indptr_t", "indices_t", "data_t"), strict=True)]
    return [None, None, None, ctx.emit("spmm", [*names, dys[0]], base="d" + x)[0]]


register(OpDef(
    name="spmm", family="sparse", inputs=("indptr", "indices", "data", "x"), outputs=("y",),
    attrs={}, infer=_infer, reference=lambda xs, a: [spmm_reference(*xs)], cost=_cost, grad=_spmm_grad,
    doc="CSR(indptr, indices, data) @ x",
))
