"""Every op's numpy reference and shape inference against onnxruntime, one ONNX node at a time.

Each case runs the kiln op through the registry (normalize_attrs -> infer_types -> reference),
checks the reference against kiln's own inferred type, then runs the equivalent single-node ONNX
model on onnxruntime and compares shape, dtype and values. spmm has no ONNX counterpart and is
checked against a dense matmul of the CSR matrix built here.
"""

from __future__ import annotations

import numpy as np
import pytest
from kiln.ir import IRError, ShapeError, TensorType, infer_types, normalize_attrs
from onnx_util import Const, run_kiln_op, run_onnx_reference, run_onnxruntime

F32 = np.float32


def rand(k: int, *shape: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    return np.asarray(np.random.default_rng(k).uniform(lo, hi, shape), F32)


def shape_id(v):
    """Readable test ids for shapes: (2, 3, 4) -> 2x3x4, lists of shapes joined by +."""
    if isinstance(v, tuple):
        return "x".join(map(str, v)) or "()"
    if isinstance(v, list):
        return "+".join(shape_id(t) for t in v)
    return None


def check(op, attrs, arrays, onnx_op, onnx_attrs=None, onnx_inputs=None, opset=17,
          rtol=1e-5, atol=1e-5, oracle=run_onnxruntime):
    """kiln's `op` on `arrays` vs `onnx_op` (on `onnx_inputs`, default the same arrays)."""
    outs, types = run_kiln_op(op, arrays, attrs)
    expected = oracle(onnx_op, arrays if onnx_inputs is None else onnx_inputs, onnx_attrs, opset)[0]
    assert types[0].shape == expected.shape, f"inferred {types[0].shape}, onnx gives {expected.shape}"
    assert outs[0].dtype == expected.dtype
    np.testing.assert_allclose(outs[0], expected, rtol=rtol, atol=atol)
    return outs[0], expected


# -- conv ------------------------------------------------------------------------------------
CONV_CASES = {  # id: (x shape, w shape, bias, kiln attrs)
    "plain3x3": ((1, 4, 8, 8), (6, 4, 3, 3), True, {"pads": 1}),
    "1x1": ((2, 8, 5, 5), (4, 8, 1, 1), True, {}),
    "groups2": ((1, 4, 7, 7), (6, 2, 3, 3), True, {"groups": 2}),
    "depthwise": ((1, 6, 8, 8), (6, 1, 3, 3), True, {"groups": 6, "pads": 1}),
    "depthwise_x2": ((1, 3, 6, 6), (6, 1, 3, 3), True, {"groups": 3}),
    "dilation2": ((1, 3, 9, 9), (4, 3, 3, 3), True, {"dilation": 2}),
    "asym_pads": ((1, 3, 6, 7), (5, 3, 3, 3), True, {"pads": (0, 1, 2, 0)}),
    "stride3_k2": ((1, 3, 10, 11), (4, 3, 2, 2), True, {"stride": 3}),
    "stride2_odd": ((1, 3, 9, 9), (4, 3, 3, 3), True, {"stride": 2, "pads": 1}),
    "no_bias": ((1, 4, 8, 8), (6, 4, 3, 3), False, {"pads": 1}),
    "batch3": ((3, 3, 6, 6), (4, 3, 3, 3), True, {}),
    "5x5_pad2": ((1, 3, 8, 8), (4, 3, 5, 5), True, {"pads": 2}),
    "mixed_hw": ((1, 2, 9, 8), (3, 2, 3, 2), True,
                 {"stride": (2, 1), "dilation": (1, 2), "pads": (1, 0, 0, 1)}),
}


@pytest.mark.parametrize("case", CONV_CASES, ids=list(CONV_CASES))
def test_conv2d(case):
    xs, ws, bias, attrs = CONV_CASES[case]
    arrays = [rand(1, *xs), rand(2, *ws)] + ([rand(3, ws[0])] if bias else [])
    a = normalize_attrs("conv2d", attrs)
    onnx_attrs = {"strides": a["stride"], "dilations": a["dilation"], "pads": a["pads"],
                  "group": a["groups"], "kernel_shape": ws[2:]}
    # sums over up to 4*5*5 = 100 products in float32: allow 1e-4 for summation order
    check("conv2d", attrs, arrays, "Conv", onnx_attrs, rtol=1e-4, atol=1e-4)


# -- batch_norm ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,eps", [((2, 3, 4, 5), 1e-5), ((4, 6), 1e-3), ((2, 3, 7), 0.1)], ids=shape_id)
def test_batch_norm(shape, eps):
    c = shape[1]
    arrays = [rand(1, *shape, lo=-3, hi=3), rand(2, c, lo=0.5, hi=2), rand(3, c),
              rand(4, c), rand(5, c, lo=0.01, hi=2)]
    check("batch_norm", {"epsilon": eps}, arrays, "BatchNormalization", {"epsilon": eps}, opset=15)


# -- unary elementwise -----------------------------------------------------------------------
def _unary_input() -> np.ndarray:
    x = rand(7, 3, 4, 5, lo=-5, hi=5)
    x.flat[:6] = [0.0, -0.0, 100.0, -100.0, 30.0, -30.0]  # zeros and saturating magnitudes
    return x


INF = float("inf")
UNARY_CASES = {  # id: (kiln op, kiln attrs, onnx op, onnx attrs, extra onnx inputs)
    "relu": ("relu", {}, "Relu", {}, []),
    "leaky_relu_default": ("leaky_relu", {}, "LeakyRelu", {}, []),
    "leaky_relu_0.2": ("leaky_relu", {"alpha": 0.2}, "LeakyRelu", {"alpha": 0.2}, []),
    "sigmoid": ("sigmoid", {}, "Sigmoid", {}, []),
    "tanh": ("tanh", {}, "Tanh", {}, []),
    "clip_both": ("clip", {"min": -1.5, "max": 2.0}, "Clip", {}, [Const(F32(-1.5)), Const(F32(2.0))]),
    "clip_relu6": ("clip", {"min": 0, "max": 6}, "Clip", {}, [Const(F32(0)), Const(F32(6))]),
    "clip_only_min": ("clip", {"min": -0.5}, "Clip", {}, [Const(F32(-0.5))]),
    "clip_only_max": ("clip", {"max": 0.5}, "Clip", {}, [None, Const(F32(0.5))]),
    "clip_none": ("clip", {}, "Clip", {}, []),
    "clip_min_above_max": ("clip", {"min": 1, "max": -1}, "Clip", {}, [Const(F32(1)), Const(F32(-1))]),
    "dropout": ("dropout", {"ratio": 0.3}, "Dropout", {}, [Const(F32(0.3))]),
    "identity": ("identity", {}, "Identity", {}, []),
}


@pytest.mark.parametrize("case", UNARY_CASES, ids=list(UNARY_CASES))
def test_unary(case):
    op, attrs, onnx_op, onnx_attrs, extra = UNARY_CASES[case]
    x = _unary_input()
    check(op, attrs, [x], onnx_op, onnx_attrs, [x, *extra], opset=13)


def test_sigmoid_saturates_without_nan():
    x = np.array([-1e4, -100, -88.8, 0, 88.8, 100, 1e4], F32)
    (y,), _ = run_kiln_op("sigmoid", [x])
    assert np.isfinite(y).all() and y[0] == 0 and y[-1] == 1


# -- binary elementwise ----------------------------------------------------------------------
BROADCASTS = {
    "same": ((2, 3, 4, 5), (2, 3, 4, 5)),
    "trailing": ((2, 3, 4, 5), (5,)),
    "channel": ((2, 3, 4, 5), (3, 1, 1)),
    "both_ways": ((1, 3, 1, 5), (2, 1, 4, 1)),
    "scalar_rhs": ((2, 3, 4, 5), ()),
    "scalar_lhs": ((), (3, 4)),
}
BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div"}


@pytest.mark.parametrize("bc", BROADCASTS, ids=list(BROADCASTS))
@pytest.mark.parametrize("op", BINARY)
def test_binary(op, bc):
    sa, sb = BROADCASTS[bc]
    a = rand(1, *sa, lo=-2, hi=2)
    b = np.asarray(rand(2, *sb, lo=0.5, hi=2) * np.where(rand(3, *sb) < 0, -1, 1), F32)  # |b| >= 0.5
    check(op, {}, [a, b], BINARY[op])


# -- pooling ---------------------------------------------------------------------------------
MAXPOOL_CASES = {  # id: (x shape, kiln attrs)
    "2x2s2": ((1, 2, 8, 8), {"kernel": 2, "stride": 2}),
    "3x3s2p1": ((1, 2, 9, 9), {"kernel": 3, "stride": 2, "pads": 1}),
    "ceil_partial": ((1, 2, 7, 7), {"kernel": 2, "stride": 2, "ceil_mode": True}),
    "ceil_3x3s2": ((2, 1, 8, 10), {"kernel": 3, "stride": 2, "ceil_mode": True}),
    "ceil_drops_pad_window": ((1, 1, 5, 5), {"kernel": 2, "stride": 2, "pads": 1, "ceil_mode": True}),
    "asym_pads": ((1, 2, 6, 7), {"kernel": 3, "stride": 2, "pads": (0, 1, 2, 0)}),
    "dilation2": ((1, 2, 9, 9), {"kernel": 3, "dilation": 2}),
    "dilation2_ceil": ((1, 1, 10, 11), {"kernel": 2, "stride": 3, "dilation": 2, "ceil_mode": True}),
    "rect": ((1, 2, 7, 6), {"kernel": (3, 2), "stride": (2, 1)}),
    "all_negative": ((1, 2, 6, 6), {"kernel": 3, "stride": 2, "pads": 1}),  # padding never wins
}


def _window_onnx_attrs(op: str, attrs, dilation: bool) -> dict:
    a = normalize_attrs(op, attrs)
    out = {"kernel_shape": a["kernel"], "strides": a["stride"], "pads": a["pads"],
           "ceil_mode": int(a["ceil_mode"])}
    if dilation:
        out["dilations"] = a["dilation"]
    if "count_include_pad" in a:
        out["count_include_pad"] = int(a["count_include_pad"])
    return out


@pytest.mark.parametrize("case", MAXPOOL_CASES, ids=list(MAXPOOL_CASES))
def test_maxpool2d(case):
    shape, attrs = MAXPOOL_CASES[case]
    x = rand(4, *shape)
    if case == "all_negative":
        x = -np.abs(x) - 1
    check("maxpool2d", attrs, [x], "MaxPool", _window_onnx_attrs("maxpool2d", attrs, True))


AVGPOOL_CASES = {  # id: (x shape, kiln attrs without count_include_pad)
    "2x2s2": ((1, 2, 8, 8), {"kernel": 2, "stride": 2}),
    "3x3s2p1": ((1, 2, 8, 8), {"kernel": 3, "stride": 2, "pads": 1}),
    "asym_pads": ((1, 2, 6, 7), {"kernel": 3, "stride": 1, "pads": (0, 1, 2, 1)}),
    "ceil_partial": ((1, 2, 7, 7), {"kernel": 2, "stride": 2, "ceil_mode": True}),
    "ceil_3x3s2": ((1, 2, 8, 10), {"kernel": 3, "stride": 2, "ceil_mode": True}),
    "ceil_pad1": ((1, 2, 8, 8), {"kernel": 3, "stride": 2, "pads": 1, "ceil_mode": True}),
    "ceil_drops_pad_window": ((1, 1, 5, 5), {"kernel": 2, "stride": 2, "pads": 1, "ceil_mode": True}),
    "ceil_asym": ((1, 1, 7, 6), {"kernel": 3, "stride": 2, "pads": (1, 0, 0, 1), "ceil_mode": True}),
}


@pytest.mark.parametrize("include_pad", [False, True], ids=["exclude_pad", "include_pad"])
@pytest.mark.parametrize("case", AVGPOOL_CASES, ids=list(AVGPOOL_CASES))
def test_avgpool2d(case, include_pad):
    shape, attrs = AVGPOOL_CASES[case]
    attrs = {**attrs, "count_include_pad": include_pad}
    x = rand(5, *shape)
    check("avgpool2d", attrs, [x], "AveragePool", _window_onnx_attrs("avgpool2d", attrs, False))


@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (2, 3, 7), (1, 2, 3, 4, 2)], ids=shape_id)
@pytest.mark.parametrize("op,onnx_op", [("global_avgpool", "GlobalAveragePool"),
                                        ("global_maxpool", "GlobalMaxPool")])
def test_global_pool(op, onnx_op, shape):
    check(op, {}, [rand(6, *shape)], onnx_op)


# -- matrix products -------------------------------------------------------------------------
GEMM_CASES = {  # id: (A shape, B shape, C shape or None, kiln attrs)
    "no_c": ((3, 4), (4, 5), None, {}),
    "c_n": ((3, 4), (4, 5), (5,), {}),
    "c_m1": ((3, 4), (4, 5), (3, 1), {}),
    "c_11": ((3, 4), (4, 5), (1, 1), {}),
    "c_scalar": ((3, 4), (4, 5), (), {}),
    "c_full_alpha_beta": ((3, 4), (4, 5), (3, 5), {"alpha": 0.5, "beta": 2.0}),
    "trans_a": ((4, 3), (4, 5), (5,), {"trans_a": True}),
    "trans_b": ((3, 4), (5, 4), (3, 5), {"trans_b": True, "beta": 0.25}),
    "trans_both": ((4, 3), (5, 4), None, {"trans_a": True, "trans_b": True, "alpha": -1.5}),
    "long_k": ((6, 64), (64, 7), (7,), {}),
}


@pytest.mark.parametrize("case", GEMM_CASES, ids=list(GEMM_CASES))
def test_gemm(case):
    sa, sb, sc, attrs = GEMM_CASES[case]
    arrays = [rand(1, *sa), rand(2, *sb)] + ([] if sc is None else [rand(3, *sc)])
    a = normalize_attrs("gemm", attrs)
    onnx_attrs = {"alpha": a["alpha"], "beta": a["beta"], "transA": int(a["trans_a"]),
                  "transB": int(a["trans_b"])}
    # sums over up to 64 products in float32, accumulated in different orders: 1e-4
    check("gemm", attrs, arrays, "Gemm", onnx_attrs, rtol=1e-4, atol=1e-4)


MATMUL_CASES = {
    "2d": ((3, 4), (4, 5)),
    "batched_3d": ((2, 3, 4), (2, 4, 5)),
    "broadcast_batch": ((2, 1, 3, 4), (5, 4, 6)),
    "vec_mat": ((4,), (4, 5)),
    "mat_vec": ((3, 4), (4,)),
    "vec_vec": ((4,), (4,)),
    "batched_mat_vec": ((2, 3, 4), (4,)),
    "vec_batched_mat": ((4,), (2, 4, 5)),
}


@pytest.mark.parametrize("case", MATMUL_CASES, ids=list(MATMUL_CASES))
def test_matmul(case):
    sa, sb = MATMUL_CASES[case]
    check("matmul", {}, [rand(1, *sa), rand(2, *sb)], "MatMul", rtol=1e-4, atol=1e-5)


# -- shape ops -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,axis", [((2, 3, 4, 5), a) for a in (0, 1, 2, 4, -1, -3)]
                         + [((0, 3, 4), 1), ((2, 0, 4), 2), ((2, 0, 4), 1)], ids=shape_id)
def test_flatten(shape, axis):
    check("flatten", {"axis": axis}, [rand(1, *shape)], "Flatten", {"axis": axis}, opset=13)


@pytest.mark.parametrize("in_shape,shape", [((2, 3, 4), s) for s in
                                             [(6, 4), (-1, 4), (2, -1, 2), (24,), (1, -1, 1, 3)]]
                         + [((0, 3, 4), (3, 0))], ids=shape_id)
def test_reshape(in_shape, shape):
    x = rand(1, *in_shape)
    # kiln's 0 is a literal size, ONNX's 0 copies the input's dimension unless allowzero=1
    check("reshape", {"shape": shape}, [x], "Reshape", {"allowzero": 1},
          onnx_inputs=[x, Const(np.array(shape, np.int64))], opset=14)


@pytest.mark.parametrize("shape,perm", [((2, 3, 4), (0, 2, 1)), ((2, 3, 4), (2, 0, 1)), ((2, 3, 4), ()),
                                        ((2, 3, 4, 5), (0, 2, 3, 1)), ((5,), ())], ids=shape_id)
def test_transpose(shape, perm):
    onnx_attrs = {"perm": perm} if perm else {}  # ONNX: no perm attribute reverses the axes
    check("transpose", {"perm": perm}, [rand(1, *shape)], "Transpose", onnx_attrs, opset=13)


@pytest.mark.parametrize("shapes,axis", [
    ([(2, 3), (4, 3)], 0),
    ([(2, 3, 4), (2, 1, 4)], 1),
    ([(2, 3, 4), (2, 3, 1), (2, 3, 2)], -1),
    ([(1, 3, 4), (2, 3, 4), (3, 3, 4)], -3),
], ids=shape_id)
def test_concat(shapes, axis):
    arrays = [rand(k, *s) for k, s in enumerate(shapes)]
    check("concat", {"axis": axis}, arrays, "Concat", {"axis": axis}, opset=13)


@pytest.mark.parametrize("axis", [-1, 1, 0])
@pytest.mark.parametrize("op,onnx_op", [("softmax", "Softmax"), ("log_softmax", "LogSoftmax")])
def test_softmax(op, onnx_op, axis):
    x = rand(8, 2, 3, 4, lo=-10, hi=10)
    x[0, 0, 0] = 80.0  # large logits must not overflow
    check(op, {"axis": axis}, [x], onnx_op, {"axis": axis}, opset=13)


def lrn_spec(op_type, inputs, attrs, opset):
    """The ONNX LRN formula as a plain loop over channels: channel c sums squares over
    [c - floor((size-1)/2), c + ceil((size-1)/2)], clipped to the channels that exist."""
    (x,), size = inputs, attrs["size"]
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    sq = np.zeros(x.shape)
    for c in range(x.shape[1]):
        sq[:, c] = np.sum(x[:, max(0, c - lo): c + hi + 1].astype(np.float64) ** 2, axis=1)
    return [(x / (attrs["bias"] + attrs["alpha"] / size * sq) ** attrs["beta"]).astype(x.dtype)]


# onnxruntime's CPU LRN refuses even sizes (lrn.h: `size_ % 2 == 1`), and onnx's
# ReferenceEvaluator LRN loops over the batch axis instead of channels, so even sizes are
# checked against the spec formula written out above.
@pytest.mark.parametrize("size,alpha,beta,bias", [(3, 1e-4, 0.75, 1.0), (5, 0.5, 0.6, 2.0),
                                                  (1, 0.2, 0.5, 1.5), (4, 0.3, 0.75, 1.0),
                                                  (6, 0.5, 0.6, 2.0)])
def test_lrn(size, alpha, beta, bias):
    attrs = {"size": size, "alpha": alpha, "beta": beta, "bias": bias}
    oracle = run_onnxruntime if size % 2 else lrn_spec
    check("lrn", attrs, [rand(9, 2, 7, 3, 3, lo=-3, hi=3)], "LRN", attrs, oracle=oracle)


def test_lrn_spec_oracle_matches_onnxruntime():
    attrs = {"size": 5, "alpha": 0.5, "beta": 0.6, "bias": 2.0}
    x = rand(9, 2, 7, 3, 3, lo=-3, hi=3)
    np.testing.assert_allclose(lrn_spec("LRN", [x], attrs, 17)[0],
                               run_onnxruntime("LRN", [x], attrs)[0], rtol=1e-5, atol=1e-5)


PAD_CASES = {  # id: (x shape, pads, mode, value)
    "constant0": ((2, 3), (1, 2, 0, 1), "constant", 0.0),
    "constant_value": ((1, 2, 3, 3), (0, 0, 1, 2, 0, 0, 2, 1), "constant", 1.5),
    "reflect": ((1, 2, 4, 5), (0, 0, 2, 1, 0, 0, 1, 3), "reflect", 0.0),
    "edge": ((1, 2, 4, 5), (0, 0, 3, 1, 0, 0, 1, 4), "edge", 0.0),
    "crop": ((2, 3, 4), (0, -1, 0, -1, 0, -2), "constant", 0.0),
    "crop_and_pad": ((3, 5), (-1, 2, 1, -2), "constant", -2.0),
}


@pytest.mark.parametrize("case", PAD_CASES, ids=list(PAD_CASES))
def test_pad(case):
    shape, pads, mode, value = PAD_CASES[case]
    x = rand(10, *shape)
    inputs = [x, Const(np.array(pads, np.int64)), Const(F32(value))]
    check("pad", {"pads": pads, "mode": mode, "value": value}, [x], "Pad", {"mode": mode},
          onnx_inputs=inputs, opset=13)


# -- spmm (no ONNX op: a dense matmul of the densified CSR matrix is the oracle) -------------
SPMM_CASES = {  # id: (rows per entry-row list of (col, value), x rows)
    "empty_row_and_repeats": ([[(0, 1.0), (2, -2.0), (2, 0.5)], [], [(1, 3.0)], [(3, 1.0), (0, 1.0)]], 4),
    "rectangular": ([[(4, 0.5)], [(0, 1.0), (1, 1.0), (4, 2.0)]], 5),
    "no_entries": ([[], [], []], 2),
}


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("case", SPMM_CASES, ids=list(SPMM_CASES))
def test_spmm(case, index_dtype):
    rows, n = SPMM_CASES[case]
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(index_dtype)
    indices = np.array([c for r in rows for c, _ in r], index_dtype)
    data = np.array([v for r in rows for _, v in r], F32)
    x = rand(11, n, 3)
    dense = np.zeros((len(rows), n))
    for i, r in enumerate(rows):
        for c, v in r:
            dense[i, c] += v  # repeated columns add up, as in scipy
    (y,), types = run_kiln_op("spmm", [indptr, indices, data, x])
    assert types[0] == TensorType("f32", (len(rows), 3))
    np.testing.assert_allclose(y, dense @ x.astype(np.float64), rtol=1e-6, atol=1e-6)


# -- float64: inference keeps the dtype, references compute in it ---------------------------
# (onnxruntime's CPU Conv and AveragePool have no double kernel, so those stay float32-only)
F64_CASES = {  # id: (kiln op, input shapes, kiln attrs, onnx op, onnx attrs, opset)
    "gemm": ("gemm", [(3, 4), (5, 4), (5,)], {"trans_b": True}, "Gemm", {"transB": 1}, 17),
    "matmul": ("matmul", [(2, 3, 4), (4, 5)], {}, "MatMul", {}, 17),
    "add": ("add", [(2, 3, 4), (3, 1)], {}, "Add", {}, 17),
    "sigmoid": ("sigmoid", [(3, 4)], {}, "Sigmoid", {}, 17),
    "softmax": ("softmax", [(2, 5)], {"axis": 0}, "Softmax", {"axis": 0}, 13),
    "batch_norm": ("batch_norm", [(2, 3, 4), (3,), (3,), (3,), (3,)], {}, "BatchNormalization", {}, 15),
    "maxpool2d": ("maxpool2d", [(1, 2, 5, 5)], {"kernel": 2, "ceil_mode": True}, "MaxPool",
                  {"kernel_shape": [2, 2], "ceil_mode": 1}, 17),
}


@pytest.mark.parametrize("case", F64_CASES, ids=list(F64_CASES))
def test_float64(case):
    op, shapes, attrs, onnx_op, onnx_attrs, opset = F64_CASES[case]
    arrays = [np.random.default_rng(k).uniform(0.1 if k == 4 else -8, 8, s) for k, s in enumerate(shapes)]
    y, _ = check(op, attrs, arrays, onnx_op, onnx_attrs, opset=opset, rtol=1e-12, atol=1e-12)
    assert y.dtype == np.float64


# -- inference rejects bad inputs ------------------------------------------------------------
def T(*shape: int) -> TensorType:
    return TensorType("f32", shape)


BAD_INPUTS = {  # id: (op, input types, attrs, expected message fragment)
    "conv_channels": ("conv2d", [T(1, 4, 8, 8), T(6, 3, 3, 3)], {}, "expects 3 input channels, input has 4"),
    "conv_groups": ("conv2d", [T(1, 4, 8, 8), T(6, 1, 3, 3)], {"groups": 3},
                    "groups=3 must divide input channels 4"),
    "conv_bias": ("conv2d", [T(1, 4, 8, 8), T(6, 4, 3, 3), T(4)], {}, "bias must be f32[6]"),
    "gemm_inner": ("gemm", [T(3, 4), T(5, 6)], {}, "inner dimensions differ: A gives 4, B gives 5"),
    "matmul_inner": ("matmul", [T(2, 3, 4), T(5, 6)], {}, "inner dimensions differ"),
    "add_broadcast": ("add", [T(2, 3), T(4)], {}, "do not broadcast"),
    "concat_mismatch": ("concat", [T(2, 3), T(2, 4)], {"axis": 0}, "does not match input 0"),
    "reshape_count": ("reshape", [T(2, 3)], {"shape": (4, 2)}, "cannot reshape 6 elements to [4, 2]"),
    "pool_window": ("maxpool2d", [T(1, 1, 2, 2)], {"kernel": 3}, "does not fit input 2"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_inference_rejects(case):
    op, types, attrs, message = BAD_INPUTS[case]
    with pytest.raises(ShapeError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        infer_types(op, types, normalize_attrs(op, attrs))
    assert isinstance(err.value, IRError)


@pytest.mark.parametrize("op,attrs,message", [
    ("conv2d", {"kernel_size": 3}, "unknown attribute"),
    ("conv2d", {"groups": "2"}, "expected int"),
    ("conv2d", {"groups": 1.5}, "expected int"),
    ("conv2d", {"stride": (1, 2, 3)}, "expected 2 values"),
    ("pad", {"pads": (1, 1), "mode": "mirror"}, "not one of"),
    ("lrn", {}, "'size' is required"),
])
def test_normalize_attrs_rejects(op, attrs, message):
    with pytest.raises(IRError, match=message):
        normalize_attrs(op, attrs)


def test_shape_error_is_ir_error():
    assert issubclass(ShapeError, IRError)


# Second oracle: onnx's ReferenceEvaluator (the spec in Python) agrees on the pooling rules too.
@pytest.mark.parametrize("case", ["ceil_pad1", "ceil_drops_pad_window", "ceil_asym"])
@pytest.mark.parametrize("include_pad", [False, True], ids=["exclude_pad", "include_pad"])
def test_avgpool2d_vs_onnx_reference(case, include_pad):
    shape, attrs = AVGPOOL_CASES[case]
    attrs = {**attrs, "count_include_pad": include_pad}
    check("avgpool2d", attrs, [rand(5, *shape)], "AveragePool",
          _window_onnx_attrs("avgpool2d", attrs, False), oracle=run_onnx_reference)
