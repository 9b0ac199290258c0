"""The numba CPU backend: lower a graph to generated numba kernels and one driver that runs the
whole launch list in compiled code.

numba's OpenMP workers spin while idle and steal the cores from OpenBLAS between kernels unless
told to wait passively and stay bound, so those are set (unless the user set them) before numba
starts its thread pool.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("OMP_PROC_BIND", "true")

from .build import CompiledProgram, build

__all__ = ["CompiledProgram", "build"]
