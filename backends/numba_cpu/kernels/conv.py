"""Convolution kernels (NCHW activations, OIHW weights).

NCHW16c outputs go to conv_blocked.py, or to conv_winograd.py when winograd_convs marked the
conv (algo=winograd) and its input is blocked too. Plain layouts take one of three routes, chosen per layer
from its shape (the choice is the kernel's note, shown in dumps):
- `flat grid`: f32 convs, strided ones without dilation, run on 16-lane vector micro-kernels
  over a padded copy of the input where every tap is one flat offset (conv_flat.py). This is
  the route of a training step's convs, whose weights change every step.
- `gemm`: anything else not depthwise (f64, dilated and strided): unfold the input into a
  [C/g * KH * KW, OH * OW] matrix (im2col.py; skipped for a 1x1, stride-1, unpadded conv, whose
  input already is that matrix), then one BLAS product per image and group into the output,
  bias added after.
- `direct`: depthwise convs (one input channel per group) loop over the window directly; a
  matrix product of one row would only add overhead.
"""

from __future__ import annotations

from ....ir import Node, TensorType
from ...templating import epilogue_act
from . import conv_flat, conv_winograd
from .common import PARALLEL_MIN, KernelSource, lit
from .conv_blocked import conv2d_blocked, depthwise_blocked
from .im2col import geometry, jobs, pointwise, unfold


def _epilogue_lines(node: Node, has_bias: bool, g: dict, d: str) -> str:
    """Bias, residual and activation applied to the finished output, one pass."""
    a = node.attrs
    if not (has_bias or a["residual"] or a["act"]):
        return ""
    value = "y[base + p]" + (" + bv" if has_bias else "") + (" + r[base + p]" if a["residual"] else "")
    return f"""\
    for nm in prange({g['N'] * g['M']}):
        bv = {'b[nm % ' + str(g['M']) + ']' if has_bias else lit(0, d)}
        base = nm * {g['OH'] * g['OW']}
        for p in range({g['OH'] * g['OW']}):
            y[base + p] = {epilogue_act(a, d, value)}
"""


SCRATCH_MAX = 1 << 24  # elements of unfold buffers: above this, fewer jobs share the images


def _gemm(node: Node, ins, outs, g: dict) -> KernelSource:
    """Unfold + BLAS (single-threaded inside). Jobs over images each unfold into a buffer of
    their own (see im2col.py); with one job, the images take turns and the unfold is parallel."""
    has_bias = len(ins) > 2
    k, p = g["K"], g["P"]
    pw = pointwise(g)
    nj = g["N"] if pw else jobs(g, SCRATCH_MAX)
    outer, inner = ("prange", "range") if nj > 1 else ("range", "prange")
    args = [*node.inputs, node.outputs[0].name]
    params = ", ".join(["x", "w", *(["b"] if has_bias else []), *(["r"] if node.attrs["residual"] else []), "y"])
    if pw:
        text, cols, scratch = "", f"x[xoff:xoff + {k * p}].reshape(({k}, {p}))", ()
    else:
        params += ", col"
        scratch = ((ins[0].dtype, k * p * nj),)
        text, cols = unfold(g, inner, 16), f"col[coff:coff + {k * p}].reshape(({k}, {p}))"
    body = f"""\
def KERNEL({params}):
    for j in {outer}({nj}):
        coff = j * {k * p}
        for n in range(j, {g['N']}, {nj}):
            for gi in range({g['G']}):
                xoff = (n * {g['C']} + gi * {g['CG']}) * {g['H'] * g['W']}
{text}\
                wg = w[gi * {g['MG'] * k}:(gi + 1) * {g['MG'] * k}].reshape(({g['MG']}, {k}))
                yoff = (n * {g['M']} + gi * {g['MG']}) * {p}
                np.dot(wg, {cols}, y[yoff:yoff + {g['MG'] * p}].reshape(({g['MG']}, {p})))
{_epilogue_lines(node, has_bias, g, ins[0].dtype)}"""
    note = (f"gemm {'1x1 (no unfold)' if pw else 'im2col'}: [{g['MG']}x{k}] @ [{k}x{p}] x {g['N'] * g['G']}"
            f", {nj} job(s)")
    return KernelSource(body, tuple(args), note, parallel=True, scratch=scratch)


def _direct(node: Node, ins, outs, g: dict) -> KernelSource:
    has_bias = len(ins) > 2
    d = ins[0].dtype
    init = "b[m]" if has_bias else lit(0, d)
    params = ", ".join(["x", "w", *(["b"] if has_bias else []), *(["r"] if node.attrs["residual"] else []), "y"])
    final = epilogue_act(node.attrs, d, "acc + r[yb + oi * " + str(g["OW"]) + " + oj]" if node.attrs["residual"] else "acc")
    body = f"""\
def KERNEL({params}):
    for nm in prange({g['N'] * g['M']}):
        n = nm // {g['M']}
        m = nm % {g['M']}
        ci = (m // {g['MG']}) * {g['CG']}
        xb = (n * {g['C']} + ci) * {g['H'] * g['W']}
        wb = m * {g['CG'] * g['KH'] * g['KW']}
        yb = nm * {g['OH'] * g['OW']}
        for oi in range({g['OH']}):
            for oj in range({g['OW']}):
                acc = {init}
                for cc in range({g['CG']}):
                    for ki in range({g['KH']}):
                        ih = oi * {g['SH']} + ki * {g['DH']} - {g['PT']}
                        if ih < 0 or ih >= {g['H']}:
                            continue
                        for kj in range({g['KW']}):
                            iw = oj * {g['SW']} + kj * {g['DW']} - {g['PL']}
                            if 0 <= iw < {g['W']}:
                                acc += x[xb + cc * {g['H'] * g['W']} + ih * {g['W']} + iw] * \\
                                    w[wb + (cc * {g['KH']} + ki) * {g['KW']} + kj]
                y[yb + oi * {g['OW']} + oj] = {final}
"""
    return KernelSource(body, (*node.inputs, node.outputs[0].name), f"direct {g['KH']}x{g['KW']} (depthwise)",
                        parallel=outs[0].numel >= PARALLEL_MIN or g["N"] * g["M"] >= 4)


def conv2d(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    if outs[0].layout == "NCHW16c":
        if node.attrs["algo"] == "winograd" and ins[0].layout == "NCHW16c":
            return conv_winograd.conv2d_winograd(node, ins, outs)
        depthwise = node.attrs["groups"] == ins[0].shape[1] == outs[0].shape[1] > 1
        return (depthwise_blocked if depthwise else conv2d_blocked)(node, ins, outs)
    g = geometry(node, ins[0].shape, ins[1].shape, outs[0].shape)
    if g["CG"] == 1 and g["MG"] <= 4 or ins[0].dtype not in ("f32", "f64"):
        return _direct(node, ins, outs, g)
    if conv_flat.usable(g, ins[0].dtype):
        return conv_flat.forward(node, ins, outs, g)
    return _gemm(node, ins, outs, g)


TEMPLATES = {"conv2d": conv2d}
