"""ONNX's own conformance cases, run through kiln: the node cases of
`onnx.backend.test.case.node.collect_testcases()` and the model tests shipped in onnx's
`pytorch-converted` and `pytorch-operator` data folders.

A case counts toward an op kiln claims (a converter, or Constant/ConstantOfShape, which fold)
when every op in its graph is claimed. Inputs that kiln needs at compile time (a Reshape's shape,
a Clip's bounds) are bound as constants from the case's data, as a static-shape compiler must.
The cases kiln cannot pass are listed in KNOWN_GAPS with the reason, or have a data type kiln
has no dtype for (`gap`); they run as strict xfails,
so one that starts passing is noticed.

    python tests/onnx_conformance.py     # prints the per-op table for the README
"""

from __future__ import annotations

import functools
import glob
import os
import warnings
from collections import Counter

import numpy as np
import onnx
from kiln.frontend.onnx import supported_ops
from kiln.frontend.onnx.functions import expandable_ops
from kiln.ir.types import DTYPES, dtype_of
from kiln.onnx_backend import KilnBackendRep
from onnx import helper, numpy_helper

# ops kiln converts, and those it imports through their ONNX function bodies
CONVERTED = frozenset(supported_ops()) | {"Constant", "ConstantOfShape"}
CLAIMED = CONVERTED | expandable_ops(set(supported_ops()))
_TRAINING = ("a training-mode dropout draws a random mask: the expected output is numpy's own random stream "
             "(np.random.seed), which no other runtime reproduces; kiln's dropout_train masks are seeded "
             "counter-based hashes")
KNOWN_GAPS = {
    "test_training_dropout": _TRAINING,
    "test_training_dropout_default": _TRAINING,
    "test_training_dropout_default_mask": _TRAINING,
    "test_training_dropout_mask": _TRAINING,
    "test_attention_4d_causal_fp16": "float16 through Attention's function body rounds to float16 after every op; "
                                     "the expected output rounds once, and one float16 ulp (4.9e-4) is past the "
                                     "case's atol of 1e-7",
    "test_identity_sequence": "sequence values are not tensors; kiln's IR holds tensors only",
    "test_identity_opt": "optional values are not tensors; kiln's IR holds tensors only",
}
# ops imported through their ONNX function bodies, where the body needs what kiln lacks
_GATHER = "run-time indices (labels, position ids), which kiln's Gather/GatherElements do not take"
EXPANSION_GAPS = {
    "AffineGrid": "its function body counts elements with Size, which kiln does not import",
    "Bernoulli": "its function body draws from RandomUniformLike: a random stream no other runtime reproduces",
    "BlackmanWindow": "its function body builds a Range from the run-time window size (the case's input)",
    "HammingWindow": "its function body builds a Range from the run-time window size (the case's input)",
    "HannWindow": "its function body builds a Range from the run-time window size (the case's input)",
    "CenterCropPad": "its function body pads by widths computed from the run-time target shape (the case's input)",
    "DynamicQuantizeLinear": "its function body rounds with Round, which kiln does not import (uint8 quantisation)",
    "LinearAttention": "its function body loops with Scan: control flow, which kiln's IR does not hold",
    "NegativeLogLikelihoodLoss": f"its function body gathers with {_GATHER}",
    "SoftmaxCrossEntropyLoss": f"its function body gathers with {_GATHER}",
    "RotaryEmbedding": f"its function body gathers with {_GATHER}",
}
DATA_KINDS = ("pytorch-converted", "pytorch-operator")


def ops_of(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node}


def converted(model: onnx.ModelProto) -> bool:
    """Every op of the case has a converter of its own (no function body stands in)."""
    return ops_of(model) <= CONVERTED


def label(model: onnx.ModelProto) -> str:
    """The op a case is about: its first op other than Constant."""
    ops = [n.op_type for n in model.graph.node if n.op_type != "Constant"]
    return ops[0] if ops else "Constant"


@functools.cache
def node_cases() -> list:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    return [c for c in cases if ops_of(c.model) <= CLAIMED]


@functools.cache
def model_cases() -> list:
    """(name, kind, model, [(inputs, outputs)], rtol, atol) for the data-folder model tests."""
    from onnx.backend.test.loader import load_model_tests

    out = []
    for kind in DATA_KINDS:
        for t in load_model_tests(kind=kind):
            model = onnx.load(os.path.join(t.model_dir, "model.onnx"))
            if not ops_of(model) <= CLAIMED:
                continue
            sets = []
            for d in sorted(glob.glob(os.path.join(t.model_dir, "test_data_set_*"))):
                load = [numpy_helper.to_array(onnx.load_tensor(f)) for f in sorted(glob.glob(d + "/*.pb"))
                        if os.path.basename(f).startswith("input_")]
                want = [numpy_helper.to_array(onnx.load_tensor(f)) for f in sorted(glob.glob(d + "/*.pb"))
                        if os.path.basename(f).startswith("output_")]
                sets.append((load, want))
            out.append((t.name, kind, model, sets, t.rtol, t.atol))
    return out


def _array(v):
    return numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else v


def foreign_types(model: onnx.ModelProto) -> list[str]:
    """The graph's input and output element types that kiln has no dtype for (bfloat16, the
    float8, 4-bit and 2-bit types, strings)."""
    names = []
    for vi in (*model.graph.input, *model.graph.output):
        t = vi.type.tensor_type.elem_type
        try:
            dtype_of(helper.tensor_dtype_to_np_dtype(t))
        except Exception:  # noqa: BLE001
            names.append(onnx.TensorProto.DataType.Name(t))
    return sorted(set(names))


def _no_position_ids(model: onnx.ModelProto) -> bool:
    """RotaryEmbedding without its position_ids input reads the caches in order: no gather."""
    return all(len(n.input) < 4 or not n.input[3] for n in model.graph.node if n.op_type == "RotaryEmbedding")


def _has_float16(model: onnx.ModelProto) -> bool:
    f16 = onnx.TensorProto.FLOAT16
    return any(vi.type.tensor_type.elem_type == f16 for vi in (*model.graph.input, *model.graph.output))


def gap(name: str, model: onnx.ModelProto, target: str = "reference") -> str | None:
    """Why kiln cannot pass a case on `target`, or None: KNOWN_GAPS, a data type kiln does not
    have, or float16 on a kernel target (refused at compile time there)."""
    if name in KNOWN_GAPS:
        return KNOWN_GAPS[name]
    lacking = sorted(ops_of(model) & set(EXPANSION_GAPS) - ({"RotaryEmbedding"} if _no_position_ids(model) else set()))
    if lacking:
        return f"{lacking[0]}: {EXPANSION_GAPS[lacking[0]]}"
    foreign = foreign_types(model)
    if foreign:
        return f"data type(s) {', '.join(foreign)}: kiln's tensors are {', '.join(DTYPES)}"
    if target != "reference" and _has_float16(model):
        return f"float16 is refused at compile time on the {target} target (it runs on the reference target)"
    return None


def run_case(model: onnx.ModelProto, data_sets, rtol: float, atol: float, target: str = "reference") -> None:
    """Import, compile and run `model` on each data set; assert every output within tolerance."""
    for inputs, expected in data_sets:
        rep = KilnBackendRep(model, target)
        got = rep.run([_array(i) for i in inputs])
        expected = [_array(e) for e in expected]
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            e = np.asarray(e)
            assert g.shape == e.shape, f"shape {g.shape} != expected {e.shape}"
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


def table() -> str:
    counts: Counter[str] = Counter()
    passed: Counter[str] = Counter()
    runs = [(c.name, label(c.model), c.model, c.data_sets, c.rtol, c.atol) for c in node_cases()]
    runs += [(name, label(m), m, sets, r, a) for name, _, m, sets, r, a in model_cases()]
    for name, op, model, sets, rtol, atol in runs:
        counts[op] += 1
        try:
            run_case(model, sets, rtol, atol)
            passed[op] += 1
        except Exception:  # noqa: BLE001, S110 - counted; the test module reports details
            pass
    rows = [f"| {op}{'' if op in CONVERTED else ' (function body)'} | {passed[op]}/{counts[op]} |"
            for op in sorted(counts)]
    total = f"| **all** | **{sum(passed.values())}/{sum(counts.values())}** |"
    return "\n".join(["| op | cases passing |", "|---|---|", *rows, total])


if __name__ == "__main__":
    print(table())
