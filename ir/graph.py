"""The dataflow graph: immutable values, nodes, params and graphs.

A `Graph` lists its nodes in topological order. Values are named (SSA: each name is defined
once, by a graph input, a param or a node output) and nodes refer to their inputs by name.
Nothing here is mutated after construction; passes build new graphs with `Graph.replace`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import IRError
from .types import TensorType

PARAM_ROLES = ("param", "buffer", "const")


@dataclass(frozen=True, slots=True)
class BufferSlot:
    """Where a value lives once buffers are planned: `offset` bytes into the arena."""

    offset: int
    nbytes: int
    arena: str = "arena"

    def __str__(self) -> str:
        return f"@{self.arena}+{self.offset} ({self.nbytes} B)"


@dataclass(frozen=True, slots=True)
class Value:
    """A named tensor: its type and, once planned, its buffer slot."""

    name: str
    type: TensorType
    buffer: BufferSlot | None = None


def _freeze_attr(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze_attr(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def freeze_attrs(attrs: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only, sorted copy of an attribute dict (lists become tuples)."""
    items = sorted((k, _freeze_attr(v)) for k, v in (attrs or {}).items())
    return MappingProxyType(dict(items))


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One op application. `name` is the source-level name (a layer path or an ONNX node name)."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[Value, ...]
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if not isinstance(self.attrs, MappingProxyType):
            object.__setattr__(self, "attrs", freeze_attrs(self.attrs))

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.outputs)

    def key(self) -> tuple:
        """Structural identity (op, inputs, attrs, output types): equal keys compute equal values."""
        return (
            self.op,
            self.inputs,
            tuple(self.attrs.items()),
            tuple(v.type for v in self.outputs),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return (self.key(), self.output_names, self.name, self._buffers()) == (
            other.key(),
            other.output_names,
            other.name,
            other._buffers(),
        )

    def __hash__(self) -> int:
        return hash((self.op, self.inputs, self.output_names))

    def _buffers(self) -> tuple:
        return tuple(v.buffer for v in self.outputs)

    def with_(self, **changes: Any) -> Node:
        """A copy with some fields replaced (attrs given as a plain dict are frozen)."""
        return replace(self, **changes)


@dataclass(frozen=True, slots=True, eq=False)
class Param:
    """A tensor that lives with the graph: a trainable param, a buffer (running stats) or a const."""

    value: Value
    data: np.ndarray
    role: str = "param"

    def __post_init__(self) -> None:
        if self.role not in PARAM_ROLES:
            raise IRError(f"param {self.value.name!r}: role {self.role!r} not in {PARAM_ROLES}")
        data = np.asarray(self.data)
        if data.flags.writeable:
            data = data.copy()
            data.flags.writeable = False
        object.__setattr__(self, "data", data)
        t = self.value.type
        if tuple(data.shape) != t.shape or data.dtype != t.np_dtype:
            raise IRError(
                f"param {self.value.name!r}: data is {data.dtype}{list(data.shape)}, "
                f"type says {t}"
            )

    @property
    def name(self) -> str:
        return self.value.name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Param):
            return NotImplemented
        return (
            self.value == other.value
            and self.role == other.role
            and np.array_equal(self.data, other.data)
        )

    def __hash__(self) -> int:
        return hash(self.value.name)


@dataclass(frozen=True, slots=True, eq=False)
class Graph:
    """Nodes in topological order, graph inputs, outputs (value names) and params."""

    name: str
    inputs: tuple[Value, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    params: tuple[Param, ...] = ()
    _index: dict = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for attr in ("inputs", "nodes", "outputs", "params"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        object.__setattr__(self, "_index", {})

    # -- lookups (cached; the graph never changes) --------------------------------------------
    def _cached(self, key: str, build):
        if key not in self._index:
            self._index[key] = build()
        return self._index[key]

    @property
    def values(self) -> Mapping[str, Value]:
        """Every named value: inputs, params and node outputs (first definition wins)."""

        def build():
            out: dict[str, Value] = {}
            for v in (*self.inputs, *(p.value for p in self.params)):
                out.setdefault(v.name, v)
            for n in self.nodes:
                for v in n.outputs:
                    out.setdefault(v.name, v)
            return MappingProxyType(out)

        return self._cached("values", build)

    @property
    def param_map(self) -> Mapping[str, Param]:
        return self._cached("params", lambda: MappingProxyType({p.name: p for p in self.params}))

    @property
    def producers(self) -> Mapping[str, Node]:
        """value name -> the node that defines it (graph inputs and params have none)."""
        return self._cached(
            "producers",
            lambda: MappingProxyType({v.name: n for n in self.nodes for v in n.outputs}),
        )

    @property
    def users(self) -> Mapping[str, tuple[Node, ...]]:
        """value name -> the nodes that read it, in order."""

        def build():
            out: dict[str, list[Node]] = {}
            for n in self.nodes:
                for name in dict.fromkeys(n.inputs):
                    out.setdefault(name, []).append(n)
            return MappingProxyType({k: tuple(v) for k, v in out.items()})

        return self._cached("users", build)

    def type_of(self, name: str) -> TensorType:
        try:
            return self.values[name].type
        except KeyError:
            raise IRError(f"graph {self.name!r} has no value named {name!r}") from None

    def param_data(self) -> dict[str, np.ndarray]:
        return {p.name: p.data for p in self.params}

    # -- building new graphs ------------------------------------------------------------------
    def replace(self, **changes: Any) -> Graph:
        return replace(self, **changes)

    def with_nodes(self, nodes: Iterable[Node], params: Iterable[Param] | None = None) -> Graph:
        return replace(self, nodes=tuple(nodes), params=self.params if params is None else params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (
            self.name == other.name
            and self.inputs == other.inputs
            and self.nodes == other.nodes
            and self.outputs == other.outputs
            and {p.name: p for p in self.params} == {p.name: p for p in other.params}
        )

    __hash__ = object.__hash__

    def __str__(self) -> str:
        from .text import format_graph

        return format_graph(self)

    def __len__(self) -> int:
        return len(self.nodes)


def fresh_name(base: str, taken: set[str]) -> str:
    """`base`, or `base_1`, `base_2`, ... if taken; the name returned is added to `taken`."""
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name
