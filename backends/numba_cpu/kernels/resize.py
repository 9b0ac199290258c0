"""resize: one loop per output axis (runs of kept axes merged), the tap loops of the resized
axes innermost; the tap tables (input offsets, weights, extrapolated flags) are computed at
compile time (ir/ops/resize.py) and passed as packed arrays. Nearest copies one element (any
dtype); linear and cubic sum their weighted taps in float64. The outer loop is a prange once
the output is big enough to pay for waking the threads."""

from __future__ import annotations

from ....ir import Node, TensorType
from ...templating import resize_body, resize_params, resize_plan
from .common import PARALLEL_MIN, KernelSource, plain_only


def resize(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x, y = ins[0], outs[0]
    loops, packed = resize_plan(node, x, y)
    par = y.numel >= PARALLEL_MIN and loops[0].size > 1
    lines, ind = [], "    "
    for j, lp in enumerate(loops):
        lines.append(f"{ind}for i{j} in {'prange' if par and j == 0 else 'range'}({lp.size}):")
        ind += "    "
    lines += [ind + b for b in resize_body(loops, node.attrs, y.dtype, lambda j: f"i{j}")]
    params = ["x", *resize_params(loops), "y"]
    body = f"def KERNEL({', '.join(params)}):\n" + "\n".join(lines) + "\n"
    taps = "x".join(str(lp.taps) for lp in loops if lp.taps) or "no"
    note = f"resize {node.attrs['mode']} {list(x.shape)} -> {list(y.shape)}: {taps} taps over {len(loops)} loop(s)"
    return KernelSource(body, (node.inputs[0], *packed, node.outputs[0].name), note, parallel=par, packed=packed)


TEMPLATES = {"resize": plain_only(resize)}
