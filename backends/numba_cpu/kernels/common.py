"""Helpers for writing kernel templates: literals, dtypes, and nested loops over static shapes.

A template is `def render(node, in_types, out_types) -> KernelSource`. Its body defines
`def KERNEL(<array args>):` (the lowering substitutes the kernel's name) over flat, contiguous
arrays. Shapes are static, so most kernels write sizes and strides into the source as literals;
shape-generic ones (data movement, per-channel affine, global pools) take them at run time, from
their arrays' sizes or from a small int64 `sizes` array (`run_time_sizes`), so that every layer
of one kind shares a single compiled kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...lowering import KernelSource  # noqa: F401  (re-exported for templates)
from ...templating import NP_NAMES, broadcast_strides, collapse, fastmath_option, lit, plain_only_for, strides  # noqa: F401  (re-exported)

PARALLEL_MIN = 1 << 15  # below this many elements a prange costs more than it saves

def nested_loops(shape: Sequence[int], index_strides: dict[str, Sequence[int]], body: Sequence[str],
                 parallel: bool, indent: int = 1) -> list[str]:
    """Loops over `shape` computing each named flat index from its strides, then `body`."""
    lines = []
    pad = "    " * indent
    for k, d in enumerate(shape):
        rng = "prange" if parallel and k == 0 else "range"
        lines.append(f"{pad}for i{k} in {rng}({d}):")
        pad += "    "
    for name, st in index_strides.items():
        terms = [f"i{k} * {s}" if s != 1 else f"i{k}" for k, s in enumerate(st) if s != 0]
        lines.append(f"{pad}{name} = {' + '.join(terms) or '0'}")
    lines += [pad + b for b in body]
    return lines


def run_time_loops(shape: Sequence[int], index_strides: dict[str, Sequence[int]], body: Sequence[str],
                   parallel: bool, indent: int = 1) -> list[str] | None:
    """nested_loops with the sizes read from a run-time `sizes` array (sizes[k] = shape[k]) and
    every stride derived from them: each operand's stride on an axis is 0 (broadcast) or the
    product of the sizes after it that the operand is not broadcast over, as for contiguous
    broadcasting operands of a collapsed shape. So every shape with the same broadcast pattern
    shares the source. None when a stride set is not of that form."""
    r = len(shape)
    derived: dict[str, list[str]] = {}
    for name, st in index_strides.items():
        mask = [s != 0 for s in st]
        terms = []
        for k in range(r):
            want = int(np.prod([shape[j] for j in range(k + 1, r) if mask[j]], dtype=np.int64))
            if mask[k] and st[k] != want:
                return None
            inner = [f"sizes[{j}]" for j in range(k + 1, r) if mask[j]]
            if mask[k]:
                terms.append(" * ".join([f"i{k}", *inner]))
        derived[name] = terms
    lines = []
    pad = "    " * indent
    for k in range(r):
        rng = "prange" if parallel and k == 0 else "range"
        lines.append(f"{pad}for i{k} in {rng}(sizes[{k}]):")
        pad += "    "
    for name, terms in derived.items():
        lines.append(f"{pad}{name} = {' + '.join(terms) or '0'}")
    return lines + [pad + b for b in body]


def as_array(x) -> np.ndarray:
    return np.ascontiguousarray(x)


plain_only = plain_only_for("cpu", "numba has no float16 on the cpu")


JOB_DECORATOR = "@njit(cache=True, nogil=True, fastmath={fastmath}, error_model='numpy', boundscheck=False)"


def job_function(args: str, body: Sequence[str]) -> str:
    """The source of a job kernel (KernelSource.jobs > 0): `def KERNEL_job(<args>, job)`, the
    job body given as lines indented for `for job in ...:`. The backend compiles it serially and
    runs its jobs through the shared launcher (launch.py), in parallel when the kernel is."""
    return "\n".join([f"def KERNEL_job({args}, job):", *(line.removeprefix("    ") for line in body)]) + "\n"


def parallel_jobs(args: str, jobs: int, body: Sequence[str], fastmath: bool = True) -> str:
    """A kernel that runs `jobs` jobs in a prange of its own and then more code of its own
    (append it to the returned source, indented for KERNEL's body): the job body becomes a
    serial function, so numba's parallel analysis sees one call instead of the whole body
    (a conv kernel's compile: 6.4 s -> 2 s). `job` is passed as an int64: the prange index is
    typed differently when the kernel is typed and when its parfor is lowered, and numba then
    compiled the job function twice. A kernel that is only its jobs is a job kernel instead
    (job_function), which needs no parallel compile at all."""
    inner = [line.removeprefix("    ") for line in body]
    return "\n".join([JOB_DECORATOR.format(fastmath=fastmath_option(fastmath)), f"def KERNEL_job({args}, job):", *inner, "",
                      "", f"def KERNEL({args}):", f"    for job in prange({jobs}):",
                      f"        KERNEL_job({args}, np.int64(job))"]) + "\n"


def run_time_sizes(node, *values: int) -> tuple[str, dict[str, np.ndarray]]:
    """The argument name and packed data of a shape-generic kernel's int64 sizes array."""
    name = f"{node.outputs[0].name}.sizes"
    return name, {name: np.array(values, np.int64)}
