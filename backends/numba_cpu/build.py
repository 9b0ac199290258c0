"""Build a CompiledProgram: lower, write the modules, compile what the cache lacks (in worker
processes when there are several), load the driver."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...ir import Graph
from ...ir.types import DTYPES, dtype_of
from ..lowering import Program, Slot, lower
from . import CPUS, codegen
from .kernels import TEMPLATES


@dataclass
class CompiledProgram:
    """A lowered program with its compiled driver and kernels, and its weights packed per dtype."""

    program: Program
    driver: object
    driver_args: list[str]
    kernels: dict[str, object]
    weights: dict[str, np.ndarray]
    param_slots: dict[str, Slot]
    sources: dict[str, str]
    compile_seconds: float
    compiled_kernels: int  # kernels compiled now (the rest came from the cache)
    stats: dict = field(default_factory=dict)


def pack_weights(p: Program) -> tuple[dict[str, np.ndarray], dict[str, Slot]]:
    """Every param a launch reads, laid end to end in one array per dtype."""
    external = set(p.external)
    used = [a for launch in p.launches for a in launch.args if a not in p.slots and a not in external]
    slots: dict[str, Slot] = {}
    sizes: dict[str, int] = {}
    for name in dict.fromkeys(used):
        data = p.params[name]
        dt = dtype_of(data)
        slots[name] = Slot(dt, sizes.get(dt, 0), data.size)
        sizes[dt] = sizes.get(dt, 0) + max(data.size, 1)
    weights = {dt: np.zeros(n, DTYPES[dt]) for dt, n in sizes.items()}
    for name, s in slots.items():
        weights[s.dtype][s.offset:s.offset + s.size] = p.params[name]
    return weights, slots


def _compile_all(names: list[str], workers: int) -> None:
    """Compile the modules the cache lacks: split across `workers` fresh Python processes (numba
    holds the GIL while compiling, so threads would not help), then load them all here."""
    todo = [n for n in names if not codegen.is_compiled(n)]
    if len(todo) > 1 and workers > 1:
        path = str(codegen.cache_dir())
        procs = []
        # the CPUs this process had before OpenMP pinned it to one (see __init__.py); and no
        # binding of their own: importing a kernel module starts numba's pool, which would pin
        # every worker's main thread to the first core again (two workers on one core: ResNet-50
        # compiled in 42 s instead of 25)
        unpin = f"import os, contextlib\nwith contextlib.suppress(OSError):\n    os.sched_setaffinity(0, {CPUS!r})\n" \
            if CPUS else ""
        env = {**os.environ, "OMP_PROC_BIND": "false"}
        for chunk in (todo[i::workers] for i in range(workers)):
            # through codegen.load: the entry locks, checksums and healing hold in the workers too
            code = unpin + f"import sys; sys.path.insert(0, {path!r})\nfrom pathlib import Path\n" + \
                f"from kiln.backends.numba_cpu import codegen\ncodegen.FOLDER = Path({path!r})\n" + \
                "".join(f"codegen.load({n!r})\n" for n in chunk)
            procs.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True, env=env))
        for proc in procs:
            proc.communicate()  # a failure is ignored: loading below compiles it again and raises
    for n in names:
        codegen.load(n)


def _in_order(parts):
    """One driver running its compiled parts one after another (codegen.DRIVER_PART)."""
    def run(*args):
        for part in parts:
            part(*args)
    return run


def build(g: Graph, dump_dir: str | Path | None = None, workers: int | None = None) -> CompiledProgram:
    t0 = time.perf_counter()
    p = lower(g, TEMPLATES, "cpu")
    weights, param_slots = pack_weights(p)
    sources = {}
    for k in p.kernels.values():
        sources[k.name] = codegen.kernel_source(k)
        codegen.write_module(k.name, sources[k.name])
    fresh = [k for k in p.kernels if not codegen.is_compiled(k)]
    workers = workers or min(2, multiprocessing.cpu_count())
    _compile_all(list(p.kernels), workers)
    texts, args = codegen.driver_sources(p, param_slots)
    names = []
    for text in texts:
        name = "kiln_run_" + hashlib.sha1(text.encode()).hexdigest()[:12]
        sources[name] = text.replace("DRIVER", name)
        codegen.write_module(name, sources[name])
        names.append(name)
    _compile_all(names, workers)
    parts = [getattr(codegen.load(n), n) for n in names]
    driver = parts[0] if len(parts) == 1 else _in_order(parts)
    kernels = {k: getattr(codegen.load(k), k) for k in p.kernels}
    cp = CompiledProgram(p, driver, args, kernels, weights, param_slots, sources,
                         time.perf_counter() - t0, len(fresh))
    if dump_dir is not None:
        write_sources(cp, Path(dump_dir))
    return cp


def write_sources(cp: CompiledProgram, d: Path) -> None:
    """Kernel sources beside the IR dumps, each headed by the nodes that launch it."""
    kdir = d / "kernels"
    kdir.mkdir(parents=True, exist_ok=True)
    for k in cp.program.kernels.values():
        head = "".join(f"# launched by {n}\n" for n in k.nodes)
        (kdir / f"{k.name}.py").write_text(head + cp.sources[k.name])
    parts = [n for n in cp.sources if n.startswith("kiln_run_")]
    for k, name in enumerate(parts):
        (kdir / ("driver.py" if len(parts) == 1 else f"driver_{k + 1}.py")).write_text(cp.sources[name])
