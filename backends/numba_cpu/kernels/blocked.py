"""Kernels for tensors in the blocked NCHW16c layout (x[n, c // 16, h, w, c % 16]) and the
reorders in and out of it. Every inner step moves a whole 16-channel vector."""

from __future__ import annotations

from ....ir import Node, TensorType
from .common import PARALLEL_MIN, KernelSource, job_function, run_time_sizes


def reorder(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """Shape-generic: the (image, channel block) count and the plane size come at run time."""
    src, dst = ins[0].layout, outs[0].layout
    n, c, h, w = ins[0].shape
    par = ins[0].numel >= PARALLEL_MIN
    note = f"reorder {src or 'NCHW'} -> {dst or 'NCHW'}"
    if src == dst:
        body = "def KERNEL(x, y):\n    for i in prange(x.size):\n        y[i] = x[i]\n"
        return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, parallel=par)
    if (src, dst) == ("", "NCHW16c"):
        inner = "y[(nb * hw + p) * 16 + ci] = x[base + p]"
    elif (src, dst) == ("NCHW16c", ""):
        inner = "y[base + p] = x[(nb * hw + p) * 16 + ci]"
    else:
        raise NotImplementedError(f"reorder {src or 'plain'} -> {dst or 'plain'}")
    sizes, packed = run_time_sizes(node, n * (c // 16), h * w)
    body = f"""\
def KERNEL(x, sizes, y):
    hw = sizes[1]
    for nb in {'prange' if par else 'range'}(sizes[0]):
        for ci in range(16):
            base = (nb * 16 + ci) * hw
            for p in range(hw):
                {inner}
"""
    return KernelSource(body, (node.inputs[0], sizes, node.outputs[0].name), note, parallel=par, packed=packed)


def _window_plan(node: Node, ins, outs) -> dict:
    n, c, h, w = ins[0].shape
    _, _, oh, ow = outs[0].shape
    a = node.attrs
    return dict(N=n, CB=c // 16, H=h, W=w, OH=oh, OW=ow, KH=a["kernel"][0], KW=a["kernel"][1],
                SH=a["stride"][0], SW=a["stride"][1], DH=a["dilation"][0], DW=a["dilation"][1],
                PT=a["pads"][0], PL=a["pads"][1], PB=a["pads"][2], PR=a["pads"][3])


def pool_blocked(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """Max or average pooling, 16 channels per vector. The average's divisor counts the window's
    cells inside the input, plus the explicit padding when count_include_pad. Shape-generic: the
    heights and widths come at run time (sizes: H, W, OH, OW), the window, strides and pads are
    literals."""
    p = _window_plan(node, ins, outs)
    sizes, packed = run_time_sizes(node, p["H"], p["W"], p["OH"], p["OW"])
    is_max = node.op == "maxpool2d"
    init = "vsplat(np.float32(-np.inf))" if is_max else "vzero()"
    step = "acc = vmax(acc, vload(x, xi))" if is_max else "acc = vadd(acc, vload(x, xi))"
    if is_max:
        finish = "vstore(y, yo, acc)"
        count = []
    else:
        inc = node.attrs["count_include_pad"]
        # cells counted: real ones, or those inside the explicitly padded extent
        lo_h, hi_h = (-p["PT"], f"H + {p['PB']}") if inc else (0, "H")
        lo_w, hi_w = (-p["PL"], f"W + {p['PR']}") if inc else (0, "W")
        count = ["cnt = 0",
                 f"for kh in range({p['KH']}):",
                 f"    ih = oh * {p['SH']} + kh * {p['DH']} - {p['PT']}",
                 f"    for kw in range({p['KW']}):",
                 f"        iw = ow * {p['SW']} + kw * {p['DW']} - {p['PL']}",
                 f"        if {lo_h} <= ih < {hi_h} and {lo_w} <= iw < {hi_w}:",
                 "            cnt += 1"]
        finish = "vstore(y, yo, vmul(acc, vsplat(np.float32(1.0) / np.float32(max(cnt, 1)))))"
    ind = " " * 12
    jobs = p["N"] * p["CB"] * p["OH"]
    head = ["        H = sizes[0]", "        W = sizes[1]", "        OH = sizes[2]", "        OW = sizes[3]",
            "        oh = job % OH", "        nb = job // OH"]
    if (p["KH"], p["KW"], p["PT"], p["PL"], p["PB"], p["PR"]) == (1, 1, 0, 0, 0, 0):
        # one cell a window (subsample_strided's copy): a strided vector copy
        lines = [*head, f"        xo = (nb * H + oh * {p['SH']}) * W * 16",
                 "        yo = (nb * OH + oh) * OW * 16",
                 "        for ow in range(OW):",
                 f"{ind}vstore(y, yo + ow * 16, vload(x, xo + ow * {p['SW'] * 16}))"]
        note = f"{node.op} 1x1/{p['SH']} NCHW16c: a strided copy, 16 channels per vector"
    else:
        lines = [
            *head,
            "        for ow in range(OW):",
            f"{ind}acc = {init}",
            f"{ind}for kh in range({p['KH']}):",
            f"{ind}    ih = oh * {p['SH']} + kh * {p['DH']} - {p['PT']}",
            f"{ind}    if ih < 0 or ih >= H:",
            f"{ind}        continue",
            f"{ind}    for kw in range({p['KW']}):",
            f"{ind}        iw = ow * {p['SW']} + kw * {p['DW']} - {p['PL']}",
            f"{ind}        if 0 <= iw < W:",
            f"{ind}            xi = ((nb * H + ih) * W + iw) * 16",
            f"{ind}            {step}",
            *[ind + s for s in count],
            f"{ind}yo = ((nb * OH + oh) * OW + ow) * 16",
            f"{ind}{finish}",
        ]
        note = f"{node.op} NCHW16c, 16 channels per vector"
    return KernelSource(job_function("x, sizes, y", lines), (node.inputs[0], sizes, node.outputs[0].name),
                        note + ", sizes at run time", parallel=jobs > 1, jobs=jobs, packed=packed)


def global_pool_blocked(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """Blocked input to a plain [N, C, 1, 1] output (for 1x1 the two layouts coincide);
    shape-generic: the plane size is x.size / y.size."""
    n, c, _, _ = ins[0].shape
    is_max = node.op == "global_maxpool"
    init = "vsplat(np.float32(-np.inf))" if is_max else "vzero()"
    step = "vmax" if is_max else "vadd"
    scale = "acc" if is_max else "vmul(acc, vsplat(np.float32(1.0 / hw)))"
    par = n * c // 16 >= 4
    body = f"""\
def KERNEL(x, y):
    hw = x.size // y.size
    for nb in {'prange' if par else 'range'}(y.size // 16):
        acc = {init}
        for p in range(hw):
            acc = {step}(acc, vload(x, (nb * hw + p) * 16))
        vstore(y, nb * 16, {scale})
"""
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), f"{node.op} NCHW16c -> NCHW", parallel=par)


def batch_norm_blocked(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """y = x * scale + shift per channel, with scale and shift computed at compile time in
    float64; shape-generic: the channel blocks are s.size / 16, the (image, block) count and
    plane size come at run time."""
    import numpy as np

    n, c, h, w = ins[0].shape
    out = node.outputs[0].name
    eps = node.attrs["epsilon"]
    names = node.inputs

    def scale(params):
        return (params[names[1]] / np.sqrt(params[names[4]].astype(np.float64) + eps)).astype(np.float32)

    def shift(params):
        s = params[names[1]] / np.sqrt(params[names[4]].astype(np.float64) + eps)
        return (params[names[2]] - params[names[3]] * s).astype(np.float32)

    sizes, packed = run_time_sizes(node, n * (c // 16), h * w)
    body = """\
def KERNEL(x, s, t, sizes, y):
    cbs = s.size // 16
    hw = sizes[1]
    for nb in prange(sizes[0]):
        cb = nb % cbs
        sv = vload(s, cb * 16)
        tv = vload(t, cb * 16)
        for p in range(hw):
            i = (nb * hw + p) * 16
            vstore(y, i, vfma(vload(x, i), sv, tv))
"""
    return KernelSource(body, (names[0], f"{out}.scale", f"{out}.shift", sizes, out), "batch_norm NCHW16c",
                        parallel=True, packed={f"{out}.scale": scale, f"{out}.shift": shift, **packed})


def by_layout(plain, blocked):
    """A template that renders `blocked` when the op's first input is NCHW16c, else `plain`."""

    def render(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
        return (blocked if ins[0].layout == "NCHW16c" else plain)(node, ins, outs)

    return render


def layout_templates(plain: dict) -> dict:
    """The blocked kernels, dispatched by layout over the plain ones."""
    out = {"reorder": reorder}
    for op, fn in (("maxpool2d", pool_blocked), ("avgpool2d", pool_blocked),
                   ("global_avgpool", global_pool_blocked), ("global_maxpool", global_pool_blocked),
                   ("batch_norm", batch_norm_blocked)):
        out[op] = by_layout(plain[op], fn)
    return out
