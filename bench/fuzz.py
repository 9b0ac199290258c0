"""A fuzzer for ONNX import: `from_onnx` + `compile(target="reference")` + `run`, checked against
onnxruntime.

    python -m bench.fuzz --inputs 10000 --seed 0 --report fuzz.json [--save DIR]
    python -m bench.fuzz --seed 0 --only 1234 [--save DIR]     # rerun one input, keep its model
    python -m bench.fuzz --atheris [libFuzzer flags] [CORPUS_DIR]   # coverage-guided (pip install '.[fuzz]')

The contract: every input either runs and matches onnxruntime (where onnxruntime accepts it) or
raises a KilnError; never another exception, a hang, a crash or a wrong answer.

Seeds are ONNX's own node test cases (onnx.backend.test.case.node, the ones whose ops kiln
imports; their integer inputs and small float inputs, shapes, axes and bounds, bound as
initializers from the case's data), the pytorch-converted and pytorch-operator model tests
shipped with onnx, and zoo models exported with `kiln.to_onnx`. Input i is a seed model with
1-4 mutations, all drawn from random.Random(f"{seed}:{i}"), so an input is reproduced by its
index alone. Mutations are structural (an attribute's value, an added or
dropped attribute, an input dropped, duplicated, omitted or rewired, a node deleted, duplicated,
moved or given another op type or domain, a graph input's dim (0, negative, huge, symbolic) or
rank, an element type, an initializer's dims, bytes or values, the opset, the graph outputs) and,
for a quarter of the inputs, raw bytes of the serialized protobuf (flipped, overwritten,
inserted, truncated).

Each input runs in a worker process (restarted when it dies or overruns the time limit), first
through kiln (from a file, as users load models), then through onnxruntime on the same random
feeds (graph optimisations off, one thread, the declared output shapes left open: kiln infers
its own); the worker says which stage it is in, so a crash or a hang is put on kiln or on
onnxruntime. Workers run with KILN_MAX_BYTES at 64 MiB, so a huge
dimension is refused by kiln's own limits rather than exhausting the machine, and with a 6 GiB
address-space limit for onnxruntime's sake.

Outcomes: `match` (kiln ran and agrees with onnxruntime: rtol 1e-3 and atol 1e-4 times the
output's largest magnitude, 1e-2 where the model computes in float16; NaNs in the same places,
integers exact; -inf
where onnxruntime masks with the float's lowest value), `kiln_ran_ort_refused`,
`kiln_refused:<KilnError class>` (split by whether onnxruntime ran it), `ort_disagrees` (kiln
differs from onnxruntime but computes what onnx's ReferenceEvaluator, a second oracle written
from the spec, computes: denormals that onnxruntime flushes to zero, align_corners onto one
pixel), `ort_crash`/`ort_hang` (onnxruntime's, not kiln's) and the bugs: `mismatch`,
`exception` (including a KilnError in which kiln contradicts itself: a reference result that is
not its inferred type, an imported graph that fails verification), `hang`, `crash`.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

BUGS = ("mismatch", "exception", "hang", "crash")
IR_VERSION = 10  # what the installed onnxruntime reads (onnx 1.23 writes 14 by default)
MAX_BYTES = 64 << 20  # KILN_MAX_BYTES in the workers
ADDRESS_SPACE = 6 << 30
ZOO_SEEDS = {  # exported with kiln.to_onnx; small sizes so that each input runs in well under a second
    "lenet5": {},
    "resnet20": {},
    "mobilenet_v1": {"image_size": 32, "width": 0.25, "num_classes": 10},
}
ZOO_SHARE = 0.08  # of the inputs start from a zoo model (they run slower than node cases)
STRINGS = [b"", b"NOTSET", b"SAME_UPPER", b"SAME_LOWER", b"VALID", b"constant", b"reflect", b"edge", b"wrap",
           b"linear", b"nearest", b"cubic", b"asymmetric", b"half_pixel", b"align_corners", b"pytorch_half_pixel",
           b"tf_crop_and_resize", b"round_prefer_floor", b"floor", b"ceil", b"none", b"tanh", b"DCR", b"CRD",
           b"mean", b"sum", b"max", b"bogus"]
INTS = [-(2**63), -(2**31), -1000, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 7, 16, 2**31 - 1, 2**31, 10**9, 2**62]
FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 1e-30, 1e30, -1e30, 3.4e38, float("inf"), float("-inf"), float("nan")]
DIMS = [0, 1, 2, 3, 5, 16, -1, -7, 10**5, 2**31 - 1, 2**40, 2**62]


# -- seeds ---------------------------------------------------------------------------------------------

def _claimed_ops() -> set[str]:
    from kiln.frontend.onnx import supported_ops
    from kiln.frontend.onnx.functions import expandable_ops

    have = set(supported_ops())
    return have | {"Constant", "ConstantOfShape"} | expandable_ops(have)


def _bind_inputs(model, inputs):
    """The case's model with its integer and bool inputs, and float inputs of at most four
    elements (scales, bounds, axes), turned into initializers holding the case's values."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = []
    names = [vi.name for vi in m.graph.input if vi.name not in {t.name for t in m.graph.initializer}]
    values = dict(zip(names, inputs, strict=False))
    for vi in m.graph.input:
        v = values.get(vi.name)
        if isinstance(v, np.ndarray) and (v.dtype.kind in "iub" or v.size <= 4):
            m.graph.initializer.append(numpy_helper.from_array(v, vi.name))
        else:
            keep.append(vi)
    del m.graph.input[:]
    m.graph.input.extend(keep)
    return m


def _fixed(m):
    m.ir_version = min(m.ir_version or IR_VERSION, IR_VERSION)
    return m


def seed_models(zoo: bool = True) -> list[tuple[str, bytes]]:
    """(name, serialized model) for every seed, in a fixed order."""
    import glob

    import numpy as np
    import onnx
    from onnx.backend.test.case.node import collect_testcases
    from onnx.backend.test.loader import load_model_tests

    claimed = _claimed_ops()
    out = []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    for c in cases:
        if not {n.op_type for n in c.model.graph.node} <= claimed or not c.data_sets:
            continue
        if not all(isinstance(x, np.ndarray) for x in c.data_sets[0][0]):
            continue  # sequences and optionals
        out.append((c.name, _fixed(_bind_inputs(c.model, c.data_sets[0][0])).SerializeToString()))
    for kind in ("pytorch-converted", "pytorch-operator"):
        for t in load_model_tests(kind=kind):
            model = onnx.load(os.path.join(t.model_dir, "model.onnx"))
            if not {n.op_type for n in model.graph.node} <= claimed:
                continue
            first = sorted(glob.glob(os.path.join(t.model_dir, "test_data_set_0", "input_*.pb")))
            inputs = [onnx.numpy_helper.to_array(onnx.load_tensor(f)) for f in first]
            out.append((t.name, _fixed(_bind_inputs(model, inputs)).SerializeToString()))
    if zoo:
        import kiln

        for name, kwargs in ZOO_SEEDS.items():
            out.append((f"zoo_{name}", _fixed(kiln.to_onnx(kiln.models.get_model(name, **kwargs))).SerializeToString()))
    return out


# -- mutations -----------------------------------------------------------------------------------------

def _attr_value(a, rng: random.Random) -> None:
    import onnx

    A = onnx.AttributeProto
    if a.type == A.INT:
        a.i = max(-(2**63), min(rng.choice(INTS + [a.i + 1, a.i - 1, -a.i]), 2**63 - 1))
    elif a.type == A.FLOAT:
        a.f = rng.choice(FLOATS + [a.f * 2, -a.f])
    elif a.type == A.STRING:
        a.s = rng.choice(STRINGS)
    elif a.type == A.INTS:
        vals = list(a.ints)
        how = rng.randrange(4)
        if how == 0 and vals:
            vals[rng.randrange(len(vals))] = rng.choice(INTS)
        elif how == 1 and vals:
            vals.pop(rng.randrange(len(vals)))
        elif how == 2:
            vals.append(rng.choice(INTS))
        else:
            vals = vals * 2
        del a.ints[:]
        a.ints.extend(vals)
    elif a.type == A.FLOATS:
        vals = list(a.floats)
        if vals and rng.random() < 0.6:
            vals[rng.randrange(len(vals))] = rng.choice(FLOATS)
        else:
            vals = vals[:-1] if vals and rng.random() < 0.5 else [*vals, rng.choice(FLOATS)]
        del a.floats[:]
        a.floats.extend(vals)
    elif a.type == A.TENSOR:
        _tensor(a.t, rng)
    else:
        a.type = rng.choice([A.INT, A.FLOAT, A.STRING, A.INTS])  # a type the schema does not expect


def _new_attr(name: str, kind, rng: random.Random):
    import onnx
    from onnx import helper

    A = onnx.AttributeProto
    if kind == A.FLOAT:
        return helper.make_attribute(name, rng.choice(FLOATS))
    if kind == A.STRING:
        return helper.make_attribute(name, rng.choice(STRINGS))
    if kind == A.INTS:
        return helper.make_attribute(name, [rng.choice(INTS[4:14]) for _ in range(rng.randrange(1, 5))])
    if kind == A.FLOATS:
        return helper.make_attribute(name, [rng.choice(FLOATS) for _ in range(rng.randrange(1, 4))])
    if kind == A.TENSOR:
        import numpy as np

        return helper.make_attribute(name, onnx.numpy_helper.from_array(np.array([rng.choice(INTS[4:14])], np.int64)))
    return helper.make_attribute(name, rng.choice(INTS))


def _tensor(t, rng: random.Random) -> None:
    """Mutate one initializer (or tensor attribute): dims, type, bytes or values."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    how = rng.randrange(5)
    if how == 0 and t.dims:
        t.dims[rng.randrange(len(t.dims))] = rng.choice(DIMS)
    elif how == 1:
        t.data_type = rng.choice(list(onnx.TensorProto.DataType.values()))
    elif how == 2 and t.raw_data:
        t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data))]
    else:
        try:
            arr = numpy_helper.to_array(t).copy()
        except Exception:  # noqa: BLE001 - already broken by an earlier mutation
            return
        if arr.size == 0 or arr.dtype.kind not in "iufb":
            return
        flat = arr.reshape(-1)
        k = rng.randrange(flat.size)
        if arr.dtype.kind == "f":
            flat[k] = rng.choice(FLOATS)
        elif arr.dtype.kind == "b":
            flat[k] = not flat[k]
        else:
            info = np.iinfo(arr.dtype)
            flat[k] = min(max(rng.choice(INTS + [int(flat[k]) + 1, int(flat[k]) - 1]), info.min), info.max)
        if how == 4 and arr.ndim:
            arr = arr.reshape(-1)[: max(arr.size - 1, 0)] if rng.random() < 0.5 else np.concatenate([flat, flat[:1]])
        t.CopyFrom(numpy_helper.from_array(arr, t.name))


def _values(m) -> list[str]:
    g = m.graph
    names = [v.name for v in g.input] + [t.name for t in g.initializer]
    for n in g.node:
        names.extend(o for o in n.output if o)
    return names or ["x"]


def _mutate(m, rng: random.Random, ops: list[str]) -> str:
    """Apply one structural mutation to model `m` in place; returns what it did (tries again
    when the one drawn does not apply to this model)."""
    for _ in range(8):
        done = _mutate_once(m, rng, ops)
        if done != "none":
            return done
    return "none"


def _mutate_once(m, rng: random.Random, ops: list[str]) -> str:
    import onnx
    from onnx import helper

    g = m.graph
    nodes = g.node
    choice = rng.randrange(16)
    if choice <= 2 and nodes:  # an attribute's value
        withattrs = [n for n in nodes if n.attribute]
        if withattrs:
            n = rng.choice(withattrs)
            a = rng.choice(n.attribute)
            _attr_value(a, rng)
            return f"attr {n.op_type}.{a.name}"
    if choice == 3 and nodes:  # add an attribute (the schema's, or an unknown one) or drop one
        n = rng.choice(nodes)
        if n.attribute and rng.random() < 0.4:
            a = n.attribute.pop(rng.randrange(len(n.attribute)))
            return f"drop attr {n.op_type}.{a.name}"
        try:
            schema = onnx.defs.get_schema(n.op_type)
            missing = [(k, v.type) for k, v in schema.attributes.items() if k not in {a.name for a in n.attribute}]
        except Exception:  # noqa: BLE001
            missing = []
        name, kind = rng.choice(missing) if missing and rng.random() < 0.8 else ("bogus", onnx.AttributeProto.INT)
        n.attribute.append(_new_attr(name, kind, rng))
        return f"add attr {n.op_type}.{name}"
    if choice in (4, 5) and nodes:  # an input dropped, duplicated, omitted or rewired
        n = rng.choice(nodes)
        how = rng.randrange(5)
        if how == 0 and n.input:
            n.input.pop()
            return f"drop input {n.op_type}"
        if how == 1:
            n.input.append(rng.choice(list(n.input) or _values(m)))
            return f"extra input {n.op_type}"
        if how == 2 and n.input:
            n.input[rng.randrange(len(n.input))] = ""
            return f"omit input {n.op_type}"
        if n.input:
            k = rng.randrange(len(n.input))
            n.input[k] = rng.choice(_values(m) + ["undefined_value"])
            return f"rewire {n.op_type}.input[{k}]"
    if choice == 6 and len(nodes) > 1:  # delete, duplicate or move a node
        k = rng.randrange(len(nodes))
        how = rng.randrange(3)
        if how == 0:
            op = nodes[k].op_type
            del nodes[k]
            return f"delete {op}"
        if how == 1:
            copy = onnx.NodeProto()
            copy.CopyFrom(nodes[k])
            nodes.insert(rng.randrange(len(nodes) + 1), copy)
            return f"duplicate {copy.op_type}"
        j = rng.randrange(len(nodes))
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(nodes[k])
        b.CopyFrom(nodes[j])
        nodes[k].CopyFrom(b)
        nodes[j].CopyFrom(a)
        return "swap nodes"
    if choice == 7 and nodes:  # another op type (or domain)
        n = rng.choice(nodes)
        old = n.op_type
        if rng.random() < 0.1:
            n.domain = rng.choice(["com.microsoft", "ai.onnx.ml", "ai.onnx", "custom"])
            return f"domain {old} -> {n.domain}"
        n.op_type = rng.choice(ops)
        return f"op {old} -> {n.op_type}"
    if choice in (8, 9) and (g.input or g.output):  # a dim, or the rank, of a declared input or output
        vis = list(g.input) + list(g.output) if rng.random() < 0.3 else list(g.input) or list(g.output)
        vi = rng.choice(vis)
        shape = vi.type.tensor_type.shape
        how = rng.randrange(5)
        if how <= 2 and shape.dim:
            d = shape.dim[rng.randrange(len(shape.dim))]
            if how == 2:
                d.dim_param = rng.choice(["N", "batch", ""])
            else:
                d.dim_value = rng.choice(DIMS)
            return f"dim {vi.name}"
        if how == 3 and shape.dim:
            shape.dim.pop(rng.randrange(len(shape.dim)))
            return f"rank- {vi.name}"
        shape.dim.add().dim_value = rng.choice(DIMS[:6])
        return f"rank+ {vi.name}"
    if choice == 10:  # an element type
        types = list(onnx.TensorProto.DataType.values())
        targets = [("input", v) for v in g.input] + [("output", v) for v in g.output]
        casts = [n for n in nodes if n.op_type in ("Cast", "CastLike", "EyeLike", "RandomNormal")]
        if casts and rng.random() < 0.3:
            n = rng.choice(casts)
            n.attribute.append(helper.make_attribute("to", rng.choice(types)))
            return f"cast type {n.op_type}"
        if targets:
            what, vi = rng.choice(targets)
            vi.type.tensor_type.elem_type = rng.choice(types)
            return f"elem_type {what} {vi.name}"
    if choice in (11, 12) and g.initializer:  # an initializer's dims, type, bytes or values
        t = rng.choice(g.initializer)
        _tensor(t, rng)
        return f"initializer {t.name}"
    if choice == 13:  # the opset
        for o in m.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = rng.choice([1, 5, 6, 7, 9, 11, 13, 17, 18, 21, 22, 25, 99, -1])
                return f"opset {o.version}"
    if choice == 14 and g.output:  # the graph outputs
        how = rng.randrange(3)
        if how == 0:
            g.output[rng.randrange(len(g.output))].name = rng.choice(_values(m) + ["undefined_output"])
        elif how == 1:
            g.output.append(helper.make_empty_tensor_value_info(rng.choice(_values(m))))
        elif len(g.output) > 1:
            g.output.pop(rng.randrange(len(g.output)))
        return "graph output"
    if choice == 15 and nodes:  # an output renamed onto an existing value (not SSA any more) or added
        n = rng.choice(nodes)
        if n.output and rng.random() < 0.5:
            n.output[rng.randrange(len(n.output))] = rng.choice(_values(m))
        else:
            n.output.append(f"extra_{rng.randrange(100)}")
        return f"output {n.op_type}"
    return "none"


def _mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    if not b:
        return bytes(rng.randrange(256) for _ in range(8)), "bytes random"
    how = rng.randrange(4)
    if how == 0:
        for _ in range(rng.randrange(1, 5)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b), "bytes flip"
    if how == 1:
        k = rng.randrange(len(b))
        b[k:k + 4] = bytes(rng.choice([0x00, 0x7F, 0x80, 0xFF]) for _ in range(4))
        return bytes(b), "bytes overwrite"
    if how == 2:
        k = rng.randrange(len(b) + 1)
        b[k:k] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        return bytes(b), "bytes insert"
    return bytes(b[: rng.randrange(len(b))]), "bytes truncate"


class Generator:
    """Input i of a campaign: a seed and its mutations, drawn from random.Random(f"{seed}:{i}")."""

    def __init__(self, seed: int, seeds: list[tuple[str, bytes]]):
        self.seed = seed
        self.seeds = seeds
        self.zoo = [k for k, (name, _) in enumerate(seeds) if name.startswith("zoo_")]
        self.cases = [k for k, (name, _) in enumerate(seeds) if not name.startswith("zoo_")]
        self.ops = sorted(_claimed_ops()) + ["If", "Loop", "Scan", "Size", "Round", "Unique", "NotAnOp"]

    def input(self, i: int) -> tuple[bytes, str, list[str]]:
        import onnx

        rng = random.Random(f"{self.seed}:{i}")
        pool = self.zoo if self.zoo and rng.random() < ZOO_SHARE else self.cases
        name, data = self.seeds[rng.choice(pool)]
        m = onnx.ModelProto.FromString(data)
        done = []
        with warnings.catch_warnings():  # numpy's overflow warnings, writing 1e30 into a float16 initializer
            warnings.simplefilter("ignore")
            for _ in range(1 + min(int(rng.expovariate(1.2)), 3)):
                done.append(_mutate(m, rng, self.ops))
        if rng.random() < 0.5:  # the declared output shapes, stale after many mutations, left open
            for o in m.graph.output:
                o.type.tensor_type.ClearField("shape")
        out = m.SerializeToString()
        if rng.random() < 0.25:
            out, what = _mutate_bytes(out, rng)
            done.append(what)
        return out, name, done


# -- one input -----------------------------------------------------------------------------------------

def _feeds(types, rng):
    import numpy as np

    out = {}
    for name, t in types:
        dt = np.dtype(t.np_dtype)
        if dt.kind == "f":
            out[name] = rng.standard_normal(t.shape).astype(dt)
        elif dt.kind == "b":
            out[name] = rng.random(t.shape) < 0.5
        else:
            out[name] = rng.integers(0, 3, t.shape).astype(dt)
    return out


def compare(got, want, low_precision: bool = False) -> str | None:
    """None when kiln's outputs agree with onnxruntime's, else what differs. `low_precision`:
    the model computes in float16 or bfloat16 somewhere, so float16's tolerance applies."""
    import numpy as np

    if len(got) != len(want):
        return f"{len(got)} outputs, onnxruntime {len(want)}"
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            return f"output {k}: shape {g.shape}, onnxruntime {w.shape}"
        if g.dtype != w.dtype:
            return f"output {k}: dtype {g.dtype}, onnxruntime {w.dtype}"
        if w.dtype.kind in "f":
            wide, narrow = w.astype(np.float64), g.astype(np.float64)
            finite = np.isfinite(wide)
            finite &= np.abs(wide) < np.finfo(w.dtype).max
            scale = max(1.0, float(np.abs(wide[finite]).max())) if finite.any() else 1.0
            tol = 1e-2 if w.dtype == np.float16 or low_precision else 1e-3
            with np.errstate(invalid="ignore"):
                same = np.isclose(narrow, wide, rtol=tol, atol=tol / 10 * scale, equal_nan=True)
                # onnxruntime masks with the type's lowest value where ONNX's function bodies use -inf
                lowest = np.finfo(w.dtype).max
                same |= np.isinf(narrow) & (np.abs(wide) == lowest) & (np.sign(narrow) == np.sign(wide))
            if not same.all():
                bad = np.argwhere(~same)[0]
                return (f"output {k}: {int((~same).sum())} of {w.size} elements differ, first at "
                        f"{tuple(int(i) for i in bad)}: kiln {narrow[tuple(bad)]!r}, onnxruntime {wide[tuple(bad)]!r}")
        elif not np.array_equal(g, w):
            return f"output {k}: values differ"
    return None


def _kiln_stage(data: bytes, path: str):
    """('ok', outputs, feeds) or ('refused', class name, message) or ('exception', ...)."""
    import kiln
    import numpy as np
    from kiln.errors import KilnError

    Path(path).write_bytes(data)
    try:
        g = kiln.from_onnx(path)
        exe = kiln.compile(g, target="reference")
        feeds = _feeds([(v.name, v.type) for v in exe.graph.inputs], np.random.default_rng(0))
        with np.errstate(all="ignore"):
            outs = exe.run(feeds)
        return "ok", outs, feeds
    except KilnError as e:
        if _internal(e):
            return "exception", f"{type(e).__name__} (kiln contradicting itself)", str(e)[-3000:]
        return "refused", type(e).__name__, str(e).splitlines()[0][:300]
    except RecursionError as e:
        return "exception", "RecursionError", str(e)[:300]
    except Exception as e:  # noqa: BLE001 - the bug the fuzzer looks for
        return "exception", type(e).__name__, "".join(traceback.format_exception(e))[-3000:]


def _internal(e) -> bool:
    """A KilnError that reports kiln contradicting itself (a bug, not a refusal): a reference
    result that is not the inferred type, an imported graph that fails verification, a pass that
    fails on a graph that verified (other than by a resource limit)."""
    from kiln.errors import IRError, ModelError, PassError, ResourceError

    text = str(e)
    return (isinstance(e, IRError) and "reference produced" in text
            or isinstance(e, ModelError) and "failed verification" in text
            or isinstance(e, PassError) and not isinstance(e.__cause__, ResourceError)
            and "given to the pipeline" not in text)


def _ort_declared_feeds(data: bytes):
    """Feeds from the model's own declared input types (when kiln refused it): symbolic dims 1."""
    import numpy as np
    import onnx
    from onnx import helper

    m = onnx.ModelProto.FromString(data)
    inits = {t.name for t in m.graph.initializer}
    out = {}
    rng = np.random.default_rng(0)
    total = 0
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim)
        if any(d < 0 for d in shape):
            raise ValueError("negative dim")
        total += math.prod(shape) * dt.itemsize
        if total > MAX_BYTES:
            raise ValueError("feeds too big")
        if dt.kind == "f":
            out[vi.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            out[vi.name] = rng.random(shape) < 0.5
        elif dt.kind in "iu":
            out[vi.name] = rng.integers(0, 3, shape).astype(dt)
        else:
            raise ValueError(f"feed type {dt}")
    return out


def _ort_stage(data: bytes, feeds):
    import numpy as np
    import onnxruntime as ort

    try:
        if feeds is None:
            feeds = _ort_declared_feeds(data)
        else:  # kiln infers every output's shape; onnxruntime is not held to stale declared ones either
            import onnx

            m = onnx.ModelProto.FromString(data)
            for o in m.graph.output:
                o.type.tensor_type.ClearField("shape")
            data = m.SerializeToString()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.log_severity_level = 4
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        with np.errstate(all="ignore"):
            return True, sess.run(None, feeds)
    except Exception as e:  # noqa: BLE001 - onnxruntime refusing the model
        return False, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def evaluate(data: bytes, path: str, stage=lambda s: None) -> dict:
    """Run one input through kiln, then onnxruntime; the outcome as a dict (kind, detail, ...)."""
    stage("kiln")
    t0 = time.perf_counter()
    status, a, b = _kiln_stage(data, path)
    kiln_s = time.perf_counter() - t0
    if status == "exception":
        return {"kind": "exception", "error": a, "detail": b, "kiln_s": kiln_s}
    if status == "refused" and a == "ResourceError":
        return {"kind": "kiln_refused:ResourceError", "ort": "skipped", "detail": b, "kiln_s": kiln_s}
    stage("ort")
    ran, want = _ort_stage(data, b if status == "ok" else None)
    if status == "refused":
        return {"kind": f"kiln_refused:{a}", "ort": "ran" if ran else "refused", "detail": b, "kiln_s": kiln_s}
    return {**_judge(data, b, a, ran, want, stage), "kiln_s": kiln_s}


def _judge(data: bytes, feeds, got, ran: bool, want, stage=lambda s: None) -> dict:
    """The outcome of an input kiln ran, given what onnxruntime made of it."""
    if not ran:
        return {"kind": "kiln_ran_ort_refused", "detail": want}
    low = _low_precision(data)
    diff = compare(got, want, low)
    if not diff:
        return {"kind": "match"}
    stage("reference")  # a second oracle, written from the spec: who is wrong?
    agrees = _reference_agrees(data, feeds, got, low)
    known = _known_ort_divergence(data)
    if agrees is True or known:
        return {"kind": "ort_disagrees", "detail": f"{diff}; {known or 'kiln agrees with onnx reference'}"}
    return {"kind": "mismatch", "detail": f"{diff}; onnx's reference: {agrees}"}


def _known_ort_divergence(data: bytes) -> str | None:
    """Where onnxruntime is known to compute something other than onnx's reference (checked by
    hand on models the reference runs), for mismatches on models the reference cannot run."""
    import onnx
    from onnx import helper

    for n in onnx.ModelProto.FromString(data).graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Resize" and attrs.get("mode") == b"cubic" and \
                attrs.get("coordinate_transformation_mode") == b"align_corners":
            return "onnxruntime's cubic align_corners resize differs from onnx's reference"
    return None


def _low_precision(data: bytes) -> bool:
    """Whether a node casts to, or computes a softmax in, float16 or bfloat16."""
    import onnx
    from onnx import helper

    low = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    for n in onnx.ModelProto.FromString(data).graph.node:
        for a in n.attribute:
            if a.name in ("to", "softmax_precision") and helper.get_attribute_value(a) in low:
                return True
    return False


def _reference_agrees(data: bytes, feeds, got, low_precision: bool = False) -> bool | str:
    """True when onnx's ReferenceEvaluator computes what kiln did, else how it differs."""
    import numpy as np
    import onnx
    import onnx.reference

    try:
        with np.errstate(all="ignore"):
            ref = onnx.reference.ReferenceEvaluator(onnx.ModelProto.FromString(data)).run(None, feeds)
    except Exception as e:  # noqa: BLE001
        return f"failed ({type(e).__name__})"
    return compare(got, ref, low_precision) or True


# -- the worker pool -------------------------------------------------------------------------------------

def _worker(conn, workdir: str) -> None:
    os.environ["KILN_MAX_BYTES"] = str(MAX_BYTES)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    except (ImportError, ValueError, OSError):
        pass
    warnings.simplefilter("ignore")
    import kiln  # noqa: F401 - imported before the clock starts
    import onnxruntime  # noqa: F401

    path = os.path.join(workdir, "model.onnx")
    _serve(conn, lambda data: evaluate(data, path, stage=lambda s: conn.send(("stage", s))))


def _serve(conn, handle) -> None:
    """A worker's loop: say ready, then answer each job with ("done", handle(job)) until the
    pipe closes or a None job comes."""
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(("done", handle(job)))


def _oracle_worker(conn, workdir: str) -> None:
    """onnxruntime (and onnx's reference) on (model, feeds, kiln's outputs): the judging half
    of `evaluate`, for the coverage-guided mode, which runs kiln in its own process."""
    warnings.simplefilter("ignore")
    import onnxruntime  # noqa: F401

    def judge(job):
        data, feeds, got = job
        conn.send(("stage", "ort"))
        ran, want = _ort_stage(data, feeds)
        return _judge(data, feeds, got, ran, want, stage=lambda s: conn.send(("stage", s)))

    _serve(conn, judge)


class Worker:
    """One child process running `evaluate` (or `target`); restarted after a crash or a hang."""

    def __init__(self, target=None):
        self.target = target or _worker
        self.proc = None
        self.conn = None
        # where `_worker` writes each model (the judging worker writes none)
        self.workdir = tempfile.mkdtemp(prefix="kiln-fuzz-") if self.target is _worker else ""

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=self.target, args=(child, self.workdir), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(120) or self.conn.recv()[0] != "ready":
            raise RuntimeError("fuzz worker did not start")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def run(self, data, limit: float) -> dict:
        if self.proc is None or not self.proc.is_alive():
            self.start()
        self.conn.send(data)
        stage, t0 = "kiln", time.monotonic()
        while True:
            left = limit - (time.monotonic() - t0)
            try:
                ready = self.conn.poll(max(left, 0))
                if not ready:
                    self.stop()
                    kind = {"kiln": "hang", "ort": "ort_hang"}.get(stage, "mismatch")  # else the reference's
                    return {"kind": kind, "detail": f"over {limit:g} s in {stage}"}
                what, value = self.conn.recv()
            except (EOFError, OSError):
                self.proc.join(5)
                code = self.proc.exitcode
                self.stop()
                kind = {"kiln": "crash", "ort": "ort_crash"}.get(stage, "mismatch")
                return {"kind": kind, "detail": f"exit code {code} in {stage}"}
            if what == "stage":
                stage, t0 = value, (t0 if value == "kiln" else time.monotonic())
            else:
                return value


def campaign(inputs: int, seed: int = 0, limit: float = 20.0, time_cap: float | None = None,
             save: str | None = None, only: list[int] | None = None, seeds=None, log=None) -> dict:
    """Run inputs 0..inputs-1 (or `only`); the counts, the bugs and the timings."""
    t_start = time.monotonic()
    seeds = seed_models() if seeds is None else seeds
    gen = Generator(seed, seeds)
    worker = Worker()
    counts: Counter[str] = Counter()
    refused_ort_ran: Counter[str] = Counter()
    bugs, ran = [], 0
    try:
        for i in (only if only is not None else range(inputs)):
            if time_cap is not None and time.monotonic() - t_start > time_cap:
                break
            data, base, muts = gen.input(i)
            result = worker.run(data, limit)
            ran += 1
            counts[result["kind"]] += 1
            if result.get("ort") == "ran":
                refused_ort_ran[result["kind"].split(":", 1)[1]] += 1
            is_bug = result["kind"] in BUGS
            if is_bug:
                bugs.append({"input": i, "seed_model": base, "mutations": muts, **result})
            if save and (is_bug or only is not None):
                os.makedirs(save, exist_ok=True)
                Path(save, f"input_{seed}_{i}.onnx").write_bytes(data)
            if log is not None and (result["kind"] in BUGS or ran % 500 == 0):
                print(f"[{ran} inputs, {time.monotonic() - t_start:.0f} s] input {i} ({base}; {', '.join(muts)}): "
                      f"{result['kind']} {result.get('detail', '')[:400]}", file=log, flush=True)
    finally:
        worker.close()
    return {
        "seed": seed, "inputs": ran, "seed_models": len(seeds), "seconds": round(time.monotonic() - t_start, 1),
        "counts": dict(sorted(counts.items())), "kiln_refused_ort_ran": dict(sorted(refused_ort_ran.items())),
        "bugs": bugs, "bug_count": sum(counts[k] for k in BUGS),
        "machine": f"{_cpu()}, {os.cpu_count()} cores",
    }


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- coverage-guided mode (atheris) ----------------------------------------------------------------------

def atheris_main(argv: list[str]) -> None:
    """libFuzzer through atheris over kiln's import, with the structured mutations as its custom
    mutator (falling back to libFuzzer's byte mutations for inputs that do not parse); every
    outcome that breaks the contract is raised, so libFuzzer saves the input (in a temporary
    folder unless -artifact_prefix= says where). kiln runs in this process (-timeout=N for
    hangs; a crash stops the run with its input saved), onnxruntime and onnx's reference in a
    child process, since onnxruntime itself crashes on some malformed models."""
    import atheris

    os.environ.setdefault("KILN_MAX_BYTES", str(MAX_BYTES))
    warnings.simplefilter("ignore")
    with atheris.instrument_imports(include=["kiln"]):
        import kiln  # noqa: F401
    import onnx

    if not any(a.startswith("-artifact_prefix=") for a in argv):  # crash files beside the corpus, not here
        argv = [*argv, f"-artifact_prefix={tempfile.mkdtemp(prefix='kiln-atheris-crashes-')}/"]
    corpus = [a for a in argv[1:] if not a.startswith("-")]
    if not corpus:
        corpus = [tempfile.mkdtemp(prefix="kiln-atheris-")]
        argv = [*argv, corpus[0]]
    if not os.listdir(corpus[0]):
        for name, data in seed_models():
            Path(corpus[0], name).write_bytes(data)
    ops = sorted(_claimed_ops())
    path = os.path.join(tempfile.mkdtemp(prefix="kiln-atheris-"), "model.onnx")
    oracle = Worker(_oracle_worker)  # onnxruntime crashes on some inputs: not in this process

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        try:
            m = onnx.ModelProto.FromString(data)
        except Exception:  # noqa: BLE001
            return atheris.Mutate(data, max_size)
        if rng.random() < 0.2:
            return atheris.Mutate(data, max_size)
        try:
            _mutate(m, rng, ops)
            out = m.SerializeToString()
        except Exception:  # noqa: BLE001 - a model whose names are not text, after byte mutations
            return atheris.Mutate(data, max_size)
        return out if len(out) <= max_size else atheris.Mutate(data, max_size)

    def one(data: bytes) -> None:
        status, a, b = _kiln_stage(data, path)
        if status == "exception":
            raise AssertionError(f"{a}: {b}")
        if status == "ok":
            result = oracle.run((data, b, a), 60)
            if result["kind"] == "mismatch":
                raise AssertionError(f"mismatch: {result.get('detail', '')}")

    atheris.Setup(argv, one, custom_mutator=mutator)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--atheris":
        atheris_main([sys.argv[0], *argv[1:]])
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=float, default=20.0, help="seconds per input before it counts as a hang")
    p.add_argument("--time-cap", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--only", type=str, default=None, help="comma-separated input indices to rerun")
    p.add_argument("--save", type=str, default=None, help="write each bug's model (or each --only input) here")
    p.add_argument("--report", type=str, default=None, help="write the counts and bugs as JSON here")
    args = p.parse_args(argv)
    only = [int(x) for x in args.only.split(",")] if args.only else None
    report = campaign(args.inputs, args.seed, args.limit, args.time_cap, args.save, only, log=sys.stdout)
    report["command"] = "python -m bench.fuzz " + " ".join(argv)
    text = json.dumps(report, indent=1, default=str)
    if args.report:
        Path(args.report).write_text(text)
    print(json.dumps({k: v for k, v in report.items() if k != "bugs"}, indent=1))
    for b in report["bugs"]:
        print(f"input {b['input']} ({b['seed_model']}; {', '.join(b['mutations'])}): {b['kind']} "
              f"{b.get('error', '')} {b.get('detail', '')[-600:]}")
    return 1 if report["bug_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
