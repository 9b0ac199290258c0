"""ONNX import: `from_onnx(path | ModelProto)` -> kiln IR graph."""

from .converters import converter, supported_ops
from .importer import FOLDED_OPS, from_onnx

__all__ = ["FOLDED_OPS", "converter", "from_onnx", "supported_ops"]
