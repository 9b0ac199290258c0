"""2-D convolution (NCHW activations, OIHW weights), with stride, dilation, groups and
asymmetric padding `pads = [top, left, bottom, right]` (ONNX's order).

A conv may carry a fused epilogue (fuse_epilogues puts it there): with `residual`, its last
input is added to the result, then `act` is applied: relu, clip to [act_min, act_max], or
leaky_relu with slope act_alpha below zero (0 < act_alpha <= 1, so it is max(y, alpha y)), sigmoid,
or silu (y sigmoid(y)).
    y = act(conv(x, w) + b + r)
`algo` names the algorithm a backend should use, the result being the same: "direct", or
"winograd" (F(2x2, 3x3), for 3x3 stride-1 undilated ungrouped convs; winograd_convs sets it).
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..limits import check_bytes
from ..registry import Attr, Cost, OpDef, bytes_moved, expect, register
from ..types import FLOAT_DTYPES, TensorType
from .elementwise import sigmoid

EPILOGUE_ACTS = ("", "relu", "clip", "leaky_relu", "sigmoid", "silu")  # what a conv's or gemm's act may be


def window_out(size: int, k: int, stride: int, dil: int, pad_lo: int, pad_hi: int,
               ceil: bool = False) -> int:
    """Output length of a sliding window; in ceil mode the last window must start inside the
    input or its leading padding (ONNX's and PyTorch's rule)."""
    span = dil * (k - 1) + 1
    room = size + pad_lo + pad_hi - span
    expect(room >= 0, f"window of {span} does not fit input {size} padded by ({pad_lo}, {pad_hi})")
    out = (-(-room // stride) if ceil else room // stride) + 1
    if ceil and (out - 1) * stride >= size + pad_lo:
        out -= 1
    return out


def _infer(types, a):
    x, w, *rest = types
    expect(x.rank == 4, f"input must be 4-D NCHW, got {x}")
    expect(w.rank == 4, f"weight must be 4-D OIHW, got {w}")
    expect(x.dtype in FLOAT_DTYPES and w.dtype == x.dtype, f"dtypes must be one float type: {x}, {w}")
    g = a["groups"]
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    expect(g >= 1 and c % g == 0 and m % g == 0,
           f"groups={g} must divide input channels {c} and output channels {m}")
    expect(cg * g == c, f"weight {w} expects {cg * g} input channels, input has {c}")
    if a["residual"]:
        expect(len(rest) == 2, "a residual conv takes (x, w, b, residual)")
    elif len(rest) > 1:
        expect(False, "4 inputs need residual=true")
    if rest:
        expect(rest[0].shape == (m,) and rest[0].dtype == x.dtype, f"bias must be {x.dtype}[{m}], got {rest[0]}")
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["stride"], a["dilation"], a["pads"]
    expect(min(sh, sw, dh, dw) >= 1, "stride and dilation must be >= 1")
    expect(min(pt, pl, pb, pr) >= 0, f"pads must be >= 0, got {list(a['pads'])}")
    oh = window_out(h, kh, sh, dh, pt, pb)
    ow = window_out(wd, kw, sw, dw, pl, pr)
    if a["algo"] == "winograd":
        expect((kh, kw, sh, sw, dh, dw, g) == (3, 3, 1, 1, 1, 1, 1),
               f"algo=winograd needs a 3x3 stride-1 undilated ungrouped conv, got kernel {kh}x{kw}, "
               f"stride {[sh, sw]}, dilation {[dh, dw]}, groups {g}")
    if a["residual"]:
        expect(rest[1].shape == (n, m, oh, ow) and rest[1].dtype == x.dtype,
               f"residual must be {x.dtype}[{n},{m},{oh},{ow}], got {rest[1]}")
    return [TensorType(x.dtype, (n, m, oh, ow))]


def apply_epilogue(y: np.ndarray, residual: np.ndarray | None, a) -> np.ndarray:
    """The fused tail: + residual, then the activation."""
    if residual is not None:
        y = y + residual
    if a["act"] == "relu":
        y = np.maximum(y, 0)
    elif a["act"] == "clip":
        y = np.minimum(np.maximum(y, y.dtype.type(a["act_min"])), y.dtype.type(a["act_max"]))
    elif a["act"] == "leaky_relu":
        y = np.where(y >= 0, y, y * y.dtype.type(a["act_alpha"]))
    elif a["act"] == "sigmoid":
        y = sigmoid(y)
    elif a["act"] == "silu":
        y = (y * sigmoid(y)).astype(y.dtype)
    return y


def patches(xp: np.ndarray, kh: int, kw: int, oh: int, ow: int, stride, dilation) -> np.ndarray:
    """im2col: [N, C, KH, KW, OH, OW] windows of an already padded NCHW input."""
    (sh, sw), (dh, dw) = stride, dilation
    n, c = xp.shape[:2]
    cols = np.empty((n, c, kh, kw, oh, ow), xp.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                  j * dw: j * dw + sw * (ow - 1) + 1: sw]
    return cols


def conv2d_reference(x, w, b, stride, dilation, pads, groups) -> np.ndarray:
    pt, pl, pb, pr = pads
    n = x.shape[0]
    m, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = window_out(x.shape[2], kh, stride[0], dilation[0], pt, pb)
    ow = window_out(x.shape[3], kw, stride[1], dilation[1], pl, pr)
    cols = patches(xp, kh, kw, oh, ow, stride, dilation).reshape(n, groups, cg * kh * kw, oh * ow)
    wg = w.reshape(groups, m // groups, cg * kh * kw)
    out = np.matmul(wg, cols).reshape(n, m, oh, ow)
    if b is not None:
        out += b.reshape(1, m, 1, 1)
    return out.astype(x.dtype, copy=False)


def _reference(xs, a):
    x, w, *rest = xs
    b = rest[0] if rest else None
    y = conv2d_reference(x, w, b, a["stride"], a["dilation"], a["pads"], a["groups"])
    return [apply_epilogue(y, rest[1] if a["residual"] else None, a).astype(x.dtype)]


def _cost(ins, outs, a):
    w = ins[1]
    macs = outs[0].numel * w.shape[1] * w.shape[2] * w.shape[3]
    epilogue = (len(ins) > 2) + a["residual"] + (a["act"] != "")
    flops = 2 * macs + epilogue * outs[0].numel
    return Cost(macs, flops, bytes_moved(ins, outs))


register(
    OpDef(
        name="conv2d",
        family="conv",
        inputs=("x", "w", "b?", "residual?"),
        outputs=("y",),
        attrs={
            "stride": Attr("ints", (1, 1), length=2),
            "dilation": Attr("ints", (1, 1), length=2),
            "pads": Attr("ints", (0, 0, 0, 0), length=4, doc="top, left, bottom, right"),
            "groups": Attr("int", 1),
            "residual": Attr("bool", False, doc="the last input is added before the activation"),
            "act": Attr("str", "", choices=EPILOGUE_ACTS),
            "act_min": Attr("float", 0.0),
            "act_max": Attr("float", 6.0),
            "act_alpha": Attr("float", 0.01, doc="leaky_relu's slope, in (0, 1]"),
            "algo": Attr("str", "direct", choices=("direct", "winograd"), doc="the algorithm (same result)"),
        },
        infer=_infer,
        reference=_reference,
        cost=_cost,
        grad=lambda ctx, node, dys: _conv_grad(ctx, node, dys),
        show=("stride", "pads", "groups"),
        layouts=frozenset({"", "NCHW16c"}),
        layout_policy="free",
        doc="y[n,m] = sum over c in m's group, kh, kw of x * w, plus b[m]",
    )
)


# -- training: the two backward convolutions -------------------------------------------------
_GEOMETRY = {
    "stride": Attr("ints", (1, 1), length=2),
    "dilation": Attr("ints", (1, 1), length=2),
    "pads": Attr("ints", (0, 0, 0, 0), length=4, doc="top, left, bottom, right"),
    "groups": Attr("int", 1),
}


def _conv_grad(ctx, node, dys):
    """y = act(conv(x, w) + b + r): the activation's gradient first, then
    dx = conv2d_grad_input(dz, w), dw = conv2d_grad_weight(x, dz), db = sum of dz over N, H, W."""
    (dy,) = dys
    a = node.attrs
    x, w, *rest = node.inputs
    dz = dy
    if a["act"] == "silu":  # its derivative needs the pre-activation, which a fused conv does not keep
        raise UnsupportedError(f"conv2d {node.outputs[0].name!r} with act=silu has no gradient rule: autodiff runs "
                               "before fuse_epilogues, on the unfused conv and silu")
    if a["act"]:
        # from y: relu's and clip's derivatives read it directly, and with 0 < alpha, y >= 0
        # exactly where the pre-activation is
        act = {"act": a["act"], "min": a["act_min"], "max": a["act_max"], "alpha": a["act_alpha"]}
        dz = ctx.emit("act_grad", [dy, node.outputs[0].name], act, base="d" + node.outputs[0].name + ".pre")[0]
    geometry = {k: a[k] for k in _GEOMETRY}
    xt, wt = ctx.type(x), ctx.type(w)
    dx = ctx.emit("conv2d_grad_input", [dz, w], {**geometry, "input_hw": xt.shape[2:]}, base="d" + x)[0] \
        if ctx.needs(node, 0) else None
    dw = ctx.emit("conv2d_grad_weight", [x, dz], {**geometry, "kernel": wt.shape[2:]}, base="d" + w)[0] \
        if ctx.needs(node, 1) else None
    out = [dx, dw]
    if rest:
        out.append(ctx.emit("reduce_sum", [dz], {"axes": (0, 2, 3)}, base="d" + rest[0])[0] if ctx.needs(node, 2) else None)
    if a["residual"]:
        out.append(dz)
    return out


def _grad_input_infer(types, a):
    dy, w = types
    expect(dy.rank == 4 and w.rank == 4 and dy.dtype == w.dtype and dy.dtype in FLOAT_DTYPES,
           f"expects a 4-D float dy and OIHW weight of one dtype, got {dy}, {w}")
    m, cg, kh, kw = w.shape
    h, wd = a["input_hw"]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["stride"], a["dilation"], a["pads"]
    expect(a["groups"] >= 1 and min(sh, sw, dh, dw) >= 1,
           f"groups, stride and dilation must be >= 1, got groups={a['groups']} stride={list(a['stride'])} "
           f"dilation={list(a['dilation'])}")
    expect(dy.shape[1] == m and m % a["groups"] == 0, f"dy {dy} does not match weight {w} (groups={a['groups']})")
    want = (window_out(h, kh, sh, dh, pt, pb), window_out(wd, kw, sw, dw, pl, pr))
    expect(dy.shape[2:] == want, f"dy {dy} is not the output of a {h}x{wd} input (that gives {list(want)})")
    # the reference builds the padded result and the column matrix: both must fit the limit
    n, size = dy.shape[0], dy.np_dtype.itemsize
    check_bytes(n * cg * a["groups"] * (h + pt + pb) * (wd + pl + pr) * size,
                f"the padded {h + pt + pb}x{wd + pl + pr} result of a transposed convolution (pads {list(a['pads'])})")
    check_bytes(n * cg * a["groups"] * kh * kw * want[0] * want[1] * size, f"the column matrix of {dy} and {w}")
    return [TensorType(dy.dtype, (dy.shape[0], cg * a["groups"], h, wd))]


def _grad_input_ref(xs, a):
    """col2im of w^T dy: every output gradient flows back to the inputs its window read."""
    dy, w = xs
    n, m, oh, ow = dy.shape
    _, cg, kh, kw = w.shape
    g = a["groups"]
    h, wd = a["input_hw"]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["stride"], a["dilation"], a["pads"]
    wg = w.reshape(g, m // g, cg * kh * kw).transpose(0, 2, 1)
    cols = np.matmul(wg, dy.reshape(n, g, m // g, oh * ow)).reshape(n, g * cg, kh, kw, oh, ow)
    dxp = np.zeros((n, g * cg, h + pt + pb, wd + pl + pr), dy.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw] += cols[:, :, i, j]
    return [dxp[:, :, pt: pt + h, pl: pl + wd].copy()]


def _grad_weight_infer(types, a):
    x, dy = types
    expect(x.rank == 4 and dy.rank == 4 and x.dtype == dy.dtype and x.dtype in FLOAT_DTYPES,
           f"expects 4-D float x and dy of one dtype, got {x}, {dy}")
    g = a["groups"]
    expect(x.shape[1] % g == 0 and dy.shape[1] % g == 0, f"groups={g} must divide {x.shape[1]} and {dy.shape[1]}")
    kh, kw = a["kernel"]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["stride"], a["dilation"], a["pads"]
    want = (x.shape[0], dy.shape[1], window_out(x.shape[2], kh, sh, dh, pt, pb),
            window_out(x.shape[3], kw, sw, dw, pl, pr))
    expect(dy.shape == want, f"dy {dy} is not the output for input {x} (that gives {list(want)})")
    return [TensorType(x.dtype, (dy.shape[1], x.shape[1] // g, kh, kw))]


def _grad_weight_ref(xs, a):
    x, dy = xs
    n, m, oh, ow = dy.shape
    c, g = x.shape[1], a["groups"]
    kh, kw = a["kernel"]
    pt, pl, pb, pr = a["pads"]
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    cols = patches(xp, kh, kw, oh, ow, a["stride"], a["dilation"]).reshape(n, g, c // g * kh * kw, oh * ow)
    dyg = dy.reshape(n, g, m // g, oh * ow)
    dw = np.matmul(dyg, cols.transpose(0, 1, 3, 2)).sum(axis=0)
    return [dw.reshape(m, c // g, kh, kw).astype(x.dtype)]


def _backward_cost(ins, outs, a, image, weight):
    macs = image.numel * weight.shape[1] * weight.shape[2] * weight.shape[3]
    return Cost(macs, 2 * macs, bytes_moved(ins, outs))


def _grad_input_grad(ctx, node, dys):
    """dx = T(dy, w) is linear in each operand and is conv2d's adjoint in x, so the gradient
    for dy is conv2d(g, w) and the one for w is conv2d_grad_weight(g, dy) (g flowing into dx).
    This is what a model trains through when ConvTranspose imports as this op."""
    dy, w = node.inputs
    geometry = {k: node.attrs[k] for k in _GEOMETRY}
    g = dys[0]
    ddy = ctx.emit("conv2d", [g, w], geometry, base="d" + dy)[0] if ctx.needs(node, 0) else None
    dw = ctx.emit("conv2d_grad_weight", [g, dy], {**geometry, "kernel": ctx.type(w).shape[2:]},
                  base="d" + w)[0] if ctx.needs(node, 1) else None
    return [ddy, dw]


register(OpDef(
    name="conv2d_grad_input", family="conv", inputs=("dy", "w"), outputs=("dx",),
    attrs={**_GEOMETRY, "input_hw": Attr("ints", length=2)},
    infer=_grad_input_infer, reference=_grad_input_ref, grad=_grad_input_grad,
    cost=lambda ins, outs, a: _backward_cost(ins, outs, a, ins[0], ins[1]),
    show=("stride", "pads", "groups"),
    doc="gradient of conv2d with respect to its input: a transposed convolution of dy by w "
        "(ONNX ConvTranspose imports as it)",
))
register(OpDef(
    name="conv2d_grad_weight", family="conv", inputs=("x", "dy"), outputs=("dw",),
    attrs={**_GEOMETRY, "kernel": Attr("ints", length=2)},
    infer=_grad_weight_infer, reference=_grad_weight_ref,
    cost=lambda ins, outs, a: _backward_cost(ins, outs, a, ins[1], outs[0]),
    show=("kernel", "stride", "pads", "groups"),
    doc="gradient of conv2d with respect to its weight: dy correlated with the input's windows",
))
