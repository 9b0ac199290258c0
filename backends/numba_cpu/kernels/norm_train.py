"""Training normalisation kernels: batch_norm_train, batch_norm_grad, softmax_grad.

All statistics and arithmetic run in float64 and are cast once on the store, in the
reference's order of operations, so results match it to the last bit or two.

batch_norm_train / batch_norm_grad: one parallel job per channel, walking its N planes of H*W
(contiguous runs). batch_norm_train reads x three times (mean, then the variance as the mean of
squared deviations, exactly as numpy's var, then y); batch_norm_grad twice (the two sums, then
dx). The running statistics are blended as the reference does: `running * momentum` in the
tensor's dtype (numpy multiplies an f32 array by a Python float in f32), the rest in float64.
The sums run in helpers compiled with fastmath's `reassoc` alone, so LLVM may split them into
vector lanes (still float64, no contraction into FMAs), over views of each run from index 0;
summing in order, one add's latency at a time, took ResNet-20 b64's batch norms 23 ms a step.

softmax_grad views dy and y as [outer, L, inner] around the axis, like softmax: contiguous rows
when inner == 1, otherwise blocks of up to 64 columns swept along L with a float64 sum each.
"""

from __future__ import annotations

import math

from ....ir import Node, TensorType
from .common import JOB_DECORATOR, PARALLEL_MIN, KernelSource, lit, plain_only
from .norm import BLOCK


def _loop(par: bool) -> str:
    return "prange" if par else "range"


def _channels(x: TensorType) -> tuple[int, int, int]:
    n, c = x.shape[:2]
    return n, c, math.prod(x.shape[2:])


REASSOC = JOB_DECORATOR.format(fastmath="{'reassoc'}")  # may reorder sums: vectorised, still float64


def _over_channel(n: int, c: int, hw: int, arrays: str, lines: list[str], ind: int = 8) -> list[str]:
    """`lines` for every element i of channel ch, `arrays` ("x, y") bound to views of the
    channel's run in each image (all of it, strided, when hw == 1). Views from 0 drop numba's
    negative-index test, so LLVM vectorises."""
    pad = " " * ind
    names = [a.strip() for a in arrays.split(",")]
    if hw == 1:
        head = [f"{pad}{a}v = {a}[ch::{c}]" for a in names]
        return head + [f"{pad}for i in range({n}):", *(f"{pad}    {s}" for s in lines)]
    head = [f"{pad}for n in range({n}):", f"{pad}    b = (n * {c} + ch) * {hw}"]
    head += [f"{pad}    {a}v = {a}[b:b + {hw}]" for a in names]
    return head + [f"{pad}    for i in range({hw}):", *(f"{pad}        {s}" for s in lines)]


def batch_norm_train(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x, a = ins[0], node.attrs
    n, c, hw = _channels(x)
    count = n * hw
    par = x.numel >= PARALLEL_MIN
    m = a["momentum"]
    run_var = f"var * {count} / {count - 1}" if a["unbiased_running_var"] else "var"
    lines = [
        REASSOC,
        "def KERNEL_stats(x, ch):",
        "    s = 0.0",
        *_over_channel(n, c, hw, "x", ["s += xv[i]"], 4),
        f"    mu = s / {count}",
        "    q = 0.0",
        *_over_channel(n, c, hw, "x", ["d = xv[i] - mu", "q += d * d"], 4),
        f"    return mu, q / {count}",
        "",
        "",
        "def KERNEL(x, scale, bias, running_mean, running_var, y, mean, invstd, new_mean, new_var):",
        f"    for ch in {_loop(par)}({c}):",
        "        mu, var = KERNEL_stats(x, ch)",
        f"        inv = 1.0 / math.sqrt(var + {a['epsilon']!r})",
        "        k = inv * scale[ch]",
        "        shift = np.float64(bias[ch])",
        *_over_channel(n, c, hw, "x, y", ["yv[i] = (xv[i] - mu) * k + shift"]),
        "        mean[ch] = mu",
        "        invstd[ch] = inv",
        f"        new_mean[ch] = running_mean[ch] * {lit(m, x.dtype)} + mu * {1 - m!r}",
        f"        new_var[ch] = running_var[ch] * {lit(m, x.dtype)} + {run_var} * {1 - m!r}",
    ]
    note = f"batch_norm_train: {c} channels of {n}x{hw}, float64 statistics"
    return KernelSource("\n".join(lines) + "\n", (*node.inputs, *node.output_names), note, parallel=par)


def batch_norm_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """xhat = (x - mean) * invstd; dbias = sum dy, dscale = sum dy * xhat,
    dx = scale * invstd / count * (count * dy - dbias - xhat * dscale)."""
    x = ins[1]
    n, c, hw = _channels(x)
    count = n * hw
    par = x.numel >= PARALLEL_MIN
    lines = [
        REASSOC,
        "def KERNEL_sums(dy, x, ch, mu, inv):",
        "    sb = 0.0",
        "    ss = 0.0",
        *_over_channel(n, c, hw, "dy, x", ["d = np.float64(dyv[i])", "sb += d", "ss += d * ((xv[i] - mu) * inv)"], 4),
        "    return sb, ss",
        "",
        "",
        "def KERNEL(dy, x, scale, mean, invstd, dx, dscale, dbias):",
        f"    for ch in {_loop(par)}({c}):",
        "        mu = np.float64(mean[ch])",
        "        inv = np.float64(invstd[ch])",
        "        sb, ss = KERNEL_sums(dy, x, ch, mu, inv)",
        f"        k = np.float64(scale[ch]) * inv / {count}",
        *_over_channel(n, c, hw, "dy, x, dx",
                       [f"dxv[i] = k * ({count} * np.float64(dyv[i]) - sb - (xv[i] - mu) * inv * ss)"]),
        "        dscale[ch] = ss",
        "        dbias[ch] = sb",
    ]
    note = f"batch_norm_grad: {c} channels of {n}x{hw}, float64 sums"
    return KernelSource("\n".join(lines) + "\n", (*node.inputs, *node.output_names), note, parallel=par)


def _softmax_value(log: bool, dyv: str, yv: str) -> tuple[str, str]:
    """(the term summed along the axis, dx from it and the sum `s`)."""
    if log:
        return dyv, f"{dyv} - math.exp({yv}) * s"
    return f"{dyv} * {yv}", f"{yv} * ({dyv} - s)"


def _softmax_rows(log: bool, outer: int, length: int, par: bool) -> str:
    term, value = _softmax_value(log, "np.float64(dy[b + i])", "np.float64(y[b + i])")
    return f"""\
def KERNEL(dy, y, dx):
    for o in {_loop(par)}({outer}):
        b = o * {length}
        s = 0.0
        for i in range({length}):
            s += {term}
        for i in range({length}):
            dx[b + i] = {value}
"""


def _softmax_columns(log: bool, outer: int, length: int, inner: int, par: bool) -> str:
    blk = min(BLOCK, inner)
    blocks = -(-inner // blk)
    term, value = _softmax_value(log, "np.float64(dy[i])", "np.float64(y[i])")
    return f"""\
def KERNEL(dy, y, dx):
    for t in {_loop(par)}({outer * blocks}):
        sums = np.zeros({blk}, np.float64)
        o = t // {blocks}
        c0 = (t - o * {blocks}) * {blk}
        w = min({blk}, {inner} - c0)
        b = o * {length * inner} + c0
        for l in range({length}):
            for j in range(w):
                i = b + l * {inner} + j
                sums[j] += {term}
        for l in range({length}):
            for j in range(w):
                i = b + l * {inner} + j
                s = sums[j]
                dx[i] = {value}
"""


def softmax_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    y = ins[1]
    axis = node.attrs["axis"] % y.rank
    length, inner, outer = y.shape[axis], math.prod(y.shape[axis + 1:]), math.prod(y.shape[:axis])
    par = y.numel >= PARALLEL_MIN
    log = node.attrs["log"]
    if inner == 1:
        body, how = _softmax_rows(log, outer, length, par), "contiguous rows"
    else:
        body, how = _softmax_columns(log, outer, length, inner, par), f"column blocks of {BLOCK}"
    note = f"{'log_' if log else ''}softmax_grad over axis {axis} (length {length}), {how}, float64"
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note, parallel=par)


TEMPLATES = {"batch_norm_train": plain_only(batch_norm_train), "batch_norm_grad": plain_only(batch_norm_grad),
             "softmax_grad": plain_only(softmax_grad)}
