"""What `kiln.compile` returns: a compiled graph bound to a way of running it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..ir import Graph, Value
from ..ir.errors import InputError
from .device import is_device_array


def check_feeds(inputs: Sequence[Value], feeds: Mapping[str, np.ndarray],
                allow_device: bool = False) -> dict[str, np.ndarray]:
    """Check names, shapes and dtypes of `feeds` against the graph inputs; never copies.
    With `allow_device`, CUDA device arrays (anything with __cuda_array_interface__) pass too."""
    if not isinstance(feeds, Mapping):
        raise InputError(f"run() takes a dict of input name -> array, got {type(feeds).__name__}")
    expected = {v.name: v for v in inputs}
    unknown = sorted(set(feeds) - set(expected))
    missing = [n for n in expected if n not in feeds]
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing input(s) {missing}")
        if unknown:
            parts.append(f"unknown input(s) {unknown}")
        want = ", ".join(f"{v.name}: {v.type}" for v in inputs)
        raise InputError(f"{'; '.join(parts)}; the graph takes {want}")
    out = {}
    for name, v in expected.items():
        x = feeds[name]
        device = allow_device and is_device_array(x)
        if not isinstance(x, np.ndarray) and not device:
            what = "a numpy or CUDA device array" if allow_device else "a numpy array"
            raise InputError(f"input {name!r}: expected {what} {v.type}, got {type(x).__name__}")
        if np.dtype(x.dtype) != v.type.np_dtype:
            raise InputError(f"input {name!r}: expected dtype {v.type.np_dtype} ({v.type}), given {x.dtype}")
        if tuple(x.shape) != v.type.shape:
            raise InputError(f"input {name!r}: expected shape {list(v.type.shape)}, given {list(x.shape)}")
        out[name] = x
    return out


class Executable:
    """A compiled graph. `run(feeds)` returns the outputs in graph order as fresh arrays."""

    def __init__(self, graph: Graph, runner: Callable[[dict[str, np.ndarray]], list[np.ndarray]],
                 target: str, passes: Sequence = (), profiler: Callable | None = None, compiled=None):
        self.graph = graph
        self.target = target
        self.passes = tuple(passes)  # PassRecord per pass run, in order
        self.compiled = compiled  # the backend's program and kernels (None for the reference target)
        self._runner = runner
        self._profiler = profiler

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return list(self.graph.outputs)

    def run(self, feeds: Mapping[str, np.ndarray], *, into: Mapping[str, object] | None = None) -> list[np.ndarray]:
        """The outputs in graph order. `into` (cuda target only) maps output names to device
        arrays of their shape and dtype, written in place and returned as they are."""
        feeds = check_feeds(self.graph.inputs, feeds, allow_device=self.target == "cuda")
        if not into:
            return self._runner(feeds)
        if self.target != "cuda":
            raise InputError(f"run(into=...) writes device arrays: only the cuda target takes it, not {self.target!r}")
        for name, arr in into.items():
            if name not in self.graph.outputs:
                raise InputError(f"into: {name!r} is not an output; outputs: {list(self.graph.outputs)}")
            t = self.graph.type_of(name)
            if tuple(arr.shape) != t.shape or np.dtype(arr.dtype) != t.np_dtype:
                raise InputError(f"into {name!r}: expected {t.dtype}{list(t.shape)}, given "
                                 f"{np.dtype(arr.dtype)}{list(arr.shape)}")
            if any(arr is f for f in feeds.values()):
                raise InputError(f"into {name!r}: the array is also an input; outputs must not overwrite inputs")
        return self._runner(feeds, into=into)

    @property
    def returned(self) -> str:
        """Where the last run's outputs live: "host" (numpy arrays) or "device" (CUDA device
        arrays: the cuda target returns those when every input was a device array)."""
        return getattr(self._runner, "returned", "host")

    def profile(self, feeds: Mapping[str, np.ndarray], repeat: int = 5) -> list[dict]:
        """Per kernel launch: node, kernel, best time of `repeat` runs, FLOPs, GFLOP/s."""
        if self._profiler is None:
            raise InputError(f"target {self.target!r} runs no kernels to profile; compile for 'cpu'")
        return self._profiler(check_feeds(self.graph.inputs, feeds, allow_device=self.target == "cuda"), repeat)

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        names = self.input_names
        if len(arrays) != len(names):
            raise InputError(f"expected {len(names)} positional input(s) {names}, given {len(arrays)}")
        return self.run(dict(zip(names, arrays, strict=True)))

    def __repr__(self) -> str:
        return (f"Executable({self.graph.name!r}, target={self.target!r}, "
                f"{len(self.graph.nodes)} nodes, inputs={self.input_names})")
