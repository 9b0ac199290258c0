"""infer_shapes: re-derive every node output's type from the graph inputs.

Rewrite: each node's output types become what the op registry infers from its (already
re-derived) input types, so a graph whose inputs changed shape (a new batch size, an imported
model with loose value_info) is made consistent in one forward sweep.
Preconditions: nodes in topological order; every op in the registry.
Algebra: none; layouts and buffer slots are kept, buffer slots are dropped when the size changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..ir import Graph, IRError, TensorType, Value, infer_types
from ..ir.verify import node_label
from .manager import note


def infer_shapes(g: Graph) -> Graph:
    types: dict[str, TensorType] = {v.name: v.type for v in g.inputs}
    types.update({p.name: p.value.type for p in g.params})
    nodes, changed = [], 0
    for n in g.nodes:
        try:
            new = infer_types(n.op, [types[i] for i in n.inputs], n.attrs)
        except KeyError as e:
            raise IRError(f"node {node_label(n)}: input {e.args[0]!r} is not defined before it") from None
        except IRError as e:
            raise IRError(f"node {node_label(n)}: {e}") from None
        outs = []
        for v, t in zip(n.outputs, new, strict=True):
            if t.layout == "" and v.type.layout:
                t = t.with_layout(v.type.layout)
            types[v.name] = t
            if t != v.type:
                changed += 1
                buf = v.buffer if v.buffer is not None and v.buffer.nbytes >= t.nbytes else None
                v = Value(v.name, t, buf)
            outs.append(v)
        nodes.append(n.with_(outputs=tuple(outs)) if tuple(outs) != n.outputs else n)
    if not changed:
        note("all types already consistent")
        return g
    note(f"{changed} value type(s) re-derived")
    return g.with_nodes(nodes)


def with_input_shapes(g: Graph, shapes: Mapping[str, Sequence[int]]) -> Graph:
    """The graph with some inputs reshaped (for example a new batch size) and types re-derived."""
    unknown = sorted(set(shapes) - {v.name for v in g.inputs})
    if unknown:
        raise IRError(f"graph {g.name!r} has no input(s) {unknown}; inputs: {[v.name for v in g.inputs]}")
    inputs = tuple(Value(v.name, TensorType(v.type.dtype, tuple(shapes[v.name]), v.type.layout))
                   if v.name in shapes else v for v in g.inputs)
    return infer_shapes(g.replace(inputs=inputs))
