"""eliminate_dead_code: drop nodes and params that no graph output depends on.

Rewrite: walk back from the graph outputs; keep what is reached, drop the rest.
Preconditions: none (every op is side-effect free; a random op's unused result is still unused).
Algebra: none.
"""

from __future__ import annotations

from collections import Counter

from ..ir import Graph
from .manager import note
from .rewrite import drop_unused_params


def eliminate_dead_code(g: Graph) -> Graph:
    live = set(g.outputs)
    kept = []
    for n in reversed(g.nodes):
        if any(v.name in live for v in n.outputs):
            kept.append(n)
            live.update(n.inputs)
    kept.reverse()
    dead = Counter(n.op for n in g.nodes) - Counter(n.op for n in kept)
    out = drop_unused_params(g.with_nodes(kept) if dead else g)
    if out is g:
        note("nothing dead")
        return g
    dropped = len(g.params) - len(out.params)
    parts = [f"removed {sum(dead.values())} node(s)" + (f" ({', '.join(f'{k} x{v}' for k, v in sorted(dead.items()))})" if dead else "")]
    if dropped:
        parts.append(f"{dropped} unused param(s)")
    note("; ".join(parts))
    return out
