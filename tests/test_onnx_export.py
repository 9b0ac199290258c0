"""ONNX export: exported models run in onnxruntime (the independent oracle) and agree with kiln's
reference interpreter; what cannot be exported is refused with a clear error."""

import kiln
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from kiln.cli import main
from kiln.errors import UnsupportedError
from kiln.frontend.onnx_export import CONVERTERS, NOT_EXPORTABLE, save_onnx, to_onnx
from kiln.ir import Graph, Node, Param, TensorType, Value, all_ops

RTOL, ATOL = 1e-4, 1e-5


def run_onnxruntime(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only, so test output stays readable
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def random_feeds(g: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in g.inputs}


def assert_matches_kiln(g: Graph, model: onnx.ModelProto, feeds: dict | None = None) -> None:
    """onnxruntime on the exported model == kiln's interpreter on the graph, output by output;
    onnx's static shape inference agrees with kiln's type of every value."""
    feeds = random_feeds(g) if feeds is None else feeds
    assert [o.name for o in model.graph.output] == list(g.outputs)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for vi in [*inferred.graph.value_info, *inferred.graph.output]:
        if vi.name not in g.values:  # a helper value the export adds (an unused MaxPool output)
            continue
        t, shape = g.type_of(vi.name), tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        assert shape == t.shape, f"%{vi.name}: onnx infers {list(shape)}, kiln {t}"
        assert vi.type.tensor_type.elem_type == onnx.helper.np_dtype_to_tensor_dtype(t.np_dtype), vi.name
    got = run_onnxruntime(model, feeds)
    want = kiln.interpret(g, feeds)
    for name, y, r in zip(g.outputs, got, want, strict=True):
        assert y.shape == r.shape and y.dtype == r.dtype, f"%{name}: {y.dtype}{y.shape} vs {r.dtype}{r.shape}"
        np.testing.assert_allclose(y, r, rtol=RTOL, atol=ATOL, err_msg=f"output %{name}")


def fan_in_weights(g: Graph, seed: int = 0) -> Graph:
    """He fan-in weights for every conv, so activations keep their scale through deep nets (with
    the zoo's inference-mode BN at mean 0, var 1, MobileNet's depthwise layers shrink them ~1e-18
    and the logits would be the fc bias alone, a comparison that proves nothing)."""
    rng = np.random.default_rng(seed)
    weights = {n.inputs[1] for n in g.nodes if n.op == "conv2d"}
    params = []
    for p in g.params:
        if p.name in weights:
            fan_in = int(np.prod(p.data.shape[1:]))
            w = rng.standard_normal(p.data.shape) * np.sqrt(2 / fan_in)
            p = Param(p.value, w.astype(p.data.dtype), p.role)
        params.append(p)
    return g.replace(params=tuple(params))


@pytest.mark.parametrize("build", [
    lambda: kiln.models.lenet5(batch=2),
    lambda: kiln.models.resnet20(batch=2),
    lambda: fan_in_weights(kiln.models.mobilenet_v1(batch=1, image_size=64)),
], ids=["lenet5", "resnet20", "mobilenet_v1"])
def test_zoo_models_match_onnxruntime(build):
    g = build()
    model = to_onnx(g)
    assert model.ir_version == 10 and model.producer_name == "kiln"
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert len(model.graph.node) == len(g.nodes)
    assert {i.name for i in model.graph.initializer} == {p.name for p in g.params}
    (x,) = model.graph.input
    assert x.name == "input"
    assert [d.dim_value for d in x.type.tensor_type.shape.dim] == list(g.inputs[0].type.shape)
    names = [n.name for n in model.graph.node]
    assert len(set(names)) == len(names) and names[0] == "conv1"
    assert_matches_kiln(g, model)


def every_op_graph() -> Graph:
    """One graph that uses every exportable op, most with non-default attributes."""
    b = kiln.Builder("every_op", seed=0)
    f = np.float32
    rng = np.random.default_rng(1)

    def const(name, *shape, lo=-1.0, hi=1.0):
        return b.const(name, rng.uniform(lo, hi, shape).astype(f))

    x = b.input("x", (2, 3, 9, 9))
    y = b.conv2d(x, 4, 3, stride=(1, 2), pads=(1, 0, 2, 1), dilation=(2, 1), name="conv")  # [2,4,8,4]
    bn = [const("bn.scale", 4), const("bn.bias", 4), const("bn.mean", 4), const("bn.var", 4, lo=0.5, hi=2)]
    y = b.op("batch_norm", [y, *bn], {"epsilon": 1e-3}, name="bn")
    y = b.conv2d(y, 4, 3, pads=1, groups=2, bias=False, name="gconv")
    act = b.dropout(b.relu(y), 0.3) + b.op("identity", [b.op("reorder", [b.leaky_relu(y, 0.2)])])
    act = (act - b.clip(y, -0.5, 0.5)) * (b.tanh(y) + b.clip(y, lo=0.0))
    act = act / (b.sigmoid(y) + const("one", 4, 1, 1, lo=1, hi=1)) + b.clip(y, hi=0.3)
    act = b.op("prelu", [act, const("slope", 4, 1, 1)])
    mp = b.op("maxpool2d", [act], {"kernel": (2, 2), "stride": (2, 1), "pads": (1, 0, 0, 1),
                                   "ceil_mode": True, "dilation": (1, 2)})
    ap = b.avgpool2d(act, 3, stride=2, pads=1, count_include_pad=True)  # [2,4,4,2]
    ap_ceil = b.avgpool2d(act, 3, stride=2, pads=1, ceil_mode=True, count_include_pad=True)  # [2,4,5,3]
    # ceil mode, but the extra window would start in the end padding, so it is dropped: [2,4,4,2]
    ap_drop = b.avgpool2d(act, 2, stride=2, pads=(0, 0, 1, 1), ceil_mode=True)
    pools = [b.global_avgpool(mp), b.op("global_maxpool", [ap]), b.global_avgpool(ap_ceil),
             b.op("global_maxpool", [ap_drop])]
    flat = b.flatten(b.concat(pools, axis=1))  # [2, 16]
    g1 = b.op("gemm", [flat, const("w1", 5, 16), const("c1", 5)],
              {"trans_b": True, "alpha": 0.5, "beta": 2.0})  # [2, 5]
    g2 = b.op("gemm", [const("w2", 2, 3), g1], {"trans_a": True})  # [3, 5]
    m = b.reshape(ap, (2, 4, -1)) @ const("w3", 8, 3)  # [2, 4, 3]
    t = b.op("transpose", [b.op("transpose", [m], {"perm": (0, 2, 1)})])  # [4, 3, 2]
    sm = b.softmax(t, axis=1)
    lsm = b.log_softmax(m, axis=-1)
    lrn = b.lrn(act, size=3, alpha=1e-2, beta=0.6, bias=2.0)
    pad_c = b.op("pad", [act], {"pads": (0, 0, 1, -1, 0, 1, 0, 2), "value": 1.5})
    pad_r = b.op("pad", [act], {"pads": (0, 0, 1, 2, 0, 0, 2, 1), "mode": "reflect"})
    pad_e = b.op("pad", [act], {"pads": (0, 1, 0, 1, 0, 0, 1, 0), "mode": "edge"})
    where = b.op("maxpool2d_argmax", [act], {"kernel": (2, 2), "stride": (2, 2), "pads": (0, 0, 1, 1)})
    total = b.op("reduce_sum", [act], {"axes": (1, 3), "keepdims": True})
    steps = "add $1; relu; rsub $2; mul $1; clip -0.5 0.5; sigmoid; rdiv $2; leaky_relu 0.1; tanh; sub $2; div $1"
    chain = b.op("fused_elementwise", [act, const("chain.c", 4, 1, 1, lo=1, hi=2), const("chain.k", 1)],
                 {"steps": steps})
    # the activation table, each op once (log and sqrt of positive values), and in a chain
    acts, v = [], b.op("exp", [y])
    for name in ("log", "sqrt"):
        acts.append(b.op(name, [v]))
    v = b.op("reciprocal", [b.op("abs", [v])])
    for name in ("neg", "erf", "elu", "selu", "softplus", "softsign", "hard_sigmoid", "hard_swish", "gelu",
                 "gelu_tanh", "mish", "silu"):
        v = b.op(name, [v], {"alpha": 0.7} if name == "elu" else {})
    table_chain = b.op("fused_elementwise", [act], {"steps": "exp; selu 1.5 1.1; hard_sigmoid 0.3 0.4; mish; gelu"})
    sliced = b.op("slice", [act], {"starts": (1, 3, 0, 3), "steps": (1, -1, 2, -2), "sizes": (1, 2, 4, 2)})
    wide = b.op("expand", [b.op("reduce_sum", [act], {"axes": (1,), "keepdims": True})], {"shape": (3, 1, 4, 1, 1)})
    up = b.op("conv2d_grad_input", [act, const("up.w", 4, 3, 3, 2)],
              {"stride": (2, 3), "pads": (1, 0, 0, 1), "groups": 1, "input_hw": (17, 12)})
    near = b.op("resize", [act], {"mode": "nearest", "scales": (1, 1, 2, 2), "sizes": (2, 4, 16, 8)})
    cubic = b.op("resize", [act], {"mode": "cubic", "coord": "align_corners", "scales": (1, 1, 0.75, 1.75),
                                   "sizes": (2, 4, 6, 7)})
    big = b.op("max", [act, b.op("min", [y, const("cap", 4, 1, 1)])])
    powed = b.op("pow", [b.op("abs", [act]), const("expo", 1, 1, 4, lo=0.5, hi=2)])
    tests = [b.op(op, [act, y]) for op in ("equal", "less", "greater", "less_equal")]
    picked = b.op("where", [b.op("greater_equal", [act, y]), act, const("other", 1)])
    cast = b.op("cast", [b.op("cast", [act], {"to": "i32"})], {"to": "f64"})
    top = b.op("reduce_max", [act], {"axes": (1, 3), "keepdims": True})
    low = b.op("reduce_min", [act], {"axes": (0,)})
    first = b.op("arg_max", [act], {"axis": 1})
    last = b.op("arg_min", [act], {"axis": 3, "keepdims": False, "select_last_index": True})
    return b.build(g2, sm, lsm, lrn, pad_c, pad_r, pad_e, where, total, chain, *acts, v, table_chain,
                   sliced, wide, up, near, cubic, big, powed, *tests, picked, cast, top, low,
                   first, last)


def test_every_op_graph_uses_every_exportable_op():
    exportable = set(all_ops()) - NOT_EXPORTABLE
    assert set(CONVERTERS) == set(all_ops())  # a new op needs an export decision
    assert {n.op for n in every_op_graph().nodes} == exportable


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_every_op_matches_onnxruntime(opset):
    g = every_op_graph()
    model = to_onnx(g, opset=opset)
    assert all(n.domain == "" for n in model.graph.node)
    assert_matches_kiln(g, model)


def test_attribute_inputs_and_clip_bounds():
    model = to_onnx(every_op_graph())
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    clips = [n for n in model.graph.node if n.op_type == "Clip" and not n.output[0].startswith("fused_elementwise")]
    # both bounds; min only; max only (the missing min written as an empty input)
    assert [len(n.input) for n in clips] == [3, 2, 3] and clips[2].input[1] == ""
    assert [float(inits[n.input[-1]]) for n in clips] == [0.5, 0.0, pytest.approx(0.3)]
    pad = next(n for n in model.graph.node if n.op_type == "Pad")
    assert inits[pad.input[1]].dtype == np.int64 and float(inits[pad.input[2]]) == 1.5
    assert next(n for n in model.graph.node if n.op_type == "Dropout")
    pools = [n for n in model.graph.node if n.op_type in ("MaxPool", "AveragePool")]
    # ceil_mode only where it adds a window: not for ap_drop, whose extra window is dropped
    assert [onnx.helper.get_node_attr_value(n, "ceil_mode") for n in pools] == [1, 0, 1, 0, 0]  # + argmax


def test_reshape_to_a_literal_zero_sets_allowzero():
    b = kiln.Builder("zeros")
    y = b.reshape(b.input("x", (2, 0, 3)), (0, 6))
    g = b.build(b.relu(y))
    model = to_onnx(g)
    (reshape,) = [n for n in model.graph.node if n.op_type == "Reshape"]
    assert onnx.helper.get_node_attr_value(reshape, "allowzero") == 1
    assert_matches_kiln(g, model)
    with pytest.raises(UnsupportedError, match="allowzero"):
        to_onnx(g, opset=13)


def test_duplicate_and_empty_node_names_are_made_unique():
    b = kiln.Builder("names")
    x = b.input("x", (2, 3))
    y = b.relu(b.relu(x, name="act"), name="act")
    g = b.build(b.tanh(y))  # unnamed
    names = [n.name for n in to_onnx(g).graph.node]
    assert len(set(names)) == 3 and all(names) and "act" not in names


def test_opset_out_of_range_is_refused():
    with pytest.raises(UnsupportedError, match="opset 12"):
        to_onnx(kiln.models.lenet5(), opset=12)


def test_spmm_is_refused_naming_the_node():
    with pytest.raises(UnsupportedError, match=r"gc1\.spmm.*spmm .*cannot be exported"):
        to_onnx(kiln.models.gcn_karate())


def test_blocked_layout_is_refused_naming_the_value():
    t = TensorType("f32", (1, 16, 4, 4), "NCHW16c")
    g = Graph("blocked", (Value("x", t),), (Node("relu", ("x",), (Value("y", t),)),), ("y",))
    with pytest.raises(UnsupportedError, match=r"%x has layout 'NCHW16c'"):
        to_onnx(g)


def test_save_onnx_writes_a_loadable_file(tmp_path):
    g = kiln.models.lenet5()
    save_onnx(g, tmp_path / "lenet.onnx", opset=18)
    model = onnx.load(tmp_path / "lenet.onnx")
    assert model.opset_import[0].version == 18
    assert_matches_kiln(g, model)


def test_cli_exports_after_a_pass(tmp_path, capsys):
    out = tmp_path / "lenet.onnx"
    argv = ["export-onnx", "zoo:lenet5", str(out), "--after", "eliminate_dead_code", "--batch", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and str(out) in printed and "12 nodes" in printed
    model = onnx.load(out)
    onnx.checker.check_model(model)
    g = kiln.models.lenet5(batch=2)  # the original graph: the passes must not change the result
    assert_matches_kiln(g, model)


def test_cli_unknown_pass_lists_the_pipeline(tmp_path, capsys):
    assert main(["export-onnx", "zoo:lenet5", str(tmp_path / "x.onnx"), "--after", "fold_everything"]) == 2
    err = capsys.readouterr().err
    assert "fold_everything" in err and "infer_shapes" in err and "eliminate_dead_code" in err
    assert not (tmp_path / "x.onnx").exists()
    assert main(["export-onnx", "zoo:gcn_karate", str(tmp_path / "g.onnx")]) == 2
    assert "spmm" in capsys.readouterr().err


def test_fused_conv_epilogues_export_as_their_parts():
    """A conv with a fused residual add and leaky relu (or clip) becomes Conv, Add and
    LeakyRelu (Clip) nodes that onnxruntime runs to the same result."""
    b = kiln.Builder("fused", seed=3)
    x = b.input("input", (1, 3, 6, 6))
    r = b.conv2d(x, 4, kernel=1, name="skip")
    y = b.leaky_relu(b.add(b.conv2d(x, 4, kernel=3, pads=1, name="conv"), r), 0.2)
    z = b.clip(b.conv2d(y, 4, kernel=1, name="conv2"), 0.0, 6.0)
    z = b.sigmoid(b.conv2d(z, 4, kernel=1, name="conv3"))
    z = b.relu(b.linear(b.flatten(b.global_avgpool(z)), 3, name="fc"))
    exe = kiln.compile(b.build(z), target="reference", skip=())
    from kiln.passes import fuse_epilogues

    g = fuse_epilogues(exe.graph)
    acts = [n.attrs.get("act") for n in g.nodes if n.op in ("conv2d", "gemm")]
    assert acts == ["", "leaky_relu", "clip", "sigmoid", "relu"], acts
    model = to_onnx(g)
    assert {"LeakyRelu", "Add", "Clip", "Sigmoid", "Gemm", "Relu"} <= {n.op_type for n in model.graph.node}
    assert_matches_kiln(g, model)
