"""fold_conv_bn: an inference batch_norm after a convolution (or a linear gemm) becomes its
weights and bias.

Rewrite: y = batch_norm(conv2d(x, w, b), gamma, beta, mean, var) becomes conv2d(x, w', b') with,
per output channel m (computed in float64, stored in the conv's dtype):
    s[m]  = gamma[m] / sqrt(var[m] + eps)
    w'[m] = w[m] * s[m]
    b'[m] = (b[m] - mean[m]) * s[m] + beta[m]        (b = 0 when the conv has no bias)
Grouped and depthwise convs fold the same way: output channel m owns its filter w[m]. A gemm
(alpha = beta = 1, C one value per feature) scales its weight's output-feature axis instead.
An affine scale or shift by a const that is one value per output channel (or one value), as
ONNX exporters write a frozen BatchNormalization or a layer scale, folds the same way:
    mul(conv, c): s = c, shift 0     add(conv, c): s = 1, shift c     (either operand order)
    div(conv, c): s = 1 / c          sub(conv, c): shift -c
and runs of them (conv, mul, add) fold one after the other.
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
    stats = bn.inputs[1:] if bn.op == "batch_norm" else ()  # an affine op's operand: checked already
    for name in (*conv.inputs[1:], *stats):
        if name not in consts:
            return f"{name} is not a const (training, or not frozen)"
    for name in conv.inputs[1:]:
        if len(g.users.get(name, ())) != 1:
            return f"{name} is shared with another node"
    return None


AFFINE = ("mul", "add", "sub", "div")


def _per_channel(g: Graph, name: str, out: TensorType) -> np.ndarray | None:
    """A const broadcast along every axis but the channel axis (1) of `out`: its values per
    channel (float64, length C), else None."""
    p = g.param_map.get(name)
    if p is None or p.role != "const" or p.data.ndim > out.rank:
        return None
    shape = (1,) * (out.rank - p.data.ndim) + p.data.shape
    c = out.shape[1]
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, c):
        return None
    return np.broadcast_to(p.data.astype(np.float64).reshape(-1), (c,)).copy()


def _scale_shift(g: Graph, n, conv_out: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, shift) with n(y) = y * s + shift per channel, for a batch_norm or an affine op on the
    conv's output; None when n is not one."""
    out = n.outputs[0].type
    if n.op == "batch_norm":
        params = g.param_map
        if not all(i in params for i in n.inputs[1:]):
            return None
        gamma, beta, mean, var = (params[i].data.astype(np.float64) for i in n.inputs[1:])
        s = gamma / np.sqrt(var + n.attrs["epsilon"])
        return s, beta - mean * s
    if n.op not in AFFINE or n.inputs[0] == n.inputs[1] or out != g.type_of(conv_out):
        return None  # (an operand that widens the conv's output is not a per-channel affine)
    first = n.inputs[0] == conv_out
    if not first and n.op in ("sub", "div"):
        return None  # c - y and c / y are not affine in y with a per-channel scale
    c = _per_channel(g, n.inputs[1] if first else n.inputs[0], out)
    if c is None:
        return None
    if n.op == "div" and not (np.all(c != 0) and np.all(np.isfinite(c))):
        return None  # y / 0 is inf (nan at 0) per element: no finite weights compute that
    ones, zeros = np.ones_like(c), np.zeros_like(c)
    return {"mul": (c, zeros), "add": (ones, c), "sub": (ones, -c), "div": (1.0 / c, zeros)}[n.op]


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
    folded = 0
    while True:  # a fold can expose another (conv, mul, add): fold until none is left
        g, n_folded, declined = _fold_once(g)  # the last round's declines are the ones that stand
        folded += n_folded
        if not n_folded:
            break
    note(f"{folded} folded, {len(declined)} declined" + (": " + "; ".join(declined) if declined else ""))
    return g


def _fold_once(g: Graph) -> tuple[Graph, int, list[str]]:
    params = g.param_map
    producers = g.producers
    replace: dict[int, object] = {}  # id(conv) -> new conv; id(bn) -> None (dropped)
    new_params: list[Param] = []
    declined = []
    taken = set(g.values)
    for bn in g.nodes:
        conv = producers.get(bn.inputs[0]) if bn.op == "batch_norm" else None
        if bn.op in AFFINE:
            conv = next((producers[i] for i in bn.inputs if i in producers
                         and producers[i].op in ("conv2d", "gemm")), None)
        if conv is None or conv.op not in ("conv2d", "gemm") or id(conv) in replace:
            continue
        if conv.attrs["act"] or conv.attrs.get("residual"):
            continue  # an epilogue already runs after the bias: nothing is affine in the output
        affine = _scale_shift(g, bn, conv.outputs[0].name)
        if affine is None:
            if bn.op == "batch_norm":
                declined.append(f"{bn.name or bn.outputs[0].name}: its statistics are not params")
            continue
        why = _decline(g, conv, bn) or (_gemm_decline(g, conv) if conv.op == "gemm" else None)
        if why:
            declined.append(f"{bn.name or bn.outputs[0].name}: {why}")
            continue
        s, shift = affine
        w = params[conv.inputs[1]].data.astype(np.float64)
        m = bn.outputs[0].type.shape[1]
        b = params[conv.inputs[2]].data.astype(np.float64).reshape(m) if len(conv.inputs) > 2 else np.zeros(m)
        if conv.op == "conv2d":
            scaled = w * s[:, None, None, None]
        else:  # gemm: scale the weight's output-feature axis
            scaled = w * s[:, None] if conv.attrs["trans_b"] else w * s[None, :]
        dt = params[conv.inputs[1]].data.dtype
        out = bn.outputs[0].name
        w2 = Param(Value(fresh_name(f"{out}.folded_weight", taken), TensorType.of(w.astype(dt))), scaled.astype(dt), "const")
        b2 = Param(Value(fresh_name(f"{out}.folded_bias", taken), TensorType(dtype_of(dt), (m,))),
                   (b * s + shift).astype(dt), "const")
        new_params += [w2, b2]
        replace[id(conv)] = conv.with_(inputs=(conv.inputs[0], w2.name, b2.name), outputs=bn.outputs)
        replace[id(bn)] = None
    if not replace:
        return g, 0, declined
    nodes = [replace.get(id(n), n) for n in g.nodes]
    g2 = g.with_nodes([n for n in nodes if n is not None], params=(*g.params, *new_params))
    from .rewrite import drop_unused_params

    return drop_unused_params(g2), len(replace) // 2, declined
