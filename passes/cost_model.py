"""The cost model select_layout decides with: how fast the target runs a convolution in each
layout, and how fast it moves a tensor between layouts.

Rates (GFLOP/s for convolutions, GB/s of bytes read and written for reorders):
    conv3x3/NCHW16c, conv3x3/NCHW    every conv with a window larger than 1x1 is costed at these
    conv1x1/NCHW16c, conv1x1/NCHW
    reorder
A conv's estimated time is its FLOPs over the rate of its kind and layout, plus the reorders
the choice forces. The passes never run kernels: the CPU target measures the rates (kiln/costs.py
compiles and times probe convolutions once per machine) and hands the model to select_layout as
an argument; this module only holds the numbers and reads and writes their cache file.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

RATES = ("conv3x3/NCHW16c", "conv3x3/NCHW", "conv1x1/NCHW16c", "conv1x1/NCHW", "reorder")


@dataclass(frozen=True)
class CostModel:
    rates: dict = field(default_factory=dict)  # "conv3x3/NCHW16c" -> GFLOP/s, "reorder" -> GB/s
    source: str = ""  # where the numbers came from, for the dump

    def conv_seconds(self, flops: int, kernel: tuple[int, int], layout: str) -> float:
        kind = "conv1x1" if tuple(kernel) == (1, 1) else "conv3x3"
        return flops / (self.rates[f"{kind}/{layout or 'NCHW'}"] * 1e9)

    def reorder_seconds(self, nbytes: int) -> float:
        return 2 * nbytes / (self.rates["reorder"] * 1e9)  # read once, written once


def valid(rates) -> bool:
    """Every rate present, a finite positive number."""
    return isinstance(rates, dict) and all(
        isinstance(rates.get(k), (int, float)) and 0 < rates[k] < float("inf") for k in RATES)


def read_cache(path: Path, machine: str) -> CostModel | None:
    """The model cached at `path` for this `machine`, or None (absent, another machine's, or
    incomplete)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        data = json.loads(Path(path).read_text())
        if data["machine"] == machine and valid(data["rates"]):
            return CostModel(data["rates"], f"cached from {data['measured']} ({Path(path).name})")
    return None


def write_cache(path: Path, machine: str, measured: str, rates: dict) -> None:
    """Write atomically (a rename), so a concurrent reader sees the old file or the new one."""
    with contextlib.suppress(OSError):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"machine": machine, "measured": measured, "rates": rates}, indent=1))
        tmp.replace(path)
