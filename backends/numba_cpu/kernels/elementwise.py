"""Elementwise kernels: activations (one flat loop, sized at run time so every layer shares the
kernel), broadcasting arithmetic (nested loops over the collapsed output shape), copies."""

from __future__ import annotations

from ....ir import Node, TensorType
from ....ir.ops.elementwise import ACTIVATIONS
from ...templating import BINARY_EXPRS, binary_expr, cast_expr, chain_lines, unary_expr
from .common import (
    PARALLEL_MIN,
    KernelSource,
    broadcast_strides,
    collapse,
    lit,
    nested_loops,
    strides,
)


def unary(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    par = outs[0].numel >= PARALLEL_MIN
    body = f"""\
def KERNEL(x, y):
    for i in {'prange' if par else 'range'}(x.size):
        v = x[i]
        y[i] = {unary_expr(node, ins[0])}
"""
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), f"{node.op}, flat loop", parallel=par)


def binary(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    out = outs[0]
    sa = broadcast_strides(ins[0].shape, out.shape)
    sb = broadcast_strides(ins[1].shape, out.shape)
    shape, (so, sa, sb) = collapse(out.shape, strides(out.shape), sa, sb)
    par = out.numel >= PARALLEL_MIN
    body = ["va = a[ia]", "vb = b[ib]", f"y[io] = {binary_expr(node.op, out.dtype)}"]
    loops = nested_loops(shape, {"io": so, "ia": sa, "ib": sb}, body, par)
    body = "def KERNEL(a, b, y):\n" + "\n".join(loops) + "\n"
    return KernelSource(body, (node.inputs[0], node.inputs[1], node.outputs[0].name),
                        f"{node.op}, broadcast over {list(shape)}", parallel=par)


def where(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    out = outs[0]
    sts = [broadcast_strides(t.shape, out.shape) for t in ins]
    shape, (so, sc, sa, sb) = collapse(out.shape, strides(out.shape), *sts)
    par = out.numel >= PARALLEL_MIN
    loops = nested_loops(shape, {"io": so, "ic": sc, "ia": sa, "ib": sb},
                         ["y[io] = a[ia] if c[ic] else b[ib]"], par)
    return KernelSource("def KERNEL(c, a, b, y):\n" + "\n".join(loops) + "\n", (*node.inputs, node.outputs[0].name),
                        f"where, broadcast over {list(shape)}", parallel=par)


def cast(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    par = outs[0].numel >= PARALLEL_MIN
    body = f"""\
def KERNEL(x, y):
    for i in {'prange' if par else 'range'}(x.size):
        y[i] = {cast_expr('x[i]', outs[0].dtype)}
"""
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), f"cast to {outs[0].dtype}", parallel=par)


def prelu(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    out = outs[0]
    so = strides(out.shape)
    ss = broadcast_strides(ins[1].shape, out.shape)
    shape, (so, ss) = collapse(out.shape, so, ss)
    par = out.numel >= PARALLEL_MIN
    loops = nested_loops(shape, {"io": so, "js": ss},
                         ["v = x[io]", f"y[io] = v if v >= {lit(0, out.dtype)} else v * s[js]"], par)
    return KernelSource("def KERNEL(x, s, y):\n" + "\n".join(loops) + "\n",
                        (node.inputs[0], node.inputs[1], node.outputs[0].name), "prelu", parallel=par)


TEMPLATES = {op: unary for op in ("relu", "leaky_relu", "sigmoid", "tanh", "clip", "copy", *ACTIVATIONS)}
TEMPLATES.update({op: binary for op in BINARY_EXPRS})
TEMPLATES.update({"prelu": prelu, "where": where, "cast": cast})


def fused_elementwise(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """One pass over the output: v = x, the chain's steps, y = v. Plain tensors loop over the
    collapsed output shape with each operand's broadcast strides; blocked ones (every 4-D
    operand x's shape and layout, the rest single values) take one flat loop."""
    out = outs[0]
    k = len(ins)
    par = out.numel >= PARALLEL_MIN
    params = ["x", *(f"x{i}" for i in range(1, k)), "y"]
    if out.layout:
        index = {i: ("i" if ins[i].rank == 4 else "0") for i in range(1, k)}
        body_lines = ["v = x[i]", *chain_lines(node, out, index), "y[i] = v"]
        loops = [f"    for i in {'prange' if par else 'range'}({out.numel}):", *("        " + s for s in body_lines)]
        how = "flat loop"
    else:
        sts = [broadcast_strides(t.shape, out.shape) for t in ins[1:]]
        shape, (so, *sts) = collapse(out.shape, strides(out.shape), *sts)
        index = {i: f"i_{i}" for i in range(1, k)}
        body_lines = ["v = x[io]", *chain_lines(node, out, index), "y[io] = v"]
        loops = nested_loops(shape, {"io": so, **{f"i_{i}": st for i, st in enumerate(sts, 1)}}, body_lines, par)
        how = f"broadcast over {list(shape)}"
    body = f"def KERNEL({', '.join(params)}):\n" + "\n".join(loops) + "\n"
    return KernelSource(body, (*node.inputs, node.outputs[0].name), f"fused {node.attrs['steps']}, {how}",
                        parallel=par)


TEMPLATES["fused_elementwise"] = fused_elementwise
