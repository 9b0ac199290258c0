"""Graph convolutional network (Kipf & Welling 2017, "Semi-Supervised Classification with Graph
Convolutional Networks"), and two ready-made graphs for the zoo."""

from __future__ import annotations

import math
from typing import Any

import networkx as nx
import numpy as np

from ...ir import Graph
from ..dsl import Builder, Tensor
from ..graphs import normalized_adjacency, random_graph


def _glorot(b: Builder, fan_in: int, fan_out: int, dtype: np.dtype) -> np.ndarray:
    """Glorot-uniform [fan_in, fan_out] weights, the init of Kipf's reference code."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return b.rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype)


def graph_conv(b: Builder, adjacency: tuple[Tensor, Tensor, Tensor], x: Tensor, out_features: int,
               dropout: float, name: str) -> Tensor:
    """One GCN layer: A_hat (dropout(x) @ W) + b, with W [in, out] and a zero-initialised bias."""
    with b.scope(name):
        w = b.param("weight", _glorot(b, x.shape[1], out_features, x.type.np_dtype))
        bias = b.param("bias", np.zeros(out_features, x.type.np_dtype))
        x = b.dropout(x, dropout, name="dropout")
        h = b.op("matmul", [x, w], name="matmul")
        return b.add(b.spmm(adjacency, h, name="spmm"), bias, name="add")


def gcn(graph_or_adjacency: Any, in_features: int, hidden: int = 16, *, num_classes: int,
        dropout: float = 0.5, seed: int = 0, name: str = "gcn") -> Graph:
    """Two-layer GCN: Z = A_hat relu(A_hat X W0 + b0) W1 + b1, logits without softmax, with
    dropout on the input of both layers (identity at inference).

    `graph_or_adjacency` is a networkx graph (node order `list(G.nodes)`), a CSR triple
    (indptr, indices, data) or a dense numpy adjacency A; A_hat = D~^-1/2 (A + I) D~^-1/2 (see
    `frontend.graphs.normalized_adjacency`) becomes consts `adjacency.indptr/indices/data`
    shared by both layers. Input `features` [num_nodes, in_features]; output
    [num_nodes, num_classes]. Params `gc1.weight` [in, hidden], `gc1.bias`, `gc2.weight`
    [hidden, classes], `gc2.bias`, Glorot-uniform weights and zero biases from `seed`.
    """
    indptr, indices, data = normalized_adjacency(graph_or_adjacency)
    b = Builder(name, seed=seed)
    x = b.input("features", (len(indptr) - 1, in_features))
    adjacency = b.csr("adjacency", indptr, indices, data)
    h = b.relu(graph_conv(b, adjacency, x, hidden, dropout, "gc1"), name="gc1.relu")
    return b.build(graph_conv(b, adjacency, h, num_classes, dropout, "gc2"))


def gcn_karate(hidden: int = 16, dropout: float = 0.5, seed: int = 0) -> Graph:
    """GCN on Zachary's karate club (networkx.karate_club_graph(), 34 nodes, unweighted) with
    one-hot identity features (feed numpy.eye(34, dtype=float32)) and 2 classes."""
    g = nx.karate_club_graph()
    return gcn(g, g.number_of_nodes(), hidden, num_classes=2, dropout=dropout, seed=seed,
               name="gcn_karate")


def gcn_cora_like(hidden: int = 16, dropout: float = 0.5, seed: int = 0) -> Graph:
    """GCN with Cora's sizes on a random graph: 2708 nodes, 5278 undirected edges (10556 stored
    directed entries) drawn with numpy from `seed`, 1433 features, 7 classes."""
    adjacency = random_graph(2708, 5278, seed)
    return gcn(adjacency, 1433, hidden, num_classes=7, dropout=dropout, seed=seed, name="gcn_cora_like")
