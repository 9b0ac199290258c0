"""recognise_activations: activations that exporters write out as several ops become one node.

Rewrite (each intermediate read by the next op only, and no graph output):
    mul(x, sigmoid(x))                                   -> silu(x)        (SiLU / Swish)
    mul(x, hard_sigmoid[alpha=1/6 beta=1/2](x))          -> hard_swish(x)
    mul(x, tanh(softplus(x)))                            -> mish(x)        (Mish before opset 18)
    mul(mul(x, add(erf(div(x, sqrt 2)), 1)), 1/2)       -> gelu(x)        (Gelu before opset 20)
with either operand order in each mul and add. One node instead of two to five: one pass over
the tensor instead of several, and an activation fuse_epilogues can put into the conv before it
(silu: EfficientNet's and YOLO's convs end in it).
Preconditions: none beyond a verified graph; the constants must be scalar consts.
Algebra: the same function; the fused kernels compute it in float64 and round once, where the
unfused ops rounded after each step (differences of an ulp or so).
"""

from __future__ import annotations

import math

from ..ir import Graph, Node
from .manager import note
from .rewrite import drop_unused_params

GATES = {"sigmoid": "silu", "hard_sigmoid": "hard_swish"}  # x * gate(x)


def recognise_activations(g: Graph) -> Graph:
    producers, users, outputs = g.producers, g.users, set(g.outputs)
    consts = {p.name: p.data for p in g.params if p.role == "const" and p.data.size == 1}
    removed: set[int] = set()

    def private(value: str, reader: Node) -> Node | None:
        """The node making `value`, when `reader` is its only reader and it is no graph output."""
        n = producers.get(value)
        ok = n is not None and id(n) not in removed and value not in outputs and users.get(value, ()) == (reader,)
        return n if ok else None

    def is_const(value: str, want: float) -> bool:
        return value in consts and math.isclose(float(consts[value].reshape(())), want, rel_tol=1e-6)

    def gate_of(m: Node):
        """(x, activation, absorbed nodes) for mul(x, f(x)) patterns."""
        for x, u in (m.inputs, m.inputs[::-1]):
            f = private(u, m)
            if f is None or f.inputs[0] != x:
                if f is not None and f.op == "tanh":
                    sp = private(f.inputs[0], f)
                    if sp is not None and sp.op == "softplus" and sp.inputs[0] == x:
                        return x, "mish", [f, sp]
                continue
            if f.op == "sigmoid":
                return x, "silu", [f]
            if f.op == "hard_sigmoid" and math.isclose(f.attrs["alpha"], 1 / 6, rel_tol=1e-6) \
                    and math.isclose(f.attrs["beta"], 0.5, rel_tol=1e-6):
                return x, "hard_swish", [f]
        return None

    def gelu_of(m: Node):
        """(x, "gelu", absorbed nodes) for mul(mul(x, add(erf(div(x, sqrt 2)), 1)), 1/2)."""
        for t, half in (m.inputs, m.inputs[::-1]):
            inner = private(t, m)
            if not is_const(half, 0.5) or inner is None or inner.op != "mul":
                continue
            for x, s in (inner.inputs, inner.inputs[::-1]):
                add = private(s, inner)
                if add is None or add.op != "add":
                    continue
                for e, one in (add.inputs, add.inputs[::-1]):
                    erf = private(e, add)
                    if not is_const(one, 1.0) or erf is None or erf.op != "erf":
                        continue
                    div = private(erf.inputs[0], erf)
                    if div is not None and div.op == "div" and div.inputs[0] == x and is_const(div.inputs[1], math.sqrt(2)):
                        return x, "gelu", [inner, add, erf, div]
        return None

    found: dict[int, Node] = {}  # id(final mul) -> its replacement
    counts: dict[str, int] = {}
    for n in g.nodes:
        if n.op != "mul" or id(n) in removed or n.outputs[0].type.dtype not in ("f16", "f32", "f64"):
            continue
        match = gate_of(n) or gelu_of(n)
        if match is None:
            continue
        x, act, absorbed = match
        if g.type_of(x) != n.outputs[0].type:  # a broadcasting mul is not an activation
            continue
        removed.update(id(a) for a in absorbed)
        found[id(n)] = Node(act, (x,), n.outputs, {}, n.name)
        counts[act] = counts.get(act, 0) + 1
    if not found:
        note("no multi-op activations")
        return g
    note(", ".join(f"{k} {act}" for act, k in sorted(counts.items())) + " recognised")
    return drop_unused_params(g.with_nodes([found.get(id(n), n) for n in g.nodes if id(n) not in removed]))
