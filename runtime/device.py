"""Running a compiled CUDA program: one device arena per dtype and the weights stay on the
device; a run launches every kernel in order.

Inputs may be numpy arrays (copied into device buffers allocated once) or device arrays (read
in place, never written). Outputs are written into device buffers allocated once and come back
as numpy arrays when any input was a numpy array, or as fresh device arrays (copied on the
device, so they never alias the runner's buffers) when every input was already on the device;
`returned` says which the last run gave. `into` names outputs to write straight into the
caller's device arrays instead (no copies): a trainer keeps its weights and optimizer state on
the device that way, reading one set and writing the other each step.

One CUDA program has one device arena, so runs from several threads take turns (a lock around
each run): every caller gets its own correct outputs, and the device is busy with one run at a
time, as it would be anyway with kernels launched on the default stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import numpy as np


def is_device_array(x) -> bool:
    """A CUDA device array (numba's, or anything with __cuda_array_interface__; the simulator's
    stand-in has only numba's methods)."""
    if isinstance(x, np.ndarray):
        return False
    return hasattr(x, "__cuda_array_interface__") or (hasattr(x, "copy_to_host") and hasattr(x, "shape"))


class DeviceRunner:
    def __init__(self, compiled):
        from numba import cuda

        self.c = compiled
        self.cuda = cuda
        self.external: dict[str, object] = {}
        self.returned = "host"
        self._lock = threading.Lock()
        g = compiled.program.graph
        # staging for numpy inputs and the outputs kernels write: allocated once, reused per run
        self.buffers = {name: cuda.device_array(max(g.type_of(name).numel, 1), dtype=g.type_of(name).np_dtype)
                        for name in compiled.program.external}

    def view(self, name: str):
        p = self.c.program
        if name in self.external:
            return self.external[name]
        if name in p.slots:
            s = p.slots[name]
            return self.c.arenas[s.dtype][s.offset:s.offset + s.size]
        if name not in self.c.weights:  # a param no kernel reads (a graph output): upload it once
            self.c.weights[name] = self.cuda.to_device(p.params[name])
        return self.c.weights[name]

    def _bind(self, feeds: Mapping[str, object], into: Mapping[str, object]) -> bool:
        g = self.c.program.graph
        on_device = all(is_device_array(feeds[v.name]) for v in g.inputs) and bool(g.inputs)
        ext = {}
        for v in g.inputs:
            x = feeds[v.name]
            if is_device_array(x):
                ext[v.name] = x.reshape(v.type.numel)
            else:
                buf = self.buffers[v.name]
                if v.type.numel:
                    buf[:v.type.numel].copy_to_device(np.ascontiguousarray(x).reshape(-1))
                ext[v.name] = buf
        for o in self.c.program.external[len(g.inputs):]:
            ext[o] = into[o].reshape(g.type_of(o).numel) if o in into else self.buffers[o]
        self.external = ext
        return on_device

    def _launch_all(self) -> None:
        for launch in self.c.program.launches:
            blocks, threads = launch.grid
            self.c.kernels[launch.kernel][blocks, threads](*(self.view(a) for a in launch.args))

    def __call__(self, feeds: Mapping[str, object], into: Mapping[str, object] | None = None) -> list:
        with self._lock:
            return self._run(feeds, into or {})

    def _run(self, feeds: Mapping[str, object], into: Mapping[str, object]) -> list:
        on_device = self._bind(feeds, into)
        self._launch_all()
        g = self.c.program.graph
        written = set(self.c.program.external[len(g.inputs):])
        outs = []
        for o in g.outputs:
            t = g.type_of(o)
            arr = self.view(o)
            arr = arr[:t.numel] if t.numel else arr[:0]
            if o in into:  # the caller's array; an output no kernel writes (an input) is copied in
                if o not in written and t.numel:
                    into[o].reshape(t.numel).copy_to_device(arr)
                outs.append(into[o])
            elif on_device:  # a fresh device array: never the runner's buffers or the caller's input
                fresh = self.cuda.device_array(max(t.numel, 1), dtype=t.np_dtype)
                if t.numel:
                    fresh[:t.numel].copy_to_device(arr)
                outs.append(fresh[:t.numel].reshape(t.shape))
            else:
                outs.append(arr.copy_to_host().reshape(t.shape))
        self.returned = "device" if on_device else "host"
        self.external = {}
        return outs

    def profile(self, feeds: Mapping[str, object], repeat: int = 5) -> list[dict]:
        """Each launch on its own, synchronised, best of `repeat`."""
        with self._lock:
            return self._profile(feeds, repeat)

    def _profile(self, feeds: Mapping[str, object], repeat: int) -> list[dict]:
        self._bind(feeds, {})
        rows = []
        for launch in self.c.program.launches:
            fn = self.c.kernels[launch.kernel][launch.grid[0], launch.grid[1]]
            args = [self.view(a) for a in launch.args]
            best = float("inf")
            for _ in range(repeat):
                self.cuda.synchronize()
                t0 = time.perf_counter()
                fn(*args)
                self.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
            rows.append({"node": launch.node, "kernel": launch.kernel, "seconds": best, "flops": launch.flops,
                         "gflops": launch.flops / best / 1e9 if best > 0 else 0.0})
        return rows
