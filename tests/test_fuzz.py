"""The ONNX import fuzzer (bench/fuzz.py): a bounded seeded run, and one regression test for
every bug it found, each with its input cut down to the few nodes that show it.

The contract: every input either runs and matches onnxruntime (where onnxruntime accepts it)
or raises a KilnError; never another exception, a hang, a crash or a wrong answer.
KILN_FUZZ_INPUTS and KILN_FUZZ_SECONDS change the bounded run's size and time cap.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import kiln
import numpy as np
import onnx
import pytest
from kiln.errors import KilnError, ModelError, ResourceError
from kiln.frontend.onnx import from_onnx
from onnx import TensorProto, helper, numpy_helper
from onnx_util import IR_VERSION, run_onnxruntime

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import fuzz  # the repository's bench package, beside the tests

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs=("y",), inits=(), opset=17):
    outs = [helper.make_tensor_value_info(o, F, None) for o in outputs]
    g = helper.make_graph(nodes, "m", inputs, outs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR_VERSION
    return m


def _x(shape, name="x", elem=F):
    return helper.make_tensor_value_info(name, elem, list(shape))


def _refused(m, *words, kind=KilnError):
    with pytest.raises(kind) as e:
        kiln.compile(from_onnx(m), target="reference")
    for w in words:
        assert w in str(e.value), str(e.value)
    return str(e.value)


def _patched(m: onnx.ModelProto, old: bytes, new: bytes, tmp_path) -> str:
    """`m` serialized with `old` replaced by `new` (same length), written to a file."""
    data = m.SerializeToString()
    assert data.count(old) == 1 and len(old) == len(new)
    path = tmp_path / "m.onnx"
    path.write_bytes(data.replace(old, new))
    return str(path)


def test_a_bounded_fuzz_run_finds_no_bugs():
    """About two minutes: every outcome a match, a refusal or onnxruntime's own problem, and
    enough inputs run and match onnxruntime that the run checks something."""
    inputs = int(os.environ.get("KILN_FUZZ_INPUTS", "20000"))
    cap = float(os.environ.get("KILN_FUZZ_SECONDS", "100"))
    report = fuzz.campaign(inputs, seed=0, limit=30.0, time_cap=cap)
    bugs = "\n".join(f"input {b['input']} ({b['seed_model']}; {', '.join(b['mutations'])}): {b['kind']} "
                     f"{b.get('error', '')} {b.get('detail', '')[-800:]}" for b in report["bugs"])
    assert report["bug_count"] == 0, f"{report['counts']}\n{bugs}\n(rerun one: python -m bench.fuzz --seed 0 --only N)"
    assert report["inputs"] >= min(inputs, 1000), report
    assert report["counts"].get("match", 0) >= report["inputs"] // 20, report["counts"]


def _chain(n: int) -> bytes:
    nodes = [helper.make_node("Relu", ["x" if i == 0 else f"v{i - 1}"], [f"v{i}" if i < n - 1 else "y"])
             for i in range(n)]
    return _model(nodes, [_x([2])]).SerializeToString()


def test_the_fuzzer_sees_wrong_answers_crashes_and_hangs():
    """The harness itself: a wrong output is a mismatch, a worker killed while it imports is a
    crash and one over the time limit a hang, and the next input gets a fresh worker."""
    assert fuzz.compare([np.array([1.0, np.nan], np.float32)], [np.array([1.0, np.nan], np.float32)]) is None
    assert "differ" in fuzz.compare([np.array([1.0, 2.0], np.float32)], [np.array([1.0, 2.1], np.float32)])
    assert "shape" in fuzz.compare([np.zeros((1, 2), np.float32)], [np.zeros(2, np.float32)])
    assert fuzz.compare([np.array([-np.inf], np.float32)], [np.array([np.finfo(np.float32).min], np.float32)]) is None
    slow = _chain(20_000)  # seconds to import
    w = fuzz.Worker()
    try:
        w.start()
        threading.Timer(0.5, w.proc.kill).start()
        assert w.run(slow, 60) == {"kind": "crash", "detail": "exit code -9 in kiln"}
        assert w.run(slow, 0.2) == {"kind": "hang", "detail": "over 0.2 s in kiln"}
        assert w.run(_chain(3), 60)["kind"] == "match"
    finally:
        w.close()


# -- regressions: one per bug the fuzzer found -----------------------------------------------------

def test_an_initializer_whose_data_does_not_fill_its_dims_is_refused():
    """numpy_helper.to_array's ValueError (cannot reshape) escaped the importer."""
    t = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    t.dims[:] = [3]
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [_x([3])], inits=[t])
    _refused(m, "initializer", "w", "dims [3]")


def test_names_that_are_not_utf8_are_refused(tmp_path):
    """protobuf hands such strings over as bytes: onnx.defs.has raised TypeError on an op type,
    the checker UnicodeDecodeError on an attribute name, the converters on a string value."""
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_x([2])])
    with pytest.raises(ModelError, match="op type is not valid UTF-8"):
        from_onnx(_patched(m, b"Relu", b"R\xfflu", tmp_path))
    conv = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])
    m = _model([conv], [_x([1, 1, 4, 4])])
    with pytest.raises(ModelError, match="attribute name .* is not valid UTF-8"):
        from_onnx(_patched(m, b"kernel_shape", b"kernel_s\x7f\xff\xff\xff", tmp_path))
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], auto_pad="SAME_UPPER")
    m = _model([pool], [_x([1, 1, 4, 4])])
    with pytest.raises(KilnError, match="auto_pad"):
        from_onnx(_patched(m, b"SAME_UPPER", b"SAME\xffUPPER", tmp_path))


def test_an_unknown_element_type_is_refused():
    """ValueError from TensorProto.DataType.Name(33) while wording the refusal."""
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_x([2])])
    m.graph.output[0].type.tensor_type.elem_type = 33
    m.graph.input[0].type.tensor_type.elem_type = 33
    _refused(m, "33")


def test_split_with_a_huge_num_outputs_is_refused_at_once():
    """num_outputs=2**31-1 on a two-output Split built a list of 2**31 sizes: a hang."""
    node = helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2**31 - 1)
    m = _model([node], [_x([2, 6])], outputs=("a", "b"), opset=18)
    t0 = time.perf_counter()
    _refused(m, "num_outputs=2147483647", "2 output(s)")
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize("opset, node, inputs, inits", [
    # converted: kiln read it as true, onnxruntime as false
    (13, helper.make_node("ReduceMean", ["x"], ["y"], keepdims=-(2**63), axes=[1]), [_x([3, 2, 2])], []),
    # folded at import by onnx's reference evaluator, which reads it as true
    (18, helper.make_node("ReduceMin", ["x"], ["y"], keepdims=-3), [],
     [numpy_helper.from_array(np.ones((4, 2), np.bool_), "x")]),
])
def test_a_flag_attribute_other_than_0_or_1_is_refused(opset, node, inputs, inits):
    _refused(_model([node], inputs, inits=inits, opset=opset), "keepdims=", "must be 0 or 1")


def test_pooling_attribute_lists_of_the_wrong_length_are_refused():
    """3 dilations on a 2-D pool indexed past the list: IndexError."""
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[1, 1, 1])
    _refused(_model([node], [_x([1, 1, 4, 4])], opset=19), "dilations has 3 value(s)", "expected 2")


def test_pooling_with_a_billion_wide_kernel_is_refused_before_padding():
    """kernel 10**9 with SAME_LOWER padded the input by 5*10**8: a 369 GiB allocation."""
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[10**9, 2], auto_pad="SAME_LOWER")
    t0 = time.perf_counter()
    with pytest.raises(ResourceError, match="padded input"):
        from_onnx(_model([node], [_x([1, 3, 32, 32])]))
    assert time.perf_counter() - t0 < 10


def test_lrn_with_a_window_wider_than_the_channels_runs():
    """size 10**9 padded the channel axis by 5*10**8 (MemoryError); the window covers every
    channel, as size 2C+1 does."""
    x = np.random.default_rng(0).standard_normal((1, 3, 2, 2)).astype(np.float32)
    outs = []
    for size in (10**9, 7):
        m = _model([helper.make_node("LRN", ["x"], ["y"], size=size)], [_x(x.shape)])
        outs.append(kiln.compile(from_onnx(m)).run({"x": x})[0])
    denom = (1.0 + 1e-4 / 10**9 * (x.astype(np.float64) ** 2).sum(axis=1, keepdims=True)) ** 0.75
    np.testing.assert_allclose(outs[0], x / denom, rtol=1e-6)
    expected, = run_onnxruntime("LRN", [x], {"size": 7})
    np.testing.assert_allclose(outs[1], expected, rtol=1e-5, atol=1e-6)
    _refused(_model([helper.make_node("LRN", ["x"], ["y"], size=0)], [_x(x.shape)]), "size 0")
    # a rank-1 input (the coverage-guided mode's find) indexed its missing channel axis
    _refused(_model([helper.make_node("LRN", ["x"], ["y"], size=3)], [_x([5])]), "no channel axis")


def test_log_softmax_of_an_empty_tensor_runs():
    """numpy's max over an empty axis raised ValueError in the reference implementation."""
    m = _model([helper.make_node("LogSoftmax", ["x"], ["y"], axis=-1)], [_x([3, 0])], opset=13)
    (y,) = kiln.compile(from_onnx(m)).run({"x": np.zeros((3, 0), np.float32)})
    assert y.shape == (3, 0)


@pytest.mark.parametrize("node, init", [
    (helper.make_node("ReduceL2", ["x", "axes"], ["y"]), numpy_helper.from_array(np.array([np.nan]), "axes")),
    (helper.make_node("Reshape", ["x", "s"], ["y"]), numpy_helper.from_array(np.array([2.5, 2.0]), "s")),
    (helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest"),
     numpy_helper.from_array(np.array([1, 1, 3, np.nan], np.float32), "scales")),
])
def test_shape_operands_that_are_nan_or_fractions_are_refused(node, init):
    """int(nan) raised ValueError in the converters."""
    _refused(_model([node], [_x([1, 1, 2, 2])], inits=[init], opset=18), init.name)


@pytest.mark.parametrize("node, init, words", [
    (helper.make_node("Clip", ["x", "lo"], ["y"]), numpy_helper.from_array(np.zeros(2, np.float32), "lo"),
     ("Clip's min", "one value")),
    (helper.make_node("Dropout", ["x", "", "t"], ["y"]), numpy_helper.from_array(np.ones(2, np.bool_), "t"),
     ("training_mode", "one value")),
    (helper.make_node("Pad", ["x", "p", "", "a"], ["y"]), numpy_helper.from_array(np.array([1, 1], np.int64), "a"),
     ("two values for each",)),
])
def test_operands_of_the_wrong_size_are_refused(node, init, words):
    """float() and bool() of a many-element bound raised TypeError / ValueError; pads shorter
    than twice the axes indexed past the list."""
    inits = [init] + ([numpy_helper.from_array(np.array([1, 1], np.int64), "p")] if node.op_type == "Pad" else [])
    _refused(_model([node], [_x([2, 2])], inits=inits, opset=18), *words)


def test_a_1d_convolution_with_a_4d_weight_is_refused():
    """Unpacking the weight's shape raised ValueError."""
    w = numpy_helper.from_array(np.ones((2, 1, 3, 1), np.float32), "w")
    _refused(_model([helper.make_node("Conv", ["x", "w"], ["y"])], [_x([1, 1, 8])], inits=[w]), "3-D")


@pytest.mark.parametrize("op, attrs, words", [
    ("Attention", {"softcap": -1.0}, ("softcap=-1 ",)),
    ("Attention", {"qk_matmul_output_mode": -1}, ("qk_matmul_output_mode=-1",)),
    ("Celu", {"alpha": -1.0}, ("alpha=-1 ",)),
])
def test_function_bodies_that_disagree_with_the_op_are_refused(op, attrs, words):
    """onnx's function bodies for these attribute values compute something else than onnx's
    reference and onnxruntime (a negative softcap still caps; Celu's body for a negative alpha
    is not Celu): a wrong answer, now a refusal."""
    if op == "Attention":
        ins = [_x([1, 1, 4, 8], "q"), _x([1, 1, 6, 8], "k"), _x([1, 1, 6, 8], "v")]
        node = helper.make_node(op, ["q", "k", "v"], ["y"], **attrs)
        m = _model([node], ins, opset=23)
    else:
        m = _model([helper.make_node(op, ["x"], ["y"], **attrs)], [_x([2, 3])], opset=13)
    _refused(m, "function body", *words)


def test_arg_min_of_a_vector_without_keepdims_is_a_scalar():
    """np.ascontiguousarray turned the 0-d index into shape (1,): the reference disagreed with
    the inferred type."""
    data = numpy_helper.from_array(np.array([-np.inf, 1, 3], np.float32), "x")
    node = helper.make_node("ArgMin", ["x"], ["y"], axis=0, keepdims=0)
    g = helper.make_graph([node], "m", [], [helper.make_tensor_value_info("y", TensorProto.INT64, None)], [data])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = IR_VERSION
    (y,) = kiln.compile(from_onnx(m)).run({})
    assert y.shape == () and y == 0


def test_a_softmax_axis_past_the_rank_is_refused_before_opset_13():
    """axis 2**62 on a rank-2 input flattened to [N, 1]: all zeros, where onnxruntime differs."""
    node = helper.make_node("LogSoftmax", ["x"], ["y"], axis=2**62)
    _refused(_model([node], [_x([2, 8])], opset=11), "axis 4611686018427387904")


def test_a_crop_and_resize_roi_far_outside_the_image_is_refused():
    """roi 3.4e38 overflows float32 coordinates: kiln, onnx's reference and onnxruntime all differ."""
    roi = numpy_helper.from_array(np.array([3.4e38, 0.4, 0.8, 0.6], np.float32), "roi")
    sizes = numpy_helper.from_array(np.array([3, 3], np.int64), "sizes")
    node = helper.make_node("Resize", ["x", "roi", "", "sizes"], ["y"], axes=[3, 2], mode="linear",
                            coordinate_transformation_mode="tf_crop_and_resize")
    _refused(_model([node], [_x([1, 1, 4, 4])], inits=[roi, sizes], opset=18), "roi", "1e+06")


def test_tile_with_a_huge_count_is_refused_before_building_it():
    """repeats 2**62 built a Python list of 2**62 operands: MemoryError."""
    reps = numpy_helper.from_array(np.array([1, 2, 3, 2**62], np.int64), "r")
    t0 = time.perf_counter()
    with pytest.raises(ResourceError, match="Tile"):
        from_onnx(_model([helper.make_node("Tile", ["x", "r"], ["y"])], [_x([1, 2, 3, 4])], inits=[reps]))
    assert time.perf_counter() - t0 < 10


def test_a_transposed_convolution_with_a_huge_stride_is_refused_before_allocating():
    """strides 2**31 with a small output_shape padded the result to 4 billion rows (224 GiB)."""
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], output_shape=[10, 8], strides=[2**31, 2])
    w = numpy_helper.from_array(np.ones((1, 2, 3, 3), np.float32), "w")
    t0 = time.perf_counter()
    with pytest.raises(ResourceError, match="transposed convolution"):
        kiln.compile(from_onnx(_model([node], [_x([1, 1, 3, 3])], inits=[w])))
    assert time.perf_counter() - t0 < 10


def test_a_reduction_with_noop_with_empty_axes_still_maps_each_element():
    """ReduceL1 with no axes and noop_with_empty_axes=1 was an identity; it is |x| (and
    ReduceSumSquare x*x, ReduceLogSum log x), as onnx's reference and onnxruntime have it."""
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    for op, want in (("ReduceL1", np.abs(x)), ("ReduceSumSquare", x * x), ("ReduceMax", x)):
        m = _model([helper.make_node(op, ["x"], ["y"], noop_with_empty_axes=1)], [_x(x.shape)], opset=18)
        np.testing.assert_allclose(kiln.compile(from_onnx(m)).run({"x": x})[0], want, rtol=1e-6)


@pytest.mark.parametrize("attrs, words", [
    ({"group": 0}, ("groups=0",)),  # ZeroDivisionError
    ({"dilations": [2, -1]}, ("dilation=[2, -1]",)),  # ValueError broadcasting in the reference
])
def test_a_transposed_convolution_with_a_zero_group_or_negative_dilation_is_refused(attrs, words):
    w = numpy_helper.from_array(np.ones((1, 1, 2, 2), np.float32), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)
    _refused(_model([node], [_x([1, 1, 3, 3])], inits=[w]), *words)


def test_resizing_an_empty_axis_to_a_nonempty_one_is_refused():
    """The reference's take from an empty axis raised IndexError."""
    sizes = numpy_helper.from_array(np.array([1, 1, 8, 8], np.int64), "s")
    node = helper.make_node("Resize", ["x", "", "", "s"], ["y"], mode="nearest")
    _refused(_model([node], [_x([1, 1, 4, 0])], inits=[sizes], opset=18), "axis 3", "empty")


def test_a_graph_without_outputs_is_refused():
    """It imported and then failed kiln's own verification."""
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_x([2])])
    del m.graph.output[:]
    _refused(m, "no outputs", kind=ModelError)


def test_a_folded_expand_past_32_dimensions_is_refused():
    """numpy's broadcast_shapes raised RuntimeError (more than 32 dimensions) while sizing it."""
    x = numpy_helper.from_array(np.ones((3, 4, 5), np.int16), "a")
    shape = numpy_helper.from_array(np.full(60, 2, np.int64), "s")  # and not broadcastable
    g = helper.make_graph([helper.make_node("Expand", ["a", "s"], ["y"])], "m", [],
                          [helper.make_tensor_value_info("y", TensorProto.INT16, None)], [x, shape])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = IR_VERSION
    _refused(m, "Expand")


@pytest.mark.parametrize("alpha, words", [(1e30, ("alpha=1e+30", "becomes inf")),
                                          (5.877472e-39, ("alpha=5.87747e-39", "becomes 0"))])
def test_celu_with_an_alpha_float16_cannot_hold_is_refused_for_float16(alpha, words):
    """The body casts alpha to float16 (inf, or 0 for a tiny one: the coverage-guided mode's
    find) and divides by it: NaN everywhere."""
    node = helper.make_node("Celu", ["x"], ["y"], alpha=alpha)
    m = _model([node], [_x([5], elem=TensorProto.FLOAT16)], opset=13)
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    _refused(m, *words, "f16")


def test_a_huge_cubic_coefficient_is_refused():
    """cubic_coeff_a=-1e30: weights that cancel catastrophically; float32 and float64 differ."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic", cubic_coeff_a=-1e30)
    _refused(_model([node], [_x([1, 1, 4, 4])], inits=[scales], opset=18), "cubic_coeff_a")


def test_global_pooling_over_an_empty_spatial_axis_is_refused():
    """numpy's max over nothing raised ValueError in the reference."""
    _refused(_model([helper.make_node("GlobalMaxPool", ["x"], ["y"])], [_x([1, 1, 3, 0])]), "empty spatial axis")


def test_pooling_whose_same_padding_is_negative_is_refused():
    """stride 5 over 5 rows with a 3-row window: ONNX's SAME formula pads by -2; kiln took 0,
    onnxruntime's AveragePool crops (and its MaxPool refuses)."""
    node = helper.make_node("AveragePool", ["x"], ["y"], auto_pad="SAME_UPPER", kernel_shape=[3, 3], strides=[5, 2])
    _refused(_model([node], [_x([1, 1, 5, 5])], opset=19), "pads by -2")


@pytest.mark.parametrize("attrs", [{"strides": [0, 1]}, {"dilations": [1, 0]}])
def test_same_padding_with_a_zero_stride_or_dilation_is_refused(attrs):
    """strides [0, 1] with SAME_UPPER: ZeroDivisionError in ONNX's padding formula."""
    node = helper.make_node("AveragePool", ["x"], ["y"], auto_pad="SAME_UPPER", kernel_shape=[2, 2], **attrs)
    _refused(_model([node], [_x([1, 1, 4, 4])], opset=19), "must be at least 1")


def test_an_empty_tensor_whose_other_dimensions_overflow_is_refused():
    """f32[2**62 + 1, 0] has no elements, but numpy cannot make it (the coverage-guided mode
    found it through CenterCropPad's Pad): ValueError from np.empty in the reference."""
    pads = numpy_helper.from_array(np.array([0, 0, 2**62, 0], np.int64), "p")
    _refused(_model([helper.make_node("Pad", ["x", "p"], ["y"])], [_x([1, 0])], inits=[pads], opset=18),
             "no elements", "64-bit", kind=ResourceError)


def test_a_constant_with_two_values_is_refused():
    """value_ints and value_float on one Constant (the coverage-guided mode's find): onnx's
    checker passes it, kiln folded one value and onnxruntime used the other."""
    const = helper.make_node("Constant", [], ["s"], value_ints=[1, -1], value_float=0.0)
    m = _model([const, helper.make_node("Reshape", ["x", "s"], ["y"])], [_x([2, 2])], opset=21)
    _refused(m, "exactly one value attribute", "has 2")


def test_bytes_that_python_protobuf_parses_and_onnxs_checker_cannot_are_refused(tmp_path):
    """The coverage-guided mode's find, cut down to 154 bytes by delta debugging (not worth
    building field by field): the checker's C++ parser raised ValueError."""
    data = (b'kend-tesdata\n\x07in\x01X\x12\x01Y"\x04Clpha\x15\x00\x00her_2d_indices*\x0f\x08\x00\x10\x07B\x07'
            b'indicesJ\x00Z\x16\n\x04data\x12\x0e\n\x0c\x08\x01\x12\x08\n\x02\x08\x03d-test:T\n\x1d\n\x01X\x12'
            b'\x01Y"\x04Celu*\x0f\n\x05alpha\x15\x00\x00\x80\x7f\xa0\x01\x01\x12\x11test_celu_float16Zb\x0f\n'
            b'\x01Y\x12\x05B\x04\n\x00\x10\x1c')
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelError, match="malformed"):
        from_onnx(str(path))
