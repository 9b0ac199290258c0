"""Converters for reductions and normalisations, lowered onto kiln ops that every target has
(reduce_sum accumulating in float64, broadcasting arithmetic, sqrt): each runs on every target
and differentiates through their gradient rules.

    ReduceSum                 reduce_sum
    ReduceMax, ReduceMin      reduce_max, reduce_min
    ReduceMean                reduce_sum, times 1/n
    ReduceSumSquare, ReduceL2 reduce_sum of x*x (then sqrt)
    ReduceL1, ReduceLogSum    reduce_sum of abs(x); log of reduce_sum
    ReduceLogSumExp           m + log(reduce_sum(exp(x - m))), m = reduce_max (no overflow)
    ArgMax, ArgMin            arg_max, arg_min (select_last_index from opset 12)
    LayerNormalization        d = x - mean(x), y = d / sqrt(mean(d*d) + eps) * scale + bias,
                              over the axes from `axis` on (ConvNeXt's channels-last form)
    InstanceNormalization     the same over each image's channel planes, per-channel scale/bias
    GroupNormalization        the same over each image's channel groups
"""

from __future__ import annotations

import numpy as np

from .context import ConvertError, ImportContext
from .converters import NodeView, converter


def _axes(ctx: ImportContext, node: NodeView, from_input: bool) -> tuple[int, ...] | None:
    """The reduced axes, normalised; None for "no reduction" (noop_with_empty_axes)."""
    rank = ctx.type(node.input(0)).rank
    if from_input:
        name = node.input(1)
        axes = ctx.ints_of(name, "the reduction's axes") if name else []
    else:
        axes = list(node.attr("axes", []) or [])
    if not axes:
        return None if node.attr("noop_with_empty_axes", 0) else tuple(range(rank))
    norm = tuple(sorted(a + rank if a < 0 else a for a in axes))
    if any(not 0 <= a < rank for a in norm) or len(set(norm)) != len(norm):
        raise ConvertError(f"axes {axes} are not distinct axes of a rank-{rank} input")
    return norm


def _float_scalar(ctx: ImportContext, value: float, like: str, hint: str) -> str:
    t = ctx.type(like)
    if t.dtype not in ("f16", "f32", "f64"):
        raise ConvertError(f"expects a float input, got {t}")
    return ctx.constant(np.array(value, t.np_dtype), hint)


def _mean(ctx: ImportContext, x: str, axes: tuple[int, ...], keepdims: bool, out: str | None = None) -> str:
    t = ctx.type(x)
    n = int(np.prod([t.shape[a] for a in axes], dtype=np.int64))
    s = ctx.emit("reduce_sum", [x], {"axes": axes, "keepdims": keepdims})
    return ctx.emit("mul", [s, _float_scalar(ctx, 1.0 / max(n, 1), x, "inv_count")], out=out)


def _reduction(onnx_op: str, axes_input_since: int, finish, noop: str = "identity") -> None:
    """`noop`: the op applied when noop_with_empty_axes leaves every axis unreduced (what the
    reduction does to each element: ReduceL1 still takes the absolute value)."""
    attrs = ("axes", "keepdims", "noop_with_empty_axes")

    def make(from_input: bool):
        def convert(ctx: ImportContext, node: NodeView) -> list:
            x, keep = node.input(0), bool(node.attr("keepdims", 1))
            axes = _axes(ctx, node, from_input)
            if axes is None:
                ins = [x, x] if noop == "mul" else [x]
                return [ctx.emit(noop, ins, out=node.outputs[0])]
            return [finish(ctx, x, axes, keep, node.outputs[0])]
        return convert

    converter(onnx_op, since=1, attrs=attrs)(make(False))
    converter(onnx_op, since=axes_input_since, attrs=attrs)(make(True))


def _square(ctx, x):
    return ctx.emit("mul", [x, x])


_reduction("ReduceSum", 13, lambda ctx, x, axes, keep, out:
           ctx.emit("reduce_sum", [x], {"axes": axes, "keepdims": keep}, out=out))
_reduction("ReduceMax", 18, lambda ctx, x, axes, keep, out:
           ctx.emit("reduce_max", [x], {"axes": axes, "keepdims": keep}, out=out))
_reduction("ReduceMin", 18, lambda ctx, x, axes, keep, out:
           ctx.emit("reduce_min", [x], {"axes": axes, "keepdims": keep}, out=out))
_reduction("ReduceMean", 18, lambda ctx, x, axes, keep, out: _mean(ctx, x, axes, keep, out))
_reduction("ReduceSumSquare", 18, lambda ctx, x, axes, keep, out:
           ctx.emit("reduce_sum", [_square(ctx, x)], {"axes": axes, "keepdims": keep}, out=out), "mul")
_reduction("ReduceL2", 18, lambda ctx, x, axes, keep, out:
           ctx.emit("sqrt", [ctx.emit("reduce_sum", [_square(ctx, x)], {"axes": axes, "keepdims": keep})],
                    out=out), "abs")


def _log_sum_exp(ctx, x, axes, keep, out):
    """m + log(sum(exp(x - m))) with m the (kept-dims) max, so large inputs do not overflow; an
    all -inf group gives -inf (m is -inf there: its shift is taken as 0)."""
    m = ctx.emit("reduce_max", [x], {"axes": axes, "keepdims": True})
    zero = _float_scalar(ctx, 0.0, x, "zero")
    inf = _float_scalar(ctx, np.inf, x, "inf")
    shift = ctx.emit("where", [ctx.emit("equal", [ctx.emit("abs", [m]), inf]), zero, m])
    s = ctx.emit("reduce_sum", [ctx.emit("exp", [ctx.emit("sub", [x, shift])])], {"axes": axes, "keepdims": keep})
    if not keep:
        shift = ctx.emit("reshape", [shift], {"shape": ctx.type(s).shape})
    return ctx.emit("add", [ctx.emit("log", [s]), shift], out=out)


_reduction("ReduceL1", 18, lambda ctx, x, axes, keep, out:
           ctx.emit("reduce_sum", [ctx.emit("abs", [x])], {"axes": axes, "keepdims": keep}, out=out), "abs")
_reduction("ReduceLogSum", 18, lambda ctx, x, axes, keep, out:
           ctx.emit("log", [ctx.emit("reduce_sum", [x], {"axes": axes, "keepdims": keep})], out=out), "log")
_reduction("ReduceLogSumExp", 18, _log_sum_exp)


def _arg(kiln_op: str):
    def convert(ctx: ImportContext, node: NodeView) -> list:
        x = node.input(0)
        rank = ctx.type(x).rank
        axis = int(node.attr("axis", 0))
        if not -rank <= axis < rank:
            raise ConvertError(f"axis {axis} is not an axis of a rank-{rank} input")
        attrs = {"axis": axis % rank, "keepdims": bool(node.attr("keepdims", 1)),
                 "select_last_index": bool(node.attr("select_last_index", 0))}
        return [ctx.emit(kiln_op, [x], attrs, out=node.outputs[0])]
    return convert


for _op, _kiln in (("ArgMax", "arg_max"), ("ArgMin", "arg_min")):
    converter(_op, since=1, attrs=("axis", "keepdims"))(_arg(_kiln))
    converter(_op, since=12, attrs=("axis", "keepdims", "select_last_index"))(_arg(_kiln))


def _normalise(ctx: ImportContext, x: str, axes: tuple[int, ...], eps: float) -> tuple[str, str, str]:
    """(x - mean) / sqrt(mean((x - mean)^2) + eps) over `axes`, kept dims broadcasting; returns
    it with the mean and the deviation (both with the reduced dims kept)."""
    mean = _mean(ctx, x, axes, True)
    d = ctx.emit("sub", [x, mean])
    var = _mean(ctx, _square(ctx, d), axes, True)
    std = ctx.emit("sqrt", [ctx.emit("add", [var, _float_scalar(ctx, eps, x, "epsilon")])])
    return ctx.emit("div", [d, std]), mean, std


@converter("LayerNormalization", since=17, attrs=("axis", "epsilon", "stash_type"))
def layer_normalization(ctx: ImportContext, node: NodeView) -> list:
    """Y, and the optional Mean and InvStdDev outputs (the statistics, reduced dims kept)."""
    x = node.input(0)
    rank = ctx.type(x).rank
    axis = node.attr("axis", -1)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise ConvertError(f"axis {node.attr('axis', -1)} is outside a rank-{rank} input")
    outs = list(node.outputs) + [""] * (3 - len(node.outputs))
    normed, mean, std = _normalise(ctx, x, tuple(range(axis, rank)), node.attr("epsilon", 1e-5))
    y = ctx.emit("mul", [normed, node.input(1)], out=None if node.input(2) else outs[0])
    results = [ctx.emit("add", [y, node.input(2)], out=outs[0]) if node.input(2) else y]
    if outs[1]:
        results.append(ctx.emit("identity", [mean], out=outs[1]))
    if outs[2]:
        results.append(ctx.emit("reciprocal", [std], out=outs[2]))
    return results


@converter("InstanceNormalization", since=6, attrs=("epsilon",))
def instance_normalization(ctx: ImportContext, node: NodeView) -> list:
    x, scale, bias = node.input(0), node.input(1), node.input(2)
    t = ctx.type(x)
    if t.rank < 3:
        raise ConvertError(f"expects [N, C, spatial...], got {t}")
    per_channel = (t.shape[1],) + (1,) * (t.rank - 2)
    y = _normalise(ctx, x, tuple(range(2, t.rank)), node.attr("epsilon", 1e-5))[0]
    y = ctx.emit("mul", [y, ctx.emit("reshape", [scale], {"shape": per_channel})])
    return [ctx.emit("add", [y, ctx.emit("reshape", [bias], {"shape": per_channel})], out=node.outputs[0])]


@converter("GroupNormalization", since=21, attrs=("epsilon", "num_groups", "stash_type"))
def group_normalization(ctx: ImportContext, node: NodeView) -> list:
    """x seen as [N, G, C/G * spatial], normalised over its last axis, back to x's shape, then
    scaled and shifted per channel. (Opset 18's per-group form is deprecated: onnx's checker
    refuses models that use it.)"""
    x, scale, bias = node.input(0), node.input(1), node.input(2)
    t = ctx.type(x)
    g = node.attr("num_groups")
    if t.rank < 2 or not g or t.shape[1] % g:
        raise ConvertError(f"num_groups={g} must divide the channels of {t}")
    n, c = t.shape[:2]
    y = ctx.emit("reshape", [x], {"shape": (n, g, -1)})
    y = _normalise(ctx, y, (2,), node.attr("epsilon", 1e-5))[0]
    y = ctx.emit("reshape", [y], {"shape": t.shape})
    shape = (c, *(1,) * (t.rank - 2))
    y = ctx.emit("mul", [y, ctx.emit("reshape", [scale], {"shape": shape})])
    return [ctx.emit("add", [y, ctx.emit("reshape", [bias], {"shape": shape})], out=node.outputs[0])]
