"""The reference interpreter: runs any graph with the registry's numpy implementations.

It is the oracle for every backend and pass, so it stays simple: nodes run one by one in graph
order, each value is kept until its last reader has run, and the user's arrays are never written.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..ir import Graph, IRError, TensorType
from ..ir.registry import run_reference
from ..ir.verify import node_label


def last_uses(g: Graph) -> dict[int, list[str]]:
    """node index -> the values whose last reader it is (graph outputs are never dropped)."""
    last: dict[str, int] = {}
    for i, n in enumerate(g.nodes):
        for name in n.inputs:
            last[name] = i
    keep = set(g.outputs)
    out: dict[int, list[str]] = {}
    for name, i in last.items():
        if name not in keep:
            out.setdefault(i, []).append(name)
    return out


def interpret(g: Graph, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run `g` on `feeds` (graph input name -> array); returns the outputs in graph order.
    Inputs must already be checked (see runtime.executable.check_feeds)."""
    env: dict[str, np.ndarray] = {p.name: p.data for p in g.params}
    for v in g.inputs:
        x = feeds[v.name].view()
        x.flags.writeable = False  # a reference op that writes its input is a bug: fail loudly
        env[v.name] = x
    drop = last_uses(g)
    for i, node in enumerate(g.nodes):
        try:
            results = run_reference(node.op, [env[name] for name in node.inputs], node.attrs,
                                    [v.type for v in node.outputs])
        except IRError as e:
            raise IRError(f"node {node_label(node)}: {e}") from None
        for v, r in zip(node.outputs, results, strict=True):
            r = np.asarray(r)
            if r.shape != v.type.shape or r.dtype != v.type.np_dtype:
                raise IRError(f"node {node_label(node)}: reference produced {TensorType.of(r)}, "
                              f"type says {v.type}")
            env[v.name] = r
        for name in drop.get(i, ()):
            env.pop(name, None)
    return [np.array(env[o], copy=True) for o in g.outputs]
