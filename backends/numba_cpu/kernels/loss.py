"""softmax_cross_entropy (the mean loss, a 0-d value: one element) and its gradient.

Per kept row, in float64 as the reference: m = max, s = sum exp(x - m); the row's loss is
-(x[label] - m - log s), and its gradient softmax - onehot(label), both divided by the number of
kept rows (the mask's count, computed first; at least 1). Rows the mask drops are not read (their
labels may be anything) and get a zero gradient. A kept row whose label is out of range, which
the reference refuses, makes the loss and that row's gradient NaN instead of reading out of
bounds: training then visibly fails rather than silently learning from a wrong class.
"""

from __future__ import annotations

from ....ir import Node, TensorType
from .common import PARALLEL_MIN, KernelSource, lit, plain_only


def _row_stats(k: int) -> list[str]:
    """Lines binding row r's start `b`, max `m`, the log of its sum of exp(x - m) `ls`, and its
    label."""
    return [f"b = r * {k}", "m = np.float64(x[b])", f"for j in range(1, {k}):", "    v = np.float64(x[b + j])",
            "    if v > m or v != v:", "        m = v", "s = 0.0", f"for j in range({k}):",
            "    s += math.exp(np.float64(x[b + j]) - m)", "ls = math.log(s)", "label = np.int64(labels[r])"]


def _kernel(node: Node, ins: list[TensorType], out: str, row: list[str], dropped: list[str],
            total: bool) -> str:
    """count, then the row loop: `row` on kept rows, `dropped` on the others (with a mask)."""
    n, k = ins[0].shape
    masked = len(node.inputs) > 2
    par = ins[0].numel >= PARALLEL_MIN
    lines = [f"def KERNEL(x, labels, {'mask, ' if masked else ''}{out}):"]
    if masked:
        lines += ["    count = 0", f"    for r in range({n}):", "        if mask[r]:", "            count += 1",
                  "    count = max(count, 1)"]
    else:
        lines.append(f"    count = {n}")
    lines += ["    total = 0.0"] if total else []
    lines.append(f"    for r in {'prange' if par else 'range'}({n}):")
    body = [*_row_stats(k), *row]
    if masked:
        lines += ["        if mask[r]:", *("            " + s for s in body)]
        lines += ["        else:", *("            " + s for s in dropped)] if dropped else []
    else:
        lines += ["        " + s for s in body]
    return "\n".join(lines) + "\n"


def _note(node: Node, ins: list[TensorType]) -> str:
    n, k = ins[0].shape
    return f"{node.op} over {n} rows of {k}{', masked' if len(node.inputs) > 2 else ''}, float64"


def softmax_cross_entropy(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    k = ins[0].shape[1]
    row = [f"if label >= 0 and label < {k}:", "    total += np.float64(x[b + label]) - m - ls", "else:",
           "    total += np.nan"]
    body = _kernel(node, ins, "loss", row, [], total=True) + "    loss[0] = -total / count\n"
    return KernelSource(body, (*node.inputs, node.outputs[0].name), _note(node, ins),
                        parallel=ins[0].numel >= PARALLEL_MIN)


def softmax_cross_entropy_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    k = ins[0].shape[1]
    row = [f"bad = label < 0 or label >= {k}", f"for j in range({k}):",
           "    p = math.exp(np.float64(x[b + j]) - m - ls)", "    if j == label:", "        p -= 1.0",
           "    dx[b + j] = np.nan if bad else p / count"]
    dropped = [f"for j in range({k}):", f"    dx[r * {k} + j] = {lit(0, ins[0].dtype)}"]
    body = _kernel(node, ins, "dx", row, dropped, total=False)
    return KernelSource(body, (*node.inputs, node.outputs[0].name), _note(node, ins),
                        parallel=ins[0].numel >= PARALLEL_MIN)


TEMPLATES = {"softmax_cross_entropy": plain_only(softmax_cross_entropy),
             "softmax_cross_entropy_grad": plain_only(softmax_cross_entropy_grad)}
