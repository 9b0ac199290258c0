"""A small Python builder API for models.

    b = Builder("tiny", seed=0)
    x = b.input("input", (1, 3, 32, 32))
    with b.scope("block1"):
        y = b.relu(b.batch_norm(b.conv2d(x, 16, kernel=3, pads=1, bias=False)))
    g = b.build(b.linear(b.flatten(b.global_avgpool(y)), 10, name="fc"))

Every call checks its operands at once (through the op registry's inference) and names the
node after the current scope, so errors point at the layer that caused them. Params are
initialised from the builder's seed, so the same seed gives the same weights.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..ir import Graph, IRError, Node, Param, TensorType, Value, infer_types, normalize_attrs, verify
from ..ir.errors import ResourceError
from ..ir.graph import fresh_name
from ..ir.types import dtype_of


class Tensor:
    """A handle on a value being built; arithmetic operators add nodes."""

    __slots__ = ("builder", "name", "type")

    def __init__(self, builder: Builder, name: str, type_: TensorType):
        self.builder, self.name, self.type = builder, name, type_

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def __add__(self, other: Tensor) -> Tensor:
        return self.builder.add(self, other)

    def __sub__(self, other: Tensor) -> Tensor:
        return self.builder.op("sub", [self, other])

    def __mul__(self, other: Tensor) -> Tensor:
        return self.builder.op("mul", [self, other])

    def __truediv__(self, other: Tensor) -> Tensor:
        return self.builder.op("div", [self, other])

    def __matmul__(self, other: Tensor) -> Tensor:
        return self.builder.op("matmul", [self, other])

    def __repr__(self) -> str:
        return f"Tensor(%{self.name}:{self.type})"


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def _pads(p: int | Sequence[int]) -> tuple[int, int, int, int]:
    """pads as int (all sides), (h, w) or (top, left, bottom, right)."""
    if isinstance(p, int):
        return (p,) * 4
    p = tuple(p)
    return (p[0], p[1], p[0], p[1]) if len(p) == 2 else p  # type: ignore[return-value]


class Builder:
    """Builds one graph. `seed` fixes the initial weights; `dtype` is the float type of params."""

    def __init__(self, name: str, seed: int = 0, dtype: str = "f32"):
        self.name, self.dtype = name, dtype
        self.rng = np.random.default_rng(seed)
        self._inputs: list[Value] = []
        self._params: list[Param] = []
        self._nodes: list[Node] = []
        self._names: set[str] = set()
        self._scope: list[str] = []

    # -- naming ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Prefix node and param names with `name.` inside the block."""
        self._scope.append(str(name))
        try:
            yield
        finally:
            self._scope.pop()

    def qualify(self, name: str) -> str:
        return ".".join([*self._scope, name]) if name else ".".join(self._scope)

    def _fresh(self, base: str) -> str:
        return fresh_name(base, self._names)

    # -- values --------------------------------------------------------------------------------
    def input(self, name: str, shape: Sequence[int], dtype: str | None = None) -> Tensor:
        if name in self._names:
            raise IRError(f"graph {self.name!r}: the name {name!r} is already taken")
        self._names.add(name)
        v = Value(name, TensorType(dtype or self.dtype, tuple(shape)))
        self._inputs.append(v)
        return Tensor(self, name, v.type)

    def param(self, name: str, data: np.ndarray, role: str = "param") -> Tensor:
        """Add a param (`role` param | buffer | const) holding a copy of `data`."""
        data = np.asarray(data)
        full = self._fresh(self.qualify(name))
        p = Param(Value(full, TensorType(dtype_of(data), data.shape)), data, role)
        self._params.append(p)
        return Tensor(self, full, p.value.type)

    def const(self, name: str, data: np.ndarray) -> Tensor:
        return self.param(name, data, role="const")

    def op(self, op: str, inputs: Sequence[Tensor], attrs: dict[str, Any] | None = None,
           name: str | None = None, outputs: int = 1) -> Any:
        """Add one node of `op`; returns its output Tensor (a tuple when it has several)."""
        node_name = self.qualify(name or "")
        try:
            canon = normalize_attrs(op, attrs)
            types = infer_types(op, [t.type for t in inputs], canon)
        except IRError as e:
            where = f" at {node_name!r}" if node_name else ""
            ins = ", ".join(f"%{t.name}:{t.type}" for t in inputs)
            kind = ResourceError if isinstance(e, ResourceError) else IRError
            raise kind(f"graph {self.name!r}: {op}{where} ({ins}): {e}") from None
        base = node_name or op
        outs = tuple(Value(self._fresh(base if i == 0 else f"{base}.{i}"), t) for i, t in enumerate(types))
        self._nodes.append(Node(op, tuple(t.name for t in inputs), outs, canon, node_name))
        handles = tuple(Tensor(self, v.name, v.type) for v in outs)
        return handles[0] if len(handles) == 1 else handles

    def build(self, *outputs: Tensor) -> Graph:
        """The finished, verified graph with `outputs` in order."""
        g = Graph(self.name, tuple(self._inputs), tuple(self._nodes), tuple(t.name for t in outputs),
                  tuple(self._params))
        return verify(g)

    # -- layers (params created and initialised here) ------------------------------------------
    def _normal(self, shape, std: float) -> np.ndarray:
        return (self.rng.standard_normal(shape) * std).astype(np.dtype(self._np_float()))

    def _uniform(self, shape, bound: float) -> np.ndarray:
        return self.rng.uniform(-bound, bound, shape).astype(np.dtype(self._np_float()))

    def _np_float(self):
        return TensorType(self.dtype, ()).np_dtype

    def conv2d(self, x: Tensor, out_channels: int, kernel: int | Sequence[int], stride=1, pads=0,
               dilation=1, groups: int = 1, bias: bool = True, name: str = "conv") -> Tensor:
        """Conv with He-normal weights and a zero bias. The fan-out counts the outputs one input
        channel feeds (out_channels / groups per tap), so depthwise stacks keep their scale."""
        kh, kw = _pair(kernel)
        cin = x.shape[1]
        if groups < 1 or cin % groups:
            raise IRError(f"graph {self.name!r}: conv {self.qualify(name)!r}: groups={groups} "
                          f"does not divide {cin} input channels")
        with self.scope(name):
            w = self.param("weight", self._normal((out_channels, cin // groups, kh, kw),
                                                  math.sqrt(2.0 * groups / (out_channels * kh * kw))))
            ins = [x, w]
            if bias:
                ins.append(self.param("bias", np.zeros(out_channels, self._np_float())))
        attrs = {"stride": _pair(stride), "pads": _pads(pads), "dilation": _pair(dilation), "groups": groups}
        return self.op("conv2d", ins, attrs, name=name)

    def batch_norm(self, x: Tensor, eps: float = 1e-5, momentum: float = 0.9, name: str = "bn") -> Tensor:
        """Inference batch norm with scale 1, bias 0 and running statistics (0, 1)."""
        c = x.shape[1]
        f = self._np_float()
        with self.scope(name):
            ins = [x, self.param("weight", np.ones(c, f)), self.param("bias", np.zeros(c, f)),
                   self.param("running_mean", np.zeros(c, f), role="buffer"),
                   self.param("running_var", np.ones(c, f), role="buffer")]
        return self.op("batch_norm", ins, {"epsilon": eps, "momentum": momentum}, name=name)

    def linear(self, x: Tensor, out_features: int, bias: bool = True, name: str = "fc") -> Tensor:
        """y = x @ W.T + b with W [out, in], initialised uniform(+-1/sqrt(in)) like common frameworks."""
        fan_in = x.shape[-1]
        bound = 1.0 / math.sqrt(fan_in)
        with self.scope(name):
            ins = [x, self.param("weight", self._uniform((out_features, fan_in), bound))]
            if bias:
                ins.append(self.param("bias", self._uniform((out_features,), bound)))
        return self.op("gemm", ins, {"trans_b": True}, name=name)

    # -- plain ops -------------------------------------------------------------------------------
    def relu(self, x: Tensor, name: str | None = None) -> Tensor:
        return self.op("relu", [x], name=name)

    def leaky_relu(self, x: Tensor, alpha: float = 0.01, name: str | None = None) -> Tensor:
        return self.op("leaky_relu", [x], {"alpha": alpha}, name=name)

    def sigmoid(self, x: Tensor, name: str | None = None) -> Tensor:
        return self.op("sigmoid", [x], name=name)

    def tanh(self, x: Tensor, name: str | None = None) -> Tensor:
        return self.op("tanh", [x], name=name)

    def clip(self, x: Tensor, lo: float = -math.inf, hi: float = math.inf, name: str | None = None) -> Tensor:
        return self.op("clip", [x], {"min": lo, "max": hi}, name=name)

    def relu6(self, x: Tensor, name: str | None = None) -> Tensor:
        return self.clip(x, 0.0, 6.0, name=name)

    def add(self, a: Tensor, b: Tensor, name: str | None = None) -> Tensor:
        return self.op("add", [a, b], name=name)

    def dropout(self, x: Tensor, ratio: float = 0.5, name: str | None = None) -> Tensor:
        return self.op("dropout", [x], {"ratio": ratio}, name=name)

    def maxpool2d(self, x: Tensor, kernel, stride=None, pads=0, ceil_mode=False, name=None) -> Tensor:
        attrs = {"kernel": _pair(kernel), "stride": _pair(stride or kernel), "pads": _pads(pads),
                 "ceil_mode": ceil_mode}
        return self.op("maxpool2d", [x], attrs, name=name)

    def avgpool2d(self, x: Tensor, kernel, stride=None, pads=0, ceil_mode=False,
                  count_include_pad=False, name=None) -> Tensor:
        attrs = {"kernel": _pair(kernel), "stride": _pair(stride or kernel), "pads": _pads(pads),
                 "ceil_mode": ceil_mode, "count_include_pad": count_include_pad}
        return self.op("avgpool2d", [x], attrs, name=name)

    def global_avgpool(self, x: Tensor, name: str | None = None) -> Tensor:
        return self.op("global_avgpool", [x], name=name)

    def flatten(self, x: Tensor, axis: int = 1, name: str | None = None) -> Tensor:
        return self.op("flatten", [x], {"axis": axis}, name=name)

    def reshape(self, x: Tensor, shape: Sequence[int], name: str | None = None) -> Tensor:
        return self.op("reshape", [x], {"shape": tuple(shape)}, name=name)

    def concat(self, xs: Sequence[Tensor], axis: int, name: str | None = None) -> Tensor:
        return self.op("concat", list(xs), {"axis": axis}, name=name)

    def softmax(self, x: Tensor, axis: int = -1, name: str | None = None) -> Tensor:
        return self.op("softmax", [x], {"axis": axis}, name=name)

    def log_softmax(self, x: Tensor, axis: int = -1, name: str | None = None) -> Tensor:
        return self.op("log_softmax", [x], {"axis": axis}, name=name)

    def lrn(self, x: Tensor, size: int, alpha=1e-4, beta=0.75, bias=1.0, name=None) -> Tensor:
        return self.op("lrn", [x], {"size": size, "alpha": alpha, "beta": beta, "bias": bias}, name=name)

    def spmm(self, adjacency: tuple[Tensor, Tensor, Tensor], x: Tensor, name: str | None = None) -> Tensor:
        """CSR adjacency (indptr, indices, data) @ x."""
        return self.op("spmm", [*adjacency, x], name=name)

    def csr(self, name: str, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> tuple:
        """Add a constant CSR matrix as three consts `name.indptr`, `name.indices`, `name.data`."""
        with self.scope(name):
            return (self.const("indptr", np.asarray(indptr)), self.const("indices", np.asarray(indices)),
                    self.const("data", np.asarray(data, self._np_float())))
