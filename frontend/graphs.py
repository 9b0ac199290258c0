"""Graphs for graph networks: adjacency matrices in CSR form, built with numpy and networkx.

A GCN layer (Kipf & Welling 2017) aggregates over the renormalised adjacency
A_hat = D~^-1/2 (A + I) D~^-1/2, where D~ is the diagonal of row sums of A + I. This module
builds A_hat as a CSR triple (indptr, indices, data) that `Builder.csr` turns into consts for the
`spmm` op. Built with numpy alone (scipy is a dependency of the CPU backend only).
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np

from ..ir.errors import ShapeError, UnsupportedError

CSR = tuple[np.ndarray, np.ndarray, np.ndarray]  # indptr, indices, data
COO = tuple[int, np.ndarray, np.ndarray, np.ndarray]  # n, rows, cols, values


def _coo_of_graph(g: nx.Graph, weight: str | None) -> COO:
    """Rows, cols and values of a networkx graph's adjacency in `list(g.nodes)` order; an
    undirected edge gives both directions, parallel edges add up (as nx.to_numpy_array does)."""
    index = {node: i for i, node in enumerate(g.nodes)}
    edges = [(index[u], index[v], 1.0 if weight is None else float(d.get(weight, 1.0)))
             for u, v, d in g.edges(data=True)]
    e = np.array(edges, dtype=np.float64).reshape(-1, 3)
    rows, cols, vals = e[:, 0].astype(np.int64), e[:, 1].astype(np.int64), e[:, 2]
    if not g.is_directed():
        off = rows != cols
        rows, cols, vals = (np.concatenate([rows, cols[off]]), np.concatenate([cols, rows[off]]),
                            np.concatenate([vals, vals[off]]))
    return len(index), rows, cols, vals


def _coo_of_csr(csr: tuple) -> COO:
    indptr, indices, data = (np.asarray(a) for a in csr)
    n = len(indptr) - 1
    if indptr.ndim != 1 or n < 0 or indices.shape != data.shape or indices.ndim != 1:
        raise ShapeError(f"a CSR adjacency is (indptr [rows + 1], indices [nnz], data [nnz]); got "
                         f"shapes {indptr.shape}, {indices.shape}, {data.shape}")
    counts = np.diff(indptr)
    if indptr[0] != 0 or (counts < 0).any() or indptr[-1] != len(indices):
        raise ShapeError("CSR indptr must start at 0, never decrease and end at len(indices)")
    if len(indices) and (indices.min() < 0 or indices.max() >= n):
        raise ShapeError(f"CSR column indices must lie in [0, {n}) for a square {n}x{n} adjacency")
    rows = np.repeat(np.arange(n, dtype=np.int64), counts)
    return n, rows, indices.astype(np.int64), data.astype(np.float64)


def _coo_of_dense(a: np.ndarray) -> COO:
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ShapeError(f"a dense adjacency must be a square 2-D array, got shape {list(a.shape)}")
    rows, cols = np.nonzero(a)
    return a.shape[0], rows.astype(np.int64), cols.astype(np.int64), a[rows, cols].astype(np.float64)


def adjacency_coo(graph_or_csr: Any, weight: str | None = None) -> COO:
    """(n, rows, cols, values) of a networkx graph, a CSR triple or a dense numpy array."""
    if isinstance(graph_or_csr, nx.Graph):
        return _coo_of_graph(graph_or_csr, weight)
    if isinstance(graph_or_csr, np.ndarray):
        return _coo_of_dense(graph_or_csr)
    if isinstance(graph_or_csr, (tuple, list)) and len(graph_or_csr) == 3:
        return _coo_of_csr(graph_or_csr)
    raise UnsupportedError(
        f"an adjacency must be a networkx graph, a CSR triple (indptr, indices, data) or a dense "
        f"square numpy array; got {type(graph_or_csr).__name__}")


def to_csr(n: int, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> CSR:
    """Sorted CSR (int64 indptr and indices, float64 data) of COO entries; duplicates add up."""
    keys, inverse = np.unique(rows * n + cols, return_inverse=True)
    data = np.bincount(inverse.ravel(), weights=vals, minlength=len(keys))
    r, c = keys // n, keys % n
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
    return indptr, c.astype(np.int64), data


def normalized_adjacency(graph_or_csr: Any, weight: str | None = None) -> CSR:
    """A_hat = D~^-1/2 (A + I) D~^-1/2 as CSR (indptr, indices, data), with D~ the row sums of
    A + I (Kipf & Welling's renormalisation trick).

    `graph_or_csr` is a networkx graph (node order `list(G.nodes)`; an undirected edge counts in
    both directions), a CSR triple (indptr, indices, data) of a square matrix, or a dense square
    numpy array. Edges count 1 (Kipf's binary adjacency) unless `weight` names a networkx edge
    attribute to use instead. A + I adds 1 to the diagonal even where A has a self loop. A is
    taken as given: a directed graph is not symmetrised.
    """
    n, rows, cols, vals = adjacency_coo(graph_or_csr, weight)
    diag = np.arange(n, dtype=np.int64)
    indptr, indices, data = to_csr(n, np.concatenate([rows, diag]), np.concatenate([cols, diag]),
                                   np.concatenate([vals, np.ones(n)]))
    row_of = np.repeat(diag, np.diff(indptr))
    degree = np.bincount(row_of, weights=data, minlength=n)
    inv_sqrt = np.zeros(n)
    inv_sqrt[degree > 0] = degree[degree > 0] ** -0.5  # only negative weights leave a degree <= 0
    return indptr, indices, data * inv_sqrt[row_of] * inv_sqrt[indices]


def random_graph(num_nodes: int, num_edges: int, seed: int = 0) -> CSR:
    """Binary CSR adjacency of a random simple undirected graph with `num_edges` distinct node
    pairs (so 2 * num_edges stored entries), drawn uniformly with numpy from `seed`."""
    max_edges = num_nodes * (num_nodes - 1) // 2
    if not 0 <= num_edges <= max_edges:
        raise ShapeError(f"a simple graph on {num_nodes} nodes has 0 to {max_edges} edges, "
                         f"asked for {num_edges}")
    rng = np.random.default_rng(seed)
    keys = np.empty(0, np.int64)
    while len(keys) < num_edges:
        u, v = rng.integers(0, num_nodes, (2, 2 * (num_edges - len(keys)) + 16))
        u, v = np.minimum(u, v)[u != v], np.maximum(u, v)[u != v]
        cand = np.concatenate([keys, u * num_nodes + v])
        _, first = np.unique(cand, return_index=True)
        keys = cand[np.sort(first)][:num_edges]  # keep the first draws, in order
    u, v = keys // num_nodes, keys % num_nodes
    return to_csr(num_nodes, np.concatenate([u, v]), np.concatenate([v, u]), np.ones(2 * num_edges))
