"""Elementwise ops: activations and broadcasting arithmetic."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..grad import no_grad, scale, unbroadcast
from ..registry import Attr, Cost, OpDef, bytes_moved, expect, get_op, normalize_attrs, register
from ..types import FLOAT_DTYPES, INT_DTYPES, TensorType


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


def _act_rule(act: str, uses: str):
    """Gradient rule of an activation: act_grad reads the output y (relu, sigmoid, tanh) or the
    input x (leaky_relu, clip), whichever its derivative is cheapest from."""

    def rule(ctx, node, dys):
        a = node.attrs
        attrs = {"act": act, **{k: a.get(k, 0.0) for k in ("alpha", "min", "max", "beta", "gamma")}}
        ref = node.outputs[0].name if uses == "y" else node.inputs[0]
        return ctx.emit("act_grad", [dys[0], ref], attrs, base="d" + node.inputs[0])

    return rule


def _pass_through(ctx, node, dys):
    return [dys[0]]


def _unary(name: str, fn, doc: str, attrs=None, infer=_same_type, grad=None) -> None:
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
            grad=grad,
            doc=doc,
        )
    )


def sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a negative argument only, so large |x| neither overflows nor warns
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


_unary("relu", lambda x, a: np.maximum(x, 0), "max(x, 0)", grad=_act_rule("relu", "y"))
_unary(
    "leaky_relu",
    lambda x, a: np.where(x >= 0, x, x * x.dtype.type(a["alpha"])),
    "x if x >= 0 else alpha * x",
    {"alpha": Attr("float", 0.01)},
    grad=_act_rule("leaky_relu", "x"),
)
_unary("sigmoid", lambda x, a: sigmoid(x), "1 / (1 + exp(-x))", grad=_act_rule("sigmoid", "y"))
_unary("tanh", lambda x, a: np.tanh(x), "tanh(x)", grad=_act_rule("tanh", "y"))


# -- the activation table ---------------------------------------------------------------------
# Float activations with no other inputs, each declared once: forward and derivative in numpy
# (the reference), which saved tensor the derivative reads ("x" or "y"), attributes. The
# backends write the same two functions as scalar expressions (backends/templating.py,
# ACT_EXPRS and ACT_DERIVS); chains, in-place reuse, layouts and act_grad all read this table.
def _f64(fn):
    """Compute in float64 and round once to x's dtype, as the kernels do."""
    return lambda x, a: np.asarray(fn(x.astype(np.float64), a), dtype=x.dtype)


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x) if x.size else x.astype(np.float64)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
SELU_ALPHA, SELU_GAMMA = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _gelu_tanh_parts(x):
    u = _SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)
    return u, np.tanh(u)


def _gelu_tanh_derivative(x):
    _, t = _gelu_tanh_parts(x)
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)


def _mish_derivative(x):
    t = np.tanh(_softplus(x))
    return t + x * sigmoid(x) * (1 - t * t)


def _hard_sigmoid_derivative(x, a):
    z = a["alpha"] * x + a["beta"]
    return np.where((z > 0) & (z < 1), a["alpha"], 0.0)


@dataclass(frozen=True)
class Activation:
    forward: Callable  # (x, attrs) -> y, float64 in and out
    derivative: Callable  # (saved, attrs) -> dy/dx, float64
    saved: str  # the tensor act_grad reads: "x" or "y"
    doc: str
    attrs: dict = field(default_factory=dict)  # name -> default (floats)


ACTIVATIONS: dict[str, Activation] = {
    "exp": Activation(lambda x, a: np.exp(x), lambda y, a: y, "y", "e^x"),
    "log": Activation(lambda x, a: np.log(x), lambda x, a: 1 / x, "x", "ln x"),
    "sqrt": Activation(lambda x, a: np.sqrt(x), lambda y, a: 0.5 / y, "y", "sqrt(x)"),
    "abs": Activation(lambda x, a: np.abs(x), lambda x, a: np.sign(x), "x", "|x|"),
    "neg": Activation(lambda x, a: -x, lambda x, a: -np.ones_like(x), "x", "-x"),
    "reciprocal": Activation(lambda x, a: 1 / x, lambda y, a: -y * y, "y", "1 / x"),
    "erf": Activation(lambda x, a: _erf(x), lambda x, a: 2 / math.sqrt(math.pi) * np.exp(-x * x), "x",
                      "the error function"),
    "elu": Activation(lambda x, a: np.where(x > 0, x, a["alpha"] * np.expm1(np.minimum(x, 0))),
                      lambda x, a: np.where(x > 0, 1.0, a["alpha"] * np.exp(np.minimum(x, 0))), "x",
                      "x if x > 0 else alpha (e^x - 1)", {"alpha": 1.0}),
    "selu": Activation(lambda x, a: a["gamma"] * np.where(x > 0, x, a["alpha"] * np.expm1(np.minimum(x, 0))),
                       lambda x, a: a["gamma"] * np.where(x > 0, 1.0, a["alpha"] * np.exp(np.minimum(x, 0))), "x",
                       "gamma (x if x > 0 else alpha (e^x - 1))", {"alpha": SELU_ALPHA, "gamma": SELU_GAMMA}),
    "softplus": Activation(lambda x, a: _softplus(x), lambda x, a: sigmoid(x), "x", "ln(1 + e^x)"),
    "softsign": Activation(lambda x, a: x / (1 + np.abs(x)), lambda x, a: 1 / (1 + np.abs(x)) ** 2, "x",
                           "x / (1 + |x|)"),
    "hard_sigmoid": Activation(lambda x, a: np.clip(a["alpha"] * x + a["beta"], 0, 1), _hard_sigmoid_derivative,
                               "x", "max(0, min(1, alpha x + beta))", {"alpha": 0.2, "beta": 0.5}),
    "hard_swish": Activation(lambda x, a: x * np.clip(x / 6 + 0.5, 0, 1),
                             lambda x, a: np.where(x < -3, 0.0, np.where(x > 3, 1.0, (2 * x + 3) / 6)), "x",
                             "x max(0, min(1, x / 6 + 1/2))"),
    "gelu": Activation(lambda x, a: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
                       lambda x, a: 0.5 * (1 + _erf(x / math.sqrt(2))) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x),
                       "x", "x Phi(x) = x (1 + erf(x / sqrt 2)) / 2"),
    "gelu_tanh": Activation(lambda x, a: 0.5 * x * (1 + _gelu_tanh_parts(x)[1]), lambda x, a: _gelu_tanh_derivative(x),
                            "x", "Gelu's tanh approximation: x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2"),
    "mish": Activation(lambda x, a: x * np.tanh(_softplus(x)), lambda x, a: _mish_derivative(x), "x",
                       "x tanh(ln(1 + e^x))"),
    "silu": Activation(lambda x, a: x * sigmoid(x), lambda x, a: sigmoid(x) * (1 + x * (1 - sigmoid(x))), "x",
                       "x sigmoid(x) (SiLU, Swish)"),
}

for _name, _act in ACTIVATIONS.items():
    _unary(_name, _f64(lambda x, a, f=_act.forward: f(x, a)), _act.doc,
           {k: Attr("float", v) for k, v in _act.attrs.items()}, grad=_act_rule(_name, _act.saved))
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
    grad=_act_rule("clip", "x"),
)
_unary(
    "dropout",
    lambda x, a: x.copy(),
    "identity at inference; training drops elements with probability `ratio`",
    {"ratio": Attr("float", 0.5), "seed": Attr("int", 0)},
    infer=_any_type,
    grad=_pass_through,
)
_unary("identity", lambda x, a: x.copy(), "y = x", infer=_any_type, grad=_pass_through)


def _binary_infer(types, attrs):
    a, b = types
    expect(a.dtype == b.dtype, f"operand dtypes differ: {a.dtype} vs {b.dtype}")
    return [TensorType(a.dtype, broadcast_shape(a.shape, b.shape))]


def _add_grad(ctx, node, dys):
    return [unbroadcast(ctx, dys[0], ctx.type(i).shape) for i in node.inputs]


def _sub_grad(ctx, node, dys):
    a, b = node.inputs
    return [unbroadcast(ctx, dys[0], ctx.type(a).shape),
            unbroadcast(ctx, scale(ctx, dys[0], -1.0), ctx.type(b).shape) if ctx.needs(node, 1) else None]


def _mul_grad(ctx, node, dys):
    a, b = node.inputs
    out = []
    for i, (me, other) in enumerate(((a, b), (b, a))):
        if ctx.needs(node, i):
            (g,) = ctx.emit("mul", [dys[0], other], base="d" + me)
            out.append(unbroadcast(ctx, g, ctx.type(me).shape))
        else:
            out.append(None)
    return out


def _div_grad(ctx, node, dys):
    """y = a / b: da = dy / b, db = -dy * y / b."""
    a, b = node.inputs
    da = unbroadcast(ctx, ctx.emit("div", [dys[0], b], base="d" + a)[0], ctx.type(a).shape) \
        if ctx.needs(node, 0) else None
    db = None
    if ctx.needs(node, 1):
        (t,) = ctx.emit("mul", [dys[0], node.outputs[0].name], base="d" + b)
        (t,) = ctx.emit("div", [t, b], base="d" + b)
        db = unbroadcast(ctx, scale(ctx, t, -1.0), ctx.type(b).shape)
    return [da, db]


_BINARY_GRADS = {"add": _add_grad, "sub": _sub_grad, "mul": _mul_grad, "div": _div_grad}


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
            grad=_BINARY_GRADS[name],
            doc=doc + " with numpy broadcasting",
        )
    )


_binary("add", np.add, "a + b")
_binary("sub", np.subtract, "a - b")
_binary("mul", np.multiply, "a * b")
_binary("div", np.divide, "a / b")


# -- more binary arithmetic, comparisons, select and cast: plain layout ------------------------
def _float_binary_infer(types, attrs):
    a, _ = types
    expect(a.dtype in FLOAT_DTYPES, f"expects float operands, got {a.dtype}")
    return _binary_infer(types, attrs)


def _mask(ctx, node, name: str) -> str:
    """1.0 where the node's first operand was picked (a >= b for max, a <= b for min), as the
    operands' float dtype: ties go to the first operand."""
    a, b = node.inputs
    t = ctx.type(a)
    (m,) = ctx.emit("greater_equal" if node.op == "max" else "less_equal", [a, b], base=name + ".pick")
    return ctx.emit("cast", [m], {"to": t.dtype}, base=name + ".pick")[0]


def _pick_grad(ctx, node, dys):
    """max / min: dy flows to the operand that was picked."""
    a, b = node.inputs
    m = _mask(ctx, node, "d" + a)
    (da,) = ctx.emit("mul", [dys[0], m], base="d" + a)
    out = [unbroadcast(ctx, da, ctx.type(a).shape) if ctx.needs(node, 0) else None]
    if ctx.needs(node, 1):
        (db,) = ctx.emit("sub", [dys[0], da], base="d" + b)
        out.append(unbroadcast(ctx, db, ctx.type(b).shape))
    else:
        out.append(None)
    return out


def _pow_grad(ctx, node, dys):
    """y = a ** b: da = dy * b * y / a written as dy * b * a ** (b - 1); db = dy * y * log(a)."""
    a, b = node.inputs
    y = node.outputs[0].name
    out = [None, None]
    if ctx.needs(node, 0):
        one = ctx.const(np.asarray(1.0, ctx.type(b).np_dtype), "one")
        (bm1,) = ctx.emit("sub", [b, one], base="d" + a)
        (p,) = ctx.emit("pow", [a, bm1], base="d" + a)
        (t,) = ctx.emit("mul", [p, b], base="d" + a)
        (t,) = ctx.emit("mul", [dys[0], t], base="d" + a)
        out[0] = unbroadcast(ctx, t, ctx.type(a).shape)
    if ctx.needs(node, 1):
        (la,) = ctx.emit("log", [a], base="d" + b)
        (t,) = ctx.emit("mul", [y, la], base="d" + b)
        (t,) = ctx.emit("mul", [dys[0], t], base="d" + b)
        out[1] = unbroadcast(ctx, t, ctx.type(b).shape)
    return out


for _name, _fn, _doc, _grad in (
        ("pow", np.power, "a ** b (float)", _pow_grad),
        ("max", np.maximum, "the larger of a and b (NaN if either is NaN)", _pick_grad),
        ("min", np.minimum, "the smaller of a and b (NaN if either is NaN)", _pick_grad)):
    register(OpDef(
        name=_name, family="elementwise", inputs=("a", "b"), outputs=("y",), attrs={},
        layouts=BLOCKED, layout_policy="same",
        infer=_float_binary_infer if _name == "pow" else _binary_infer,
        reference=lambda xs, a, fn=_fn: [np.asarray(fn(xs[0], xs[1]), dtype=xs[0].dtype)],
        grad=_grad, doc=_doc + " with numpy broadcasting",
    ))


def _compare_infer(types, attrs):
    a, b = types
    expect(a.dtype == b.dtype, f"operand dtypes differ: {a.dtype} vs {b.dtype}")
    return [TensorType("bool", broadcast_shape(a.shape, b.shape))]


COMPARISONS = {"equal": np.equal, "less": np.less, "greater": np.greater, "less_equal": np.less_equal,
               "greater_equal": np.greater_equal}
for _name, _fn in COMPARISONS.items():
    register(OpDef(
        name=_name, family="elementwise", inputs=("a", "b"), outputs=("y",), attrs={},
        infer=_compare_infer, reference=lambda xs, a, fn=_fn: [np.asarray(fn(xs[0], xs[1]))],
        grad=no_grad, doc=f"bool: a {_name.replace('_', ' ')} b, with numpy broadcasting (NaN compares false)",
    ))


def _where_infer(types, attrs):
    c, a, b = types
    expect(c.dtype == "bool", f"the condition must be bool, got {c}")
    expect(a.dtype == b.dtype, f"the branches' dtypes differ: {a.dtype} vs {b.dtype}")
    return [TensorType(a.dtype, broadcast_shape(c.shape, a.shape, b.shape))]


def _where_grad(ctx, node, dys):
    c, a, b = node.inputs
    out = [None, None, None]
    for k, name in ((1, a), (2, b)):
        if ctx.needs(node, k):
            zero = ctx.const(np.zeros((), ctx.type(name).np_dtype), "zero")
            picks = [dys[0], zero] if k == 1 else [zero, dys[0]]
            (g,) = ctx.emit("where", [c, *picks], base="d" + name)
            out[k] = unbroadcast(ctx, g, ctx.type(name).shape)
    return out


register(OpDef(
    name="where", family="elementwise", inputs=("cond", "a", "b"), outputs=("y",), attrs={},
    infer=_where_infer, reference=lambda xs, a: [np.where(xs[0], xs[1], xs[2]).astype(xs[1].dtype)],
    grad=_where_grad, doc="a where cond, else b, with numpy broadcasting of all three",
))


def _cast_infer(types, attrs):
    return [TensorType(attrs["to"], types[0].shape)]


def _cast_ref(xs, a):
    x, to = xs[0], TensorType(a["to"], ()).np_dtype
    if x.dtype.kind == "f" and to.kind in "iu":  # truncate toward zero; NaN and overflow are undefined
        with np.errstate(invalid="ignore"):
            return [np.trunc(x).astype(to)]
    return [x.astype(to)]


def _cast_grad(ctx, node, dys):
    x = ctx.type(node.inputs[0])
    if x.dtype not in FLOAT_DTYPES or node.attrs["to"] not in FLOAT_DTYPES:
        return [None]
    return ctx.emit("cast", [dys[0]], {"to": x.dtype}, base="d" + node.inputs[0])


register(OpDef(
    name="cast", family="elementwise", inputs=("x",), outputs=("y",), attrs={"to": Attr("str")},
    infer=_cast_infer, reference=_cast_ref, grad=_cast_grad, show=("to",),
    doc="x converted to dtype `to` (floats to integers truncate toward zero; to bool: x != 0)",
))


def _prelu_infer(types, attrs):
    x, slope = types
    expect(x.dtype in FLOAT_DTYPES and slope.dtype == x.dtype, f"x and slope must share a float dtype: {x}, {slope}")
    expect(broadcast_shape(x.shape, slope.shape) == x.shape, f"slope {slope} does not broadcast to x {x}")
    return [x]


def _prelu_grad(ctx, node, dys):
    """With p = dy where x >= 0 (act_grad of a leaky relu of slope 0) and q = dy - p:
    dx = p + q * slope, dslope = q * x summed over the axes slope was broadcast along."""
    x, slope = node.inputs
    if dys[0] is None:
        return [None, None]
    (p,) = ctx.emit("act_grad", [dys[0], x], {"act": "leaky_relu", "alpha": 0.0}, base="d" + x + ".pos")
    (q,) = ctx.emit("sub", [dys[0], p], base="d" + x + ".neg")
    dx = dslope = None
    if ctx.needs(node, 0):
        (t,) = ctx.emit("mul", [q, slope], base="d" + x + ".neg")
        (dx,) = ctx.emit("add", [p, t], base="d" + x)
    if ctx.needs(node, 1):
        (t,) = ctx.emit("mul", [q, x], base="d" + slope)
        dslope = unbroadcast(ctx, t, ctx.type(slope).shape)
    return [dx, dslope]


register(
    OpDef(
        name="prelu",
        family="elementwise",
        inputs=("x", "slope"),
        outputs=("y",),
        attrs={},
        infer=_prelu_infer,
        reference=lambda xs, a: [np.where(xs[0] < 0, xs[0] * xs[1], xs[0]).astype(xs[0].dtype)],
        grad=_prelu_grad,
        doc="x if x >= 0 else slope * x, slope broadcast to x (a learned leaky relu)",
    )
)


# -- training ---------------------------------------------------------------------------------
ACTS = ("relu", "leaky_relu", "sigmoid", "tanh", "clip", *ACTIVATIONS)


def _act_grad_infer(types, a):
    dy, ref = types
    expect(dy.dtype in FLOAT_DTYPES and ref.dtype == dy.dtype and ref.shape == dy.shape,
           f"dy and the saved tensor must match: {dy}, {ref}")
    return [dy]


def act_derivative(act: str, r: np.ndarray, a) -> np.ndarray:
    """d act / d x, from y (relu, sigmoid, tanh) or from x (leaky_relu, clip)."""
    if act == "relu":
        return (r > 0).astype(r.dtype)
    if act == "leaky_relu":
        return np.where(r >= 0, 1, a["alpha"]).astype(r.dtype)
    if act == "sigmoid":
        return r * (1 - r)
    if act == "tanh":
        return 1 - r * r
    if act in ACTIVATIONS:
        return np.asarray(ACTIVATIONS[act].derivative(r.astype(np.float64), a), dtype=r.dtype)
    return ((r > a["min"]) & (r < a["max"])).astype(r.dtype)  # clip passes strictly inside


register(OpDef(
    name="act_grad", family="elementwise", inputs=("dy", "saved"), outputs=("dx",),
    attrs={"act": Attr("str", choices=ACTS), "alpha": Attr("float", 0.0), "min": Attr("float", 0.0),
           "max": Attr("float", 0.0), "beta": Attr("float", 0.0), "gamma": Attr("float", 0.0)},
    infer=_act_grad_infer, layouts=BLOCKED, layout_policy="same", show=("act",),
    reference=lambda xs, a: [(xs[0] * act_derivative(a["act"], xs[1], a)).astype(xs[0].dtype)],
    doc="dy * act'(x); `saved` is y for relu/sigmoid/tanh and x for leaky_relu/clip",
))

# counter-based random bits: the same on every target and every run with the same (seed, step)
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


def dropout_keep(seed: int, step: int, n: int, ratio: float) -> np.ndarray:
    """Which of n elements dropout keeps at this step: a splitmix64 hash of (seed, step, index)
    gives 24 uniform bits per element; kept when u >= ratio."""
    with np.errstate(over="ignore"):
        key = _mix64(np.array([(seed * _GOLDEN + step) % 2**64], dtype=np.uint64))
        z = _mix64(key + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(_GOLDEN))
    u = (z >> np.uint64(40)).astype(np.float64) * 2.0 ** -24
    return u >= ratio


def _dropout_train_infer(types, a):
    x, step = types
    expect(x.dtype in FLOAT_DTYPES, f"expects a float tensor, got {x}")
    expect(step.shape == (1,) and step.dtype in INT_DTYPES, f"step must be an integer [1] tensor, got {step}")
    expect(0 <= a["ratio"] < 1, f"ratio must be in [0, 1), got {a['ratio']}")
    return [x, x]


def _dropout_train_ref(xs, a):
    x, step = xs
    keep = dropout_keep(a["seed"], int(step[0]), x.size, a["ratio"]).reshape(x.shape)
    mask = (keep / (1 - a["ratio"])).astype(x.dtype)
    return [x * mask, mask]


register(OpDef(
    name="dropout_train", family="elementwise", inputs=("x", "step"), outputs=("y", "mask"),
    attrs={"ratio": Attr("float", 0.5), "seed": Attr("int", 0)},
    infer=_dropout_train_infer, reference=_dropout_train_ref, show=("ratio",),
    grad=lambda ctx, node, dys: [ctx.emit("mul", [dys[0], node.outputs[1].name], base="d" + node.inputs[0])[0], None],
    doc="y = x * mask, mask = keep / (1 - ratio), keep drawn from (seed, step, index)",
))


# -- fused chains -----------------------------------------------------------------------------
CHAIN_UNARY = {"relu": (), "leaky_relu": ("alpha",), "sigmoid": (), "tanh": (), "clip": ("min", "max"),
               **{name: tuple(act.attrs) for name, act in ACTIVATIONS.items()}}
CHAIN_BINARY = ("add", "sub", "mul", "div", "rsub", "rdiv")  # rsub: operand - v, rdiv: operand / v


def parse_steps(steps: str) -> list[tuple[str, dict]]:
    """`"add $1; relu; clip 0.0 6.0"` -> [("add", {"operand": 1}), ("relu", {}), ("clip", {...})].
    A binary step combines the running value v with input $k (v op x_k; rsub and rdiv put
    x_k first); a unary step takes its attributes positionally."""
    out = []
    for step in steps.split(";"):
        expect(bool(step.split()), f"steps {steps!r}: an empty step")
        op, *args = step.split()
        if op in CHAIN_BINARY:
            expect(len(args) == 1 and args[0].startswith("$") and args[0][1:].isdigit() and int(args[0][1:]) >= 1,
                   f"step {step.strip()!r}: a binary step names one input as $k (k >= 1)")
            out.append((op, {"operand": int(args[0][1:])}))
        elif op in CHAIN_UNARY:
            names = CHAIN_UNARY[op]
            expect(len(args) == len(names), f"step {step.strip()!r}: {op} takes {len(names)} value(s) {names}")
            try:
                values = [float(v) for v in args]
            except ValueError:
                values = None
            expect(values is not None, f"step {step.strip()!r}: {op}'s values must be numbers")
            out.append((op, dict(zip(names, values, strict=True))))
        else:
            expect(False, f"step {step.strip()!r}: {op!r} is not a chain op; chain ops: "
                          f"{', '.join([*CHAIN_UNARY, *CHAIN_BINARY])}")
    return out


def format_step(op: str, attrs) -> str:
    """The text of one step (parse_steps' inverse): attrs of a unary op, or {"operand": k}."""
    if op in CHAIN_BINARY:
        return f"{op} ${attrs['operand']}"
    return " ".join([op, *(repr(float(attrs[n])) for n in CHAIN_UNARY[op])])


def _fused_infer(types, a):
    x, *rest = types
    expect(x.dtype in FLOAT_DTYPES, f"a fused chain runs on floats, got {x}")
    steps = parse_steps(a["steps"])
    for op, sa in steps:
        if "operand" in sa:
            expect(sa["operand"] < len(types), f"step {op} ${sa['operand']}: only {len(types) - 1} operand(s)")
    for i, t in enumerate(rest, 1):
        expect(t.dtype == x.dtype and broadcast_shape(x.shape, t.shape) == x.shape,
               f"operand ${i} {t} must share x's dtype and broadcast to x {x}")
    return [x]


def _fused_ref(xs, a):
    """Each step through its op's own reference, exactly as the unfused nodes compute."""
    v = xs[0]
    for op, sa in parse_steps(a["steps"]):
        if op in CHAIN_UNARY:
            v = get_op(op).reference([v], normalize_attrs(op, sa))[0]
        elif op.startswith("r"):
            v = get_op(op[1:]).reference([xs[sa["operand"]], v], {})[0]
        else:
            v = get_op(op).reference([v, xs[sa["operand"]]], {})[0]
    return [v]


register(OpDef(
    name="fused_elementwise", family="elementwise", inputs=("x", "operands*"), outputs=("y",),
    attrs={"steps": Attr("str")}, infer=_fused_infer, reference=_fused_ref, layouts=BLOCKED, layout_policy="same",
    cost=lambda ins, outs, a: Cost(0, outs[0].numel * len(parse_steps(a["steps"])), bytes_moved(ins, outs)),
    show=("steps",),
    doc="a chain of elementwise steps on x in one pass: v = x, then each step of `steps` "
        "(unary ops, or v op $k with an operand broadcast to x), y = v",
))
