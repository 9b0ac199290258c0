"""Resource limits before allocation (ir/limits.py): every inferred value, every folded constant
and every planned arena is checked against KILN_MAX_BYTES (default: half of physical memory);
a model over it gets a ResourceError naming the node, the shape and the bytes, in bounded time,
with nothing allocated."""

from __future__ import annotations

import time

import kiln
import numpy as np
import pytest
from kiln.errors import KilnError, ResourceError
from kiln.frontend import Builder
from kiln.frontend.onnx import from_onnx
from onnx import TensorProto, helper, numpy_helper
from onnx_util import IR_VERSION


def _model(nodes, inputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "m", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR_VERSION
    return m


def test_a_conv_with_pads_of_a_billion_is_refused_at_import():
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="huge_pad", pads=[10**9] * 4)
    m = _model([conv], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])], [w])
    with pytest.raises(ResourceError) as e:
        from_onnx(m)
    msg = str(e.value)
    assert "huge_pad" in msg and "bytes" in msg and "KILN_MAX_BYTES" in msg, msg


def test_a_tiny_model_asking_for_a_huge_constant_is_refused_before_allocating():
    shape = numpy_helper.from_array(np.array([100_000, 100_000, 100], np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["c"], name="big_fill",
                              value=numpy_helper.from_array(np.array([1.0], np.float32))),
             helper.make_node("Add", ["x", "c"], ["y"])]
    m = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [shape])
    assert len(m.SerializeToString()) < 400
    t0 = time.perf_counter()
    with pytest.raises(ResourceError) as e:
        from_onnx(m)
    assert time.perf_counter() - t0 < 10
    assert "big_fill" in str(e.value) and "4,000,000,000,000 bytes" in str(e.value), str(e.value)


def test_kiln_max_bytes_sets_the_limit(monkeypatch):
    monkeypatch.setenv("KILN_MAX_BYTES", "1000")
    b = Builder("small", seed=0)
    with pytest.raises(ResourceError) as e:
        b.relu(b.input("x", (2, 3, 32, 32)))
    assert "24,576 bytes" in str(e.value) and "1,000" in str(e.value), str(e.value)
    monkeypatch.setenv("KILN_MAX_BYTES", "not a number")
    with pytest.raises(KilnError, match="KILN_MAX_BYTES"):
        b.relu(b.input("z", (2, 2)))


def test_an_arena_over_the_limit_is_refused_before_it_is_allocated(monkeypatch):
    """Three 64 KiB branches live at once and their 192 KiB concat: every value fits 200 KB, the
    arena does not."""
    b = Builder("branches", seed=0)
    x = b.input("x", (1, 16, 32, 32))
    branches = [b.conv2d(x, 16, 3, pads=1, name=f"c{i}") for i in range(3)]
    g = b.build(b.global_avgpool(b.op("concat", branches, {"axis": 1})))
    monkeypatch.setenv("KILN_MAX_BYTES", "200000")
    monkeypatch.setenv("KILN_COST_MODEL", "rules")
    with pytest.raises(ResourceError, match="arena"):
        kiln.compile(g, target="cpu")


def _chain_model(n: int):
    """n nodes, each reading the one before: Relu and Add (of the graph input) in turn."""
    nodes, prev = [], "x"
    for i in range(n):
        out = "y" if i == n - 1 else f"v{i}"
        ins = [prev] if i % 2 == 0 else [prev, "x"]
        nodes.append(helper.make_node("Relu" if i % 2 == 0 else "Add", ins, [out], name=f"n{i}"))
        prev = out
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])])


def test_a_100000_node_chain_imports_compiles_and_runs_in_bounded_time():
    """Import, shape inference and every reference pass are linear in the node count and nothing
    recurses per node: a 10^5-deep chain takes about 11 s on a quiet 2-core machine (the bound
    is generous for a busy CI one)."""
    m = _chain_model(100_000)
    t0 = time.perf_counter()
    exe = kiln.compile(from_onnx(m), target="reference")
    (y,) = exe.run({"x": np.ones((1, 4), np.float32)})
    assert time.perf_counter() - t0 < 60
    assert len(exe.graph.nodes) == 100_000
    np.testing.assert_array_equal(y, np.full((1, 4), 50_001, np.float32))


def test_kiln_max_nodes_refuses_a_bigger_graph_at_once(monkeypatch):
    monkeypatch.setenv("KILN_MAX_NODES", "1000")
    with pytest.raises(ResourceError) as e:
        from_onnx(_chain_model(1001))
    assert "1,001 nodes" in str(e.value) and "1,000" in str(e.value) and "KILN_MAX_NODES" in str(e.value)
    from_onnx(_chain_model(1000))
    # function bodies count too: each Celu imports as three nodes
    celus = [helper.make_node("Celu", ["x" if i == 0 else f"c{i - 1}"], ["y" if i == 399 else f"c{i}"])
             for i in range(400)]
    with pytest.raises(ResourceError, match="function bodies expanded"):
        from_onnx(_model(celus, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])], opset=13))
