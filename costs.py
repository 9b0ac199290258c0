"""The CPU target's layout cost model, measured on this machine (see passes/cost_model.py for
what the numbers mean and how select_layout uses them).

`machine_model()` returns the rates from memory, else from the cache file in the kernel cache's
root (`$KILN_CACHE_DIR` or ~/.cache/kiln; one file per processor, core count and numba version),
else measures them: a 3x3 and a 1x1 64 -> 64 convolution on 28 x 28, each compiled for the CPU
target blocked (NCHW16c, with the reorder of its input) and plain, timed by exe.profile (best of
15 runs of each kernel on its own), about 15 s the first time. So the model prices exactly the
kernels the backend generates. `KILN_COST_MODEL=rules` skips it (select_layout then blocks every
conv that can be), and a measurement that fails warns and falls back to the same rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from .passes.cost_model import CostModel, read_cache, valid, write_cache

CALIBRATION = 1  # bump when what is measured changes: older cache files are measured again
_memo: dict[str, CostModel | bool] = {}  # machine key -> model, or False after a failed measurement


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import numba

    return f"{cpu}|{os.cpu_count()}|numba{numba.__version__}|v{CALIBRATION}"


def cache_file() -> Path:
    root = Path(os.environ.get("KILN_CACHE_DIR") or Path.home() / ".cache" / "kiln")
    return root / f"cost_model-{hashlib.sha256(machine().encode()).hexdigest()[:16]}.json"


def _probe(kernel: int) -> dict:
    """One 64 -> 64 convolution on 28 x 28 in both layouts, and the reorder before it."""
    from .api import compile as compile_graph
    from .frontend import Builder

    b = Builder("probe", seed=0)
    x = b.input("x", (1, 64, 28, 28))
    g = b.build(b.global_avgpool(b.conv2d(x, 64, kernel, pads=kernel // 2, name="conv")))
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 64, 28, 28)).astype(np.float32)}
    out = {}
    for layout, skip in (("NCHW16c", ()), ("NCHW", ("select_layout",))):
        # the probes compile with select_layout by rule (no model): blocked where it can be
        rows = compile_graph(g, target="cpu", skip=skip, cost_model=None).profile(feeds, repeat=15)
        conv = next(r for r in rows if "= conv2d" in r["node"])
        out[f"conv{kernel}x{kernel}/{layout}"] = conv["gflops"]
        if layout == "NCHW16c":
            reorder = next(r for r in rows if "= reorder" in r["node"])
            out["reorder"] = 2 * 64 * 28 * 28 * 4 / reorder["seconds"] / 1e9  # bytes read + written
    return out


def calibrate() -> CostModel:
    """Measure the rates on this machine and cache them."""
    t0 = time.perf_counter()
    rates = {**_probe(3), **_probe(1)}
    when = time.strftime("%Y-%m-%d")
    write_cache(cache_file(), machine(), when, rates)
    return CostModel(rates, f"measured {when} in {time.perf_counter() - t0:.1f} s")


def machine_model() -> CostModel | None:
    """This machine's model (memory, cache file, else measured now); None for the rule."""
    if os.environ.get("KILN_COST_MODEL") == "rules":
        return None
    key = machine()
    if key in _memo:
        return _memo[key] or None
    model = read_cache(cache_file(), key)
    if model is None:
        try:
            model = calibrate()
        except Exception as e:  # noqa: BLE001  (a failed measurement must not fail the user's compile)
            warnings.warn(f"kiln: measuring the layout cost model failed ({type(e).__name__}: {e}); "
                          "select_layout decides by rule", RuntimeWarning, stacklevel=2)
            model = None
        if model is not None and not valid(model.rates):
            model = None
    _memo[key] = model if model is not None else False
    return model
