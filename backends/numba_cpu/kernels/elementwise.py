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
    run_time_loops,
    run_time_sizes,
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


def broadcast_kernel(node: Node, ins: list[TensorType], outs: list[TensorType], params: list[str],
                     reads: list[str], body: list[str], what: str) -> KernelSource:
    """Loops over the collapsed output shape, input k read at index `reads[k]`. Shape-generic
    where it can be (the sizes in a run-time array, the strides derived from them: one kernel per
    broadcast pattern), else literal."""
    out = outs[0]
    sts = [broadcast_strides(t.shape, out.shape) for t in ins]
    shape, (so, *sts) = collapse(out.shape, strides(out.shape), *sts)
    par = out.numel >= PARALLEL_MIN
    index = {"io": so, **dict(zip(reads, sts, strict=True))}
    loops = run_time_loops(shape, index, body, par)
    args = (*node.inputs, node.outputs[0].name)
    if loops is None:
        loops = nested_loops(shape, index, body, par)
        src = f"def KERNEL({', '.join(params)}, y):\n" + "\n".join(loops) + "\n"
        return KernelSource(src, args, f"{what}, broadcast over {list(shape)}", parallel=par)
    sizes, packed = run_time_sizes(node, *shape)
    src = f"def KERNEL({', '.join(params)}, sizes, y):\n" + "\n".join(loops) + "\n"
    pattern = "".join("".join("1" if s[k] else "0" for s in sts) + " " for k in range(len(shape))).strip()
    return KernelSource(src, (*args[:-1], sizes, args[-1]), f"{what}, rank-{len(shape)} broadcast (operand "
                        f"masks {pattern}), sizes at run time", parallel=par, packed=packed)


def binary(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    body = ["va = a[ia]", "vb = b[ib]", f"y[io] = {binary_expr(node.op, outs[0].dtype)}"]
    return broadcast_kernel(node, ins, outs, ["a", "b"], ["ia", "ib"], body, node.op)


def where(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    return broadcast_kernel(node, ins, outs, ["c", "a", "b"], ["ic", "ia", "ib"],
                            ["y[io] = a[ia] if c[ic] else b[ib]"], "where")


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
        loops = [f"    for i in {'prange' if par else 'range'}(y.size):", *("        " + s for s in body_lines)]
        body = f"def KERNEL({', '.join(params)}):\n" + "\n".join(loops) + "\n"
        return KernelSource(body, (*node.inputs, node.outputs[0].name),
                            f"fused {node.attrs['steps']}, flat loop", parallel=par)
    index = {i: f"i_{i}" for i in range(1, k)}
    body_lines = ["v = x[io]", *chain_lines(node, out, index), "y[io] = v"]
    # x (operand 0) has the output's shape: it is read at the output's index
    return broadcast_kernel(node, ins[1:], outs, params[:-1], [f"i_{i}" for i in range(1, k)], body_lines,
                            f"fused {node.attrs['steps']}")


TEMPLATES["fused_elementwise"] = fused_elementwise
