"""Generated modules: kernel and driver sources written to the kernel cache and imported.

Every kernel is a module of its own, named after the hash of its source and signature, in a
cache directory keyed by the numba, llvmlite and Python versions (`$KILN_CACHE_DIR` or
`~/.cache/kiln`). Functions carry an explicit signature and `cache=True`, so importing a module
compiles it once and later processes load the machine code from numba's cache beside it.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path

import llvmlite
import numba

from ..lowering import Kernel, Program, Slot

HEADER = """\
import math
import numpy as np
from numba import njit, prange
from kiln.backends.numba_cpu.simd import vadd, vfma, vlane, vload, vmax, vmin, vmul, vsigmoid, vsplat, vstore, vsum, vzero
"""

NUMBA_TYPES = {"f16": "float16", "f32": "float32", "f64": "float64", "i8": "int8", "u8": "uint8",
               "i16": "int16", "u16": "uint16", "i32": "int32", "u32": "uint32", "i64": "int64",
               "u64": "uint64", "bool": "boolean"}


def cache_dir() -> Path:
    root = Path(os.environ.get("KILN_CACHE_DIR") or Path.home() / ".cache" / "kiln")
    tag = f"numba{numba.__version__}-llvmlite{llvmlite.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    path = root / tag
    path.mkdir(parents=True, exist_ok=True)
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    return path


def signature(dtypes) -> str:
    return "void(" + ", ".join(f"{NUMBA_TYPES[d]}[::1]" for d in dtypes) + ")"


def kernel_source(k: Kernel) -> str:
    deco = (f"@njit({signature(k.arg_dtypes)!r}, cache=True, nogil=True, parallel={k.parallel}, "
            f"fastmath={k.fastmath}, error_model='numpy', boundscheck=False)")
    body = k.body.rstrip().replace(f"def {k.name}(", f"{deco}\ndef {k.name}(", 1)
    return f"# kiln kernel: {k.note}\n{HEADER}\n\n{body}\n"


def _write(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return  # unchanged: keep its timestamp so numba's cache stays valid
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_module(name: str, text: str) -> Path:
    path = cache_dir() / f"{name}.py"
    _write(path, text)
    return path


def is_compiled(name: str) -> bool:
    """True when numba's cache holds machine code for module `name` (an index file exists)."""
    pycache = cache_dir() / "__pycache__"
    return any(pycache.glob(f"{name}.*.nbi"))


def load(name: str):
    return importlib.import_module(name)


# -- the driver: the whole launch list in one compiled function -------------------------------------
def _view(arena: str, s: Slot) -> str:
    return f"{arena}[{s.offset}:{s.offset + s.size}]"


def driver_source(p: Program, param_slots: dict[str, Slot], name: str) -> tuple[str, list[str]]:
    """Source of `run(arenas..., weights..., externals...)` calling every kernel in order;
    returns the source and the argument names: arena_<dtype>, weights_<dtype>, then x0, x1, ...
    for the program's external values (graph inputs, then outputs), in that order."""
    arena_args = [f"arena_{d}" for d in sorted(p.arena_sizes)]
    weight_args = sorted({f"weights_{s.dtype}" for s in param_slots.values()})
    ext = {v: f"x{i}" for i, v in enumerate(p.external)}
    args = arena_args + weight_args + list(ext.values())
    types = p.graph.values
    dtypes = [a.split("_", 1)[1] for a in arena_args + weight_args] + [types[v].type.dtype for v in ext]

    def ref(value: str) -> str:
        if value in ext:
            return ext[value]
        if value in p.slots:
            return _view(f"arena_{p.slots[value].dtype}", p.slots[value])
        s = param_slots[value]
        return _view(f"weights_{s.dtype}", s)

    imports = [f"from {k} import {k}" for k in sorted({launch.kernel for launch in p.launches})]
    lines = [f"# kiln driver for graph {p.graph.name!r}: {len(p.launches)} launches", HEADER, *imports, "",
             f"@njit({signature(dtypes)!r}, cache=True, nogil=True)",
             f"def {name}({', '.join(args)}):"]
    for launch in p.launches:
        lines.append(f"    {launch.kernel}({', '.join(ref(a) for a in launch.args)})  # {launch.node}")
    if not p.launches:
        lines.append("    pass")
    return "\n".join(lines) + "\n", args
