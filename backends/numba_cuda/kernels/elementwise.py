"""Elementwise CUDA kernels: one thread per output element. Unary ops (and copies) size their
loop from the array, so every layer shares one kernel per op; broadcasting binary ops split the
flat index over the collapsed output shape (literal strides)."""

from __future__ import annotations

from ....ir import Node, TensorType
from ....ir.ops.elementwise import ACTIVATIONS
from ...templating import BINARY_EXPRS, act_derivative_expr, binary_expr, cast_expr, chain_lines, unary_expr
from .common import (
    KernelSource,
    broadcast_strides,
    collapse,
    decompose,
    grid1,
    indent,
    lit,
    offset,
    plain_only,
    strides,
)

_PRELU = "va * vb if va < 0 else va"


def unary(node: Node, ins: list[TensorType], outs: list[TensorType], expr: str | None = None) -> KernelSource:
    body = f"""\
def KERNEL(x, y):
    i = cuda.grid(1)
    if i < y.size:
        v = x[i]
        y[i] = {expr or unary_expr(node, ins[0])}
"""
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), f"{node.op}, one thread per element",
                        grid=grid1(outs[0].numel))


def _broadcast(node: Node, ins: list[TensorType], out: TensorType, params: list[str], store: str) -> str:
    """One thread per output element; input k is read at i{params[k]} through its broadcast strides."""
    sts = [broadcast_strides(t.shape, out.shape) for t in ins]
    dims, (_, *sts) = collapse(out.shape, strides(out.shape), *sts)
    lines = decompose("i", dims, "c") if len(dims) > 1 else ["c0 = i"]
    lines += [f"i{p} = {offset('c', st)}" for p, st in zip(params, sts, strict=True)]
    return f"""\
def KERNEL({', '.join(params)}, y):
    i = cuda.grid(1)
    if i < {out.numel}:
{indent(lines, 2)}
        {store}
"""


@plain_only
def binary(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    out = outs[0]
    expr = _PRELU if node.op == "prelu" else binary_expr(node.op, out.dtype)
    body = _broadcast(node, ins, out, ["a", "b"], f"va = a[ia]\n        vb = b[ib]\n        y[i] = {expr}")
    return KernelSource(body, (*node.inputs, node.outputs[0].name), f"{node.op}, broadcast, one thread per element",
                        grid=grid1(out.numel))


@plain_only
def where(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    body = _broadcast(node, ins, outs[0], ["c", "a", "b"], "y[i] = a[ia] if c[ic] else b[ib]")
    return KernelSource(body, (*node.inputs, node.outputs[0].name), "where, one thread per element",
                        grid=grid1(outs[0].numel))


@plain_only
def cast(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """unary's kernel with the conversion as its expression."""
    src = unary(node, ins, outs, expr=cast_expr("v", outs[0].dtype))
    return KernelSource(src.body, src.args, f"cast to {outs[0].dtype}", grid=src.grid)


@plain_only
def batch_norm(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x = ins[0]
    c = x.shape[1]
    inner = x.numel // (x.shape[0] * c) if x.shape[0] * c else 1
    d = x.dtype
    body = f"""\
def KERNEL(x, scale, bias, mean, var, y):
    i = cuda.grid(1)
    if i < {x.numel}:
        ch = (i // {inner}) % {c}
        inv = scale[ch] / math.sqrt(var[ch] + {lit(node.attrs['epsilon'], d)})
        y[i] = (x[i] - mean[ch]) * inv + bias[ch]
"""
    return KernelSource(body, (*node.inputs, node.outputs[0].name), "batch_norm, one thread per element",
                        grid=grid1(x.numel))


@plain_only
def act_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a, d = node.attrs, ins[0].dtype
    table = act_derivative_expr(a["act"], a, d, "r")
    expr = f"dy[i] * {table}" if table else {
        "relu": f"dy[i] if r > {lit(0, d)} else {lit(0, d)}",
        "leaky_relu": f"dy[i] if r >= {lit(0, d)} else dy[i] * {lit(a['alpha'], d)}",
        "sigmoid": f"dy[i] * r * ({lit(1, d)} - r)",
        "tanh": f"dy[i] * ({lit(1, d)} - r * r)",
        "clip": f"dy[i] if r > {lit(a['min'], d)} and r < {lit(a['max'], d)} else {lit(0, d)}",
    }[a["act"]]
    body = f"""\
def KERNEL(dy, saved, dx):
    i = cuda.grid(1)
    if i < dx.size:
        r = saved[i]
        dx[i] = {expr}
"""
    return KernelSource(body, (*node.inputs, node.outputs[0].name), f"act_grad[{a['act']}]", grid=grid1(outs[0].numel))


@plain_only
def fused_elementwise(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """One thread per output element: v = x, the chain's steps (operands read through their
    broadcast strides), y = v."""
    out = outs[0]
    sts = [broadcast_strides(t.shape, out.shape) for t in ins[1:]]
    dims, (_, *sts) = collapse(out.shape, strides(out.shape), *sts)
    lines = decompose("i", dims, "c") if len(dims) > 1 else ["c0 = i"]
    lines += [f"i_{k} = {offset('c', st)}" for k, st in enumerate(sts, 1)]
    steps = chain_lines(node, out, {k: f"i_{k}" for k in range(1, len(ins))})
    params = ["x", *(f"x{k}" for k in range(1, len(ins))), "y"]
    body = f"""\
def KERNEL({', '.join(params)}):
    i = cuda.grid(1)
    if i < {out.numel}:
{indent(lines, 2)}
        v = x[i]
{indent(steps, 2)}
        y[i] = v
"""
    return KernelSource(body, (*node.inputs, node.outputs[0].name),
                        f"fused {node.attrs['steps']}, one thread per element", grid=grid1(out.numel))


TEMPLATES = {op: plain_only(unary) for op in ("relu", "leaky_relu", "sigmoid", "tanh", "clip", "copy", "identity", "dropout",
                                   *ACTIVATIONS)}
TEMPLATES.update({op: binary for op in (*BINARY_EXPRS, "prelu")})
TEMPLATES.update({"where": where, "cast": cast})
TEMPLATES.update({"batch_norm": batch_norm, "act_grad": act_grad, "fused_elementwise": fused_elementwise})
