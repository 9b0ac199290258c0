"""numba CPU kernels of the training ops (backward convolutions and pooling, batch statistics,
losses, optimizer updates) against the reference interpreter.

Each test puts several independent nodes of one op (one per case) in a graph, so the build
compiles their kernels in parallel, then compares every output with `kiln.interpret` on seeded
random inputs: f32 to rtol 1e-4, f64 to 1e-10. Shapes are tiny; a few cases cross
PARALLEL_MIN so the prange variants run too.
"""

import kiln
import numpy as np
import pytest
from kiln.backends.numba_cpu.kernels import conv_grad
from kiln.backends.numba_cpu.kernels.common import PARALLEL_MIN
from kiln.frontend import Builder
from kiln.ir.ops.elementwise import dropout_keep
from kiln.ir.ops.norm import _bn_train_ref

TOL = {"f32": {"rtol": 1e-4, "atol": 1e-5}, "f64": {"rtol": 1e-10, "atol": 1e-12}}


def feeds(g, seed=0, **given):
    """Standard normal floats, small non-negative integers, random bools; `given` overrides."""
    rng = np.random.default_rng(seed)
    out = {}
    for v in g.inputs:
        t = v.type
        if t.dtype == "bool":
            out[v.name] = rng.random(t.shape) < 0.5
        elif t.dtype.startswith(("i", "u")):
            out[v.name] = rng.integers(0, 5, t.shape).astype(t.np_dtype)
        else:
            out[v.name] = rng.standard_normal(t.shape).astype(t.np_dtype)
    return {**out, **given}


def check(g, f=None):
    """Compile `g` for the cpu target, compare every output with the interpreter; the outputs."""
    f = f if f is not None else feeds(g)
    got, want = kiln.compile(g, target="cpu").run(f), kiln.interpret(g, f)
    for name, a, b in zip(g.outputs, got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, err_msg=name, **TOL.get(a.dtype.name.replace("float", "f"), {}))
    return got


# -- convolution gradients ------------------------------------------------------------------
def conv_grads(b, i, n, c, hw, m, kernel, dtype="f32", **geo):
    """Both gradients of one conv2d: dx from (dy, w), dw from (x, dy)."""
    geo = {"stride": (1, 1), "dilation": (1, 1), "pads": (0, 0, 0, 0), "groups": 1, **geo}
    x = b.input(f"x{i}", (n, c, *hw), dtype)
    w = b.input(f"w{i}", (m, c // geo["groups"], *kernel), dtype)
    y = b.op("conv2d", [x, w], geo)  # only for its shape: dead code, not compiled
    dy = b.input(f"dy{i}", y.shape, dtype)
    return [b.op("conv2d_grad_input", [dy, w], {**geo, "input_hw": hw}),
            b.op("conv2d_grad_weight", [x, dy], {**geo, "kernel": kernel})]


def test_conv_grads_stride_padding_dilation_groups():
    b = Builder("conv_grads", seed=0)
    outs = [
        *conv_grads(b, 0, 2, 4, (7, 6), 6, (3, 3), stride=(2, 2), pads=(1, 1, 1, 1)),
        *conv_grads(b, 1, 2, 4, (8, 8), 6, (3, 2), stride=(1, 2), dilation=(2, 1), pads=(2, 1, 0, 1), groups=2),
        # 1x1, stride 1: the product is dx itself (no col2im) and x is its own unfold
        *conv_grads(b, 2, 2, 6, (5, 5), 4, (1, 1), groups=2),
        # one image (serial images, parallel col2im); stride 2 leaves the last row and column unread
        *conv_grads(b, 3, 1, 4, (6, 6), 4, (1, 1), stride=(2, 2), groups=2),
        *conv_grads(b, 4, 2, 3, (5, 6), 4, (3, 3), "f64", pads=(1, 0, 2, 1)),
    ]
    check(b.build(*outs))


def test_conv_grads_depthwise():
    b = Builder("depthwise_grads", seed=0)
    outs = [
        *conv_grads(b, 0, 2, 4, (7, 7), 4, (3, 3), pads=(1, 1, 1, 1), groups=4),
        # two outputs per channel, stride, dilation and uneven padding
        *conv_grads(b, 1, 2, 3, (6, 7), 6, (3, 3), stride=(2, 1), dilation=(1, 2), pads=(0, 2, 1, 0), groups=3),
    ]
    got = check(b.build(*outs))
    assert got[0].shape == (2, 4, 7, 7) and got[3].shape == (6, 1, 3, 3)


def test_conv_grad_weight_with_fewer_jobs_than_images(monkeypatch):
    """Unfold buffers too big for one per image: jobs take several images and add up partials."""
    monkeypatch.setattr(conv_grad, "SCRATCH_MAX", 2 * 18 * 16)  # two images' worth of unfold
    b = Builder("grad_weight_jobs", seed=0)
    check(b.build(*conv_grads(b, 0, 5, 2, (4, 4), 4, (3, 3), pads=(1, 1, 1, 1))))


# -- pooling gradients ----------------------------------------------------------------------
def test_maxpool_grad_overlap_ceil_dilation_and_ties():
    b = Builder("maxpool_grad", seed=0)
    outs = []
    for i, (shape, attrs, dt) in enumerate([
        ((2, 3, 7, 8), {"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1)}, "f32"),  # overlapping
        ((2, 3, 6, 8), {"kernel": (2, 2), "stride": (2, 2)}, "f32"),  # disjoint
        ((1, 2, 7, 9), {"kernel": (2, 3), "stride": (2, 2), "pads": (1, 0, 0, 2), "ceil_mode": True}, "f32"),
        ((1, 2, 8, 7), {"kernel": (3, 2), "stride": (1, 2), "dilation": (2, 2), "pads": (2, 1, 1, 0)}, "f64"),
    ]):
        x = b.input(f"x{i}", shape, dt)
        dy = b.input(f"dy{i}", b.op("maxpool2d", [x], attrs).shape, dt)
        outs.append(b.op("maxpool2d_grad", [x, dy], attrs))
    g = b.build(*outs)
    rng = np.random.default_rng(1)
    ties = {v.name: rng.integers(0, 3, v.type.shape).astype(v.type.np_dtype)
            for v in g.inputs if v.name[0] == "x"}
    check(g)
    check(g, feeds(g, **ties))  # equal maxima: the first in row-major tap order takes dy


def test_maxpool_grad_nan_and_all_negative_windows():
    b = Builder("maxpool_grad_edge", seed=0)
    x = b.input("x", (1, 2, 4, 4))
    attrs = {"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1)}
    dy = b.input("dy", (1, 2, 2, 2))
    g = b.build(b.op("maxpool2d_grad", [x, dy], attrs))
    xv = np.full((1, 2, 4, 4), -np.inf, np.float32)  # plane 1: every window ties at -inf
    xv[0, 0] = -np.arange(1, 17).reshape(4, 4)  # plane 0: padding (zero) would win
    xv[0, 0, 1, 3] = np.nan
    (dx,) = check(g, {"x": xv, "dy": np.ones((1, 2, 2, 2), np.float32)})
    assert dx[0, 0, 0, 0] == 1 and dx[0, 0, 1, 3] == 2  # the NaN wins both windows that see it
    assert dx[0, 1, :2, :2].sum() == 4 and dx[0, 1].sum() == 4  # a tie goes to each window's first cell


@pytest.mark.parametrize("include", [False, True])
def test_avgpool_grad_divisor_rule(include):
    b = Builder("avgpool_grad", seed=0)
    outs = []
    for i, (shape, attrs, dt) in enumerate([
        ((2, 3, 7, 8), {"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1)}, "f32"),
        ((2, 3, 7, 8), {"kernel": (3, 2), "stride": (2, 3), "pads": (1, 0, 2, 1), "ceil_mode": True}, "f32"),
        ((1, 2, 6, 7), {"kernel": (2, 2), "stride": (2, 2), "pads": (0, 1, 0, 0), "ceil_mode": True}, "f32"),
        ((1, 2, 9, 9), {"kernel": (3, 3), "stride": (3, 3), "dilation": (1, 2), "pads": (2, 2, 2, 2),
                        "ceil_mode": True}, "f64"),
    ]):
        attrs = {**attrs, "count_include_pad": include}
        y = b.op("avgpool2d", [b.input(f"x{i}", shape, dt)], attrs)
        dy = b.input(f"dy{i}", y.shape, dt)
        outs.append(b.op("avgpool2d_grad", [dy], {**attrs, "input_hw": shape[2:]}))
    check(b.build(*outs))


# -- batch statistics, softmax ----------------------------------------------------------------
def test_batch_norm_train_4d_2d_and_f64():
    b = Builder("bn_train", seed=0)
    outs = []
    for i, (shape, dt, attrs) in enumerate([((4, 3, 5, 6), "f32", {}),
                                             ((16, 5), "f32", {"unbiased_running_var": False, "momentum": 0.8}),
                                             ((2, 3, 4), "f64", {"epsilon": 1e-3})]):
        x = b.input(f"x{i}", shape, dt)
        stats = [b.input(f"{n}{i}", (shape[1],), dt) for n in ("scale", "bias", "rmean", "rvar")]
        outs += b.op("batch_norm_train", [x, *stats], attrs)
    g = b.build(*outs)
    f = feeds(g)
    f["x0"] = f["x0"] * 3 + 2  # a mean and spread far from 0 and 1
    check(g, f)


def test_batch_norm_grad_4d_2d_and_f64():
    b = Builder("bn_grad", seed=0)
    outs, given = [], {}
    for i, (shape, dt) in enumerate([((4, 3, 5, 6), "f32"), ((16, 5), "f32"), ((2, 3, 4), "f64")]):
        c = shape[1]
        ins = [b.input(f"{n}{i}", s, dt) for n, s in (("dy", shape), ("x", shape), ("scale", (c,)),
                                                          ("mean", (c,)), ("invstd", (c,)))]
        outs += b.op("batch_norm_grad", ins)
        x = np.random.default_rng(i).standard_normal(shape).astype(dt.replace("f", "float"))
        ones = np.ones(c, x.dtype)
        _, mean, invstd, *_ = _bn_train_ref([x, ones, ones, ones, ones], {"epsilon": 1e-5, "momentum": 0.9,
                                                                          "unbiased_running_var": True})
        given.update({f"x{i}": x, f"mean{i}": mean, f"invstd{i}": invstd})
    g = b.build(*outs)
    check(g, feeds(g, **given))


def test_softmax_grad_rows_and_column_blocks():
    b = Builder("softmax_grad", seed=0)
    outs = []
    for i, (shape, axis, log) in enumerate([((5, 7), -1, False), ((5, 7), 1, True),
                                             ((2, 4, 9, 8), 1, False), ((2, 3, 70), 1, True)]):
        x = b.input(f"x{i}", shape)
        y = b.op("log_softmax" if log else "softmax", [x], {"axis": axis})
        outs.append(b.op("softmax_grad", [b.input(f"dy{i}", shape), y], {"axis": axis, "log": log}))
    check(b.build(*outs))


def test_lrn_grad_windows_and_planes():
    b = Builder("lrn_grad", seed=0)
    cases = [((2, 7, 3, 2), "f32", {"size": 3}),
             ((2, 6, 5), "f64", {"size": 4, "alpha": 0.3, "beta": 0.6, "bias": 2.0}),  # even window
             ((1, 3, 2, 2), "f64", {"size": 5, "alpha": 0.5, "beta": 1.5}),  # wider than the channels
             ((2, 16, 40, 40), "f32", {"size": 5, "alpha": 1e-3})]  # past PARALLEL_MIN: prange
    assert np.prod(cases[-1][0]) >= PARALLEL_MIN
    outs = [b.op("lrn_grad", [b.input(f"dy{i}", shape, dt), b.input(f"x{i}", shape, dt)], attrs)
            for i, (shape, dt, attrs) in enumerate(cases)]
    check(b.build(*outs))


# -- reduce_sum -----------------------------------------------------------------------------
def test_reduce_sum_axes():
    b = Builder("reduce_sum", seed=0)
    x2, x3, x4 = b.input("x2", (6, 5)), b.input("x3", (3, 4, 5)), b.input("x4", (2, 3, 4, 5))
    xi, xd = b.input("xi", (3, 4), "i32"), b.input("xd", (3, 1, 4), "f64")
    big = b.input("big", (40, 1000))  # past PARALLEL_MIN: rows of 1000 in blocks of 256, in parallel
    cases = [(x2, (0,), False), (x4, (0, 2, 3), False), (x3, (1,), True), (x3, (0, 2), False),
             (x4, (-1, 0, 1, 2), False), (xi, (0,), True), (xd, (1, 2), False), (xd, (), False),
             (big, (0,), False), (big, (1,), False)]
    outs = [b.op("reduce_sum", [x], {"axes": axes, "keepdims": keep}) for x, axes, keep in cases]
    assert big.type.numel >= PARALLEL_MIN
    got = check(b.build(*outs))
    assert got[4].shape == () and got[7].shape == (3, 1, 4)


# -- losses ---------------------------------------------------------------------------------
def loss_graph(dtype="f32", masked=False, rows=6, classes=5):
    b = Builder("ce", seed=0)
    logits, labels = b.input("logits", (rows, classes), dtype), b.input("labels", (rows,), "i64")
    ins = [logits, labels, *([b.input("mask", (rows,), "bool")] if masked else [])]
    return b.build(b.op("softmax_cross_entropy", ins), b.op("softmax_cross_entropy_grad", ins))


def test_softmax_cross_entropy_and_grad():
    check(loss_graph())
    check(loss_graph("f64"))
    g = loss_graph(masked=True, rows=7)
    mask = np.array([1, 0, 1, 1, 0, 0, 1], bool)
    labels = np.array([0, 99, 4, 2, -3, 7, 1])  # dropped rows' labels are never read
    loss, grad = check(g, feeds(g, mask=mask, labels=labels))
    assert loss.shape == () and not grad[~mask].any()
    loss, grad = check(g, feeds(g, mask=np.zeros(7, bool), labels=labels))  # nothing kept: count 1
    assert loss == 0 and not grad.any()


def test_softmax_cross_entropy_large_and_bad_label():
    g = loss_graph(rows=PARALLEL_MIN // 64 + 3, classes=64)  # parallel rows
    check(g)
    f = feeds(g)
    f["labels"][3] = 64  # the reference refuses it; the kernel answers NaN, reading nothing outside
    loss, grad = kiln.compile(g, target="cpu").run(f)
    assert np.isnan(loss) and np.isnan(grad[3]).all() and np.isfinite(np.delete(grad, 3, axis=0)).all()


# -- activation gradients, dropout ----------------------------------------------------------
def test_act_grad_every_activation():
    b = Builder("act_grad", seed=0)
    outs = []
    for i, (act, attrs, dt) in enumerate([("relu", {}, "f32"), ("leaky_relu", {"alpha": 0.1}, "f32"),
                                           ("sigmoid", {}, "f32"), ("tanh", {}, "f64"),
                                           ("clip", {"min": -0.5, "max": 0.7}, "f32")]):
        dy, saved = b.input(f"dy{i}", (3, 4, 5), dt), b.input(f"s{i}", (3, 4, 5), dt)
        outs.append(b.op("act_grad", [dy, saved], {"act": act, **attrs}))
    g = b.build(*outs)
    f = feeds(g)
    f["s0"][0, 0, :3] = 0  # relu' at 0 is 0; clip passes strictly inside its bounds
    f["s4"][0, 0, :2] = [-0.5, 0.7]
    check(g, f)


def test_dropout_train_reproduces_the_counter_hash():
    b = Builder("dropout", seed=0)
    x, xd = b.input("x", (4, 8, 1025)), b.input("xd", (3, 7), "f64")  # x crosses PARALLEL_MIN
    step = b.input("step", (1,), "i64")
    outs = [*b.op("dropout_train", [x, step], {"ratio": 0.3, "seed": 12345}),
            *b.op("dropout_train", [xd, step], {"ratio": 0.5})]
    g = b.build(*outs)
    for s in (0, 7):
        f = feeds(g, step=np.array([s]))
        y, mask, yd, maskd = check(g, f)
        np.testing.assert_array_equal(mask != 0, dropout_keep(12345, s, x.type.numel, 0.3).reshape(x.shape))
        np.testing.assert_array_equal(maskd != 0, dropout_keep(0, s, xd.type.numel, 0.5).reshape(xd.shape))
        np.testing.assert_array_equal(y, f["x"] * mask)
        np.testing.assert_array_equal(yd, f["xd"] * maskd)


# -- optimizer updates ----------------------------------------------------------------------
def test_sgd_update_variants():
    b = Builder("sgd", seed=0)
    hyper = b.input("hyper", (1,))
    outs = []
    for i, (attrs, dt) in enumerate([({}, "f32"), ({"momentum": 0.9}, "f32"),
                                      ({"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}, "f32"),
                                      ({"momentum": 0.5, "weight_decay": 1e-3}, "f64")]):
        w, grad = b.input(f"w{i}", (4, 6), dt), b.input(f"g{i}", (4, 6), dt)
        v = [b.input(f"v{i}", (4, 6), dt)] if attrs.get("momentum") else []
        out = b.op("sgd_update", [w, grad, hyper, *v], attrs)
        outs += out if v else [out]
    g = b.build(*outs)
    check(g, feeds(g, hyper=np.array([0.05], np.float32)))


def test_adam_update_and_adamw():
    b = Builder("adam", seed=0)
    hyper = b.input("hyper", (3,))
    outs = []
    for i, (attrs, dt) in enumerate([({}, "f32"), ({"weight_decay": 1e-2}, "f32"),
                                      ({"weight_decay": 1e-2, "decoupled": True, "beta2": 0.99}, "f64")]):
        w, grad, m, v = (b.input(f"{n}{i}", (5, 3), dt) for n in "wgmv")
        outs += b.op("adam_update", [w, grad, m, v, hyper], attrs)
    g = b.build(*outs)
    f = feeds(g, hyper=np.array([0.01 / (1 - 0.9**3), 1 / np.sqrt(1 - 0.999**3), 0.01], np.float32))
    f.update({k: np.abs(a) for k, a in f.items() if k[0] == "v"})  # second moments are >= 0
    check(g, f)
