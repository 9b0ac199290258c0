"""Compile a lowered program for CUDA: kernel sources are executed into functions decorated
with `cuda.jit` (numba compiles each on its first launch), params are uploaded to the device
once, and the arenas are allocated once."""

from __future__ import annotations

import linecache
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...ir import Graph
from ...ir.errors import UnsupportedError
from ..lowering import Kernel, Program, lower
from .kernels import TEMPLATES

HEADER = """\
import math
import numpy as np
from numba import cuda, float32, float64
"""


def require_device():
    """numba.cuda, once a device (or the simulator) is there; else a clear error."""
    try:
        from numba import cuda
    except ImportError as e:
        raise UnsupportedError(f"target 'cuda' needs numba-cuda: pip install numba-cuda ({e})") from None
    if cuda.is_available():
        return cuda
    sim = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    raise UnsupportedError(
        "target 'cuda': no CUDA device found" + (" (the simulator was asked for after numba had started)" if sim
                                                 else "") +
        ". To run kiln's CUDA kernels without a GPU, in Numba's simulator (slow: for tests on tiny "
        "shapes), start Python with NUMBA_ENABLE_CUDASIM=1 set in the environment")


@dataclass
class CompiledCuda:
    program: Program
    kernels: dict[str, object]
    sources: dict[str, str]
    weights: dict[str, object]  # param name -> flat device array
    arenas: dict[str, object]  # dtype -> device array
    compile_seconds: float
    stats: dict = field(default_factory=dict)


def kernel_source(k: Kernel, grids: list) -> str:
    launch = "; ".join(sorted({f"grid {g[0]} x block {g[1]}" for g in grids}))
    body = k.body.rstrip().replace(f"def {k.name}(", f"@cuda.jit\ndef {k.name}(", 1)
    return f"# kiln cuda kernel: {k.note}\n# launch: {launch}\n{HEADER}\n\n{body}\n"


def _load(name: str, source: str):
    """Execute the kernel module's source; registering it with linecache makes tracebacks (and
    the simulator's errors) show the generated lines."""
    filename = f"<kiln-cuda {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    ns: dict = {}
    exec(compile(source, filename, "exec"), ns)  # noqa: S102  (our own generated kernel source)
    return ns[name]


def build(g: Graph, dump_dir: str | Path | None = None) -> CompiledCuda:
    cuda = require_device()
    t0 = time.perf_counter()
    p = lower(g, TEMPLATES, "cuda")
    grids: dict[str, list] = {}
    for launch in p.launches:
        grids.setdefault(launch.kernel, []).append(launch.grid)
    sources = {k.name: kernel_source(k, grids[k.name]) for k in p.kernels.values()}
    kernels = {name: _load(name, src) for name, src in sources.items()}
    used = {a for launch in p.launches for a in launch.args if a in p.params and a not in p.slots}
    weights = {name: cuda.to_device(np.ascontiguousarray(p.params[name])) for name in sorted(used)}
    arenas = {dt: cuda.device_array(max(n, 1), dtype=np.dtype(_np(dt))) for dt, n in p.arena_sizes.items()}
    cc = CompiledCuda(p, kernels, sources, weights, arenas, time.perf_counter() - t0)
    if dump_dir is not None:
        write_sources(cc, Path(dump_dir))
    return cc


def _np(dt: str):
    from ...ir.types import DTYPES

    return DTYPES[dt]


def write_sources(cc: CompiledCuda, d: Path) -> None:
    """Kernel sources beside the IR dumps, each headed by the nodes that launch it, and the
    launch list with every launch's grid."""
    kdir = d / "kernels"
    kdir.mkdir(parents=True, exist_ok=True)
    for k in cc.program.kernels.values():
        head = "".join(f"# launched by {n}\n" for n in k.nodes)
        (kdir / f"{k.name}.py").write_text(head + cc.sources[k.name])
    lines = [f"# kiln cuda launch list for graph {cc.program.graph.name!r}"]
    lines += [f"{launch.kernel}[{launch.grid[0]}, {launch.grid[1]}]({', '.join(launch.args)})  # {launch.node}"
              for launch in cc.program.launches]
    (kdir / "launches.py").write_text("\n".join(lines) + "\n")
