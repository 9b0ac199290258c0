"""Pooling kernels over NCHW: windowed max and average and the max's argmax, one thread per
output element (adjacent threads take adjacent output columns, so their window reads are
adjacent too); the global forms, one thread per (n, c) plane.

Each thread clips its window to the input first: the taps `[i0, i1) x [j0, j1)` that land inside
it, so padding is never read. For max it never wins (the accumulator starts at the dtype's
lowest value; a NaN wins and stays, as in np.max); for average it adds nothing, and the divisor
follows the reference: the taps inside the input, or with count_include_pad the taps inside
input + explicit padding (never the extra cells ceil mode reads past the end). Sums accumulate
in float64, as the reference's do.
"""

from __future__ import annotations

import numpy as np

from ....ir import Node, TensorType
from ....ir.types import DTYPES, FLOAT_DTYPES
from .common import KernelSource, grid1, indent, lit, plain_only


def lowest(dtype: str) -> str:
    """The dtype's lowest value, which any real element ties or beats."""
    if dtype in FLOAT_DTYPES:
        return lit(-np.inf, dtype)
    return lit(np.iinfo(DTYPES[dtype]).min, dtype)


def tap_range(var: str, start: str, lo: str, hi: str, k: int, d: int) -> list[str]:
    """`var0, var1`: the taps t in [0, k) with lo <= start + t*d < hi (ceiling divisions)."""
    below = f"-{start}" if lo == "0" else f"{lo} - {start}"
    if d == 1:
        return [f"{var}0 = max(0, {below})", f"{var}1 = min({k}, {hi} - {start})"]
    return [f"{var}0 = max(0, ({below} + {d - 1}) // {d})", f"{var}1 = min({k}, ({hi} - {start} + {d - 1}) // {d})"]


def times(var: str, n: int) -> str:
    return var if n == 1 else f"{var} * {n}"


def window_lines(a: dict, h: int, w: int, include: bool = False) -> list[str]:
    """Lines binding window (oh, ow)'s top-left `h0, w0` and its tap ranges inside the input
    (`i0, i1`, `j0, j1`); with `include`, also inside input + explicit padding (`ci`, `cj`)."""
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
    pt, pl, pb, pr = a["pads"]
    lines = [f"h0 = oh * {sh}" + (f" - {pt}" if pt else ""), f"w0 = ow * {sw}" + (f" - {pl}" if pl else ""),
             *tap_range("i", "h0", "0", str(h), kh, dh), *tap_range("j", "w0", "0", str(w), kw, dw)]
    if include:
        lines += [*tap_range("ci", "h0", str(-pt), str(h + pb), kh, dh),
                  *tap_range("cj", "w0", str(-pl), str(w + pr), kw, dw)]
    return lines


def max_update(dtype: str, acc: str = "acc") -> list[str]:
    # `v != v` lets a NaN in, and once in, nothing is greater: NaN propagates as in np.max
    cond = f"v > {acc} or v != v" if dtype in FLOAT_DTYPES else f"v > {acc}"
    return [f"if {cond}:", f"    {acc} = v"]


def _output_coords(oh: int, ow: int) -> list[str]:
    """Thread t's plane `p` and output position `oh, ow` (t is the flat output index)."""
    return [f"p = t // {oh * ow}", f"r = t - p * {oh * ow}", f"oh = r // {ow}", f"ow = r - oh * {ow}"]


def _window(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a, x, y = node.attrs, ins[0], outs[0]
    h, w = x.shape[2:]
    oh, ow = y.shape[2:]
    (kh, kw), (dh, dw) = a["kernel"], a["dilation"]
    is_max = node.op == "maxpool2d"
    include = not is_max and a["count_include_pad"]
    if is_max:
        init, update, final = lowest(y.dtype), max_update(y.dtype), "acc"
    else:
        init, update = "np.float64(0.0)", ["acc += np.float64(v)"]
        ci, cj = ("ci", "cj") if include else ("i", "j")
        final = f"acc / (max({ci}1 - {ci}0, 0) * max({cj}1 - {cj}0, 0))"
    body = f"""\
def KERNEL(x, y):
    t = cuda.grid(1)
    if t < {y.numel}:
{indent(_output_coords(oh, ow) + window_lines(a, h, w, include), 2)}
        acc = {init}
        for i in range(i0, i1):
            b = p * {h * w} + (h0 + {times('i', dh)}) * {w} + w0
            for j in range(j0, j1):
                v = x[b + {times('j', dw)}]
{indent(update, 4)}
        y[t] = {final}
"""
    note = f"{node.op} {kh}x{kw} stride {a['stride'][0]}x{a['stride'][1]} dilation {dh}x{dw}, " \
           "one thread per output, taps clipped to the input"
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, grid=grid1(y.numel))


def _global(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x = ins[0]
    planes = x.shape[0] * x.shape[1]
    size = x.numel // planes if planes else 0
    if node.op == "global_avgpool":
        init, start, update, final = "np.float64(0.0)", 0, ["acc += np.float64(x[b + i])"], f"acc / {size}"
    else:
        init, start, final = "x[b]", 1, "acc"
        update = ["v = x[b + i]", *max_update(x.dtype)]
    body = f"""\
def KERNEL(x, y):
    p = cuda.grid(1)
    if p < {planes}:
        b = p * {size}
        acc = {init}
        for i in range({start}, {size}):
{indent(update, 3)}
        y[p] = {final}
"""
    note = f"{node.op} over {planes} planes of {size}, one thread per plane"
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, grid=grid1(planes))


def _argmax(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """The flat input index of each window's first maximum in row-major tap order, as the
    reference's argmax names it: a NaN is a maximum (the first NaN wins), and a window whose
    real cells all hold the lowest value names its first real cell, never the padding."""
    a, x, y = node.attrs, ins[0], outs[0]
    h, w = x.shape[2:]
    oh, ow = y.shape[2:]
    (dh, dw) = a["dilation"]
    spatial = f"iw * {h} + ih" if a["storage_order"] else f"ih * {w} + iw"
    body = f"""\
def KERNEL(x, y):
    t = cuda.grid(1)
    if t < {y.numel}:
{indent(_output_coords(oh, ow) + window_lines(a, h, w), 2)}
        b = p * {h * w}
        best = x[b]
        where = -1
        for i in range(i0, i1):
            ih = h0 + {times('i', dh)}
            for j in range(j0, j1):
                iw = w0 + {times('j', dw)}
                v = x[b + ih * {w} + iw]
                if where < 0 or v > best or (v != v and best == best):
                    best = v
                    where = b + {spatial}
        y[t] = where
"""
    note = f"maxpool2d_argmax storage_order {a['storage_order']}, one thread per output"
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, grid=grid1(y.numel))


TEMPLATES = {"maxpool2d": plain_only(_window), "avgpool2d": plain_only(_window),
             "global_avgpool": plain_only(_global), "global_maxpool": plain_only(_global),
             "maxpool2d_argmax": plain_only(_argmax)}
