"""Pooling over NCHW tensors: max and average windows, and their global forms."""

from __future__ import annotations

import numpy as np

from ..limits import check_bytes
from ..registry import Attr, Cost, OpDef, bytes_moved, expect, register
from ..types import FLOAT_DTYPES, INT_DTYPES, TensorType
from .conv import patches, window_out

_WINDOW_ATTRS = {
    "kernel": Attr("ints", length=2),
    "stride": Attr("ints", (1, 1), length=2),
    "pads": Attr("ints", (0, 0, 0, 0), length=4, doc="top, left, bottom, right"),
    "ceil_mode": Attr("bool", False),
    "dilation": Attr("ints", (1, 1), length=2),
}


def _out_hw(x: TensorType, a) -> tuple[int, int]:
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = a["kernel"], a["stride"], a["pads"]
    (dh, dw) = a["dilation"]
    expect(min(kh, kw, sh, sw, dh, dw) >= 1, "kernel, stride and dilation must be >= 1")
    expect(min(pt, pl, pb, pr) >= 0, f"pads must be >= 0, got {list(a['pads'])}")
    expect(max(pt, pb) < kh and max(pl, pr) < kw, f"pads {list(a['pads'])} must be smaller than the kernel {kh}x{kw}")
    oh = window_out(x.shape[2], kh, sh, dh, pt, pb, a["ceil_mode"])
    ow = window_out(x.shape[3], kw, sw, dw, pl, pr, a["ceil_mode"])
    # the reference pads the input and reads every window cell: both must fit the limit
    n, c, h, w = x.shape
    size = x.np_dtype.itemsize
    check_bytes(n * c * (h + pt + pb) * (w + pl + pr) * size, f"pooling's padded input ({x}, pads {list(a['pads'])})")
    check_bytes(n * c * kh * kw * oh * ow * size, f"pooling's {kh}x{kw} windows at {oh}x{ow} outputs of {x}")
    return oh, ow


def _infer(types, a, dtypes=FLOAT_DTYPES):
    (x,) = types
    expect(x.rank == 4 and x.dtype in dtypes, f"input must be a 4-D {'/'.join(sorted(dtypes))} NCHW tensor, got {x}")
    return [TensorType(x.dtype, (*x.shape[:2], *_out_hw(x, a)))]


def _windows(x, a, fill):
    """[N, C, KH, KW, OH, OW] windows, padded with `fill` (also past the end in ceil mode)."""
    (kh, kw), stride, (pt, pl, pb, pr) = a["kernel"], a["stride"], a["pads"]
    dil = a["dilation"]
    oh, ow = _out_hw(TensorType.of(x), a)
    # ceil mode may read past the explicit padding: pad enough for the last window
    need_h = (oh - 1) * stride[0] + dil[0] * (kh - 1) + 1
    need_w = (ow - 1) * stride[1] + dil[1] * (kw - 1) + 1
    extra_h = max(0, need_h - (x.shape[2] + pt + pb))
    extra_w = max(0, need_w - (x.shape[3] + pl + pr))
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb + extra_h), (pl, pr + extra_w)), constant_values=fill)
    return patches(xp, kh, kw, oh, ow, stride, dil), (extra_h, extra_w)


def _max_infer(types, a):
    return _infer(types, a, FLOAT_DTYPES | INT_DTYPES)


def _max_ref(xs, a):
    (x,) = xs
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    cols, _ = _windows(x, a, lowest)
    return [cols.max(axis=(2, 3)).astype(x.dtype)]


def _avg_ref(xs, a):
    (x,) = xs
    cols, (eh, ew) = _windows(x, a, 0.0)
    total = cols.sum(axis=(2, 3), dtype=np.float64)
    # count the cells each window covers: real ones, plus explicit padding if count_include_pad
    ones = np.ones((1, 1, *x.shape[2:]), np.float64)
    pt, pl, pb, pr = a["pads"]
    if a["count_include_pad"]:
        ones = np.pad(ones, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=1.0)
        a = {**a, "pads": (0, 0, 0, 0)}
        pad_cfg = ((0, 0), (0, 0), (0, eh), (0, ew))
    else:
        pad_cfg = ((0, 0), (0, 0), (pt, pb + eh), (pl, pr + ew))
    ones = np.pad(ones, pad_cfg)
    kh, kw = a["kernel"]
    oh, ow = cols.shape[4:]
    counts = patches(ones, kh, kw, oh, ow, a["stride"], a["dilation"]).sum(axis=(2, 3))
    return [(total / counts).astype(x.dtype)]


def _window_cost(ins, outs, a):
    kh, kw = a["kernel"]
    return Cost(0, outs[0].numel * kh * kw, bytes_moved(ins, outs))


register(OpDef(
    name="maxpool2d", family="pool", inputs=("x",), outputs=("y",),
    attrs=_WINDOW_ATTRS,
    infer=_max_infer, reference=_max_ref, layouts=frozenset({"", "NCHW16c"}), layout_policy="same", cost=_window_cost, show=("kernel", "stride", "pads"),
    grad=lambda ctx, node, dys: ctx.emit("maxpool2d_grad", [node.inputs[0], dys[0]], node.attrs, base="d" + node.inputs[0]),
    doc="max over each window; padding never wins",
))


def _argmax_infer(types, a):
    (y,) = _max_infer(types, {k: v for k, v in a.items() if k != "storage_order"})
    return [TensorType("i64", y.shape)]


def _argmax_ref(xs, a):
    """Flat index into x of each window's first maximum (row-major; storage_order=1 counts
    the spatial axes column-major, as ONNX's MaxPool Indices output does)."""
    (x,) = xs
    n, c, h, w = x.shape
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    cols, _ = _windows(x, a, lowest)
    kh, kw = a["kernel"]
    oh, ow = cols.shape[4:]
    k = cols.reshape(n, c, kh * kw, oh, ow).argmax(axis=2)
    # a window whose real cells all hold the lowest value ties with its padding, and argmax
    # would name a padding cell (outside the plane): take the window's first real cell instead
    real = _windows(np.ones((1, 1, h, w), np.int8), a, 0)[0].reshape(kh * kw, oh, ow)
    in_padding = real[k, np.arange(oh)[:, None], np.arange(ow)] == 0
    k = np.where(in_padding, real.argmax(axis=0), k)
    (sh, sw), (dh, dw), (pt, pl, _, _) = a["stride"], a["dilation"], a["pads"]
    ih = np.arange(oh)[:, None] * sh - pt + (k // kw) * dh
    iw = np.arange(ow)[None, :] * sw - pl + (k % kw) * dw
    plane = (np.arange(n)[:, None] * c + np.arange(c)[None, :])[:, :, None, None] * (h * w)
    spatial = iw * h + ih if a["storage_order"] else ih * w + iw
    return [(plane + spatial).astype(np.int64)]


register(OpDef(
    name="maxpool2d_argmax", family="pool", inputs=("x",), outputs=("indices",),
    attrs={**_WINDOW_ATTRS, "storage_order": Attr("int", 0)},
    infer=_argmax_infer, reference=_argmax_ref, cost=_window_cost, show=("kernel", "stride", "pads"),
    doc="where each max-pool window's maximum is: a flat index into x (ONNX MaxPool's Indices)",
))
register(OpDef(
    name="avgpool2d", family="pool", inputs=("x",), outputs=("y",),
    attrs={**_WINDOW_ATTRS, "count_include_pad": Attr("bool", False)},
    infer=_infer, reference=_avg_ref, layouts=frozenset({"", "NCHW16c"}), layout_policy="same", cost=_window_cost, show=("kernel", "stride", "pads"),
    grad=lambda ctx, node, dys: ctx.emit("avgpool2d_grad", [dys[0]], {
        **node.attrs, "input_hw": ctx.type(node.inputs[0]).shape[2:]}, base="d" + node.inputs[0]),
    doc="mean over each window; the divisor counts padding only if count_include_pad",
))


def _global_infer(types, a):
    (x,) = types
    expect(x.rank >= 3 and x.dtype in FLOAT_DTYPES, f"input must be a float N,C,spatial... tensor, got {x}")
    expect(all(x.shape[2:]), f"input {x} has an empty spatial axis: there is nothing to pool")
    return [TensorType(x.dtype, (*x.shape[:2], *[1] * (x.rank - 2)))]


def _global_avg_grad(ctx, node, dys):
    """Each position gets dy / (H*W): dy [N,C,1,1] times a constant [1,1,H,W] broadcasts."""
    t = ctx.type(node.inputs[0])
    spatial = t.shape[2:]
    k = ctx.const(np.full((1, 1, *spatial), 1.0 / int(np.prod(spatial)), t.np_dtype), "inv_area")
    return ctx.emit("mul", [dys[0], k], base="d" + node.inputs[0])


def _global_max_grad(ctx, node, dys):
    t = ctx.type(node.inputs[0])
    if t.rank != 4:
        return ctx.unsupported(node, "global_maxpool gradients are built for 4-D inputs")
    return ctx.emit("maxpool2d_grad", [node.inputs[0], dys[0]], {"kernel": t.shape[2:]}, base="d" + node.inputs[0])


def _global(name, fn, doc, grad):
    register(OpDef(
        name=name, family="pool", inputs=("x",), outputs=("y",), attrs={}, grad=grad,
        infer=_global_infer, layouts=frozenset({"", "NCHW16c"}), layout_policy="free",
        reference=lambda xs, a: [fn(xs[0], axis=tuple(range(2, xs[0].ndim)), keepdims=True).astype(xs[0].dtype)],
        cost=lambda ins, outs, a: Cost(0, ins[0].numel, bytes_moved(ins, outs)),
        doc=doc,
    ))


_global("global_avgpool", np.mean, "mean over all spatial positions, keeping 1x1", _global_avg_grad)
_global("global_maxpool", np.max, "max over all spatial positions, keeping 1x1", _global_max_grad)


# -- training: pooling gradients --------------------------------------------------------------
def _pool_grad_infer(x: TensorType, dy: TensorType, a) -> list[TensorType]:
    expect(dy.dtype == x.dtype and dy.dtype in FLOAT_DTYPES, f"dy {dy} must be a float tensor like {x}")
    want = (*x.shape[:2], *_out_hw(x, a))
    expect(dy.shape == want, f"dy {dy} is not the pooled shape {list(want)} of {x}")
    return [x]


def _max_grad_ref(xs, a):
    """dy goes to each window's first maximum (the one maxpool2d_argmax names); overlapping
    windows add up."""
    x, dy = xs
    idx = _argmax_ref([x], {**a, "storage_order": 0})[0]
    dx = np.zeros(x.size, np.float64)
    np.add.at(dx, idx.ravel(), dy.ravel())
    return [dx.reshape(x.shape).astype(x.dtype)]


register(OpDef(
    name="maxpool2d_grad", family="pool", inputs=("x", "dy"), outputs=("dx",), attrs=_WINDOW_ATTRS,
    infer=lambda types, a: _pool_grad_infer(types[0], types[1], a), reference=_max_grad_ref,
    cost=_window_cost, show=("kernel", "stride", "pads"),
    doc="gradient of maxpool2d: dy added at each window's first maximum in x",
))


def _avg_grad_infer(types, a):
    (dy,) = types
    expect(dy.rank == 4, f"dy must be 4-D, got {dy}")
    return _pool_grad_infer(TensorType(dy.dtype, (*dy.shape[:2], *a["input_hw"])), dy, a)


def _avg_grad_ref(xs, a):
    """avgpool2d is linear: its gradient is the transpose of its matrix, found here by pulling
    dy back through the reference forward's own window sums."""
    (dy,) = xs
    n, c = dy.shape[:2]
    h, w = a["input_hw"]
    fwd = {k: v for k, v in a.items() if k != "input_hw"}
    # weight of input (i, j) in window o: the forward of a one-hot image, batched over positions
    eye = np.eye(h * w, dtype=np.float64).reshape(h * w, 1, h, w)
    basis = _avg_ref([eye], fwd)[0].reshape(h * w, -1)  # [H*W, OH*OW]
    dx = dy.reshape(n * c, -1).astype(np.float64) @ basis.T
    return [dx.reshape(n, c, h, w).astype(dy.dtype)]


register(OpDef(
    name="avgpool2d_grad", family="pool", inputs=("dy",), outputs=("dx",),
    attrs={**_WINDOW_ATTRS, "count_include_pad": Attr("bool", False), "input_hw": Attr("ints", length=2)},
    infer=_avg_grad_infer, reference=_avg_grad_ref, cost=_window_cost, show=("kernel", "stride", "pads"),
    doc="gradient of avgpool2d: each window's dy / its divisor, spread over the window",
))
