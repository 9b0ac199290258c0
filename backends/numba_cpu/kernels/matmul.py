"""Matrix-product kernels: gemm (alpha * A' @ B' + beta * C) and numpy-style batched matmul.

Both become one product y[t] = A[t] @ B[t] (M x N, inner K) per batch index t, with each
operand's batch offset computed from literal strides (0 along broadcast axes). A matmul whose
right operand is broadcast over every batch axis (x[B, M, K] @ w[K, N]) folds its batch into M
and runs as one product.

A gemm whose B is a const that select_layout marked `pack_b` (a linear layer's weights) runs on
kiln's own micro-kernel, the convolutions' (conv_blocked.py) with a 1x1 window: B is repacked
at compile time into 16-column panels [N/16, K, 16] (the last one zero-padded), C and beta into
one padded row; a job is R rows x T panels, whose T x R f32x16 accumulators stay in registers
through the K loop (per k: T panel loads, R broadcasts of A, T x R fused multiply-adds). alpha,
C and the activation are applied to the registers; a padded panel's real lanes are stored one
by one.

Every other product is `np.dot` on reshaped 2-D views of the flat arguments (BLAS, through scipy's
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

import numpy as np

from ....ir import Node, TensorType
from ....ir.errors import UnsupportedError
from ....ir.ops.elementwise import broadcast_shape
from ....ir.ops.matmul import panels_apply
from ....ir.verify import node_label
from ...lowering import KernelSource
from ...templating import epilogue_act
from .common import broadcast_strides, collapse, job_function, lit, nested_loops, plain_only, strides
from .conv_blocked import STRIP, strip_width, vector_epilogue


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


SERIAL_MACS = 1 << 17  # smaller products run on one thread: a parallel launch costs more


def _panel_tile(p: dict, t_count: int, rows: int, partial: bool, ind: str) -> list[str]:
    """One job's code: `rows` rows from m0 x `t_count` panels from nb (the last one padded when
    `partial`), accumulated in registers over K, then the epilogue and the stores."""
    m, n, k = p["M"], p["N"], p["K"]
    x_at = (lambda r: f"x[kk * {m} + m0 + {r}]") if p["TA"] else (lambda r: f"x[(m0 + {r}) * {k} + kk]")
    out = [f"{ind}a{t}_{r} = vzero()" for t in range(t_count) for r in range(rows)]
    out += [f"{ind}wo = nb * {k * 16}", f"{ind}for kk in range({k}):"]
    out += [f"{ind}    w{t} = vload(bp, wo + kk * 16 + {t * k * 16})" for t in range(t_count)]
    for r in range(rows):
        out.append(f"{ind}    xv = vsplat({x_at(r)})")
        out += [f"{ind}    a{t}_{r} = vfma(xv, w{t}, a{t}_{r})" for t in range(t_count)]
    for t in range(t_count):
        for r in range(rows):
            acc = f"a{t}_{r}"
            if p["SCALE"] != 1.0:
                out.append(f"{ind}{acc} = vmul({acc}, vsplat(np.float32({p['SCALE']!r})))")
            if p["C"]:
                out.append(f"{ind}{acc} = vadd({acc}, vload(cp, (nb + {t}) * 16))")
            out += [ind + line for line in vector_epilogue(p, [(acc, "")])]
            if partial and t == t_count - 1:
                out += [f"{ind}for j in range({n % 16}):",
                        f"{ind}    y[(m0 + {r}) * {n} + (nb + {t}) * 16 + j] = vlane({acc}, j)"]
            else:
                out.append(f"{ind}vstore(y, (m0 + {r}) * {n} + (nb + {t}) * 16, {acc})")
    return out


def gemm_panels(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a = node.attrs
    m, n = outs[0].shape
    k = ins[0].shape[0] if a["trans_a"] else ins[0].shape[1]
    panels, part = -(-n // 16), n % 16
    # panels per job: when a strip of registers holds every row, the widest such (B is read once:
    # small batches are bound by reading it); otherwise the most accumulators (T panels x R rows)
    fits = [t for t in (4, 2, 1) if t <= panels and m <= STRIP[t]]
    t = fits[0] if fits else max((t for t in (4, 2, 1) if t <= panels), key=lambda t: t * STRIP[t])
    r = strip_width(m, STRIP[t])
    strips, row_tail = divmod(m, r)
    groups = -(-panels // t)
    last = panels - (groups - 1) * t  # panels in the last group, whose last one is padded when `part`
    p = dict(M=m, N=n, K=k, TA=a["trans_a"], SCALE=a["alpha"], C=len(ins) > 2, RES=False, ACT=a["act"],
             ALO=a["act_min"], AHI=a["act_max"], ALPHA=a["act_alpha"])  # the names vector_epilogue reads

    def rows_split(t_count: int, partial: bool, ind: str) -> list[str]:
        if not row_tail:
            return _panel_tile(p, t_count, r, partial, ind)
        if not strips:
            return _panel_tile(p, t_count, row_tail, partial, ind)
        return [f"{ind}if s < {strips}:", *_panel_tile(p, t_count, r, partial, ind + "    "),
                f"{ind}else:", *_panel_tile(p, t_count, row_tail, partial, ind + "    ")]

    lines = [f"        g = job % {groups}", f"        s = job // {groups}", f"        m0 = s * {r}",
             f"        nb = g * {t}"]
    if last == t and not part:
        lines += rows_split(t, False, " " * 8)
    elif groups == 1:
        lines += rows_split(last, bool(part), " " * 8)
    else:
        lines += [f"        if g < {groups - 1}:", *rows_split(t, False, " " * 12),
                  "        else:", *rows_split(last, bool(part), " " * 12)]
    jobs = (strips + (row_tail > 0)) * groups
    out_name = node.outputs[0].name
    bname, cname = f"{out_name}.b16", f"{out_name}.c16"
    b_in, c_in = node.inputs[1], node.inputs[2] if len(ins) > 2 else None

    def packed_b(params):
        if b_in not in params:
            raise UnsupportedError(f"{node_label(node)}: pack_b needs B ({b_in!r}) to be a const, "
                                   "and it is computed at run time")
        b = params[b_in].T if a["trans_b"] else params[b_in]  # K x N
        pad = np.zeros((k, panels * 16), np.float32)
        pad[:, :n] = b
        return pad.reshape(k, panels, 16).transpose(1, 0, 2)

    def packed_c(params):
        if c_in not in params:
            raise UnsupportedError(f"{node_label(node)}: pack_b needs C ({c_in!r}) to be a const")
        c = np.zeros(panels * 16, np.float32)
        c[:n] = np.float32(a["beta"]) * params[c_in].reshape(-1)
        return c

    args = (node.inputs[0], bname, *((cname,) if c_in else ()), out_name)
    serial = m * n * k < SERIAL_MACS
    body = job_function(f"x, bp, {'cp, ' if c_in else ''}y", lines)
    note = (f"gemm {m}x{k} @ {k}x{n}, kiln micro-kernel: B in {panels} 16-column panels, "
            f"{t} panel(s) x {r} row(s) in registers" + (f", fused {a['act']}" if a["act"] else ""))
    packed = {bname: packed_b, **({cname: packed_c} if c_in else {})}
    return KernelSource(body, args, note, parallel=not serial, fastmath=True, packed=packed, jobs=jobs)


def gemm(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    if node.attrs["pack_b"] and panels_apply(node.attrs, ins):
        return gemm_panels(node, ins, outs)
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
