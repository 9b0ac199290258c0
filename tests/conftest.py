"""Lets test modules import the helpers beside them (onnx_util, onnx_conformance), and runs the
CUDA tests in Numba's simulator where the machine has no GPU (set before numba starts)."""

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

# select_layout by rule (every conv that can be blocked is), not by this machine's measured
# costs: measured while other work shares the cores, the costs can keep small convs plain, and
# tests that check the blocked kernels would then test the plain ones. The cost model's own
# tests (test_cpu_backend.py) lift this.
os.environ.setdefault("KILN_COST_MODEL", "rules")

HAS_GPU = bool(glob.glob("/dev/nvidia[0-9]*"))
if not HAS_GPU:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
