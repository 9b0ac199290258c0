"""Normalisation kernels: softmax, log_softmax and lrn (batch_norm's inference form is an
elementwise kernel). Arithmetic runs in float64 and is cast once on the store, as the reference.

softmax / log_softmax view x as [outer, L, inner] around the axis; one thread per row of the
axis (outer * inner threads) makes three passes along it: the max, the sum of exp(x - max), the
store (softmax recomputes exp rather than keep a row of it). With inner > 1 adjacent threads
take adjacent columns, so every pass reads coalesced; with inner == 1 each thread walks its own
contiguous row.

lrn: one thread per element, summing the squares of its window of channels at its position;
lrn_grad likewise, over the window mirrored (every channel whose window holds its own).
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


def _lrn_setup(node: Node, x: TensorType) -> tuple[dict, str]:
    """Literals of the lrn window and the lines binding thread t's channel `ch` and the start
    `base` of its image's channel 0 at its position (its channel q is at base + q * inner)."""
    a, c, inner = node.attrs, x.shape[1], math.prod(x.shape[2:])
    size = a["size"]
    k = dict(lo=(size - 1) // 2, hi=size // 2, c=c, inner=inner, k=lit(a["alpha"] / size, "f64"),
             bias=lit(a["bias"], "f64"), beta=lit(a["beta"], "f64"), nbeta=lit(-a["beta"], "f64"), nbeta1=lit(-a["beta"] - 1, "f64"),
             coef=lit(2 * a["alpha"] / size * a["beta"], "f64"))
    return k, f"""\
        ch = (t // {inner}) % {c}
        base = t - ch * {inner}
"""


def _lrn_denominator(k: dict, centre: str, out: str, ind: str) -> str:
    """Lines setting `out` to bias + k * (sum of x^2 over the window around channel `centre`)."""
    return f"""\
{ind}{out} = np.float64(0.0)
{ind}for q in range(max({centre} - {k["lo"]}, 0), min({centre} + {k["hi"] + 1}, {k["c"]})):
{ind}    v = np.float64(x[base + q * {k["inner"]}])
{ind}    {out} += v * v
{ind}{out} = {k["bias"]} + {k["k"]} * {out}
"""


def lrn(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x = ins[0]
    k, setup = _lrn_setup(node, x)
    body = f"""\
def KERNEL(x, y):
    t = cuda.grid(1)
    if t < {x.numel}:
{setup}{_lrn_denominator(k, "ch", "s", " " * 8)}\
        y[t] = np.float64(x[t]) / s ** {k["beta"]}
"""
    return KernelSource(body, (node.inputs[0], node.outputs[0].name),
                        f"lrn size {node.attrs['size']}, one thread per element, float64", grid=grid1(x.numel))


def lrn_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """dx_q = dy_q s_q^-beta - 2 k beta x_q sum_{c = q-hi .. q+lo} dy_c x_c s_c^(-beta-1): one
    thread per element, each s_c of the mirrored window summed afresh (size^2 reads)."""
    x = ins[1]
    k, setup = _lrn_setup(node, x)
    body = f"""\
def KERNEL(dy, x, dx):
    t = cuda.grid(1)
    if t < {x.numel}:
{setup}\
        acc = np.float64(0.0)
        own = np.float64(1.0)
        for c2 in range(max(ch - {k["hi"]}, 0), min(ch + {k["lo"] + 1}, {k["c"]})):
{_lrn_denominator(k, "c2", "s", " " * 12)}\
            if c2 == ch:
                own = s
            i = base + c2 * {k["inner"]}
            acc += np.float64(dy[i]) * np.float64(x[i]) * s ** {k["nbeta1"]}
        dx[t] = np.float64(dy[t]) * own ** {k["nbeta"]} - {k["coef"]} * np.float64(x[t]) * acc
"""
    return KernelSource(body, (*node.inputs, node.outputs[0].name),
                        f"lrn_grad size {node.attrs['size']}, one thread per element, float64", grid=grid1(x.numel))


TEMPLATES = {"softmax": plain_only(softmax), "log_softmax": plain_only(softmax), "lrn": plain_only(lrn),
             "lrn_grad": plain_only(lrn_grad)}
