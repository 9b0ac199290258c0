"""Whole-graph numbers: param counts, multiply-adds, FLOPs and activation memory."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .graph import Graph
from .registry import Cost, get_op


def node_costs(g: Graph) -> list[Cost]:
    types = g.values
    out = []
    for n in g.nodes:
        ins = [types[i].type for i in n.inputs]
        outs = [v.type for v in n.outputs]
        out.append(get_op(n.op).cost(ins, outs, n.attrs))
    return out


@dataclass(frozen=True, slots=True)
class GraphStats:
    """`params`: elements of trainable params; `buffers`/`consts`: of the other roles;
    `activation_bytes`: bytes of every node output (one buffer per value, no reuse)."""

    nodes: int
    ops: dict[str, int]
    params: int
    buffers: int
    consts: int
    param_bytes: int
    macs: int
    flops: int
    activation_bytes: int

    def as_dict(self) -> dict:
        return {
            "nodes": self.nodes, "ops": self.ops, "params": self.params, "buffers": self.buffers,
            "consts": self.consts, "param_bytes": self.param_bytes, "macs": self.macs,
            "flops": self.flops, "activation_bytes": self.activation_bytes,
        }


def graph_stats(g: Graph) -> GraphStats:
    by_role = Counter()
    for p in g.params:
        by_role[p.role] += p.data.size
    total = sum(node_costs(g), Cost())
    return GraphStats(
        nodes=len(g.nodes),
        ops=dict(sorted(Counter(n.op for n in g.nodes).items())),
        params=by_role["param"],
        buffers=by_role["buffer"],
        consts=by_role["const"],
        param_bytes=sum(p.data.nbytes for p in g.params),
        macs=total.macs,
        flops=total.flops,
        activation_bytes=sum(v.type.nbytes for n in g.nodes for v in n.outputs),
    )
