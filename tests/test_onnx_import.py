"""The ONNX importer end to end: models built with onnx.helper, imported with from_onnx, run on
kiln's reference interpreter and compared with onnxruntime. Also: what the importer makes of
weights (param roles), shape idioms (folded away), symbolic dimensions, external data, legacy
opsets, and the errors a user gets for a model kiln cannot import.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from kiln import compile as compile_model
from kiln.errors import KilnError, ModelError, UnsupportedError
from kiln.frontend.onnx import from_onnx
from kiln.runtime import interpret
from onnx import TensorProto, helper, numpy_helper
from onnx_util import IR_VERSION

F32 = np.float32
RTOL, ATOL = 1e-4, 1e-5


def rand(seed: int, *shape: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    return np.asarray(np.random.default_rng(seed).uniform(lo, hi, shape), F32)


def model(nodes, inputs: dict, outputs, inits: dict | None = None, opset: int = 17,
          dims: dict | None = None, domains: dict | None = None) -> onnx.ModelProto:
    """A model over `nodes`; `inputs` maps name -> example array (its dtype and shape, or the
    dims in `dims`), `inits` name -> initializer array; `outputs` are value names (typed by
    onnx's shape inference, as onnx.checker wants graph outputs typed) or ValueInfoProtos."""
    dims = dims or {}
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype),
                                         dims.get(n, list(a.shape))) for n, a in inputs.items()]
    outs = [helper.make_empty_tensor_value_info(o) if isinstance(o, str) else o for o in outputs]
    tensors = [numpy_helper.from_array(np.asarray(a), n) for n, a in (inits or {}).items()]
    graph = helper.make_graph(nodes, "test", vis, outs, tensors)
    domains = {"": opset, **(domains or {})}
    opsets = [helper.make_opsetid(d, v) for d, v in domains.items()]
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = IR_VERSION  # onnx 1.23 writes IR 14 by default; onnxruntime refuses it
    return onnx.shape_inference.infer_shapes(m, data_prop=True)


def run_ort(m: onnx.ModelProto | str, feeds: dict) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    src = m if isinstance(m, str) else m.SerializeToString()
    return ort.InferenceSession(src, options, providers=["CPUExecutionProvider"]).run(None, feeds)


def check(m, feeds: dict, **kwargs):
    """Import `m`, run it on kiln's interpreter and onnxruntime; returns (graph, kiln outputs)."""
    g = from_onnx(m, **kwargs)
    got = interpret(g, feeds)
    want = run_ort(m, feeds)
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.shape == b.shape, f"output {i}: kiln {a.shape}, onnxruntime {b.shape}"
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"output {i}")
    return g, got


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, name=f"{op}_{outs[0]}", **attrs)


# -- 1. a residual block ----------------------------------------------------------------------
def _bn_inits(prefix: str, c: int, seed: int) -> dict:
    return {f"{prefix}.scale": rand(seed, c, lo=0.5, hi=1.5), f"{prefix}.bias": rand(seed + 1, c),
            f"{prefix}.mean": rand(seed + 2, c), f"{prefix}.var": rand(seed + 3, c, lo=0.5, hi=2.0)}


def test_residual_block_and_param_roles():
    c = 4
    inits = {"w1": rand(1, c, c, 3, 3), "b1": rand(2, c), "w2": rand(3, c, c, 3, 3), "b2": rand(4, c),
             "fc.w": rand(5, 10, c), "fc.b": rand(6, 10),
             **_bn_inits("bn1", c, 10), **_bn_inits("bn2", c, 20)}

    def bn(x, p, y):
        return node("BatchNormalization", [x, f"{p}.scale", f"{p}.bias", f"{p}.mean", f"{p}.var"], [y])

    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), bn("c1", "bn1", "n1"),
             node("Relu", ["n1"], ["r1"]), node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             bn("c2", "bn2", "n2"), node("Add", ["n2", "x"], ["s"]), node("Relu", ["s"], ["r2"]),
             node("GlobalAveragePool", ["r2"], ["p"]), node("Flatten", ["p"], ["f"]),
             node("Gemm", ["f", "fc.w", "fc.b"], ["y"], transB=1)]
    x = rand(0, 2, c, 8, 8)
    g, _ = check(model(nodes, {"x": x}, ["y"], inits), {"x": x})
    roles = {p.name: p.role for p in g.params}
    for w in ("w1", "w2", "fc.w", "b1", "fc.b", "bn1.scale"):
        assert roles[w] == "param", (w, roles[w])
    for s in ("bn1.mean", "bn1.var", "bn2.mean", "bn2.var"):
        assert roles[s] == "buffer", (s, roles[s])
    assert [v.name for v in g.inputs] == ["x"]


# -- 2. the PyTorch flatten idiom folds to one reshape -----------------------------------------
@pytest.mark.parametrize("opset", [11, 13])  # 11: folded at the model's opset, not the newest
def test_shape_gather_concat_reshape_folds(opset):
    def const(name, arr):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(arr)))

    if opset >= 13:
        unsq = node("Unsqueeze", ["n", "ax"], ["n1"])
    else:
        unsq = node("Unsqueeze", ["n"], ["n1"], axes=[0])
    nodes = [const("zero", np.array(0, np.int64)), const("minus1", np.array([-1], np.int64)),
             *([const("ax", np.array([0], np.int64))] if opset >= 13 else []),
             node("Shape", ["x"], ["s"]), node("Gather", ["s", "zero"], ["n"], axis=0), unsq,
             node("Concat", ["n1", "minus1"], ["shape"], axis=0), node("Reshape", ["x", "shape"], ["y"])]
    x = rand(0, 3, 2, 4, 5)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 40])  # inference leaves it open
    g, _ = check(model(nodes, {"x": x}, [y], opset=opset), {"x": x})
    assert Counter(n.op for n in g.nodes) == Counter({"reshape": 1}), [n.op for n in g.nodes]


# -- 3. softmax: opset 11 coerces to 2-D, opset 13 normalises one axis -------------------------
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_axis_semantics_by_opset(op):
    x = rand(0, 2, 3, 4, lo=-3, hi=3)
    results = {}
    for opset in (11, 13):
        m = model([node(op, ["x"], ["y"], axis=1)], {"x": x}, ["y"], opset=opset)
        results[opset] = check(m, {"x": x})[1][0]
    assert not np.allclose(results[11], results[13], rtol=RTOL, atol=ATOL)


# -- 4. auto_pad ------------------------------------------------------------------------------
@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("k", [2, 3])
def test_conv_auto_pad(auto_pad, k):
    x, w, b = rand(0, 1, 3, 7, 9), rand(1, 4, 3, k, k), rand(2, 4)
    m = model([node("Conv", ["x", "w", "b"], ["y"], auto_pad=auto_pad, strides=[2, 2])],
              {"x": x}, ["y"], {"w": w, "b": b})
    _, (y,) = check(m, {"x": x})
    if auto_pad != "VALID":
        assert y.shape == (1, 4, 4, 5)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("k", [2, 3])
def test_pool_same_upper(op, k):
    x = rand(0, 1, 2, 7, 9)
    m = model([node(op, ["x"], ["y"], kernel_shape=[k, k], strides=[2, 2], auto_pad="SAME_UPPER")],
              {"x": x}, ["y"])
    _, (y,) = check(m, {"x": x})
    assert y.shape == (1, 2, 4, 5)


# -- 5. 1-D and 3-D windows --------------------------------------------------------------------
def test_conv_1d():
    x, w, b = rand(0, 2, 3, 11), rand(1, 4, 3, 3), rand(2, 4)
    m = model([node("Conv", ["x", "w", "b"], ["y"], strides=[2], pads=[1, 2], dilations=[2])],
              {"x": x}, ["y"], {"w": w, "b": b})
    check(m, {"x": x})


POOLS = [("MaxPool", {}), ("AveragePool", {"count_include_pad": 1}),
         ("AveragePool", {"count_include_pad": 0})]


@pytest.mark.parametrize("op,extra", POOLS)
def test_pool_1d(op, extra):
    x = rand(0, 2, 3, 10)
    n = node(op, ["x"], ["y"], kernel_shape=[3], strides=[2], pads=[1, 1], **extra)
    check(model([n], {"x": x}, ["y"]), {"x": x})


@pytest.mark.parametrize("op,extra", POOLS)
def test_pool_3d(op, extra):
    x = rand(0, 1, 2, 5, 6, 7)
    n = node(op, ["x"], ["y"], kernel_shape=[2, 3, 3], strides=[2, 2, 1], pads=[1, 1, 0, 0, 1, 1], **extra)
    check(model([n], {"x": x}, ["y"]), {"x": x})


# -- 6. symbolic dimensions --------------------------------------------------------------------
def _conv_model(dims):
    x = rand(0, 1, 3, 5, 6)
    return model([node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], {"x": x}, ["y"],
                 {"w": rand(1, 2, 3, 3, 3)}, dims={"x": dims})


def test_symbolic_batch():
    m = _conv_model(["N", 3, 5, 6])
    assert from_onnx(m).inputs[0].type.shape == (1, 3, 5, 6)
    g, (y,) = check(m, {"x": rand(2, 4, 3, 5, 6)}, batch=4)
    assert g.inputs[0].type.shape == (4, 3, 5, 6) and y.shape == (4, 2, 5, 6)


def test_symbolic_inner_dim_needs_input_shapes():
    m = _conv_model([1, 3, "H", 6])
    with pytest.raises(UnsupportedError) as e:
        from_onnx(m)
    assert "%x" in str(e.value) and "'H'" in str(e.value) and "input_shapes" in str(e.value)
    g, _ = check(m, {"x": rand(2, 1, 3, 8, 6)}, input_shapes={"x": (1, 3, 8, 6)})
    assert g.inputs[0].type.shape == (1, 3, 8, 6)


def test_input_shapes_unknown_name():
    with pytest.raises(KilnError, match="nope"):
        from_onnx(_conv_model([1, 3, 5, 6]), input_shapes={"nope": (1, 3, 5, 6)})


# -- 7. an input that is also an initializer ---------------------------------------------------
def test_input_with_initializer_is_a_param():
    x, w = rand(0, 2, 5), rand(1, 5, 3)
    m = model([node("MatMul", ["x", "w"], ["y"])], {"x": x, "w": w}, ["y"], {"w": w})
    g, _ = check(m, {"x": x})
    assert [v.name for v in g.inputs] == ["x"]
    assert g.param_map["w"].role == "param"


# -- 8. external data --------------------------------------------------------------------------
def test_external_data(tmp_path):
    x, w, fc = rand(0, 1, 8, 10, 10), rand(1, 32, 8, 3, 3), rand(2, 32, 64)
    nodes = [node("Conv", ["x", "w"], ["c"]), node("GlobalAveragePool", ["c"], ["p"]),
             node("Flatten", ["p"], ["f"]), node("MatMul", ["f", "fc"], ["y"])]
    m = model(nodes, {"x": x}, ["y"], {"w": w, "fc": fc})
    path = tmp_path / "model.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").stat().st_size >= w.nbytes + fc.nbytes
    g = from_onnx(str(path))
    (got,), (want,) = interpret(g, {"x": x}), run_ort(str(path), {"x": x})
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(g.param_map["w"].data, w)


# -- 9. a legacy (opset 6) model goes through onnx's version converter ------------------------
# onnxruntime has no Add(6) kernel, so these compare with numpy.
def _legacy_add(b_shape, **attrs):
    a, b = rand(0, 2, 3, 4, 5), rand(1, *b_shape)
    m = model([node("Add", ["a", "b"], ["y"], broadcast=1, **attrs)], {"a": a, "b": b}, ["y"], opset=6)
    m.ir_version = 3
    (y,) = interpret(from_onnx(m), {"a": a, "b": b})
    return y, a, b


def test_opset6_legacy_broadcast_suffix():
    y, a, b = _legacy_add((4, 5))
    np.testing.assert_allclose(y, a + b, rtol=RTOL, atol=ATOL)


def test_opset6_legacy_broadcast_axis():
    y, a, b = _legacy_add((3,), axis=1)
    np.testing.assert_allclose(y, a + b.reshape(1, 3, 1, 1), rtol=RTOL, atol=ATOL)


# -- 10. one op at a time, through the importer -------------------------------------------------
@pytest.mark.parametrize("opset", [6, 10])
def test_clip_attribute_form(opset):
    x = rand(0, 3, 4, lo=-2, hi=2)
    check(model([node("Clip", ["x"], ["y"], min=-0.5, max=0.75)], {"x": x}, ["y"], opset=opset), {"x": x})


def test_clip_input_form():
    x = rand(0, 3, 4, lo=-2, hi=2)
    m = model([node("Clip", ["x", "lo", "hi"], ["y"])], {"x": x}, ["y"],
              {"lo": np.array(-0.5, F32), "hi": np.array(0.75, F32)}, opset=13)
    check(m, {"x": x})


def test_dropout_with_mask():
    x = rand(0, 2, 3, 4)
    m = model([node("Dropout", ["x", "ratio"], ["y", "mask"])], {"x": x}, ["y", "mask"],
              {"ratio": np.array(0.3, F32)}, opset=13)
    _, (y, mask) = check(m, {"x": x})
    assert mask.dtype == np.bool_ and mask.all()
    np.testing.assert_array_equal(y, x)


def test_prelu_per_channel():
    x, slope = rand(0, 2, 3, 4, 5), rand(1, 3, 1, 1, lo=0.1, hi=0.5)
    check(model([node("PRelu", ["x", "slope"], ["y"])], {"x": x}, ["y"], {"slope": slope}), {"x": x})


def test_sum_of_three():
    feeds = {"a": rand(0, 2, 3), "b": rand(1, 2, 3), "c": rand(2, 3)}
    check(model([node("Sum", ["a", "b", "c"], ["y"])], feeds, ["y"]), feeds)


@pytest.mark.parametrize("mode,opset", [("constant", 13), ("reflect", 13), ("edge", 13), ("wrap", 19)])
def test_pad_modes(mode, opset):
    x = rand(0, 1, 2, 4, 5)
    pads = np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)
    inits = {"pads": pads, **({"v": np.array(0.5, F32)} if mode == "constant" else {})}
    ins = ["x", "pads"] + (["v"] if mode == "constant" else [])
    check(model([node("Pad", ins, ["y"], mode=mode)], {"x": x}, ["y"], inits, opset=opset), {"x": x})


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze(opset):
    x = rand(0, 2, 1, 3, 1)
    if opset >= 13:
        nodes = [node("Squeeze", ["x", "sq"], ["s"]), node("Unsqueeze", ["s", "us"], ["y"])]
    else:
        nodes = [node("Squeeze", ["x"], ["s"], axes=[1, -1]), node("Unsqueeze", ["s"], ["y"], axes=[0, 3])]
    inits = {"sq": np.array([1, -1], np.int64), "us": np.array([0, 3], np.int64)} if opset >= 13 else {}
    _, (y,) = check(model(nodes, {"x": x}, ["y"], inits, opset=opset), {"x": x})
    assert y.shape == (1, 2, 3, 1)


def test_transpose():
    x = rand(0, 2, 3, 4, 5)
    check(model([node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], {"x": x}, ["y"]), {"x": x})


def test_concat_of_computed():
    x = rand(0, 2, 3, 4)
    nodes = [node("Relu", ["x"], ["a"]), node("Sigmoid", ["x"], ["b"]), node("Tanh", ["x"], ["c"]),
             node("Concat", ["a", "b", "c"], ["y"], axis=1)]
    _, (y,) = check(model(nodes, {"x": x}, ["y"]), {"x": x})
    assert y.shape == (2, 9, 4)


def test_lrn():
    x = rand(0, 1, 6, 4, 4)
    m = model([node("LRN", ["x"], ["y"], size=3, alpha=1e-3, beta=0.75, bias=2.0)], {"x": x}, ["y"])
    check(m, {"x": x})


def test_gemm_transposes_alpha_beta():
    a, b, c = rand(0, 4, 3), rand(1, 5, 4), rand(2, 5)
    m = model([node("Gemm", ["a", "b", "c"], ["y"], transA=1, transB=1, alpha=0.5, beta=2.0)],
              {"a": a}, ["y"], {"b": b, "c": c})
    _, (y,) = check(m, {"a": a})
    assert y.shape == (3, 5)


@pytest.mark.parametrize("sa,sb", [((2, 3, 4, 5), (2, 3, 5, 6)), ((3, 4, 5), (5, 6)), ((4, 5), (2, 5, 3))])
def test_matmul_batched(sa, sb):
    feeds = {"a": rand(0, *sa), "b": rand(1, *sb)}
    check(model([node("MatMul", ["a", "b"], ["y"])], feeds, ["y"]), feeds)


# -- 11. errors --------------------------------------------------------------------------------
def test_unsupported_op_message():
    assert issubclass(UnsupportedError, KilnError) and issubclass(ModelError, KilnError)
    x = rand(0, 2, 3)
    with pytest.raises(UnsupportedError) as e:
        from_onnx(model([helper.make_node("Asinh", ["x"], ["y"], name="my_asinh")], {"x": x}, ["y"], opset=15))
    msg = str(e.value)
    for part in ("'my_asinh'", "op Asinh", "'ai.onnx'", "opset 15", "Conv"):
        assert part in msg, (part, msg)


def test_an_op_onnx_does_not_define_gets_kilns_report():
    """Not the checker's 'No Op registered' line: every such node, and the ops kiln imports."""
    x = rand(0, 2, 3)
    nodes = [helper.make_node("Frobnicate", ["x"], ["a"], name="f1"), node("Relu", ["a"], ["b"]),
             helper.make_node("Twiddle", ["b"], ["y"], name="f2")]
    with pytest.raises(UnsupportedError) as e:
        from_onnx(model(nodes, {"x": x}, ["y"]))
    msg = str(e.value)
    for part in ("cannot import 2 node(s)", "'f1' (op Frobnicate", "'f2' (op Twiddle", "no such ONNX operator",
                 "kiln imports: ", "Conv", "LayerNormalization"):
        assert part in msg, (part, msg)


def test_an_unsupported_op_names_the_models_supported_ops_and_why_no_expansion():
    """Asinh has no ONNX function body; Bernoulli has one, whose RandomUniformLike kiln lacks."""
    x = rand(0, 2, 3)
    nodes = [node("Relu", ["x"], ["a"]), helper.make_node("Asinh", ["a"], ["b"], name="no_body"),
             helper.make_node("Bernoulli", ["a"], ["c"], name="coin"), node("Add", ["b", "c"], ["y"])]
    with pytest.raises(UnsupportedError) as e:
        from_onnx(model(nodes, {"x": x}, ["y"], opset=22))
    msg = str(e.value)
    for part in ("'no_body' (op Asinh", "onnx defines no function body", "'coin' (op Bernoulli",
                 "function body (opset 22) was tried", "RandomUniformLike",
                 "this model's ops that kiln has converters for: Add, Relu"):
        assert part in msg, (part, msg)


@pytest.mark.parametrize("op, opset, attrs", [
    ("Celu", 17, {"alpha": 0.7}),  # a context-dependent body
    ("Shrink", 17, {"lambd": 0.4, "bias": 0.1}),  # a body written at opset 18, its CastLike expanding in turn
    ("Shrink", 21, {}),  # the schema's default lambd and bias
    ("ThresholdedRelu", 21, {"alpha": 0.2}),
    ("MeanVarianceNormalization", 13, {"axes": [0, 2, 3]}),
])
def test_ops_without_a_converter_import_through_their_function_bodies(op, opset, attrs):
    x = rand(1, 2, 3, 4, 5)
    g, _ = check(model([helper.make_node(op, ["x"], ["y"], name="f", **attrs)], {"x": x}, ["y"], opset=opset),
                 {"x": x})
    assert op.lower() not in {n.op for n in g.nodes} and len(g.nodes) > 1
    got = compile_model(g, target="cpu").run({"x": x})[0]
    np.testing.assert_allclose(got, interpret(g, {"x": x})[0], rtol=RTOL, atol=ATOL)


def test_model_local_functions_are_inlined():
    """A model-local function (its own domain) called twice, with an attribute reference."""
    fn = helper.make_function(
        "local.fns", "ScaledRelu", ["X"], ["Y"],
        [helper.make_node("Relu", ["X"], ["R"]),
         helper.make_node("Constant", [], ["K"], name="k"),
         helper.make_node("Mul", ["R", "K"], ["Y"])],
        opset_imports=[helper.make_opsetid("", 17)], attributes=[])
    k = fn.node[1]
    del k.attribute[:]
    ref = onnx.AttributeProto()
    ref.name, ref.ref_attr_name, ref.type = "value_float", "scale", onnx.AttributeProto.FLOAT
    k.attribute.append(ref)
    fn.attribute.append("scale")
    x = rand(2, 3, 4)
    nodes = [helper.make_node("ScaledRelu", ["x"], ["a"], domain="local.fns", scale=2.0),
             helper.make_node("ScaledRelu", ["a"], ["y"], domain="local.fns", scale=-0.5)]
    m = model(nodes, {"x": x}, ["y"], domains={"local.fns": 1})
    m.functions.append(fn)
    g = from_onnx(m)
    np.testing.assert_allclose(interpret(g, {"x": x})[0], run_ort(m, {"x": x})[0], rtol=RTOL, atol=ATOL)


def test_two_unsupported_nodes_in_one_error():
    x = rand(0, 2, 3)
    nodes = [helper.make_node("Asinh", ["x"], ["a"], name="first_bad"), node("Relu", ["a"], ["b"]),
             helper.make_node("Acosh", ["b"], ["y"], name="second_bad")]
    with pytest.raises(UnsupportedError) as e:
        from_onnx(model(nodes, {"x": x}, ["y"]))
    assert "first_bad" in str(e.value) and "second_bad" in str(e.value) and "Acosh" in str(e.value)


def test_foreign_domain():
    x = rand(0, 2, 3)
    n = helper.make_node("MyOp", ["x"], ["y"], name="custom", domain="com.example")
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])  # inference knows no MyOp
    with pytest.raises(UnsupportedError) as e:
        from_onnx(model([n], {"x": x}, [y], domains={"com.example": 1}))
    assert "custom" in str(e.value) and "com.example" in str(e.value)


def test_conv_4d_unsupported():
    x = rand(0, 1, 2, 3, 3, 3, 3)
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv4d")
    m = model([conv], {"x": x}, ["y"], {"w": rand(1, 3, 2, 2, 2, 2, 2)})
    with pytest.raises(UnsupportedError, match="4-D convolution .*kiln supports 1-D, 2-D and 3-D") as e:
        from_onnx(m)
    assert "conv4d" in str(e.value)


def test_conv_3d_matches_onnx_reference():
    """3-D convs import as a 2-D conv over depth taps; checked against onnx's own evaluator."""
    from onnx.reference import ReferenceEvaluator

    x, w = rand(0, 2, 4, 5, 4, 6), rand(1, 6, 2, 3, 2, 3)
    conv = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 1, 2], pads=[1, 0, 1, 1, 1, 0],
                            dilations=[1, 2, 1], group=2)
    m = model([conv], {"x": x}, ["y"], {"w": w})
    want = ReferenceEvaluator(m).run(None, {"x": x})[0]
    got = compile_model(from_onnx(m)).run({"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_unsupported_attribute_value():
    x, c = rand(0, 1, 3, 4, 4), 3
    ins = ["x", "bn.scale", "bn.bias", "bn.mean", "bn.var"]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    m = model([helper.make_node("BatchNormalization", ins, ["y"], name="bn_per_activation", spatial=0)],
              {"x": x}, [y], _bn_inits("bn", c, 1), opset=7)
    with pytest.raises(UnsupportedError, match="spatial=0") as e:
        from_onnx(m)
    assert "bn_per_activation" in str(e.value)


def test_reshape_shape_from_graph_input_needs_constant():
    x, shape = rand(0, 2, 6), np.array([3, 4], np.int64)
    m = model([node("Reshape", ["x", "shape"], ["y"])], {"x": x, "shape": shape}, ["y"])
    with pytest.raises(UnsupportedError) as e:
        from_onnx(m)
    assert e.value.needs_constants == ["shape"]
    g = from_onnx(m, constants={"shape": shape})
    assert [v.name for v in g.inputs] == ["x"]
    np.testing.assert_allclose(interpret(g, {"x": x})[0], run_ort(m, {"x": x, "shape": shape})[0])


def test_malformed_model():
    x, y = rand(0, 2, 3), helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    m = model([node("Add", ["x", "undefined_value"], ["y"])], {"x": x}, [y])
    with pytest.raises(ModelError, match="undefined_value"):
        from_onnx(m)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        from_onnx(str(tmp_path / "absent.onnx"))


def test_empty_file_and_folder_say_so_and_name_the_path(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match=r"empty\.onnx: the file is empty \(0 bytes\)"):
        from_onnx(str(empty))
    with pytest.raises(ModelError, match=r"is a folder, not an ONNX model file"):
        from_onnx(str(tmp_path))


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00\xffthis is not an ONNX model\x07\x08" * 4)
    with pytest.raises(ModelError):
        from_onnx(str(path))
