"""softmax_cross_entropy (the mean loss, a 0-d value: one element) and its gradient.

Per kept row, in float64 as the reference: m = max, s = sum exp(x - m); the row's loss is
-(x[label] - m - log s), its gradient softmax - onehot(label), both divided by the number of
kept rows (the mask's count; at least 1). Rows the mask drops are not read (their labels may be
anything) and get a zero gradient. A kept row whose label is out of range, which the reference
refuses, makes the loss and that row's gradient NaN instead of reading out of bounds.

softmax_cross_entropy: a single block; its threads stride over the rows, each adding up its
rows' losses (and, with a mask, its kept-row count), then one shared-memory tree sum.
softmax_cross_entropy_grad: one thread per row. With a mask every block first counts the mask
itself (a strided pass and a tree sum: N reads a block, no second launch, no atomics).
"""

from __future__ import annotations

from ....ir import Node, TensorType
from .blocksum import block_sum, block_threads
from .common import KernelSource, grid1, indent, lit, plain_only


def _row_stats(k: int) -> list[str]:
    """Lines binding row r's start `b`, max `m`, the log of its sum of exp(x - m) `ls`, and its
    label."""
    return [f"b = r * {k}", "m = np.float64(x[b])", f"for j in range(1, {k}):", "    v = np.float64(x[b + j])",
            "    if v > m or v != v:", "        m = v", "s = np.float64(0.0)", f"for j in range({k}):",
            "    s += math.exp(np.float64(x[b + j]) - m)", "ls = math.log(s)", "label = np.int64(labels[r])"]


def _params(node: Node, out: str) -> str:
    return f"x, labels, {'mask, ' if len(node.inputs) > 2 else ''}{out}"


def _note(node: Node, ins: list[TensorType], how: str) -> str:
    n, k = ins[0].shape
    return f"{node.op} over {n} rows of {k}{', masked' if len(node.inputs) > 2 else ''}, {how}, float64"


def softmax_cross_entropy(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    n, k = ins[0].shape
    masked = len(node.inputs) > 2
    threads = block_threads(n)
    row = [*_row_stats(k), f"if label >= 0 and label < {k}:", "    total += np.float64(x[b + label]) - m - ls",
           "else:", "    total += math.nan"]
    if masked:
        row = ["if mask[r]:", "    count += 1.0", *("    " + s for s in row)]
    lines = ["tid = cuda.threadIdx.x", "total = np.float64(0.0)", *(["count = np.float64(0.0)"] if masked else []),
             f"for r in range(tid, {n}, {threads}):", *("    " + s for s in row),
             *block_sum(["total", "count"] if masked else ["total"], threads),
             "if tid == 0:", f"    loss[0] = -total / {'max(count, 1.0)' if masked else n}"]
    body = f"def KERNEL({_params(node, 'loss')}):\n{indent(lines)}\n"
    return KernelSource(body, (*node.inputs, node.outputs[0].name),
                        _note(node, ins, f"one block of {threads}"), grid=(1, threads))


def softmax_cross_entropy_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    n, k = ins[0].shape
    masked = len(node.inputs) > 2
    blocks, threads = grid1(n, block_threads(n))
    row = [*_row_stats(k), f"bad = label < 0 or label >= {k}", f"for j in range({k}):",
           "    p = math.exp(np.float64(x[b + j]) - m - ls)", "    if j == label:", "        p -= 1.0",
           "    dx[b + j] = math.nan if bad else p / count"]
    lines = ["tid = cuda.threadIdx.x"]
    if masked:
        lines += ["count = np.float64(0.0)", f"for r in range(tid, {n}, {threads}):", "    if mask[r]:",
                  "        count += 1.0", *block_sum(["count"], threads), "count = max(count, 1.0)"]
        dropped = [f"for j in range({k}):", f"    dx[r * {k} + j] = {lit(0, ins[0].dtype)}"]
        row = ["if mask[r]:", *("    " + s for s in row), "else:", *("    " + s for s in dropped)]
    else:
        lines.append(f"count = np.float64({n})")
    lines += [f"r = cuda.blockIdx.x * {threads} + tid", f"if r < {n}:", *("    " + s for s in row)]
    body = f"def KERNEL({_params(node, 'dx')}):\n{indent(lines)}\n"
    how = "one thread per row" + (", each block counting the mask" if masked else "")
    return KernelSource(body, (*node.inputs, node.outputs[0].name), _note(node, ins, how), grid=(blocks, threads))


TEMPLATES = {"softmax_cross_entropy": plain_only(softmax_cross_entropy),
             "softmax_cross_entropy_grad": plain_only(softmax_cross_entropy_grad)}
