"""fuse_epilogues: the residual add and the activation after a convolution (the activation after
a gemm) run in its kernel.

Rewrite (each step only when the conv's result has that one reader and is no graph output):
    relu(conv(x, w, b))               -> conv[act=relu](x, w, b)
    clip(conv(x, w, b))               -> conv[act=clip act_min act_max](x, w, b)
    leaky_relu(conv(x, w, b))         -> conv[act=leaky_relu act_alpha](x, w, b)   (0 < alpha <= 1)
    sigmoid(conv(x, w, b))            -> conv[act=sigmoid](x, w, b)     (and silu: act=silu)
    relu(gemm(a, b, c))               -> gemm[act=relu](a, b, c)      (and clip, leaky_relu, sigmoid)
    add(conv(x, w, b), r)             -> conv[residual](x, w, b, r)        (r the same shape)
    relu(add(conv(x, w, b), r))       -> conv[residual act=relu](x, w, b, r)
The fused node takes the place (and the output name) of the last node it absorbs, so r, computed
anywhere before that node, is defined before the fused conv. A conv without a bias gets a zero one.
Preconditions: the conv has no epilogue yet; for the add, the other operand has the conv's shape
(a broadcast add stays separate, and so does the add of a grouped conv's output, which is fine:
the epilogue is elementwise on the output, whatever the grouping).
Algebra: exact up to float rounding order: act(conv + b + r) is what the unfused nodes compute.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Param, TensorType, Value
from .manager import note


def _act_attrs(n: Node) -> dict | None:
    if n.op == "relu":
        return {"act": "relu"}
    if n.op == "clip":
        return {"act": "clip", "act_min": n.attrs["min"], "act_max": n.attrs["max"]}
    if n.op == "leaky_relu" and 0 < n.attrs["alpha"] <= 1:  # then it is max(y, alpha y)
        return {"act": "leaky_relu", "act_alpha": n.attrs["alpha"]}
    if n.op == "sigmoid":
        return {"act": "sigmoid"}
    if n.op == "silu":
        return {"act": "silu"}
    return None


def fuse_epilogues(g: Graph) -> Graph:
    users, outputs = g.users, set(g.outputs)

    def sole_reader(value: str) -> Node | None:
        """The one node reading `value`, unless another fusion has taken it already."""
        readers = users.get(value, ())
        ok = len(readers) == 1 and value not in outputs and id(readers[0]) not in absorbed
        return readers[0] if ok else None

    absorbed: set[int] = set()
    placed: dict[int, Node] = {}  # id(node whose place the fused conv takes) -> fused conv
    new_params: list[Param] = []
    fused_add = fused_act = 0
    for conv in g.nodes:
        if conv.op not in ("conv2d", "gemm") or conv.attrs.get("residual") or conv.attrs["act"]:
            continue
        attrs, inputs, last = dict(conv.attrs), list(conv.inputs), conv
        nxt = sole_reader(conv.outputs[0].name)
        if conv.op == "conv2d" and nxt is not None and nxt.op == "add":
            other = nxt.inputs[1] if nxt.inputs[0] == conv.outputs[0].name else nxt.inputs[0]
            if other != conv.outputs[0].name and g.type_of(other) == conv.outputs[0].type:
                if len(inputs) == 2:  # residual needs the bias slot filled
                    t = TensorType(conv.outputs[0].type.dtype, (conv.outputs[0].type.shape[1],))
                    zero = Param(Value(f"{conv.outputs[0].name}.zero_bias", t), np.zeros(t.shape, t.np_dtype), "const")
                    new_params.append(zero)
                    inputs.append(zero.name)
                attrs["residual"], last = True, nxt
                inputs.append(other)
                absorbed.add(id(nxt))
                fused_add += 1
                nxt = sole_reader(nxt.outputs[0].name)
        act = _act_attrs(nxt) if nxt is not None else None
        if act is not None:
            attrs.update(act)
            absorbed.add(id(nxt))
            last = nxt
            fused_act += 1
        if last is conv:
            continue
        absorbed.add(id(conv))
        placed[id(last)] = conv.with_(inputs=tuple(inputs), outputs=last.outputs, attrs=attrs)
    if not placed:
        note("nothing to fuse")
        return g
    nodes = [placed.get(id(n), n) for n in g.nodes if id(n) not in absorbed or id(n) in placed]
    note(f"{len(placed)} fused group(s): {fused_add} residual add(s), {fused_act} activation(s) into convs "
         "and gemms")
    return g.with_nodes(nodes, params=(*g.params, *new_params))
