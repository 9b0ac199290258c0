"""eliminate_common_subexpressions: compute each distinct expression once.

Rewrite: a pure node whose (op, inputs, attrs, output types) equal an earlier node's is
dropped and its readers read the earlier node's outputs instead. Equal-valued small integer
consts (shape tensors) are merged first, so two copies of one shape count as one input; float
consts are never merged, so every layer keeps its own weights.
Preconditions: the op is pure; a node producing a graph output is kept, so output names stay.
Algebra: exact.
"""

from __future__ import annotations

from ..ir import Graph, get_op
from .manager import note
from .rewrite import drop_unused_params, rename_inputs


def _merge_consts(g: Graph) -> dict[str, str]:
    seen: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    for p in g.params:
        if p.role != "const" or p.data.size > 64 or p.data.dtype.kind not in "iub":
            continue
        key = (p.value.type, p.data.tobytes())
        if key in seen:
            rename[p.name] = seen[key]
        else:
            seen[key] = p.name
    return rename


def eliminate_common_subexpressions(g: Graph) -> Graph:
    keep_names = set(g.outputs)
    rename = _merge_consts(g)
    merged_consts = len(rename)
    seen: dict[tuple, tuple[str, ...]] = {}
    nodes, dropped = [], 0
    for n in g.nodes:
        (n,) = rename_inputs([n], rename)  # earlier merges change this node's key
        if get_op(n.op).pure and not keep_names.intersection(n.output_names):
            earlier = seen.get(n.key())
            if earlier is not None:
                rename.update(zip(n.output_names, earlier, strict=True))
                dropped += 1
                continue
            seen[n.key()] = n.output_names
        nodes.append(n)
    if not rename:
        note("no common subexpressions")
        return g
    note(f"{dropped} duplicate node(s) removed, {merged_consts} duplicate const(s) merged")
    return drop_unused_params(g.with_nodes(nodes))
