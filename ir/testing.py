"""Helpers for tests of passes: structural equality with a readable diff."""

from __future__ import annotations

import difflib

import numpy as np

from .graph import Graph
from .text import format_graph


def assert_graph_equal(actual: Graph, expected: Graph) -> None:
    """Raise AssertionError with a unified diff of the text forms when the graphs differ."""
    if actual == expected:
        return
    a, e = format_graph(actual), format_graph(expected)
    diff = "\n".join(difflib.unified_diff(e.splitlines(), a.splitlines(), "expected", "actual", lineterm=""))
    if not diff:
        diff = "text forms agree; param data differs: " + ", ".join(
            p.name for p in actual.params
            if p.name in expected.param_map and not np.array_equal(p.data, expected.param_map[p.name].data))
    raise AssertionError(f"graphs differ:\n{diff}")
