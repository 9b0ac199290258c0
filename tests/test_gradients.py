"""Every gradient rule against float64 central finite differences.

Each case builds a tiny float64 graph, asks autodiff's vjp for the gradient of sum(y * dy) with
respect to every float input, and compares with (f(x + h e) - f(x - h e)) / 2h at sampled
coordinates, where f runs the forward graph in the reference interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest
from kiln.frontend import Builder
from kiln.ir import all_ops
from kiln.ir.errors import UnsupportedError
from kiln.ir.types import dtype_of
from kiln.passes import vjp
from kiln.runtime import interpret

H = 1e-6
COORDS = 24  # sampled coordinates per input


def check_grads(build, shapes: dict, feeds: dict | None = None, seed: int = 0, atol: float = 1e-6):
    """`build(b, *tensors)` returns the output; `shapes` name -> shape of the f64 inputs
    (integer or bool inputs come in `feeds` with their arrays)."""
    rng = np.random.default_rng(seed)
    feeds = dict(feeds or {})
    b = Builder("case", dtype="f64")
    tensors = []
    for name, shape in shapes.items():
        if name in feeds:
            tensors.append(b.input(name, feeds[name].shape, dtype_of(feeds[name])))
        else:
            tensors.append(b.input(name, shape, "f64"))
            feeds[name] = rng.standard_normal(shape)
    out = build(b, *tensors)
    g = b.build(out[0] if isinstance(out, tuple) else out)  # multi-output ops: the first output
    wrt = [v.name for v in g.inputs if v.type.dtype == "f64"]
    vg = vjp(g, wrt)
    out_t = g.type_of(g.outputs[0])
    dy = rng.standard_normal(out_t.shape) if out_t.rank else None
    run = dict(feeds, **({vg.inputs[-1].name: dy} if dy is not None else {}))
    grads = interpret(vg, run)

    def f(fs):
        y = interpret(g, fs)[0]
        return float((y * dy).sum()) if dy is not None else float(y)

    for name, grad in zip(wrt, grads, strict=True):
        x = feeds[name]
        assert grad.shape == x.shape, f"gradient of {name} has shape {grad.shape}, input {x.shape}"
        flat = rng.choice(x.size, size=min(COORDS, x.size), replace=False)
        for k in flat:
            idx = np.unravel_index(k, x.shape)
            plus, minus = x.copy(), x.copy()
            plus[idx] += H
            minus[idx] -= H
            fd = (f({**feeds, name: plus}) - f({**feeds, name: minus})) / (2 * H)
            assert abs(fd - grad[idx]) <= atol + 1e-5 * abs(fd), \
                f"d/d{name}{list(idx)}: finite difference {fd:.8g}, autodiff {grad[idx]:.8g}"
    return grads


def op(name, **attrs):
    return lambda b, *ts: b.op(name, list(ts), attrs)


# -- convolution ------------------------------------------------------------------------------
@pytest.mark.parametrize("attrs, cin, cout, k, bias", [
    ({}, 3, 4, 3, True),
    ({"stride": 2, "pads": (1, 0, 2, 1)}, 2, 3, 3, True),
    ({"dilation": 2, "pads": 2}, 2, 2, 3, False),
    ({"groups": 2, "stride": (1, 2), "pads": 1}, 4, 6, 3, True),
    ({"groups": 4, "pads": 1}, 4, 4, 3, False),  # depthwise
    ({"stride": 2}, 3, 4, 1, True),  # 1x1 strided
])
def test_conv2d(attrs, cin, cout, k, bias):
    groups = attrs.get("groups", 1)
    shapes = {"x": (2, cin, 6, 7), "w": (cout, cin // groups, k, k)}
    if bias:
        shapes["b"] = (cout,)
    check_grads(op("conv2d", **attrs), shapes)


@pytest.mark.parametrize("act", ["relu", "clip", "leaky_relu", "sigmoid"])
def test_conv2d_fused_epilogue(act):
    """A fused conv (residual add and activation inside) differentiates like its parts."""
    shapes = {"x": (2, 3, 5, 5), "w": (4, 3, 3, 3), "b": (4,), "r": (2, 4, 5, 5)}
    check_grads(op("conv2d", pads=1, residual=True, act=act, act_min=-0.5, act_max=0.5, act_alpha=0.3), shapes)


@pytest.mark.parametrize("attrs, hw", [
    ({"stride": (2, 2), "pads": (1, 1, 0, 1), "input_hw": (6, 7)}, (3, 4)),
    ({"stride": (1, 2), "dilation": (2, 1), "groups": 2, "input_hw": (6, 5)}, (2, 2)),
])
def test_conv2d_grad_input_as_transposed_conv(attrs, hw):
    """ConvTranspose imports as conv2d_grad_input, so models train through it."""
    m, cg = 4, 3
    check_grads(op("conv2d_grad_input", **attrs), {"dy": (2, m, *hw), "w": (m, cg, 3, 2)})


# -- elementwise ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, attrs", [
    ("relu", {}), ("leaky_relu", {"alpha": 0.1}), ("sigmoid", {}), ("tanh", {}),
    ("clip", {"min": -0.5, "max": 0.7}), ("identity", {}), ("dropout", {"ratio": 0.3}),
])
def test_unary(name, attrs):
    check_grads(op(name, **attrs), {"x": (3, 4, 5)})


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("sa, sb", [((3, 4), (3, 4)), ((2, 3, 4), (3, 1)), ((4,), (2, 1, 4)), ((2, 3, 1, 1), ())])
def test_binary_broadcasting(name, sa, sb):
    feeds = {}
    if name == "div":  # keep the divisor away from zero
        feeds["b"] = np.asarray(np.random.default_rng(1).uniform(0.5, 2.0, sb) * np.where(
            np.random.default_rng(2).random(sb) < 0.5, -1, 1))
    check_grads(op(name), {"a": sa, "b": sb}, feeds)


@pytest.mark.parametrize("name", ["max", "min", "pow"])
def test_max_min_pow(name):
    def build(b, x, y):
        return b.op(name, [b.op("add", [b.op("abs", [x]), b.const("half", np.array(0.5))]) if name == "pow" else x, y])
    check_grads(build, {"x": (3, 4), "y": (4,)})


def test_where_and_cast():
    def build(b, x, y):
        c = b.op("greater", [x, b.const("zero", np.array(0.0))])
        return b.op("mul", [b.op("where", [c, x, y]), b.op("cast", [c], {"to": "f64"})])  # bool: no gradient
    check_grads(build, {"x": (2, 3), "y": (3,)})


@pytest.mark.parametrize("slope", [(3, 1, 1), (1,), (2, 3, 4, 5)])
def test_prelu(slope):
    check_grads(op("prelu"), {"x": (2, 3, 4, 5), "slope": slope})


def test_value_used_twice_sums_its_gradients():
    check_grads(lambda b, x: b.op("mul", [b.relu(x), b.op("add", [x, x])]), {"x": (3, 4)})


def test_dropout_train_uses_its_mask():
    grads = check_grads(op("dropout_train", ratio=0.4, seed=3), {"x": (4, 8), "step": (1,)},
                        {"step": np.array([5], np.int64)})
    assert (grads[0] == 0).any() and (grads[0] != 0).any()


# -- pooling ----------------------------------------------------------------------------------
def distinct(shape, seed=0):
    """Values with no ties, so each max-pool window has one maximum."""
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) / n


@pytest.mark.parametrize("attrs", [
    {"kernel": 2, "stride": 2},
    {"kernel": 3, "stride": 1, "pads": 1},  # overlapping windows
    {"kernel": 3, "stride": 2, "ceil_mode": True},
    {"kernel": 2, "stride": 1, "dilation": 2},
])
def test_maxpool2d(attrs):
    check_grads(op("maxpool2d", **attrs), {"x": (2, 3, 7, 7)}, {"x": distinct((2, 3, 7, 7))}, atol=1e-5)


@pytest.mark.parametrize("attrs", [
    {"kernel": 2, "stride": 2},
    {"kernel": 3, "stride": 2, "pads": 1},
    {"kernel": 3, "stride": 2, "pads": 1, "count_include_pad": True},
    {"kernel": 3, "stride": 2, "ceil_mode": True},
])
def test_avgpool2d(attrs):
    check_grads(op("avgpool2d", **attrs), {"x": (2, 3, 7, 6)})


def test_global_pools():
    check_grads(op("global_avgpool"), {"x": (2, 3, 4, 5)})
    check_grads(op("global_maxpool"), {"x": (2, 3, 4, 5)}, {"x": distinct((2, 3, 4, 5))}, atol=1e-5)


# -- normalisation, matrix products, shapes ----------------------------------------------------
def test_batch_norm_train():
    def build(b, x, s, t):
        mean, var = b.const("m", np.zeros(3)), b.const("v", np.ones(3))
        return b.op("batch_norm_train", [x, s, t, mean, var], {})

    check_grads(build, {"x": (4, 3, 2, 3), "scale": (3,), "bias": (3,)})


@pytest.mark.parametrize("attrs", [
    {"size": 3},
    {"size": 4, "alpha": 0.3, "beta": 0.6, "bias": 2.0},  # even: one more channel after than before
    {"size": 5, "alpha": 0.5, "beta": 1.5, "bias": 0.7},  # window wider than the tensor's edge
    {"size": 1, "alpha": 0.2},
])
def test_lrn(attrs):
    check_grads(op("lrn", **attrs), {"x": (2, 6, 3, 2)})


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax(name, axis):
    check_grads(op(name, axis=axis), {"x": (2, 5, 3)})


@pytest.mark.parametrize("attrs, sa, sb, sc", [
    ({}, (3, 4), (4, 5), (5,)),
    ({"trans_a": True, "alpha": 0.5, "beta": 2.0}, (4, 3), (4, 5), (3, 5)),
    ({"trans_b": True}, (3, 4), (5, 4), (3, 1)),
    ({"trans_a": True, "trans_b": True}, (4, 3), (5, 4), None),
])
def test_gemm(attrs, sa, sb, sc):
    shapes = {"a": sa, "b": sb, **({"c": sc} if sc else {})}
    check_grads(op("gemm", **attrs), shapes)


@pytest.mark.parametrize("act", ["relu", "clip", "leaky_relu", "sigmoid"])
def test_gemm_fused_activation(act):
    check_grads(op("gemm", trans_b=True, act=act, act_min=-0.5, act_max=0.5, act_alpha=0.3),
                {"a": (3, 4), "b": (5, 4), "c": (5,)})


@pytest.mark.parametrize("sa, sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2))])
def test_matmul(sa, sb):
    check_grads(op("matmul"), {"a": sa, "b": sb})


def test_spmm_with_a_constant_adjacency():
    indptr = np.array([0, 2, 3, 3, 6])
    indices = np.array([0, 3, 1, 0, 1, 2])
    data = np.array([0.5, -1.0, 2.0, 1.5, 0.25, -0.75])

    def build(b, x):
        return b.spmm(b.csr("adj", indptr, indices, data), x)

    check_grads(build, {"x": (4, 3)})


@pytest.mark.parametrize("build", [
    lambda b, x: b.flatten(x), lambda b, x: b.reshape(x, (6, -1)),
    lambda b, x: b.op("transpose", [x], {"perm": (2, 0, 1)}),
    lambda b, x: b.op("reduce_sum", [x], {"axes": (0, 2)}),
    lambda b, x: b.op("reduce_sum", [x], {"axes": (1,), "keepdims": True}),
    lambda b, x: b.op("reduce_max", [x], {"axes": (0, 2)}),
    lambda b, x: b.op("reduce_min", [x], {"axes": (1,), "keepdims": True}),
    lambda b, x: b.op("pad", [x], {"pads": (0, 1, -1, 1, 2, 0)}),
    lambda b, x: b.op("slice", [x], {"starts": (1, 0, 1), "steps": (1, 2, 2), "sizes": (1, 2, 2)}),
    lambda b, x: b.op("slice", [x], {"starts": (0, 2, 3), "steps": (1, -1, -3), "sizes": (2, 3, 2)}),
    lambda b, x: b.op("slice", [x], {"starts": (0, 1, 1), "steps": (1, -1, 3), "sizes": (2, 1, 1)}),
    lambda b, x: b.op("expand", [b.reshape(x, (2, 3, 1, 4))], {"shape": (2, 1, 3, 5, 1)}),
])
def test_shape_ops(build):
    check_grads(build, {"x": (2, 3, 4)})


@pytest.mark.parametrize("attrs", [
    {"mode": "nearest", "scales": (1, 1, 2, 2), "sizes": (1, 2, 6, 8)},
    {"mode": "linear", "scales": (1, 1, 1.5, 0.5), "sizes": (1, 2, 4, 2)},
    {"mode": "cubic", "coord": "align_corners", "scales": (1, 1, 5 / 3, 1), "sizes": (1, 2, 5, 4)},
    {"mode": "linear", "coord": "tf_crop_and_resize", "scales": (1, 1, 2, 1), "sizes": (1, 2, 6, 4),
     "roi": (0, 0, -0.2, 0, 1, 1, 0.9, 1), "extrapolation": 3.0},
])
def test_resize(attrs):
    check_grads(op("resize", **attrs), {"x": (1, 2, 3, 4)})


def test_concat():
    check_grads(lambda b, x, y: b.concat([x, y, x], axis=1), {"x": (2, 3, 2), "y": (2, 1, 2)})


@pytest.mark.parametrize("masked", [False, True])
def test_softmax_cross_entropy(masked):
    labels = np.array([0, 3, 1, 3, 2])
    feeds = {"labels": labels}
    shapes = {"logits": (5, 4), "labels": (5,)}
    if masked:
        feeds["mask"] = np.array([True, False, True, True, False])
        shapes["mask"] = (5,)
    check_grads(op("softmax_cross_entropy"), shapes, feeds)


# -- coverage ---------------------------------------------------------------------------------
# ops that are never differentiated through: backward, loss-gradient and optimizer ops (the
# step graph's own), integer outputs, layout moves and fused chains added after autodiff
NOT_DIFFERENTIATED = {
    "act_grad", "conv2d_grad_weight", "maxpool2d_grad", "avgpool2d_grad",
    "batch_norm_grad", "lrn_grad", "softmax_grad", "softmax_cross_entropy_grad", "sgd_update", "adam_update",
    "maxpool2d_argmax", "reorder", "fused_elementwise",
}
# inference-only forms autodiff rewrites first (batch_norm -> batch_norm_train)
REWRITTEN_FIRST = {"batch_norm"}


def test_every_op_has_a_gradient_rule_or_is_listed():
    ops = all_ops()
    missing = sorted(n for n, o in ops.items() if o.grad is None and n not in NOT_DIFFERENTIATED | REWRITTEN_FIRST)
    assert not missing, f"ops without a gradient rule: {missing}"


def test_an_op_without_a_rule_is_named():
    b = Builder("g", dtype="f64")
    x = b.input("x", (2, 5), "f64")
    g = b.build(b.op("softmax_grad", [x, b.softmax(x)], name="norm1"))  # no second derivatives
    with pytest.raises(UnsupportedError, match=r"norm1.*'softmax_grad' has no gradient rule; ops with one: .*conv2d"):
        vjp(g, ["x"])
