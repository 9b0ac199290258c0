"""Converters for ops that move data or compute shapes. Shape is always known at import (kiln
compiles static shapes); Gather, Concat, Unsqueeze, Cast and friends on known values fold at
import in importer.py, so the Shape-Gather-Concat-Reshape idiom becomes a constant reshape."""

from __future__ import annotations

import itertools
import math

import numpy as np

from ...ir.limits import check_bytes
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
    target = ctx.ints_of(node.input(1), "Reshape's shape input")
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
        return None if not name else ctx.ints_of(name, f"{what}'s axes")
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


def _emit_pad(ctx: ImportContext, node: NodeView, pads, mode: str, value: float | str) -> list:
    """A pad; a constant value computed at run time (a graph input, `value` its name) is
    selected with a where over the padded positions, which a mask known at import marks."""
    if mode not in _PAD_MODES:
        raise ConvertError(f"mode {mode!r} is not supported; kiln pads with {', '.join(_PAD_MODES)}")
    pads = [int(p) for p in pads]
    if not isinstance(value, str):
        attrs = {"pads": pads, "mode": mode, "value": float(value)}
        return [ctx.emit("pad", [node.input(0)], attrs, out=node.outputs[0])]
    x = ctx.type(node.input(0))
    y = ctx.emit("pad", [node.input(0)], {"pads": pads, "mode": "constant"})
    rank = x.rank
    inner = np.zeros([max(d - max(-lo, 0) - max(-hi, 0), 0) for d, lo, hi in zip(x.shape, pads[:rank], pads[rank:])],
                     np.bool_)
    mask = np.pad(inner, [(max(lo, 0), max(hi, 0)) for lo, hi in zip(pads[:rank], pads[rank:])], constant_values=True)
    v = ctx.emit("reshape", [value], {"shape": ()})
    return [ctx.emit("where", [ctx.constant(mask, "padded"), v, y], out=node.outputs[0])]


@converter("Pad", since=2, attrs=("pads", "mode", "value"))
def pad_attrs(ctx: ImportContext, node: NodeView) -> list:
    return _emit_pad(ctx, node, node.attr("pads"), node.attr("mode", "constant"), node.attr("value", 0.0))


@converter("Pad", since=11, attrs=("mode",))
def pad_inputs(ctx: ImportContext, node: NodeView) -> list:
    rank = ctx.type(node.input(0)).rank
    pads = ctx.ints_of(node.input(1), "Pad's pads")
    value: float | str = 0.0
    if node.input(2) and node.input(2) not in ctx.known:
        value = node.input(2)  # a run-time scalar
    elif node.input(2):
        v = ctx.known[node.input(2)].ravel()
        value = float(v[0]) if v.size else 0.0
    if node.input(3):  # axes (opset 18): pads list only those axes
        axes = [a + rank if a < 0 else a for a in ctx.ints_of(node.input(3), "Pad's axes")]
        if len(pads) != 2 * len(axes) or any(not 0 <= a < rank for a in axes):
            raise ConvertError(f"pads {pads} must hold two values for each of the axes {axes} of a rank-{rank} input")
        full = [0] * (2 * rank)
        for k, a in enumerate(axes):
            full[a], full[a + rank] = pads[k], pads[k + len(axes)]
        pads = full
    return _emit_pad(ctx, node, pads, node.attr("mode", "constant"), value)


# -- run-time data movement: Slice, Split, Gather (constant indices), Expand, Tile, DepthToSpace,
# SpaceToDepth. Each lowers onto kiln's slice, expand, concat, reshape and transpose; the slice
# bounds, split sizes, indices, shapes and repeats must be known at compile time.
def _emit_slice(ctx: ImportContext, x: str, starts, steps, sizes, out: str | None = None) -> str:
    shape = list(ctx.type(x).shape)
    if list(sizes) == shape and all(s == 1 for s in steps):
        return ctx.emit("identity", [x], out=out)
    return ctx.emit("slice", [x], {"starts": list(starts), "steps": list(steps), "sizes": list(sizes)}, out=out)


def _slice_axis(d: int, start: int, end: int, step: int) -> tuple[int, int]:
    """(first element, count) of start:end:step on an axis of size d, clamped as ONNX does."""
    if step == 0:
        raise ConvertError("a slice step is 0")
    start, end = (v + d if v < 0 else v for v in (start, end))
    if step > 0:
        start, end = min(max(start, 0), d), min(max(end, 0), d)
        n = max(0, -(-(end - start) // step))
    else:
        start, end = min(max(start, 0), d - 1), min(max(end, -1), d - 1)
        n = max(0, -(-(start - end) // -step))
    return (start, n) if n else (0, 0)


def _slice(ctx: ImportContext, node: NodeView, starts, ends, axes, steps) -> list:
    x = node.input(0)
    shape = list(ctx.type(x).shape)
    rank = len(shape)
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ConvertError(f"starts, ends, axes and steps differ in length: {len(starts)}, {len(ends)}, "
                           f"{len(axes)}, {len(steps)}")
    first, step, size = [0] * rank, [1] * rank, list(shape)
    for a, b, e, s in zip(axes, starts, ends, steps, strict=True):
        a = a + rank if a < 0 else a
        if not 0 <= a < rank:
            raise ConvertError(f"axis {a} is outside a rank-{rank} input")
        first[a], n = _slice_axis(shape[a], int(b), int(e), s)
        step[a], size[a] = s, n
    return [_emit_slice(ctx, x, first, step, size, out=node.outputs[0])]


@converter("Slice", since=1, attrs=("starts", "ends", "axes"))
def slice_attrs(ctx: ImportContext, node: NodeView) -> list:
    return _slice(ctx, node, node.attr("starts"), node.attr("ends"), node.attr("axes"), None)


@converter("Slice", since=10)
def slice_inputs(ctx: ImportContext, node: NodeView) -> list:
    def known(i: int, what: str):
        name = node.input(i)
        return None if not name else ctx.ints_of(name, f"Slice's {what}")
    return _slice(ctx, node, known(1, "starts"), known(2, "ends"), known(3, "axes"), known(4, "steps"))


@converter("Split", since=1, attrs=("axis", "split", "num_outputs"))
def split(ctx: ImportContext, node: NodeView) -> list:
    x = node.input(0)
    shape = list(ctx.type(x).shape)
    axis = node.attr("axis", 0)
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis < len(shape):
        raise ConvertError(f"axis {node.attr('axis')} is outside a rank-{len(shape)} input")
    d, count = shape[axis], len(node.outputs)
    if not count:
        raise ConvertError("Split has no outputs")
    if node.input(1):
        sizes = ctx.ints_of(node.input(1), "Split's split")
    elif node.attr("split") is not None:
        sizes = [int(v) for v in node.attr("split")]
    elif node.attr("num_outputs") is not None:  # opset 18: the last chunk may be smaller
        if node.attr("num_outputs") != count:
            raise ConvertError(f"num_outputs={node.attr('num_outputs')}, but the node has {count} output(s)")
        chunk = -(-d // count)
        sizes = [min(chunk, max(d - k * chunk, 0)) for k in range(count)]
    else:
        if d % count:
            raise ConvertError(f"axis {axis} of size {d} does not split into {count} equal parts")
        sizes = [d // count] * count
    if len(sizes) != count or sum(sizes) != d or min(sizes, default=0) < 0:
        raise ConvertError(f"split sizes {sizes} do not cut axis {axis} of size {d} into {count} outputs")
    outs, start = [], 0
    for n, out in zip(sizes, node.outputs, strict=True):
        first, size = [0] * len(shape), list(shape)
        first[axis], size[axis] = start if n else 0, n
        outs.append(_emit_slice(ctx, x, first, [1] * len(shape), size, out=out or None) if out else None)
        start += n
    return outs


def _runs(idx: list[int]) -> list[tuple[int, int, int]]:
    """(first, step, count) runs covering idx in order: the whole list where it is an arithmetic
    progression, else maximal runs of step 1 or -1 (single elements otherwise)."""
    if len(idx) == 1:
        return [(idx[0], 1, 1)]
    step = idx[1] - idx[0]
    if step and all(b - a == step for a, b in itertools.pairwise(idx)):
        return [(idx[0], step, len(idx))]
    runs = []
    for i in idx:
        if runs:
            first, st, n = runs[-1]
            if n == 1 and abs(i - first) == 1 or n > 1 and i - (first + (n - 1) * st) == st:
                runs[-1] = (first, i - first if n == 1 else st, n + 1)
                continue
        runs.append((i, 1, 1))
    return runs


@converter("Gather", since=1, attrs=("axis",))
def gather(ctx: ImportContext, node: NodeView) -> list:
    x = node.input(0)
    shape = list(ctx.type(x).shape)
    rank = len(shape)
    axis = node.attr("axis", 0)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise ConvertError(f"axis {node.attr('axis', 0)} is outside a rank-{rank} input")
    indices = np.asarray(ctx.value_of(node.input(1), "Gather's indices"))
    d = shape[axis]
    flat = [int(i) + d if i < 0 else int(i) for i in indices.reshape(-1)]
    if any(not 0 <= i < d for i in flat):
        raise ConvertError(f"indices {indices.reshape(-1).tolist()} leave [-{d}, {d}) on axis {axis}")
    out_shape = shape[:axis] + list(indices.shape) + shape[axis + 1:]
    parts = []
    for first, step, n in _runs(flat) if flat else [(0, 1, 0)]:
        starts, steps, sizes = [0] * rank, [1] * rank, list(shape)
        starts[axis], steps[axis], sizes[axis] = first, step, n
        parts.append(_emit_slice(ctx, x, starts, steps, sizes))
    y = parts[0] if len(parts) == 1 else ctx.emit("concat", parts, {"axis": axis})
    return [ctx.emit("reshape", [y], {"shape": out_shape}, out=node.outputs[0])]


@converter("Expand", since=8)
def expand(ctx: ImportContext, node: NodeView) -> list:
    shape = ctx.ints_of(node.input(1), "Expand's shape")
    return [ctx.emit("expand", [node.input(0)], {"shape": shape}, out=node.outputs[0])]


@converter("Tile", since=6)
def tile(ctx: ImportContext, node: NodeView) -> list:
    x = node.input(0)
    reps = ctx.ints_of(node.input(1), "Tile's repeats")
    if len(reps) != ctx.type(x).rank or min(reps, default=1) < 0:
        raise ConvertError(f"repeats {reps} need one count >= 0 per axis of {ctx.type(x)}")
    check_bytes(ctx.type(x).nbytes * math.prod(reps), f"Tile's output ({ctx.type(x)} repeated {reps})")
    for axis, r in enumerate(reps):
        if r != 1:
            x = ctx.emit("concat", [x] * r, {"axis": axis}) if r else _emit_slice(
                ctx, x, [0] * len(reps), [1] * len(reps),
                [0 if k == axis else d for k, d in enumerate(ctx.type(x).shape)])
    return [ctx.emit("identity", [x], out=node.outputs[0])]


def _blocks(ctx: ImportContext, node: NodeView) -> tuple[str, int, list[int]]:
    x = node.input(0)
    t = ctx.type(x)
    b = node.attr("blocksize")
    if t.rank != 4 or not b or b < 1:
        raise ConvertError(f"expects a 4-D input and a blocksize >= 1, got {t} and {b}")
    return x, b, list(t.shape)


@converter("DepthToSpace", since=1, attrs=("blocksize", "mode"))
def depth_to_space(ctx: ImportContext, node: NodeView) -> list:
    x, b, (n, c, h, w) = _blocks(ctx, node)
    if c % (b * b):
        raise ConvertError(f"{c} channels do not divide by blocksize^2 = {b * b}")
    mode = node.attr("mode", "DCR")
    if mode == "DCR":
        split, perm = [n, b, b, c // (b * b), h, w], [0, 3, 4, 1, 5, 2]
    elif mode == "CRD":
        split, perm = [n, c // (b * b), b, b, h, w], [0, 1, 4, 2, 5, 3]
    else:
        raise ConvertError(f"mode {mode!r} is not DCR or CRD")
    y = ctx.emit("transpose", [ctx.emit("reshape", [x], {"shape": split})], {"perm": perm})
    return [ctx.emit("reshape", [y], {"shape": [n, c // (b * b), h * b, w * b]}, out=node.outputs[0])]


@converter("SpaceToDepth", since=1, attrs=("blocksize", "mode"))
def space_to_depth(ctx: ImportContext, node: NodeView) -> list:
    """The inverse of DepthToSpace in the same mode (the mode attribute is new in opset 28)."""
    x, b, (n, c, h, w) = _blocks(ctx, node)
    if h % b or w % b:
        raise ConvertError(f"spatial size {h}x{w} does not divide by blocksize {b}")
    perms = {"DCR": [0, 3, 5, 1, 2, 4], "CRD": [0, 1, 3, 5, 2, 4]}
    if node.attr("mode", "DCR") not in perms:
        raise ConvertError(f"mode {node.attr('mode')!r} is not DCR or CRD")
    y = ctx.emit("reshape", [x], {"shape": [n, c, h // b, b, w // b, b]})
    y = ctx.emit("transpose", [y], {"perm": perms[node.attr("mode", "DCR")]})
    return [ctx.emit("reshape", [y], {"shape": [n, c * b * b, h // b, w // b]}, out=node.outputs[0])]
