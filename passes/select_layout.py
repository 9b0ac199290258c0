"""select_layout: choose each activation's memory layout, plain NCHW or blocked NCHW16c.

Rewrite: convolutions whose output channels fill 16-channel blocks (ungrouped, or depthwise)
produce NCHW16c; ops that work in any layout (elementwise, batch_norm, pooling)
keep their input's, and so does a fused elementwise chain whose other operands are x's shape or
single values; everything else reads plain NCHW. Where a reader needs another layout than
its input has, a `reorder` node is inserted (once per value and layout). Graph inputs and outputs
keep the model's plain layout: a node producing a graph output reads plain inputs.
Blocked kernels repack their weights (and batch_norm its statistics) once at compile time, so
only nodes whose weights are consts are blocked; a graph fed its weights at run time (the
trainer's evaluation graph) stays plain there.
Preconditions: types inferred; the layouts each op accepts are its registry entry's.
Algebra: layouts change memory order only; every value's logical contents are unchanged, which
the reference interpreter checks (it ignores layouts).
"""

from __future__ import annotations

from collections import Counter

from ..ir import Graph, Node, TensorType, Value
from .manager import note

BLOCKED = "NCHW16c"
FOLLOWERS = frozenset({"relu", "leaky_relu", "sigmoid", "tanh", "clip", "batch_norm", "maxpool2d",
                       "avgpool2d", "identity", "dropout"})
BINARY = frozenset({"add", "sub", "mul", "div"})
GLOBAL_POOLS = frozenset({"global_avgpool", "global_maxpool"})


def _blockable(t: TensorType) -> bool:
    return t.rank == 4 and t.shape[1] % 16 == 0 and t.dtype == "f32"


def _conv_layouts(n: Node, types) -> tuple[str, str] | None:
    """(input layout, output layout) for a conv computed blocked, or None to stay plain."""
    x, w = types[n.inputs[0]], types[n.inputs[1]]
    m, groups = w.shape[0], n.attrs["groups"]
    if x.dtype != "f32" or m % 16:
        return None
    if groups == 1:
        return (BLOCKED if x.shape[1] % 16 == 0 else ""), BLOCKED
    if groups == x.shape[1] == m and w.shape[1] == 1:  # depthwise: channels map one to one
        return BLOCKED, BLOCKED
    return None


def _plan(n: Node, layout: dict[str, str], types, is_output: bool, consts) -> tuple[list[str], str]:
    """Desired layouts of the node's inputs and its output layout."""
    ins = [types[i] for i in n.inputs]
    plain = ([""] * len(ins), "")
    packs = {"conv2d": n.inputs[1:3] if n.op == "conv2d" else (), "batch_norm": n.inputs[1:]}.get(n.op, ())
    if is_output or not all(i in consts for i in packs):
        return plain
    if n.op == "conv2d":
        chosen = _conv_layouts(n, types)
        if chosen is None:
            return plain
        want = [chosen[0]] + [""] * (len(ins) - 1)
        if n.attrs["residual"]:
            want[-1] = chosen[1]  # the residual is read like the output
        return want, chosen[1]
    current = layout.get(n.inputs[0], "")
    if n.op in FOLLOWERS and current == BLOCKED and _blockable(ins[0]):
        return [BLOCKED] + [""] * (len(ins) - 1), BLOCKED
    if n.op in GLOBAL_POOLS and current == BLOCKED:
        return [BLOCKED], ""
    if n.op == "fused_elementwise" and current == BLOCKED and _blockable(ins[0]) and \
            all(t.shape == ins[0].shape if t.rank == 4 else t.numel == 1 for t in ins[1:]):
        return [BLOCKED if t.rank == 4 else "" for t in ins], BLOCKED  # one flat loop, scalars at [0]
    if n.op in BINARY and ins[0].shape == ins[1].shape and _blockable(ins[0]) and \
            BLOCKED in (current, layout.get(n.inputs[1], "")):
        return [BLOCKED, BLOCKED], BLOCKED
    return plain


def select_layout(g: Graph) -> Graph:
    types = {name: v.type for name, v in g.values.items()}
    layout: dict[str, str] = {}
    reordered: dict[tuple[str, str], str] = {}
    outputs = set(g.outputs)
    consts = {p.name for p in g.params}
    nodes: list[Node] = []
    inserted, chosen = 0, Counter()
    for n in g.nodes:
        want, out_layout = _plan(n, layout, types, bool(outputs.intersection(n.output_names)), consts)
        new_inputs = []
        for name, lay in zip(n.inputs, want, strict=False):
            if layout.get(name, "") == lay:
                new_inputs.append(name)
                continue
            key = (name, lay)
            if key not in reordered:
                new = f"{name}.{lay or 'NCHW'}"
                t = types[name].with_layout(lay)
                nodes.append(Node("reorder", (name,), (Value(new, t),), {}, f"reorder {name}"))
                reordered[key], layout[new], types[new] = new, lay, t
                inserted += 1
            new_inputs.append(reordered[key])
        new_inputs += list(n.inputs[len(want):])
        outs = tuple(Value(v.name, v.type.with_layout(out_layout if v.type.rank == 4 else ""), v.buffer)
                     for v in n.outputs)
        for v in outs:
            layout[v.name] = v.type.layout
            types[v.name] = v.type
            chosen[v.type.layout or "NCHW"] += 1
        nodes.append(n.with_(inputs=tuple(new_inputs), outputs=outs))
    if not chosen.get(BLOCKED):
        note("every value stays NCHW")
        return g
    note(f"layouts: {', '.join(f'{k} {v}' for k, v in sorted(chosen.items()))}; {inserted} reorder(s) inserted")
    return g.with_nodes(nodes)
