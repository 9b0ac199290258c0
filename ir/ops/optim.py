"""Optimizer updates, as ops, so one training step (forward, backward, update) is one graph.

Hyper-parameters that change during training (the learning rate under a schedule, Adam's bias
corrections) arrive in a small `hyper` tensor fed at every step; the rest are attributes.

sgd_update(w, g, hyper=[lr], v?) -> (w', v'?), PyTorch's SGD:
    g += weight_decay * w;  v' = momentum * v + g;  step = g + momentum * v' (nesterov) or v'
    w' = w - lr * step          (without momentum: no v, step = g)
adam_update(w, g, m, v, hyper=[lr / (1 - b1^t), 1 / sqrt(1 - b2^t), lr]) -> (w', m', v'):
    g += weight_decay * w (Adam) or w *= 1 - lr * weight_decay first (AdamW, `decoupled`)
    m' = b1 m + (1 - b1) g;  v' = b2 v + (1 - b2) g^2
    w' = w - hyper[0] * m' / (sqrt(v') * hyper[1] + eps)
"""

from __future__ import annotations

import numpy as np

from ..registry import Attr, Cost, OpDef, bytes_moved, expect, register
from ..types import FLOAT_DTYPES


def _check(types, hyper_len: int, slots: int):
    w, g, *rest = types
    expect(w.dtype in FLOAT_DTYPES and g == w, f"weight and gradient must match: {w}, {g}")
    for t in rest[:slots]:
        expect(t == w, f"optimizer state {t} must match the weight {w}")
    hyper = rest[slots]
    expect(hyper.shape == (hyper_len,) and hyper.dtype == "f32", f"hyper must be f32[{hyper_len}], got {hyper}")
    return w


def _sgd_infer(types, a):
    w, g, hyper, *v = types
    _check([w, g, *v, hyper], 1, len(v))
    expect(bool(v) == (a["momentum"] != 0), "a velocity input is given exactly when momentum != 0")
    return [w] * (1 + len(v))


def _sgd_ref(xs, a):
    w, g, hyper, *v = (x.astype(np.float64) for x in xs)
    g = g + a["weight_decay"] * w
    out = []
    if v:
        v_new = a["momentum"] * v[0] + g
        g = g + a["momentum"] * v_new if a["nesterov"] else v_new
        out = [v_new]
    dt = xs[0].dtype
    return [x.astype(dt) for x in (w - hyper[0] * g, *out)]


def _adam_ref(xs, a):
    w, g, m, v, hyper = (x.astype(np.float64) for x in xs)
    if a["decoupled"]:
        w = w * (1 - hyper[2] * a["weight_decay"])
    else:
        g = g + a["weight_decay"] * w
    m = a["beta1"] * m + (1 - a["beta1"]) * g
    v = a["beta2"] * v + (1 - a["beta2"]) * g * g
    w = w - hyper[0] * m / (np.sqrt(v) * hyper[1] + a["eps"])
    return [x.astype(xs[0].dtype) for x in (w, m, v)]


def _cost(flops_per_element):
    return lambda ins, outs, a: Cost(0, flops_per_element * ins[0].numel, bytes_moved(ins, outs))


register(OpDef(
    name="sgd_update", family="optim", inputs=("w", "g", "hyper", "v?"), outputs=("w_new", "v_new?"),
    attrs={"momentum": Attr("float", 0.0), "weight_decay": Attr("float", 0.0), "nesterov": Attr("bool", False)},
    infer=_sgd_infer, reference=_sgd_ref, cost=_cost(5), show=("momentum",),
    doc="one SGD step (momentum, weight decay, Nesterov as in PyTorch); hyper = [lr]",
))
register(OpDef(
    name="adam_update", family="optim", inputs=("w", "g", "m", "v", "hyper"), outputs=("w_new", "m_new", "v_new"),
    attrs={"beta1": Attr("float", 0.9), "beta2": Attr("float", 0.999), "eps": Attr("float", 1e-8),
           "weight_decay": Attr("float", 0.0), "decoupled": Attr("bool", False)},
    infer=lambda types, a: [_check([types[0], types[1], types[2], types[3], types[4]], 3, 2)] * 3,
    reference=_adam_ref, cost=_cost(12),
    doc="one Adam (AdamW when decoupled) step; hyper = [lr / (1 - b1^t), 1 / sqrt(1 - b2^t), lr]",
))
