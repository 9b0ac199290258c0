"""CUDA kernels of the pool, norm, shape, sparse, loss and training ops against the reference.

Every case is a one-node graph compiled for the cuda target and for the reference target and
run on the same seeded random inputs: f32 outputs agree to rtol 1e-5, f64 to 1e-12, integers
and masks exactly. Without a GPU the cuda target runs in Numba's simulator (tests/conftest.py
turns it on), which runs every CUDA thread as a Python thread: shapes stay tiny (a few hundred
threads a launch) so the whole file runs in well under a minute.

The simulator runs kernels as Python, so it accepts code numba's CUDA compiler would reject:
test_kernels_compile_for_a_real_gpu reruns this file in a process without the simulator, where
every case compiles its kernels for a real GPU (typing and lowering to NVVM IR: no device
needed) and the reference's outputs stand in for the run.
"""

import os
import subprocess
import sys

import kiln
import numpy as np
import pytest
from kiln.frontend import Builder
from kiln.ir.ops.elementwise import dropout_keep
from kiln.ir.ops.norm import _bn_train_ref

COMPILE_ONLY = os.environ.get("KILN_CUDA_COMPILE_ONLY") == "1"  # set by test_kernels_compile_for_a_real_gpu
TOL = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-13}}
WINDOW = {"stride": (1, 1), "pads": (0, 0, 0, 0), "dilation": (1, 1), "ceil_mode": False}


def graph(op: str, inputs, attrs=None):
    """A graph of one `op` node on inputs x0, x1.. (each a shape, or (shape, dtype)), returning
    every output of the node."""
    b = Builder(op, seed=0)
    xs = [b.input(f"x{i}", *(s if isinstance(s[0], tuple) else (s,))) for i, s in enumerate(inputs)]
    out = b.op(op, xs, attrs or {})
    return b.build(*(out if isinstance(out, tuple) else (out,)))


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


def compile_for_gpu(g) -> None:
    """Compile every kernel of g's cuda program for a real GPU, as its first launch would:
    numba's CUDA front end (typing) and lowering, for compute capability 8.0."""
    from kiln.backends.lowering import lower
    from kiln.backends.numba_cuda.build import HEADER
    from kiln.backends.numba_cuda.kernels import TEMPLATES
    from kiln.ir.types import DTYPES
    from kiln.passes import PIPELINES, run_passes
    from numba import from_dtype, types
    from numba.cuda.compiler import compile_cuda

    optimized, _ = run_passes(g, PIPELINES[("cuda", "inference")])
    for k in lower(optimized, TEMPLATES, "cuda").kernels.values():
        ns: dict = {}
        exec(compile(HEADER + k.body, f"<kiln-cuda {k.name}>", "exec"), ns)  # noqa: S102  (generated kernel)
        args = tuple(types.Array(from_dtype(np.dtype(DTYPES[d])), 1, "C") for d in k.arg_dtypes)
        compile_cuda(ns[k.name], types.void, args, cc=(8, 0))


def run_cuda(g, f):
    """The cuda target's outputs; when compiling only, the reference's stand in."""
    if COMPILE_ONLY:
        compile_for_gpu(g)
        return kiln.compile(g, target="reference").run(f)
    return kiln.compile(g, target="cuda").run(f)


def check(g, f=None):
    """Run `g` on the cuda and reference targets; every output must agree. The cuda outputs."""
    f = feeds(g) if f is None else f
    got = run_cuda(g, f)
    want = kiln.compile(g, target="reference").run(f)
    for name, a, b in zip(g.outputs, got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, a.shape, b.dtype, b.shape)
        if a.dtype.kind in "iub":
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, err_msg=name, **TOL[a.dtype.name])
    return got


def ties(g, seed=1):
    """Inputs drawn from {0, 1, 2}: equal maxima in most windows."""
    rng = np.random.default_rng(seed)
    return feeds(g, **{v.name: rng.integers(0, 3, v.type.shape).astype(v.type.np_dtype) for v in g.inputs})


# -- pooling ----------------------------------------------------------------------------------
POOL_CASES = [  # (shape, attrs, dtype): overlapping, ceil mode with uneven pads, dilation
    ((1, 2, 5, 6), {"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1)}, "f32"),
    ((1, 2, 7, 6), {"kernel": (2, 3), "stride": (2, 2), "pads": (1, 0, 0, 2), "ceil_mode": True}, "f32"),
    ((1, 1, 8, 7), {"kernel": (3, 2), "stride": (1, 2), "dilation": (2, 2), "pads": (2, 1, 1, 0)}, "f64"),
]


@pytest.mark.parametrize("shape, attrs, dtype", POOL_CASES)
def test_maxpool(shape, attrs, dtype):
    check(graph("maxpool2d", [(shape, dtype)], attrs))


def test_maxpool_integers_never_lose_to_padding_and_nan_propagates():
    attrs = {"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1), "ceil_mode": True}
    gi = graph("maxpool2d", [((1, 1, 5, 5), "i32")], attrs)
    (yi,) = check(gi, {"x0": -np.arange(1, 26, dtype=np.int32).reshape(1, 1, 5, 5)})
    assert yi.max() < 0  # zero padding would have won
    g = graph("maxpool2d", [(1, 1, 4, 4)], {"kernel": (2, 2), "stride": (2, 2)})
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    (y,) = check(g, {"x0": x})
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 0, 1, 1])


@pytest.mark.parametrize("include", [False, True])
def test_avgpool_divisor_rule(include):
    cases = [*POOL_CASES, ((1, 1, 9, 9), {"kernel": (3, 3), "stride": (3, 3), "dilation": (1, 2),
                                          "pads": (2, 2, 2, 2), "ceil_mode": True}, "f32")]
    for shape, attrs, dtype in cases:
        check(graph("avgpool2d", [(shape, dtype)], {**attrs, "count_include_pad": include}))


@pytest.mark.parametrize("op", ["global_avgpool", "global_maxpool"])
def test_global_pools(op):
    check(graph(op, [(2, 3, 4, 5)]))
    check(graph(op, [((2, 3, 7), "f64")]))


@pytest.mark.parametrize("order", [0, 1])
def test_maxpool_argmax_ties_and_storage_order(order):
    for shape, attrs, dtype in POOL_CASES:
        g = graph("maxpool2d_argmax", [(shape, dtype)], {**attrs, "storage_order": order})
        check(g)
        check(g, ties(g))


def test_maxpool_argmax_names_a_real_cell_and_the_first_nan():
    g = graph("maxpool2d_argmax", [(1, 1, 4, 4)], {"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1)})
    x = np.full((1, 1, 4, 4), -np.inf, np.float32)  # every window ties with its padding
    (where,) = check(g, {"x0": x})
    assert where.ravel().tolist() == [0, 1, 4, 5]
    x[0, 0, 1, 2], x[0, 0, 1, 3] = np.nan, np.nan
    (where,) = check(g, {"x0": x})
    assert where[0, 0, 0, 1] == 6
    check(graph("maxpool2d_argmax", [((1, 2, 5, 5), "i32")], {"kernel": (3, 3), "stride": (2, 2),
                                                             "pads": (1, 1, 1, 1), "ceil_mode": True}))


# -- normalisation ------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, axis, dtype", [((5, 7), -1, "f32"), ((5, 7), 0, "f32"),
                                                ((2, 3, 4, 5), 1, "f32"), ((3, 4), 1, "f64")])
def test_softmax_axes(op, shape, axis, dtype):
    g = graph(op, [(shape, dtype)], {"axis": axis})
    f = feeds(g)
    f["x0"] = f["x0"] * 10  # exp would overflow without the max subtracted
    check(g, f)


def test_lrn_odd_and_even_sizes():
    check(graph("lrn", [(2, 5, 3, 3)], {"size": 3, "alpha": 1e-2, "beta": 0.75, "bias": 2.0}))
    check(graph("lrn", [((1, 6, 2, 3), "f64")], {"size": 4, "alpha": 0.5}))


def test_fused_elementwise_chain_with_broadcast_operands():
    steps = "add $1; relu; rsub $2; mul $1; clip -0.5 0.5; sigmoid; rdiv $3; leaky_relu 0.1; tanh"
    check(graph("fused_elementwise", [(2, 3, 4, 5), (3, 1, 1), (5,), ((), )], {"steps": steps}))
    check(graph("fused_elementwise", [((4, 6), "f64"), ((4, 1), "f64")], {"steps": "sub $1; div $1"}))


def test_lrn_grad_odd_and_even_sizes():
    check(graph("lrn_grad", [(2, 5, 3, 3)] * 2, {"size": 3, "alpha": 1e-2, "beta": 0.75, "bias": 2.0}))
    check(graph("lrn_grad", [((1, 6, 2, 3), "f64")] * 2, {"size": 4, "alpha": 0.5, "beta": 1.5}))


# -- shape ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, perm, dtype", [((2, 3, 4), (2, 0, 1), "f32"), ((2, 3, 4, 5), (0, 2, 1, 3), "f32"),
                                                ((3, 4, 5), (), "i32"), ((4, 6), (1, 0), "f64")])
def test_transpose(shape, perm, dtype):
    check(graph("transpose", [(shape, dtype)], {"perm": perm}))


@pytest.mark.parametrize("shape, attrs, dtype", [
    ((2, 3, 6, 6), {"starts": (0, 0, 0, 0), "steps": (1, 1, 2, 2), "sizes": (2, 3, 3, 3)}, "f32"),
    ((2, 3, 6, 6), {"starts": (1, 2, 5, 4), "steps": (-1, -2, -2, -1), "sizes": (2, 2, 3, 5)}, "f32"),
    ((5, 7), {"starts": (4, 0), "steps": (-2, 3), "sizes": (3, 3)}, "i64"),
])
def test_slice(shape, attrs, dtype):
    check(graph("slice", [(shape, dtype)], attrs))


def test_expand():
    check(graph("expand", [(3, 1)], {"shape": (2, 3, 4)}))
    check(graph("expand", [((1, 4, 1, 1), "i32")], {"shape": (2, 4, 3, 3)}))


@pytest.mark.parametrize("attrs", [
    {"mode": "nearest", "scales": (1, 1, 2, 2), "sizes": (1, 2, 6, 8)},
    {"mode": "linear", "coord": "align_corners", "scales": (1, 1, 1.5, 0.5), "sizes": (1, 2, 4, 2)},
    {"mode": "cubic", "exclude_outside": True, "scales": (1, 2, 1, 1), "sizes": (1, 4, 3, 4)},
    {"mode": "linear", "coord": "tf_crop_and_resize", "scales": (1, 1, 2, 1), "sizes": (1, 2, 6, 4),
     "roi": (0, 0, -0.2, 0, 1, 1, 0.9, 1), "extrapolation": 3.0},
])
def test_resize(attrs):
    check(graph("resize", [(1, 2, 3, 4)], attrs))


@pytest.mark.parametrize("op", ["pow", "max", "min", "less_equal", "equal"])
def test_binary_ops_broadcast(op):
    check(graph(op, [(2, 3, 4), (3, 1)]) if op != "pow" else graph(op, [((2, 3), "f64"), ((3,), "f64")]),
          f=None if op != "pow" else {"x0": np.abs(np.arange(6.0).reshape(2, 3)) + 0.5, "x1": np.array([0.5, 2, -1.0])})


def test_where_and_cast():
    check(graph("where", [((2, 1, 3), "bool"), (4, 1), (1, 4, 3)]))
    check(graph("cast", [(3, 5)], {"to": "i32"}))
    check(graph("cast", [((4,), "i64")], {"to": "f32"}))


@pytest.mark.parametrize("op", ["reduce_max", "reduce_min"])
def test_reduce_extremes(op):
    check(graph(op, [(2, 3, 4)], {"axes": (0, 2)}))
    check(graph(op, [((3, 4), "i32")], {"axes": (1,), "keepdims": True}))


@pytest.mark.parametrize("op", ["arg_max", "arg_min"])
def test_arg_extremes(op):
    check(graph(op, [(2, 3, 4)], {"axis": 1, "select_last_index": True}))
    check(graph(op, [((3, 4), "i32")], {"axis": -1, "keepdims": False}))


def test_concat_axes_and_dtypes():
    check(graph("concat", [(2, 3, 4), (2, 1, 4), (2, 5, 4)], {"axis": 1}))
    check(graph("concat", [(3, 2), (1, 2)], {"axis": 0}))
    check(graph("concat", [((2, 3), "i64"), ((2, 4), "i64")], {"axis": -1}))
    check(graph("concat", [((2, 3), "bool"), ((2, 2), "bool")], {"axis": 1}))
    check(graph("concat", [((2, 3), "f64")], {"axis": 1}))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes_and_negative_pads(mode):
    check(graph("pad", [(2, 3, 4)], {"pads": (0, 1, 2, 1, 2, 3), "mode": mode, "value": 1.5}))
    check(graph("pad", [((3, 5, 4), "f64")], {"pads": (-1, 2, 0, 0, -2, 1), "mode": mode}))  # crop and pad
    check(graph("pad", [((2, 3, 4), "i32")], {"pads": (1, 0, 0, 0, 0, 0), "mode": mode, "value": 7}))
    # a crop at the end of an axis beside untouched ones: the axes must not merge
    check(graph("pad", [(2, 3, 4)], {"pads": (0, 0, 0, 0, -1, 0), "mode": mode}))
    check(graph("pad", [(2, 3, 4)], {"pads": (0, 0, 0, 0, 0, -1), "mode": mode}))


def test_pad_crop_only_and_nan_fill():
    check(graph("pad", [(3, 5)], {"pads": (-1, -2, 0, -1)}))
    (y,) = check(graph("pad", [(2, 2)], {"pads": (1, 0, 0, 0), "value": float("nan")}))
    assert np.isnan(y[0]).all()


@pytest.mark.parametrize("shape, axes, keep, dtype", [
    ((3, 4, 5), (1,), True, "f32"), ((2, 3, 4, 5), (0, 2, 3), False, "f32"), ((6, 5), (0,), False, "f32"),
    ((2, 3, 4), (-1, 0, 1), False, "f32"), ((3, 1, 4), (1, 2), False, "f64"), ((3, 4), (), False, "f32"),
    ((3, 4), (0,), True, "i32"), ((2, 3, 2), (0, 2), False, "u8"), ((4, 3), (1,), False, "bool"),
])
def test_reduce_sum(shape, axes, keep, dtype):
    check(graph("reduce_sum", [(shape, dtype)], {"axes": axes, "keepdims": keep}))


def test_reduce_sum_wraps_integers_as_numpy():
    g = graph("reduce_sum", [((2, 3), "u8")], {"axes": (1,)})
    (y,) = check(g, {"x0": np.full((2, 3), 200, np.uint8)})
    assert y.tolist() == [88, 88]  # 600 % 256


# -- sparse -----------------------------------------------------------------------------------
def random_csr(rows, cols, nnz, itype, seed=0):
    rng = np.random.default_rng(seed)
    r = np.sort(rng.integers(0, rows, nnz))
    r[r == 1] = 0  # an empty row
    indptr = np.zeros(rows + 1, itype)
    np.cumsum(np.bincount(r, minlength=rows), out=indptr[1:])
    return indptr, rng.integers(0, cols, nnz).astype(itype), rng.standard_normal(nnz)


@pytest.mark.parametrize("rows, features, itype, dtype", [(10, 5, "i32", "f32"), (9, 40, "i64", "f32"),
                                                            (4, 3, "i64", "f64")])
def test_spmm_warp_per_row(rows, features, itype, dtype):
    """More rows than a block's warps, and more features than a warp's lanes."""
    indptr, indices, data = random_csr(rows, 7, 3 * rows, np.dtype(itype.replace("i", "int")))
    b = Builder("spmm", seed=0, dtype=dtype)
    x = b.input("x", (7, features))
    g = b.build(b.spmm(b.csr("a", indptr, indices, data), x))
    check(g)


def test_spmm_bad_column_gives_a_nan_row():
    b = Builder("spmm_bad", seed=0)
    ins = [b.input("indptr", (3,), "i32"), b.input("indices", (3,), "i32"), b.input("data", (3,)),
           b.input("x", (4, 2))]
    g = b.build(b.op("spmm", ins))
    f = {"indptr": np.array([0, 1, 3], np.int32), "indices": np.array([1, 2, 9], np.int32),
         "data": np.ones(3, np.float32), "x": np.ones((4, 2), np.float32)}
    if COMPILE_ONLY:  # the reference refuses the bad column
        return compile_for_gpu(g)
    (y,) = run_cuda(g, f)
    assert y[0].tolist() == [1, 1] and np.isnan(y[1]).all()


# -- training -----------------------------------------------------------------------------------
# the simulator runs the kernel on numpy scalars, which warn on the uint64 wrap the hash relies on
@pytest.mark.filterwarnings("ignore:overflow encountered in scalar:RuntimeWarning")
def test_dropout_train_matches_the_reference_hash_bit_for_bit():
    for shape, ratio, seed, dtype, step in [((3, 50), 0.3, 7, "f32", 5), ((40,), 0.5, 2**40 + 3, "f64", 0),
                                            ((10,), 0.0, 1, "f32", 2)]:
        g = graph("dropout_train", [(shape, dtype), ((1,), "i64")], {"ratio": ratio, "seed": seed})
        _, mask = check(g, feeds(g, x1=np.array([step], np.int64)))
        keep = dropout_keep(seed, step, int(np.prod(shape)), ratio).reshape(shape)
        np.testing.assert_array_equal(mask != 0, keep)


def _pool_grad(op, shape, attrs, dtype):
    b = Builder(op, seed=0)
    x = b.input("x", shape, dtype)
    dy = b.input("dy", b.op(op.removesuffix("_grad"), [x], attrs).shape, dtype)
    if op == "maxpool2d_grad":
        return b.build(b.op(op, [x, dy], attrs))
    return b.build(b.op(op, [dy], {**attrs, "input_hw": shape[2:]}))


@pytest.mark.parametrize("shape, attrs, dtype", [*POOL_CASES, ((1, 2, 6, 6), {"kernel": (2, 2), "stride": (2, 2)},
                                                                "f32")])
def test_maxpool_grad_gathers_first_maxima(shape, attrs, dtype):
    g = _pool_grad("maxpool2d_grad", shape, attrs, dtype)
    check(g)
    check(g, feeds(g, x=ties(g)["x"]))  # equal maxima: the first in row-major tap order takes dy


def test_maxpool_grad_nan_and_all_lowest_windows():
    g = _pool_grad("maxpool2d_grad", (1, 2, 4, 4), {"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1)}, "f32")
    x = np.full((1, 2, 4, 4), -np.inf, np.float32)  # plane 1: every window ties at -inf
    x[0, 0] = -np.arange(1, 17).reshape(4, 4)  # plane 0: padding (zero) would win
    x[0, 0, 1, 3] = np.nan
    (dx,) = check(g, {"x": x, "dy": np.ones((1, 2, 2, 2), np.float32)})
    assert dx[0, 0, 0, 0] == 1 and dx[0, 0, 1, 3] == 2  # the NaN wins both windows that see it
    assert dx[0, 1].sum() == 4


@pytest.mark.parametrize("include", [False, True])
def test_avgpool_grad_divisor_rule(include):
    for shape, attrs, dtype in [*POOL_CASES, ((1, 1, 6, 7), {"kernel": (2, 2), "stride": (2, 2),
                                                            "pads": (0, 1, 0, 0), "ceil_mode": True}, "f32")]:
        check(_pool_grad("avgpool2d_grad", shape, {**attrs, "count_include_pad": include}, dtype))


BN_CASES = [((4, 3, 5, 6), "f32", {}), ((16, 5), "f32", {"unbiased_running_var": False, "momentum": 0.8}),
            ((2, 3, 4), "f64", {"epsilon": 1e-3})]


@pytest.mark.parametrize("shape, dtype, attrs", BN_CASES)
def test_batch_norm_train(shape, dtype, attrs):
    c = (shape[1],)
    g = graph("batch_norm_train", [(shape, dtype), *[(c, dtype)] * 4], attrs)
    f = feeds(g)
    f["x0"] = f["x0"] * 3 + 2  # a mean and spread far from 0 and 1
    check(g, f)


@pytest.mark.parametrize("shape, dtype, attrs", BN_CASES)
def test_batch_norm_grad(shape, dtype, attrs):
    c = (shape[1],)
    g = graph("batch_norm_grad", [(shape, dtype), (shape, dtype), *[(c, dtype)] * 3])
    f = feeds(g)
    ones = np.ones(c, f["x1"].dtype)
    _, mean, invstd, *_ = _bn_train_ref([f["x1"], ones, ones, ones, ones],
                                        {"epsilon": 1e-5, "momentum": 0.9, "unbiased_running_var": True})
    check(g, {**f, "x3": mean, "x4": invstd})


@pytest.mark.parametrize("shape, axis, log, dtype", [((5, 7), -1, False, "f32"), ((5, 7), 0, True, "f32"),
                                                     ((2, 4, 3), 1, False, "f32"), ((3, 4), 1, True, "f64")])
def test_softmax_grad(shape, axis, log, dtype):
    g = graph("softmax_grad", [(shape, dtype), (shape, dtype)], {"axis": axis, "log": log})
    f = feeds(g)
    y = kiln.interpret(graph("log_softmax" if log else "softmax", [(shape, dtype)], {"axis": axis}), {"x0": f["x1"]})
    check(g, {**f, "x1": y[0]})


@pytest.mark.parametrize("op", ["softmax_cross_entropy", "softmax_cross_entropy_grad"])
@pytest.mark.parametrize("mask", [None, "some", "none"])
def test_softmax_cross_entropy(op, mask):
    for n, k, ltype, dtype in [(6, 5, "i64", "f32"), (40, 3, "i32", "f64")]:
        ins = [((n, k), dtype), ((n,), ltype)] + ([((n,), "bool")] if mask else [])
        g = graph(op, ins)
        f = feeds(g)
        f["x1"] = np.random.default_rng(1).integers(0, k, n).astype(f["x1"].dtype)
        if mask == "none":  # no kept row: loss 0, gradient 0
            f["x2"] = np.zeros(n, bool)
        elif mask:
            f["x1"][~f["x2"]] = 99  # a dropped row's label is never read
        (out,) = check(g, f)
        assert out.shape == (() if op == "softmax_cross_entropy" else (n, k))


@pytest.mark.parametrize("attrs", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}])
def test_sgd_update(attrs):
    for shape, dtype in [((3, 7), "f32"), ((20,), "f64")]:
        slots = [(shape, dtype)] if attrs.get("momentum") else []
        g = graph("sgd_update", [(shape, dtype), (shape, dtype), ((1,), "f32"), *slots], attrs)
        check(g, feeds(g, x2=np.array([0.1], np.float32)))


@pytest.mark.parametrize("attrs", [{}, {"weight_decay": 1e-2}, {"weight_decay": 1e-2, "decoupled": True}])
def test_adam_update(attrs):
    for shape, dtype in [((3, 7), "f32"), ((20,), "f64")]:
        g = graph("adam_update", [(shape, dtype)] * 4 + [((3,), "f32")], attrs)
        f = feeds(g)
        f["x3"] = np.abs(f["x3"])  # the second moment is never negative
        check(g, {**f, "x4": np.array([0.1 / (1 - 0.9**3), 1 / np.sqrt(1 - 0.999**3), 0.1], np.float32)})


# -- a real GPU's compiler --------------------------------------------------------------------
@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
                    reason="not in the simulator: the tests above compile every kernel for the GPU they run on")
def test_kernels_compile_for_a_real_gpu():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0", "KILN_CUDA_COMPILE_ONLY": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__, "-k", "not real_gpu"]
    r = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
