"""Export a kiln graph to an ONNX model made of standard ONNX ops (domain "").

    model = to_onnx(graph, opset=17)        # an onnx.ModelProto, checked by onnx.checker
    save_onnx(graph, "model.onnx")

Each kiln op maps to one ONNX node through `CONVERTERS`. kiln attributes that ONNX takes as
inputs (clip bounds, reshape shape, pad widths, dropout ratio) become initializers named after
the node's output. Params of every role become initializers; graph inputs and outputs keep
their names, dtypes and shapes. Values must be in plain layout: blocked layouts chosen by passes
have no ONNX meaning, so such graphs are refused rather than silently reinterpreted.

Exported opsets: 13 (Softmax's single-axis semantics) up to what the installed onnx knows;
a reshape whose target shape holds a literal 0 needs `allowzero` (opset 14).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..ir import Graph, Node, verify
from ..ir.errors import UnsupportedError
from ..ir.graph import fresh_name
from ..ir.ops.conv import window_out
from ..ir.ops.elementwise import ACTIVATIONS
from ..ir.types import FLOAT_DTYPES
from ..ir.verify import node_label

MIN_OPSET = 13
IR_VERSION = 10  # onnx 1.23 writes IR 14 by default; onnxruntime 1.32 refuses it


class _Exporter:
    """Collects the ONNX nodes and initializers of one graph, handing out fresh names."""

    def __init__(self, g: Graph, opset: int):
        self.g, self.opset = g, opset
        self.taken = set(g.values) | {n.name for n in g.nodes}
        self.nodes: list[onnx.NodeProto] = []
        self.inits = [numpy_helper.from_array(np.asarray(p.data), p.name) for p in g.params]

    def fresh(self, base: str) -> str:
        """`base`, or `base_1`, `base_2`, ... if it is taken; the name is taken from then on."""
        return fresh_name(base, self.taken)

    def const(self, node: Node, what: str, data: np.ndarray) -> str:
        """A new initializer named `<node output>.<what>`; returns its name."""
        name = self.fresh(f"{node.outputs[0].name}.{what}")
        self.inits.append(numpy_helper.from_array(np.asarray(data), name))
        return name

    def scalar(self, node: Node, what: str, value: float) -> str:
        """A 0-d initializer of the node's input dtype (Clip bounds, Pad's constant_value)."""
        return self.const(node, what, np.array(value, self.g.type_of(node.inputs[0]).np_dtype))

    def fail(self, node: Node, why: str) -> UnsupportedError:
        """The error to raise for `node`, naming the graph and the node."""
        return UnsupportedError(f"graph {self.g.name!r}: node {node_label(node)}: {why}")


# A converter returns (ONNX op type, input names, ONNX attributes) for one kiln node.
Converter = Callable[[_Exporter, Node], tuple[str, list[str], dict[str, Any]]]


def _onnx_attr(value: Any) -> Any:
    """kiln attribute value -> what onnx.helper expects (bools as ints, tuples as lists)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, tuple):
        return [_onnx_attr(v) for v in value]
    return value


def _op(op_type: str, **renames: str) -> Converter:
    """A converter to `op_type` with the same inputs; `onnx_name="kiln_name"` copies attributes."""

    def convert(ex: _Exporter, node: Node) -> tuple[str, list[str], dict[str, Any]]:
        return op_type, list(node.inputs), {o: _onnx_attr(node.attrs[k]) for o, k in renames.items()}

    return convert


def _conv(ex: _Exporter, node: Node):
    """Conv: the same [top, left, bottom, right] pads order; kernel_shape from the weight. A
    fused epilogue (residual add, activation) becomes Add and Relu/Clip/LeakyRelu nodes after it."""
    conv = _op("Conv", strides="stride", dilations="dilation", pads="pads", group="groups")
    op, ins, attrs = conv(ex, node)
    a = node.attrs
    steps = [(op, ins[:3] if a["residual"] else ins, {**attrs, "kernel_shape": list(ex.g.type_of(node.inputs[1]).shape[2:])})]
    if a["residual"]:
        steps.append(("Add", [None, node.inputs[3]], {}))
    return _emit_steps(ex, node, steps + _act_steps(ex, node, len(steps) - 1), None)


def _conv_transpose(ex: _Exporter, node: Node):
    """conv2d_grad_input is a transposed convolution (ConvTranspose imports as it): the same
    geometry, and the output_padding that gives input_hw."""
    a = node.attrs
    _, _, h, w = ex.g.type_of(node.inputs[0]).shape
    kh, kw = ex.g.type_of(node.inputs[1]).shape[2:]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["stride"], a["dilation"], a["pads"]
    natural = (sh * (h - 1) + dh * (kh - 1) + 1 - pt - pb, sw * (w - 1) + dw * (kw - 1) + 1 - pl - pr)
    out_pad = [int(o - n) for o, n in zip(a["input_hw"], natural, strict=True)]
    attrs = {"strides": list(a["stride"]), "dilations": list(a["dilation"]), "pads": list(a["pads"][:2]) +
             list(a["pads"][2:]), "group": a["groups"], "kernel_shape": [kh, kw]}
    if any(out_pad):
        attrs["output_padding"] = out_pad
    return "ConvTranspose", list(node.inputs), attrs


def _act_steps(ex: _Exporter, node: Node, x: int) -> list:
    """A fused activation (conv2d's or gemm's act attributes) as ONNX steps after step `x`."""
    a = node.attrs
    if a["act"] == "relu":
        return [("Relu", [None], {})]
    if a["act"] == "clip":
        return [("Clip", [None, ex.scalar(node, "min", a["act_min"]), ex.scalar(node, "max", a["act_max"])], {})]
    if a["act"] == "leaky_relu":
        return [("LeakyRelu", [None], {"alpha": a["act_alpha"]})]
    if a["act"] == "sigmoid":
        return [("Sigmoid", [None], {})]
    if a["act"] == "silu":  # reads the last step before it (the conv, or its residual Add) twice
        return _table_act_steps(ex, node, "silu", {}, x)
    return []


def _gemm(ex: _Exporter, node: Node):
    """Gemm, then its fused activation, if any, as a node of its own."""
    op, ins, attrs = _op("Gemm", alpha="alpha", beta="beta", transA="trans_a", transB="trans_b")(ex, node)
    return _emit_steps(ex, node, [(op, ins, attrs), *_act_steps(ex, node, 0)], None)


def _emit_steps(ex: _Exporter, node: Node, steps, first):
    """Every step but the last as its own ONNX node (a None input is the previous step's
    output, or `first` for the first step; an int k is step k's output, -1 `first`); the last
    step is returned for the caller to emit under the node's output name."""
    outs: list[str] = []

    def resolve(i):
        if i is None:
            return outs[-1] if outs else first
        if isinstance(i, int):
            return outs[i] if i >= 0 else first
        return i

    for k, (op_type, step_ins, step_attrs) in enumerate(steps[:-1]):
        out = f"{node.outputs[0].name}.{op_type.lower()}{k}"
        ex.nodes.append(helper.make_node(op_type, [resolve(i) for i in step_ins], [out], **step_attrs))
        outs.append(out)
    op_type, step_ins, step_attrs = steps[-1]
    return op_type, [resolve(i) for i in step_ins], step_attrs


def _table_act_steps(ex: _Exporter, node: Node, act: str, a, x) -> list:
    """A table activation (ir/ops/elementwise.py, ACTIVATIONS) as ONNX steps reading `x` (a
    name, or a step index as in _emit_steps); ops newer than the export opset are written out
    in older ones (Mish before 18, Gelu before 20, HardSwish before 14)."""
    simple = {"exp": "Exp", "log": "Log", "sqrt": "Sqrt", "abs": "Abs", "neg": "Neg", "reciprocal": "Reciprocal",
              "erf": "Erf", "softplus": "Softplus", "softsign": "Softsign"}
    c = partial(ex.scalar, node)
    if act in simple:
        return [(simple[act], [x], {})]
    if act == "elu":
        return [("Elu", [x], {"alpha": a["alpha"]})]
    if act == "selu":
        return [("Selu", [x], {"alpha": a["alpha"], "gamma": a["gamma"]})]
    if act == "hard_sigmoid":
        return [("HardSigmoid", [x], {"alpha": a["alpha"], "beta": a["beta"]})]
    if act == "hard_swish":
        if ex.opset >= 14:
            return [("HardSwish", [x], {})]
        return [("HardSigmoid", [x], {"alpha": 1 / 6, "beta": 0.5}), ("Mul", [x, None], {})]
    if act == "silu":
        return [("Sigmoid", [x], {}), ("Mul", [x, None], {})]
    if act == "mish":
        if ex.opset >= 18:
            return [("Mish", [x], {})]
        return [("Softplus", [x], {}), ("Tanh", [None], {}), ("Mul", [x, None], {})]
    if act in ("gelu", "gelu_tanh") and ex.opset >= 20:
        return [("Gelu", [x], {"approximate": "none" if act == "gelu" else "tanh"})]
    if act == "gelu":  # x (1 + erf(x / sqrt 2)) / 2
        return [("Div", [x, c("sqrt2", math.sqrt(2))], {}), ("Erf", [None], {}), ("Add", [None, c("one", 1.0)], {}),
                ("Mul", [x, None], {}), ("Mul", [None, c("half", 0.5)], {})]
    if act == "gelu_tanh":  # x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2
        return [("Mul", [x, x], {}), ("Mul", [x, None], {}), ("Mul", [None, c("k3", 0.044715)], {}),
                ("Add", [x, None], {}), ("Mul", [None, c("k", math.sqrt(2 / math.pi))], {}), ("Tanh", [None], {}),
                ("Add", [None, c("one", 1.0)], {}), ("Mul", [x, None], {}), ("Mul", [None, c("half", 0.5)], {})]
    raise ex.fail(node, f"no ONNX form for activation {act!r}")


def _table_act(ex: _Exporter, node: Node):
    return _emit_steps(ex, node, _table_act_steps(ex, node, node.op, node.attrs, node.inputs[0]), node.inputs[0])


def _fused_elementwise(ex: _Exporter, node: Node):
    """A fused chain becomes its steps again, one ONNX node each."""
    from ..ir.ops.elementwise import parse_steps

    unary = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "leaky_relu": "LeakyRelu"}
    binary = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div"}
    steps = []
    for op, a in parse_steps(node.attrs["steps"]):
        if op in ACTIVATIONS:
            steps += _table_act_steps(ex, node, op, a, len(steps) - 1)
        elif op == "clip":
            steps.append(("Clip", [None, ex.scalar(node, "min", a["min"]), ex.scalar(node, "max", a["max"])], {}))
        elif op in unary:
            steps.append((unary[op], [None], {"alpha": a["alpha"]} if op == "leaky_relu" else {}))
        elif op.startswith("r"):
            steps.append((binary[op[1:]], [node.inputs[a["operand"]], None], {}))
        else:
            steps.append((binary[op], [None, node.inputs[a["operand"]]], {}))
    return _emit_steps(ex, node, steps, node.inputs[0])


def _clip(ex: _Exporter, node: Node):
    """Clip (opset 11+) takes its bounds as inputs; a missing bound (-inf / +inf) is left out."""
    lo, hi = node.attrs["min"], node.attrs["max"]
    ins = [node.inputs[0], "" if lo == -math.inf else ex.scalar(node, "min", lo)]
    if hi != math.inf:
        ins.append(ex.scalar(node, "max", hi))
    while ins[-1] == "":
        ins.pop()
    return "Clip", ins, {}


def _dropout(ex: _Exporter, node: Node):
    """Dropout in inference mode (ratio as an input); Identity for non-float tensors, which
    ONNX Dropout does not take."""
    if ex.g.type_of(node.inputs[0]).dtype not in FLOAT_DTYPES:
        return "Identity", list(node.inputs), {}
    ratio = ex.const(node, "ratio", np.array(node.attrs["ratio"], np.float32))
    return "Dropout", [node.inputs[0], ratio], {"seed": node.attrs["seed"]} if node.attrs["seed"] else {}


def _reshape(ex: _Exporter, node: Node):
    """Reshape with an int64 shape input. kiln's 0 is a real zero, ONNX's copies the input
    dimension unless allowzero=1."""
    shape = node.attrs["shape"]
    attrs = {}
    if 0 in shape:
        if ex.opset < 14:
            raise ex.fail(node, f"reshape to {list(shape)} holds a literal 0, which needs "
                                f"Reshape's allowzero (opset 14+); asked for opset {ex.opset}")
        attrs["allowzero"] = 1
    return "Reshape", [node.inputs[0], ex.const(node, "shape", np.array(shape, np.int64))], attrs


def _transpose(ex: _Exporter, node: Node):
    """Transpose with an explicit perm (kiln's empty perm reverses the axes, as ONNX's default)."""
    rank = ex.g.type_of(node.inputs[0]).rank
    return "Transpose", list(node.inputs), {"perm": list(node.attrs["perm"] or reversed(range(rank)))}


def _pad(ex: _Exporter, node: Node):
    """Pad (opset 11+): pads (begins, then ends; negative crops) and constant_value as inputs."""
    ins = [node.inputs[0], ex.const(node, "pads", np.array(node.attrs["pads"], np.int64))]
    if node.attrs["mode"] == "constant":
        ins.append(ex.scalar(node, "value", node.attrs["value"]))
    return "Pad", ins, {"mode": node.attrs["mode"]}


def _slice(ex: _Exporter, node: Node):
    """Slice with starts, ends, axes and steps inputs; a backward run that reaches element 0
    ends at -(d + 1), which ONNX clamps to "before the first"."""
    shape = ex.g.type_of(node.inputs[0]).shape
    a = node.attrs
    ends = []
    for d, b, st, n in zip(shape, a["starts"], a["steps"], a["sizes"], strict=True):
        e = b + n * st
        ends.append(e if e >= 0 else -(d + 1))
    arrays = {"starts": a["starts"], "ends": ends, "axes": range(len(shape)), "steps": a["steps"]}
    ins = [ex.const(node, k, np.array(list(v), np.int64)) for k, v in arrays.items()]
    return "Slice", [node.inputs[0], *ins], {}


def _expand(ex: _Exporter, node: Node):
    return "Expand", [node.inputs[0], ex.const(node, "shape", np.array(node.attrs["shape"], np.int64))], {}


def _resize(ex: _Exporter, node: Node):
    """Resize (opset 13+) with the scales kiln maps coordinates by, where they give its output
    sizes; otherwise the sizes (whose ratios are then the scales)."""
    a = node.attrs
    shape = ex.g.type_of(node.inputs[0]).shape
    if a["antialias"] and ex.opset < 18 or a["coord"] == "half_pixel_symmetric" and ex.opset < 19:
        raise ex.fail(node, f"antialias needs opset 18 and half_pixel_symmetric opset 19; asked for {ex.opset}")
    scales = np.array(a["scales"], np.float32)
    roi = ex.const(node, "roi", np.array(a["roi"], np.float32))
    if all(int(np.floor(float(s) * d)) == n for s, d, n in zip(scales, shape, a["sizes"], strict=True)):
        ins = [node.inputs[0], roi, ex.const(node, "scales", scales)]
    else:
        ins = [node.inputs[0], roi, "", ex.const(node, "sizes", np.array(a["sizes"], np.int64))]
    attrs = {"mode": a["mode"], "coordinate_transformation_mode": a["coord"], "nearest_mode": a["nearest_mode"],
             "cubic_coeff_a": a["cubic_a"], "exclude_outside": int(a["exclude_outside"]),
             "extrapolation_value": a["extrapolation"]}
    if a["antialias"]:
        attrs["antialias"] = 1
    return "Resize", ins, attrs


def _cast(ex: _Exporter, node: Node):
    return "Cast", list(node.inputs), {"to": helper.np_dtype_to_tensor_dtype(node.outputs[0].type.np_dtype)}


def _argmax(ex: _Exporter, node: Node):
    """MaxPool's second output (Indices); its first (the values) goes unused."""
    op, ins, attrs = _pool("MaxPool", dilations="dilation", storage_order="storage_order")(ex, node)
    out = node.outputs[0].name
    ex.nodes.append(helper.make_node(op, ins, [f"{out}.values", f"{out}.indices"], **attrs))
    return "Identity", [f"{out}.indices"], {}


def _pool(op_type: str, **extra: str) -> Converter:
    """MaxPool / AveragePool. ceil_mode is kept only where it changes the output size: where it
    does not, the windows are exactly floor mode's, and onnx's shape inference (which lacks the
    rule that drops a last window starting in the end padding) would otherwise disagree with
    the kernels (kiln, onnxruntime, PyTorch) and break onnxruntime's buffer planning."""
    base = _op(op_type, kernel_shape="kernel", strides="stride", pads="pads", **extra)

    def convert(ex: _Exporter, node: Node):
        op, ins, attrs = base(ex, node)
        a, (h, w) = node.attrs, ex.g.type_of(node.inputs[0]).shape[2:]
        (kh, kw), (sh, sw), (pt, pl, pb, pr) = a["kernel"], a["stride"], a["pads"]
        dh, dw = a.get("dilation", (1, 1))
        floor = (window_out(h, kh, sh, dh, pt, pb), window_out(w, kw, sw, dw, pl, pr))
        return op, ins, {**attrs, "ceil_mode": int(node.outputs[0].type.shape[2:] != floor)}

    return convert


def _spmm(ex: _Exporter, node: Node):
    """No standard ONNX op multiplies a CSR matrix: refuse, naming the node."""
    raise ex.fail(node, "spmm (CSR sparse x dense product) cannot be exported to ONNX: standard "
                        "ONNX has no sparse matrix product op")


def _reduce_sum(ex: _Exporter, node: Node):
    """ReduceSum (opset 13+: axes as an int64 input); ReduceMax / ReduceMin take the axes as an
    input from opset 18, an attribute before."""
    op = {"reduce_sum": "ReduceSum", "reduce_max": "ReduceMax", "reduce_min": "ReduceMin"}[node.op]
    keep = {"keepdims": int(node.attrs["keepdims"])}
    if op != "ReduceSum" and ex.opset < 18:
        return op, [node.inputs[0]], {**keep, "axes": list(node.attrs["axes"])}
    axes = ex.const(node, "axes", np.array(node.attrs["axes"], np.int64))
    return op, [node.inputs[0], axes], keep


def _arg_extreme(ex: _Exporter, node: Node):
    """ArgMax / ArgMin; select_last_index exists from opset 12."""
    attrs = {"axis": node.attrs["axis"], "keepdims": int(node.attrs["keepdims"])}
    if node.attrs["select_last_index"]:
        if ex.opset < 12:
            raise ex.fail(node, f"select_last_index needs opset 12 or later, exporting at {ex.opset}")
        attrs["select_last_index"] = 1
    return {"arg_max": "ArgMax", "arg_min": "ArgMin"}[node.op], [node.inputs[0]], attrs


def _training_only(ex: _Exporter, node: Node):
    """Backward, loss and optimizer ops live in training step graphs, which are not exported."""
    raise ex.fail(node, f"{node.op} belongs to a training step graph; export the trained model's "
                        f"inference form (Trainer.inference_graph()) instead")


TRAINING_ONLY = ("act_grad", "dropout_train", "conv2d_grad_weight", "maxpool2d_grad",
                 "avgpool2d_grad", "batch_norm_train", "batch_norm_grad", "softmax_grad", "softmax_cross_entropy",
                 "softmax_cross_entropy_grad", "sgd_update", "adam_update", "lrn_grad")
NOT_EXPORTABLE = frozenset({"spmm", *TRAINING_ONLY})

CONVERTERS: dict[str, Converter] = {
    "conv2d": _conv,
    "conv2d_grad_input": _conv_transpose,
    "fused_elementwise": _fused_elementwise,
    "batch_norm": _op("BatchNormalization", epsilon="epsilon", momentum="momentum"),
    "relu": _op("Relu"),
    "leaky_relu": _op("LeakyRelu", alpha="alpha"),
    "prelu": _op("PRelu"),  # slope broadcasts to x: ONNX's unidirectional broadcasting
    "sigmoid": _op("Sigmoid"),
    "tanh": _op("Tanh"),
    "clip": _clip,
    "dropout": _dropout,
    "identity": _op("Identity"),
    "reorder": _op("Identity"),  # only plain layouts export, so a reorder left is a copy
    "add": _op("Add"),
    "sub": _op("Sub"),
    "mul": _op("Mul"),
    "div": _op("Div"),
    "pow": _op("Pow"),
    "max": _op("Max"),
    "min": _op("Min"),
    "equal": _op("Equal"),
    "less": _op("Less"),
    "greater": _op("Greater"),
    "less_equal": _op("LessOrEqual"),
    "greater_equal": _op("GreaterOrEqual"),
    "where": _op("Where"),
    "cast": _cast,
    "maxpool2d": _pool("MaxPool", dilations="dilation"),
    "maxpool2d_argmax": _argmax,
    "avgpool2d": _pool("AveragePool", count_include_pad="count_include_pad"),
    "global_avgpool": _op("GlobalAveragePool"),
    "global_maxpool": _op("GlobalMaxPool"),
    "gemm": _gemm,
    "matmul": _op("MatMul"),
    "flatten": _op("Flatten", axis="axis"),
    "reshape": _reshape,
    "transpose": _transpose,
    "concat": _op("Concat", axis="axis"),
    "softmax": _op("Softmax", axis="axis"),  # opset 13+: along one axis, not a flattened suffix
    "log_softmax": _op("LogSoftmax", axis="axis"),
    "lrn": _op("LRN", size="size", alpha="alpha", beta="beta", bias="bias"),
    "pad": _pad,
    "slice": _slice,
    "resize": _resize,
    "expand": _expand,
    "reduce_sum": _reduce_sum,
    "reduce_max": _reduce_sum,
    "arg_max": _arg_extreme,
    "arg_min": _arg_extreme,
    "reduce_min": _reduce_sum,
    "spmm": _spmm,
    **dict.fromkeys(ACTIVATIONS, _table_act),
    **dict.fromkeys(TRAINING_ONLY, _training_only),
}


def _check_exportable(g: Graph, opset: int) -> None:
    """Refuse opsets outside the supported range and values in a non-plain layout."""
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise UnsupportedError(f"cannot export graph {g.name!r} to ONNX opset {opset}: kiln exports "
                               f"opsets {MIN_OPSET} to {newest} (the installed onnx's newest)")
    for name, v in g.values.items():
        if v.type.layout:
            raise UnsupportedError(
                f"graph {g.name!r}: value %{name} has layout {v.type.layout!r} ({v.type}); ONNX "
                f"export needs plain layouts: export the graph before layout selection")


def _node_names(g: Graph, ex: _Exporter) -> list[str]:
    """Each node's kiln name where it is non-empty and unique, else a fresh `<name or op>_<index>`."""
    counts: dict[str, int] = {}
    for n in g.nodes:
        counts[n.name] = counts.get(n.name, 0) + 1
    return [n.name if n.name and counts[n.name] == 1 else ex.fresh(f"{n.name or n.op}_{i}")
            for i, n in enumerate(g.nodes)]


def _value_info(g: Graph, name: str) -> onnx.ValueInfoProto:
    """ONNX type and shape of graph input or output `name`."""
    t = g.type_of(name)
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(t.np_dtype), list(t.shape))


def to_onnx(graph: Graph, opset: int = 17) -> onnx.ModelProto:
    """The ONNX model (opset `opset`, IR version 10) computing what `graph` computes.

    Raises UnsupportedError for ops without a standard ONNX equivalent (spmm), blocked layouts
    and opsets outside [13, newest]; the result passes onnx.checker.check_model.
    """
    _check_exportable(graph, opset)
    verify(graph)
    ex = _Exporter(graph, opset)
    for node, name in zip(graph.nodes, _node_names(graph, ex), strict=True):
        convert = CONVERTERS.get(node.op)
        if convert is None:
            raise ex.fail(node, f"op {node.op!r} has no ONNX export; exportable ops: "
                                f"{', '.join(sorted(set(CONVERTERS) - NOT_EXPORTABLE))}")
        op_type, ins, attrs = convert(ex, node)
        ex.nodes.append(helper.make_node(op_type, ins, list(node.output_names), name=name, **attrs))
    onnx_graph = helper.make_graph(
        ex.nodes, graph.name, [_value_info(graph, v.name) for v in graph.inputs],
        [_value_info(graph, o) for o in graph.outputs], ex.inits)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="kiln", producer_version=_kiln_version())
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def save_onnx(graph: Graph, path: str | Path, opset: int = 17) -> onnx.ModelProto:
    """Export `graph` with `to_onnx` and write it to `path`; returns the model."""
    model = to_onnx(graph, opset)
    onnx.save_model(model, str(path))
    return model


def _kiln_version() -> str:
    """The installed kiln's version for producer_version ("" when kiln runs uninstalled)."""
    try:
        return metadata.version("kiln")
    except metadata.PackageNotFoundError:
        return ""
