"""reuse_buffers: plan every activation into one arena per dtype, reusing the bytes of values
that are dead, and letting an elementwise op write over its input when that input dies there
(the skip tensor of a residual add, a relu's input).

Rewrite: every node output that lives in the arena gets a `BufferSlot` (arena = its dtype,
offset and size in bytes). Graph inputs and outputs live in the caller's arrays and are not
planned; views (reshape, flatten, identity, inference dropout) share their input's slot.
Algorithm: liveness over the scheduled graph (a value lives from its producer to its last reader,
views extending their source); in-place candidates join their input's interval; then greedy
interval packing, largest buffers first, each at the lowest offset free over its whole lifetime.
Reports peak bytes against the naive plan (one buffer per value) and the lower bound (the most
bytes live at any one node).
Preconditions: nodes in their final order (run last); layouts chosen.
Safety: two values share bytes only if their lifetimes do not overlap, or the later one is an
elementwise op's output written in place over an input whose last reader it is (the kernels of
those ops read element i before writing element i), or a blocked conv's output over its fused
residual (its kernels read each residual vector before first writing that output vector). A value read by a graph output, or itself
a graph input or output, is never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import BufferSlot, Graph, Node, Value
from ..ir.ops.elementwise import ACTIVATIONS
from .manager import note

VIEWS = frozenset({"reshape", "flatten", "identity", "dropout"})
IN_PLACE = frozenset({*ACTIVATIONS, "relu", "leaky_relu", "sigmoid", "tanh", "clip", "add", "sub", "mul", "div",
                      "batch_norm"})
ALIGN = 64


@dataclass
class Interval:
    names: list[str]
    dtype: str
    nbytes: int
    start: int
    end: int
    offset: int = -1


def _lifetimes(g: Graph) -> tuple[dict[str, Interval], dict[str, str]]:
    """Intervals of the arena values (merged for views and in-place ops) and value -> its group."""
    external = {v.name for v in g.inputs} | set(g.outputs)
    group: dict[str, str] = {}
    ivs: dict[str, Interval] = {}
    last_use: dict[str, int] = {}
    for i, n in enumerate(g.nodes):
        for name in n.inputs:
            last_use[name] = i
    for i, n in enumerate(g.nodes):
        for v in n.outputs:
            if v.name in external:
                continue
            src = n.inputs[0] if n.inputs else None
            if n.op in VIEWS and src in group:
                group[v.name] = group[src]  # a view of an arena value: same bytes
                continue
            in_place = next((x for x in _in_place_candidates(n, group) if x in group and last_use.get(x) == i
                             and g.type_of(x) == v.type and not _read_later(g, x, group, last_use, i)), None)
            if in_place is not None:
                group[v.name] = group[in_place]
                continue
            group[v.name] = v.name
            ivs[v.name] = Interval([v.name], v.type.dtype, v.type.nbytes, i, i)
    for name, gid in group.items():
        iv = ivs[gid]
        if name != gid:
            iv.names.append(name)
        iv.end = max(iv.end, last_use.get(name, iv.start))
    return ivs, group


def _in_place_candidates(n: Node, group: dict[str, str]) -> tuple[str, ...]:
    """Inputs whose bytes n's output may take: any input of an elementwise op; the residual of a
    blocked (NCHW16c) conv, whose kernels read each residual vector before they first write the
    output vector at the same place, unless the residual shares bytes with another of its inputs."""
    if n.op in IN_PLACE:
        return n.inputs
    if n.op == "conv2d" and n.attrs.get("residual") and n.outputs[0].type.layout == "NCHW16c":
        r = n.inputs[3]
        if all(group.get(x, x) != group.get(r, r) for x in n.inputs[:3]):
            return (r,)
    return ()


def _read_later(g: Graph, x: str, group: dict[str, str], last_use: dict[str, int], i: int) -> bool:
    """Whether another value sharing x's bytes (a view of it) is read after node i."""
    return any(group.get(o) == group[x] and last_use.get(o, -1) > i for o in group if o != x)


def _pack(ivs: list[Interval]) -> int:
    """Greedy: largest first, each at the lowest aligned offset free throughout its lifetime."""
    placed: list[Interval] = []
    top = 0
    for iv in sorted(ivs, key=lambda v: (-v.nbytes, v.start)):
        busy = sorted((p.offset, p.offset + p.nbytes) for p in placed if p.start <= iv.end and iv.start <= p.end)
        off = 0
        for lo, hi in busy:
            if off + iv.nbytes <= lo:
                break
            off = max(off, -(-hi // ALIGN) * ALIGN)
        iv.offset = off
        placed.append(iv)
        top = max(top, off + iv.nbytes)
    return top


def lower_bound(ivs: list[Interval], n_nodes: int) -> int:
    return max((sum(v.nbytes for v in ivs if v.start <= t <= v.end) for t in range(n_nodes)), default=0)


def reuse_buffers(g: Graph) -> Graph:
    ivs, group = _lifetimes(g)
    peak, naive, bound = 0, 0, 0
    by_dtype: dict[str, list[Interval]] = {}
    for iv in ivs.values():
        by_dtype.setdefault(iv.dtype, []).append(iv)
    for items in by_dtype.values():
        peak += _pack(items)
        bound += lower_bound(items, len(g.nodes))
    naive = sum(v.type.nbytes for n in g.nodes for v in n.outputs
                if v.name in group and n.op not in VIEWS)
    slots = {name: BufferSlot(ivs[gid].offset, ivs[gid].nbytes, ivs[gid].dtype) for name, gid in group.items()}
    nodes = [n.with_(outputs=tuple(Value(v.name, v.type, slots.get(v.name)) for v in n.outputs)) for n in g.nodes]
    in_place = sum(len(iv.names) - 1 for iv in ivs.values())
    note(f"peak {peak:,} B vs naive {naive:,} B ({1 - peak / naive:.0%} less) and lower bound {bound:,} B "
         f"({peak / bound:.2f}x); {in_place} value(s) share an input's bytes (views or in place)"
         if naive and bound else "no arena values")
    return g.with_nodes(nodes)


def buffer_stats(g: Graph) -> dict[str, int]:
    """peak, naive and lower-bound activation bytes of a graph's plan (planned or not)."""
    ivs, group = _lifetimes(g)
    items = list(ivs.values())
    naive = sum(v.type.nbytes for n in g.nodes for v in n.outputs if v.name in group and n.op not in VIEWS)
    by_dtype: dict[str, list[Interval]] = {}
    for iv in items:
        by_dtype.setdefault(iv.dtype, []).append(iv)
    peak = sum(_pack(v) for v in by_dtype.values())
    bound = sum(lower_bound(v, len(g.nodes)) for v in by_dtype.values())
    return {"peak_activation_bytes": peak, "naive_activation_bytes": naive, "lower_bound_bytes": bound}
