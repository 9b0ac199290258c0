"""ONNX function bodies standing in for the ops kiln has no converter for.

Many ONNX ops are defined in the standard by a function body: a small graph of simpler ops
(Celu is Div, Elu and Mul; Shrink is comparisons and Where; ReduceLogSumExp is ReduceMax, Exp,
ReduceSum and Log). Where kiln has no converter for such an op, the importer asks the installed
onnx package for the body at the model's opset and imports the body's nodes instead, each
through its own converter (a body may use another function op: Shrink's CastLike expands in
turn). Context-dependent bodies (Celu, CastLike, SoftmaxCrossEntropyLoss, ...) are built for
the node's attributes and input types.

    body = function_body(node, opset, input_types)     # None: onnx defines no body for it
    nodes, body_opset = inline(node, body, schema_of(node, opset), fresh)

The inlined nodes read and write the node's own inputs and outputs; the body's internal values
get fresh names; attribute references (`@alpha`) take the node's attribute or the schema's
default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import onnx
import onnx.defs
from onnx import helper

from ...ir import TensorType


def schema_of(node: onnx.NodeProto, opset: int) -> onnx.defs.OpSchema | None:
    """The schema of `node` at the model's opset, or None (no such op, or too new)."""
    domain = node.domain if node.domain != "ai.onnx" else ""
    try:
        return onnx.defs.get_schema(node.op_type, opset, domain)
    except onnx.defs.SchemaError:
        return None


def _pick(versions: Sequence[int], opset: int) -> int | None:
    """The body version for a model at `opset`: the newest not past it, else the oldest (a body
    written at a later opset than the op's schema still computes the same op)."""
    if not versions:
        return None
    older = [v for v in versions if v <= opset]
    return max(older) if older else min(versions)


def _type_proto(t: TensorType | None) -> bytes:
    if t is None:
        return onnx.TypeProto().SerializeToString()
    return helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(t.np_dtype), t.shape).SerializeToString()


def has_body(schema: onnx.defs.OpSchema | None) -> bool:
    return schema is not None and (schema.has_function or schema.has_context_dependent_function)


def function_body(node: onnx.NodeProto, opset: int,
                  input_types: Sequence[TensorType | None]) -> onnx.FunctionProto | None:
    """The function body onnx defines for `node` at `opset`, or None."""
    schema = schema_of(node, opset)
    if not has_body(schema):
        return None
    raw = b""
    if schema.has_function:
        v = _pick(schema.function_opset_versions, opset)
        raw = schema.get_function_with_opset_version(v) if v is not None else schema.function_body.SerializeToString()
    typed = all(t is not None for name, t in zip(node.input, input_types, strict=False) if name)
    if not raw and schema.has_context_dependent_function and typed:  # (onnx's builders crash on untyped inputs)
        v = _pick(schema.context_dependent_function_opset_versions, opset)
        types = [_type_proto(t) for t in input_types]
        try:
            if v is not None:
                raw = schema.get_context_dependent_function_with_opset_version(v, node.SerializeToString(), types)
            if not raw:
                raw = schema.get_context_dependent_function(node.SerializeToString(), types)
        except Exception:  # noqa: BLE001 - onnx's builders raise on inputs they cannot type
            return None
    if not raw:
        return None
    body = onnx.FunctionProto()
    body.ParseFromString(raw)
    return body if body.node else None


def refusal(node: onnx.NodeProto, input_types: Sequence[TensorType | None] = ()) -> str | None:
    """Why `node`'s function body would not compute what the op means, or None: attribute
    values for which onnx's body builder and onnx's own reference (and onnxruntime) disagree."""
    if node.op_type == "Attention" and node.domain in ("", "ai.onnx"):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        softcap = attrs.get("softcap", 0.0)
        if isinstance(softcap, float) and not softcap >= 0:
            return (f"softcap={softcap:g} is not 0 or positive (onnx's function body caps the scores for any "
                    "nonzero softcap, onnx's reference and onnxruntime only for a positive one)")
        mode = attrs.get("qk_matmul_output_mode", 0)
        if isinstance(mode, int) and mode not in (0, 1, 2, 3):
            return f"qk_matmul_output_mode={mode} is not one of 0, 1, 2, 3"
    if node.op_type == "Celu" and node.domain in ("", "ai.onnx"):
        alpha = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "alpha"), 1.0)
        if isinstance(alpha, float) and not alpha > 0:
            return (f"alpha={alpha:g} is not positive (onnx's function body, alpha * Elu(x / alpha), is Celu's "
                    "formula only for a positive alpha)")
        x = input_types[0] if input_types else None
        if isinstance(alpha, float) and x is not None and x.np_dtype.kind == "f":
            with np.errstate(over="ignore", under="ignore"):
                cast = float(np.asarray(alpha, x.np_dtype))
            if not (math.isfinite(cast) and cast > 0):
                return (f"alpha={alpha:g} becomes {cast:g} in the input's {x.dtype} (onnx's function body casts "
                        "alpha to the input's type and divides by it)")
    return None


def body_opset(body: onnx.FunctionProto, default: int) -> int:
    return next((o.version for o in body.opset_import if o.domain in ("", "ai.onnx")), default)


def _attribute(a: onnx.AttributeProto, node: onnx.NodeProto, schema: onnx.defs.OpSchema | None,
               body: onnx.FunctionProto) -> onnx.AttributeProto | None:
    """A body node's attribute with its `@ref` resolved (None: the reference is unset)."""
    if not a.ref_attr_name:
        return a
    source = next((x for x in node.attribute if x.name == a.ref_attr_name), None)
    if source is None:
        source = next((x for x in body.attribute_proto if x.name == a.ref_attr_name), None)
    if source is None and schema is not None and a.ref_attr_name in schema.attributes:
        default = schema.attributes[a.ref_attr_name].default_value
        source = default if default.type else None
    if source is None:
        return None
    out = onnx.AttributeProto()
    out.CopyFrom(source)
    out.name = a.name
    return out


def inline(node: onnx.NodeProto, body: onnx.FunctionProto, schema: onnx.defs.OpSchema | None,
           fresh: Callable[[str], str]) -> list[onnx.NodeProto]:
    """The body's nodes wired to `node`'s inputs and outputs; internal values renamed by `fresh`."""
    names = {formal: (node.input[i] if i < len(node.input) else "") for i, formal in enumerate(body.input)}
    names |= {formal: (node.output[i] if i < len(node.output) else "") for i, formal in enumerate(body.output)}
    names[""] = ""
    label = node.name or node.op_type

    def rename(n: str) -> str:
        if n not in names:
            names[n] = fresh(f"{label}.{n}")
        return names[n]

    out = []
    for k, inner in enumerate(body.node):
        attrs = [r for r in (_attribute(a, node, schema, body) for a in inner.attribute) if r is not None]
        copy = onnx.NodeProto()
        copy.op_type, copy.domain = inner.op_type, inner.domain
        copy.name = f"{label}/{inner.name or f'{inner.op_type}_{k}'}"
        copy.input.extend(rename(i) for i in inner.input)
        copy.output.extend(rename(o) for o in inner.output)
        copy.attribute.extend(attrs)
        out.append(copy)
    return out


def expandable_ops(have: set[str]) -> set[str]:
    """Default-domain ONNX ops kiln lacks a converter for but onnx defines a body for (at some opset)."""
    return {s.name for s in onnx.defs.get_all_schemas_with_history()
            if s.domain == "" and s.name not in have and has_body(s)}
