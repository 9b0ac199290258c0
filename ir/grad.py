"""What a gradient rule sees, and helpers the rules share.

An op's gradient rule (`OpDef.grad`) is `rule(ctx, node, dys) -> dxs`: given the node and the
names of the gradients of its outputs (`None` where no gradient flows), it adds backward nodes
through `ctx` and returns one gradient name per input (`None` where the input gets none:
integer operands, constants). The autodiff pass (passes/autodiff.py) provides the context:

    ctx.emit(op, inputs, attrs=None, base="g") -> list of output names   (adds one node)
    ctx.type(name) -> TensorType
    ctx.const(array, base) -> name          (a new const param)
    ctx.const_data(name) -> ndarray | None  (the data of a const param, else None)
    ctx.is_seed(name) -> bool               (the loss's own gradient: exactly one)
    ctx.needs(node, i) -> bool              (whether input i wants a gradient at all)

Rules are written with the forward op's algebra in mind and checked against float64 finite
differences in tests/test_gradients.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def unbroadcast(ctx, g: str, shape: Sequence[int]) -> str:
    """Sum gradient `g` over the axes that numpy broadcasting stretched to reach `shape`."""
    gshape = ctx.type(g).shape
    shape = tuple(shape)
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and gshape[lead + i] != 1)
    (s,) = ctx.emit("reduce_sum", [g], {"axes": axes, "keepdims": False}, base=g + ".sum")
    if ctx.type(s).shape != shape:
        (s,) = ctx.emit("reshape", [s], {"shape": shape}, base=g + ".sum")
    return s


def scale(ctx, g: str, factor: float) -> str:
    """g * factor (elided when the factor is one)."""
    if factor == 1.0:
        return g
    k = ctx.const(np.asarray(factor, dtype=ctx.type(g).np_dtype), "k")
    return ctx.emit("mul", [g, k], base="g")[0]


def no_grad(ctx, node, dys):
    """The rule of an op whose output carries no gradient (a bool or index result): none flows back."""
    return [None] * len(node.inputs)
