"""The model zoo: every model builds and verifies, with published param and multiply-add counts,
deterministic weights, numerics checked against onnxruntime (LeNet-5) and a dense numpy GCN.

The big models (VGG, AlexNet, ResNet-101/152) are built once each, in `test_zoo_model`, and not
kept; the small ones are cached for the other tests.
"""

from __future__ import annotations

import functools
import itertools

import kiln
import networkx as nx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from kiln.frontend.dsl import Builder
from kiln.frontend.graphs import normalized_adjacency, random_graph
from kiln.frontend.models import ZOO, get_model
from kiln.frontend.models._layers import adaptive_avgpool
from kiln.ir import Param, graph_stats, verify
from kiln.runtime import interpret
from onnx import TensorProto, helper, numpy_helper


def cifar_resnet_params(n: int, classes: int = 10) -> int:
    """Params of a 6n+2 CIFAR ResNet with option-B shortcuts, from the architecture: a k x k
    conv c -> m has k*k*c*m weights, a BN on m channels 2m (scale, shift)."""
    def conv_bn(k, c, m):
        return k * k * c * m + 2 * m

    total = conv_bn(3, 3, 16)
    c = 16
    for m in (16, 32, 64):
        for j in range(n):
            total += conv_bn(3, c, m) + conv_bn(3, m, m)
            if c != m:  # the stage's first block projects the shortcut
                total += conv_bn(1, c, m)
            c = m
    return total + 64 * classes + classes


# name -> (kwargs, input name, input shape, output shape, trainable params). CNN counts are
# torchvision's / the papers'; LeNet-5 (28x28, relu, max pool) has the well-known 61,706.
SPECS = {
    "lenet5": ({"batch": 2}, "input", (2, 1, 28, 28), (2, 10), 61_706),
    "alexnet": ({}, "input", (1, 3, 224, 224), (1, 1000), 61_100_840),
    "vgg11": ({}, "input", (1, 3, 224, 224), (1, 1000), 132_863_336),
    "vgg16": ({}, "input", (1, 3, 224, 224), (1, 1000), 138_357_544),
    "resnet18": ({}, "input", (1, 3, 224, 224), (1, 1000), 11_689_512),
    "resnet34": ({}, "input", (1, 3, 224, 224), (1, 1000), 21_797_672),
    "resnet50": ({}, "input", (1, 3, 224, 224), (1, 1000), 25_557_032),
    "resnet101": ({}, "input", (1, 3, 224, 224), (1, 1000), 44_549_160),
    "resnet152": ({}, "input", (1, 3, 224, 224), (1, 1000), 60_192_808),
    "resnet20": ({"batch": 2}, "input", (2, 3, 32, 32), (2, 10), cifar_resnet_params(3)),
    "resnet56": ({}, "input", (1, 3, 32, 32), (1, 10), cifar_resnet_params(9)),
    "mobilenet_v1": ({}, "input", (1, 3, 224, 224), (1, 1000), 4_231_976),
    "gcn_karate": ({}, "features", (34, 34), (34, 2), 34 * 16 + 16 + 16 * 2 + 2),
    "gcn_cora_like": ({}, "features", (2708, 1433), (2708, 7), 1433 * 16 + 16 + 16 * 7 + 7),
}
BIG = {"alexnet", "vgg11", "vgg16", "resnet101", "resnet152"}


@functools.cache
def small(name: str, **kwargs) -> kiln.ir.Graph:
    assert name not in BIG, "big models are built once, in test_zoo_model"
    return get_model(name, **{**SPECS[name][0], **kwargs})


def test_zoo_lists_every_spec():
    assert set(ZOO) == set(SPECS)
    assert kiln.models.ZOO is ZOO


@pytest.mark.parametrize("name", list(SPECS))
def test_zoo_model(name):
    kwargs, input_name, in_shape, out_shape, params = SPECS[name]
    g = get_model(name, **kwargs) if name in BIG else small(name)
    verify(g)
    assert [(v.name, v.type.shape, v.type.dtype) for v in g.inputs] == [(input_name, in_shape, "f32")]
    assert len(g.outputs) == 1 and g.type_of(g.outputs[0]).shape == out_shape
    assert graph_stats(g).params == params


def test_cifar_resnet20_count_matches_the_known_figure():
    # option B adds 1x1 projections + BN to the paper's ~0.27M
    assert cifar_resnet_params(3) == 272_474


@pytest.mark.parametrize("name, macs", [("resnet18", 1.8e9), ("resnet50", 3.8e9), ("mobilenet_v1", 569e6)])
def test_multiply_adds_match_the_papers(name, macs):
    assert graph_stats(small(name)).macs == pytest.approx(macs, rel=0.05)


def test_unknown_model_lists_the_zoo():
    with pytest.raises(kiln.errors.UnsupportedError) as e:
        get_model("resnet19")
    for name in ZOO:
        assert name in str(e.value)


def test_bad_depths_are_refused():
    with pytest.raises(kiln.errors.UnsupportedError, match="6n"):
        kiln.models.cifar_resnet(21)
    with pytest.raises(kiln.errors.UnsupportedError, match="18, 34, 50"):
        kiln.models.resnet(19)


# -- structure --------------------------------------------------------------------------------
def _node(g, name):
    (n,) = [n for n in g.nodes if n.name == name]
    return n


def test_resnet_names_follow_torchvision():
    g = small("resnet18")
    names = {n.name for n in g.nodes}
    assert {"conv1", "bn1", "maxpool", "layer1.0.conv1", "layer2.0.downsample.0",
            "layer2.0.downsample.1", "fc"} <= names
    assert "layer1.0.downsample.0" not in names  # identity shortcut where the shape is kept
    roles = {p.name: p.role for p in g.params}
    assert roles["layer1.0.bn1.weight"] == "param" and roles["layer1.0.bn1.running_var"] == "buffer"
    assert "layer4.1.conv2.weight" in roles and "fc.bias" in roles
    assert not any(n.endswith(("conv1.bias", "conv2.bias")) for n in roles)


def test_resnet_strides_as_in_the_paper():
    basic, bottleneck = small("resnet18"), small("resnet50")
    assert _node(basic, "layer2.0.conv1").attrs["stride"] == (2, 2)
    assert _node(bottleneck, "layer2.0.conv1").attrs["stride"] == (2, 2)  # the 1x1, not v1.5's 3x3
    assert _node(bottleneck, "layer2.0.conv2").attrs["stride"] == (1, 1)
    assert _node(bottleneck, "layer2.0.downsample.0").attrs["stride"] == (2, 2)
    assert _node(bottleneck, "layer1.0.downsample.0").attrs["stride"] == (1, 1)  # 64 -> 256
    adds = [n for n in bottleneck.nodes if n.op == "add"]
    assert len(adds) == 16 and all(bottleneck.users[a.outputs[0].name][0].op == "relu" for a in adds)


def test_mobilenet_is_depthwise_separable():
    g = small("mobilenet_v1")
    dw = [n for n in g.nodes if n.op == "conv2d" and n.attrs["groups"] > 1]
    assert len(dw) == 13
    assert all(n.attrs["groups"] == g.type_of(n.inputs[0]).shape[1] for n in dw)
    assert g.type_of(_node(g, "blocks.12.pw_conv").outputs[0].name).shape == (1, 1024, 7, 7)
    half = kiln.models.mobilenet_v1(num_classes=10, width=0.5, image_size=128)
    assert half.type_of(_node(half, "blocks.12.pw_conv").outputs[0].name).shape == (1, 512, 4, 4)


def _adaptive_avgpool_numpy(x, out):
    n, c, h, w = x.shape
    y = np.empty((n, c, out, out), x.dtype)
    for i in range(out):
        for j in range(out):
            rows = slice(i * h // out, -(-(i + 1) * h // out))
            cols = slice(j * w // out, -(-(j + 1) * w // out))
            y[:, :, i, j] = x[:, :, rows, cols].mean(axis=(2, 3))
    return y


@pytest.mark.parametrize("size, op", [(6, None), (12, "avgpool2d"), (13, "matmul"), (3, "matmul")])
def test_adaptive_avgpool_is_exact(size, op):
    b = Builder("pool")
    x = b.input("input", (2, 3, size, size))
    g = b.build(adaptive_avgpool(b, x, 6) if op else b.relu(adaptive_avgpool(b, x, 6)))
    assert op is None or op in {n.op for n in g.nodes}
    feed = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    want = _adaptive_avgpool_numpy(feed, 6)
    np.testing.assert_allclose(interpret(g, {"input": feed})[0], np.maximum(want, 0) if not op else want,
                               rtol=1e-5, atol=1e-6)


# -- determinism ------------------------------------------------------------------------------
@pytest.mark.parametrize("build", [kiln.models.lenet5, kiln.models.resnet20, kiln.models.gcn_karate])
def test_same_seed_same_params_other_seed_other_params(build):
    a, b, c = build(seed=0), build(seed=0), build(seed=1)
    assert a == b
    pa, pc = a.param_data(), c.param_data()
    trainable = [p.name for p in a.params if p.role == "param" and np.ptp(p.data) > 0]
    assert trainable and all(not np.array_equal(pa[k], pc[k]) for k in trainable)


# -- numerics ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_forward_is_finite(name):
    g = small(name)
    x = np.random.default_rng(1).standard_normal(g.inputs[0].type.shape).astype(np.float32)
    (y,) = interpret(g, {"input": x})
    assert y.shape == SPECS[name][3] and np.isfinite(y).all() and np.ptp(y) > 0


def _lenet_onnx(params: dict[str, np.ndarray], batch: int) -> bytes:
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["c1"], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["f"]),
        helper.make_node("Gemm", ["f", "fc1.weight", "fc1.bias"], ["g1"], transB=1),
        helper.make_node("Relu", ["g1"], ["r3"]),
        helper.make_node("Gemm", ["r3", "fc2.weight", "fc2.bias"], ["g2"], transB=1),
        helper.make_node("Relu", ["g2"], ["r4"]),
        helper.make_node("Gemm", ["r4", "fc3.weight", "fc3.bias"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "lenet5",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        initializer=[numpy_helper.from_array(v, k) for k, v in params.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_lenet5_matches_onnxruntime():
    g = small("lenet5")
    params = g.param_data()
    assert len(params) == 10
    x = np.random.default_rng(2).standard_normal((2, 1, 28, 28)).astype(np.float32)
    session = ort.InferenceSession(_lenet_onnx(params, 2), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"input": x})
    np.testing.assert_allclose(interpret(g, {"input": x})[0], want, rtol=1e-4, atol=1e-5)


# -- GCN ---------------------------------------------------------------------------------------
def _dense_normalized(a: np.ndarray) -> np.ndarray:
    a = a + np.eye(len(a))
    d = 1.0 / np.sqrt(a.sum(axis=1))
    return d[:, None] * a * d[None, :]


def _dense(csr) -> np.ndarray:
    indptr, indices, data = csr
    n = len(indptr) - 1
    out = np.zeros((n, n))
    np.add.at(out, (np.repeat(np.arange(n), np.diff(indptr)), indices), data)
    return out


def _odd_graph() -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(["c", "a", "b", "lonely"])  # node order is insertion order, not sorted
    g.add_edges_from([("a", "b"), ("b", "c"), ("c", "c")])  # and a self loop
    return g


@pytest.mark.parametrize("graph", [nx.karate_club_graph(), _odd_graph(), nx.path_graph(5, nx.DiGraph)])
def test_normalized_adjacency_matches_dense_numpy(graph):
    a = nx.to_numpy_array(graph, nodelist=list(graph.nodes), weight=None)
    want = _dense_normalized(a)
    csr = normalized_adjacency(graph)
    indptr, indices, _ = csr
    assert all((np.diff(indices[lo:hi]) > 0).all() for lo, hi in itertools.pairwise(indptr))
    np.testing.assert_allclose(_dense(csr), want, rtol=1e-12)
    np.testing.assert_allclose(_dense(normalized_adjacency(a)), want, rtol=1e-12)  # dense input
    raw = np.nonzero(a)
    coo = (np.searchsorted(raw[0], np.arange(len(a) + 1)), raw[1], a[raw])
    np.testing.assert_allclose(_dense(normalized_adjacency(coo)), want, rtol=1e-12)  # CSR input


def test_normalized_adjacency_can_use_edge_weights():
    g = nx.karate_club_graph()
    want = _dense_normalized(nx.to_numpy_array(g, weight="weight"))
    np.testing.assert_allclose(_dense(normalized_adjacency(g, weight="weight")), want, rtol=1e-12)


def test_bad_adjacency_is_refused():
    with pytest.raises(kiln.errors.ShapeError):
        normalized_adjacency(np.ones((2, 3)))
    with pytest.raises(kiln.errors.ShapeError):
        normalized_adjacency((np.array([0, 1]), np.array([5]), np.array([1.0])))
    with pytest.raises(kiln.errors.UnsupportedError):
        normalized_adjacency("karate")


def test_random_graph_is_simple_undirected_and_seeded():
    csr = random_graph(2708, 5278, seed=0)
    a = _dense(csr)
    assert len(csr[1]) == 10_556 and (a == a.T).all() and (np.diag(a) == 0).all() and set(a.flat) <= {0, 1}
    assert all(np.array_equal(x, y) for x, y in zip(csr, random_graph(2708, 5278, seed=0)))
    assert not np.array_equal(csr[1], random_graph(2708, 5278, seed=1)[1])
    g = small("gcn_cora_like")
    assert g.param_map["adjacency.indices"].data.shape == (10_556 + 2708,)


def test_gcn_forward_matches_dense_numpy():
    karate = nx.karate_club_graph()
    g = small("gcn_karate")
    rng = np.random.default_rng(3)
    # random biases, so the check sees where they are added (the builder starts them at zero)
    params = [Param(p.value, rng.standard_normal(p.data.shape).astype(np.float32), p.role)
              if p.name.endswith("bias") else p for p in g.params]
    g = verify(g.replace(params=tuple(params)))
    p = g.param_data()
    a = _dense_normalized(nx.to_numpy_array(karate, weight=None))
    x = np.eye(34, dtype=np.float32)
    h = np.maximum(a @ (x @ p["gc1.weight"]) + p["gc1.bias"], 0)
    want = a @ (h @ p["gc2.weight"]) + p["gc2.bias"]
    (got,) = interpret(g, {"features": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert [n.op for n in g.nodes].count("dropout") == 2
