"""Elementwise ops: activations and broadcasting arithmetic."""

from __future__ import annotations

import numpy as np

from ..registry import Attr, OpDef, expect, register
from ..types import FLOAT_DTYPES, TensorType


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """numpy's broadcasting rule, with a ShapeError naming both shapes."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        expect(False, f"shapes {[list(s) for s in shapes]} do not broadcast")
    raise AssertionError("unreachable")


def _same_type(types, attrs):
    (x,) = types
    expect(x.dtype in FLOAT_DTYPES, f"expects a float tensor, got {x}")
    return [x]


def _any_type(types, attrs):
    return [types[0]]


BLOCKED = frozenset({"", "NCHW16c"})  # elementwise ops run on any layout, output like input


def _unary(name: str, fn, doc: str, attrs=None, infer=_same_type) -> None:
    register(
        OpDef(
            name=name,
            family="elementwise",
            inputs=("x",),
            outputs=("y",),
            attrs=attrs or {},
            layouts=BLOCKED,
            layout_policy="same",
            infer=infer,
            reference=lambda xs, a: [np.asarray(fn(xs[0], a), dtype=xs[0].dtype)],
            doc=doc,
        )
    )


def _sigmoid(x, a):
    # exp of a negative argument only, so large |x| neither overflows nor warns
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


_unary("relu", lambda x, a: np.maximum(x, 0), "max(x, 0)")
_unary(
    "leaky_relu",
    lambda x, a: np.where(x >= 0, x, x * x.dtype.type(a["alpha"])),
    "x if x >= 0 else alpha * x",
    {"alpha": Attr("float", 0.01)},
)
_unary("sigmoid", _sigmoid, "1 / (1 + exp(-x))")
_unary("tanh", lambda x, a: np.tanh(x), "tanh(x)")
def _clip(x, a):
    lo, hi = a["min"], a["max"]
    if x.dtype.kind in "iu":  # integer tensors: bounds clamped to the type's range
        info = np.iinfo(x.dtype)
        lo, hi = (int(min(max(b, info.min), info.max)) for b in (lo, hi))
    return np.minimum(np.maximum(x, x.dtype.type(lo)), x.dtype.type(hi))


def _numeric_type(types, attrs):
    (x,) = types
    expect(x.dtype != "bool", f"expects a numeric tensor, got {x}")
    return [x]


_unary(
    "clip",
    _clip,
    "min(max(x, min), max); relu6 is clip[min=0 max=6]",
    {"min": Attr("float", float("-inf")), "max": Attr("float", float("inf"))},
    infer=_numeric_type,
)
_unary(
    "dropout",
    lambda x, a: x.copy(),
    "identity at inference; training drops elements with probability `ratio`",
    {"ratio": Attr("float", 0.5), "seed": Attr("int", 0)},
    infer=_any_type,
)
_unary("identity", lambda x, a: x.copy(), "y = x", infer=_any_type)


def _binary_infer(types, attrs):
    a, b = types
    expect(a.dtype == b.dtype, f"operand dtypes differ: {a.dtype} vs {b.dtype}")
    return [TensorType(a.dtype, broadcast_shape(a.shape, b.shape))]


def _binary(name: str, fn, doc: str) -> None:
    register(
        OpDef(
            name=name,
            family="elementwise",
            inputs=("a", "b"),
            outputs=("y",),
            attrs={},
            layouts=BLOCKED,
            layout_policy="same",
            infer=_binary_infer,
            reference=lambda xs, a: [np.asarray(fn(xs[0], xs[1]), dtype=xs[0].dtype)],
            doc=doc + " with numpy broadcasting",
        )
    )


_binary("add", np.add, "a + b")
_binary("sub", np.subtract, "a - b")
_binary("mul", np.multiply, "a * b")
_binary("div", np.divide, "a / b")


def _prelu_infer(types, attrs):
    x, slope = types
    expect(x.dtype in FLOAT_DTYPES and slope.dtype == x.dtype, f"x and slope must share a float dtype: {x}, {slope}")
    expect(broadcast_shape(x.shape, slope.shape) == x.shape, f"slope {slope} does not broadcast to x {x}")
    return [x]


register(
    OpDef(
        name="prelu",
        family="elementwise",
        inputs=("x", "slope"),
        outputs=("y",),
        attrs={},
        infer=_prelu_infer,
        reference=lambda xs, a: [np.where(xs[0] < 0, xs[0] * xs[1], xs[0]).astype(xs[0].dtype)],
        doc="x if x >= 0 else slope * x, slope broadcast to x (a learned leaky relu)",
    )
)
