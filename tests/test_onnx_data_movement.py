"""ONNX's run-time data movement and resampling: Slice, Split, Gather with constant indices,
Expand, Tile, DepthToSpace and SpaceToDepth (onto kiln's slice, expand, concat, reshape and
transpose), ConvTranspose (conv2d_grad_input) and Resize / Upsample (resize). Each model runs
on the reference interpreter and the cpu target against onnxruntime; the gradients, against
finite differences, live in test_gradients."""

from __future__ import annotations

import kiln
import numpy as np
import pytest
from kiln.errors import UnsupportedError
from kiln.frontend.onnx import from_onnx
from kiln.runtime import interpret
from test_onnx_import import model, node, rand, run_ort

I64 = np.int64


def check_targets(m, feeds, targets=("reference", "cpu"), tol=1e-6):
    want = run_ort(m, feeds)
    g = from_onnx(m)
    for target in targets:
        got = interpret(g, feeds) if target == "reference" else kiln.compile(g, target=target).run(feeds)
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            assert a.shape == b.shape, f"{target} output {i}: {a.shape} vs onnxruntime {b.shape}"
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"{target} output {i}")
    return g


SLICES = [  # starts, ends, axes, steps
    ([0, 0], [2**62, 2**62], [2, 3], [2, 2]),  # x[:, :, ::2, ::2], as the CIFAR option-A shortcut
    ([1], [-1], [1], None),
    ([-1, 5], [-2**62, 0], [2, 3], [-1, -2]),  # backwards, clamped past the start
    ([3], [1], [3], [1]),  # empty
    ([-100], [100], [-1], None),  # clamped both ends
]


@pytest.mark.parametrize("starts, ends, axes, steps", SLICES)
def test_slice_of_a_computed_tensor(starts, ends, axes, steps):
    x = rand(0, 2, 3, 6, 7)
    inits = {"starts": np.array(starts, I64), "ends": np.array(ends, I64), "axes": np.array(axes, I64)}
    if steps is not None:
        inits["steps"] = np.array(steps, I64)
    nodes = [node("Relu", ["x"], ["r"]), node("Slice", ["r", *inits], ["y"])]
    check_targets(model(nodes, {"x": x}, ["y"], inits), {"x": x})


def test_slice_opset_1_attributes():
    x = rand(0, 3, 8)
    nodes = [node("Relu", ["x"], ["r"]), node("Slice", ["r"], ["y"], starts=[1, -5], ends=[3, 100], axes=[0, 1])]
    check_targets(model(nodes, {"x": x}, ["y"], opset=9), {"x": x})


@pytest.mark.parametrize("opset, how", [(11, "attr"), (13, "input"), (18, "num_outputs"), (13, "equal")])
def test_split(opset, how):
    x = rand(0, 2, 7, 3) if how != "equal" else rand(0, 2, 6, 3)
    ins, attrs, inits = ["r"], {"axis": 1}, {}
    if how == "attr":
        attrs["split"] = [2, 4, 1]
    elif how == "input":
        inits["split"] = np.array([2, 0, 5], I64)
        ins.append("split")
    elif how == "num_outputs":
        attrs["num_outputs"] = 3  # 3, 3 and 1
    outs = ["a", "b", "c"]
    nodes = [node("Relu", ["x"], ["r"]), node("Split", ins, outs, **attrs)]
    check_targets(model(nodes, {"x": x}, outs, inits, opset=opset), {"x": x})


@pytest.mark.parametrize("indices, axis", [(np.array(2, I64), 1), (np.array([0, 2, 4], I64), 2),
                                           (np.array([[3, -1], [0, 1]], I64), 1), (np.array([4, 2, 3, 1, 1], I64), 2)])
def test_gather_constant_indices(indices, axis):
    x = rand(0, 2, 5, 6)
    nodes = [node("Relu", ["x"], ["r"]), node("Gather", ["r", "i"], ["y"], axis=axis)]
    check_targets(model(nodes, {"x": x}, ["y"], {"i": indices}), {"x": x})


@pytest.mark.parametrize("shape", [[2, 3, 4], [3, 1], [1, 1, 1]])
def test_expand(shape):
    x = rand(0, 3, 1)
    nodes = [node("Relu", ["x"], ["r"]), node("Expand", ["r", "s"], ["y"])]
    check_targets(model(nodes, {"x": x}, ["y"], {"s": np.array(shape, I64)}), {"x": x})


def test_tile():
    x = rand(0, 2, 3)
    nodes = [node("Relu", ["x"], ["r"]), node("Tile", ["r", "reps"], ["y"])]
    check_targets(model(nodes, {"x": x}, ["y"], {"reps": np.array([2, 3], I64)}), {"x": x})


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    x = rand(0, 1, 8, 3, 2)
    check_targets(model([node("DepthToSpace", ["x"], ["y"], blocksize=2, mode=mode)], {"x": x}, ["y"]), {"x": x})


def test_space_to_depth():
    x = rand(0, 2, 3, 4, 6)
    check_targets(model([node("SpaceToDepth", ["x"], ["y"], blocksize=2)], {"x": x}, ["y"]), {"x": x})


def test_channel_shuffle():
    """ShuffleNet's Reshape-Transpose-Reshape: a transpose of two channel groups."""
    x = rand(0, 1, 8, 3, 3)
    nodes = [node("Reshape", ["x", "s1"], ["a"]), node("Transpose", ["a"], ["b"], perm=[0, 2, 1, 3, 4]),
             node("Reshape", ["b", "s2"], ["y"])]
    inits = {"s1": np.array([1, 2, 4, 3, 3], I64), "s2": np.array([1, 8, 3, 3], I64)}
    check_targets(model(nodes, {"x": x}, ["y"], inits), {"x": x})


def test_slice_bounds_from_a_graph_input_need_constants():
    x, starts = rand(0, 4, 4), np.array([1], I64)
    nodes = [node("Slice", ["x", "starts", "ends"], ["y"])]
    m = model(nodes, {"x": x, "starts": starts}, ["y"], {"ends": np.array([3], I64)})
    with pytest.raises(UnsupportedError, match="Slice's starts must be known at compile time") as e:
        from_onnx(m)
    assert e.value.needs_constants == ["starts"]
    y = interpret(from_onnx(m, constants={"starts": starts}), {"x": x})[0]
    np.testing.assert_array_equal(y, x[1:3])


def test_sliced_model_exports():
    """A strided, backward slice exports back to ONNX as one Slice, and onnxruntime agrees."""
    x = rand(0, 2, 3, 6, 6)
    inits = {"starts": np.array([0, 0], I64), "ends": np.array([6, 6], I64), "axes": np.array([2, 3], I64),
             "steps": np.array([2, -2], I64)}
    g = from_onnx(model([node("Relu", ["x"], ["r"]), node("Slice", ["r", *inits], ["y"])], {"x": x}, ["y"], inits))
    exported = kiln.to_onnx(g)
    np.testing.assert_allclose(run_ort(exported, {"x": x})[0], interpret(g, {"x": x})[0])
    assert [n.op_type for n in exported.graph.node].count("Slice") == 1


CONV_TRANSPOSE = [  # x shape, weight shape, attrs
    ((1, 4, 5, 5), (4, 3, 3, 3), {"strides": [2, 2]}),
    ((2, 4, 4, 3), (4, 2, 3, 2), {"strides": [2, 1], "pads": [1, 0, 0, 1], "output_padding": [1, 0], "group": 2}),
    ((1, 3, 4, 4), (3, 2, 4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),  # a U-Net's 2x up-conv
    ((1, 2, 3, 3), (2, 3, 3, 3), {"dilations": [2, 2], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 2, 3, 3), (2, 3, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),  # past the full size
    ((1, 2, 7), (2, 3, 3), {"strides": [2], "pads": [1, 2]}),  # 1-D
    ((2, 4, 3, 4, 3), (4, 3, 3, 2, 2), {"strides": [2, 1, 2], "dilations": [1, 2, 1], "pads": [1, 0, 1, 0, 1, 1],
                                        "output_padding": [1, 0, 1], "group": 2}),  # 3-D
    ((1, 2, 2, 3, 3), (2, 2, 3, 3, 3), {"strides": [3, 2, 1], "dilations": [2, 1, 1], "output_shape": [9, 8, 5]}),
]


@pytest.mark.parametrize("xs, ws, attrs", CONV_TRANSPOSE)
@pytest.mark.parametrize("bias", [False, True])
def test_conv_transpose(xs, ws, attrs, bias):
    x = rand(0, *xs)
    inits = {"w": rand(1, *ws), **({"b": rand(2, ws[1] * attrs.get("group", 1))} if bias else {})}
    m = model([node("ConvTranspose", ["x", *inits], ["y"], **attrs)], {"x": x}, ["y"], inits)
    want = run_ort(m, {"x": x})[0]
    g = from_onnx(m)
    for got in (interpret(g, {"x": x})[0], kiln.compile(g, target="cpu").run({"x": x})[0]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


RESIZES = [  # attrs, scales or None, sizes or None
    ({"mode": "nearest"}, [1, 1, 2, 2], None),  # U-Net / YOLO upsampling (half_pixel, round_prefer_floor)
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, [1, 1, 2, 3], None),
    ({"mode": "nearest", "nearest_mode": "ceil", "coordinate_transformation_mode": "align_corners"}, None, [2, 3, 7, 4]),
    ({"mode": "linear"}, [1, 1, 2, 2], None),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, None, [2, 3, 9, 5]),
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, [1, 1, 0.5, 1.5], None),
    ({"mode": "cubic", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 1.5, 2], None),
    ({"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}, None, [2, 3, 3, 8]),
]


@pytest.mark.parametrize("attrs, scales, sizes", RESIZES)
def test_resize(attrs, scales, sizes):
    x = rand(0, 2, 3, 5, 4)
    inits = {"roi": np.zeros(0, np.float32), "scales": np.array(scales or [], np.float32)}
    if sizes is not None:
        inits["sizes"] = np.array(sizes, I64)
    nodes = [node("Relu", ["x"], ["r"]), node("Resize", ["r", *inits], ["y"], **attrs)]
    check_targets(model(nodes, {"x": x}, ["y"], inits, opset=13), {"x": x}, tol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample(mode):
    x = rand(0, 1, 2, 3, 4)
    m = model([node("Upsample", ["x", "s"], ["y"], mode=mode)], {"x": x}, ["y"],
              {"s": np.array([1, 1, 2, 3], np.float32)}, opset=9)
    check_targets(m, {"x": x}, tol=1e-5)


def test_resize_nearest_of_integers():
    x = np.arange(24, dtype=np.int32).reshape(1, 2, 3, 4)
    inits = {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 0.5], np.float32)}
    check_targets(model([node("Resize", ["x", *inits], ["y"])], {"x": x}, ["y"], inits), {"x": x})


# -- normalisation and run-time scalars --------------------------------------------------------
def test_group_normalization():
    x = rand(0, 2, 6, 3, 4)
    inits = {"s": rand(1, 6, lo=0.5, hi=1.5), "b": rand(2, 6)}
    m = model([node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=3, epsilon=1e-3)], {"x": x}, ["y"],
              inits, opset=21)
    check_targets(m, {"x": x}, tol=1e-5)


def test_pad_and_clip_with_run_time_scalars():
    """Pad's constant_value and Clip's bounds as graph inputs: a where over the padded
    positions, and max / min with the bounds, evaluated at run time."""
    x = rand(0, 1, 2, 3, 3)
    feeds = {"x": x, "v": np.array(7.5, np.float32), "lo": np.array(-0.2, np.float32), "hi": np.array(0.4, np.float32)}
    nodes = [node("Pad", ["x", "pads", "v"], ["p"]), node("Clip", ["p", "lo", "hi"], ["c"]),
             node("Clip", ["x", "", "hi"], ["d"])]
    m = model(nodes, feeds, ["p", "c", "d"], {"pads": np.array([0, 0, 1, -1, 0, 1, 0, 2], I64)})
    want = run_ort(m, feeds)
    g = from_onnx(m)
    assert sorted(v.name for v in g.inputs) == ["hi", "lo", "v", "x"]
    for got in (interpret(g, feeds), kiln.compile(g, target="cpu").run(feeds)):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_dropout_training_mode_input():
    x = rand(0, 2, 5)
    false, true = np.array(False), np.array(True)
    m = model([node("Dropout", ["x", "r", "t"], ["y"])], {"x": x}, ["y"], {"r": np.array(0.3, np.float32), "t": false})
    check_targets(m, {"x": x})
    m = model([node("Dropout", ["x", "r", "t"], ["y"])], {"x": x}, ["y"], {"r": np.array(0.3, np.float32), "t": true})
    with pytest.raises(UnsupportedError, match="training_mode=True"):
        from_onnx(m)
