"""gemm and batched matmul on the CUDA target, on the shared tiled kernel (tiled.py)."""

from __future__ import annotations

from ....ir import Node, TensorType
from ...templating import epilogue_act
from .common import KernelSource, broadcast_strides, decompose, lit, offset, plain_only
from .tiled import grid_for, tile_note, tiled_kernel


@plain_only
def gemm(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """y = alpha op(A) op(B) + beta C, C broadcast over [M, N]."""
    a, d = node.attrs, ins[0].dtype
    m, n = outs[0].shape
    k = ins[0].shape[0] if a["trans_a"] else ins[0].shape[1]
    load_a = [f"va = a[k * {m} + row]" if a["trans_a"] else f"va = a[row * {k} + k]"]
    load_b = [f"vb = b[col * {k} + k]" if a["trans_b"] else f"vb = b[k * {n} + col]"]
    value = f"{lit(a['alpha'], d)} * acc"
    params = ["a", "b"]
    if len(ins) > 2:
        sr, sc = broadcast_strides(ins[2].shape, (m, n))
        value += f" + {lit(a['beta'], d)} * c[row * {sr} + col * {sc}]"
        params.append("c")
    body = tiled_kernel([*params, "y"], m, n, k, d, load_a, load_b, [f"y[row * {n} + col] = {epilogue_act(a, d, value)}"])
    note = f"tiled [{m}x{k}] @ [{k}x{n}]{' (A transposed)' if a['trans_a'] else ''}{' (B transposed)' if a['trans_b'] else ''}, {tile_note(m, n)}"
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note, grid=grid_for(m, n, 1))


@plain_only
def matmul(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """numpy matmul: 1-D operands promoted, batch axes broadcast; blockIdx.z is the batch."""
    ta, tb, to = (t.shape for t in (*ins, outs[0]))
    a2 = (1, *ta) if len(ta) == 1 else ta
    b2 = (*tb, 1) if len(tb) == 1 else tb
    m, k, n = a2[-2], a2[-1], b2[-1]
    batch = to[: len(to) - (len(ta) > 1) - (len(tb) > 1)]
    nb = 1
    for dim in batch:
        nb *= dim
    sa = broadcast_strides(a2[:-2], batch) if batch else []
    sb = broadcast_strides(b2[:-2], batch) if batch else []
    split = decompose("z", batch, "q") if len(batch) > 1 else (["q0 = z"] if batch else [])
    sa_mat, sb_mat = [s * m * k for s in sa], [s * k * n for s in sb]
    base_a = offset("q", sa_mat) if batch else "0"
    base_b = offset("q", sb_mat) if batch else "0"
    load_a = [*split, f"va = a[{base_a} + row * {k} + k]"]
    load_b = [*split, f"vb = b[{base_b} + k * {n} + col]"]
    store = [f"y[z * {m * n} + row * {n} + col] = acc"]
    body = tiled_kernel(["a", "b", "y"], m, n, k, ins[0].dtype, load_a, load_b, store)
    return KernelSource(body, (*node.inputs, node.outputs[0].name), f"tiled [{m}x{k}] @ [{k}x{n}] x {nb} batch, {tile_note(m, n)}",
                        grid=grid_for(m, n, nb))


TEMPLATES = {"gemm": gemm, "matmul": matmul}
