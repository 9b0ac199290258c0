"""The two backward convolutions (NCHW activations, OIHW weights, row-major only).

conv2d_grad_input (dy, w) -> dx, per image and group:
    cols [CG*KH*KW, OH*OW] = w_g^T [CG*KH*KW, MG] @ dy_g [MG, OH*OW]   (BLAS; w_g^T is a
    transposed view, which numba hands to BLAS as a flag, no copy)
    dx_g = col2im(cols): each row (ci, ki, kj) is added into input plane ci, shifted by the
    tap and strided; a plane is zeroed and then takes its KH*KW rows while it is in cache.
    A 1x1, stride-1, unpadded conv needs no col2im: the product is dx itself.
conv2d_grad_weight (x, dy) -> dw, per group:
    dw_g [MG, CG*KH*KW] = sum over images of dy_g [MG, OH*OW] @ im2col(x_g)^T
    numba's BLAS runs single-threaded (see numba_cpu/__init__.py), so the parallelism is over
    images: J jobs, each with its own unfold buffer and partial dw (its images in turn), then
    one parallel pass sums the J partials in float64. A 1x1, stride-1, unpadded conv reads x
    as its own unfold.
Both run J parallel jobs over images, one per thread, each with its own buffer (im2col.py);
with one job the images take turns and the col2im / unfold loop runs in parallel.
Depthwise convs (one input channel per group, few outputs per group) loop directly: dx as a
scatter over each plane's taps, dw as one float64 dot product per (channel, tap), compiled with
fastmath so LLVM may reorder that sum and vectorise it (2.2x here).

The unfold (im2col.py) and the col2im skip window rows in the padding and run each tap over
views of the output columns that read inside the input: numba drops its negative-index test
there and LLVM vectorises them (the col2im ran 1.5x faster than indexing the flat arrays).
"""

from __future__ import annotations

from ....ir import Node, TensorType
from . import conv_flat
from .common import PARALLEL_MIN, KernelSource, plain_only
from .im2col import (
    columns,
    depthwise,
    geometry,
    indent,
    input_row,
    jobs,
    mul,
    pointwise,
    row_test,
    threads,
    unfold,
)

SCRATCH_MAX = 1 << 24  # elements of unfold buffers: above this, fewer jobs share the images


# -- grad input -------------------------------------------------------------------------------
def _col2im(g: dict, loop: str) -> str:
    """Add the unfolded rows at col[coff:] into dx's planes of group gi of image n."""
    hw = g["H"] * g["W"]
    body = f"""\
for ci in {loop}({g['CG']}):
    plane = xoff + ci * {hw}
    dx[plane:plane + {hw}] = 0
    for ki in range({g['KH']}):
        for kj in range({g['KW']}):
{columns(g, ' ' * 12)}\
            src = coff + ((ci * {g['KH']} + ki) * {g['KW']} + kj) * {g['P']}
            for oi in range({g['OH']}):
{indent(row_test(g), 16)}\
                    continue
                d = {input_row(g, 'dx', f"plane + ih * {g['W']} + s")}
                c = col[src + oi * {g['OW']} + oj0:src + oi * {g['OW']} + oj1]
                for k in range(oj1 - oj0):
                    d[k] += c[k]
"""
    return indent(body, 16)


def _grad_input_gemm(node: Node, ins, outs, g: dict) -> KernelSource:
    k, p = g["K"], g["P"]
    pw = pointwise(g)
    nj = g["N"] if pw else jobs(g, SCRATCH_MAX)
    outer, inner = ("prange", "range") if nj > 1 else ("range", "prange")
    if pw:  # the product is dx's group block itself
        params, scratch, tail = "dy, w, dx", (), ""
        dst = f"dx[xoff:xoff + {k * p}].reshape(({k}, {p}))"
    else:
        params, scratch = "dy, w, dx, col", ((ins[0].dtype, k * p * nj),)
        dst, tail = f"col[coff:coff + {k * p}].reshape(({k}, {p}))", _col2im(g, inner)
    body = f"""\
def KERNEL({params}):
    for j in {outer}({nj}):
        coff = j * {k * p}
        for n in range(j, {g['N']}, {nj}):
            for gi in range({g['G']}):
                wg = w[gi * {g['MG'] * k}:(gi + 1) * {g['MG'] * k}].reshape(({g['MG']}, {k}))
                yoff = (n * {g['M']} + gi * {g['MG']}) * {p}
                xoff = (n * {g['C']} + gi * {g['CG']}) * {g['H'] * g['W']}
                np.dot(wg.T, dy[yoff:yoff + {g['MG'] * p}].reshape(({g['MG']}, {p})), {dst})
{tail}"""
    note = (f"gemm w^T @ dy: [{k}x{g['MG']}] @ [{g['MG']}x{p}] x {g['N'] * g['G']}, "
            f"{'1x1 (no col2im)' if pw else 'col2im'}, {nj} job(s)")
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note, parallel=True, scratch=scratch)


def _grad_input_direct(node: Node, ins, outs, g: dict) -> KernelSource:
    """Depthwise: each input plane zeroed, then every output pixel of its MG output channels
    scattered back through the taps."""
    hw = g["H"] * g["W"]
    body = f"""\
def KERNEL(dy, w, dx):
    for q in prange({g['N'] * g['C']}):
        n = q // {g['C']}
        c = q % {g['C']}
        plane = q * {hw}
        dx[plane:plane + {hw}] = 0
        for mm in range({g['MG']}):
            m = {mul('c', g['MG'])} + mm
            yb = (n * {g['M']} + m) * {g['P']}
            for ki in range({g['KH']}):
                for kj in range({g['KW']}):
{columns(g, ' ' * 20)}\
                    wv = w[(m * {g['KH']} + ki) * {g['KW']} + kj]
                    for oi in range({g['OH']}):
{indent(row_test(g), 24)}\
                            continue
                        d = {input_row(g, 'dx', f"plane + ih * {g['W']} + s")}
                        e = dy[yb + oi * {g['OW']} + oj0:yb + oi * {g['OW']} + oj1]
                        for k in range(oj1 - oj0):
                            d[k] += e[k] * wv
"""
    return KernelSource(body, (*node.inputs, node.outputs[0].name), f"direct {g['KH']}x{g['KW']} (depthwise)",
                        parallel=outs[0].numel >= PARALLEL_MIN or g["N"] * g["C"] >= 4)


def conv2d_grad_input(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    g = geometry(node, outs[0].shape, ins[1].shape, ins[0].shape)
    if conv_flat.usable(g, ins[0].dtype, grad_input=True):
        return (conv_flat.grad_input if g["SH"] == 1 else conv_flat.grad_input_strided)(node, ins, outs, g)
    return (_grad_input_direct if depthwise(g) else _grad_input_gemm)(node, ins, outs, g)


# -- grad weight ------------------------------------------------------------------------------
def _grad_weight_gemm(node: Node, ins, outs, g: dict) -> KernelSource:
    k, p, mk, mgk = g["K"], g["P"], g["M"] * g["K"], g["MG"] * g["K"]
    pw = pointwise(g)
    nj = min(g["N"], threads()) if pw else jobs(g, SCRATCH_MAX)
    outer, inner = ("prange", "range") if nj > 1 else ("range", "prange")
    # a job's part: its partial dw [M, K], then (when it has several images) a [MG, K] product
    stride = mk + (mgk if nj < g["N"] else 0)
    scratch = ((ins[0].dtype, nj * stride),) if pw else \
        ((ins[0].dtype, nj * stride), (ins[0].dtype, nj * k * p))
    cols = f"{'x[xoff:xoff' if pw else 'col[coff:coff'} + {k * p}].reshape(({k}, {p})).T"
    dyg = f"dy[yoff:yoff + {g['MG'] * p}].reshape(({g['MG']}, {p}))"
    partial = f"part[poff + gi * {mgk}:poff + (gi + 1) * {mgk}]"
    if nj < g["N"]:
        product = f"""\
                if n == j:
                    np.dot({dyg}, {cols}, {partial}.reshape(({g['MG']}, {k})))
                else:
                    t = part[poff + {mk}:poff + {stride}]
                    np.dot({dyg}, {cols}, t.reshape(({g['MG']}, {k})))
                    a = {partial}
                    for i in range({mgk}):
                        a[i] += t[i]
"""
    else:
        product = f"                np.dot({dyg}, {cols}, {partial}.reshape(({g['MG']}, {k})))\n"
    coff = "" if pw else f"\n        coff = j * {k * p}"
    body = f"""\
def KERNEL(x, dy, dw, part{'' if pw else ', col'}):
    for j in {outer}({nj}):{coff}
        poff = j * {stride}
        for n in range(j, {g['N']}, {nj}):
            for gi in range({g['G']}):
                xoff = (n * {g['C']} + gi * {g['CG']}) * {g['H'] * g['W']}
{'' if pw else unfold(g, inner, 16)}\
                yoff = (n * {g['M']} + gi * {g['MG']}) * {p}
{product}\
    for i in prange({mk}):
        acc = 0.0
        for j in range({nj}):
            acc += part[j * {stride} + i]
        dw[i] = acc
"""
    note = (f"gemm dy @ im2col(x)^T: [{g['MG']}x{p}] @ [{p}x{k}] x {g['N'] * g['G']}, "
            f"{'1x1 (no unfold), ' if pw else ''}{nj} job(s) with partial sums")
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note, parallel=True, scratch=scratch)


def _grad_weight_direct(node: Node, ins, outs, g: dict) -> KernelSource:
    """Depthwise: per output channel and tap, one float64 dot product of dy with the shifted
    input plane over every image."""
    hw = g["H"] * g["W"]
    body = f"""\
def KERNEL(x, dy, dw):
    for m in prange({g['M']}):
        c = {'m' if g['MG'] == 1 else f"m // {g['MG']}"}
        for ki in range({g['KH']}):
            for kj in range({g['KW']}):
{columns(g, ' ' * 16)}\
                acc = 0.0
                for n in range({g['N']}):
                    xb = (n * {g['C']} + c) * {hw} + s
                    yb = (n * {g['M']} + m) * {g['P']}
                    for oi in range({g['OH']}):
{indent(row_test(g), 24)}\
                            continue
                        e = {input_row(g, 'x', f"xb + ih * {g['W']}")}
                        d = dy[yb + oi * {g['OW']} + oj0:yb + oi * {g['OW']} + oj1]
                        for k in range(oj1 - oj0):
                            acc += e[k] * d[k]
                dw[(m * {g['KH']} + ki) * {g['KW']} + kj] = acc
"""
    return KernelSource(body, (*node.inputs, node.outputs[0].name), f"direct {g['KH']}x{g['KW']} (depthwise)",
                        parallel=g["M"] > 1, fastmath=True)


def conv2d_grad_weight(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    g = geometry(node, ins[0].shape, outs[0].shape, ins[1].shape)
    if conv_flat.usable(g, ins[0].dtype):
        return conv_flat.grad_weight(node, ins, outs, g)
    return (_grad_weight_direct if depthwise(g) else _grad_weight_gemm)(node, ins, outs, g)


TEMPLATES = {"conv2d_grad_input": plain_only(conv2d_grad_input),
             "conv2d_grad_weight": plain_only(conv2d_grad_weight)}
