"""Normalisation kernels: batch_norm (inference), lrn and its gradient, softmax and log_softmax.

All arithmetic runs in float64 and is cast once on the store, exactly as the reference does, so
results match it to the last bit or two.

batch_norm: the per-channel affine `y = x * inv + shift` (inv = scale / sqrt(var + eps),
shift = bias - mean * inv) is computed once per (n, c) plane inside the kernel rather than packed
at compile time: a template cannot tell whether the statistics are params (packable) or values
computed at run time, and one sqrt per plane is noise next to its H*W multiply-adds.

softmax / log_softmax view x as [outer, L, inner] around the axis. With inner == 1 each row is
contiguous: max, sum of exp(x - max), store. Otherwise a block of up to 64 columns is swept along
L with float64 accumulators per column, so every pass reads contiguous memory.
"""

from __future__ import annotations

import math

from ....ir import Node, TensorType
from .common import PARALLEL_MIN, KernelSource, lit, plain_only, run_time_sizes

BLOCK = 64  # columns per block when the softmax axis is not the innermost


def _loop(par: bool) -> str:
    return "prange" if par else "range"


def _scratch(arrays: list[str], par: bool) -> tuple[list[str], list[str]]:
    """Allocations (before the loop, within it): a parallel loop needs one per iteration."""
    return ([], arrays) if par else (arrays, [])


def batch_norm(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x = ins[0]
    n, c = x.shape[:2]
    hw = x.numel // (n * c) if n * c else 0
    par = x.numel >= PARALLEL_MIN
    eps = lit(node.attrs["epsilon"], "f64")
    sizes, packed = run_time_sizes(node, n * c, hw)
    body = f"""\
def KERNEL(x, scale, bias, mean, var, sizes, y):
    c = scale.size
    hw = sizes[1]
    for p in {_loop(par)}(sizes[0]):
        ch = p % c
        inv = np.float64(scale[ch]) / math.sqrt(np.float64(var[ch]) + {eps})
        shift = np.float64(bias[ch]) - np.float64(mean[ch]) * inv
        for i in range(p * hw, (p + 1) * hw):
            y[i] = x[i] * inv + shift
"""
    note = "batch_norm over (image, channel) planes, float64 per-channel affine, sizes at run time"
    return KernelSource(body, (*node.inputs, sizes, node.outputs[0].name), note, parallel=par, packed=packed)


def _lrn_consts(a) -> dict:
    """The window (channels before and after, as in the reference) and the float64 literals."""
    size = a["size"]
    return dict(lo=(size - 1) // 2, hi=size // 2, k=lit(a["alpha"] / size, "f64"), bias=lit(a["bias"], "f64"),
                beta=lit(a["beta"], "f64"), nbeta=lit(-a["beta"], "f64"), nbeta1=lit(-a["beta"] - 1, "f64"),
                coef=lit(2 * a["alpha"] / size * a["beta"], "f64"))


def _plane_loop(x: TensorType, arrays: list[str], args: str) -> tuple[str, int, int]:
    """`def KERNEL(args):` and a (parallel) loop over the (n, c) planes, with per-plane float64
    scratch rows; returns (head, c, inner)."""
    n, c = x.shape[:2]
    inner = x.numel // (n * c) if n * c else 0
    par = x.numel >= PARALLEL_MIN
    before, within = _scratch([f"{a} = np.empty({inner}, np.float64)" for a in arrays], par)
    head = [*before, f"for p in {_loop(par)}({n * c}):", *("    " + s for s in within)]
    return f"def KERNEL({args}):\n" + "".join(f"    {s}\n" for s in head), c, inner


def _window_squares(row: str, centre: str, c: int, inner: int, lo: int, hi: int, ind: str) -> str:
    """Lines summing x^2 over the channels centre-lo .. centre+hi into the float64 `row`."""
    return f"""\
{ind}{row}[:] = 0.0
{ind}for q in range(max({centre} - {lo}, 0), min({centre} + {hi + 1}, {c})):
{ind}    for s in range({inner}):
{ind}        v = np.float64(x[base + q * {inner} + s])
{ind}        {row}[s] += v * v
"""


def lrn(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """Per (n, c) plane: sum the squares of the window's channel planes into a float64 row
    (contiguous reads), then scale the plane."""
    head, c, inner = _plane_loop(ins[0], ["acc"], "x, y")
    k = _lrn_consts(node.attrs)
    body = head + f"""\
        ch = p % {c}
        base = (p - ch) * {inner}
{_window_squares("acc", "ch", c, inner, k["lo"], k["hi"], " " * 8)}\
        for s in range({inner}):
            y[p * {inner} + s] = x[p * {inner} + s] / ({k["bias"]} + {k["k"]} * acc[s]) ** {k["beta"]}
"""
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), f"lrn size {node.attrs['size']}",
                        parallel=ins[0].numel >= PARALLEL_MIN)


def lrn_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """dx_q = dy_q s_q^-beta - 2 k beta x_q sum_{c = q-hi .. q+lo} dy_c x_c s_c^(-beta-1): per
    (n, q) plane, each channel c of the mirrored window has its s_c summed into a row (its own
    window of squares) and its term added to `t`; the plane's own s_q is kept when c reaches q.
    That recomputes each s about `size` times: lrn is rare and its windows short."""
    head, c, inner = _plane_loop(ins[1], ["acc", "own", "t"], "dy, x, dx")
    k = _lrn_consts(node.attrs)
    body = head + f"""\
        q0 = p % {c}
        base = (p - q0) * {inner}
        t[:] = 0.0
        for ch in range(max(q0 - {k["hi"]}, 0), min(q0 + {k["lo"] + 1}, {c})):
{_window_squares("acc", "ch", c, inner, k["lo"], k["hi"], " " * 12)}\
            if ch == q0:
                own[:] = acc
            for s in range({inner}):
                i = base + ch * {inner} + s
                t[s] += np.float64(dy[i]) * np.float64(x[i]) * ({k["bias"]} + {k["k"]} * acc[s]) ** {k["nbeta1"]}
        for s in range({inner}):
            i = p * {inner} + s
            dx[i] = (np.float64(dy[i]) * ({k["bias"]} + {k["k"]} * own[s]) ** {k["nbeta"]}
                     - {k["coef"]} * np.float64(x[i]) * t[s])
"""
    return KernelSource(body, (*node.inputs, node.outputs[0].name), f"lrn_grad size {node.attrs['size']}, float64",
                        parallel=ins[1].numel >= PARALLEL_MIN)


def _store(op: str, e: str, z: str) -> str:
    """y for one element: `e` is its exp(x - max) (softmax), `z` its x - max (log_softmax, where
    `s` already holds the log of the sum)."""
    return f"{e} / s" if op == "softmax" else f"{z} - s"


def _rows(op: str, outer: int, length: int, par: bool) -> str:
    keep = op == "softmax"  # softmax keeps exp(x - max) so exp runs once per element
    before, within = _scratch([f"e = np.empty({length}, np.float64)"] if keep else [], par)
    head = [*before, f"for o in {_loop(par)}({outer}):", *("    " + s for s in within)]
    return "def KERNEL(x, y):\n" + "".join(f"    {s}\n" for s in head) + f"""\
        b = o * {length}
        m = np.float64(x[b])
        for i in range(1, {length}):
            v = np.float64(x[b + i])
            if v > m or v != v:
                m = v
        s = 0.0
        for i in range({length}):
            v = math.exp(np.float64(x[b + i]) - m)
            {'e[i] = v' if keep else 'pass'}
            s += v
        {'pass' if keep else 's = math.log(s)'}
        for i in range({length}):
            y[b + i] = {_store(op, 'e[i]', '(np.float64(x[b + i]) - m)')}
"""


def _columns(op: str, outer: int, length: int, inner: int, par: bool) -> str:
    blk = min(BLOCK, inner)
    blocks = math.ceil(inner / blk)
    keep = op == "softmax"
    arrays = [f"m = np.empty({blk}, np.float64)", f"sums = np.empty({blk}, np.float64)"]
    before, within = _scratch(arrays + ([f"e = np.empty({length * blk}, np.float64)"] if keep else []), par)
    head = [*before, f"for t in {_loop(par)}({outer * blocks}):", *("    " + s for s in within)]
    return "def KERNEL(x, y):\n" + "".join(f"    {s}\n" for s in head) + f"""\
        o = t // {blocks}
        c0 = (t - o * {blocks}) * {blk}
        w = min({blk}, {inner} - c0)
        b = o * {length * inner} + c0
        for j in range(w):
            m[j] = np.float64(x[b + j])
            sums[j] = 0.0
        for l in range(1, {length}):
            for j in range(w):
                v = np.float64(x[b + l * {inner} + j])
                if v > m[j] or v != v:
                    m[j] = v
        for l in range({length}):
            for j in range(w):
                v = math.exp(np.float64(x[b + l * {inner} + j]) - m[j])
                {f'e[l * {blk} + j] = v' if keep else 'pass'}
                sums[j] += v
        {'pass' if keep else 'for j in range(w):'}
            {'pass' if keep else 'sums[j] = math.log(sums[j])'}
        for l in range({length}):
            for j in range(w):
                i = b + l * {inner} + j
                s = sums[j]
                y[i] = {_store(op, f'e[l * {blk} + j]', '(np.float64(x[i]) - m[j])')}
"""


def softmax(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x = ins[0]
    axis = node.attrs["axis"] % x.rank
    length = x.shape[axis]
    inner = math.prod(x.shape[axis + 1:])
    outer = math.prod(x.shape[:axis])
    par = x.numel >= PARALLEL_MIN
    if inner == 1:
        body, how = _rows(node.op, outer, length, par), "contiguous rows"
    else:
        body, how = _columns(node.op, outer, length, inner, par), f"column blocks of {BLOCK}"
    # a line one variant does not need is rendered as `pass`: drop it
    body = "".join(line for line in body.splitlines(keepends=True) if line.strip() != "pass")
    note = f"{node.op} over axis {axis} (length {length}), {how}, float64"
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, parallel=par)


TEMPLATES = {"batch_norm": plain_only(batch_norm), "lrn": plain_only(lrn), "lrn_grad": plain_only(lrn_grad),
             "softmax": plain_only(softmax),
             "log_softmax": plain_only(softmax)}
