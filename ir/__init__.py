"""kiln's intermediate representation: types, graphs, the op registry, text form, verifier."""

from . import ops  # noqa: F401  (registers every op)
from .errors import IRError, KilnError, ParseError, ShapeError, VerifyError
from .graph import BufferSlot, Graph, Node, Param, Value
from .registry import Attr, Cost, OpDef, all_ops, get_op, infer_types, normalize_attrs, register
from .stats import GraphStats, graph_stats
from .text import format_graph, parse
from .types import DTYPES, TensorType, dtype_of
from .verify import verify

__all__ = [
    "DTYPES",
    "Attr",
    "BufferSlot",
    "Cost",
    "Graph",
    "GraphStats",
    "IRError",
    "KilnError",
    "Node",
    "OpDef",
    "Param",
    "ParseError",
    "ShapeError",
    "TensorType",
    "Value",
    "VerifyError",
    "all_ops",
    "dtype_of",
    "format_graph",
    "get_op",
    "graph_stats",
    "infer_types",
    "normalize_attrs",
    "parse",
    "register",
    "verify",
]
