"""Normalisation kernels: softmax, log_softmax and lrn (batch_norm's inference form is an
elementwise kernel). Arithmetic runs in float64 and is cast once on the store, as the reference.

softmax / log_softmax view x as [outer, L, inner] around the axis; one thread per row of the
axis (outer * inner threads) makes three passes along it: the max, the sum of exp(x - max), the
store (softmax recomputes exp rather than keep a row of it). With inner > 1 adjacent threads
take adjacent columns, so every pass reads coalesced; with inner == 1 each thread walks its own
contiguous row.

lrn: one thread per element, summing the squares of its window of channels at its position.
"""

from __future__ import annotations

import math

from ....ir import Node, TensorType
from .common import KernelSource, grid1, indent, lit, plain_only


def axis_view(t: TensorType, axis: int) -> tuple[int, int, int]:
    """(outer, length, inner) of t around `axis`."""
    axis %= t.rank
    return math.prod(t.shape[:axis]), t.shape[axis], math.prod(t.shape[axis + 1:])


def row_start(length: int, inner: int) -> list[str]:
    """Lines binding thread t's row start `b` (its elements are b + l * inner)."""
    if inner == 1:
        return [f"b = t * {length}"]
    return [f"o = t // {inner}", f"b = o * {length * inner} + (t - o * {inner})"]


def at(length_var: str, inner: int) -> str:
    """The flat index of element `length_var` of the thread's row."""
    return f"b + {length_var}" if inner == 1 else f"b + {length_var} * {inner}"


def softmax(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    outer, length, inner = axis_view(ins[0], node.attrs["axis"])
    rows = outer * inner
    e = "math.exp(np.float64(x[k]) - m)"
    store = f"{e} / s" if node.op == "softmax" else "np.float64(x[k]) - m - s"
    body = f"""\
def KERNEL(x, y):
    t = cuda.grid(1)
    if t < {rows}:
{indent(row_start(length, inner), 2)}
        m = np.float64(x[b])
        for l in range(1, {length}):
            v = np.float64(x[{at('l', inner)}])
            if v > m or v != v:
                m = v
        s = np.float64(0.0)
        for l in range({length}):
            k = {at('l', inner)}
            s += {e}
        {'s = math.log(s)' if node.op == 'log_softmax' else 'pass'}
        for l in range({length}):
            k = {at('l', inner)}
            y[k] = {store}
"""
    body = "".join(line for line in body.splitlines(keepends=True) if line.strip() != "pass")
    note = f"{node.op} over {rows} rows of {length} (stride {inner}), one thread per row, float64"
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, grid=grid1(rows))


def lrn(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a, x = node.attrs, ins[0]
    c = x.shape[1]
    inner = math.prod(x.shape[2:])
    size = a["size"]
    lo, hi = (size - 1) // 2, size // 2  # channels before and after, as in the reference
    k, bias, beta = lit(a["alpha"] / size, "f64"), lit(a["bias"], "f64"), lit(a["beta"], "f64")
    body = f"""\
def KERNEL(x, y):
    t = cuda.grid(1)
    if t < {x.numel}:
        nc = t // {inner}
        ch = nc % {c}
        base = t - ch * {inner}
        acc = np.float64(0.0)
        for q in range(max(ch - {lo}, 0), min(ch + {hi + 1}, {c})):
            v = np.float64(x[base + q * {inner}])
            acc += v * v
        y[t] = np.float64(x[t]) / ({bias} + {k} * acc) ** {beta}
"""
    return KernelSource(body, (node.inputs[0], node.outputs[0].name),
                        f"lrn size {size}, one thread per element, float64", grid=grid1(x.numel))


TEMPLATES = {"softmax": plain_only(softmax), "log_softmax": plain_only(softmax), "lrn": plain_only(lrn)}
