"""Training normalisation kernels: batch_norm_train, batch_norm_grad, softmax_grad. Statistics
and arithmetic run in float64, in the reference's order, and are cast once on the store.

batch_norm_train / batch_norm_grad: one block per channel. Its threads stride over the
channel's N * H*W values (adjacent threads, adjacent positions of a plane: coalesced), each
adding up a float64 partial, and a shared-memory tree (kernels/blocksum.py) gives every thread
the channel's sums. batch_norm_train reads x three times (the mean, then the variance as the
mean of squared deviations, exactly as numpy's var, then y); batch_norm_grad twice (its two
sums, then dx). The running statistics blend as the reference does: `running * momentum` in the
tensor's dtype (numpy multiplies an f32 array by a Python float in f32), the rest in float64.

softmax_grad: one thread per row of the axis, as softmax (kernels/norm.py): the sum along the
row, then dx.
"""

from __future__ import annotations

import math

from ....ir import Node, TensorType
from .blocksum import block_sum, block_threads
from .common import KernelSource, grid1, indent, lit, plain_only
from .norm import at, axis_view, row_start


def _channel_loop(c: int, hw: int, count: int, threads: int, lines: list[str]) -> list[str]:
    """`lines` for each element index i of the block's channel `ch` this thread owns."""
    where = [f"i = k * {c} + ch"] if hw == 1 else [f"n = k // {hw}", f"i = (n * {c} + ch) * {hw} + k - n * {hw}"]
    return [f"for k in range(tid, {count}, {threads}):", *("    " + s for s in where + lines)]


def _geometry(x: TensorType) -> tuple[int, int, int, int]:
    """(channels, H*W, values per channel, threads per block)."""
    c, hw = x.shape[1], math.prod(x.shape[2:])
    count = x.numel // c
    return c, hw, count, block_threads(count)


def batch_norm_train(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    x, a = ins[0], node.attrs
    c, hw, count, threads = _geometry(x)
    m = a["momentum"]
    run_var = f"var * {count} / {count - 1}" if a["unbiased_running_var"] else "var"
    lines = [
        "ch = cuda.blockIdx.x",
        "tid = cuda.threadIdx.x",
        "s = np.float64(0.0)",
        *_channel_loop(c, hw, count, threads, ["s += np.float64(x[i])"]),
        *block_sum(["s"], threads),
        f"mu = s / {count}",
        "d2 = np.float64(0.0)",
        *_channel_loop(c, hw, count, threads, ["d = np.float64(x[i]) - mu", "d2 += d * d"]),
        *block_sum(["d2"], threads),
        f"var = d2 / {count}",
        f"inv = 1.0 / math.sqrt(var + {a['epsilon']!r})",
        "k2 = inv * np.float64(scale[ch])",
        "shift = np.float64(bias[ch])",
        *_channel_loop(c, hw, count, threads, ["y[i] = (np.float64(x[i]) - mu) * k2 + shift"]),
        "if tid == 0:",
        "    mean[ch] = mu",
        "    invstd[ch] = inv",
        f"    new_mean[ch] = running_mean[ch] * {lit(m, x.dtype)} + mu * {1 - m!r}",
        f"    new_var[ch] = running_var[ch] * {lit(m, x.dtype)} + {run_var} * {1 - m!r}",
    ]
    body = ("def KERNEL(x, scale, bias, running_mean, running_var, y, mean, invstd, new_mean, new_var):\n"
            + indent(lines) + "\n")
    note = f"batch_norm_train: a block of {threads} per channel ({c}) of {count} values, float64 tree sums"
    return KernelSource(body, (*node.inputs, *node.output_names), note, grid=(c, threads))


def batch_norm_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """xhat = (x - mean) * invstd; dbias = sum dy, dscale = sum dy * xhat,
    dx = scale * invstd / count * (count * dy - dbias - xhat * dscale)."""
    c, hw, count, threads = _geometry(ins[1])
    lines = [
        "ch = cuda.blockIdx.x",
        "tid = cuda.threadIdx.x",
        "mu = np.float64(mean[ch])",
        "inv = np.float64(invstd[ch])",
        "sb = np.float64(0.0)",
        "ss = np.float64(0.0)",
        *_channel_loop(c, hw, count, threads, ["d = np.float64(dy[i])", "sb += d",
                                               "ss += d * ((np.float64(x[i]) - mu) * inv)"]),
        *block_sum(["sb", "ss"], threads),
        f"k2 = np.float64(scale[ch]) * inv / {count}",
        *_channel_loop(c, hw, count, threads,
                       [f"dx[i] = k2 * ({count} * np.float64(dy[i]) - sb - (np.float64(x[i]) - mu) * inv * ss)"]),
        "if tid == 0:",
        "    dscale[ch] = ss",
        "    dbias[ch] = sb",
    ]
    body = "def KERNEL(dy, x, scale, mean, invstd, dx, dscale, dbias):\n" + indent(lines) + "\n"
    note = f"batch_norm_grad: a block of {threads} per channel ({c}) of {count} values, float64 tree sums"
    return KernelSource(body, (*node.inputs, *node.output_names), note, grid=(c, threads))


def softmax_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy)."""
    outer, length, inner = axis_view(ins[1], node.attrs["axis"])
    rows = outer * inner
    dyv, yv = "np.float64(dy[k])", "np.float64(y[k])"
    if node.attrs["log"]:
        term, value = dyv, f"{dyv} - math.exp({yv}) * s"
    else:
        term, value = f"{dyv} * {yv}", f"{yv} * ({dyv} - s)"
    body = f"""\
def KERNEL(dy, y, dx):
    t = cuda.grid(1)
    if t < {rows}:
{indent(row_start(length, inner), 2)}
        s = np.float64(0.0)
        for l in range({length}):
            k = {at('l', inner)}
            s += {term}
        for l in range({length}):
            k = {at('l', inner)}
            dx[k] = {value}
"""
    note = f"{'log_' if node.attrs['log'] else ''}softmax_grad over {rows} rows of {length}, one thread per row"
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note, grid=grid1(rows))


TEMPLATES = {"batch_norm_train": plain_only(batch_norm_train), "batch_norm_grad": plain_only(batch_norm_grad),
             "softmax_grad": plain_only(softmax_grad)}
