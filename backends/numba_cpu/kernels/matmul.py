"""Matrix-product kernels: gemm (alpha * A' @ B' + beta * C) and numpy-style batched matmul.

Both become one product y[t] = A[t] @ B[t] (M x N, inner K) per batch index t, with each
operand's batch offset computed from literal strides (0 along broadcast axes). A matmul whose
right operand is broadcast over every batch axis (x[B, M, K] @ w[K, N]) folds its batch into M
and runs as one product.

The product is `np.dot` on reshaped 2-D views of the flat arguments (BLAS, through scipy's
bindings), writing straight into the output's view; transposed gemm operands are `.T` views, which
BLAS reads without a copy. kiln keeps that BLAS single-threaded (its idle threads spinning beside
numba's stalled the kernels after it), so a large unbatched product is split by rows over a
prange, one single-threaded BLAS call per block. gemm's alpha/beta/C epilogue is one broadcast
pass over y in y's dtype, mirroring the reference's rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ....ir import Node, TensorType
from ....ir.ops.elementwise import broadcast_shape
from ...templating import epilogue_act
from .common import KernelSource, broadcast_strides, collapse, lit, nested_loops, plain_only, strides


@dataclass(frozen=True)
class Product:
    """y[t] = A[t] @ B[t] for t over `batch`; A[t] starts at sum(i * sa), B[t] at sum(i * sb)."""

    m: int
    n: int
    k: int
    batch: tuple[int, ...] = ()
    sa: tuple[int, ...] = ()
    sb: tuple[int, ...] = ()
    trans_a: bool = False  # A[t] stored as K x M
    trans_b: bool = False  # B[t] stored as N x K

    @property
    def count(self) -> int:
        return math.prod(self.batch)


def _offsets(p: Product, t: str) -> list[str]:
    """Lines computing `oa`, `ob` (operand offsets) from the batch index named `t`."""
    if not p.batch:
        return ["oa = 0", "ob = 0"]
    lines, terms_a, terms_b = [f"r = {t}"], [], []
    for k in reversed(range(len(p.batch))):
        lines += [f"i{k} = r % {p.batch[k]}", f"r = r // {p.batch[k]}"]
        terms_a += [f"i{k} * {p.sa[k]}"] if p.sa[k] else []
        terms_b += [f"i{k} * {p.sb[k]}"] if p.sb[k] else []
    return lines + [f"oa = {' + '.join(terms_a) or '0'}", f"ob = {' + '.join(terms_b) or '0'}"]


ROW_SPLIT_MIN = 1 << 20  # multiply-adds above which a product is split by rows over threads
ROW_BLOCKS = 8


def _row_split(p: Product) -> bool:
    return p.count == 1 and not p.trans_a and p.m >= 2 * ROW_BLOCKS and p.m * p.n * p.k >= ROW_SPLIT_MIN


def _blas(p: Product) -> list[str]:
    m, n, k = p.m, p.n, p.k
    if _row_split(p):
        bv = f"b[:{k * n}]" + (f".reshape(({n}, {k})).T" if p.trans_b else f".reshape(({k}, {n}))")
        return [f"    for blk in prange({ROW_BLOCKS}):",
                f"        r0 = blk * {m} // {ROW_BLOCKS}",
                f"        r1 = (blk + 1) * {m} // {ROW_BLOCKS}",
                (f"        np.dot(a[r0 * {k}:r1 * {k}].reshape((r1 - r0, {k})), {bv}, "
                f"y[r0 * {n}:r1 * {n}].reshape((r1 - r0, {n})))")]
    av = f"a[oa:oa + {m * k}]" + (f".reshape(({k}, {m})).T" if p.trans_a else f".reshape(({m}, {k}))")
    bv = f"b[ob:ob + {k * n}]" + (f".reshape(({n}, {k})).T" if p.trans_b else f".reshape(({k}, {n}))")
    body = [*_offsets(p, "t"), f"np.dot({av}, {bv}, y[t * {m * n}:(t + 1) * {m * n}].reshape(({m}, {n})))"]
    return [f"    for t in range({p.count}):", *("        " + s for s in body)]


def _product(p: Product, args: str, epilogue: Sequence[str] = ()) -> tuple[str, str]:
    """Kernel body and note for a product plus an epilogue over y."""
    batch = f" x{p.count}" if p.count > 1 else ""
    split = f", rows in {ROW_BLOCKS} parallel blocks" if _row_split(p) else ""
    note = f"{p.m}x{p.k} @ {p.k}x{p.n}{batch}, np.dot (BLAS){split}"
    return f"def KERNEL({args}):\n" + "\n".join([*_blas(p), *epilogue]) + "\n", note


def gemm(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a, y = node.attrs, outs[0]
    m, n = y.shape
    k = ins[0].shape[0] if a["trans_a"] else ins[0].shape[1]
    p = Product(m, n, k, trans_a=a["trans_a"], trans_b=a["trans_b"])
    alpha = "" if a["alpha"] == 1.0 else f"{lit(a['alpha'], y.dtype)} * "
    epilogue: list[str] = []
    if len(ins) > 2:
        beta = "" if a["beta"] == 1.0 else f"{lit(a['beta'], y.dtype)} * "
        shape, (so, sc) = collapse((m, n), strides((m, n)), broadcast_strides(ins[2].shape, (m, n)))
        value = epilogue_act(a, y.dtype, f"{alpha}y[io] + {beta}c[ic]")
        epilogue = nested_loops(shape, {"io": so, "ic": sc}, [f"y[io] = {value}"], False)
    elif alpha or a["act"]:
        epilogue = [f"    for i in range({m * n}):", f"        y[i] = {epilogue_act(a, y.dtype, alpha + 'y[i]')}"]
    args = "a, b, c, y" if len(ins) > 2 else "a, b, y"
    body, note = _product(p, args, epilogue)
    return KernelSource(body, (*node.inputs, node.outputs[0].name), "gemm " + note, parallel=_row_split(p))


def _matmul_product(a_shape: tuple, b_shape: tuple) -> Product:
    """numpy's rules: a 1-D left operand is a row, a 1-D right operand a column (the dropped
    axis of size 1 changes nothing in the flat output)."""
    a2 = (1, *a_shape) if len(a_shape) == 1 else a_shape
    b2 = (*b_shape, 1) if len(b_shape) == 1 else b_shape
    (m, k), n = a2[-2:], b2[-1]
    batch = broadcast_shape(a2[:-2], b2[:-2])
    sa = tuple(s * m * k for s in broadcast_strides(a2[:-2], batch))
    sb = tuple(s * k * n for s in broadcast_strides(b2[:-2], batch))
    full_a = sa == tuple(s * m * k for s in strides(batch))
    if batch and full_a and not any(sb):  # B shared by every batch: one taller product
        return Product(m * math.prod(batch), n, k)
    return Product(m, n, k, batch, sa, sb)


def matmul(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    p = _matmul_product(ins[0].shape, ins[1].shape)
    body, note = _product(p, "a, b, y")
    return KernelSource(body, (*node.inputs, node.outputs[0].name), "matmul " + note, parallel=_row_split(p))


TEMPLATES = {"gemm": plain_only(gemm), "matmul": plain_only(matmul)}
