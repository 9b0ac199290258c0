"""resize: one thread per output element, its coordinates split over the output loops (runs of
kept axes merged); the taps of the resized axes come from the compile-time tables shared with
the cpu target (templating.resize_plan), weighted sums in float64, nearest a plain copy."""

from __future__ import annotations

from ....ir import Node, TensorType
from ...templating import resize_body, resize_params, resize_plan
from .common import KernelSource, decompose, grid1, indent, plain_only


def resize(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x, y = ins[0], outs[0]
    loops, packed = resize_plan(node, x, y)
    coords = decompose("t", [lp.size for lp in loops], "c") if len(loops) > 1 else ["c0 = t"]
    lines = coords + resize_body(loops, node.attrs, y.dtype, lambda j: f"c{j}")
    params = ["x", *resize_params(loops), "y"]
    body = (f"def KERNEL({', '.join(params)}):\n    t = cuda.grid(1)\n    if t < {y.numel}:\n"
            + indent(lines, 2) + "\n")
    note = f"resize {node.attrs['mode']} {list(x.shape)} -> {list(y.shape)}, one thread per output"
    return KernelSource(body, (node.inputs[0], *packed, node.outputs[0].name), note, grid=grid1(y.numel),
                        packed=packed)


TEMPLATES = {"resize": plain_only(resize)}
