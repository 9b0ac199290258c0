"""Lets test modules import the helpers beside them (onnx_util, onnx_conformance)."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
