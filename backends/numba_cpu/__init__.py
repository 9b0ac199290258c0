"""The numba CPU backend: lower a graph to generated numba kernels and one driver that runs the
whole launch list in compiled code.

Two thread pools must not fight over the cores. The OpenBLAS that numba's np.dot calls (scipy's
copy) runs single-threaded: its idle threads spin after every call and stalled the next kernels'
workers (ResNet-18 batch 1: 18-24 ms per run instead of 12.5 here). numba's OpenMP workers then
have the cores to themselves, so between kernels they spin briefly before sleeping
(GOMP_SPINCOUNT=1e6, about a millisecond) and stay bound to their cores: sleeping at once
(OMP_WAIT_POLICY=passive) cost 13.4 ms instead of 10.1, spinning forever slowed onnxruntime
running after kiln in the same process by half. Set before numba starts its pool, and only
where the user has not set them. numpy's own BLAS is left as the user set it.
"""

from __future__ import annotations

import os

os.environ.setdefault("GOMP_SPINCOUNT", "1000000")
os.environ.setdefault("OMP_PROC_BIND", "true")
# The binding pins the process's main thread to one core once numba's pool starts, and child
# processes inherit that: the kernel compile workers would share one core. They are given back
# the CPUs this process had before (read now, before the pool starts).
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

from .build import CompiledProgram, build


def _single_threaded_numba_blas() -> None:
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS numba's np.dot calls)
    from threadpoolctl import ThreadpoolController

    for lib in ThreadpoolController().lib_controllers:
        if "scipy.libs" in lib.filepath or "scipy/.libs" in lib.filepath:
            lib.set_num_threads(1)


_single_threaded_numba_blas()

__all__ = ["CompiledProgram", "build"]
