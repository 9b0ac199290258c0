"""The numba CPU backend: lower a graph to generated numba kernels and one driver that runs the
whole launch list in compiled code.

Two thread pools must not fight over the cores. numba's OpenMP workers are told to wait
passively and stay bound (unless the user set otherwise) before numba starts its pool; and the
OpenBLAS that numba's np.dot calls (scipy's copy) runs single-threaded, since its idle threads
spin after every call and stalled the next kernels' workers: ResNet-18 took 18-24 ms per run
instead of 12.5 here. numpy's own BLAS is left as the user set it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("OMP_PROC_BIND", "true")

from .build import CompiledProgram, build  # noqa: E402


def _single_threaded_numba_blas() -> None:
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS numba's np.dot calls)
    from threadpoolctl import ThreadpoolController

    for lib in ThreadpoolController().lib_controllers:
        if "scipy.libs" in lib.filepath or "scipy/.libs" in lib.filepath:
            lib.set_num_threads(1)


_single_threaded_numba_blas()

__all__ = ["CompiledProgram", "build"]
