"""Normalisations: batch_norm (inference form), lrn, softmax and log_softmax."""

from __future__ import annotations

import numpy as np

from ..registry import Attr, Cost, OpDef, bytes_moved, expect, register
from ..types import FLOAT_DTYPES, TensorType


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


def _channel_window(v: np.ndarray, before: int, after: int) -> np.ndarray:
    """Sum of v over channels c - before .. c + after (clipped to the tensor) at every c."""
    c = v.shape[1]
    before, after = min(before, c), min(after, c)  # a window wider than the tensor sums all of it
    padded = np.pad(v, ((0, 0), (before, after)) + ((0, 0),) * (v.ndim - 2))
    return sum(padded[:, i: i + c] for i in range(before + after + 1))


def _lrn_window(size: int) -> tuple[int, int]:
    """ONNX: floor((size-1)/2) channels before, ceil((size-1)/2) after."""
    return (size - 1) // 2, size // 2


def _lrn_denominator(x64: np.ndarray, a) -> np.ndarray:
    """s = bias + alpha/size * (sum of x^2 over the window), in float64."""
    return a["bias"] + a["alpha"] / a["size"] * _channel_window(np.square(x64), *_lrn_window(a["size"]))


def _lrn_ref(xs, a):
    (x,) = xs
    x64 = x.astype(np.float64)
    return [(x64 / _lrn_denominator(x64, a) ** a["beta"]).astype(x.dtype)]


def _lrn_infer(types, a):
    expect(a["size"] >= 1, f"size {a['size']} must be at least 1")
    expect(types[0].rank >= 2, f"input {types[0]} has no channel axis (LRN takes N, C, ...)")
    return _same_float(types, a)


def _lrn_grad(ctx, node, dys):
    if dys[0] is None:
        return [None]
    return ctx.emit("lrn_grad", [dys[0], node.inputs[0]], node.attrs, base="d" + node.inputs[0])


register(OpDef(
    name="lrn", family="norm", inputs=("x",), outputs=("y",),
    attrs={"size": Attr("int"), "alpha": Attr("float", 1e-4), "beta": Attr("float", 0.75),
           "bias": Attr("float", 1.0)},
    infer=_lrn_infer, reference=_lrn_ref, grad=_lrn_grad,
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
        grad=lambda ctx, node, dys, _log=_name == "log_softmax": ctx.emit(
            "softmax_grad", [dys[0], node.outputs[0].name], {"axis": node.attrs["axis"], "log": _log}, base="d" + node.inputs[0]),
    ))


# -- training ---------------------------------------------------------------------------------
def _channel_axes(x: np.ndarray) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def _bn_train_infer(types, a):
    (x,) = _bn_infer(types, a)
    c = TensorType(x.dtype, (x.shape[1],))
    expect(x.numel > x.shape[1], f"batch statistics need more than one value per channel, got {x}")
    return [x, c, c, c, c]


def _bn_train_ref(xs, a):
    """Normalise with the batch's own mean and (biased) variance; update the running statistics
    as running * momentum + batch * (1 - momentum), with the unbiased variance when
    `unbiased_running_var` (PyTorch's rule) and the biased one otherwise (ONNX's)."""
    x, scale, bias, rmean, rvar = xs
    axes = _channel_axes(x)
    count = x.size // x.shape[1]
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes)
    var = x64.var(axis=axes)
    invstd = 1.0 / np.sqrt(var + a["epsilon"])
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x64 - mean.reshape(shape)) * (invstd * scale).reshape(shape) + bias.reshape(shape)
    m = a["momentum"]
    run_var = var * count / (count - 1) if a["unbiased_running_var"] else var
    dt = x.dtype
    return [y.astype(dt), mean.astype(dt), invstd.astype(dt), (rmean * m + mean * (1 - m)).astype(dt),
            (rvar * m + run_var * (1 - m)).astype(dt)]


def _bn_train_grad(ctx, node, dys):
    x, scale, *_ = node.inputs
    _, mean, invstd, *_ = node.output_names
    if dys[0] is None:
        return [None] * 5
    dx, dscale, dbias = ctx.emit("batch_norm_grad", [dys[0], x, scale, mean, invstd], base="d" + x)
    return [dx, dscale, dbias, None, None]


register(OpDef(
    name="batch_norm_train", family="norm",
    inputs=("x", "scale", "bias", "running_mean", "running_var"),
    outputs=("y", "mean", "invstd", "new_running_mean", "new_running_var"),
    attrs={"epsilon": Attr("float", 1e-5), "momentum": Attr("float", 0.9),
           "unbiased_running_var": Attr("bool", True)},
    infer=_bn_train_infer, reference=_bn_train_ref, grad=_bn_train_grad,
    cost=lambda ins, outs, a: Cost(0, 5 * ins[0].numel, bytes_moved(ins, outs)),
    doc="batch_norm with the batch's statistics (training); also the updated running statistics",
))


def _bn_grad_infer(types, a):
    dy, x, scale, mean, invstd = types
    expect(dy == x, f"dy {dy} must match x {x}")
    _bn_infer([x, scale, scale, mean, invstd], a)
    return [x, scale, scale]


def _bn_grad_ref(xs, a):
    """With xhat = (x - mean) * invstd over the m values of a channel:
    dbias = sum dy, dscale = sum dy * xhat, dx = scale * invstd / m * (m dy - dbias - xhat dscale)."""
    dy, x, scale, mean, invstd = (v.astype(np.float64) for v in xs)
    axes = _channel_axes(x)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = x.size // x.shape[1]
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    dbias = dy.sum(axis=axes)
    dscale = (dy * xhat).sum(axis=axes)
    dx = (scale * invstd).reshape(shape) / m * (m * dy - dbias.reshape(shape) - xhat * dscale.reshape(shape))
    dt = xs[0].dtype
    return [dx.astype(dt), dscale.astype(dt), dbias.astype(dt)]


register(OpDef(
    name="batch_norm_grad", family="norm", inputs=("dy", "x", "scale", "mean", "invstd"),
    outputs=("dx", "dscale", "dbias"), attrs={},
    infer=_bn_grad_infer, reference=_bn_grad_ref,
    cost=lambda ins, outs, a: Cost(0, 8 * ins[0].numel, bytes_moved(ins, outs)),
    doc="gradients of batch_norm_train with respect to x, scale and bias",
))


def _softmax_grad_infer(types, a):
    dy, y = types
    expect(dy == y, f"dy {dy} must match y {y}")
    return _same_float([y], a)


def _softmax_grad_ref(xs, a):
    """softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy)."""
    dy, y = (v.astype(np.float64) for v in xs)
    ax = a["axis"]
    if a["log"]:
        dx = dy - np.exp(y) * dy.sum(axis=ax, keepdims=True)
    else:
        dx = y * (dy - (dy * y).sum(axis=ax, keepdims=True))
    return [dx.astype(xs[0].dtype)]


register(OpDef(
    name="softmax_grad", family="norm", inputs=("dy", "y"), outputs=("dx",),
    attrs={"axis": Attr("int", -1), "log": Attr("bool", False)},
    infer=_softmax_grad_infer, reference=_softmax_grad_ref, show=("axis", "log"),
    cost=lambda ins, outs, a: Cost(0, 4 * outs[0].numel, bytes_moved(ins, outs)),
    doc="gradient of softmax (or log_softmax when `log`) from its output y",
))


def _lrn_grad_infer(types, a):
    dy, x = types
    expect(dy == x, f"dy {dy} must match x {x}")
    return _same_float([x], a)


def _lrn_grad_ref(xs, a):
    """With s_c = bias + k * sum_{q in W(c)} x_q^2 (k = alpha/size, W(c) = c-before .. c+after):
    dx_q = dy_q * s_q^-beta - 2 k beta x_q * sum_{c: q in W(c)} dy_c x_c s_c^(-beta-1),
    and q in W(c) exactly when c runs from q-after to q+before: the window mirrored."""
    dy, x = (v.astype(np.float64) for v in xs)
    s = _lrn_denominator(x, a)
    beta = a["beta"]
    before, after = _lrn_window(a["size"])
    t = _channel_window(dy * x * s ** (-beta - 1), after, before)
    dx = dy * s ** -beta - 2 * a["alpha"] / a["size"] * beta * x * t
    return [dx.astype(xs[0].dtype)]


register(OpDef(
    name="lrn_grad", family="norm", inputs=("dy", "x"), outputs=("dx",),
    attrs={"size": Attr("int"), "alpha": Attr("float", 1e-4), "beta": Attr("float", 0.75),
           "bias": Attr("float", 1.0)},
    infer=_lrn_grad_infer, reference=_lrn_grad_ref, show=("size",),
    cost=lambda ins, outs, a: Cost(0, outs[0].numel * (a["size"] + 2) * (a["size"] + 3), bytes_moved(ins, outs)),
    doc="gradient of lrn with respect to x, from dy and the saved input x",
))
