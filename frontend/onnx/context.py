"""The state of one ONNX import: value types, known constants, and the IR being built.

Converters (see converters.py) read their operands through the context and add IR nodes with
`emit`. A value is "known" when its contents are fixed at import: initializers, Constant
outputs, static shapes, and anything computed only from those. Integer and Constant-derived
values fold at import; float initializers stay params (weights) and fold later, in the pass
pipeline, only once inference has frozen them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...ir import IRError, Node, Param, TensorType, Value, infer_types, normalize_attrs
from ...ir.errors import ResourceError
from ...ir.graph import fresh_name
from ...ir.limits import check_nodes, max_nodes
from ...ir.types import dtype_of


class ConvertError(Exception):
    """One node cannot be imported; collected and reported with every other such node."""


class NeedsConstant(ConvertError):
    """An operand that kiln needs at compile time (a shape, a pad width) is a runtime input."""

    def __init__(self, name: str, what: str):
        self.name = name
        super().__init__(f"{what} must be known at compile time, but %{name} is computed at run time")


class ImportContext:
    def __init__(self, opset: int, source_opset: int | None = None):
        self.opset = opset
        self.source_opset = opset if source_opset is None else source_opset  # before any upgrade
        self.types: dict[str, TensorType] = {}
        self.known: dict[str, np.ndarray] = {}  # value -> contents fixed at import
        self.foldable: set[str] = set()  # known values that may fold at import (not weights)
        self.params: dict[str, Param] = {}
        self.roles: dict[str, str] = {}
        self.nodes: list[Node] = []
        self.names: set[str] = set()
        self.defined: set[str] = set()  # values an IR input or node defines
        self.wanted: set[str] = set()  # values some node or graph output reads
        self.node_name = ""  # the ONNX node being converted
        self.max_nodes = max_nodes()  # function bodies can multiply a model's nodes

    # -- values ------------------------------------------------------------------------------
    def type(self, name: str) -> TensorType:
        try:
            return self.types[name]
        except KeyError:
            raise ConvertError(f"input %{name} is not defined before this node") from None

    def value_of(self, name: str, what: str) -> np.ndarray:
        """The contents of `name`, which must be known at import (else NeedsConstant)."""
        if name not in self.known:
            raise NeedsConstant(name, what)
        return self.known[name]

    def ints_of(self, name: str, what: str) -> list[int]:
        """The contents of `name` (known at import) as ints: an integer tensor, or a float one
        holding whole numbers; NaN, infinity and fractions are refused."""
        v = np.asarray(self.value_of(name, what)).reshape(-1)
        integral = v.dtype.kind in "iub" or (v.dtype.kind == "f" and np.all(np.isfinite(v)) and np.all(v == np.round(v)))
        if not integral:
            raise ConvertError(f"{what} %{name} must hold integers, holds {v.dtype} {v.tolist()[:8]}")
        return [int(x) for x in v]

    def scalar_of(self, name: str, what: str) -> float:
        """The one number `name` holds (known at import); a tensor of several is refused."""
        v = np.asarray(self.value_of(name, what))
        if v.size != 1:
            raise ConvertError(f"{what} %{name} must hold one value, holds {v.size} (shape {list(v.shape)})")
        return v.reshape(-1)[0].item()

    def set_known(self, name: str, array: np.ndarray, foldable: bool = True) -> None:
        array = np.asarray(array)
        self.types[name] = TensorType(dtype_of(array), array.shape)
        self.known[name] = array
        self.names.add(name)
        if foldable:
            self.foldable.add(name)

    def fresh(self, base: str) -> str:
        return fresh_name(base, self.names)

    def use(self, name: str) -> str:
        """Make `name` readable by an IR node: a known value with no IR definition becomes a param."""
        if name in self.known and name not in self.params and name not in self.defined:
            role = self.roles.get(name, "const" if name in self.foldable else "param")
            self.params[name] = Param(Value(name, self.types[name]), self.known[name], role)
        return name

    def constant(self, array: np.ndarray, hint: str) -> str:
        """A new const param holding `array`."""
        name = self.fresh(hint)
        self.set_known(name, array)
        return self.use(name)

    # -- nodes -------------------------------------------------------------------------------
    def emit(self, op: str, inputs: Sequence[str], attrs: dict | None = None, out: str | None = None) -> str:
        """Add one IR node (named after the ONNX node) and return its output's name."""
        return self.emit_all(op, inputs, attrs, [out])[0]

    def emit_all(self, op: str, inputs: Sequence[str], attrs: dict | None, outs: Sequence[str | None]) -> list[str]:
        """Add one IR node with several outputs, named by `outs` (None: a fresh name)."""
        if len(self.nodes) >= self.max_nodes:
            check_nodes(len(self.nodes) + 1, "the imported graph (function bodies expanded)")
        ins = [self.use(i) for i in inputs]
        try:
            canon = normalize_attrs(op, attrs)
            types = infer_types(op, [self.type(i) for i in ins], canon)
        except ResourceError:
            raise
        except IRError as e:
            raise ConvertError(f"as kiln {op}: {e}") from None
        if len(types) != len(outs):
            raise ConvertError(f"as kiln {op}: {len(types)} output(s), the converter named {len(outs)}")
        names = []
        for i, (out, t) in enumerate(zip(outs, types, strict=True)):
            if out is None:
                out = self.fresh(f"{self.node_name or op}.{op}" + (f".{i}" if i else ""))
            else:
                self.names.add(out)
            self.types[out] = t
            self.defined.add(out)
            names.append(out)
        self.nodes.append(Node(op, tuple(ins), tuple(Value(n, t) for n, t in zip(names, types, strict=True)),
                               canon, self.node_name))
        return names
