"""The converter registry: `@converter("Conv", since=1)` functions, chosen by opset.

A converter turns one ONNX node into IR nodes through the ImportContext and returns the IR
names of the node's outputs (None for an output it does not produce). It declares the ONNX
attributes it understands; a node carrying any other attribute is reported, not ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import onnx
from onnx import helper

from .context import ConvertError, ImportContext


class NodeView:
    """An ONNX node with its attributes decoded and empty (absent) inputs as None."""

    def __init__(self, proto: onnx.NodeProto, inputs: Sequence[str | None]):
        self.proto = proto
        self.op_type = proto.op_type
        self.name = proto.name
        self.inputs = list(inputs)
        self.outputs = list(proto.output)
        self.attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}

    def attr(self, name: str, default=None):
        v = self.attrs.get(name, default)
        if isinstance(v, bytes):
            try:
                return v.decode()
            except UnicodeDecodeError:
                raise ConvertError(f"attribute {name}={v!r} is not valid UTF-8 text") from None
        return v

    def input(self, i: int) -> str | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def label(self) -> str:
        return f"{self.name or '(unnamed)'} ({self.op_type})"


ConvertFn = Callable[[ImportContext, NodeView], list]


@dataclass(frozen=True, slots=True)
class Converter:
    op_type: str
    since: int
    fn: ConvertFn
    attrs: frozenset[str]


_CONVERTERS: dict[str, list[Converter]] = {}


def converter(op_type: str, since: int, attrs: Sequence[str] = ()) -> Callable[[ConvertFn], ConvertFn]:
    """Register `fn` for `op_type` from opset `since` on (until a later registration)."""

    def register(fn: ConvertFn) -> ConvertFn:
        _CONVERTERS.setdefault(op_type, []).append(Converter(op_type, since, fn, frozenset(attrs)))
        _CONVERTERS[op_type].sort(key=lambda c: c.since)
        return fn

    return register


def find_converter(op_type: str, opset: int) -> Converter | None:
    best = None
    for c in _CONVERTERS.get(op_type, ()):
        if c.since <= opset:
            best = c
    return best


def supported_ops() -> dict[str, int]:
    """ONNX op type -> the earliest opset kiln converts it from."""
    return {k: v[0].since for k, v in sorted(_CONVERTERS.items())}


# -- helpers shared by converters -----------------------------------------------------------------
def spatial_pads(node: NodeView, in_sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                 dilations: Sequence[int]) -> tuple[list[int], list[int]]:
    """(begins, ends) per spatial axis from `pads` or `auto_pad` (SAME_UPPER/SAME_LOWER/VALID)."""
    n = len(in_sizes)
    auto = node.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(node.attr("pads", [0] * 2 * n))
        if len(pads) != 2 * n:
            raise ConvertError(f"pads has {len(pads)} values, expected {2 * n}")
        return pads[:n], pads[n:]
    if auto == "VALID":
        return [0] * n, [0] * n
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ConvertError(f"auto_pad={auto!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    if any(s < 1 for s in strides) or any(d < 1 for d in dilations):
        raise ConvertError(f"auto_pad={auto} with strides {list(strides)} and dilations {list(dilations)}: "
                           "each must be at least 1")
    begins, ends = [], []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations, strict=True):
        out = math.ceil(size / s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else big)
        ends.append(big if auto == "SAME_UPPER" else small)
    return begins, ends


def ints(v, n: int, default: int, what: str = "the attribute") -> list[int]:
    """`n` ints from a list attribute `v` (None: `default` for each); one per axis or refused."""
    if v is None:
        return [default] * n
    if len(v) != n:
        raise ConvertError(f"{what} has {len(v)} value(s) {list(v)}, expected {n}")
    return [int(x) for x in v]
