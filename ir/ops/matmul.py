"""Matrix products: gemm (ONNX's alpha * A' B' + beta * C, optionally followed by a fused
activation, as a conv's: relu, clip, leaky_relu) and numpy-style batched matmul."""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..grad import scale, unbroadcast
from ..registry import Attr, Cost, OpDef, bytes_moved, expect, register
from ..types import FLOAT_DTYPES, TensorType
from .conv import EPILOGUE_ACTS, apply_epilogue
from .elementwise import broadcast_shape


def _gemm_infer(types, a):
    A, B, *rest = types
    expect(A.rank == 2 and B.rank == 2, f"A and B must be 2-D, got {A} and {B}")
    expect(A.dtype in FLOAT_DTYPES and A.dtype == B.dtype, f"dtypes must be one float type: {A}, {B}")
    m, k = A.shape[::-1] if a["trans_a"] else A.shape
    k2, n = B.shape[::-1] if a["trans_b"] else B.shape
    expect(k == k2, f"inner dimensions differ: A gives {k}, B gives {k2} (trans_a={int(a['trans_a'])}, trans_b={int(a['trans_b'])})")
    if rest:
        C = rest[0]
        expect(C.dtype == A.dtype, f"C dtype {C.dtype} differs from {A.dtype}")
        expect(broadcast_shape(C.shape, (m, n)) == (m, n), f"C {C} does not broadcast to [{m},{n}]")
    return [TensorType(A.dtype, (m, n))]


def _gemm_ref(xs, a):
    A, B, *rest = xs
    A = A.T if a["trans_a"] else A
    B = B.T if a["trans_b"] else B
    y = a["alpha"] * (A @ B)
    if rest:
        y = y + a["beta"] * rest[0]
    return [apply_epilogue(np.asarray(y, dtype=xs[0].dtype), None, a)]


def panels_apply(a, ins: list[TensorType]) -> bool:
    """Whether a gemm's B (and C) can be repacked into 16-column panels (pack_b): float32, and C
    absent or one row broadcast down the output."""
    n = ins[1].shape[0] if a["trans_b"] else ins[1].shape[1]
    return all(t.dtype == "f32" for t in ins) and (len(ins) < 3 or ins[2].shape in ((n,), (1, n)))


def _gemm_cost(ins, outs, a):
    A = ins[0]
    k = A.shape[0] if a["trans_a"] else A.shape[1]
    macs = outs[0].numel * k
    epilogue = (len(ins) > 2) + (a["act"] != "")
    return Cost(macs, 2 * macs + epilogue * outs[0].numel, bytes_moved(ins, outs))


def _gemm_grad(ctx, node, dys):
    """y = alpha op(A) op(B) + beta C. dA = alpha dy op(B)^T (transposed back when trans_a),
    dB = alpha op(A)^T dy (likewise), dC = beta dy summed over C's broadcast axes."""
    (dy,) = dys
    a = node.attrs
    A, B, *rest = node.inputs
    if a["act"] == "silu":  # its derivative needs the pre-activation, which a fused gemm does not keep
        raise UnsupportedError(f"gemm {node.outputs[0].name!r} with act=silu has no gradient rule: autodiff runs "
                               "before fuse_epilogues, on the unfused gemm and silu")
    if a["act"]:  # a fused activation: its gradient first, read from y (as a conv's)
        act = {"act": a["act"], "min": a["act_min"], "max": a["act_max"], "alpha": a["act_alpha"]}
        dy = ctx.emit("act_grad", [dy, node.outputs[0].name], act, base="d" + node.outputs[0].name + ".pre")[0]
    ta, tb, alpha = a["trans_a"], a["trans_b"], a["alpha"]
    out = [None, None]
    if ctx.needs(node, 0):
        args, flags = ((B, dy), (tb, True)) if ta else ((dy, B), (False, not tb))
        out[0] = ctx.emit("gemm", list(args), {"alpha": alpha, "trans_a": flags[0], "trans_b": flags[1]},
                          base="d" + A)[0]
    if ctx.needs(node, 1):
        args, flags = ((dy, A), (True, ta)) if tb else ((A, dy), (not ta, False))
        out[1] = ctx.emit("gemm", list(args), {"alpha": alpha, "trans_a": flags[0], "trans_b": flags[1]},
                          base="d" + B)[0]
    if rest:
        out.append(unbroadcast(ctx, scale(ctx, dy, a["beta"]), ctx.type(rest[0]).shape)
                   if ctx.needs(node, 2) else None)
    return out


register(OpDef(
    name="gemm", family="matmul", inputs=("a", "b", "c?"), outputs=("y",),
    attrs={"alpha": Attr("float", 1.0), "beta": Attr("float", 1.0),
           "trans_a": Attr("bool", False), "trans_b": Attr("bool", False),
           "act": Attr("str", "", choices=EPILOGUE_ACTS), "act_min": Attr("float", 0.0),
           "act_max": Attr("float", 6.0), "act_alpha": Attr("float", 0.01, doc="leaky_relu's slope, in (0, 1]"),
           "pack_b": Attr("bool", False, doc="B (and C) are consts the CPU backend repacks into 16-column "
                          "panels at compile time (set by select_layout)")},
    infer=_gemm_infer, reference=_gemm_ref, cost=_gemm_cost, show=("trans_b",), grad=_gemm_grad,
    doc="act(alpha * op(A) @ op(B) + beta * C), op transposing when trans_a / trans_b",
))


def _matmul_shapes(a: tuple, b: tuple) -> tuple[tuple, int]:
    expect(len(a) >= 1 and len(b) >= 1, "matmul operands must have rank >= 1")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    expect(a2[-1] == b2[-2], f"inner dimensions differ: {list(a)} @ {list(b)}")
    batch = broadcast_shape(a2[:-2], b2[:-2])
    out = batch + (a2[-2] if len(a) > 1 else None, b2[-1] if len(b) > 1 else None)
    return tuple(d for d in out if d is not None), a2[-1]


def _matmul_infer(types, a):
    A, B = types
    expect(A.dtype in FLOAT_DTYPES and A.dtype == B.dtype, f"dtypes must be one float type: {A}, {B}")
    return [TensorType(A.dtype, _matmul_shapes(A.shape, B.shape)[0])]


def _matmul_cost(ins, outs, a):
    k = _matmul_shapes(ins[0].shape, ins[1].shape)[1]
    return Cost(outs[0].numel * k, 2 * outs[0].numel * k, bytes_moved(ins, outs))


def _matmul_grad(ctx, node, dys):
    """dA = dy B^T, dB = A^T dy, each summed over the batch axes broadcasting added."""
    (dy,) = dys
    A, B = node.inputs
    ranks = ctx.type(A).rank, ctx.type(B).rank
    if min(ranks) < 2:
        return ctx.unsupported(node, "matmul gradients need operands of rank >= 2")

    def swap(v):
        r = ctx.type(v).rank
        return ctx.emit("transpose", [v], {"perm": (*range(r - 2), r - 1, r - 2)}, base=v + "_t")[0]

    dA = unbroadcast(ctx, ctx.emit("matmul", [dy, swap(B)], base="d" + A)[0], ctx.type(A).shape) \
        if ctx.needs(node, 0) else None
    dB = unbroadcast(ctx, ctx.emit("matmul", [swap(A), dy], base="d" + B)[0], ctx.type(B).shape) \
        if ctx.needs(node, 1) else None
    return [dA, dB]


register(OpDef(
    name="matmul", family="matmul", inputs=("a", "b"), outputs=("y",), attrs={},
    infer=_matmul_infer, reference=lambda xs, a: [np.asarray(np.matmul(xs[0], xs[1]))], cost=_matmul_cost,
    grad=_matmul_grad,
    doc="numpy matmul: batched over leading dimensions with broadcasting",
))
