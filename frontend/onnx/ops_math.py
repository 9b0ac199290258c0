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
    """Known bounds make one clip; a bound computed at run time (a graph input) becomes a max
    (for min) or min (for max) with it, so x stays NaN where it is NaN."""
    x = node.input(0)
    if all(not node.input(i) or node.input(i) in ctx.known for i in (1, 2)):
        bounds = []
        for i, default, what in ((1, -math.inf, "Clip's min"), (2, math.inf, "Clip's max")):
            name = node.input(i)
            bounds.append(float(ctx.scalar_of(name, what)) if name else default)
        return [ctx.emit("clip", [x], {"min": bounds[0], "max": bounds[1]}, out=node.outputs[0])]
    lo, hi = node.input(1), node.input(2)
    if lo:
        x = ctx.emit("max", [x, lo], out=None if hi else node.outputs[0])
    if hi:
        x = ctx.emit("min", [x, hi], out=node.outputs[0])
    return [x]


def _binary(onnx_op: str, kiln_op: str) -> None:
    @converter(onnx_op, since=7)
    def convert(ctx: ImportContext, node: NodeView) -> list:
        return [ctx.emit(kiln_op, [node.input(0), node.input(1)], out=node.outputs[0])]


for _o, _k in (("Add", "add"), ("Sub", "sub"), ("Mul", "mul"), ("Div", "div"), ("Equal", "equal"),
               ("Less", "less"), ("Greater", "greater"), ("LessOrEqual", "less_equal"),
               ("GreaterOrEqual", "greater_equal")):
    _binary(_o, _k)


@converter("Pow", since=7)
def pow_(ctx: ImportContext, node: NodeView) -> list:
    """kiln's pow is on floats: a float base takes the exponent cast to its dtype; an integer
    base (opset 12+) computes in float64 and truncates back to its dtype, as onnxruntime does."""
    x, e = node.input(0), node.input(1)
    xt = ctx.type(x)
    work = xt.dtype if xt.dtype in ("f16", "f32", "f64") else "f64"

    def as_work(v: str) -> str:
        if ctx.type(v).dtype == work:
            return v
        if v in ctx.known:
            return ctx.constant(ctx.known[v].astype(np.dtype(work.replace("f", "float"))), "exponent")
        return ctx.emit("cast", [v], {"to": work})

    if work == xt.dtype:
        return [ctx.emit("pow", [x, as_work(e)], out=node.outputs[0])]
    y = ctx.emit("pow", [as_work(x), as_work(e)])
    return [ctx.emit("cast", [y], {"to": xt.dtype}, out=node.outputs[0])]


def _variadic(onnx_op: str, kiln_op: str, mean: bool = False) -> None:
    @converter(onnx_op, since=6)
    def convert(ctx: ImportContext, node: NodeView) -> list:
        """A chain of binary ops left to right (broadcasting at each), then 1/n for Mean."""
        ins = [i for i in node.inputs if i]
        if len(ins) == 1:
            return [ctx.emit("identity", ins, out=node.outputs[0])]
        acc = ins[0]
        for k, other in enumerate(ins[1:], 2):
            acc = ctx.emit(kiln_op, [acc, other], out=node.outputs[0] if k == len(ins) and not mean else None)
        if mean:
            t = ctx.type(acc)
            acc = ctx.emit("mul", [acc, ctx.constant(np.array(1 / len(ins), t.np_dtype), "inv_count")],
                           out=node.outputs[0])
        return [acc]


_variadic("Sum", "add")
_variadic("Max", "max")
_variadic("Min", "min")
_variadic("Mean", "add", mean=True)


@converter("Where", since=9)
def where(ctx: ImportContext, node: NodeView) -> list:
    return [ctx.emit("where", [node.input(0), node.input(1), node.input(2)], out=node.outputs[0])]


@converter("Cast", since=6, attrs=("to", "saturate", "round_mode"))
def cast(ctx: ImportContext, node: NodeView) -> list:
    from onnx import helper

    from ...ir.types import dtype_of

    try:
        to = dtype_of(helper.tensor_dtype_to_np_dtype(node.attr("to")))
    except Exception:  # noqa: BLE001
        raise ConvertError(f"Cast to data type {node.attr('to')} is not one kiln supports") from None
    return [ctx.emit("cast", [node.input(0)], {"to": to}, out=node.outputs[0])]


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
        if t.rank and not -t.rank <= axis < t.rank:
            raise ConvertError(f"axis {axis} is outside the rank-{t.rank} input {t}")
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
