"""Pooling gradients over NCHW in gather form: one thread per input element, looping over the
windows that can contain it, so every dx element is written once by one thread (no atomics,
no zeroing pass, deterministic).

Window (oh, ow) covers input row ih at tap ki when oh * sh - pt + ki * dh == ih: the thread
tries each tap ki (and kj), keeping those whose window start falls on the stride and whose
window exists. The windows' tap ranges are clipped to the input as in kernels/pool.py, so
padding and the cells ceil mode reads past the end never count.

maxpool2d_grad: the thread rescans each such window for its first maximum in row-major tap
order (the one the reference's argmax names: a NaN is a maximum, the first NaN wins) and takes
that window's dy when the maximum is itself: kh * kw windows of kh * kw reads, at most.
avgpool2d_grad: each such window gives dy / its divisor (the forward's rule: taps inside the
input, or with count_include_pad inside input + explicit padding).
Contributions add up in float64 and are cast once, as the reference's sums are.
"""

from __future__ import annotations

from ....ir import Node, TensorType
from .common import KernelSource, grid1, indent, plain_only
from .pool import tap_range, times


def _axis(names: tuple[str, str, str, str], geo: tuple[int, ...], bounds: tuple[str, int, int]) -> list[str]:
    """A loop over the taps of one axis whose window holds the thread's input coordinate.
    names: (tap, input coordinate, window index, window start); geo: (taps, stride, dilation,
    low pad, windows); bounds: (name, lo, hi) of the tap range bound for each window, the taps
    landing in [lo, hi)."""
    tap, cell, out, start = names
    k, s, d, pad, n = geo
    on_stride = f"t{out} >= 0" + (f" and t{out} % {s} == 0" if s > 1 else "")
    lines = [f"t{out} = {cell}{f' + {pad}' if pad else ''} - {times(tap, d)}",
             f"if {on_stride} and t{out} // {s} < {n}:", f"    {out} = t{out} // {s}",
             f"    {start} = {out} * {s}{f' - {pad}' if pad else ''}",
             *("    " + line for line in tap_range(bounds[0], start, str(bounds[1]), str(bounds[2]), k, d))]
    return [f"for {tap} in range({k}):", *("    " + line for line in lines)]


def _windows_of(a: dict, h: int, w: int, oh: int, ow: int, include: bool, inner: list[str]) -> list[str]:
    """Loops over the windows (oh, ow) holding input cell (ih, iw), binding each window's start
    `h0, w0` and its tap ranges: inside the input (`i0, i1`, `j0, j1`), or with `include`
    inside input + explicit padding (`ci0, ci1`, `cj0, cj1`); `inner` runs for each window."""
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
    pt, pl, pb, pr = a["pads"]
    row_bounds = ("ci", -pt, h + pb) if include else ("i", 0, h)
    col_bounds = ("cj", -pl, w + pr) if include else ("j", 0, w)
    rows = _axis(("ki", "ih", "oh", "h0"), (kh, sh, dh, pt, oh), row_bounds)
    cols = _axis(("kj", "iw", "ow", "w0"), (kw, sw, dw, pl, ow), col_bounds)
    return rows + ["        " + line for line in cols + ["        " + line for line in inner]]


def _cell(h: int, w: int) -> list[str]:
    """Thread t's plane `q` and input cell (ih, iw)."""
    return [f"q = t // {h * w}", f"cell = t - q * {h * w}", f"ih = cell // {w}", f"iw = cell - ih * {w}"]


def maxpool2d_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a, x, dy = node.attrs, ins[0], ins[1]
    h, w = x.shape[2:]
    oh, ow = dy.shape[2:]
    (dh, dw) = a["dilation"]
    first_max = [
        "t0 = -1",
        "best = x[base]",
        "for i in range(i0, i1):",
        f"    r = (h0 + {times('i', dh)}) * {w} + w0",
        "    for j in range(j0, j1):",
        f"        c = r + {times('j', dw)}",
        "        v = x[base + c]",
        "        if t0 < 0 or v > best or (v != v and best == best):",
        "            best = v",
        "            t0 = c",
        "if t0 == cell:",
        f"    acc += np.float64(dy[(q * {oh} + oh) * {ow} + ow])",
    ]
    lines = [*_cell(h, w), f"base = q * {h * w}", "acc = np.float64(0.0)",
             *_windows_of(a, h, w, oh, ow, False, first_max), "dx[t] = acc"]
    body = f"def KERNEL(x, dy, dx):\n    t = cuda.grid(1)\n    if t < {x.numel}:\n{indent(lines, 2)}\n"
    note = f"maxpool2d_grad {a['kernel'][0]}x{a['kernel'][1]}, gather: one thread per input element"
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note, grid=grid1(x.numel))


def avgpool2d_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a, dy, dx = node.attrs, ins[0], outs[0]
    h, w = dx.shape[2:]
    oh, ow = dy.shape[2:]
    include = a["count_include_pad"]
    ci, cj = ("ci", "cj") if include else ("i", "j")
    share = [f"count = max({ci}1 - {ci}0, 0) * max({cj}1 - {cj}0, 0)",
             f"acc += np.float64(dy[(q * {oh} + oh) * {ow} + ow]) * (1.0 / count)"]
    lines = [*_cell(h, w), "acc = np.float64(0.0)", *_windows_of(a, h, w, oh, ow, include, share), "dx[t] = acc"]
    body = f"def KERNEL(dy, dx):\n    t = cuda.grid(1)\n    if t < {dx.numel}:\n{indent(lines, 2)}\n"
    note = f"avgpool2d_grad {a['kernel'][0]}x{a['kernel'][1]}, gather: one thread per input element"
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, grid=grid1(dx.numel))


TEMPLATES = {"maxpool2d_grad": plain_only(maxpool2d_grad), "avgpool2d_grad": plain_only(avgpool2d_grad)}
