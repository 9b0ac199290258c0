"""Converters for activations, elementwise arithmetic, matrix products and softmax."""

from __future__ import annotations

import math

import numpy as np

from .context import ConvertError, ImportContext
from .converters import NodeView, converter


def _unary(onnx_op: str, kiln_op: str, since: int = 1, attrs: dict[str, float] | None = None) -> None:
    """ONNX op with one input and (optional) float attributes of the same name as kiln's."""
    defaults = attrs or {}

    @converter(onnx_op, since=since, attrs=(*defaults, "consumed_inputs"))
    def convert(ctx: ImportContext, node: NodeView) -> list:
        a = {k: node.attr(k, v) for k, v in defaults.items()}
        return [ctx.emit(kiln_op, [node.input(0)], a, out=node.outputs[0])]


_unary("Relu", "relu")
_unary("Sigmoid", "sigmoid")
_unary("Tanh", "tanh")
_unary("Identity", "identity")
_unary("LeakyRelu", "leaky_relu", attrs={"alpha": 0.01})
# the activation table's ops (ir/ops/elementwise.py, ACTIVATIONS); defaults are the ONNX spec's
_unary("Exp", "exp")
_unary("Log", "log")
_unary("Sqrt", "sqrt")
_unary("Abs", "abs")
_unary("Neg", "neg")
_unary("Reciprocal", "reciprocal")
_unary("Erf", "erf", since=9)
_unary("Elu", "elu", attrs={"alpha": 1.0})
_unary("Selu", "selu", attrs={"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875})
_unary("Softplus", "softplus")
_unary("Softsign", "softsign")
_unary("HardSigmoid", "hard_sigmoid", attrs={"alpha": 0.2, "beta": 0.5})
_unary("HardSwish", "hard_swish", since=14)
_unary("Mish", "mish", since=18)


@converter("Gelu", since=20, attrs=("approximate",))
def gelu(ctx: ImportContext, node: NodeView) -> list:
    approximate = node.attr("approximate", "none")
    ops = {"none": "gelu", "tanh": "gelu_tanh"}
    if approximate not in ops:
        raise ConvertError(f"Gelu's approximate must be 'none' or 'tanh', got {approximate!r}")
    return [ctx.emit(ops[approximate], [node.input(0)], out=node.outputs[0])]


@converter("PRelu", since=1, attrs=("consumed_inputs",))
def prelu(ctx: ImportContext, node: NodeView) -> list:
    x, slope = node.input(0), node.input(1)
    xt, st = ctx.type(x), ctx.type(slope)
    if ctx.source_opset < 7 and st.rank == 1 and xt.rank > 2 and st.shape[0] == xt.shape[1] > 1:
        # before opset 7 a 1-D slope was per channel (axis 1), not numpy-broadcast
        slope = ctx.emit("reshape", [slope], {"shape": (st.shape[0],) + (1,) * (xt.rank - 2)})
    return [ctx.emit("prelu", [x, slope], out=node.outputs[0])]


@converter("Clip", since=1, attrs=("min", "max", "consumed_inputs"))
def clip_attrs(ctx: ImportContext, node: NodeView) -> list:
    a = {"min": node.attr("min", -math.inf), "max": node.attr("max", math.inf)}
    return [ctx.emit("clip", [node.input(0)], a, out=node.outputs[0])]


@converter("Clip", since=11)
def clip_inputs(ctx: ImportContext, node: NodeView) -> list:
    bounds = []
    for i, default in ((1, -math.inf), (2, math.inf)):
        name = node.input(i)
        bounds.append(float(ctx.value_of(name, f"Clip's {'min' if i == 1 else 'max'}")) if name else default)
    return [ctx.emit("clip", [node.input(0)], {"min": bounds[0], "max": bounds[1]}, out=node.outputs[0])]


def _binary(onnx_op: str, kiln_op: str) -> None:
    @converter(onnx_op, since=7)
    def convert(ctx: ImportContext, node: NodeView) -> list:
        return [ctx.emit(kiln_op, [node.input(0), node.input(1)], out=node.outputs[0])]


for _o, _k in (("Add", "add"), ("Sub", "sub"), ("Mul", "mul"), ("Div", "div")):
    _binary(_o, _k)


@converter("Sum", since=6)
def sum_(ctx: ImportContext, node: NodeView) -> list:
    ins = [i for i in node.inputs if i]
    if len(ins) == 1:
        return [ctx.emit("identity", ins, out=node.outputs[0])]
    acc = ins[0]
    for k, other in enumerate(ins[1:], 2):
        acc = ctx.emit("add", [acc, other], out=node.outputs[0] if k == len(ins) else None)
    return [acc]


@converter("Gemm", since=7, attrs=("alpha", "beta", "transA", "transB"))
def gemm(ctx: ImportContext, node: NodeView) -> list:
    a = {"alpha": node.attr("alpha", 1.0), "beta": node.attr("beta", 1.0),
         "trans_a": bool(node.attr("transA", 0)), "trans_b": bool(node.attr("transB", 0))}
    ins = [node.input(0), node.input(1)] + ([node.input(2)] if node.input(2) else [])
    return [ctx.emit("gemm", ins, a, out=node.outputs[0])]


@converter("MatMul", since=1)
def matmul(ctx: ImportContext, node: NodeView) -> list:
    return [ctx.emit("matmul", [node.input(0), node.input(1)], out=node.outputs[0])]


def _softmax(onnx_op: str, kiln_op: str) -> None:
    @converter(onnx_op, since=1, attrs=("axis",))
    def coerced(ctx: ImportContext, node: NodeView) -> list:
        """Before opset 13: the input is seen as 2-D, [prod(dims before axis), prod(the rest)]."""
        x = node.input(0)
        t = ctx.type(x)
        axis = node.attr("axis", 1)
        axis = axis + t.rank if axis < 0 else axis
        if axis == t.rank - 1 or t.rank == 0:
            return [ctx.emit(kiln_op, [x], {"axis": -1}, out=node.outputs[0])]
        lead = int(np.prod(t.shape[:axis], dtype=np.int64))
        rest = int(np.prod(t.shape[axis:], dtype=np.int64))
        flat = ctx.emit("reshape", [x], {"shape": (lead, rest)})
        y = ctx.emit(kiln_op, [flat], {"axis": -1})
        return [ctx.emit("reshape", [y], {"shape": t.shape}, out=node.outputs[0])]

    @converter(onnx_op, since=13, attrs=("axis",))
    def single_axis(ctx: ImportContext, node: NodeView) -> list:
        return [ctx.emit(kiln_op, [node.input(0)], {"axis": node.attr("axis", -1)}, out=node.outputs[0])]


_softmax("Softmax", "softmax")
_softmax("LogSoftmax", "log_softmax")
