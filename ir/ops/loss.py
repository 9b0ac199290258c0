"""Losses for training. A loss is a scalar (shape []) computed from the model's output and the
labels; its gradient op assumes the loss is the root of differentiation (d loss = 1).

softmax_cross_entropy(logits [N, K], labels [N] (class indices), mask [N] bool?):
    loss = mean over the rows i kept by mask of -log softmax(logits[i])[labels[i]]
A mask picks the labelled nodes of node classification (GCN); without it every row counts.
"""

from __future__ import annotations

import numpy as np

from ..registry import Cost, OpDef, bytes_moved, expect, register
from ..types import FLOAT_DTYPES, INT_DTYPES, TensorType


def _check(types) -> TensorType:
    logits, labels, *mask = types
    expect(logits.rank == 2 and logits.dtype in FLOAT_DTYPES, f"logits must be 2-D float [N, classes], got {logits}")
    n = logits.shape[0]
    expect(labels.shape == (n,) and labels.dtype in INT_DTYPES, f"labels must be integer [{n}], got {labels}")
    if mask:
        expect(mask[0].shape == (n,) and mask[0].dtype == "bool", f"mask must be bool [{n}], got {mask[0]}")
    return logits


def _rows(xs):
    logits, labels, *mask = xs
    keep = mask[0] if mask else np.ones(len(labels), bool)
    k = logits.shape[1]
    if keep.any() and (labels[keep].min() < 0 or labels[keep].max() >= k):
        bad = labels[keep][(labels[keep] < 0) | (labels[keep] >= k)][0]
        expect(False, f"label {int(bad)} out of range for {k} classes")
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return logp, np.where(keep, labels, 0), keep, max(int(keep.sum()), 1)


def _ce_ref(xs, a):
    logp, labels, keep, count = _rows(xs)
    picked = logp[np.arange(len(labels)), labels]
    return [np.asarray(-(picked * keep).sum() / count, dtype=xs[0].dtype)]


def _ce_grad_ref(xs, a):
    """(softmax - onehot(label)) / count on kept rows, zero elsewhere."""
    logp, labels, keep, count = _rows(xs)
    g = np.exp(logp)
    g[np.arange(len(labels)), labels] -= 1
    return [(g * keep[:, None] / count).astype(xs[0].dtype)]


def _ce_grad(ctx, node, dys):
    if not ctx.is_seed(dys[0]):
        return ctx.unsupported(node, "softmax_cross_entropy must be the loss (the root of differentiation)")
    return [ctx.emit("softmax_cross_entropy_grad", list(node.inputs), base="d" + node.inputs[0])[0]] + [None] * (len(node.inputs) - 1)


def _cost(ins, outs, a):
    return Cost(0, 5 * ins[0].numel, bytes_moved(ins, outs))


register(OpDef(
    name="softmax_cross_entropy", family="loss", inputs=("logits", "labels", "mask?"), outputs=("loss",),
    attrs={}, infer=lambda types, a: [TensorType(_check(types).dtype, ())], reference=_ce_ref, cost=_cost,
    grad=_ce_grad, doc="mean over (masked) rows of -log softmax(logits)[label]",
))
register(OpDef(
    name="softmax_cross_entropy_grad", family="loss", inputs=("logits", "labels", "mask?"), outputs=("dlogits",),
    attrs={}, infer=lambda types, a: [_check(types)], reference=_ce_grad_ref, cost=_cost,
    doc="d softmax_cross_entropy / d logits: (softmax - onehot) / count on the kept rows",
))
