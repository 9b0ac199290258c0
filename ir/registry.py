"""The op registry: one `OpDef` per op, with everything kiln knows about it side by side.

An op carries its attribute schema, shape/dtype/layout inference, a numpy reference
implementation (the oracle every backend and pass is tested against), a cost (multiply-adds,
FLOPs, bytes moved) and a slot for its gradient rule. Families of ops live in `ir/ops/`, one file
each; adding an op is adding one `register(OpDef(...))` there and its tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import IRError, ShapeError
from .limits import check_type
from .types import TensorType

REQUIRED = object()  # marks an attribute without a default
ATTR_KINDS = ("int", "float", "str", "bool", "ints", "floats")


@dataclass(frozen=True, slots=True)
class Attr:
    """One attribute's schema. `length` fixes the length of an `ints` attribute (a scalar given
    for it is repeated), `choices` limits a `str` attribute."""

    kind: str
    default: Any = REQUIRED
    length: int | None = None
    choices: tuple[str, ...] | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ATTR_KINDS:
            raise IRError(f"attribute kind {self.kind!r} not in {ATTR_KINDS}")


@dataclass(frozen=True, slots=True)
class Cost:
    """Work of one node: multiply-adds (the MACs of conv/gemm), FLOPs and bytes moved."""

    macs: int = 0
    flops: int = 0
    bytes: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.flops + other.flops, self.bytes + other.bytes)


InferFn = Callable[[list[TensorType], Mapping[str, Any]], list[TensorType]]
RefFn = Callable[[list[np.ndarray], Mapping[str, Any]], list[np.ndarray]]
CostFn = Callable[[list[TensorType], list[TensorType], Mapping[str, Any]], Cost]


def bytes_moved(ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
    return sum(t.nbytes for t in ins) + sum(t.nbytes for t in outs)


def elementwise_cost(ins, outs, attrs) -> Cost:
    """One FLOP per output element, every input and output read or written once."""
    return Cost(0, sum(t.numel for t in outs), bytes_moved(ins, outs))


@dataclass(frozen=True, slots=True)
class OpDef:
    """Everything about one op. `inputs` names the operands; a trailing `?` marks an optional
    one and a trailing `*` a variadic tail (concat). `show` lists attributes the text form
    prints even at their default."""

    name: str
    family: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Attr]
    infer: InferFn
    reference: RefFn
    cost: CostFn = elementwise_cost
    grad: Callable | None = None
    pure: bool = True
    show: tuple[str, ...] = ()
    doc: str = ""
    layouts: frozenset[str] = field(default_factory=lambda: frozenset({""}))
    layout_policy: str = "plain"  # plain | same | free (see check_layouts)

    @property
    def arity(self) -> tuple[int, float]:
        """(fewest, most) operands this op accepts."""
        required = [i for i in self.inputs if not i.endswith(("?", "*"))]
        most = math.inf if any(i.endswith("*") for i in self.inputs) else len(self.inputs)
        return len(required), most


_REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.name in _REGISTRY:
        raise IRError(f"op {op.name!r} registered twice")
    for a in op.show:
        if a not in op.attrs:
            raise IRError(f"op {op.name!r}: show names unknown attribute {a!r}")
    _REGISTRY[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise IRError(f"unknown op {name!r}; known ops: {', '.join(sorted(_REGISTRY))}") from None


def all_ops() -> dict[str, OpDef]:
    return dict(_REGISTRY)


# -- attributes ------------------------------------------------------------------------------
def _coerce(op: str, name: str, spec: Attr, value: Any) -> Any:
    where = f"op {op!r}, attribute {name!r}"
    try:
        if spec.kind == "int":
            if isinstance(value, bool) or int(value) != value:
                raise ValueError
            return int(value)
        if spec.kind == "float":
            return float(value)
        if spec.kind == "bool":
            if value in (0, 1, True, False):
                return bool(value)
            raise ValueError
        if spec.kind == "str":
            if not isinstance(value, str):
                raise ValueError
            if spec.choices and value not in spec.choices:
                raise IRError(f"{where}: {value!r} is not one of {list(spec.choices)}")
            return value
        seq = value if isinstance(value, (list, tuple, np.ndarray)) else None
        if seq is None and spec.length is not None:
            seq = [value] * spec.length
        if seq is None:
            raise ValueError
        conv = int if spec.kind == "ints" else float
        out = tuple(conv(v) for v in seq)
        if spec.kind == "ints" and any(o != v for o, v in zip(out, seq, strict=True)):
            raise ValueError
        if spec.length is not None and len(out) != spec.length:
            raise IRError(f"{where}: expected {spec.length} values, got {len(out)}")
        return out
    except (ValueError, TypeError):
        raise IRError(f"{where}: expected {spec.kind}, got {value!r}") from None


def normalize_attrs(op_name: str, attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check attributes against the op's schema, coerce them and fill in defaults."""
    op = get_op(op_name)
    attrs = dict(attrs or {})
    unknown = sorted(set(attrs) - set(op.attrs))
    if unknown:
        raise IRError(
            f"op {op_name!r}: unknown attribute(s) {unknown}; "
            f"it takes {sorted(op.attrs) or 'none'}"
        )
    out = {}
    for name, spec in op.attrs.items():
        if name in attrs:
            out[name] = _coerce(op_name, name, spec, attrs[name])
        elif spec.default is REQUIRED:
            raise IRError(f"op {op_name!r}: attribute {name!r} is required")
        else:
            out[name] = spec.default
    return out


# -- inference ---------------------------------------------------------------------------------
def infer_types(op_name: str, types: Sequence[TensorType], attrs: Mapping[str, Any]) -> list:
    """Output types of `op_name` applied to operands of `types`; raises ShapeError with the op.
    Output layouts follow the op's layout policy: "same" gives input 0's layout, others plain."""
    op = get_op(op_name)
    lo, hi = op.arity
    if not lo <= len(types) <= hi:
        want = f"{lo}" if lo == hi else f"{lo} to {hi if hi != math.inf else 'any number'}"
        raise ShapeError(f"{op_name} takes {want} inputs ({', '.join(op.inputs)}), got {len(types)}")
    out = op.infer([t.with_layout("") for t in types], attrs)
    if op.layout_policy == "same" and types and types[0].layout:
        out = [t.with_layout(types[0].layout) for t in out]
    check_layouts(op, types, out)
    for t in out:
        check_type(t, f"{op_name}'s output")
    return list(out)


def run_reference(op_name: str, arrays: Sequence[Any], attrs: Mapping[str, Any],
                  out_types: Sequence[TensorType]) -> list:
    """`op_name`'s reference implementation on `arrays`. Outputs that have no elements are
    made empty without running it: they have nothing to compute, and numpy's reductions refuse
    an empty axis."""
    if out_types and all(t.numel == 0 for t in out_types):
        return [np.empty(t.shape, t.np_dtype) for t in out_types]
    return get_op(op_name).reference(arrays, attrs)


BLOCKED_RANK = 4  # layouts other than plain apply to 4-D (N, C, H, W) activations


def check_layouts(op: OpDef, ins: Sequence[TensorType], outs: Sequence[TensorType]) -> None:
    """An op's layout policy:
    plain: every operand and result is plain;
    same:  the 4-D operands and results share one layout from op.layouts, the rest are plain;
    free:  each 4-D operand and result may have any layout in op.layouts (conv2d, reorder)."""
    def fail(what: str, t: TensorType) -> None:
        raise ShapeError(f"{op.name}: {what} has layout {t.layout!r}; {op.name} supports "
                         f"{sorted(op.layouts)} ({op.layout_policy} policy)")

    if not any(t.layout for t in ins) and not any(t.layout for t in outs):
        return  # all plain: every policy allows it
    tagged = [(f"input {i}", t) for i, t in enumerate(ins)] + [(f"output {i}", t) for i, t in enumerate(outs)]
    for what, t in tagged:
        if t.layout and (op.layout_policy == "plain" or t.rank != BLOCKED_RANK or t.layout not in op.layouts):
            fail(what, t)
    if op.layout_policy == "same":
        seen = {t.layout for _, t in tagged if t.rank == BLOCKED_RANK}
        if len(seen) > 1:
            raise ShapeError(f"{op.name}: 4-D operands mix layouts {sorted(seen)}; they must share one")


def expect(cond: bool, message: str) -> None:
    """Shape-rule check used by inference functions: raises ShapeError with `message`."""
    if not cond:
        raise ShapeError(message)
