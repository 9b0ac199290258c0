"""ONNX -> kiln IR.

    g = from_onnx("resnet50.onnx")                 # symbolic batch dimension fixed to 1
    g = from_onnx(model_proto, batch=8)
    g = from_onnx(path, input_shapes={"input": (4, 3, 160, 160)})

kiln compiles static shapes, so every graph input's shape is fixed at import: a symbolic (or
missing) first dimension becomes `batch`, any other symbolic dimension must be given in
`input_shapes`. The whole model is checked before anything runs: every node kiln cannot import
(unknown op, unsupported attribute or data type, foreign domain) is reported in one error that
names each node with its op type, domain and opset, and lists what is supported. An op kiln has
no converter for imports through the function body onnx defines for it, where there is one
(functions.py); model-local functions are inlined first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner
import onnx.reference
import onnx.shape_inference
import onnx.version_converter
from onnx import helper, numpy_helper

from ...ir import Graph, IRError, TensorType, Value, verify
from ...ir.errors import ModelError, ResourceError, UnsupportedError
from ...ir.limits import check_bytes, check_nodes, check_type
from ...ir.types import DTYPES, dtype_of
from . import functions, ops_math, ops_nn, ops_reduce, ops_shape  # noqa: F401  (register the converters)
from .context import ConvertError, ImportContext, NeedsConstant
from .converters import NodeView, find_converter, supported_ops

MIN_OPSET, MAX_TESTED_OPSET = 7, 21
RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                        "Multinomial", "Bernoulli"})
# Ops that import only when their inputs are known at compile time (shape arithmetic and
# constants); they fold into consts.
FOLDED_OPS = ("Constant", "ConstantOfShape", "Range", "ReduceProd", "NonZero", "Floor", "Ceil")

# Attributes that are yes-or-no switches; any value but 0 or 1 is refused rather than read as one
# (runtimes disagree on what keepdims=-5 means).
FLAG_ATTRS = frozenset({"keepdims", "ceil_mode", "count_include_pad", "transA", "transB", "select_last_index",
                        "noop_with_empty_axes", "training_mode", "exclude_outside", "antialias", "exclusive",
                        "reverse", "upper", "largest", "sorted", "detect_negative", "detect_positive",
                        "is_causal", "fmod", "center_point_box", "interleaved", "onesided", "saturate"})


def _load(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if path.is_dir():
        raise ModelError(f"{path}: is a folder, not an ONNX model file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: the file is empty (0 bytes), not an ONNX model")
    try:
        return onnx.load(str(path))  # external data files are read from beside the model
    except Exception as e:  # noqa: BLE001 - onnx raises many kinds on a bad file
        raise ModelError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None


def _with_output_types(m: onnx.ModelProto) -> onnx.ModelProto:
    """kiln infers every output type, so a graph output declared without one (as hand-built
    models often are) is given a placeholder for the checker's sake."""
    if all(o.type.HasField("tensor_type") and o.type.tensor_type.HasField("shape") for o in m.graph.output):
        return m
    copy = onnx.ModelProto()
    copy.CopyFrom(m)
    for o in copy.graph.output:
        if not o.type.tensor_type.elem_type:
            o.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        o.type.tensor_type.shape.SetInParent()
    return copy


def _opset(m: onnx.ModelProto) -> int:
    versions = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise ModelError("the model imports no version of the default ONNX domain (opset_import)")
    return versions[0]


_LEGACY_BROADCAST = ("Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Greater", "Less")


def _align_legacy_broadcast(m: onnx.ModelProto) -> onnx.ModelProto:
    """Before opset 7, `broadcast=1 axis=k` aligned B with A's axis k; the version converter only
    handles suffix alignment, so B gets trailing unit axes here (an Unsqueeze node, or a reshaped
    initializer) to end at A's last axis, and the `axis` attribute goes."""
    inferred = onnx.shape_inference.infer_shapes(m)
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim)
             for vi in (*inferred.graph.value_info, *inferred.graph.input)
             if vi.type.tensor_type.HasField("shape")}
    ranks.update({t.name: len(t.dims) for t in m.graph.initializer})
    nodes, changed = [], False
    for k, node in enumerate(m.graph.node):
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        legacy = node.op_type in _LEGACY_BROADCAST and axis is not None and len(node.input) == 2
        rank_a, rank_b = (ranks.get(node.input[0]), ranks.get(node.input[1])) if legacy else (None, None)
        if rank_a is None or rank_b is None:
            nodes.append(node)
            continue
        extra = rank_a - (axis + rank_a if axis < 0 else axis) - rank_b
        fixed = onnx.NodeProto()
        fixed.CopyFrom(node)
        del fixed.attribute[:]
        fixed.attribute.extend(a for a in node.attribute if a.name != "axis")
        if extra > 0:
            aligned = f"{node.input[1]}.aligned_{k}"
            nodes.append(helper.make_node("Unsqueeze", [node.input[1]], [aligned],
                                          axes=list(range(rank_b, rank_b + extra))))
            fixed.input[1] = aligned
        nodes.append(fixed)
        changed = True
    if not changed:
        return m
    copy = onnx.ModelProto()
    copy.CopyFrom(m)
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


def _upgrade(m: onnx.ModelProto) -> onnx.ModelProto:
    """Models older than opset 7 (legacy broadcasting) are upgraded by onnx's version converter."""
    v = _opset(m)
    if v >= MIN_OPSET:
        return m
    try:
        return onnx.version_converter.convert_version(_align_legacy_broadcast(m), MIN_OPSET)
    except Exception as e:  # noqa: BLE001 - the converter raises RuntimeError and friends
        raise UnsupportedError(f"opset {v} is older than kiln imports (opset {MIN_OPSET} and later) and "
                               f"onnx's version converter could not upgrade it: {e}") from None


def _ir_dtype(elem_type: int, what: str) -> str:
    try:
        return dtype_of(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:  # noqa: BLE001
        try:
            name = onnx.TensorProto.DataType.Name(elem_type) if elem_type else "undefined"
        except ValueError:
            name = f"{elem_type} (not an ONNX data type)"
        raise ConvertError(f"{what} has data type {name}; kiln supports {', '.join(DTYPES)}") from None


def _initializer(t: onnx.TensorProto) -> np.ndarray:
    """An initializer's contents; its dims must be those of its data."""
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise ConvertError(f"initializer %{t.name} has a negative dimension in its dims {dims}")
    try:
        return numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001 - numpy and onnx raise ValueError, TypeError, ...
        raise ConvertError(f"initializer %{t.name}: its data does not hold a tensor of its dims {dims} and type "
                           f"{onnx.TensorProto.DataType.Name(t.data_type)} ({type(e).__name__}: {e})") from None


def _not_text(m: onnx.ModelProto) -> str | None:
    """The first name or op type kiln reads that is not valid UTF-8 (protobuf hands those over
    as bytes, which onnx's own functions refuse with TypeError), or None."""
    g = m.graph
    fields = [("the graph name", g.name)]
    fields += [(f"opset domain {o.domain!r}", o.domain) for o in m.opset_import]
    for vi in (*g.input, *g.output, *g.value_info):
        fields.append((f"value name {vi.name!r}", vi.name))
    fields += [(f"initializer name {t.name!r}", t.name) for t in g.initializer]
    for k, n in enumerate(g.node):
        what = f"node {k}"
        fields += [(f"{what}'s op type", n.op_type), (f"{what}'s domain", n.domain), (f"{what}'s name", n.name)]
        fields += [(f"{what}'s input {i!r}", i) for i in n.input] + [(f"{what}'s output {o!r}", o) for o in n.output]
        fields += [(f"{what}'s attribute name {a.name!r}", a.name) for a in n.attribute]
    return next((what for what, v in fields if not isinstance(v, str)), None)


def _input_shape(vi: onnx.ValueInfoProto, batch: int, override: Sequence[int] | None) -> tuple[int, ...]:
    if override is not None:
        return tuple(int(d) for d in override)
    dims = []
    for axis, d in enumerate(vi.type.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif axis == 0:
            dims.append(batch)
        else:
            sym = d.dim_param or "?"
            raise ConvertError(f"input %{vi.name} has a symbolic dimension {sym!r} at axis {axis}: "
                               f"give its shape with input_shapes={{'{vi.name}': (...)}}")
    return tuple(dims)


def _predicted_bytes(node: onnx.NodeProto, view: NodeView, known: dict) -> int:
    """The output size of a folding node that makes a tensor bigger than its inputs (from a
    shape or repeats input), before it is evaluated; 0 where it cannot grow much."""
    ins = [known[i] if i else None for i in view.inputs]
    try:
        if node.op_type == "ConstantOfShape":
            value = view.attrs.get("value")
            itemsize = numpy_helper.to_array(value).dtype.itemsize if value is not None else 4
            return int(np.prod([int(d) for d in np.asarray(ins[0]).reshape(-1)], dtype=object)) * itemsize
        if node.op_type == "Expand":
            shape = np.broadcast_shapes(ins[0].shape, tuple(int(d) for d in np.asarray(ins[1]).reshape(-1)))
            return int(np.prod(shape, dtype=object)) * ins[0].dtype.itemsize
        if node.op_type == "Tile":
            return ins[0].nbytes * int(np.prod([int(r) for r in np.asarray(ins[1]).reshape(-1)], dtype=object))
        if node.op_type == "Range":
            start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in ins[:3])
            return max(int(np.ceil((limit - start) / delta)), 0) * ins[0].dtype.itemsize if delta else 0
    except (ValueError, TypeError, IndexError, OverflowError, AttributeError, RuntimeError):
        return 0  # the evaluator reports the inconsistency (numpy: RuntimeError past 32 dimensions)
    return 0


def _fold(ctx: ImportContext, node: onnx.NodeProto, view: NodeView) -> None:
    """Evaluate a node whose inputs are all known, with onnx's reference evaluator, at the
    model's opset (wrapped in a one-node model: a bare node would run at the newest opset).
    An output over the size limit is refused before it is computed (limits.py)."""
    check_bytes(_predicted_bytes(node, view, ctx.known), f"{node.op_type}'s folded output")
    feeds = {i: ctx.known[i] for i in view.inputs if i}
    ins = [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for i, v in feeds.items()]
    outs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
    model = helper.make_model(helper.make_graph([node], "fold", ins, outs),
                              opset_imports=[helper.make_opsetid("", ctx.opset)])
    try:
        results = onnx.reference.ReferenceEvaluator(model).run(None, feeds)
    except Exception as e:  # noqa: BLE001
        raise ConvertError(f"could not evaluate it on its constant inputs: {type(e).__name__}: {e}") from None
    for name, r in zip([o for o in node.output if o], results, strict=True):
        check_bytes(np.asarray(r).nbytes, f"{node.op_type}'s folded output %{name}")
        ctx.set_known(name, np.asarray(r))


def _convert_node(ctx: ImportContext, node: onnx.NodeProto) -> None:
    if node.domain not in ("", "ai.onnx"):
        raise ConvertError(f"domain {node.domain!r} is not supported (kiln imports the default ONNX domain)")
    view = NodeView(node, [i or None for i in node.input])
    ins = [i for i in view.inputs if i]
    if node.op_type == "Constant" and len(node.attribute) != 1:  # runtimes pick different ones
        raise ConvertError(f"a Constant needs exactly one value attribute, has {len(node.attribute)} "
                           f"({', '.join(a.name for a in node.attribute) or 'none'})")
    flags = [f"{k}={v}" for k, v in view.attrs.items() if k in FLAG_ATTRS and v not in (0, 1)]
    if flags:
        raise ConvertError(f"attribute {', '.join(flags)}: a flag, which must be 0 or 1")
    if node.op_type != "Shape" and node.op_type not in RANDOM_OPS and all(i in ctx.foldable for i in ins):
        _fold(ctx, node, view)
        return
    conv = find_converter(node.op_type, ctx.opset)
    if conv is None:
        if node.op_type in FOLDED_OPS:  # supported as shape arithmetic only
            unknown = next(i for i in ins if i not in ctx.foldable)
            raise NeedsConstant(unknown, f"{node.op_type} imports only as shape arithmetic: its inputs")
        _expand(ctx, node)
        return
    extra = sorted(set(view.attrs) - conv.attrs)
    if extra:
        raise ConvertError(f"attribute(s) {extra} not supported (kiln's {node.op_type} converter reads "
                           f"{sorted(conv.attrs) or 'none'})")
    for i in ins:
        ctx.type(i)  # every input defined
    conv.fn(ctx, view)


def _expand(ctx: ImportContext, node: onnx.NodeProto) -> None:
    """Import an op kiln has no converter for through its ONNX function body, node by node at
    the body's opset; or say why that cannot stand in."""
    types = [ctx.types.get(i) if i else None for i in node.input]
    why = functions.refusal(node, types)
    if why:
        raise ConvertError(f"op is imported through its ONNX function body, which kiln cannot use here: {why}")
    body = functions.function_body(node, ctx.opset, types)
    if body is None:
        raise ConvertError("op is not supported, and onnx defines no function body for it at this opset, "
                           "so no expansion can stand in")

    def fresh(base: str) -> str:
        name = ctx.fresh(base)
        ctx.names.add(name)
        return name

    inner_opset = functions.body_opset(body, ctx.opset)
    outer = ctx.opset
    ctx.opset = inner_opset
    try:
        for inner in functions.inline(node, body, functions.schema_of(node, outer), fresh):
            try:
                _convert_node(ctx, inner)
            except ConvertError as e:
                raise ConvertError(f"op is not supported; its ONNX function body (opset {inner_opset}) was tried "
                                   f"and its node {inner.name!r} ({inner.op_type}) does not import: {e}") from None
    finally:
        ctx.opset = outer


def _report(errors: list[str], opset: int, needs: list[str], model_ops: set[str] = frozenset()) -> UnsupportedError:
    ops = supported_ops()
    listing = ", ".join(ops) + "; folded when their inputs are compile-time constants: " + ", ".join(FOLDED_OPS)
    head = f"cannot import {len(errors)} node(s) of this opset-{opset} model:"
    used = sorted(op for op in model_ops if op in ops or op in FOLDED_OPS)
    uses = f"\nthis model's ops that kiln has converters for: {', '.join(used)}" if used else ""
    err = UnsupportedError("\n  ".join([head, *errors]) + uses + f"\nkiln imports: {listing}")
    err.needs_constants = needs  # graph inputs that from_onnx(constants=...) could fix
    return err


def from_onnx(model: str | Path | onnx.ModelProto, batch: int = 1,
              input_shapes: Mapping[str, Sequence[int]] | None = None,
              constants: Mapping[str, np.ndarray] | None = None, name: str | None = None) -> Graph:
    """Import an ONNX model (a path or a ModelProto) as a kiln graph.

    `batch` fixes a symbolic first dimension; `input_shapes` fixes whole input shapes;
    `constants` turns graph inputs into compile-time constants (for example a shape input).
    Initializers become params (float ones trainable, BatchNormalization statistics buffers,
    integer ones consts)."""
    m = _load(model)
    check_nodes(len(m.graph.node), f"the model's graph {m.graph.name!r}")
    bad = _not_text(m)
    if bad:
        raise ModelError(f"the model is malformed: {bad} is not valid UTF-8 text")
    unknown = [f"node {n.name or f'{n.op_type}_{k}'!r} (op {n.op_type}, domain 'ai.onnx', opset {_opset(m)}): "
               "no such ONNX operator" for k, n in enumerate(m.graph.node)
               if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)]
    if unknown:  # kiln's report (every such node, and what kiln imports), not the checker's first line
        raise _report(unknown, _opset(m), [], {n.op_type for n in m.graph.node})
    try:
        onnx.checker.check_model(_with_output_types(m))
    except onnx.checker.ValidationError as e:
        raise ModelError(f"the model is malformed: {str(e).strip().splitlines()[0]}") from None
    except UnicodeDecodeError:  # the checker's message quotes text that is not UTF-8
        raise ModelError("the model is malformed: onnx's checker refused it, quoting text that is not valid "
                         "UTF-8") from None
    except ValueError as e:  # protobuf's Python parser kept bytes that onnx's C++ parser refuses
        raise ModelError(f"the model is malformed: onnx's checker could not read it ({e})") from None
    if not m.graph.output:
        raise ModelError(f"the model is malformed: graph {m.graph.name!r} has no outputs")
    source_opset = _opset(m)
    if m.functions:  # model-local functions: their calls become the functions' nodes
        m = onnx.inliner.inline_local_functions(m)
    m = _upgrade(m)
    opset = _opset(m)
    ctx = ImportContext(opset, source_opset)
    g = m.graph
    errors: list[str] = []
    inits = {t.name: t for t in g.initializer}
    constants = dict(constants or {})
    shapes = dict(input_shapes or {})
    for t in g.initializer:
        try:
            _ir_dtype(t.data_type, f"initializer %{t.name}")
            arr = _initializer(t)
        except ConvertError as e:
            errors.append(f"initializer {t.name}: {e}")
            continue
        ctx.set_known(t.name, arr, foldable=arr.dtype.kind in "iub")
    inputs = []
    for vi in g.input:
        if vi.name in inits:
            continue  # an input that is also an initializer: a default weight, imported as a param
        if vi.name in constants:
            ctx.set_known(vi.name, np.asarray(constants.pop(vi.name)))
            continue
        try:
            t = TensorType(_ir_dtype(vi.type.tensor_type.elem_type, f"input %{vi.name}"),
                           _input_shape(vi, batch, shapes.pop(vi.name, None)))
            check_type(t, f"graph input %{vi.name}")
        except (ConvertError, IRError) as e:
            errors.append(f"graph input {vi.name}: {e}")
            continue
        ctx.types[vi.name] = t
        ctx.names.add(vi.name)
        ctx.defined.add(vi.name)
        inputs.append(Value(vi.name, t))
    for leftover, what in ((shapes, "input_shapes"), (constants, "constants")):
        if leftover:
            raise UnsupportedError(f"{what} names {sorted(leftover)}, which are not graph inputs; "
                                   f"inputs: {[v.name for v in g.input if v.name not in inits]}")
    ctx.wanted = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    poisoned: set[str] = set()
    input_names = {v.name for v in inputs}
    needs: list[str] = []
    origins = {name: {name} for name in input_names}  # run-time value -> the graph inputs it is computed from
    for k, node in enumerate(g.node):
        ctx.node_name = node.name or f"{node.op_type}_{k}"
        importable = find_converter(node.op_type, opset) is not None or \
            functions.has_body(functions.schema_of(node, opset))
        if poisoned.intersection(node.input) and importable:
            poisoned.update(node.output)  # its cause is reported upstream
            continue
        try:
            _convert_node(ctx, node)
            inherited = set().union(*(origins.get(i, set()) for i in node.input if i))
            origins.update((o, inherited) for o in node.output if o and o not in ctx.known)
        except (ConvertError, IRError) as e:
            if isinstance(e, ResourceError):  # refused before anything is allocated: say so at once
                raise ResourceError(f"node {ctx.node_name!r} (op {node.op_type}): {e}") from None
            if isinstance(e, NeedsConstant):  # the graph inputs it is computed from could be constants
                needs.extend(sorted(origins.get(e.name, set()) - set(needs)))
            errors.append(f"node {ctx.node_name!r} (op {node.op_type}, domain {node.domain or 'ai.onnx'!r}, "
                          f"opset {opset}): {e}")
            poisoned.update(node.output)
    if errors:
        raise _report(errors, opset, needs, {n.op_type for n in g.node if n.domain in ("", "ai.onnx")})
    ctx.node_name = ""
    outputs = []
    for o in g.output:
        ctx.use(o.name)
        outputs.append(o.name)
    graph = Graph(name or g.name or "onnx_model", tuple(inputs), tuple(ctx.nodes), tuple(outputs),
                  tuple(ctx.params.values()))
    try:
        return verify(graph)
    except IRError as e:
        raise ModelError(f"imported graph failed verification (a kiln bug or an inconsistent model): {e}") from e
