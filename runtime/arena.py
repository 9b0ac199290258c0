"""Running a compiled program over preallocated arenas.

The compiled driver runs every kernel with no Python in between. Graph inputs are read in place
from the caller's arrays (never written), and graph outputs are written into fresh arrays that
are returned, so outputs never alias the arena. Nothing is allocated per call but the outputs.
Job kernels are called by address (see backends/numba_cpu/launch.py): their table of array
addresses is filled once per workspace, and only the rows naming graph inputs or outputs are
rewritten per call.

Concurrency: a `Workspace` is everything a call writes (the arenas and the job table that points
into them); weights are read-only and shared. Each call takes a free workspace from the runner's
pool, or makes one when every workspace is busy, so calls from several threads run side by side
(the driver releases the GIL) and never see each other's intermediates. At most `max_workspaces`
exist (one arena's worth of memory each); a caller beyond that waits for one to come back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping

import numpy as np

from ..backends.numba_cpu.codegen import job_launches
from ..backends.numba_cpu.launch import argv_for, launch_parallel, launch_serial
from ..ir.types import DTYPES


class Workspace:
    """One call's private state: arenas, the driver's argument list and its job table."""

    def __init__(self, compiled, launches):
        self.c = compiled
        p = compiled.program
        self.arenas = {dt: np.zeros(max(n, 1), DTYPES[dt]) for dt, n in p.arena_sizes.items()}
        self.base_args = [self.arenas[a.split("_", 1)[1]] if a.startswith("arena_")
                          else compiled.weights[a.split("_", 1)[1]] for a in compiled.driver_args
                          if a.startswith(("arena_", "weights_"))]
        self.external: dict[str, np.ndarray] = {}
        self._job_table(launches)

    def _job_table(self, launches) -> None:
        """The driver's job table: callback addresses, and per launch (address, size) of each
        array; entries for graph inputs and outputs are filled per call (`bind`)."""
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

    def bind(self, feeds: Mapping[str, np.ndarray]) -> None:
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

    def run(self) -> list[np.ndarray]:
        self.c.driver(*self.base_args, *(self.external[v] for v in self.c.program.external))
        return self.outputs()

    def outputs(self) -> list[np.ndarray]:
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


def _default_max_workspaces() -> int:
    return max(2, min(8, os.cpu_count() or 1))


class ArenaRunner:
    def __init__(self, compiled, threads: int | None = None, max_workspaces: int | None = None):
        self.c = compiled
        self.threads = threads
        self.max_workspaces = max_workspaces or _default_max_workspaces()
        self._launches = job_launches(compiled.program)
        self._free = [Workspace(compiled, self._launches)]
        self._made = 1
        self._cond = threading.Condition()
        # numba's workqueue threading layer aborts the process when two threads enter parallel
        # regions at once; the omp and tbb layers allow it. Decided after the first call, when
        # numba has chosen its layer.
        self._serial: bool | None = None
        self._serial_lock = threading.Lock()

    @property
    def workspaces(self) -> int:
        """How many workspaces (arena copies) this runner has made so far."""
        return self._made

    def _acquire(self) -> Workspace:
        with self._cond:
            while not self._free and self._made >= self.max_workspaces:
                self._cond.wait()
            if self._free:
                return self._free.pop()
            self._made += 1
        return Workspace(self.c, self._launches)  # allocate outside the lock

    def _release(self, ws: Workspace) -> None:
        with self._cond:
            self._free.append(ws)
            self._cond.notify()

    def _drive(self, ws: Workspace) -> list[np.ndarray]:
        if self.threads:
            import numba

            numba.set_num_threads(self.threads)  # thread-local in numba: this call's threads only
        if self._serial is None:
            with self._serial_lock:
                out = ws.run()
                if self._serial is None:
                    self._serial = _threading_layer() == "workqueue"
                return out
        if self._serial:
            with self._serial_lock:
                return ws.run()
        return ws.run()

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        ws = self._acquire()
        try:
            ws.bind(feeds)
            return self._drive(ws)
        finally:
            ws.external = {}  # hold no reference to the caller's arrays between calls
            self._release(ws)

    def profile(self, feeds: Mapping[str, np.ndarray], repeat: int = 5) -> list[dict]:
        """Each launch run on its own, best of `repeat`: node, kernel, time, FLOPs, GFLOP/s."""
        ws = self._acquire()
        try:
            ws.bind(feeds)
            rows = []
            for launch in self.c.program.launches:
                fn, args = self.c.kernels[launch.kernel], [ws.view(a) for a in launch.args]
                k = self.c.program.kernels[launch.kernel]
                if k.jobs:
                    fn, args = (launch_parallel if k.parallel else launch_serial), (fn.address, argv_for(args), launch.jobs)
                best = float("inf")
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    fn(*args)
                    best = min(best, time.perf_counter() - t0)
                rows.append({"node": launch.node, "kernel": launch.kernel, "seconds": best, "flops": launch.flops,
                             "gflops": launch.flops / best / 1e9 if best > 0 else 0.0})
            return rows
        finally:
            ws.external = {}
            self._release(ws)


def _threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet: nothing to serialise against
        return "unknown"
