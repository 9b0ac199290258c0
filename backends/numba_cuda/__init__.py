"""The numba CUDA backend: the shared lowering renders each node to a `@cuda.jit` kernel, with
its launch configuration chosen from the shapes; weights are uploaded once, activations live in
one device arena per dtype planned by reuse_buffers, and a run launches every kernel in order.

Without a GPU, Numba's simulator runs the same kernels on the CPU (thread by thread, so only on
tiny shapes): set NUMBA_ENABLE_CUDASIM=1 before Python starts.
"""

from __future__ import annotations

from .build import CompiledCuda, build, require_device

__all__ = ["CompiledCuda", "build", "require_device"]
