"""The verifier: checks the invariants every pass must keep.

SSA (every value defined once), topological order (defined before read), op arity and
attribute schema, output types equal to what the registry infers (dtype, shape, layout), graph
outputs defined, buffer slots sized to their values. A failure names the node and shows the IR
around it.
"""

from __future__ import annotations

from .errors import IRError, VerifyError
from .graph import Graph, Node
from .registry import check_layouts, get_op, infer_types, normalize_attrs
from .text import format_graph


def node_label(node: Node) -> str:
    outs = ", ".join("%" + v.name for v in node.outputs)
    return f"{outs} = {node.op}" + (f" ({node.name})" if node.name else "")


def ir_context(g: Graph, node: Node | None, radius: int = 3) -> str:
    """The graph's text with the lines around `node` and a `>>` marker on it."""
    lines = format_graph(g).splitlines()
    if node is None or node not in g.nodes:
        return "\n".join(lines[: 2 * radius + 1])
    first_node_line = next(i for i, s in enumerate(lines) if not s.strip().startswith("param")
                           and i > 0)
    at = first_node_line + next(i for i, n in enumerate(g.nodes) if n is node)
    lo, hi = max(0, at - radius), min(len(lines), at + radius + 1)
    out = [("  >>" if i == at else "    ") + lines[i] for i in range(lo, hi)]
    return "\n".join(out)


def verify(g: Graph) -> Graph:
    """Raise VerifyError at the first broken invariant; return the graph unchanged otherwise."""

    def fail(msg: str, node: Node | None = None):
        label = f"node {node_label(node)}: " if node is not None else ""
        raise VerifyError(f"graph {g.name!r}: {label}{msg}", node_label(node) if node else None,
                          ir_context(g, node))

    defined: dict[str, object] = {}
    for v in g.inputs:
        if v.name in defined:
            fail(f"graph input %{v.name} is declared twice")
        defined[v.name] = v.type
    for p in g.params:
        if p.name in defined:
            fail(f"param %{p.name} reuses the name of another input or param")
        defined[p.name] = p.value.type
    for node in g.nodes:
        _check_node(g, node, defined, fail)
        for v in node.outputs:
            if v.name in defined:
                fail(f"%{v.name} is defined more than once (SSA)", node)
            defined[v.name] = v.type
    if not g.outputs:
        fail("graph has no outputs")
    for o in g.outputs:
        if o not in defined:
            fail(f"graph output %{o} is never defined")
    return g


def _check_node(g: Graph, node: Node, defined: dict, fail) -> None:
    try:
        op = get_op(node.op)
    except IRError as e:
        fail(str(e), node)
    try:
        canonical = normalize_attrs(node.op, node.attrs)
    except IRError as e:
        fail(str(e), node)
    if dict(node.attrs) != canonical:
        fail(f"attributes {dict(node.attrs)} are not in canonical form {canonical}", node)
    for i, name in enumerate(node.inputs):
        if name not in defined:
            later = any(name in n.output_names for n in g.nodes)
            why = "is defined later (graph not in topological order)" if later else "is never defined"
            fail(f"input {i} %{name} {why}", node)
    try:
        expected = infer_types(node.op, [defined[i] for i in node.inputs], canonical)
    except IRError as e:
        fail(str(e), node)
    if len(node.outputs) != len(expected):  # optional outputs ("v?") depend on the operands
        fail(f"{node.op} gives {len(expected)} output(s) ({', '.join(op.outputs)}), "
             f"node lists {len(node.outputs)}", node)
    for v, t in zip(node.outputs, expected, strict=True):
        if v.type.with_layout("") != t.with_layout(""):
            fail(f"output %{v.name} is typed {v.type} but {node.op} infers {t}", node)
        if op.layout_policy != "free" and v.type.layout != t.layout:
            fail(f"output %{v.name} has layout {v.type.layout!r}; {node.op} gives {t.layout!r}", node)
    try:
        check_layouts(op, [defined[i] for i in node.inputs], [v.type for v in node.outputs])
    except IRError as e:
        fail(str(e), node)
        if v.buffer is not None and v.buffer.nbytes < v.type.nbytes:
            fail(f"output %{v.name} needs {v.type.nbytes} B, its buffer slot has {v.buffer.nbytes}", node)
