"""numba CPU kernels for pool, norm, matmul, shape and sparse ops against the reference interpreter.

Every test builds a small graph (several ops per graph: each distinct kernel costs a numba
compile, and one graph lets the build compile them in parallel), compiles it for the cpu target
and compares every output with `kiln.interpret` on seeded random inputs. Shapes are tiny except
in `test_parallel_kernels`, which crosses PARALLEL_MIN so the prange variants run too.
"""

import kiln
import numpy as np
import pytest
from kiln.backends.numba_cpu.kernels import shape as shape_kernels
from kiln.backends.numba_cpu.kernels.common import PARALLEL_MIN
from kiln.errors import UnsupportedError
from kiln.frontend import Builder
from kiln.ir import TensorType

F32_TOL = {"rtol": 1e-5, "atol": 1e-5}


def feeds(g, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for v in g.inputs:
        t = v.type
        if t.dtype.startswith(("i", "u")):
            low = 0 if t.dtype.startswith("u") else -100
            out[v.name] = rng.integers(low, 100, t.shape).astype(t.np_dtype)
        else:
            out[v.name] = rng.standard_normal(t.shape).astype(t.np_dtype)
    return out


def check(g, tol=F32_TOL, f=None):
    """Compile `g` for the cpu target and compare every output with the interpreter."""
    f = f or feeds(g)
    exe = kiln.compile(g, target="cpu")
    got, want = exe.run(f), kiln.interpret(g, f)
    for name, a, b in zip(g.outputs, got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        if a.dtype.kind in "iub":
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, err_msg=name, **tol)
    return exe


def window(b, op, x, kernel, **attrs):
    return b.op(op, [x], {"kernel": kernel, **attrs})


# -- pool -----------------------------------------------------------------------------------------
def test_maxpool_pads_stride_dilation_ceil_and_integers():
    b = Builder("maxpool", seed=0)
    x = b.input("x", (2, 3, 7, 9))
    xi = b.input("xi", (1, 2, 6, 5), "i32")
    xu = b.input("xu", (1, 2, 5, 5), "u8")
    outs = [
        window(b, "maxpool2d", x, (3, 3), stride=(2, 2), pads=(1, 1, 1, 1)),
        window(b, "maxpool2d", x, (2, 3), stride=(2, 2), pads=(1, 0, 0, 2), ceil_mode=True),
        window(b, "maxpool2d", x, (3, 2), stride=(1, 2), dilation=(2, 2), pads=(2, 1, 1, 0)),
        window(b, "maxpool2d", xi, (3, 3), stride=(2, 2), pads=(1, 1, 1, 1), ceil_mode=True),
        window(b, "maxpool2d", xu, (2, 2), stride=(2, 2), pads=(1, 1, 0, 0)),
    ]
    check(b.build(*outs))


def test_maxpool_negative_integers_never_lose_to_padding_and_nan_propagates():
    b = Builder("maxpool_edge", seed=0)
    xi = b.input("xi", (1, 1, 4, 4), "i8")
    x = b.input("x", (1, 1, 4, 4))
    g = b.build(window(b, "maxpool2d", xi, (3, 3), stride=(2, 2), pads=(1, 1, 1, 1)),
                window(b, "maxpool2d", x, (2, 2), stride=(2, 2)))
    f = {"xi": -np.arange(1, 17, dtype=np.int8).reshape(1, 1, 4, 4), "x": np.zeros((1, 1, 4, 4), np.float32)}
    f["x"][0, 0, 1, 1] = np.nan
    exe = check(g, f=f)
    ints, floats = exe.run(f)
    assert ints.max() < 0  # zero padding would have won
    assert np.isnan(floats[0, 0, 0, 0]) and not np.isnan(floats[0, 0, 1, 1])


@pytest.mark.parametrize("include", [False, True])
def test_avgpool_divisor_rule(include):
    b = Builder("avgpool", seed=0)
    x = b.input("x", (2, 3, 7, 8))
    c = {"count_include_pad": include}
    outs = [
        window(b, "avgpool2d", x, (3, 3), stride=(2, 2), pads=(1, 1, 1, 1), **c),
        window(b, "avgpool2d", x, (3, 2), stride=(2, 3), pads=(1, 0, 2, 1), ceil_mode=True, **c),
        window(b, "avgpool2d", x, (2, 3), stride=(1, 1), dilation=(2, 2), pads=(1, 2, 0, 1), **c),
        window(b, "avgpool2d", x, (3, 3), stride=(3, 3), dilation=(1, 2), pads=(2, 2, 2, 2), ceil_mode=True,
               **c),
    ]
    check(b.build(*outs))


def test_global_pools_rank_3_4_5():
    b = Builder("global", seed=0)
    outs = []
    for i, shape in enumerate([(2, 3, 7), (2, 3, 5, 3), (1, 2, 3, 2, 3)]):
        x = b.input(f"x{i}", shape)
        outs += [b.op("global_avgpool", [x]), b.op("global_maxpool", [x])]
    xd = b.input("xd", (2, 2, 3, 3), "f64")
    outs += [b.op("global_avgpool", [xd]), b.op("global_maxpool", [xd])]
    check(b.build(*outs))


# -- norm -----------------------------------------------------------------------------------------
def test_batch_norm_with_const_and_runtime_statistics():
    b = Builder("bn", seed=0)
    rng = np.random.default_rng(1)
    x = b.input("x", (2, 5, 3, 4))
    stats = [b.const(n, rng.uniform(0.5, 2.0, 5).astype(np.float32))
             for n in ("scale", "bias", "mean", "var")]
    y1 = b.op("batch_norm", [x, *stats], {"epsilon": 1e-3})
    x2 = b.input("x2", (3, 4))  # rank 2: no spatial axes
    live = [b.input(n, (4,)) for n in ("s", "t", "m")]
    v = b.input("v", (4,))
    y2 = b.op("batch_norm", [x2, *live, b.op("mul", [v, v])])  # var >= 0, computed at run time
    check(b.build(y1, y2))


def test_lrn_sizes():
    b = Builder("lrn", seed=0)
    x = b.input("x", (2, 7, 3, 2))
    x3 = b.input("x3", (2, 4, 5), "f64")
    outs = [b.op("lrn", [x], {"size": 3}),
            b.op("lrn", [x], {"size": 4, "alpha": 0.1, "beta": 0.6, "bias": 2.0}),
            b.op("lrn", [x3], {"size": 5, "alpha": 0.5})]
    check(b.build(*outs))


def test_softmax_and_log_softmax_every_axis():
    b = Builder("softmax", seed=0)
    x = b.input("x", (3, 4, 5))
    x2 = b.input("x2", (2, 70))  # more columns than one block of the column kernel
    x3 = b.input("x3", (3, 70, 2))
    outs = [b.op(op, [x], {"axis": axis}) for op in ("softmax", "log_softmax") for axis in (0, 1, -1)]
    outs += [b.op("softmax", [x2], {"axis": 0}), b.op("log_softmax", [x3], {"axis": 0})]
    check(b.build(*outs))


def test_softmax_is_stable_for_large_inputs():
    b = Builder("stable", seed=0)
    x = b.input("x", (2, 6))
    g = b.build(b.op("softmax", [x], {"axis": 1}), b.op("log_softmax", [x], {"axis": 0}))
    f = {"x": (np.arange(12, dtype=np.float32).reshape(2, 6) * 300.0)}
    exe = check(g, f=f)
    assert all(np.isfinite(y).all() for y in exe.run(f))


# -- matmul ---------------------------------------------------------------------------------------
def test_gemm_every_transpose_and_c_shape():
    b = Builder("gemm", seed=0)
    m, k, n = 5, 7, 3
    outs = []
    cases = [(False, False, (n,)), (False, True, (m, 1)), (True, False, (1, 1)), (True, True, (m, n)),
             (True, True, None), (False, False, ())]
    for i, (ta, tb, c_shape) in enumerate(cases):
        a = b.input(f"a{i}", (k, m) if ta else (m, k))
        w = b.input(f"b{i}", (n, k) if tb else (k, n))
        ins = [a, w] + ([] if c_shape is None else [b.input(f"c{i}", c_shape)])
        attrs = {"trans_a": ta, "trans_b": tb, "alpha": 1.0 if i % 2 else 0.5, "beta": 1.0 if i < 2 else -2.0}
        outs.append(b.op("gemm", ins, attrs))
    a, w = b.input("ad", (4, 6), "f64"), b.input("bd", (6, 2), "f64")
    outs.append(b.op("gemm", [a, w, b.input("cd", (2,), "f64")], {"alpha": 2.0}))
    # fused activations: after C, after alpha alone, and alone
    a, w = b.input("aa", (m, k)), b.input("ba", (k, n))
    outs.append(b.op("gemm", [a, w, b.input("ca", (n,))], {"act": "relu"}))
    outs.append(b.op("gemm", [a, w], {"alpha": 0.5, "act": "clip", "act_min": -0.2, "act_max": 0.3}))
    outs.append(b.op("gemm", [a, w], {"act": "leaky_relu", "act_alpha": 0.1}))
    outs.append(b.op("gemm", [a, w, b.input("cs", (m, n))], {"act": "sigmoid", "beta": 0.5}))
    check(b.build(*outs))


def test_gemm_on_the_panel_micro_kernel():
    """gemms with const B (and C) run on kiln's micro-kernel (select_layout sets pack_b): a
    padded last panel, several panel groups with a narrower last one, row strips with a tail,
    one row, transposed A or B, alpha and beta, C as [N] or [1, N], each fused activation, and
    both the serial (small) and the parallel (large) launch."""
    rng = np.random.default_rng(3)
    b = Builder("panels", seed=0)
    outs = []
    cases = [  # m, k, n, trans_a, trans_b, c shape, alpha, beta, act
        (1, 37, 10, False, True, (10,), 1.0, 1.0, ""),
        (5, 20, 33, False, True, (1, 33), 0.5, 2.0, "relu"),
        (64, 40, 120, True, False, None, 1.0, 1.0, ""),        # 8 panels, 4 per job, 13-row strips
        (17, 9, 80, False, False, (80,), 1.0, -1.0, "sigmoid"),  # 5 panels: groups of 4 and 1
        (30, 70, 50, True, True, (50,), 1.0, 1.0, "leaky_relu"),  # 4 panels, the last padded
        (8, 300, 100, False, True, (100,), 2.0, 1.0, "clip"),  # parallel: above SERIAL_MACS
    ]
    for i, (m, k, n, ta, tb, c_shape, alpha, beta, act) in enumerate(cases):
        a = b.input(f"a{i}", (k, m) if ta else (m, k))
        w = b.param(f"w{i}", rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32))
        ins = [a, w] + ([] if c_shape is None else [b.param(f"c{i}", rng.standard_normal(c_shape).astype(np.float32))])
        outs.append(b.op("gemm", ins, {"trans_a": ta, "trans_b": tb, "alpha": alpha, "beta": beta, "act": act,
                                       "act_min": -0.5, "act_max": 0.5, "act_alpha": 0.1}))
    exe = check(b.build(*outs), {"rtol": 1e-4, "atol": 1e-4})
    program = exe.compiled.program
    notes = [program.kernels[launch.kernel].note for launch in program.launches]
    assert len(notes) == len(cases) and all("kiln micro-kernel" in note for note in notes), notes
    assert all(n.attrs["pack_b"] for n in exe.graph.nodes)
    assert any(program.kernels[launch.kernel].parallel for launch in program.launches)
    assert not all(program.kernels[launch.kernel].parallel for launch in program.launches)


def test_gemm_pack_b_needs_a_const_b():
    b = Builder("runtime_b", seed=0)
    g = b.build(b.op("gemm", [b.input("a", (2, 3)), b.input("w", (3, 4))], {"pack_b": True}))
    with pytest.raises(UnsupportedError, match="pack_b needs B"):
        kiln.compile(g, target="cpu")


def test_matmul_1d_2d_batched_broadcast():
    b = Builder("matmul", seed=0)
    pairs = [((5,), (5, 3)), ((4, 5), (5,)), ((5,), (5,)), ((3, 4), (4, 6)),
             ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (3, 4, 2)),
             ((4,), (2, 4, 3)), ((2, 3, 4), (4,)), ((3, 4), (2, 2, 4, 3))]
    outs = []
    for i, (sa, sb) in enumerate(pairs):
        outs.append(b.op("matmul", [b.input(f"a{i}", sa), b.input(f"b{i}", sb)]))
    outs.append(b.op("matmul", [b.input("ad", (2, 3, 4), "f64"), b.input("bd", (1, 4, 2), "f64")]))
    check(b.build(*outs))


# -- shape ----------------------------------------------------------------------------------------
def test_transpose_rank_3_and_4():
    b = Builder("transpose", seed=0)
    x3 = b.input("x3", (2, 3, 4))
    x4 = b.input("x4", (2, 3, 4, 5))
    xb = b.input("xb", (3, 2, 2), "i64")
    outs = [b.op("transpose", [x3], {"perm": p}) for p in [(0, 2, 1), (2, 0, 1), (1, 0, 2), ()]]
    perms4 = [(0, 2, 3, 1), (0, 3, 1, 2), (3, 2, 1, 0), (1, 0, 2, 3)]
    outs += [b.op("transpose", [x4], {"perm": p}) for p in perms4]
    outs.append(b.op("transpose", [xb], {"perm": (2, 1, 0)}))
    check(b.build(*outs))


# -- binary arithmetic, comparisons, where, cast ------------------------------------------------
@pytest.mark.parametrize("op", ["pow", "max", "min", "equal", "less", "greater", "less_equal", "greater_equal"])
def test_binary_ops_broadcast(op):
    b = Builder(op, seed=0)
    x, y = b.input("x", (2, 3, 4)), b.input("y", (3, 1))
    outs = [b.op(op, [b.op("abs", [x]) if op == "pow" else x, y])]
    if op != "pow":
        xi, yi = b.input("xi", (4, 5), "i32"), b.input("yi", (5,), "i32")
        outs.append(b.op(op, [xi, yi]))
    f = feeds(b.build(*outs))
    f["y"][0, 0] = f["x"][0, 0, 0]  # a tie
    check(b.build(*outs), f=f)


def test_max_and_min_keep_nan_from_either_side():
    b = Builder("nan", seed=0)
    x, y = b.input("x", (4,)), b.input("y", (4,))
    f = {"x": np.array([np.nan, 1, np.nan, 2], np.float32), "y": np.array([1, np.nan, np.nan, 3], np.float32)}
    got = kiln.compile(b.build(b.op("max", [x, y]), b.op("min", [x, y])), target="cpu").run(f)
    np.testing.assert_array_equal(got[0], np.maximum(f["x"], f["y"]))
    np.testing.assert_array_equal(got[1], np.minimum(f["x"], f["y"]))


def test_where_broadcasts_all_three():
    b = Builder("where", seed=0)
    x, y, z = b.input("x", (2, 1, 4)), b.input("y", (3, 1)), b.input("z", (1, 3, 4))
    check(b.build(b.op("where", [b.op("greater", [x, z]), y, z])))


@pytest.mark.parametrize("src, to", [("f32", "i32"), ("f32", "bool"), ("i64", "f32"), ("f64", "f32"),
                                     ("bool", "f64"), ("i32", "u8")])
def test_cast(src, to):
    b = Builder("cast", seed=0)
    x = b.input("x", (3, 5), src)
    check(b.build(b.op("cast", [b.op("mul", [x, b.const("k", np.array(3, TensorType(src, ()).np_dtype))])
                                if src == "f32" else x], {"to": to})))


@pytest.mark.parametrize("op", ["reduce_max", "reduce_min"])
@pytest.mark.parametrize("axes, keep", [((1,), False), ((0, 2), True), ((2,), False), ((0, 1, 2), False)])
def test_reduce_extremes(op, axes, keep):
    b = Builder(op, seed=0)
    x, xi = b.input("x", (3, 300, 5)), b.input("xi", (3, 300, 5), "i32")
    f = feeds(b.build(x, xi))
    f["x"][1, 7, 2] = np.nan
    check(b.build(*(b.op(op, [v], {"axes": axes, "keepdims": keep}) for v in (x, xi))), f=f)


@pytest.mark.parametrize("op, axis, last", [("arg_max", 2, False), ("arg_min", 1, True), ("arg_max", 0, True),
                                            ("arg_min", 0, False)])
def test_arg_extremes(op, axis, last):
    """Contiguous scans (last axis) and blocked column sweeps (inner 300 * 5 > 256), with ties,
    NaNs (first or last NaN wins, as numpy) and integers."""
    b = Builder(op, seed=0)
    x, xi = b.input("x", (3, 300, 5)), b.input("xi", (3, 300, 5), "i32")
    f = feeds(b.build(x, xi))
    f["x"] = np.round(f["x"] * 2) / 2  # ties along every axis
    f["xi"] = (f["xi"] % 4).astype(np.int32)
    f["x"][1, 7, 2] = f["x"][1, 9, 2] = f["x"][2, 4, 3] = np.nan
    attrs = {"axis": axis, "keepdims": axis != 1, "select_last_index": last}
    check(b.build(*(b.op(op, [v], attrs) for v in (x, xi))), f=f)


SLICES = [  # (input shape, starts, steps, sizes)
    ((2, 3, 8, 8), (0, 0, 0, 0), (1, 1, 2, 2), (2, 3, 4, 4)),  # x[:, :, ::2, ::2]
    ((2, 3, 8, 8), (0, 1, 1, 0), (1, 1, 2, 1), (2, 2, 4, 8)),
    ((2, 3, 8, 8), (1, 2, 7, 7), (-1, -1, -3, -1), (2, 3, 3, 8)),  # every axis walked backwards
    ((5, 7), (4, 0), (-2, 3), (3, 3)),
    ((4, 6), (0, 0), (1, 1), (0, 6)),  # an empty result
    ((3, 4, 5), (0, 1, 0), (1, 1, 1), (3, 2, 5)),  # one contiguous run per row
]


@pytest.mark.parametrize("shape, starts, steps, sizes", SLICES)
@pytest.mark.parametrize("dtype", ["f32", "i64"])
def test_slice(shape, starts, steps, sizes, dtype):
    b = Builder("slice", seed=0)
    x = b.input("x", shape, dtype)
    check(b.build(b.op("slice", [x], {"starts": starts, "steps": steps, "sizes": sizes})))


@pytest.mark.parametrize("shape, to", [((3, 1), (2, 3, 4)), ((1, 4, 1, 1), (2, 4, 3, 3)), ((5,), (5,)),
                                       ((2, 1, 3), (1, 4, 1)), ((1,), (3, 2))])
def test_expand(shape, to):
    b = Builder("expand", seed=0)
    x, xi = b.input("x", shape), b.input("xi", shape, "i32")
    check(b.build(b.op("expand", [x], {"shape": to}), b.op("expand", [xi], {"shape": to})))


def test_slice_out_of_range_is_refused():
    b = Builder("slice", seed=0)
    x = b.input("x", (4, 4))
    with pytest.raises(kiln.errors.KilnError, match=r"axis 1: elements 1, 3, .. 5 leave \[0, 4\)"):
        b.build(b.op("slice", [x], {"starts": (0, 1), "steps": (1, 2), "sizes": (4, 3)}))


def test_concat_three_inputs_on_each_axis():
    b = Builder("concat", seed=0)
    outs = []
    for axis in range(3):
        shapes = [tuple(d + (k if a == axis else 0) for a, d in enumerate((2, 3, 4))) for k in range(3)]
        xs = [b.input(f"x{axis}_{k}", s) for k, s in enumerate(shapes)]
        outs.append(b.op("concat", xs, {"axis": axis}))
    xi = b.input("xi", (2, 2), "i32")
    outs.append(b.op("concat", [xi, xi, xi], {"axis": -1}))  # one value passed three times
    check(b.build(*outs))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes_and_negative_pads(mode):
    b = Builder(f"pad_{mode}", seed=0)
    x = b.input("x", (2, 3, 4, 5))
    x2 = b.input("x2", (6, 5), "i32")
    value = {"value": 1.5} if mode == "constant" else {}
    outs = [
        b.op("pad", [x], {"mode": mode, "pads": (0, 0, 1, 2, 0, 0, 2, 3), **value}),  # spatial only
        b.op("pad", [x], {"mode": mode, "pads": (1, 0, 0, 1, 0, 2, 3, 0), **value}),
        b.op("pad", [x2], {"mode": mode, "pads": (-2, 3, 1, -1), **value}),  # crop and pad one axis
        b.op("pad", [x2], {"mode": mode, "pads": (-1, -2, -3, -1), **value}),  # crop only
        # a crop at the end of an axis before untouched ones: that axis must not merge with them
        b.op("pad", [x], {"mode": mode, "pads": (0, 0, 0, 0, 0, -1, 0, 0), **value}),
        b.op("pad", [x], {"mode": mode, "pads": (0, 0, 0, 0, 0, 0, -2, -1), **value}),
    ]
    check(b.build(*outs))


# -- sparse ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_spmm_empty_rows_and_repeated_columns(index_dtype):
    b = Builder("spmm", seed=0)
    indptr = np.array([0, 2, 2, 5, 6, 6], index_dtype)  # rows 1 and 4 are empty
    indices = np.array([1, 1, 0, 3, 0, 2], index_dtype)  # row 0 names column 1 twice
    data = np.random.default_rng(2).standard_normal(6).astype(np.float32)
    x = b.input("x", (4, 3))
    xd = b.input("xd", (4, 2), "f64")
    y = b.spmm(b.csr("adj", indptr, indices, data), x)
    adjd = (b.const("ip", indptr), b.const("ix", indices), b.const("d64", data.astype(np.float64)))
    yd = b.spmm(adjd, xd)
    check(b.build(y, yd))


def test_spmm_rejects_out_of_range_indices():
    b = Builder("spmm_bad", seed=0)
    indices = b.input("indices", (3,), "i32")
    adj = (b.const("indptr", np.array([0, 1, 3], np.int32)), indices, b.const("data", np.ones(3, np.float32)))
    g = b.build(b.spmm(adj, b.input("x", (4, 2))))
    exe = kiln.compile(g, target="cpu")
    x = np.ones((4, 2), np.float32)
    (y,) = exe.run({"indices": np.array([0, 3, 3], np.int32), "x": x})
    np.testing.assert_allclose(y, [[1, 1], [2, 2]])
    with pytest.raises(ValueError, match="column index"):
        exe.run({"indices": np.array([0, 4, 1], np.int32), "x": x})


# -- prange variants ------------------------------------------------------------------------------
def test_parallel_kernels():
    """Each op sized past its parallel threshold so its prange form is the one compiled."""
    b = Builder("parallel", seed=0)
    x = b.input("x", (2, 8, 48, 48))  # past PARALLEL_MIN
    big = b.input("big", (4, 16, 64, 64))  # past the gather threshold of transpose and pad
    assert big.type.numel >= shape_kernels.GATHER_PARALLEL_MIN
    assert 4 * big.type.numel >= shape_kernels.COPY_PARALLEL_MIN
    rows = PARALLEL_MIN // 32 + 8
    indptr = np.arange(rows + 1, dtype=np.int64) * 2
    indices = (np.arange(2 * rows) * 7 % 300).astype(np.int64)
    adj = b.csr("adj", indptr, indices, np.ones(2 * rows, np.float32) * 0.5)
    outs = [
        window(b, "maxpool2d", x, (3, 3), stride=(2, 2), pads=(1, 1, 1, 1)),
        window(b, "avgpool2d", x, (3, 3), stride=(2, 2), pads=(1, 1, 1, 1), ceil_mode=True),
        b.op("global_maxpool", [x]),
        b.op("softmax", [x], {"axis": 1}),
        b.op("log_softmax", [x], {"axis": -1}),
        b.op("transpose", [big], {"perm": (0, 2, 3, 1)}),
        b.op("concat", [big] * 4, {"axis": 1}),
        b.op("concat", [big] * 4, {"axis": 0}),  # one row: the copies themselves run in parallel
        b.op("pad", [big], {"mode": "reflect", "pads": (0, 0, 1, 2, 0, 0, 2, 1)}),
        b.op("pad", [big], {"mode": "wrap", "pads": (1, 0, 0, 0, 1, 0, 0, 0)}),  # the prange axis is padded
        b.spmm(adj, b.input("h", (300, 32))),
    ]
    exe = check(b.build(*outs))
    assert all(k.parallel for k in exe.compiled.program.kernels.values())


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_float16_is_refused_clearly(target):
    """At compile time, naming the node and the value, before any kernel is rendered; the
    reference target runs the model."""
    b = Builder("half", seed=0, dtype="f16")
    x = b.input("x", (1, 3, 5, 5), "f16")
    g = b.build(b.softmax(b.relu(b.conv2d(x, 4, 3, pads=1, name="conv")), axis=1))
    with pytest.raises(kiln.errors.UnsupportedError,
                       match=r"\(conv\): %x is f16\[1,3,5,5\]; the " + target + r" target compiles f32, f64.*no float16"):
        kiln.compile(g, target=target)
    assert kiln.compile(g, target="reference").run({"x": np.ones((1, 3, 5, 5), np.float16)})[0].dtype == np.float16
