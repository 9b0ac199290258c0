"""2-D convolution (NCHW activations, OIHW weights), with stride, dilation, groups and
asymmetric padding `pads = [top, left, bottom, right]` (ONNX's order).

A conv may carry a fused epilogue (fuse_epilogues puts it there): with `residual`, its last
input is added to the result, then `act` is applied: relu, or clip to [act_min, act_max].
    y = act(conv(x, w) + b + r)
"""

from __future__ import annotations

import numpy as np

from ..registry import Attr, Cost, OpDef, bytes_moved, expect, register
from ..types import FLOAT_DTYPES, TensorType


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
            "act": Attr("str", "", choices=("", "relu", "clip")),
            "act_min": Attr("float", 0.0),
            "act_max": Attr("float", 6.0),
        },
        infer=_infer,
        reference=_reference,
        cost=_cost,
        show=("stride", "pads", "groups"),
        layouts=frozenset({"", "NCHW16c"}),
        layout_policy="free",
        doc="y[n,m] = sum over c in m's group, kh, kw of x * w, plus b[m]",
    )
)
