"""Normalisations: batch_norm (inference form), lrn, softmax and log_softmax."""

from __future__ import annotations

import numpy as np

from ..registry import Attr, Cost, OpDef, bytes_moved, expect, register
from ..types import FLOAT_DTYPES


def _bn_infer(types, a):
    x, *stats = types
    expect(x.rank >= 2 and x.dtype in FLOAT_DTYPES, f"input must be a float N,C,... tensor, got {x}")
    c = x.shape[1]
    for name, t in zip(("scale", "bias", "mean", "var"), stats, strict=True):
        expect(t.shape == (c,) and t.dtype == x.dtype, f"{name} must be {x.dtype}[{c}], got {t}")
    return [x]


def _bn_ref(xs, a):
    x, scale, bias, mean, var = xs
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + a["epsilon"])
    shift = bias - mean * inv
    return [(x * inv.reshape(shape) + shift.reshape(shape)).astype(x.dtype)]


register(OpDef(
    name="batch_norm", family="norm",
    inputs=("x", "scale", "bias", "mean", "var"), outputs=("y",),
    attrs={"epsilon": Attr("float", 1e-5), "momentum": Attr("float", 0.9)},
    infer=_bn_infer, reference=_bn_ref, layouts=frozenset({"", "NCHW16c"}), layout_policy="same",
    cost=lambda ins, outs, a: Cost(0, 2 * outs[0].numel, bytes_moved(ins, outs)),
    doc="(x - mean) / sqrt(var + epsilon) * scale + bias per channel (running statistics)",
))


def _same_float(types, a):
    (x,) = types
    expect(x.dtype in FLOAT_DTYPES, f"expects a float tensor, got {x}")
    if "axis" in a:
        expect(-x.rank <= a["axis"] < x.rank, f"axis {a['axis']} out of range for {x}")
    return [x]


def _lrn_ref(xs, a):
    (x,) = xs
    size = a["size"]
    sq = np.square(x.astype(np.float64))
    lo, hi = (size - 1) // 2, size // 2  # ONNX: floor((size-1)/2) before, ceil((size-1)/2) after
    padded = np.pad(sq, ((0, 0), (lo, hi)) + ((0, 0),) * (x.ndim - 2))
    c = x.shape[1]
    window = sum(padded[:, i: i + c] for i in range(size))
    return [(x / (a["bias"] + a["alpha"] / size * window) ** a["beta"]).astype(x.dtype)]


register(OpDef(
    name="lrn", family="norm", inputs=("x",), outputs=("y",),
    attrs={"size": Attr("int"), "alpha": Attr("float", 1e-4), "beta": Attr("float", 0.75),
           "bias": Attr("float", 1.0)},
    infer=_same_float, reference=_lrn_ref,
    cost=lambda ins, outs, a: Cost(0, outs[0].numel * (a["size"] + 3), bytes_moved(ins, outs)),
    show=("size",),
    doc="x / (bias + alpha/size * sum of x^2 over `size` neighbouring channels) ^ beta",
))


def _softmax_ref(xs, a):
    (x,) = xs
    z = x.astype(np.float64)
    z = z - z.max(axis=a["axis"], keepdims=True)
    e = np.exp(z)
    return [(e / e.sum(axis=a["axis"], keepdims=True)).astype(x.dtype)]


def _log_softmax_ref(xs, a):
    (x,) = xs
    z = x.astype(np.float64)
    z = z - z.max(axis=a["axis"], keepdims=True)
    return [(z - np.log(np.exp(z).sum(axis=a["axis"], keepdims=True))).astype(x.dtype)]


for _name, _ref, _doc in (
    ("softmax", _softmax_ref, "exp(x) / sum(exp(x)) along one axis"),
    ("log_softmax", _log_softmax_ref, "x - log(sum(exp(x))) along one axis"),
):
    register(OpDef(
        name=_name, family="norm", inputs=("x",), outputs=("y",),
        attrs={"axis": Attr("int", -1)}, infer=_same_float, reference=_ref,
        cost=lambda ins, outs, a: Cost(0, 4 * outs[0].numel, bytes_moved(ins, outs)),
        show=("axis",), doc=_doc,
    ))
