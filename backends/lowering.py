"""The lowering every backend shares: a graph becomes a Program.

A Program is the list of kernels (generated source, one per distinct specialisation, shared by
every node that needs the same code), the launch list (which kernel runs on which buffers, in
graph order), and the buffer plan (where every value lives: an offset into one arena per dtype).
Backends differ only in the templates that render a node's kernel source and in how they
compile and run it.

Values produced by pure views (reshape, flatten, identity, inference dropout) share their
input's buffer: in a flat buffer a reshape moves no data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from ..ir import Graph, Node, TensorType, get_op
from ..ir.errors import UnsupportedError
from ..ir.limits import check_bytes
from ..ir.types import DTYPES, dtype_of
from ..ir.verify import node_label

ALIAS_OPS = frozenset({"reshape", "flatten", "identity", "dropout"})
SCRATCH = "__scratch"  # value-name prefix of the shared work buffers (one per dtype and position)


@dataclass(frozen=True, slots=True)
class KernelSource:
    """What a template renders for one node: the kernel function's source (without imports or
    decorator), its parameter names in call order, and the node's argument values."""

    body: str  # source of `def {name}(...)`, with the literal name placeholder KERNEL
    args: tuple[str, ...]  # value names passed, in order (buffers, params or packed params)
    note: str = ""  # the choice made (algorithm, block sizes), shown in dumps
    parallel: bool = False
    fastmath: bool = False
    # new param data by name: arrays, or functions of the graph's param data (weight repacking)
    packed: Mapping[str, np.ndarray | Callable] = field(default_factory=dict)
    scratch: tuple[tuple[str, int], ...] = ()  # (dtype, elements) work buffers, appended to args
    grid: tuple = ()  # GPU launch configuration (blocks, threads per block), each an int or a tuple
    jobs: int = 0  # a job kernel: the body is KERNEL_job(<args>, job), run for job in range(jobs)


@dataclass(frozen=True, slots=True)
class Kernel:
    name: str
    body: str
    arg_dtypes: tuple[str, ...]  # IR dtype of each (flat, contiguous) array argument
    parallel: bool
    fastmath: bool
    note: str
    nodes: tuple[str, ...]  # the nodes launching it
    jobs: bool = False  # a job kernel (KernelSource.jobs > 0); each launch says how many jobs it runs


@dataclass(frozen=True, slots=True)
class Launch:
    kernel: str
    args: tuple[str, ...]
    node: str  # IR node label, for tracing and profiles
    flops: int
    grid: tuple = ()  # GPU targets: (blocks, threads per block)
    jobs: int = 0  # a job kernel's job count for this launch (layers sharing the kernel differ)


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a value lives: `offset` elements into the arena of its dtype."""

    dtype: str
    offset: int
    size: int


@dataclass
class Program:
    graph: Graph
    kernels: dict[str, Kernel]
    launches: list[Launch]
    slots: dict[str, Slot]  # activations and scratch, in the arenas
    arena_sizes: dict[str, int]  # dtype -> elements
    params: dict[str, np.ndarray]  # param and packed data, by name, flat and contiguous
    external: list[str] = field(default_factory=list)  # graph inputs, then the graph outputs kernels
    # write: they live in the caller's arrays (read in place, written fresh), not in the arena


Template = Callable[[Node, list[TensorType], list[TensorType]], KernelSource]


def kernel_name(op: str, body: str, arg_dtypes: tuple[str, ...], flags: tuple) -> str:
    key = repr((body, arg_dtypes, flags)).encode()
    return f"k_{op}_{hashlib.sha1(key).hexdigest()[:12]}"


def plan_buffers(g: Graph) -> tuple[dict[str, Slot], dict[str, int], dict[str, str]]:
    """One slot per value, packed one after another per dtype; graph inputs and outputs live in
    the caller's arrays instead. A view op's output (not a graph output) is an alias: it reads
    its input's buffer or param. Returns (slots, arena sizes, aliases: value -> what it reads)."""
    slots: dict[str, Slot] = {}
    sizes: dict[str, int] = {}
    aliases: dict[str, str] = {}
    outputs = set(g.outputs)

    planned = {v.name: v for n in g.nodes for v in n.outputs if v.buffer is not None}
    for v in planned.values():  # reuse_buffers' plan: byte offsets within one arena per dtype
        size = v.type.np_dtype.itemsize
        sizes[v.type.dtype] = max(sizes.get(v.type.dtype, 0), (v.buffer.offset + v.buffer.nbytes) // size)

    def place(name: str, t: TensorType) -> None:
        if name in planned:
            slots[name] = Slot(t.dtype, planned[name].buffer.offset // t.np_dtype.itemsize, t.numel)
            return
        off = sizes.get(t.dtype, 0)
        slots[name] = Slot(t.dtype, off, t.numel)
        sizes[t.dtype] = off + max(t.numel, 1)

    external = {v.name for v in g.inputs} | set(g.outputs)
    for n in g.nodes:
        for v in n.outputs:
            if n.op in ALIAS_OPS and v.name not in outputs:
                src = n.inputs[0]
                aliases[v.name] = aliases.get(src, src)
                if aliases[v.name] in slots:
                    slots[v.name] = Slot(v.type.dtype, slots[aliases[v.name]].offset, v.type.numel)
            elif v.name not in external:
                place(v.name, v.type)
    return slots, sizes, aliases


COMPILED_DTYPES = ("f32", "f64", "bool", "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64")


def _check_dtypes(g: Graph, target: str) -> None:
    """float16 has no numba kernels: refuse it here, naming the first node that reads or
    writes one, rather than fail in numba's typing."""
    for n in g.nodes:
        for name in (*n.inputs, *n.output_names):
            t = g.type_of(name)
            if t.dtype not in COMPILED_DTYPES:
                raise UnsupportedError(
                    f"{node_label(n)}: %{name} is {t}; the {target} target compiles {', '.join(COMPILED_DTYPES)} "
                    f"tensors (numba has no {np.dtype(t.np_dtype).name} arithmetic). Run the model on target='reference', or "
                    "convert it to float32")


def lower(g: Graph, templates: Mapping[str, Template], target: str) -> Program:
    """Render every node with its template; identical kernels are shared."""
    missing = sorted({n.op for n in g.nodes if n.op not in templates and n.op not in ALIAS_OPS})
    if missing:
        raise UnsupportedError(f"target {target!r} has no kernels for op(s) {missing}")
    _check_dtypes(g, target)
    slots, sizes, aliases = plan_buffers(g)
    params = {p.name: np.ascontiguousarray(p.data).reshape(-1) for p in g.params}
    param_data = g.param_data()  # with their shapes, for templates that repack weights
    kernels: dict[str, Kernel] = {}
    launches: list[Launch] = []
    scratch_sizes: dict[str, tuple[str, int]] = {}
    types = g.values
    for n in g.nodes:
        if n.outputs[0].name in aliases:
            continue  # a view: nothing runs
        ins = tuple(aliases.get(i, i) for i in n.inputs)
        node = n.with_(inputs=ins) if ins != n.inputs else n
        op = "copy" if n.op in ALIAS_OPS else n.op  # a view that is a graph output is copied
        in_types = [types[i].type for i in n.inputs]
        src = templates[op](node, in_types, [v.type for v in n.outputs])
        packed = {k: np.ascontiguousarray(v(param_data) if callable(v) else v).reshape(-1)
                  for k, v in src.packed.items()}
        params.update(packed)
        scratch = []
        for i, (dt, numel) in enumerate(src.scratch):  # launches run one at a time: share them
            sname = f"{SCRATCH}_{dt}_{i}"
            scratch_sizes[sname] = (dt, max(numel, scratch_sizes.get(sname, (dt, 0))[1]))
            scratch.append(sname)
        args = (*src.args, *scratch)
        dtypes = tuple(dtype_of(params[a]) if a in params else
                       scratch_sizes[a][0] if a in scratch_sizes else types[a].type.dtype for a in args)
        name = kernel_name(op, src.body, dtypes, (src.parallel, src.fastmath, src.jobs > 0))
        label = node_label(n)
        if name in kernels:
            k = kernels[name]
            kernels[name] = replace(k, nodes=(*k.nodes, label))
        else:
            kernels[name] = Kernel(name, src.body.replace("KERNEL", name), dtypes, src.parallel,
                                   src.fastmath, src.note, (label,), src.jobs > 0)
        cost = get_op(n.op).cost(in_types, [v.type for v in n.outputs], n.attrs)
        launches.append(Launch(name, args, label, cost.flops, src.grid, src.jobs))
    for sname, (dt, numel) in scratch_sizes.items():
        slots[sname] = Slot(dt, sizes.get(dt, 0), numel)
        sizes[dt] = sizes.get(dt, 0) + max(numel, 1)
    for dt, numel in sizes.items():  # before the runner allocates them
        check_bytes(numel * np.dtype(DTYPES[dt]).itemsize, f"the {target} target's {dt} activation arena")
    written = {v.name for n in g.nodes for v in n.outputs if v.name not in aliases}
    external = [v.name for v in g.inputs] + [o for o in dict.fromkeys(g.outputs) if o in written]
    return Program(g, kernels, launches, slots, sizes, params, external)
