"""winograd_convs: 3x3 stride-1 convolutions between blocked tensors run as Winograd F(2x2, 3x3).

Rewrite: conv2d[...] -> conv2d[algo=winograd ...], nothing else changed. The CPU backend then
computes each 2x2 output tile from its 4x4 input tile with 16 multiplications per (input,
output) channel pair instead of 36 (backends/numba_cpu/kernels/conv_winograd.py has the
algebra); on this machine those convs run 1.6-1.9x faster than the direct kernel.
Preconditions: layouts chosen (select_layout ran): input and output NCHW16c, float32; a 3x3
kernel, stride 1, dilation 1, one group; at least MIN_TILES output tiles. Below that (a 7x7
image at batch 1 has 16 tiles, a quarter of them padding) the transformed weights, 16/9 of
the direct ones, are read for too few tiles, and the direct kernel was faster.
Algebra: exact in real arithmetic; in float32 the transforms add a few roundings (relative
error about 1e-6 on ResNet's layers, like a reordered sum).
"""

from __future__ import annotations

from ..ir import Graph, Node
from .manager import note

MIN_TILES = 32


def _candidate(n: Node, g: Graph) -> bool:
    if n.op != "conv2d" or n.attrs["algo"] != "direct":
        return False
    x, w, y = g.type_of(n.inputs[0]), g.type_of(n.inputs[1]), n.outputs[0].type
    a = n.attrs
    return (w.shape[2:] == (3, 3) and tuple(a["stride"]) == (1, 1) and tuple(a["dilation"]) == (1, 1)
            and a["groups"] == 1 and x.dtype == "f32" and x.layout == y.layout == "NCHW16c")


def tiles(n: Node) -> int:
    """2x2 output tiles of a conv: N * ceil(OH / 2) * ceil(OW / 2)."""
    b, _, oh, ow = n.outputs[0].type.shape
    return b * -(-oh // 2) * -(-ow // 2)


def winograd_convs(g: Graph) -> Graph:
    nodes, chosen, few = [], 0, 0
    for n in g.nodes:
        if _candidate(n, g):
            if tiles(n) >= MIN_TILES:
                n = n.with_(attrs={**n.attrs, "algo": "winograd"})
                chosen += 1
            else:
                few += 1
        nodes.append(n)
    note(f"{chosen} conv(s) as winograd F(2x2,3x3); {few} declined: under {MIN_TILES} output tiles"
         if chosen or few else "no 3x3 stride-1 convs between blocked tensors")
    return g.with_nodes(nodes) if chosen else g
