"""ONNX's own backend-test runner drives kiln through KilnBackend (onnx.backend.base.Backend):
a selection of node tests from onnx's data folder, plus the Backend API itself."""

import re
import unittest

import numpy as np
import onnx
import onnx.backend.test
import pytest
from kiln.errors import InputError, UnsupportedError
from kiln.onnx_backend import KilnBackend
from onnx import helper

_SELECTED = re.compile(
    r"^test_(relu|conv_with_strides_padding|gemm_all_attributes|maxpool_2d_pads|averagepool_2d_same_upper|"
    r"softmax_axis_1|flatten_axis2|reshape_negative_dim|concat_3d_axis_1|lrn|batchnorm_example|"
    r"globalaveragepool|pad|clip_splitbounds)_cpu$")


def _runner_cases() -> list[unittest.TestCase]:
    runner = onnx.backend.test.BackendTest(KilnBackend, __name__)
    runner.include(_SELECTED.pattern)
    out, stack = [], [runner.test_suite]
    while stack:
        item = stack.pop()
        if isinstance(item, unittest.TestSuite):
            stack.extend(item)
        elif _SELECTED.match(item._testMethodName):
            out.append(item)
    return sorted(out, key=lambda t: t._testMethodName)


_CASES = _runner_cases()


def test_the_runner_selected_cases():
    assert len(_CASES) >= 12


@pytest.mark.parametrize("case", _CASES, ids=lambda t: t._testMethodName)
def test_onnx_runner_case(case):
    result = unittest.TestResult()
    case.run(result)
    problems = result.failures + result.errors
    assert not problems, problems[0][1]
    assert not result.skipped, result.skipped


def test_run_node_and_supports_device():
    node = helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.2)
    x = np.array([-2.0, 0.5], np.float32)
    (y,) = KilnBackend.run_node(node, [x])
    np.testing.assert_allclose(y, [-0.4, 0.5], rtol=1e-6)
    assert KilnBackend.supports_device("CPU")
    assert not KilnBackend.supports_device("CUDA")
    with pytest.raises(UnsupportedError, match="device 'CUDA'"):
        KilnBackend.prepare(helper.make_model(helper.make_graph([node], "g", [], [])), "CUDA")


def test_values_bound_at_compile_time_must_not_change():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])
    s = helper.make_tensor_value_info("s", onnx.TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["y"])], "g", [x, s], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    rep = KilnBackend.prepare(m)
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    (out,) = rep.run([data, np.array([3, 2])])
    np.testing.assert_array_equal(out, data.reshape(3, 2))
    with pytest.raises(InputError, match="input 's' was compiled in as a constant"):
        rep.run([data, np.array([6, 1])])
