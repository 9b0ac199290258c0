"""Ops that move data without arithmetic: flatten, reshape, transpose, concat, pad, slice, expand;
and the reductions (reduce_sum, reduce_max, reduce_min, arg_max, arg_min)."""

from __future__ import annotations

import numpy as np

from ..grad import no_grad, unbroadcast
from ..registry import Attr, Cost, OpDef, bytes_moved, expect, register
from ..types import TensorType
from .elementwise import broadcast_shape


def _copy_cost(ins, outs, a):
    return Cost(0, 0, bytes_moved(ins[:1], outs))


def _reshape_back(ctx, node, dys):
    return ctx.emit("reshape", [dys[0]], {"shape": ctx.type(node.inputs[0]).shape}, base="d" + node.inputs[0])


def _flatten_infer(types, a):
    (x,) = types
    axis = a["axis"] + x.rank if a["axis"] < 0 else a["axis"]
    expect(0 <= axis <= x.rank, f"axis {a['axis']} out of range for {x}")
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    return [TensorType(x.dtype, (lead, int(np.prod(x.shape[axis:], dtype=np.int64))))]


def _flatten_ref(xs, a):
    return [xs[0].reshape(_flatten_infer([TensorType.of(xs[0])], a)[0].shape).copy()]


register(OpDef(
    name="flatten", family="shape", inputs=("x",), outputs=("y",),
    attrs={"axis": Attr("int", 1)}, infer=_flatten_infer, reference=_flatten_ref, grad=_reshape_back,
    cost=_copy_cost, show=("axis",),
    doc="2-D view: dimensions before `axis` become rows, the rest columns",
))


def resolve_shape(numel: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Resolve one -1 in a target shape; checks the element count."""
    expect(all(d >= -1 for d in shape), f"shape {list(shape)} has a dimension below -1")
    expect(sum(d == -1 for d in shape) <= 1, f"shape {list(shape)} has more than one -1")
    known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
    if -1 in shape:
        expect(known > 0 and numel % known == 0, f"cannot infer -1 in {list(shape)} from {numel} elements")
        shape = tuple(numel // known if d == -1 else d for d in shape)
    expect(int(np.prod(shape, dtype=np.int64)) == numel, f"cannot reshape {numel} elements to {list(shape)}")
    return shape


def _reshape_infer(types, a):
    (x,) = types
    return [TensorType(x.dtype, resolve_shape(x.numel, a["shape"]))]


register(OpDef(
    name="reshape", family="shape", inputs=("x",), outputs=("y",),
    attrs={"shape": Attr("ints", doc="target shape; one -1 is inferred")},
    infer=_reshape_infer,
    reference=lambda xs, a: [xs[0].reshape(resolve_shape(xs[0].size, a["shape"])).copy()],
    cost=_copy_cost, show=("shape",), grad=_reshape_back,
    doc="same elements in row-major order, new shape",
))


def _transpose_infer(types, a):
    (x,) = types
    perm = a["perm"] or tuple(reversed(range(x.rank)))
    expect(sorted(perm) == list(range(x.rank)), f"perm {list(perm)} is not a permutation of {x.rank} axes")
    return [TensorType(x.dtype, tuple(x.shape[p] for p in perm))]


register(OpDef(
    name="transpose", family="shape", inputs=("x",), outputs=("y",),
    attrs={"perm": Attr("ints", ())}, infer=_transpose_infer,
    reference=lambda xs, a: [np.ascontiguousarray(np.transpose(xs[0], a["perm"] or None))],
    cost=_copy_cost, show=("perm",),
    grad=lambda ctx, node, dys: ctx.emit("transpose", [dys[0]], {"perm": tuple(np.argsort(
        node.attrs["perm"] or tuple(reversed(range(ctx.type(node.inputs[0]).rank)))))}, base="d" + node.inputs[0]),
    doc="permute axes: y.shape[i] = x.shape[perm[i]] (empty perm reverses)",
))


def _concat_infer(types, a):
    first = types[0]
    axis = a["axis"] + first.rank if a["axis"] < 0 else a["axis"]
    expect(0 <= axis < first.rank, f"axis {a['axis']} out of range for {first}")
    for i, t in enumerate(types[1:], 1):
        same = t.rank == first.rank and all(
            d == e for k, (d, e) in enumerate(zip(t.shape, first.shape)) if k != axis)
        expect(same and t.dtype == first.dtype,
               f"input {i} {t} does not match input 0 {first} outside axis {axis}")
    total = sum(t.shape[axis] for t in types)
    return [TensorType(first.dtype, first.shape[:axis] + (total,) + first.shape[axis + 1:])]


def _concat_grad(ctx, node, dys):
    """Each input's gradient is its slab of dy, cut out by a pad with negative widths."""
    t = ctx.type(node.outputs[0].name)
    axis = node.attrs["axis"] % t.rank
    out, start = [], 0
    for i, name in enumerate(node.inputs):
        size = ctx.type(name).shape[axis]
        if ctx.needs(node, i):
            pads = [0] * (2 * t.rank)
            pads[axis], pads[t.rank + axis] = -start, -(t.shape[axis] - start - size)
            out.append(ctx.emit("pad", [dys[0]], {"pads": pads}, base="d" + name)[0])
        else:
            out.append(None)
        start += size
    return out


register(OpDef(
    name="concat", family="shape", inputs=("x*",), outputs=("y",),
    attrs={"axis": Attr("int")}, infer=_concat_infer,
    reference=lambda xs, a: [np.concatenate(xs, axis=a["axis"])],
    cost=lambda ins, outs, a: Cost(0, 0, bytes_moved(ins, outs)), show=("axis",), grad=_concat_grad,
    doc="join along `axis`",
))


def _pad_infer(types, a):
    (x,) = types
    pads = a["pads"]
    expect(len(pads) == 2 * x.rank, f"pads needs {2 * x.rank} values (begins then ends), got {len(pads)}")
    shape = tuple(d + lo + hi for d, lo, hi in zip(x.shape, pads[: x.rank], pads[x.rank:]))
    expect(all(d >= 0 for d in shape), f"negative pads remove more than {x}")
    if a["mode"] == "reflect":
        expect(all(max(lo, hi) < d for d, lo, hi in zip(x.shape, pads[: x.rank], pads[x.rank:])
                   if lo > 0 or hi > 0), f"reflect pads must be smaller than the dimension of {x}")
    if a["mode"] in ("edge", "wrap"):
        expect(all(d > 0 for d, lo, hi in zip(x.shape, pads[: x.rank], pads[x.rank:])
                   if lo > 0 or hi > 0), f"{a['mode']} padding needs non-empty dimensions in {x}")
    return [TensorType(x.dtype, shape)]


def _pad_ref(xs, a):
    (x,) = xs
    r = x.ndim
    begins, ends = a["pads"][:r], a["pads"][r:]
    # negative pads crop first
    crop = tuple(slice(max(-lo, 0), d - max(-hi, 0)) for d, lo, hi in zip(x.shape, begins, ends))
    x = x[crop]
    width = [(max(lo, 0), max(hi, 0)) for lo, hi in zip(begins, ends)]
    if a["mode"] == "constant":
        return [np.pad(x, width, constant_values=x.dtype.type(a["value"]))]
    return [np.pad(x, width, mode=a["mode"])]


def _pad_grad(ctx, node, dys):
    """Constant padding: the gradient is dy with the padding cut off (a pad by minus the widths)."""
    if node.attrs["mode"] != "constant":
        return ctx.unsupported(node, f"gradients of {node.attrs['mode']} padding are not built (constant only)")
    return ctx.emit("pad", [dys[0]], {"pads": tuple(-p for p in node.attrs["pads"])}, base="d" + node.inputs[0])


register(OpDef(
    name="pad", family="shape", inputs=("x",), outputs=("y",),
    attrs={"pads": Attr("ints", doc="begin of every axis, then end of every axis"),
           "mode": Attr("str", "constant", choices=("constant", "reflect", "edge", "wrap")),
           "value": Attr("float", 0.0)},
    infer=_pad_infer, reference=_pad_ref, cost=_copy_cost, show=("pads",), grad=_pad_grad,
    doc="pad (or crop, for negative pads) every axis",
))


def _slice_infer(types, a):
    (x,) = types
    starts, steps, sizes = a["starts"], a["steps"], a["sizes"]
    expect(len(starts) == len(steps) == len(sizes) == x.rank,
           f"starts, steps and sizes need one value per axis of {x}, got {len(starts)}, {len(steps)}, {len(sizes)}")
    for axis, (d, b, st, n) in enumerate(zip(x.shape, starts, steps, sizes)):
        expect(st != 0, f"axis {axis}: step 0")
        expect(n >= 0, f"axis {axis}: size {n} is negative")
        last = b + (n - 1) * st
        expect(n == 0 or (0 <= b < d and 0 <= last < d),
               f"axis {axis}: elements {b}, {b + st}, .. {last} leave [0, {d}) of {x}")
    return [TensorType(x.dtype, tuple(sizes))]


def _slice_ref(xs, a):
    index = tuple(slice(b, b + n * st if b + n * st >= 0 else None, st) if n else slice(0, 0)
                  for b, st, n in zip(a["starts"], a["steps"], a["sizes"]))
    return [np.ascontiguousarray(xs[0][index])]


def _slice_grad(ctx, node, dys):
    """dx is dy scattered back into zeros: per axis with step s != 1, dy is reversed where s < 0
    (the same elements, walked forward from the lowest), a unit axis is put after it and padded
    to s (the s - 1 skipped elements), and the two merge; one pad then places the run."""
    x = ctx.type(node.inputs[0])
    a = node.attrs
    g, base = dys[0], "d" + node.inputs[0]
    starts = list(a["starts"])
    for axis, (st, n) in enumerate(zip(a["steps"], a["sizes"])):
        if st == 1 or n == 0:
            continue
        shape = list(ctx.type(g).shape)
        if st < 0:
            starts[axis] += (n - 1) * st
            rev = [0] * len(shape)
            rev[axis] = n - 1
            (g,) = ctx.emit("slice", [g], {"starts": rev, "steps": [1] * axis + [-1] + [1] * (len(shape) - axis - 1),
                                           "sizes": shape}, base=base)
        s = abs(st)
        (g,) = ctx.emit("reshape", [g], {"shape": shape[:axis + 1] + [1] + shape[axis + 1:]}, base=base)
        pads = [0] * (2 * (len(shape) + 1))
        pads[len(shape) + 1 + axis + 1] = s - 1
        (g,) = ctx.emit("pad", [g], {"pads": pads}, base=base)
        (g,) = ctx.emit("reshape", [g], {"shape": shape[:axis] + [n * s] + shape[axis + 1:]}, base=base)
    shape = ctx.type(g).shape
    pads = list(starts) + [d - b - n for d, b, n in zip(x.shape, starts, shape)]
    if any(pads):
        (g,) = ctx.emit("pad", [g], {"pads": pads}, base=base)
    return [g]


register(OpDef(
    name="slice", family="shape", inputs=("x",), outputs=("y",),
    attrs={"starts": Attr("ints", doc="first element of every axis"),
           "steps": Attr("ints", doc="stride of every axis (negative walks backwards)"),
           "sizes": Attr("ints", doc="elements kept on every axis (the output shape)")},
    infer=_slice_infer, reference=_slice_ref, cost=_copy_cost, show=("starts", "steps", "sizes"),
    grad=_slice_grad,
    doc="y[i] = x[starts + i * steps] on every axis: ONNX Slice, Split and Gather with constant indices",
))


def _expand_infer(types, a):
    (x,) = types
    return [TensorType(x.dtype, broadcast_shape(x.shape, tuple(a["shape"])))]


register(OpDef(
    name="expand", family="shape", inputs=("x",), outputs=("y",),
    attrs={"shape": Attr("ints", doc="broadcast against x's shape (numpy rules, both ways)")},
    infer=_expand_infer,
    reference=lambda xs, a: [np.ascontiguousarray(np.broadcast_to(
        xs[0], broadcast_shape(xs[0].shape, tuple(a["shape"]))))],
    cost=lambda ins, outs, a: Cost(0, 0, bytes_moved(ins, outs)), show=("shape",),
    grad=lambda ctx, node, dys: [unbroadcast(ctx, dys[0], ctx.type(node.inputs[0]).shape)],
    doc="x broadcast to a larger shape (ONNX Expand)",
))


register(OpDef(
    name="reorder", family="shape", inputs=("x",), outputs=("y",), attrs={},
    infer=lambda types, a: [types[0]], reference=lambda xs, a: [xs[0].copy()], cost=_copy_cost,
    layouts=frozenset({"", "NHWC", "NCHW8c", "NCHW16c"}), layout_policy="free",
    doc="the same tensor in another memory layout (its output's type names the layout)",
))


def _reduce_infer(types, a):
    (x,) = types
    axes = tuple(ax + x.rank if ax < 0 else ax for ax in a["axes"])
    expect(all(0 <= ax < x.rank for ax in axes) and len(set(axes)) == len(axes),
           f"axes {list(a['axes'])} are not distinct axes of {x}")
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if a["keepdims"] or i not in axes)
    return [TensorType(x.dtype, shape)]


def _reduce_sum_grad(ctx, node, dys):
    """Every summed element gets dy: dy (kept dims) times ones of x's shape broadcasts."""
    x = ctx.type(node.inputs[0])
    dy = dys[0]
    if not node.attrs["keepdims"]:
        kept = _reduce_infer([x], {**node.attrs, "keepdims": True})[0].shape
        (dy,) = ctx.emit("reshape", [dy], {"shape": kept}, base="d" + node.inputs[0])
    return ctx.emit("mul", [dy, ctx.const(np.ones(x.shape, x.np_dtype), "ones")], base="d" + node.inputs[0])


register(OpDef(
    name="reduce_sum", family="shape", inputs=("x",), outputs=("y",),
    attrs={"axes": Attr("ints"), "keepdims": Attr("bool", False)}, infer=_reduce_infer,
    reference=lambda xs, a: [np.asarray(xs[0].sum(axis=tuple(a["axes"]), keepdims=a["keepdims"],
                                                  dtype=np.float64 if xs[0].dtype.kind == "f" else None)
                                        ).astype(xs[0].dtype)],
    cost=lambda ins, outs, a: Cost(0, ins[0].numel, bytes_moved(ins, outs)), show=("axes",),
    grad=lambda ctx, node, dys: _reduce_sum_grad(ctx, node, dys),
    doc="sum over `axes` (summed in float64 for float tensors)",
))


def _extreme_ref(fn, big: bool):
    def ref(xs, a):
        x = xs[0]
        if x.dtype.kind == "f":
            init = -np.inf if big else np.inf
        elif x.dtype.kind == "b":
            init = not big
        else:
            info = np.iinfo(x.dtype)
            init = info.min if big else info.max
        return [np.asarray(fn(x, axis=tuple(a["axes"]), keepdims=a["keepdims"], initial=init)).astype(x.dtype)]
    return ref


def _extreme_grad(ctx, node, dys):
    """dy flows to every element equal to the extreme of its group (each tied one gets it)."""
    x = ctx.type(node.inputs[0])
    base = "d" + node.inputs[0]
    y, dy = node.outputs[0].name, dys[0]
    if not node.attrs["keepdims"]:
        kept = _reduce_infer([x], {**node.attrs, "keepdims": True})[0].shape
        (y,) = ctx.emit("reshape", [y], {"shape": kept}, base=base)
        (dy,) = ctx.emit("reshape", [dy], {"shape": kept}, base=base)
    (hit,) = ctx.emit("equal", [node.inputs[0], y], base=base)
    (hit,) = ctx.emit("cast", [hit], {"to": x.dtype}, base=base)
    return ctx.emit("mul", [hit, dy], base=base)


for _name, _fn, _big in (("reduce_max", np.max, True), ("reduce_min", np.min, False)):
    register(OpDef(
        name=_name, family="shape", inputs=("x",), outputs=("y",),
        attrs={"axes": Attr("ints"), "keepdims": Attr("bool", False)}, infer=_reduce_infer,
        reference=_extreme_ref(_fn, _big),
        cost=lambda ins, outs, a: Cost(0, ins[0].numel, bytes_moved(ins, outs)), show=("axes",),
        grad=_extreme_grad,
        doc=f"{'largest' if _big else 'smallest'} element over `axes` (NaN if any is; an empty reduction gives "
            f"{'-inf' if _big else '+inf'}, or the dtype's limit)",
    ))


def _arg_infer(types, a):
    (x,) = types
    axis = a["axis"] + x.rank if a["axis"] < 0 else a["axis"]
    expect(0 <= axis < x.rank, f"axis {a['axis']} out of range for {x}")
    expect(x.shape[axis] > 0, f"axis {a['axis']} of {x} is empty: there is no element to name")
    shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape) if a["keepdims"] or i != axis)
    return [TensorType("i64", shape)]


def _arg_ref(fn):
    def ref(xs, a):
        x, axis = xs[0], a["axis"] % xs[0].ndim
        if a["select_last_index"]:
            idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
        else:
            idx = fn(x, axis=axis)
        idx = np.expand_dims(idx, axis) if a["keepdims"] else idx
        return [np.array(idx, dtype=np.int64)]  # (ascontiguousarray makes a 0-d result 1-d)
    return ref


for _name, _fn, _what in (("arg_max", np.argmax, "largest"), ("arg_min", np.argmin, "smallest")):
    register(OpDef(
        name=_name, family="shape", inputs=("x",), outputs=("indices",),
        attrs={"axis": Attr("int", 0), "keepdims": Attr("bool", True), "select_last_index": Attr("bool", False)},
        infer=_arg_infer, reference=_arg_ref(_fn), grad=no_grad,
        cost=lambda ins, outs, a: Cost(0, ins[0].numel, bytes_moved(ins, outs)), show=("axis",),
        doc=f"int64 index along `axis` of the {_what} element (the first, or the last with "
            f"select_last_index; a NaN counts as {_what}, as numpy's arg{_name[4:]} has it)",
    ))
