"""fuse_elementwise: a chain of elementwise ops runs as one kernel, one pass over memory.

Rewrite: a run of elementwise nodes, each the sole reader of the value before it, becomes one
fused_elementwise node whose `steps` name them in order:
    t1 = add(x, b); t2 = relu(t1); y = mul(s, t2)
        -> y = fused_elementwise[steps="add $1; relu; mul $2"](x, b, s)
The chain's running value keeps the shape of its first value x, and every other operand
broadcasts to it (a per-channel bias, a scalar). `c - v` and `c / v` become the steps rsub and
rdiv. The fused node takes the place and output name of the chain's last node, so every
operand, computed anywhere before that node, is defined before it.
Chain ops: relu, leaky_relu, sigmoid, tanh, clip, add, sub, mul, div, on float tensors.
Preconditions: each value inside the chain has one reader and is no graph output; a binary node
whose operands are both the running value (v * v) ends the chain; a chain needs two nodes.
Convolutions' own epilogues (bias, residual add, relu) are fuse_epilogues' work, which runs
first; this pass takes what is left (a GCN's bias and relu, an imported model's arithmetic).
Algebra: the same steps in the same order, each rounded to the dtype as the unfused node is:
exact up to the libm of the kernel's exp/tanh.
"""

from __future__ import annotations

from ..ir import Graph, Node
from ..ir.ops.elementwise import CHAIN_UNARY, format_step
from ..ir.types import FLOAT_DTYPES
from .manager import note

ARITHMETIC = ("add", "sub", "mul", "div")


def _chainable(n: Node) -> bool:
    return (n.op in CHAIN_UNARY or n.op in ARITHMETIC) and n.outputs[0].type.dtype in FLOAT_DTYPES


def _step(n: Node, running: str) -> tuple[str, dict, str | None] | None:
    """(op, attrs, other operand) applying n to the running value, or None if n cannot."""
    if n.op in CHAIN_UNARY:
        return n.op, {k: n.attrs[k] for k in CHAIN_UNARY[n.op]}, None
    a, b = n.inputs
    if a == b:
        return None
    if a == running:
        return n.op, {}, b
    return ("r" + n.op if n.op in ("sub", "div") else n.op), {}, a


def _add_step(step, operands: list[str], steps: list[str]) -> None:
    """Append a step's text; its other operand becomes $k (each distinct operand once)."""
    op, attrs, other = step
    if other is not None:
        if other not in operands:
            operands.append(other)
        attrs = {"operand": operands.index(other) + 1}
    steps.append(format_step(op, attrs))


def fuse_elementwise(g: Graph) -> Graph:
    users, outputs = g.users, set(g.outputs)
    types = {name: v.type for name, v in g.values.items()}
    replace: dict[int, Node | None] = {}
    lengths = []
    for n in g.nodes:
        if id(n) in replace or not _chainable(n):
            continue
        out_t = n.outputs[0].type
        start = next((i for i in n.inputs if types[i] == out_t), None)
        if start is None:
            continue
        first = _step(n, start)
        if first is None:
            continue
        operands: list[str] = []
        steps: list[str] = []
        _add_step(first, operands, steps)
        chain, cur = [n], n
        while True:
            value = cur.outputs[0].name
            readers = users.get(value, ())
            if len(readers) != 1 or value in outputs:
                break
            r = readers[0]
            if id(r) in replace or not _chainable(r) or r.outputs[0].type != out_t:
                break
            step = _step(r, value)
            if step is None:
                break
            _add_step(step, operands, steps)
            chain.append(r)
            cur = r
        if len(chain) < 2:
            continue
        fused = Node("fused_elementwise", (start, *operands), cur.outputs, {"steps": "; ".join(steps)},
                     cur.name or n.name)
        for c in chain[:-1]:
            replace[id(c)] = None
        replace[id(cur)] = fused
        lengths.append(len(chain))
    if not lengths:
        note("no elementwise chains")
        return g
    note(f"{len(lengths)} chain(s) fused: {sum(lengths)} nodes run as {len(lengths)} kernel(s)")
    nodes = [replace.get(id(n), n) for n in g.nodes]
    return g.with_nodes([n for n in nodes if n is not None])
