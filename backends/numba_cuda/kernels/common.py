"""Helpers for CUDA kernel templates.

A template is `render(node, in_types, out_types) -> KernelSource` whose body defines
`def KERNEL(<flat device arrays>):`, a numba CUDA kernel (the build adds `@cuda.jit`), and whose
`grid` is its launch configuration (blocks, threads per block), chosen from the shapes. Sizes
are literals in the source, as on the CPU target.
"""

from __future__ import annotations

from ...lowering import KernelSource  # noqa: F401  (re-exported for templates)
from ...templating import NP_NAMES, broadcast_strides, collapse, lit, plain_only_for, strides  # noqa: F401  (re-exported)

THREADS = 256  # threads per block of a one-thread-per-element kernel
TILE = 16  # side of the shared-memory tiles of the matrix-product kernels
CUDA_TYPES = {"f32": "float32", "f64": "float64"}  # dtypes of shared-memory arrays


def grid1(n: int, threads: int = THREADS) -> tuple[int, int]:
    """One thread per element of n (at least one block)."""
    return (max(1, -(-n // threads)), threads)


def decompose(index: str, shape, prefix: str = "i") -> list[str]:
    """Lines splitting flat `index` into coordinates {prefix}0.. of a row-major `shape`."""
    st = strides(shape)
    lines, rest = [], index
    for k, s in enumerate(st):
        if k == len(st) - 1:
            lines.append(f"{prefix}{k} = {rest}")
        else:
            lines.append(f"{prefix}{k} = {rest} // {s}")
            lines.append(f"r{prefix}{k} = {rest} - {prefix}{k} * {s}")
            rest = f"r{prefix}{k}"
    return lines


def offset(prefix: str, st) -> str:
    """Flat offset from coordinates {prefix}k and strides `st` (zero strides dropped)."""
    terms = [f"{prefix}{k} * {s}" if s != 1 else f"{prefix}{k}" for k, s in enumerate(st) if s]
    return " + ".join(terms) or "0"


plain_only = plain_only_for("cuda", "float16 is not built for the cuda target")


def indent(lines, n: int = 1) -> str:
    pad = "    " * n
    return "\n".join(pad + line for line in lines)
