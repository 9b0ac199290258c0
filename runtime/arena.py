"""Running a compiled program over preallocated arenas.

Graph inputs are copied into their arena slots, the compiled driver runs every kernel with no
Python in between, and outputs are copied out, so they never alias the arena. Nothing is
allocated per call except the returned outputs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from ..ir.types import DTYPES


class ArenaRunner:
    def __init__(self, compiled, threads: int | None = None):
        self.c = compiled
        self.threads = threads
        p = compiled.program
        self.arenas = {dt: np.zeros(max(n, 1), DTYPES[dt]) for dt, n in p.arena_sizes.items()}
        self.args = [self.arenas[a.split("_", 1)[1]] if a.startswith("arena_") else compiled.weights[a.split("_", 1)[1]]
                     for a in compiled.driver_args]

    def view(self, name: str) -> np.ndarray:
        """The flat array a value lives in: its arena slot, or its (packed) param data."""
        p = self.c.program
        if name in p.slots:
            s = p.slots[name]
            return self.arenas[s.dtype][s.offset:s.offset + s.size]
        if name in self.c.param_slots:
            s = self.c.param_slots[name]
            return self.c.weights[s.dtype][s.offset:s.offset + s.size]
        return p.params[name]

    def _load(self, feeds: Mapping[str, np.ndarray]) -> None:
        for v in self.c.program.graph.inputs:
            self.view(v.name)[:] = feeds[v.name].reshape(-1)

    def _outputs(self) -> list[np.ndarray]:
        g = self.c.program.graph
        return [self.view(o).reshape(g.type_of(o).shape).copy() for o in g.outputs]

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self._load(feeds)
        if self.threads:
            import numba

            numba.set_num_threads(self.threads)
        self.c.driver(*self.args)
        return self._outputs()

    def profile(self, feeds: Mapping[str, np.ndarray], repeat: int = 5) -> list[dict]:
        """Each launch run on its own, best of `repeat`: node, kernel, time, FLOPs, GFLOP/s."""
        self._load(feeds)
        rows = []
        for launch in self.c.program.launches:
            fn = self.c.kernels[launch.kernel]
            args = [self.view(a) for a in launch.args]
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn(*args)
                best = min(best, time.perf_counter() - t0)
            rows.append({"node": launch.node, "kernel": launch.kernel, "seconds": best, "flops": launch.flops,
                         "gflops": launch.flops / best / 1e9 if best > 0 else 0.0})
        return rows
