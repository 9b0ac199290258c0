"""Data-movement kernels (transpose, slice, expand, concat, pad: any dtype, no arithmetic on the values) and
reduce_sum. Each launches one thread per output element, so the stores are coalesced.

transpose, slice, expand: the flat output index is split over the output shape (axes that stay
adjacent in both tensors merged first) and the input is read at a base offset through literal
strides (permuted, stepped, or 0 on a broadcast axis; view_strides, shared with the cpu target).
concat: x viewed as [outer, width] around the axis; a thread finds which input's column range
holds its column.
pad: per (merged) output axis, the output index minus the low pad maps to a source index
(constant: in range or not; edge: clamp; wrap: modulo; reflect: a triangle wave of period
2 * (n - 1)); negative pads shift the source start (a crop).
reduce_sum: one thread per output, looping over the summed axes (size-1 axes dropped, runs of
summed or kept axes merged); floats sum in float64 as the reference does, integers in int64
(uint64 for u64; the cast back wraps as numpy's astype does), bools are counted then tested.
arg_max / arg_min: one thread per output, scanning its column of x viewed as [outer, d, inner].
"""

from __future__ import annotations

import math

from ....ir import Node, TensorType
from ....ir.types import FLOAT_DTYPES
from ...templating import arg_axes, arg_better, reduce_fold, view_strides
from .common import (
    NP_NAMES,
    KernelSource,
    collapse,
    decompose,
    grid1,
    indent,
    lit,
    offset,
    plain_only,
    strides,
)


def _coords(dims: list[int]) -> list[str]:
    """Lines splitting the thread index t into c0, c1.. over `dims`."""
    return decompose("t", dims, "c") if len(dims) > 1 else ["c0 = t"]


def _flat(body: list[str], numel: int, params: str) -> str:
    """A one-thread-per-output kernel running `body` for t < numel."""
    return f"def KERNEL({params}):\n    t = cuda.grid(1)\n    if t < {numel}:\n{indent(body, 2)}\n"


def affine(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """transpose, slice, expand: y[t] = x[base + the output coordinates times source strides]."""
    y = outs[0]
    base, src, what = view_strides(node, ins[0], y)
    dims, (_, si) = collapse(y.shape, strides(y.shape), src)
    read = offset("c", si)
    read = f"{base} + {read}" if base else read
    body = _flat([*_coords(dims), f"y[t] = x[{read}]"], y.numel, "x, y")
    note = f"{what} as {dims}, one thread per output"
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, grid=grid1(y.numel))


def concat(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    y = outs[0]
    axis = node.attrs["axis"] % y.rank
    inner = math.prod(y.shape[axis + 1:])
    row = y.shape[axis] * inner
    names = [f"x{i}" for i in range(len(ins))]
    lines, start = [f"o = t // {row}", f"r = t - o * {row}"], 0
    parts = [(n, t.shape[axis] * inner) for n, t in zip(names, ins, strict=True) if t.shape[axis]]
    for k, (name, width) in enumerate(parts):
        head = "else:" if k == len(parts) - 1 and k else f"{'el' if k else ''}if r < {start + width}:"
        lines += [head, f"    y[t] = {name}[o * {width} + r{f' - {start}' if start else ''}]"]
        start += width
    if len(parts) == 1:
        lines[-2:] = [lines[-1].strip()]
    body = _flat(lines, y.numel, ", ".join([*names, "y"]))
    note = f"concat {len(ins)} inputs on axis {axis}: {y.numel // row if row else 0} rows of {row}"
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note, grid=grid1(y.numel))


def _pad_axes(x: TensorType, pads) -> list[list[int]]:
    """Per axis [out size, low pad (>= 0), crop start, kept size, input stride]; runs of
    untouched axes are merged (they stay contiguous in input and output)."""
    r = x.rank
    merged: list[list[int]] = []
    after_untouched = False
    for d, lo, hi, st in zip(x.shape, pads[:r], pads[r:], strides(x.shape), strict=True):
        kept = d - max(-lo, 0) - max(-hi, 0)
        untouched = lo == hi == 0  # (a crop at the end alone still changes the input stride)
        if untouched and after_untouched:
            merged[-1][0] *= d
            merged[-1][3] *= d
            merged[-1][4] = st
        else:
            merged.append([kept + max(lo, 0) + max(hi, 0), max(lo, 0), max(-lo, 0), kept, st])
        after_untouched = untouched
    return merged or [[1, 0, 0, 1, 1]]


def _source(mode: str, k: int, lo: int, crop: int, kept: int, touched: bool) -> tuple[list[str], str]:
    """Lines mapping output coordinate c{k} to source coordinate q{k}; the in-range test a
    constant pad checks ("" when there is none)."""
    q, p = f"q{k}", f"c{k}" if not lo else f"(c{k} - {lo})"
    if not touched:
        return [f"{q} = {p}" if not crop else f"{q} = {p} + {crop}"], ""
    if mode == "constant":
        return [f"{q} = {p}", f"ok{k} = {q} >= 0 and {q} < {kept}", *([f"{q} += {crop}"] if crop else [])], f"ok{k}"
    if mode == "edge":
        lines = [f"{q} = min(max({p}, 0), {kept - 1})"]
    elif mode == "wrap":
        lines = [f"{q} = {p} % {kept}"]
    elif kept > 1:  # reflect: a triangle wave of period 2 * (kept - 1)
        lines = [f"{q} = {p} % {2 * (kept - 1)}", f"if {q} >= {kept}:", f"    {q} = {2 * (kept - 1)} - {q}"]
    else:
        lines = [f"{q} = 0"]
    return lines + ([f"{q} += {crop}"] if crop else []), ""


def pad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    y, mode, value = outs[0], node.attrs["mode"], node.attrs["value"]
    axes = _pad_axes(ins[0], node.attrs["pads"])
    lines, checks = _coords([a[0] for a in axes]), []
    for k, (size, lo, crop, kept, _) in enumerate(axes):
        more, check = _source(mode, k, lo, crop, kept, touched=size != kept or lo > 0)
        lines += more
        checks += [check] if check else []
    read = f"x[{offset('q', [a[4] for a in axes])}]"
    if checks:
        fill = f"{NP_NAMES[y.dtype]}(np.nan)" if y.dtype in FLOAT_DTYPES and math.isnan(value) else lit(value, y.dtype)
        read = f"{read} if {' and '.join(checks)} else {fill}"
    body = _flat([*lines, f"y[t] = {read}"], y.numel, "x, y")
    note = f"pad {mode} over merged axes {[a[0] for a in axes]}, one thread per output"
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, grid=grid1(y.numel))


def _merged(x: TensorType, axes: set[int]) -> list[tuple[int, int, bool]]:
    """(size, x stride, summed) per axis: size-1 axes dropped, runs of one kind merged."""
    out: list[tuple[int, int, bool]] = []
    for i, (d, st) in enumerate(zip(x.shape, strides(x.shape), strict=True)):
        if d == 1:
            continue
        if out and out[-1][2] == (i in axes):
            out[-1] = (out[-1][0] * d, st, i in axes)
        else:
            out.append((d, st, i in axes))
    return out


def reduce_sum(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x, y = ins[0], outs[0]
    axes = {a % x.rank for a in node.attrs["axes"]} if x.rank else set()
    dims = _merged(x, axes)
    kept = [(d, st) for d, st, summed in dims if not summed] or [(1, 0)]
    summed = [(d, st) for d, st, s in dims if s]
    init, _ = reduce_fold(node.op, x.dtype, "acc", "v")
    lines = [*_coords([d for d, _ in kept]), f"b = {offset('c', [st for _, st in kept])}", f"acc = {init}"]
    where = "b"
    for k, (d, st) in enumerate(summed):
        lines.append("    " * k + f"for s{k} in range({d}):")
        where += f" + s{k}" if st == 1 else f" + s{k} * {st}"
    if x.dtype == "bool" and node.op == "reduce_sum":
        add = [f"if x[{where}]:", "    acc += 1"]
    else:
        add = [f"v = x[{where}]", reduce_fold(node.op, x.dtype, "acc", "v")[1]]
    lines += ["    " * len(summed) + s for s in add]
    lines.append(f"y[t] = {'acc != 0' if y.dtype == 'bool' and node.op == 'reduce_sum' else 'acc'}")
    body = _flat(lines, y.numel, "x, y")
    shape = " x ".join(f"{'sum ' if s else ''}{d}" for d, _, s in dims)
    note = f"{node.op} over [{shape}], one thread per output"
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, grid=grid1(y.numel))


def arg_extreme(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x, y = ins[0], outs[0]
    outer, d, inner = arg_axes(x, node.attrs["axis"])
    better = arg_better(node.op, x.dtype, node.attrs["select_last_index"], "v", "best")
    lines = [f"base = (t // {inner}) * {d * inner} + t % {inner}" if inner > 1 else f"base = t * {d}",
             "best = x[base]", "where = 0",
             f"for k in range(1, {d}):", f"    v = x[base + k * {inner}]" if inner > 1 else "    v = x[base + k]",
             f"    if {better}:", "        best = v", "        where = k", "y[t] = where"]
    note = f"{node.op} over [{outer} | {d} | {inner}], one thread per output"
    return KernelSource(_flat(lines, y.numel, "x, y"), (node.inputs[0], node.outputs[0].name), note,
                        grid=grid1(y.numel))


TEMPLATES = {"transpose": plain_only(affine), "slice": plain_only(affine), "expand": plain_only(affine),
             "concat": plain_only(concat), "pad": plain_only(pad),
             **{op: plain_only(reduce_sum) for op in ("reduce_sum", "reduce_max", "reduce_min")},
             **{op: plain_only(arg_extreme) for op in ("arg_max", "arg_min")}}
