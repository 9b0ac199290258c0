"""Pooling kernels over NCHW: windowed max/average and the global forms.

One loop nest serves both windowed ops: a prange over the N*C planes, then output rows and
columns. Instead of testing every tap against the borders, each output row (column) computes the
range of taps `[i0, i1)` that land inside the input, so padding is never read: for max it never
wins (the accumulator starts at the dtype's lowest value), for average it adds nothing. The
average's divisor follows the reference: the taps inside the input, or with count_include_pad
the taps inside input + explicit padding (never the extra cells ceil mode reads past the end).
Sums accumulate in float64, as the reference does.
"""

from __future__ import annotations

import numpy as np

from ....ir import Node, TensorType
from ....ir.types import DTYPES, FLOAT_DTYPES
from .common import PARALLEL_MIN, KernelSource, lit, plain_only, run_time_sizes


def _lowest(dtype: str) -> str:
    if dtype in FLOAT_DTYPES:
        return lit(-np.inf, dtype)
    return lit(np.iinfo(DTYPES[dtype]).min, dtype)


def _tap_range(var: str, start: str, lo: str, hi: str, k: int, d: int) -> list[str]:
    """`var0, var1`: the taps t in [0, k) with lo <= start + t*d < hi."""
    if d == 1:
        return [f"{var}0 = max(0, {lo} - {start})", f"{var}1 = min({k}, {hi} - {start})"]
    return [f"{var}0 = max(0, ({lo} - {start} + {d - 1}) // {d})",
            f"{var}1 = min({k}, ({hi} - {start} + {d - 1}) // {d})"]


def _max_update(dtype: str) -> list[str]:
    # `v != v` lets a NaN in, and once in, nothing is greater: NaN propagates as in np.max
    cond = "v > acc or v != v" if dtype in FLOAT_DTYPES else "v > acc"
    return [f"if {cond}:", "    acc = v"]


def _window(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a, x, y = node.attrs, ins[0], outs[0]
    n, c, h, w = x.shape
    oh, ow = y.shape[2:]
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
    pt, pl, pb, pr = a["pads"]
    is_max = node.op == "maxpool2d"
    include = not is_max and a["count_include_pad"]
    inside = (pt, pl, pb, pr) == (0, 0, 0, 0) and (oh - 1) * sh + (kh - 1) * dh < h and \
        (ow - 1) * sw + (kw - 1) * dw < w
    if inside:  # every window lies in the input: constant tap ranges, which LLVM unrolls (2x faster)
        rows = [f"h0 = oh * {sh}", "i0 = 0", f"i1 = {kh}"]
        cols = [f"w0 = ow * {sw}", "j0 = 0", f"j1 = {kw}"]
    else:
        rows = [f"h0 = oh * {sh} - {pt}", *_tap_range("i", "h0", "0", "H", kh, dh)]
        cols = [f"w0 = ow * {sw} - {pl}", *_tap_range("j", "w0", "0", "W", kw, dw)]
    if include:
        rows += _tap_range("ci", "h0", str(-pt), f"H + {pb}", kh, dh)
        cols += _tap_range("cj", "w0", str(-pl), f"W + {pr}", kw, dw)
    if is_max:
        init, update, final = _lowest(y.dtype), _max_update(y.dtype), "acc"
    else:
        init, update = "0.0", ["acc += v"]
        ci, cj = ("ci", "cj") if include else ("i", "j")
        final = f"acc / (max({ci}1 - {ci}0, 0) * max({cj}1 - {cj}0, 0))"
    par = x.numel >= PARALLEL_MIN
    inner = "\n".join(" " * 24 + s for s in [f"v = x[r + {_times('j', dw)}]", *update])
    sizes, packed = run_time_sizes(node, n * c, h, w, oh, ow)
    body = f"""\
def KERNEL(x, sizes, y):
    H, W, OH, OW = sizes[1], sizes[2], sizes[3], sizes[4]
    for p in {'prange' if par else 'range'}(sizes[0]):
        for oh in range(OH):
{_indent(rows, 12)}
            for ow in range(OW):
{_indent(cols, 16)}
                acc = {init}
                for i in range(i0, i1):
                    r = p * H * W + (h0 + {_times('i', dh)}) * W + w0
                    for j in range(j0, j1):
{inner}
                y[(p * OH + oh) * OW + ow] = {final}
"""
    note = f"{node.op} {kh}x{kw} stride {sh}x{sw} dilation {dh}x{dw}, " + \
        ("every window inside the input" if inside else "tap ranges clipped to the input") + ", sizes at run time"
    return KernelSource(body, (node.inputs[0], sizes, node.outputs[0].name), note, parallel=par, packed=packed)


def _times(var: str, n: int) -> str:
    return var if n == 1 else f"{var} * {n}"


def _indent(lines: list[str], n: int) -> str:
    return "\n".join(" " * n + s for s in lines)


def _global(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """Shape-generic: y.size planes of x.size / y.size elements."""
    x = ins[0]
    par = x.numel >= PARALLEL_MIN
    if node.op == "global_avgpool":
        init, start, update, final = "0.0", 0, ["acc += x[b + i]"], "acc / size"
    else:
        init, start, final = "x[b]", 1, "acc"
        update = ["v = x[b + i]", *_max_update(x.dtype)]
    body = f"""\
def KERNEL(x, y):
    size = x.size // y.size if y.size else 0
    for p in {'prange' if par else 'range'}(y.size):
        b = p * size
        acc = {init}
        for i in range({start}, size):
{_indent(update, 12)}
        y[p] = {final}
"""
    note = f"{node.op} over (image, channel) planes, sizes at run time"
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, parallel=par)


TEMPLATES = {"maxpool2d": plain_only(_window), "avgpool2d": plain_only(_window),
             "global_avgpool": plain_only(_global), "global_maxpool": plain_only(_global)}
