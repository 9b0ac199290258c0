"""resize: ONNX Resize (and Upsample) as one op, separable over the axes it changes.

Every output coordinate o of a resized axis maps to a source coordinate x (the coordinate
transformation mode, in float64), and the output is a weighted sum of input elements at a few
taps j around x (the index clamped into the axis, as edge padding would):
    nearest  one tap: x rounded by nearest_mode
    linear   j = floor(x) + {0, 1}, w = 1 - |x - j|
    cubic    j = floor(x) + {-1 .. 2}, w = Keys' cubic W(x - j) with coefficient cubic_a
With antialias (downsampling, linear or cubic), the kernel stretches by 1 / scale: more taps,
weights W(scale * (x - j)) normalised to sum 1. exclude_outside zeroes the taps outside the
axis and renormalises. tf_crop_and_resize maps through the roi, and an output whose source
coordinate leaves the axis on any resized axis is extrapolation_value.
An N-d resize is the product of the per-axis weights: `axis_taps` gives each axis's table
(indices, weights, extrapolated flags), shared by the reference and the kernels.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..registry import Attr, Cost, OpDef, bytes_moved, expect, register
from ..types import FLOAT_DTYPES, TensorType

MODES = ("nearest", "linear", "cubic")
COORDS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
          "tf_crop_and_resize")
NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _source(o: np.ndarray, n_in: int, n_out: int, scale: float, coord: str, roi: tuple[float, float]):
    """Source coordinates of output indices `o` on one axis; (x, extrapolated mask or None)."""
    out_f = scale * n_in  # the unrounded output length, as ONNX writes the modes
    if coord == "align_corners":
        return (np.zeros_like(o) if out_f == 1 else o * (n_in - 1) / (out_f - 1)), None
    if coord == "asymmetric":
        return o / scale, None
    if coord == "tf_crop_and_resize":
        lo, hi = roi
        x = np.full_like(o, (hi - lo) * (n_in - 1) / 2) if out_f == 1 else o * (hi - lo) * (n_in - 1) / (out_f - 1)
        x = x + lo * (n_in - 1)
        return x, (x < 0) | (x > n_in - 1)
    if coord == "pytorch_half_pixel":
        return (np.full_like(o, -0.5) if out_f == 1 else (o + 0.5) / scale - 0.5), None
    if coord == "half_pixel_symmetric":
        shift = n_in / 2 * (1 - n_out / out_f)
        return shift + (o + 0.5) / scale - 0.5, None
    return (o + 0.5) / scale - 0.5, None  # half_pixel


def _cubic(d: np.ndarray, a: float) -> np.ndarray:
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


@functools.lru_cache(maxsize=256)
def axis_taps(n_in: int, n_out: int, scale: float, mode: str, coord: str, nearest_mode: str, cubic_a: float,
              exclude_outside: bool, antialias: bool, roi: tuple[float, float]):
    """(indices [n_out, T] int64 clamped into [0, n_in), weights [n_out, T] float64, extrapolated
    [n_out] bool or None) of one resized axis."""
    x, extrapolated = _source(np.arange(n_out, dtype=np.float64), n_in, n_out, scale, coord, roi)
    if mode == "nearest":
        if nearest_mode == "round_prefer_floor":
            j = np.ceil(x - 0.5)
        elif nearest_mode == "round_prefer_ceil":
            j = np.floor(x + 0.5)
        else:
            j = np.floor(x) if nearest_mode == "floor" else np.ceil(x)
        idx = np.clip(j, 0, n_in - 1).astype(np.int64)[:, None]
        return idx, np.ones(idx.shape), extrapolated
    radius = 1 if mode == "linear" else 2
    stretch = min(scale, 1.0) if antialias else 1.0
    first = math.floor(-radius / stretch) + 1  # taps floor(x) + first .. floor(x) + 1 - first
    j = np.floor(x)[:, None] + np.arange(first, 2 - first)[None, :]
    d = stretch * (x[:, None] - j)
    w = np.clip(1 - np.abs(d), 0, None) if mode == "linear" else _cubic(d, cubic_a)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    if exclude_outside:
        w = np.where((j < 0) | (j > n_in - 1), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(j, 0, n_in - 1).astype(np.int64), w, extrapolated


def resized_axes(x: TensorType, a) -> list[int]:
    """The axes the node changes (an axis of scale 1 and the same size, outside a crop, is not)."""
    roi = a["roi"] or (0.0,) * x.rank + (1.0,) * x.rank
    return [k for k, (d, s, n) in enumerate(zip(x.shape, a["scales"], a["sizes"], strict=True))
            if not (n == d and s == 1.0 and (a["coord"] != "tf_crop_and_resize" or (roi[k], roi[x.rank + k]) == (0, 1)))]


def taps_of(x: TensorType, a, axis: int):
    roi = a["roi"] or (0.0,) * x.rank + (1.0,) * x.rank
    return axis_taps(x.shape[axis], a["sizes"][axis], float(a["scales"][axis]), a["mode"], a["coord"],
                     a["nearest_mode"], float(a["cubic_a"]), bool(a["exclude_outside"]), bool(a["antialias"]),
                     (float(roi[axis]), float(roi[x.rank + axis])))


def _infer(types, a):
    (x,) = types
    r = x.rank
    expect(len(a["scales"]) == r and len(a["sizes"]) == r,
           f"scales and sizes need one value per axis of {x}, got {len(a['scales'])} and {len(a['sizes'])}")
    expect(all(s > 0 for s in a["scales"]) and all(n >= 0 for n in a["sizes"]),
           f"scales {list(a['scales'])} must be positive and sizes {list(a['sizes'])} non-negative")
    expect(not a["roi"] or len(a["roi"]) == 2 * r, f"roi needs {2 * r} values (starts, then ends), got {len(a['roi'])}")
    expect(a["mode"] == "nearest" or x.dtype in FLOAT_DTYPES, f"{a['mode']} resize needs a float input, got {x}")
    expect(all(x.shape[k] > 0 for k in resized_axes(x, a)) or not x.numel,
           f"cannot resize an empty axis of {x}")
    return [TensorType(x.dtype, tuple(a["sizes"]))]


def _reference(xs, a):
    (x,) = xs
    t = TensorType.of(x)
    y = x.astype(np.float64)
    hit = np.zeros(a["sizes"], bool)
    for axis in resized_axes(t, a):
        idx, w, ext = taps_of(t, a, axis)
        moved = np.take(y, idx, axis=axis)  # [..., n_out, T, ...]
        shape = (1,) * axis + w.shape + (1,) * (y.ndim - axis - 1)
        y = (moved * w.reshape(shape)).sum(axis=axis + 1)
        if ext is not None:
            hit |= ext.reshape((1,) * axis + (-1,) + (1,) * (y.ndim - axis - 1))
    if hit.any():
        y = np.where(hit, a["extrapolation"], y)
    if x.dtype.kind in "iu":
        y = np.rint(y)
    return [y.astype(x.dtype)]


def _cost(ins, outs, a):
    taps = 1 if a["mode"] == "nearest" else 2 if a["mode"] == "linear" else 4
    axes = resized_axes(ins[0], a)
    return Cost(0, 2 * outs[0].numel * taps ** len(axes) if a["mode"] != "nearest" else 0, bytes_moved(ins, outs))


def interpolation_matrix(x: TensorType, a, axis: int) -> np.ndarray:
    """The axis's resize as a dense [n_out, n_in] matrix (extrapolated rows zero)."""
    idx, w, ext = taps_of(x, a, axis)
    m = np.zeros((a["sizes"][axis], x.shape[axis]))
    np.add.at(m, (np.arange(idx.shape[0])[:, None], idx), w)
    if ext is not None:
        m[ext] = 0.0
    return m


def _grad(ctx, node, dys):
    """Resize is linear: per resized axis, dx = dy times that axis's interpolation matrix (the
    axis moved last for the matmul). An extrapolated output reads no input; the per-axis masks
    multiply, so zeroing the extrapolated rows of every axis's matrix drops exactly those."""
    x = ctx.type(node.inputs[0])
    g, base = dys[0], "d" + node.inputs[0]
    for axis in resized_axes(x, node.attrs):
        m = ctx.const(interpolation_matrix(x, node.attrs, axis).astype(x.np_dtype), "interp")
        last = axis == x.rank - 1
        perm = [k for k in range(x.rank) if k != axis] + [axis]
        if not last:
            (g,) = ctx.emit("transpose", [g], {"perm": perm}, base=base)
        (g,) = ctx.emit("matmul", [g, m], {}, base=base)
        if not last:
            (g,) = ctx.emit("transpose", [g], {"perm": list(np.argsort(perm))}, base=base)
    return [g]


register(OpDef(
    name="resize", family="resize", inputs=("x",), outputs=("y",),
    attrs={"mode": Attr("str", "nearest", choices=MODES),
           "coord": Attr("str", "half_pixel", choices=COORDS, doc="ONNX's coordinate_transformation_mode"),
           "nearest_mode": Attr("str", "round_prefer_floor", choices=NEAREST),
           "cubic_a": Attr("float", -0.75),
           "exclude_outside": Attr("bool", False),
           "antialias": Attr("bool", False),
           "extrapolation": Attr("float", 0.0, doc="tf_crop_and_resize's value outside the input"),
           "scales": Attr("floats", doc="per axis; maps output to input coordinates"),
           "sizes": Attr("ints", doc="the output shape"),
           "roi": Attr("floats", (), doc="tf_crop_and_resize: starts, then ends, as fractions")},
    infer=_infer, reference=_reference, cost=_cost, grad=_grad, show=("mode", "coord", "sizes"),
    doc="interpolate to `sizes` (ONNX Resize and Upsample), separable over the resized axes",
))
