"""maxpool2d_argmax: the flat input index of each max-pool window's first maximum (ONNX
MaxPool's Indices output), one image plane per parallel job."""

from __future__ import annotations

from ....ir import Node, TensorType
from .common import KernelSource, lit, plain_only


def maxpool2d_argmax(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    n, c, h, w = ins[0].shape
    _, _, oh, ow = outs[0].shape
    a = node.attrs
    (kh, kw), (sh, sw), (dh, dw), (pt, pl, _, _) = a["kernel"], a["stride"], a["dilation"], a["pads"]
    lowest = lit(float("-inf"), ins[0].dtype) if ins[0].dtype.startswith("f") else \
        f"np.iinfo({lit(0, ins[0].dtype).split('(')[0]}).min"
    spatial = f"iw * {h} + ih" if a["storage_order"] else f"ih * {w} + iw"
    body = f"""\
def KERNEL(x, y):
    for p in prange({n * c}):
        for oi in range({oh}):
            for oj in range({ow}):
                best = {lowest}
                where = -1
                for ki in range({kh}):
                    ih = oi * {sh} + ki * {dh} - {pt}
                    if ih < 0 or ih >= {h}:
                        continue
                    for kj in range({kw}):
                        iw = oj * {sw} + kj * {dw} - {pl}
                        if 0 <= iw < {w}:
                            v = x[p * {h * w} + ih * {w} + iw]
                            if v > best or where < 0:
                                best = v
                                where = p * {h * w} + {spatial}
                y[(p * {oh} + oi) * {ow} + oj] = where
"""
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), "maxpool argmax, plane per job",
                        parallel=n * c >= 4)


TEMPLATES = {"maxpool2d_argmax": plain_only(maxpool2d_argmax)}
