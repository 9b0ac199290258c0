"""Small helpers every pass uses to build new graphs without mutating old ones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..ir import Graph, Node


def resolve(mapping: Mapping[str, str], name: str) -> str:
    """Follow a rename chain a -> b -> c to its end."""
    seen = set()
    while name in mapping and name not in seen:
        seen.add(name)
        name = mapping[name]
    return name


def rename_inputs(nodes: Iterable[Node], mapping: Mapping[str, str]) -> list[Node]:
    """Nodes with their inputs renamed through `mapping` (unchanged nodes kept as they are)."""
    out = []
    for n in nodes:
        ins = tuple(resolve(mapping, i) for i in n.inputs)
        out.append(n if ins == n.inputs else n.with_(inputs=ins))
    return out


def drop_unused_params(g: Graph) -> Graph:
    used = {i for n in g.nodes for i in n.inputs} | set(g.outputs)
    kept = tuple(p for p in g.params if p.name in used)
    return g if len(kept) == len(g.params) else g.replace(params=kept)
