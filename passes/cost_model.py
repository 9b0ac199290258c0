"""The cost model select_layout decides with: how fast this machine runs a convolution in each
layout, and how fast it moves a tensor between layouts, measured once and cached on disk.

Rates (measured by `calibrate`, GFLOP/s for convolutions, GB/s for reorders):
    conv3x3/NCHW16c, conv3x3/NCHW    a 3x3 64 -> 64 convolution on 28 x 28 (every conv with a
                                     window larger than 1x1 is costed at this rate)
    conv1x1/NCHW16c, conv1x1/NCHW    a 1x1 64 -> 64 convolution on 28 x 28
    reorder                          the NCHW -> NCHW16c reorder of that convolution's input
Each is the best of several runs of the CPU target's own kernel for that layout (exe.profile),
so the model prices exactly the kernels the backend would generate. A conv's estimated time is
its FLOPs over the rate of its kind and layout, plus the reorders the choice forces (bytes read
and written over the reorder rate).

Cached as JSON in the kernel cache's root (`$KILN_CACHE_DIR` or ~/.cache/kiln), one file per
machine (processor, core count, numba version); absent, it is measured again, which takes a few
seconds of compiling and timing. `KILN_COST_MODEL=rules` skips the model: every convolution that
can be blocked is (the rule the measurements have always agreed with on this project's machine).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

CALIBRATION = 1  # bump when what is measured changes: older cache files are measured again
RATES = ("conv3x3/NCHW16c", "conv3x3/NCHW", "conv1x1/NCHW16c", "conv1x1/NCHW", "reorder")
_state = {"calibrating": False, "model": None}


@dataclass(frozen=True)
class CostModel:
    rates: dict = field(default_factory=dict)  # "conv3x3/NCHW16c" -> GFLOP/s, "reorder" -> GB/s
    source: str = ""  # where the numbers came from, for the dump

    def conv_seconds(self, flops: int, kernel: tuple[int, int], layout: str) -> float:
        kind = "conv1x1" if tuple(kernel) == (1, 1) else "conv3x3"
        return flops / (self.rates[f"{kind}/{layout or 'NCHW'}"] * 1e9)

    def reorder_seconds(self, nbytes: int) -> float:
        return 2 * nbytes / (self.rates["reorder"] * 1e9)  # read once, written once


def _machine() -> str:
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
    key = hashlib.sha256(_machine().encode()).hexdigest()[:16]
    return root / f"cost_model-{key}.json"


def calibrating() -> bool:
    """True while calibrate() compiles its probes: select_layout then uses the rules."""
    return _state["calibrating"]


def _probe(kernel: int) -> dict:
    """Time one 64 -> 64 convolution on 28 x 28 in both layouts, and the reorder before it."""
    import numpy as np

    from .. import api
    from ..frontend import Builder

    b = Builder("probe", seed=0)
    x = b.input("x", (1, 64, 28, 28))
    g = b.build(b.global_avgpool(b.conv2d(x, 64, kernel, pads=kernel // 2, name="conv")))
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 64, 28, 28)).astype(np.float32)}
    out = {}
    for layout, skip in (("NCHW16c", []), ("NCHW", ["select_layout"])):
        rows = api.compile(g, target="cpu", skip=skip).profile(feeds, repeat=15)
        conv = next(r for r in rows if "= conv2d" in r["node"])
        out[f"conv{kernel}x{kernel}/{layout}"] = conv["gflops"]
        if layout == "NCHW16c":
            reorder = next(r for r in rows if "= reorder" in r["node"])
            out["reorder"] = 2 * 64 * 28 * 28 * 4 / reorder["seconds"] / 1e9  # bytes read + written
    return out


def calibrate() -> CostModel:
    """Measure the rates on this machine (compiling four small graphs), and cache them."""
    _state["calibrating"] = True
    try:
        t0 = time.perf_counter()
        rates = {**_probe(3), **_probe(1)}
    finally:
        _state["calibrating"] = False
    when = time.strftime("%Y-%m-%d")
    model = CostModel(rates, f"measured {when} in {time.perf_counter() - t0:.1f} s")
    path = cache_file()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"machine": _machine(), "measured": when, "rates": rates}, indent=1))
        tmp.replace(path)
    return model


def load() -> CostModel | None:
    """This machine's model: from memory, from the cache file, else measured now. None when
    KILN_COST_MODEL=rules."""
    if os.environ.get("KILN_COST_MODEL") == "rules":
        return None
    if _state["model"] is not None:  # False: measuring failed in this process, decide by rule
        return _state["model"] or None
    path = cache_file()
    model = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        data = json.loads(path.read_text())
        if data["machine"] == _machine() and _valid(data["rates"]):
            model = CostModel(data["rates"], f"cached from {data['measured']} ({path.name})")
    if model is None:
        try:
            model = calibrate()
        except Exception as e:  # noqa: BLE001  (a failed measurement must not fail the user's compile)
            warnings.warn(f"kiln: measuring the layout cost model failed ({type(e).__name__}: {e}); "
                          "select_layout decides by rule", RuntimeWarning, stacklevel=2)
            model = None
        if model is not None and not _valid(model.rates):
            model = None
    _state["model"] = model if model is not None else False
    return model


def _valid(rates) -> bool:
    """Every rate present, a finite positive number."""
    return isinstance(rates, dict) and all(
        isinstance(rates.get(k), (int, float)) and 0 < rates[k] < float("inf") for k in RATES)
