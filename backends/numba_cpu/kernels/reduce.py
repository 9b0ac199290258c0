"""reduce_sum, reduce_max and reduce_min over any axes, and arg_max / arg_min along one. Sums: floats in float64 (as the
reference), integers in int64 (uint64 for u64; the cast back wraps as numpy's astype does),
bools counted then tested. Max and min: in the input's dtype, from -inf / +inf (the dtype's
limits for integers, so an empty reduction gives them), a NaN kept once seen.

Axes of size 1 are dropped and neighbours of the same kind (kept or summed) merged, so x is
[d0, d1, ...] with kinds alternating. The jobs own disjoint outputs:
- last axis summed (bias gradients of a conv, axes (0, 2, 3): [N | C | H*W]): one job per
  output, a scalar sum over the summed axes, whose innermost run is contiguous;
- last axis kept (a linear layer's bias gradient, axes (0,): [N | K]): one job per output row
  and block of up to 256 columns, a row of sums swept down the summed axes, so every read is
  a contiguous run of the block.
arg_max / arg_min see x as [outer, d, inner] around the axis: with inner 1, a job per output
scans a contiguous run of d; otherwise a job per outer row and block of inner columns keeps a
row of best values and indices, swept down the axis (contiguous reads, as for the sums).
"""

from __future__ import annotations

import math

from ....ir import Node, TensorType
from ....ir.types import FLOAT_DTYPES
from ...templating import arg_axes, arg_better, reduce_fold
from .common import NP_NAMES, PARALLEL_MIN, KernelSource, nested_loops, plain_only, strides

BLOCK = 256  # columns per job when the last axis is kept


def _merged(x: TensorType, axes: set[int]) -> list[tuple[int, bool]]:
    """(size, summed) per axis, size-1 axes dropped, runs of one kind merged."""
    out: list[tuple[int, bool]] = []
    for i, d in enumerate(x.shape):
        if d == 1:
            continue
        if out and out[-1][1] == (i in axes):
            out[-1] = (out[-1][0] * d, i in axes)
        else:
            out.append((d, i in axes))
    return out


def _accumulator(dtype: str) -> str:
    return "np.float64" if dtype in FLOAT_DTYPES else "np.uint64" if dtype == "u64" else "np.int64"


def _kept_index(kept: list[tuple[int, int]]) -> str:
    """x offset of output row `ko`, from the kept axes' (size, x stride), outermost first."""
    terms, inner = [], 1
    for size, st in reversed(kept):
        idx = "ko" if inner == 1 else f"(ko // {inner})"
        idx = idx if inner * size == math.prod(s for s, _ in kept) else f"{idx} % {size}"
        terms.append(idx if st == 1 else f"{idx} * {st}")
        inner *= size
    return " + ".join(reversed(terms)) or "0"


def reduce_sum(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x, y = ins[0], outs[0]
    axes = {a % x.rank for a in node.attrs["axes"]} if x.rank else set()
    dims = _merged(x, axes) or [(1, False)]
    st = strides([d for d, _ in dims])
    row = not dims[-1][1]  # the last axis is kept: sum rows of columns
    width = dims[-1][0] if row else 1
    kept = [(d, s) for (d, summed), s in zip(dims[:-1] if row else dims, st, strict=False) if not summed]
    summed = [(d, s) for (d, is_summed), s in zip(dims, st, strict=True) if is_summed] or [(1, 0)]
    blk = min(BLOCK, width)
    blocks = -(-width // blk)
    outer = math.prod(d for d, _ in kept)
    jobs = outer * blocks
    par = x.numel >= PARALLEL_MIN and jobs > 1
    init, _ = reduce_fold(node.op, x.dtype, "acc", "v")
    acc = _accumulator(x.dtype) if node.op == "reduce_sum" else NP_NAMES[x.dtype]
    store = "acc != 0" if y.dtype == "bool" and node.op == "reduce_sum" else "acc"
    add = [f"for l in range({'w' if blocks > 1 else width}):", "    v = x[base + b + l]",
           "    " + reduce_fold(node.op, x.dtype, "acc[l]", "v")[1]] if row else \
        ["v = x[base + b]", reduce_fold(node.op, x.dtype, "acc", "v")[1]]
    loops = nested_loops([d for d, _ in summed], {"b": [s for _, s in summed]}, add, parallel=False, indent=2)
    if row and blocks == 1:
        head = ["ko = job", f"base = {_kept_index(kept)}", f"acc = np.full({width}, {init}, {acc})"]
        tail = [f"for l in range({width}):", f"    y[ko * {width} + l] = {store.replace('acc', 'acc[l]')}"]
    elif row:
        head = [f"ko = job // {blocks}", f"l0 = (job % {blocks}) * {blk}", f"w = min({blk}, {width} - l0)",
                f"base = {_kept_index(kept)} + l0", f"acc = np.full({blk}, {init}, {acc})"]
        tail = ["for l in range(w):", f"    y[ko * {width} + l0 + l] = {store.replace('acc', 'acc[l]')}"]
    else:
        head = ["ko = job", f"base = {_kept_index(kept)}", f"acc = {init}"]
        tail = [f"y[ko] = {store}"]
    lines = ["def KERNEL(x, y):", f"    for job in {'prange' if par else 'range'}({jobs}):",
             *("        " + s for s in head), *loops, *("        " + s for s in tail)]
    what = node.op.removeprefix("reduce_")
    shape = " x ".join(f"{what + ' ' if s else ''}{d}" for d, s in dims)
    how = f"rows of {width} in blocks of {blk}" if row else "one sum per output"
    return KernelSource("\n".join(lines) + "\n", (node.inputs[0], node.outputs[0].name),
                        f"{node.op} over [{shape}], {how}", parallel=par)


def arg_extreme(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x = ins[0]
    outer, d, inner = arg_axes(x, node.attrs["axis"])
    last = node.attrs["select_last_index"]
    blk = min(BLOCK, inner)
    blocks = -(-inner // blk)
    jobs = outer * blocks
    par = x.numel >= PARALLEL_MIN and jobs > 1
    if inner == 1:
        body = ["base = job * " + str(d), "best = x[base]", "where = 0",
                f"for k in range(1, {d}):", "    v = x[base + k]",
                f"    if {arg_better(node.op, x.dtype, last, 'v', 'best')}:",
                "        best = v", "        where = k", "y[job] = where"]
        how = f"a scan of {d} per output"
    else:
        body = [f"o = job // {blocks}", f"l0 = (job % {blocks}) * {blk}", f"w = min({blk}, {inner} - l0)",
                f"base = o * {d * inner} + l0", f"best = np.empty({blk}, {NP_NAMES[x.dtype]})",
                f"where = np.zeros({blk}, np.int64)",
                "for l in range(w):", "    best[l] = x[base + l]",
                f"for k in range(1, {d}):", f"    row = base + k * {inner}",
                "    for l in range(w):", "        v = x[row + l]",
                f"        if {arg_better(node.op, x.dtype, last, 'v', 'best[l]')}:",
                "            best[l] = v", "            where[l] = k",
                "for l in range(w):", f"    y[o * {inner} + l0 + l] = where[l]"]
        how = f"rows of {inner} in blocks of {blk}"
    lines = ["def KERNEL(x, y):", f"    for job in {'prange' if par else 'range'}({jobs}):",
             *("        " + s for s in body)]
    note = f"{node.op} over [{outer} | {d} | {inner}]{' last index' if last else ''}, {how}"
    return KernelSource("\n".join(lines) + "\n", (node.inputs[0], node.outputs[0].name), note, parallel=par)


TEMPLATES = {op: plain_only(reduce_sum) for op in ("reduce_sum", "reduce_max", "reduce_min")}
TEMPLATES |= {op: plain_only(arg_extreme) for op in ("arg_max", "arg_min")}
