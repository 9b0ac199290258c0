"""Helpers for tests that compare kiln with onnxruntime on ONNX models built with onnx.helper.

`single_node_model` builds a one-node model, `run_onnxruntime` / `run_onnx_reference` run it (the
latter with onnx's own ReferenceEvaluator, a second oracle written from the spec), and
`run_kiln_op` runs one kiln op through the registry: attributes, shape inference, reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from kiln.ir import TensorType, dtype_of, get_op, infer_types, normalize_attrs
from onnx import helper

# onnx 1.23 writes IR version 14 by default, which the installed onnxruntime refuses.
IR_VERSION = 10


@dataclass(frozen=True)
class Const:
    """A node input given as an initializer (ONNX ops that take shapes or pads as inputs)."""

    value: np.ndarray


# One node input: an array fed at run time, a Const initializer, or None for an omitted optional.
OnnxInput = np.ndarray | Const | None


def single_node_model(
    op_type: str,
    inputs: Sequence[OnnxInput],
    attrs: Mapping[str, Any] | None = None,
    opset: int = 17,
    n_outputs: int = 1,
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A model with one `op_type` node, and the feeds for its runtime inputs."""
    names, graph_inputs, inits, feeds = [], [], [], {}
    for i, x in enumerate(inputs):
        if x is None:
            names.append("")  # ONNX's spelling of an omitted optional input
            continue
        name = f"in{i}"
        names.append(name)
        if isinstance(x, Const):
            inits.append(onnx.numpy_helper.from_array(np.asarray(x.value), name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(x.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, list(x.shape)))
            feeds[name] = np.asarray(x)  # 0-d results of numpy arithmetic are scalars
    outs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, **dict(attrs or {}))
    # output types left open, so the runtime's own inference decides them
    graph_outputs = [helper.make_empty_tensor_value_info(o) for o in outs]
    graph = helper.make_graph([node], f"single_{op_type}", graph_inputs, graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    return model, feeds


def run_onnxruntime(op_type: str, inputs: Sequence[OnnxInput], attrs=None, opset: int = 17,
                    n_outputs: int = 1) -> list[np.ndarray]:
    model, feeds = single_node_model(op_type, inputs, attrs, opset, n_outputs)
    options = ort.SessionOptions()
    # errors only: onnx's static shape inference for ceil-mode pools disagrees with the
    # kernel's (correct) output size, and onnxruntime warns about it on every run
    options.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def run_onnx_reference(op_type: str, inputs: Sequence[OnnxInput], attrs=None, opset: int = 17,
                       n_outputs: int = 1) -> list[np.ndarray]:
    """onnx.reference.ReferenceEvaluator: the ONNX spec's own Python implementation."""
    from onnx.reference import ReferenceEvaluator

    model, feeds = single_node_model(op_type, inputs, attrs, opset, n_outputs)
    return list(ReferenceEvaluator(model).run(None, feeds))


def run_kiln_op(op: str, arrays: Sequence[np.ndarray], attrs: Mapping[str, Any] | None = None,
                ) -> tuple[list[np.ndarray], list[TensorType]]:
    """Run kiln's reference for `op` and check it against kiln's own shape inference."""
    a = normalize_attrs(op, attrs)
    types = infer_types(op, [TensorType.of(x) for x in arrays], a)
    outs = get_op(op).reference(list(arrays), a)
    assert len(outs) == len(types), f"{op}: reference gave {len(outs)} outputs, inference {len(types)}"
    for i, (y, t) in enumerate(zip(outs, types, strict=True)):
        assert isinstance(y, np.ndarray), f"{op} output {i}: reference gave {type(y).__name__}"
        assert y.shape == t.shape, f"{op} output {i}: reference shape {y.shape}, inferred {t.shape}"
        assert dtype_of(y) == t.dtype, f"{op} output {i}: reference dtype {y.dtype}, inferred {t.dtype}"
    return outs, types
