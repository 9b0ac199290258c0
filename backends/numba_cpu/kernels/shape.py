"""Data-movement kernels: transpose, slice, expand, concat, pad. Any dtype; no arithmetic on the values.

transpose, slice, expand: loops over the output in order, reading the input at a literal base
offset through literal strides (permuted, times the slice steps, or 0 on a broadcast axis);
axes that stay adjacent in both are merged first, so a perm that moves whole blocks copies runs.
concat: x viewed as [outer, width] around the axis; each input's rows are copied into its column
range of the output rows (one argument per input).
pad: one loop per (merged) output axis; each level maps its output index to a source index
(constant: in range or not; edge: clamp; wrap: modulo; reflect: a triangle wave of period
2 * (n - 1)), and negative pads shift the source start (a crop).
"""

from __future__ import annotations

import math

from ....ir import Node, TensorType
from ....ir.types import FLOAT_DTYPES
from ...templating import view_strides
from .common import NP_NAMES, KernelSource, collapse, lit, nested_loops, plain_only, run_time_sizes, strides

# Data movement gains from a second thread only on big tensors: measured here (2 cores, OpenMP
# workers waiting passively), waking the pool costs ~20-40 us, and a contiguous f32 copy ran
# faster serially up to ~2**20 elements; strided gathers (transpose, pad's index maps) from ~2**18.
COPY_PARALLEL_MIN = 1 << 20
GATHER_PARALLEL_MIN = 1 << 18


def _loop(par: bool) -> str:
    return "prange" if par else "range"


def _affine_copy(node: Node, y: TensorType, base: int, src: list[int], what: str) -> KernelSource:
    """y[i] = x[base + sum(i_d * src_d)] over y in order: transpose, slice and expand are this
    with permuted, stepped (maybe negative) or zero source strides."""
    shape, (so, si) = collapse(y.shape, strides(y.shape), src)
    par = y.numel >= GATHER_PARALLEL_MIN and shape[0] > 1
    loops = nested_loops(shape, {"io": so, "ii": si}, [f"y[io] = x[{_plus('ii', base)}]"], par)
    note = f"{what} as {len(shape)} merged loop(s) {shape}"
    return KernelSource("def KERNEL(x, y):\n" + "\n".join(loops) + "\n",
                        (node.inputs[0], node.outputs[0].name), note, parallel=par)


def affine(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    base, src, what = view_strides(node, ins[0], outs[0])
    return _affine_copy(node, outs[0], base, src, what)


def concat(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """Shape-generic: y viewed as [outer, row] around the axis, input k filling columns of
    width w_k after the widths before it; outer, row and the widths come at run time, so the
    concats of one arity (and dtype) share a kernel."""
    y = outs[0]
    axis = node.attrs["axis"] % y.rank
    outer, inner = math.prod(y.shape[:axis]), math.prod(y.shape[axis + 1:])
    row = y.shape[axis] * inner
    par = y.numel >= COPY_PARALLEL_MIN
    names = [f"x{i}" for i in range(len(ins))]
    sizes, packed = run_time_sizes(node, outer, row, *(t.shape[axis] * inner for t in ins))
    lines = ["    row = sizes[1]", f"    for o in {_loop(par and outer > 1)}(sizes[0]):", "        off = 0"]
    for k, name in enumerate(names):
        lines += [f"        w = sizes[{k + 2}]",
                  f"        for i in {_loop(par and outer == 1)}(w):",
                  f"            y[o * row + off + i] = {name}[o * w + i]",
                  "        off += w"]
    body = f"def KERNEL({', '.join(names)}, sizes, y):\n" + "\n".join(lines[:-1]) + "\n"
    note = f"concat of {len(ins)} inputs, sizes at run time"
    return KernelSource(body, (*node.inputs, sizes, node.outputs[0].name), note, parallel=par, packed=packed)


def _pad_axes(x: TensorType, pads) -> list[list[int]]:
    """Per axis [out size, low pad (>= 0), crop start, kept size, input stride]; runs of
    untouched axes are merged (they stay contiguous in input and output)."""
    r = x.rank
    axes = []
    untouched = []
    for d, lo, hi, st in zip(x.shape, pads[:r], pads[r:], strides(x.shape), strict=True):
        kept = d - max(-lo, 0) - max(-hi, 0)
        axes.append([kept + max(lo, 0) + max(hi, 0), max(lo, 0), max(-lo, 0), kept, st])
        untouched.append(lo == hi == 0)  # a crop at the end alone still changes the input stride
    merged: list[list[int]] = []
    for k, ax in enumerate(axes):
        if untouched[k] and merged and k and untouched[k - 1] and merged[-1][0] == merged[-1][3]:
            prev = merged[-1]
            prev[0] *= ax[0]
            prev[3] *= ax[0]
            prev[4] = ax[4]
        else:
            merged.append(ax)
    return merged or [[1, 0, 0, 1, 1]]


def _plus(var: str, n: int) -> str:
    return var if n == 0 else f"{var} + {n}" if n > 0 else f"{var} - {-n}"


def _source_index(mode: str, kept: int, k: int, fast: bool) -> list[str]:
    """Lines binding `q{k}` to the source index in [0, kept) for `p{k}` (output index minus the
    low pad). With `fast`, indices inside [0, kept) skip the modulo (the innermost axis, where
    most elements are interior); not on the prange axis, where numba refuses to bind a name
    twice when it may alias the loop index."""
    q, p = f"q{k}", f"p{k}"
    if mode == "edge":
        return [f"{q} = min(max({p}, 0), {kept - 1})"]
    if mode == "wrap":
        mapped = [f"{q} = {p} % {kept}"]
    elif kept > 1:  # reflect: a triangle wave of period 2 * (kept - 1)
        period = 2 * (kept - 1)
        mapped = [f"r{q} = {p} % {period}", f"{q} = {period} - r{q} if r{q} >= {kept} else r{q}"]
    else:
        return [f"{q} = 0"]  # reflect of a single element
    if not fast:
        return mapped
    return [f"if {p} >= 0 and {p} < {kept}:", f"    {q} = {p}", "else:", *("    " + m for m in mapped)]


def _fill(value: float, dtype: str) -> str:
    if dtype in FLOAT_DTYPES and math.isnan(value):
        return f"{NP_NAMES[dtype]}(np.nan)"
    return lit(value, dtype)


def _pad_level(k: int, ax: list[int], out_stride: int, mode: str, fast: bool) -> tuple[list[str], str]:
    """Body lines of loop level k: its source offset `s{k}` and output offset `o{k}`; plus the
    in-range test `ok{k}` a constant pad checks at the store ("" when there is none)."""
    size, lo, crop, kept, st = ax
    lines, check, src = [f"p{k} = {_plus(f'j{k}', -lo)}"], "", f"p{k}"
    if (size != kept or lo) and mode == "constant":
        lines.append(f"ok{k} = p{k} >= 0 and p{k} < {kept}")
        check = f"ok{k}"
    elif size != kept or lo:
        lines += _source_index(mode, kept, k, fast)
        src = f"q{k}"
    src = f"({src} + {crop})" if crop else src
    lines.append(f"s{k} = " + (f"s{k - 1} + " if k else "") + (src if st == 1 else f"{src} * {st}"))
    dst = f"j{k}" if out_stride == 1 else f"j{k} * {out_stride}"
    lines.append(f"o{k} = " + (f"o{k - 1} + " if k else "") + dst)
    return lines, check


def pad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    y = outs[0]
    mode = node.attrs["mode"]
    axes = _pad_axes(ins[0], node.attrs["pads"])
    out_st = strides([a[0] for a in axes])
    par = y.numel >= GATHER_PARALLEL_MIN and axes[0][0] > 1
    lines, ind, checks = [], "    ", []
    last = len(axes) - 1
    for k, ax in enumerate(axes):
        lines.append(f"{ind}for j{k} in {_loop(par and k == 0)}({ax[0]}):")
        ind += "    "
        level, check = _pad_level(k, ax, out_st[k], mode, fast=k == last and not (par and k == 0))
        lines += [ind + s for s in level]
        checks += [check] if check else []
    value = f"x[s{last}]"
    if checks:
        value += f" if {' and '.join(checks)} else {_fill(node.attrs['value'], y.dtype)}"
    lines.append(f"{ind}y[o{last}] = {value}")
    note = f"pad {mode} over {len(axes)} merged axes {[a[0] for a in axes]}"
    body = "def KERNEL(x, y):\n" + "\n".join(lines) + "\n"
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, parallel=par)


TEMPLATES = {"transpose": plain_only(affine), "slice": plain_only(affine), "expand": plain_only(affine),
             "concat": plain_only(concat), "pad": plain_only(pad)}
