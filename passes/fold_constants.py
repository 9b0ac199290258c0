"""fold_constants: evaluate at compile time every node whose inputs are all consts.

Rewrite: a pure node n(c1, ..., ck) with every ci a const param becomes a const param holding
the registry's reference result, named as n's output; readers see the same name.
Preconditions: the op is pure (not random); params with role param or buffer are not constants
(training updates them) unless `freeze_params` has run.
Algebra: exact: the reference implementation is the semantics.
"""

from __future__ import annotations

from collections import Counter

from ..ir import Graph, Param, Value, get_op
from ..ir.registry import run_reference
from .manager import note
from .rewrite import drop_unused_params


def fold_constants(g: Graph) -> Graph:
    consts = {p.name: p for p in g.params if p.role == "const"}
    outputs = set(g.outputs)
    new_params: list[Param] = []
    nodes = []
    folded: Counter[str] = Counter()
    for n in g.nodes:
        op = get_op(n.op)
        foldable = op.pure and n.inputs and all(i in consts for i in n.inputs)
        if not foldable or any(v.name in outputs for v in n.outputs):
            nodes.append(n)
            continue
        results = run_reference(n.op, [consts[i].data for i in n.inputs], n.attrs, [v.type for v in n.outputs])
        for v, r in zip(n.outputs, results, strict=True):
            p = Param(Value(v.name, v.type), r, "const")
            consts[v.name] = p
            new_params.append(p)
        folded[n.op] += 1
    if not folded:
        note("nothing to fold")
        return g
    note("folded " + ", ".join(f"{k} x{v}" for k, v in sorted(folded.items())))
    return drop_unused_params(g.with_nodes(nodes, params=(*g.params, *new_params)))


def freeze_params(g: Graph) -> Graph:
    """Inference never updates weights: params and buffers become consts."""
    if all(p.role == "const" for p in g.params):
        note("no params to freeze")
        return g
    roles = Counter(p.role for p in g.params if p.role != "const")
    note("froze " + ", ".join(f"{v} {k}(s)" for k, v in sorted(roles.items())))
    return g.replace(params=tuple(Param(p.value, p.data, "const") for p in g.params))
