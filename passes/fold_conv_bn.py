"""fold_conv_bn: an inference batch_norm after a convolution (or a linear gemm) becomes its
weights and bias.

Rewrite: y = batch_norm(conv2d(x, w, b), gamma, beta, mean, var) becomes conv2d(x, w', b') with,
per output channel m (computed in float64, stored in the conv's dtype):
    s[m]  = gamma[m] / sqrt(var[m] + eps)
    w'[m] = w[m] * s[m]
    b'[m] = (b[m] - mean[m]) * s[m] + beta[m]        (b = 0 when the conv has no bias)
Grouped and depthwise convs fold the same way: output channel m owns its filter w[m]. A gemm
(alpha = beta = 1, C one value per feature) scales its weight's output-feature axis instead.
Preconditions, else declined with the reason in the dump: the conv's output is read by the
batch_norm alone and is not a graph output; w, b and the statistics are consts (inference, after
freeze_params) and w and b are read by this conv alone.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Param, TensorType, Value
from ..ir.graph import fresh_name
from ..ir.types import dtype_of
from .manager import note


def _decline(g: Graph, conv, bn) -> str | None:
    out = conv.outputs[0].name
    if out in g.outputs:
        return f"{out} is a graph output"
    if len(g.users.get(out, ())) != 1:
        return f"{out} has other readers"
    consts = {p.name for p in g.params if p.role == "const"}
    for name in (*conv.inputs[1:], *bn.inputs[1:]):
        if name not in consts:
            return f"{name} is not a const (training, or not frozen)"
    for name in conv.inputs[1:]:
        if len(g.users.get(name, ())) != 1:
            return f"{name} is shared with another node"
    return None


def _gemm_decline(g: Graph, gemm) -> str | None:
    """A gemm folds when it is a plain linear layer: y = x @ W' + c, c per output feature."""
    a = gemm.attrs
    if a["alpha"] != 1.0 or a["beta"] != 1.0:
        return "gemm with alpha or beta other than 1"
    m = gemm.outputs[0].type.shape[1]
    if len(gemm.inputs) > 2 and g.type_of(gemm.inputs[2]).numel != m:
        return "gemm's C is not one value per output feature"
    return None


def fold_conv_bn(g: Graph) -> Graph:
    params = g.param_map
    producers = g.producers
    replace: dict[int, object] = {}  # id(conv) -> new conv; id(bn) -> None (dropped)
    new_params: list[Param] = []
    declined = []
    taken = set(g.values)
    for bn in g.nodes:
        conv = producers.get(bn.inputs[0]) if bn.op == "batch_norm" else None
        if conv is None or conv.op not in ("conv2d", "gemm"):
            continue
        why = _decline(g, conv, bn) or (_gemm_decline(g, conv) if conv.op == "gemm" else None)
        if why:
            declined.append(f"{bn.name or bn.outputs[0].name}: {why}")
            continue
        w = params[conv.inputs[1]].data.astype(np.float64)
        m = bn.outputs[0].type.shape[1]
        b = params[conv.inputs[2]].data.astype(np.float64).reshape(m) if len(conv.inputs) > 2 else np.zeros(m)
        gamma, beta, mean, var = (params[i].data.astype(np.float64) for i in bn.inputs[1:])
        s = gamma / np.sqrt(var + bn.attrs["epsilon"])
        if conv.op == "conv2d":
            scaled = w * s[:, None, None, None]
        else:  # gemm: scale the weight's output-feature axis
            scaled = w * s[:, None] if conv.attrs["trans_b"] else w * s[None, :]
        dt = params[conv.inputs[1]].data.dtype
        out = bn.outputs[0].name
        w2 = Param(Value(fresh_name(f"{out}.folded_weight", taken), TensorType.of(w.astype(dt))), scaled.astype(dt), "const")
        b2 = Param(Value(fresh_name(f"{out}.folded_bias", taken), TensorType(dtype_of(dt), (m,))),
                   ((b - mean) * s + beta).astype(dt), "const")
        new_params += [w2, b2]
        replace[id(conv)] = conv.with_(inputs=(conv.inputs[0], w2.name, b2.name), outputs=bn.outputs)
        replace[id(bn)] = None
    if declined:
        note(f"{len(replace) // 2} folded, {len(declined)} declined: " + "; ".join(declined))
    else:
        note(f"{len(replace) // 2} folded, 0 declined")
    if not replace:
        return g
    nodes = [replace.get(id(n), n) for n in g.nodes]
    g2 = g.with_nodes([n for n in nodes if n is not None], params=(*g.params, *new_params))
    from .rewrite import drop_unused_params

    return drop_unused_params(g2)
