"""kiln: a compiler for neural-network dataflow graphs.

    import kiln
    g = kiln.models.resnet18(num_classes=1000, seed=0)
    exe = kiln.compile(g, target="reference", dump_dir="dump/")
    (logits,) = exe.run({"input": x})
"""

from . import data, errors, ir, optim, passes
from .api import TARGETS, compile, load_model
from .frontend import Builder, models
from .frontend.onnx import from_onnx
from .frontend.onnx_export import save_onnx, to_onnx
from .ir import Graph, format_graph, parse, verify
from .runtime import Executable, interpret

__version__ = "0.1.0"

__all__ = [
           "TARGETS",
           "Builder",
           "Executable",
           "Graph",
           "compile",
           "data",
           "errors",
           "format_graph",
           "from_onnx",
           "interpret",
           "ir",
           "load_model",
           "models",
           "optim",
           "parse",
           "passes",
           "save_onnx",
           "to_onnx",
           "verify",
]
