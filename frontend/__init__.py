"""Frontends: the Python model DSL and the model zoo (ONNX import joins them)."""

from .dsl import Builder, Tensor

__all__ = ["Builder", "Tensor"]
