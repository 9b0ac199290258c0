"""The CUDA target: its matrix-product kernels, the device runtime and whole models, against
the reference interpreter. Without a GPU these run in Numba's simulator (tests/conftest.py
switches it on), which runs every CUDA thread in Python: shapes stay tiny."""

from __future__ import annotations

import os
import subprocess
import sys

import kiln
import numpy as np
import pytest
from conftest import HAS_GPU
from kiln.frontend import Builder

cuda = pytest.importorskip("numba.cuda", reason="the cuda target needs numba-cuda")
# the simulator runs dropout's uint64 hash as numpy scalars, which warn on the intended wraparound
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in scalar multiply:RuntimeWarning")


def check(build, shapes, dtype="f32", rtol=1e-5, atol=1e-5, seed=0):
    rng = np.random.default_rng(seed)
    b = Builder("case", dtype=dtype)
    ins = [b.input(f"x{i}", s) for i, s in enumerate(shapes)]
    g = b.build(build(b, *ins))
    feeds = {f"x{i}": rng.standard_normal(s).astype(np.dtype("float32" if dtype == "f32" else "float64"))
             for i, s in enumerate(shapes)}
    got = kiln.compile(g, target="cuda").run(feeds)
    want = kiln.compile(g).run(feeds)
    for a, b_ in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b_, rtol=rtol, atol=atol)


def op(name, **attrs):
    return lambda b, *ts: b.op(name, list(ts), attrs)


@pytest.mark.parametrize("attrs, shapes", [
    ({"pads": 1, "stride": 2}, [(2, 3, 7, 6), (5, 3, 3, 3)]),
    ({"pads": (1, 0, 1, 2), "groups": 2, "residual": True, "act": "relu"}, [(1, 4, 5, 5), (6, 2, 3, 3), (6,), (1, 6, 5, 5)]),
    ({"dilation": 2, "pads": 2, "act": "clip", "act_min": -0.5, "act_max": 0.5}, [(1, 2, 5, 5), (3, 2, 3, 3), (3,)]),
    ({"pads": 1, "groups": 4}, [(1, 4, 5, 5), (4, 1, 3, 3)]),  # depthwise: the direct kernel
    ({"pads": 1, "residual": True}, [(1, 4, 9, 9), (66, 4, 3, 3), (66,), (1, 66, 9, 9)]),  # 64x64 tiles, ragged edges
    ({"act": "relu"}, [(1, 8, 3, 3), (20, 8, 3, 3), (20,)]),  # a 1x1 output at batch 1: the thin kernel
    ({"act": "leaky_relu", "act_alpha": 0.2, "pads": 1}, [(1, 3, 5, 5), (5, 3, 3, 3), (5,)]),
    ({"act": "sigmoid", "stride": 2}, [(1, 3, 5, 5), (4, 3, 3, 3), (4,)]),
])
def test_conv2d(attrs, shapes):
    check(op("conv2d", **attrs), shapes)


def test_conv2d_float64():
    check(op("conv2d", pads=1), [(1, 2, 4, 4), (3, 2, 3, 3)], dtype="f64", rtol=1e-12, atol=1e-12)


def test_conv2d_gradients():
    geometry = {"pads": (1, 0, 1, 2), "stride": 2, "groups": 2, "dilation": (1, 2)}
    check(op("conv2d_grad_input", input_hw=(7, 6), **geometry), [(2, 6, 4, 2), (6, 2, 3, 3)])
    check(op("conv2d_grad_weight", kernel=(3, 3), **geometry), [(2, 4, 7, 6), (2, 6, 4, 2)])
    # larger: 32- and 64-wide register tiles, ragged at both edges
    check(op("conv2d_grad_input", input_hw=(6, 6), pads=1), [(1, 34, 6, 6), (34, 5, 3, 3)], rtol=1e-4)
    check(op("conv2d_grad_weight", kernel=(3, 3), pads=1), [(1, 9, 5, 5), (1, 40, 5, 5)], rtol=1e-4)


@pytest.mark.parametrize("attrs, shapes", [
    ({}, [(5, 7), (7, 3)]),
    ({"trans_a": True, "trans_b": True, "alpha": 0.5, "beta": 2.0}, [(7, 5), (9, 7), (9,)]),
    ({"trans_b": True}, [(17, 6), (18, 6), (17, 1)]),  # more than one tile each way
    ({}, [(70, 20), (20, 33)]),  # 4x2 per thread: 64x32 tiles, ragged edges, K not a multiple of 16
    ({"trans_a": True}, [(17, 40), (17, 130)]),  # 2x4 per thread
    ({"trans_b": True}, [(1, 40), (70, 40), (70,)]),  # batch 1: one thread per output
    ({"act": "leaky_relu", "act_alpha": 0.2, "alpha": 0.5}, [(6, 7), (7, 9)]),  # a fused activation
    ({"act": "sigmoid"}, [(6, 7), (7, 9), (9,)]),
])
def test_gemm(attrs, shapes):
    check(op("gemm", **attrs), shapes)


@pytest.mark.parametrize("shapes", [[(2, 1, 3, 4), (3, 4, 5)], [(4,), (3, 4, 5)], [(3, 4), (4,)]])
def test_matmul_broadcasting(shapes):
    check(op("matmul"), shapes)


def tiny_net():
    b = Builder("tiny", seed=0)
    x = b.input("input", (1, 3, 6, 6))
    h = b.relu(b.conv2d(x, 4, 3, pads=1, name="conv"))
    g = b.build(b.linear(b.flatten(h), 3, name="fc"))
    return g


def test_device_arrays_in_and_out():
    exe = kiln.compile(tiny_net(), target="cuda")
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 6)).astype(np.float32)
    host = exe.run({"input": x})[0]
    assert exe.returned == "host" and isinstance(host, np.ndarray)
    dev = exe.run({"input": cuda.to_device(x)})[0]
    assert exe.returned == "device" and not isinstance(dev, np.ndarray)
    np.testing.assert_allclose(dev.copy_to_host(), host, rtol=1e-6)
    np.testing.assert_allclose(host, kiln.compile(tiny_net()).run({"input": x})[0], rtol=1e-5, atol=1e-5)


def test_outputs_into_the_callers_device_arrays():
    exe = kiln.compile(tiny_net(), target="cuda")
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 6)).astype(np.float32)
    out = cuda.to_device(np.zeros((1, 3), np.float32))
    (got,) = exe.run({"input": x}, into={exe.output_names[0]: out})
    assert got is out
    np.testing.assert_allclose(out.copy_to_host(), kiln.compile(tiny_net()).run({"input": x})[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(kiln.errors.InputError, match=r"into 'fc': expected f32\[1, 3\], given float32\[3\]"):
        exe.run({"input": x}, into={"fc": cuda.to_device(np.zeros(3, np.float32))})
    with pytest.raises(kiln.errors.InputError, match="'conv' is not an output"):
        exe.run({"input": x}, into={"conv": out})
    with pytest.raises(kiln.errors.InputError, match="only the cuda target takes it"):
        kiln.compile(tiny_net(), target="cpu").run({"input": x}, into={"fc": out})


def test_training_state_stays_on_the_device():
    """Two device sets of weights and momenta, read and written in turn: no state crosses to
    the host during steps, and nothing is allocated for it."""
    from kiln.runtime.device import is_device_array
    from test_training import batch, small_cnn
    tr = kiln.compile(small_cnn(), target="cuda", mode="train", optimizer=kiln.optim.SGD(0.1, momentum=0.9))
    first = dict(tr._state)
    for s in range(2):
        tr.step(batch(s))
    assert all(is_device_array(v) for v in tr._state.values())
    assert all(tr._state[k] is first[k] for k in tr.spec.updates), "after two steps the first set is current again"
    assert isinstance(tr.state_dict()["fc.weight"], np.ndarray)


def test_inputs_are_checked_on_the_device_too():
    exe = kiln.compile(tiny_net(), target="cuda")
    with pytest.raises(kiln.errors.InputError, match=r"expected shape \[1, 3, 6, 6\], given \[1, 3, 6, 5\]"):
        exe.run({"input": cuda.to_device(np.zeros((1, 3, 6, 5), np.float32))})


def test_dump_shows_kernels_and_launch_configurations(tmp_path):
    kiln.compile(tiny_net(), target="cuda", dump_dir=tmp_path / "tiny")
    launches = (tmp_path / "tiny" / "kernels" / "launches.py").read_text()
    assert "[(1, 1), 256]" in launches  # 4 output channels: the thin product, a thread per output
    b = Builder("wide", seed=0)  # 32 channels x 64 pixels: a 32x64 tile, 2x4 outputs per thread
    kiln.compile(b.build(b.conv2d(b.input("x", (1, 8, 8, 8)), 32, 3, pads=1)), target="cuda", dump_dir=tmp_path / "wide")
    launches = (tmp_path / "wide" / "kernels" / "launches.py").read_text()
    assert "[(1, 1, 1), (16, 16)]" in launches
    sources = "".join(p.read_text() for p in (tmp_path / "wide" / "kernels").glob("k_*.py"))
    assert "@cuda.jit" in sources and "cuda.shared.array((16, 32), float32)" in sources
    assert "cuda.local.array((2, 4), float32)" in sources and "# launch: grid" in sources


@pytest.mark.skipif(HAS_GPU, reason="a GPU is present: the no-device error cannot be shown here")
def test_without_a_device_the_error_says_how_to_use_the_simulator():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = ("import kiln\n"
            "try:\n    kiln.compile('zoo:lenet5', target='cuda')\n"
            "except kiln.errors.UnsupportedError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True,
                         timeout=120)
    assert "no CUDA device found" in out.stdout and "NUMBA_ENABLE_CUDASIM=1" in out.stdout, out.stderr


# -- whole models -----------------------------------------------------------------------------
def small_resnet(batch: int = 1):
    b = Builder("small_resnet", seed=0)
    x = b.input("input", (batch, 3, 8, 8))
    h = b.relu(b.batch_norm(b.conv2d(x, 8, 3, pads=1, bias=False, name="conv1"), name="bn1"))
    h = b.maxpool2d(h, 2, name="pool")
    with b.scope("block"):
        y = b.relu(b.batch_norm(b.conv2d(h, 8, 3, pads=1, bias=False, name="conv1"), name="bn1"))
        y = b.batch_norm(b.conv2d(y, 8, 3, pads=1, bias=False, name="conv2"), name="bn2")
        h = b.relu(b.add(y, h))
    return b.build(b.linear(b.flatten(b.global_avgpool(h)), 5, name="fc"))


def test_small_resnet_end_to_end():
    g = small_resnet()
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    exe = kiln.compile(g, target="cuda")
    assert not any(n.op == "batch_norm" for n in exe.graph.nodes)  # the passes ran: BN folded
    np.testing.assert_allclose(exe.run({"input": x})[0], kiln.compile(g).run({"input": x})[0], rtol=1e-4, atol=1e-5)


def test_gcn_end_to_end():
    g = kiln.models.gcn_karate(hidden=4)
    x = np.eye(34, dtype=np.float32)
    np.testing.assert_allclose(kiln.compile(g, target="cuda").run({"features": x})[0],
                               kiln.compile(g).run({"features": x})[0], rtol=1e-4, atol=1e-5)


def test_training_steps_match_the_reference():
    g = small_resnet(batch=2)
    rng = np.random.default_rng(3)
    feeds = [{"input": rng.standard_normal((2, 3, 8, 8)).astype(np.float32), "labels": rng.integers(0, 5, 2)}
             for _ in range(2)]
    opt = kiln.optim.SGD(0.1, momentum=0.9)
    ref = kiln.compile(g, mode="train", optimizer=opt)
    dev = kiln.compile(g, target="cuda", mode="train", optimizer=opt)
    for f in feeds:
        assert dev.step(f) == pytest.approx(ref.step(f), rel=1e-4)
    for name, value in ref.state_dict().items():
        np.testing.assert_allclose(dev.state_dict()[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def test_lrn_and_prelu_train_on_cuda():
    from test_training import batch, lrn_prelu_cnn
    opt = kiln.optim.SGD(0.1)
    ref = kiln.compile(lrn_prelu_cnn(), mode="train", optimizer=opt)
    dev = kiln.compile(lrn_prelu_cnn(), target="cuda", mode="train", optimizer=opt)
    for s in range(2):
        assert dev.step(batch(s)) == pytest.approx(ref.step(batch(s)), rel=1e-4)
    for name, value in ref.state_dict().items():
        np.testing.assert_allclose(dev.state_dict()[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def test_gcn_trains_on_cuda():
    train, _ = kiln.data.karate()
    g = kiln.models.gcn(train.extra["graph"], 34, 4, num_classes=2, seed=0)
    opt = kiln.optim.Adam(0.05)
    ref = kiln.compile(g, mode="train", optimizer=opt)
    dev = kiln.compile(g, target="cuda", mode="train", optimizer=opt)
    for _ in range(3):
        assert dev.step(train.feeds()) == pytest.approx(ref.step(train.feeds()), rel=1e-4)
