"""remove_identities: inference-time no-ops disappear.

Rewrite: identity(x) and dropout(x) (identity at inference) are removed; their readers read x.
Preconditions: inference mode (dropout is random in training); a node producing a graph output
is kept so output names stay.
Algebra: exact.
"""

from __future__ import annotations

from ..ir import Graph
from .manager import note
from .rewrite import rename_inputs

NO_OPS = ("identity", "dropout")


def remove_identities(g: Graph) -> Graph:
    outputs = set(g.outputs)
    rename, kept = {}, []
    for n in g.nodes:
        if n.op in NO_OPS and n.outputs[0].name not in outputs:
            rename[n.outputs[0].name] = n.inputs[0]
        else:
            kept.append(n)
    if not rename:
        note("no identities")
        return g
    note(f"removed {len(rename)} identity/dropout node(s)")
    return g.with_nodes(rename_inputs(kept, rename))
