"""reassociate_matmuls: multiply sparse-dense-dense chains in the cheaper order.

Rewrite: for a CSR adjacency A (nnz entries, n x n), features X (n x f_in) and a weight W
(f_in x f_out), both orders compute the same product:
    matmul(spmm(A, X), W)   costs  nnz * f_in  + n * f_in * f_out   multiply-adds
    spmm(A, matmul(X, W))   costs  n * f_in * f_out + nnz * f_out
so the pass picks A(XW) when the layer narrows the features (f_out < f_in) and (AX)W when it
widens them, as DGL does, and says which and why in the dump.
Preconditions: the inner product's result has that one reader and is no graph output.
Algebra: (AX)W = A(XW), exact in real arithmetic; in floats the sums are reordered.
"""

from __future__ import annotations

from ..ir import Graph, Node, TensorType, Value
from .manager import note


def _costs(nnz: int, n: int, f_in: int, f_out: int) -> tuple[int, int]:
    """(multiply-adds of (AX)W, of A(XW))."""
    return nnz * f_in + n * f_in * f_out, n * f_in * f_out + nnz * f_out


def reassociate_matmuls(g: Graph) -> Graph:
    users, producers, outputs = g.users, g.producers, set(g.outputs)
    replace: dict[int, list[Node] | None] = {}
    reports = []
    for n in g.nodes:
        if n.op == "matmul":  # matmul(spmm(A, X), W) ?
            inner = producers.get(n.inputs[0])
            if inner is None or inner.op != "spmm":
                continue
            a, x, w = inner.inputs[:3], inner.inputs[3], n.inputs[1]
            mid = inner.outputs[0].name
        elif n.op == "spmm":  # spmm(A, matmul(X, W)) ?
            inner = producers.get(n.inputs[3])
            if inner is None or inner.op != "matmul":
                continue
            a, (x, w) = n.inputs[:3], inner.inputs
            mid = inner.outputs[0].name
        else:
            continue
        if mid in outputs or len(users.get(mid, ())) != 1 or g.type_of(w).rank != 2 or g.type_of(x).rank != 2:
            continue
        nnz, (rows, f_in), f_out = g.type_of(a[2]).shape[0], g.type_of(x).shape, g.type_of(w).shape[1]
        cost_ax_w, cost_a_xw = _costs(nnz, rows, f_in, f_out)
        want_a_xw = cost_a_xw < cost_ax_w
        is_a_xw = n.op == "spmm"
        label = n.name or n.outputs[0].name
        if want_a_xw == is_a_xw:
            reports.append(f"{label}: kept {'A(XW)' if is_a_xw else '(AX)W'} ({min(cost_ax_w, cost_a_xw):,} vs "
                           f"{max(cost_ax_w, cost_a_xw):,} multiply-adds)")
            continue
        out, dt = n.outputs[0], g.type_of(x).dtype
        new_mid = Value(f"{out.name}.reassoc", TensorType(dt, (rows, f_out) if want_a_xw else (g.type_of(a[0]).shape[0] - 1, f_in)))
        if want_a_xw:
            nodes = [Node("matmul", (x, w), (new_mid,), {}, inner.name), Node("spmm", (*a, new_mid.name), (out,), {}, n.name)]
        else:
            nodes = [Node("spmm", (*a, x), (new_mid,), {}, inner.name), Node("matmul", (new_mid.name, w), (out,), {}, n.name)]
        replace[id(inner)] = None
        replace[id(n)] = nodes
        reports.append(f"{label}: {'(AX)W -> A(XW)' if want_a_xw else 'A(XW) -> (AX)W'} "
                       f"({max(cost_ax_w, cost_a_xw):,} -> {min(cost_ax_w, cost_a_xw):,} multiply-adds, "
                       f"features {f_in} -> {f_out})")
    note("; ".join(reports) if reports else "no sparse-dense chains")
    if not replace:
        return g
    nodes: list[Node] = []
    for n in g.nodes:
        r = replace.get(id(n), [n])
        nodes += r or []
    return g.with_nodes(nodes)
