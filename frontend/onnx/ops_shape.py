"""Converters for ops that move data or compute shapes. Shape is always known at import (kiln
compiles static shapes); Gather, Concat, Unsqueeze, Cast and friends on known values fold at
import in importer.py, so the Shape-Gather-Concat-Reshape idiom becomes a constant reshape."""

from __future__ import annotations

import numpy as np

from .context import ConvertError, ImportContext
from .converters import NodeView, converter


@converter("Shape", since=1, attrs=("start", "end"))
def shape(ctx: ImportContext, node: NodeView) -> list:
    dims = np.array(ctx.type(node.input(0)).shape, dtype=np.int64)
    rank = len(dims)
    start, end = node.attr("start", 0), node.attr("end", rank)
    start, end = (max(0, min(rank, v + rank if v < 0 else v)) for v in (start, end))
    ctx.set_known(node.outputs[0], dims[start:end])
    return [node.outputs[0]]


@converter("Flatten", since=1, attrs=("axis",))
def flatten(ctx: ImportContext, node: NodeView) -> list:
    return [ctx.emit("flatten", [node.input(0)], {"axis": node.attr("axis", 1)}, out=node.outputs[0])]


@converter("Reshape", since=5, attrs=("allowzero",))
def reshape(ctx: ImportContext, node: NodeView) -> list:
    x = node.input(0)
    target = [int(d) for d in ctx.value_of(node.input(1), "Reshape's shape input").ravel()]
    if not node.attr("allowzero", 0):  # 0 copies the input's dimension
        in_shape = ctx.type(x).shape
        try:
            target = [in_shape[i] if d == 0 else d for i, d in enumerate(target)]
        except IndexError:
            raise ConvertError(f"shape {target} copies a dimension (0) past the input's rank {len(in_shape)}") from None
    return [ctx.emit("reshape", [x], {"shape": target}, out=node.outputs[0])]


def _reshape_to(ctx: ImportContext, node: NodeView, shape) -> list:
    return [ctx.emit("reshape", [node.input(0)], {"shape": tuple(shape)}, out=node.outputs[0])]


def _axes(ctx: ImportContext, node: NodeView, what: str):
    if ctx.opset >= 13 or node.input(1):
        name = node.input(1)
        return None if not name else [int(a) for a in ctx.value_of(name, f"{what}'s axes").ravel()]
    v = node.attr("axes")
    return None if v is None else list(v)


@converter("Squeeze", since=1, attrs=("axes",))
def squeeze(ctx: ImportContext, node: NodeView) -> list:
    in_shape = ctx.type(node.input(0)).shape
    axes = _axes(ctx, node, "Squeeze")
    rank = len(in_shape)
    drop = {a + rank if a < 0 else a for a in axes} if axes is not None else {
        i for i, d in enumerate(in_shape) if d == 1}
    if any(not 0 <= a < rank or in_shape[a] != 1 for a in drop):
        raise ConvertError(f"cannot squeeze axes {axes} of shape {list(in_shape)}")
    return _reshape_to(ctx, node, [d for i, d in enumerate(in_shape) if i not in drop])


@converter("Unsqueeze", since=1, attrs=("axes",))
def unsqueeze(ctx: ImportContext, node: NodeView) -> list:
    in_shape = list(ctx.type(node.input(0)).shape)
    axes = _axes(ctx, node, "Unsqueeze")
    if axes is None:
        raise ConvertError("Unsqueeze needs axes")
    rank = len(in_shape) + len(axes)
    norm = sorted(a + rank if a < 0 else a for a in axes)
    if len(set(norm)) != len(norm) or any(not 0 <= a < rank for a in norm):
        raise ConvertError(f"axes {axes} are invalid for output rank {rank}")
    out = iter(in_shape)
    return _reshape_to(ctx, node, [1 if i in norm else next(out) for i in range(rank)])


@converter("Transpose", since=1, attrs=("perm",))
def transpose(ctx: ImportContext, node: NodeView) -> list:
    return [ctx.emit("transpose", [node.input(0)], {"perm": node.attr("perm", [])}, out=node.outputs[0])]


@converter("Concat", since=1, attrs=("axis",))
def concat(ctx: ImportContext, node: NodeView) -> list:
    if node.attr("axis") is None:
        raise ConvertError("Concat needs an axis")
    ins = [i for i in node.inputs if i]
    return [ctx.emit("concat", ins, {"axis": node.attr("axis")}, out=node.outputs[0])]


_PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _emit_pad(ctx: ImportContext, node: NodeView, pads, mode: str, value: float) -> list:
    if mode not in _PAD_MODES:
        raise ConvertError(f"mode {mode!r} is not supported; kiln pads with {', '.join(_PAD_MODES)}")
    attrs = {"pads": [int(p) for p in pads], "mode": mode, "value": float(value)}
    return [ctx.emit("pad", [node.input(0)], attrs, out=node.outputs[0])]


@converter("Pad", since=2, attrs=("pads", "mode", "value"))
def pad_attrs(ctx: ImportContext, node: NodeView) -> list:
    return _emit_pad(ctx, node, node.attr("pads"), node.attr("mode", "constant"), node.attr("value", 0.0))


@converter("Pad", since=11, attrs=("mode",))
def pad_inputs(ctx: ImportContext, node: NodeView) -> list:
    rank = ctx.type(node.input(0)).rank
    pads = [int(p) for p in ctx.value_of(node.input(1), "Pad's pads").ravel()]
    value = 0.0
    if node.input(2):
        v = ctx.value_of(node.input(2), "Pad's constant_value").ravel()
        value = float(v[0]) if v.size else 0.0
    if node.input(3):  # axes (opset 18): pads list only those axes
        axes = [int(a) + rank if a < 0 else int(a) for a in ctx.value_of(node.input(3), "Pad's axes").ravel()]
        full = [0] * (2 * rank)
        for k, a in enumerate(axes):
            full[a], full[a + rank] = pads[k], pads[k + len(axes)]
        pads = full
    return _emit_pad(ctx, node, pads, node.attr("mode", "constant"), value)
