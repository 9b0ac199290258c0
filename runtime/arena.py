"""Running a compiled program over preallocated arenas.

The compiled driver runs every kernel with no Python in between. Graph inputs are read in place
from the caller's arrays (never written), and graph outputs are written into fresh arrays that
are returned, so outputs never alias the arena. Nothing is allocated per call but the outputs.
Job kernels are called by address (see backends/numba_cpu/launch.py): their table of array
addresses is filled once here, and only the rows naming graph inputs or outputs are rewritten
per call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from ..backends.numba_cpu.codegen import job_launches
from ..backends.numba_cpu.launch import argv_for, launch_parallel, launch_serial
from ..ir.types import DTYPES


class ArenaRunner:
    def __init__(self, compiled, threads: int | None = None):
        self.c = compiled
        self.threads = threads
        p = compiled.program
        self.arenas = {dt: np.zeros(max(n, 1), DTYPES[dt]) for dt, n in p.arena_sizes.items()}
        self.base_args = [self.arenas[a.split("_", 1)[1]] if a.startswith("arena_")
                          else compiled.weights[a.split("_", 1)[1]] for a in compiled.driver_args
                          if a.startswith(("arena_", "weights_"))]
        self.external: dict[str, np.ndarray] = {}
        self._job_table(job_launches(p))

    def _job_table(self, launches) -> None:
        """The driver's job table: callback addresses, and per launch (address, size) of each
        array; entries for graph inputs and outputs are filled per call (`_ext_entries`)."""
        self._ext_entries: list[tuple[int, int, str]] = []
        if not launches:
            return
        self.job_fns = np.array([self.c.kernels[launch.kernel].address for launch in launches], np.int64)
        self.job_argv = np.zeros((len(launches), 2 * max(len(launch.args) for launch in launches)), np.int64)
        for i, launch in enumerate(launches):
            for j, name in enumerate(launch.args):
                if name in self.c.program.external:
                    self._ext_entries.append((i, 2 * j, name))
                else:
                    a = self.view(name)
                    self.job_argv[i, 2 * j], self.job_argv[i, 2 * j + 1] = a.ctypes.data, a.size
        self.base_args += [self.job_fns, self.job_argv]

    def view(self, name: str) -> np.ndarray:
        """The flat array a value lives in: the caller's input or output array, its arena slot,
        or its (packed) param data."""
        p = self.c.program
        if name in self.external:
            return self.external[name]
        if name in p.slots:
            s = p.slots[name]
            return self.arenas[s.dtype][s.offset:s.offset + s.size]
        if name in self.c.param_slots:
            s = self.c.param_slots[name]
            return self.c.weights[s.dtype][s.offset:s.offset + s.size]
        return p.params[name]

    def _bind(self, feeds: Mapping[str, np.ndarray]) -> None:
        g = self.c.program.graph
        ext = {}
        for v in g.inputs:
            x = np.ascontiguousarray(feeds[v.name]).reshape(-1)
            # kernels never write their inputs, but their signatures take writeable arrays
            ext[v.name] = x if x.flags.writeable else x.copy()
        for o in self.c.program.external[len(g.inputs):]:
            ext[o] = np.empty(g.type_of(o).numel, g.type_of(o).np_dtype)
        self.external = ext
        for i, j, name in self._ext_entries:
            self.job_argv[i, j], self.job_argv[i, j + 1] = ext[name].ctypes.data, ext[name].size

    def _outputs(self) -> list[np.ndarray]:
        g = self.c.program.graph
        written = set(self.c.program.external[len(g.inputs):])
        out, seen = [], set()
        for o in g.outputs:
            arr = self.view(o)
            if o not in written or o in seen:  # an input, a param, or listed twice: copy, never alias
                arr = arr.copy()
            seen.add(o)
            out.append(arr.reshape(g.type_of(o).shape))
        return out

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self._bind(feeds)
        if self.threads:
            import numba

            numba.set_num_threads(self.threads)
        self.c.driver(*self.base_args, *(self.external[v] for v in self.c.program.external))
        return self._outputs()

    def profile(self, feeds: Mapping[str, np.ndarray], repeat: int = 5) -> list[dict]:
        """Each launch run on its own, best of `repeat`: node, kernel, time, FLOPs, GFLOP/s."""
        self._bind(feeds)
        rows = []
        for launch in self.c.program.launches:
            fn, args = self.c.kernels[launch.kernel], [self.view(a) for a in launch.args]
            k = self.c.program.kernels[launch.kernel]
            if k.jobs:
                fn, args = (launch_parallel if k.parallel else launch_serial), (fn.address, argv_for(args), k.jobs)
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn(*args)
                best = min(best, time.perf_counter() - t0)
            rows.append({"node": launch.node, "kernel": launch.kernel, "seconds": best, "flops": launch.flops,
                         "gflops": launch.flops / best / 1e9 if best > 0 else 0.0})
        return rows

