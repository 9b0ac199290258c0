"""select_layout: choose each activation's memory layout, plain NCHW or blocked NCHW16c.

Rewrite: convolutions whose output channels fill 16-channel blocks (ungrouped, or depthwise)
produce NCHW16c; ops that work in any layout (elementwise, batch_norm, pooling)
keep their input's, and so does a fused elementwise chain whose other operands are x's shape or
single values; everything else reads plain NCHW. Where a reader needs another layout than
its input has, a `reorder` node is inserted (once per value and layout). Graph inputs and outputs
keep the model's plain layout: a node producing a graph output reads plain inputs.
Which convolutions are blocked is priced by the target's cost model, given as an argument (the
CPU target passes its measured rates, kiln/costs.py; see cost_model.py): a conv that can be
blocked is, when its estimated time blocked (plus the reorder of its input if that is plain, and
of its output if a reader needs it plain) is no more than plain (plus a reorder of a blocked
input); depthwise convs have no plain vector kernel and are blocked by rule, as every blockable
conv is when there is no model.
A gemm whose B (and C) are consts gets `pack_b`: the CPU backend repacks B into 16-column
panels for its micro-kernel (the other targets ignore the flag).
Blocked kernels repack their weights (and batch_norm its statistics) once at compile time, so
only nodes whose weights are consts are blocked; a graph fed its weights at run time (the
trainer's evaluation graph) stays plain there.
Preconditions: types inferred; the layouts each op accepts are its registry entry's.
Algebra: layouts change memory order only; every value's logical contents are unchanged, which
the reference interpreter checks (it ignores layouts).
"""

from __future__ import annotations

from collections import Counter
from functools import partial

from ..ir import Graph, Node, TensorType, Value, get_op
from ..ir.ops.elementwise import ACTIVATIONS
from ..ir.ops.matmul import panels_apply
from . import cost_model as cm
from .manager import note

BLOCKED = "NCHW16c"
FOLLOWERS = frozenset({*ACTIVATIONS, "relu", "leaky_relu", "sigmoid", "tanh", "clip", "batch_norm", "maxpool2d",
                       "avgpool2d", "identity", "dropout"})
BINARY = frozenset({"add", "sub", "mul", "div", "max", "min", "pow"})  # same-shape operands: one flat loop
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


KEEPS_BLOCKED = FOLLOWERS | BINARY | GLOBAL_POOLS | {"conv2d", "fused_elementwise"}


def _priced_plain(n: Node, chosen: tuple[str, str], layout: dict[str, str], types, readers, model,
                  tally: dict) -> bool:
    """True when the cost model says conv n runs faster plain than blocked (`chosen`)."""
    x, w, y = types[n.inputs[0]], types[n.inputs[1]], types[n.outputs[0].name]
    if model is None or n.attrs["groups"] != 1:
        return False
    flops = get_op("conv2d").cost([types[i] for i in n.inputs], [y], n.attrs).flops
    kernel = w.shape[2:]
    current = layout.get(n.inputs[0], "")
    blocked = model.conv_seconds(flops, kernel, "NCHW16c")
    if current != chosen[0]:
        blocked += model.reorder_seconds(x.nbytes)
    if any(r.op not in KEEPS_BLOCKED for r in readers):
        blocked += model.reorder_seconds(y.nbytes)
    plain = model.conv_seconds(flops, kernel, "") + (model.reorder_seconds(x.nbytes) if current else 0.0)
    tally["priced"] += 1
    tally["blocked_s"] += min(blocked, plain)
    tally["all_blocked_s"] += blocked
    return plain < blocked


def _plan(n: Node, layout: dict[str, str], types, is_output: bool, consts, readers=(), model=None,
          tally=None) -> tuple[list[str], str]:
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
        if _priced_plain(n, chosen, layout, types, readers, model, tally):
            tally["plain_by_cost"].append(n.outputs[0].name)
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


def select_layout(g: Graph, model: cm.CostModel | None = None) -> Graph:
    """`model`: the target's cost model to price convs with; None decides by rule."""
    tally = {"priced": 0, "blocked_s": 0.0, "all_blocked_s": 0.0, "plain_by_cost": []}
    users = g.users
    types = {name: v.type for name, v in g.values.items()}
    layout: dict[str, str] = {}
    reordered: dict[tuple[str, str], str] = {}
    outputs = set(g.outputs)
    consts = {p.name for p in g.params}
    nodes: list[Node] = []
    inserted, packed, chosen = 0, 0, Counter()
    for n in g.nodes:
        want, out_layout = _plan(n, layout, types, bool(outputs.intersection(n.output_names)), consts,
                                 users.get(n.outputs[0].name, ()), model, tally)
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
        if n.op == "gemm" and not n.attrs["pack_b"] and all(i in consts for i in n.inputs[1:]) and \
                panels_apply(n.attrs, [types[i] for i in n.inputs]):
            n = n.with_(attrs={**n.attrs, "pack_b": True})
            packed += 1
        nodes.append(n.with_(inputs=tuple(new_inputs), outputs=outs))
    priced = "" if model is None or not tally["priced"] else (
        f"; cost model ({model.source}): {tally['priced']} conv(s) priced, "
        f"{len(tally['plain_by_cost'])} plain by cost"
        + (f" ({', '.join(tally['plain_by_cost'])})" if tally["plain_by_cost"] else "")
        + f", estimated conv time {tally['blocked_s'] * 1e3:.3f} ms (all blockable blocked: "
        f"{tally['all_blocked_s'] * 1e3:.3f} ms)")
    panels = f"; {packed} gemm weight(s) packed into 16-column panels" if packed else ""
    if not chosen.get(BLOCKED) and not packed:
        note("every value stays NCHW" + priced)
        return g
    note(f"layouts: {', '.join(f'{k} {v}' for k, v in sorted(chosen.items()))}; {inserted} reorder(s) inserted"
         + panels + priced)
    return g.with_nodes(nodes)


def select_layout_with(model: cm.CostModel | None):
    """select_layout with a given cost model (None: by rule): how a target hands it its costs."""
    return partial(select_layout, model=model)
