"""NaN and Inf propagate the same way on every target and layout.

Each case feeds a few NaN, +Inf or -Inf entries into a small graph and compares every output
with the reference interpreter (numpy's semantics), exactly in where NaN and where ±Inf come
out: a kernel that drops a NaN (a max that prefers the number, a fastmath compare folded to
False) or turns an Inf into a NaN shows up as a mismatch. The graphs are built so the cpu
target takes its blocked NCHW16c kernels (conv epilogues, blocked pooling) and, with
select_layout skipped, its plain ones. onnxruntime is a second oracle wherever it agrees with
numpy; it differs on MaxPool and GlobalMaxPool, which drop NaN (kept as a listed exception).
"""

import kiln
import numpy as np
import pytest
from kiln.frontend import Builder

POISON = {"nan": (np.nan,), "inf": (np.inf, -np.inf)}
# onnxruntime's MaxPool and GlobalMaxPool skip NaN (a max over a window holding NaN and numbers
# gives the largest number); numpy, the reference and kiln give NaN
ORT_DROPS_NAN = {"maxpool_blocked", "maxpool_pads", "global_maxpool", "maxpool_plain", "global_maxpool_plain"}


def blocked(tail):
    """x -> conv3x3 (16 -> 32 channels) -> tail -> a depthwise 1x1 conv: the pipeline blocks the
    first conv and the tail (graph outputs are plain, so the last node reads plain), and the
    depthwise conv scales each channel, keeping every NaN and Inf where the tail put it."""
    def build():
        b = Builder("blocked", seed=1)
        x = b.input("input", (1, 16, 10, 10))
        y = tail(b, b.conv2d(x, 32, 3, pads=1, name="conv"), x)
        return b.build(b.conv2d(y, 32, 1, groups=32, name="probe"))
    return build


BLOCKED_CASES = ["conv_relu", "conv_relu6", "conv_clip", "conv_leaky_relu", "conv_sigmoid", "conv_residual_relu",
                 "maxpool_blocked", "maxpool_pads", "global_maxpool", "global_avgpool", "avgpool"]


def plain(tail, shape=(2, 3, 5, 7)):
    def build():
        b = Builder("plain", seed=1)
        x = b.input("input", shape)
        return b.build(tail(b, x))
    return build


CASES = {
    "conv_relu": blocked(lambda b, y, x: b.relu(y)),
    "conv_relu6": blocked(lambda b, y, x: b.relu6(y)),
    "conv_clip": blocked(lambda b, y, x: b.clip(y, -0.5, 0.25)),
    "conv_leaky_relu": blocked(lambda b, y, x: b.leaky_relu(y, 0.1)),
    "conv_sigmoid": blocked(lambda b, y, x: b.sigmoid(y)),
    "conv_residual_relu": blocked(lambda b, y, x: b.relu(b.add(y, b.conv2d(x, 32, 1, name="proj")))),
    "maxpool_blocked": blocked(lambda b, y, x: b.maxpool2d(b.relu(y), 2)),
    "maxpool_pads": blocked(lambda b, y, x: b.maxpool2d(y, 3, 2, pads=1)),
    "global_maxpool": blocked(lambda b, y, x: b.op("global_maxpool", [y], {})),
    "global_avgpool": blocked(lambda b, y, x: b.global_avgpool(b.relu(y))),
    "avgpool": blocked(lambda b, y, x: b.avgpool2d(b.relu(y), 2)),
    "relu_plain": plain(lambda b, x: b.relu(x)),
    "clip_plain": plain(lambda b, x: b.relu6(x)),
    "leaky_relu_plain": plain(lambda b, x: b.leaky_relu(x, 0.2)),
    "maxpool_plain": plain(lambda b, x: b.maxpool2d(x, 2)),
    "global_maxpool_plain": plain(lambda b, x: b.op("global_maxpool", [x], {})),
    "softmax": plain(lambda b, x: b.softmax(x, -1)),
    "log_softmax": plain(lambda b, x: b.log_softmax(x, 1)),
    "reduce_sum": plain(lambda b, x: b.op("reduce_sum", [x], {"axes": [3], "keepdims": True})),
    "gemm_relu": plain(lambda b, x: b.relu(b.linear(x, 24, name="fc")), shape=(4, 40)),
}


def poisoned(shape, kind: str, seed: int = 0) -> np.ndarray:
    """Standard normal data with a few entries (about one in 60, at least 2) set to NaN, or to
    +Inf and -Inf in turn: sparse enough that most outputs see at most one of them."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=max(2, flat.size // 60), replace=False)
    for i, j in enumerate(picks):
        flat[j] = POISON[kind][i % len(POISON[kind])]
    return x


def assert_same_specials(got, want, what: str):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert (nan_g == nan_w).all(), (f"{what}: NaN where the oracle has none at {np.argwhere(nan_g & ~nan_w)[:5].tolist()}, "
                                    f"a number where it has NaN at {np.argwhere(nan_w & ~nan_g)[:5].tolist()}")
    inf_g, inf_w = np.isinf(got), np.isinf(want)
    assert (inf_g == inf_w).all() and (got[inf_g] == want[inf_w]).all(), f"{what}: infinities differ"
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-5, err_msg=what)


def run_case(name, kind, **compile_kw):
    g = CASES[name]()
    x = poisoned(g.inputs[0].type.shape, kind)
    with np.errstate(invalid="ignore", over="ignore"):
        (ref,) = kiln.interpret(g, {"input": x})
    (got,) = kiln.compile(g, **compile_kw).run({"input": x})
    return g, x, got, ref


@pytest.mark.parametrize("kind", sorted(POISON))
@pytest.mark.parametrize("name", list(CASES))
def test_cpu_propagates_like_the_reference(name, kind):
    # the layout rule (every conv that can be blocked is), not this machine's measured costs, so
    # that the blocked kernels are the ones tested on every machine
    _, _, got, ref = run_case(name, kind, target="cpu", cost_model=None)
    if kind == "nan":  # every op here propagates NaN; Infs may saturate (clip, sigmoid) to numbers
        assert np.isnan(ref).any(), "the case must produce NaN to test anything"
    assert_same_specials(got, ref, f"{name} with {kind} on cpu")


@pytest.mark.parametrize("kind", sorted(POISON))
@pytest.mark.parametrize("name", BLOCKED_CASES)
def test_cpu_plain_layout_propagates_like_the_reference(name, kind):
    _, _, got, ref = run_case(name, kind, target="cpu", skip=["select_layout", "winograd_convs"])
    assert_same_specials(got, ref, f"{name} with {kind} on cpu, plain layout")


@pytest.mark.parametrize("name", BLOCKED_CASES)
def test_the_blocked_cases_really_run_blocked(name):
    """The cases above test the blocked kernels only if the pipeline picks them: every node but
    the reorders and the last conv reads or writes NCHW16c (a global pool reads it)."""
    exe = kiln.compile(CASES[name](), target="cpu", cost_model=None)
    g = exe.graph
    inner = [n for n in g.nodes if n.op != "reorder"][:-1]
    assert inner and all("NCHW16c" in {n.outputs[0].type.layout, g.type_of(n.inputs[0]).layout} for n in inner), str(g)


@pytest.mark.parametrize("kind", sorted(POISON))
@pytest.mark.parametrize("name", [c for c in CASES if c not in ORT_DROPS_NAN])
def test_reference_agrees_with_onnxruntime(name, kind):
    ort = pytest.importorskip("onnxruntime")
    g = CASES[name]()
    x = poisoned(g.inputs[0].type.shape, kind)
    with np.errstate(invalid="ignore", over="ignore"):
        (ref,) = kiln.interpret(g, {"input": x})
    sess = ort.InferenceSession(kiln.to_onnx(g).SerializeToString(), providers=["CPUExecutionProvider"])
    assert_same_specials(sess.run(None, {"input": x})[0], ref, f"{name} with {kind}: onnxruntime vs reference")


def test_onnxruntime_maxpool_drops_nan_as_documented():
    """The listed exception is real: if onnxruntime starts propagating NaN, drop it from the list."""
    ort = pytest.importorskip("onnxruntime")
    g = CASES["maxpool_plain"]()
    x = np.zeros(g.inputs[0].type.shape, np.float32)
    x[0, 0, 0, 0] = np.nan
    sess = ort.InferenceSession(kiln.to_onnx(g).SerializeToString(), providers=["CPUExecutionProvider"])
    assert not np.isnan(sess.run(None, {"input": x})[0]).any()
    assert np.isnan(kiln.compile(g, target="cpu").run({"input": x})[0][0, 0, 0, 0])


def test_winograd_keeps_nan_and_turns_a_lone_inf_into_nan():
    """Winograd F(2x2,3x3) on the blocked path: a NaN reaches exactly the outputs whose window
    holds it, as in the direct conv; an Inf's transform mixes +Inf and -Inf, so those outputs
    become NaN where the direct conv gives ±Inf (README, "Guarantees"). Skipping winograd_convs
    gives IEEE infinities."""
    b = Builder("wino", seed=1)
    x = b.input("input", (1, 16, 16, 16))
    g = b.build(b.conv2d(b.conv2d(x, 32, 3, pads=1, name="conv"), 32, 1, groups=32, name="probe"))
    exe = kiln.compile(g, target="cpu")
    assert [n.attrs["algo"] for n in exe.graph.nodes if n.op == "conv2d"] == ["winograd", "direct"]
    exact = kiln.compile(g, target="cpu", skip=["winograd_convs"])
    for v in (np.nan, np.inf):
        xin = np.random.default_rng(0).standard_normal((1, 16, 16, 16)).astype(np.float32)
        xin[0, 3, 5, 6] = v
        with np.errstate(invalid="ignore"):
            (ref,) = kiln.interpret(g, {"input": xin})
        got = exe.run({"input": xin})[0]
        assert_same_specials(exact.run({"input": xin})[0], ref, f"direct conv with {v}")
        if np.isnan(v):
            assert_same_specials(got, ref, "winograd with NaN")
        else:
            special = ~np.isfinite(ref)
            assert special.any() and (~np.isfinite(got) == special).all()  # the same outputs are hit
            np.testing.assert_allclose(got[~special], ref[~special], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(POISON))
@pytest.mark.parametrize("name", ["relu_plain", "clip_plain", "maxpool_plain", "softmax", "gemm_relu"])
def test_cuda_propagates_like_the_reference(name, kind):
    pytest.importorskip("numba.cuda")
    _, _, got, ref = run_case(name, kind, target="cuda")
    assert_same_specials(got, ref, f"{name} with {kind} on cuda")
