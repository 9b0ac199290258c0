"""The activation table (ir/ops/elementwise.py, ACTIVATIONS): every op's reference against
onnxruntime, its kernels against the reference on cpu (plain and blocked, alone and fused in a
chain) and cuda (simulator), its act_grad kernels against the reference derivative, its
gradient rule against finite differences, and its ONNX round trip at old and new opsets."""

import math

import kiln
import numpy as np
import pytest
from kiln.frontend import Builder
from kiln.ir.ops.conv import EPILOGUE_ACTS
from kiln.ir.ops.elementwise import ACTIVATIONS
from test_gradients import check_grads

NAMES = sorted(ACTIVATIONS)
POSITIVE = {"log", "sqrt"}  # defined for x > 0
AWAY_FROM_ZERO = {"reciprocal", "abs"}  # kinks or poles at 0: keep finite differences off them


def inputs(name: str, shape, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    if name in POSITIVE:
        x = np.abs(x) + 0.1
    if name in AWAY_FROM_ZERO:
        x = np.where(np.abs(x) < 0.2, 0.2 + np.abs(x), x)
    return x.astype(np.float32)


def single(name: str, shape=(2, 3, 4, 5)):
    b = Builder(name, seed=0)
    x = b.input("input", shape)
    return b.build(b.op(name, [x]))


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("name", NAMES)
def test_reference_matches_onnxruntime(name, opset):
    """The export writes each op natively where the opset has it (Gelu 20, Mish 18, HardSwish
    14) and as older ops otherwise; onnxruntime runs both forms."""
    ort = pytest.importorskip("onnxruntime")
    g = single(name)
    x = inputs(name, (2, 3, 4, 5))
    (ref,) = kiln.interpret(g, {"input": x})
    model = kiln.to_onnx(g, opset=opset)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    back = kiln.from_onnx(model)
    np.testing.assert_allclose(kiln.interpret(back, {"input": x})[0], ref, rtol=1e-5, atol=1e-6)


def test_native_onnx_ops_at_new_opsets():
    native = {"gelu": "Gelu", "gelu_tanh": "Gelu", "mish": "Mish", "hard_swish": "HardSwish", "elu": "Elu"}
    for name, op_type in native.items():
        assert [n.op_type for n in kiln.to_onnx(single(name), opset=20).graph.node] == [op_type]
        assert kiln.from_onnx(kiln.to_onnx(single(name), opset=20)).nodes[0].op == name


@pytest.mark.parametrize("name", NAMES)
def test_cpu_matches_the_reference(name):
    g = single(name, (3, 5, 7, 11))
    x = inputs(name, (3, 5, 7, 11))
    (ref,) = kiln.interpret(g, {"input": x})
    (got,) = kiln.compile(g, target="cpu").run({"input": x})
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_cpu_chain_after_a_blocked_conv(name):
    """conv -> (add a residual) -> activation -> scale: fuse_elementwise makes one chain (or
    fuse_epilogues takes the activation into the conv), select_layout keeps it blocked."""
    b = Builder("chain", seed=0)
    x = b.input("input", (1, 16, 6, 6))
    y = b.conv2d(x, 32, 3, pads=1, name="conv1")
    y = b.add(y, b.conv2d(x, 32, 1, name="proj"))
    if name in POSITIVE | {"reciprocal"}:  # of |y| + 0.1: defined, and conditioned (1/y near 0 is not)
        y = b.add(b.op("abs", [y]), b.const("eps", np.float32(0.1)))
    y = b.op(name, [y])
    g = b.build(b.conv2d(b.op("mul", [y, b.const("s", np.float32(0.5))]), 16, 3, pads=1, name="conv2"))
    exe = kiln.compile(g, target="cpu")
    if name in EPILOGUE_ACTS:  # silu: fuse_epilogues puts it (and the residual add) into conv1's kernel
        assert any(n.op == "conv2d" and n.attrs["act"] == name and n.outputs[0].type.layout == "NCHW16c"
                   for n in exe.graph.nodes), str(exe.graph)
    else:
        chains = [n for n in exe.graph.nodes if n.op == "fused_elementwise"]
        steps = [step.split()[0] for n in chains for step in n.attrs["steps"].split(";")]
        assert name in steps and any(n.outputs[0].type.layout == "NCHW16c" for n in chains), str(exe.graph)
    xin = inputs(name, (1, 16, 6, 6), scale=0.5)
    (ref,) = kiln.interpret(g, {"input": xin})
    (got,) = exe.run({"input": xin})
    assert np.isfinite(ref).all()
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-5 * np.abs(ref).max())


@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_the_reference(name):
    pytest.importorskip("numba.cuda")
    g = single(name, (2, 3, 5))
    x = inputs(name, (2, 3, 5))
    (ref,) = kiln.interpret(g, {"input": x})
    (got,) = kiln.compile(g, target="cuda").run({"input": x})
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def act_grad_graph(name, dtype):
    act = ACTIVATIONS[name]
    b = Builder("act_grad", seed=0)
    dy, saved = b.input("dy", (4, 5, 6), dtype), b.input("saved", (4, 5, 6), dtype)
    return b.build(b.op("act_grad", [dy, saved], {"act": name, **act.attrs}))


def act_grad_feeds(name, dtype):
    x = inputs(name, (4, 5, 6)).astype(dtype)
    act = ACTIVATIONS[name]
    saved = x if act.saved == "x" else np.asarray(act.forward(x.astype(np.float64), act.attrs), dtype)
    return {"dy": np.random.default_rng(1).standard_normal((4, 5, 6)).astype(dtype), "saved": saved}


@pytest.mark.parametrize("target", ["cpu", "cuda"])
@pytest.mark.parametrize("name", NAMES)
def test_act_grad_kernels_match_the_reference(name, target):
    if target == "cuda":
        pytest.importorskip("numba.cuda")
    for dtype in ("f32", "f64") if target == "cpu" else ("f32",):
        g = act_grad_graph(name, dtype)
        f = act_grad_feeds(name, np.float32 if dtype == "f32" else np.float64)
        (ref,) = kiln.interpret(g, f)
        (got,) = kiln.compile(g, target=target).run(f)
        np.testing.assert_allclose(got, ref, rtol=1e-5 if dtype == "f32" else 1e-12, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_rule_against_finite_differences(name):
    """float64 central differences through the reference; hard_sigmoid and hard_swish have
    kinks (at +-2.5 and +-3), which a standard-normal input rarely meets within h."""
    x = inputs(name, (3, 4, 5), seed=2, scale=1.5).astype(np.float64)
    check_grads(lambda b, t: b.op(name, [t], {}), {"x": x.shape}, feeds={"x": x})


def test_table_defaults_are_onnx_defaults():
    """The IR's defaults are the ONNX spec's (to float32 precision, as ONNX writes them)."""
    import onnx.defs

    checks = {"elu": ("Elu", {"alpha": "alpha"}), "selu": ("Selu", {"alpha": "alpha", "gamma": "gamma"}),
              "hard_sigmoid": ("HardSigmoid", {"alpha": "alpha", "beta": "beta"})}
    for name, (op_type, names) in checks.items():
        schema = onnx.defs.get_schema(op_type)
        for ours, theirs in names.items():
            default = schema.attributes[theirs].default_value.f
            assert math.isclose(ACTIVATIONS[name].attrs[ours], default, rel_tol=1e-7), (name, ours)


def swish_cnn(batch=1):
    """conv -> x * sigmoid(x) twice (EfficientNet's and YOLO's conv blocks), a depthwise conv."""
    b = Builder("swish", seed=0)
    x = b.input("input", (batch, 16, 8, 8))
    y = b.conv2d(x, 32, 3, pads=1, name="conv1")
    y = b.op("mul", [y, b.sigmoid(y)])
    y = b.conv2d(y, 32, 3, pads=1, groups=32, name="dw")
    y = b.op("mul", [b.sigmoid(y), y])
    return b.build(b.conv2d(y, 16, 1, name="proj"))


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_swish_becomes_a_conv_epilogue(target):
    if target == "cuda":
        pytest.importorskip("numba.cuda")
    g = swish_cnn()
    exe = kiln.compile(g, target=target)
    convs = [n for n in exe.graph.nodes if n.op == "conv2d"]
    assert [n.attrs["act"] for n in convs] == ["silu", "silu", ""], str(exe.graph)
    assert not any(n.op in ("sigmoid", "mul", "silu") for n in exe.graph.nodes)
    if target == "cpu":
        assert convs[0].outputs[0].type.layout == "NCHW16c"  # the blocked kernel's vector epilogue
    x = inputs("silu", (1, 16, 8, 8), scale=1.0)
    (ref,) = kiln.interpret(g, {"input": x})
    (got,) = exe.run({"input": x})
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_fused_silu_conv_exports_and_matches_onnxruntime():
    """conv2d[act=silu] exports as Conv, Sigmoid, Mul; onnxruntime agrees with the reference."""
    ort = pytest.importorskip("onnxruntime")
    g = swish_cnn()
    fused = kiln.compile(g, target="cpu", skip=["select_layout", "winograd_convs"]).graph
    assert [n.attrs["act"] for n in fused.nodes if n.op == "conv2d"][:2] == ["silu", "silu"]
    model = kiln.to_onnx(fused)
    assert [n.op_type for n in model.graph.node][:3] == ["Conv", "Sigmoid", "Mul"]
    x = inputs("silu", (1, 16, 8, 8), scale=1.0)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    (ref,) = kiln.interpret(g, {"input": x})
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_gelu_expansion_from_an_old_opset_imports_as_one_op():
    """An opset-17 export writes Gelu as Div, Erf, Add, Mul, Mul; the pipeline makes it one gelu."""
    b = Builder("gelu", seed=0)
    x = b.input("input", (2, 8, 5, 5))
    g = b.build(b.conv2d(b.op("gelu", [b.conv2d(x, 8, 3, pads=1, name="c1")]), 8, 1, name="c2"))
    model = kiln.to_onnx(g, opset=17)
    assert "Erf" in [n.op_type for n in model.graph.node]
    imported = kiln.from_onnx(model)
    exe = kiln.compile(imported, target="cpu")
    assert [n.op for n in exe.graph.nodes if n.op in ("gelu", "erf", "div")] == ["gelu"], str(exe.graph)
    xin = inputs("gelu", (2, 8, 5, 5), scale=1.0)
    (ref,) = kiln.interpret(g, {"input": xin})
    np.testing.assert_allclose(exe.run({"input": xin})[0], ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
