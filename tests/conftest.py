"""Lets test modules import the helpers beside them (onnx_util, onnx_conformance), and runs the
CUDA tests in Numba's simulator where the machine has no GPU (set before numba starts)."""

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

HAS_GPU = bool(glob.glob("/dev/nvidia[0-9]*"))
if not HAS_GPU:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
