"""Convolutions on the CUDA target, as implicit GEMMs on the shared tiled kernel (tiled.py),
one blockIdx.z per group; depthwise convs get a direct kernel (one thread per output).

    forward      y[m, (n,oh,ow)]  = w[m, (c,ki,kj)]   @ x windows[(c,ki,kj), (n,oh,ow)]
    grad_input   dx[c, (n,ih,iw)] = w^T[c, (m,ki,kj)] @ dy taps[(m,ki,kj), (n,ih,iw)]
    grad_weight  dw[m, (c,ki,kj)] = dy[m, (n,oh,ow)]  @ x windows^T[(n,oh,ow), (c,ki,kj)]
Windows and taps are read in place (bounds-checked), never unfolded into memory.
"""

from __future__ import annotations

from ....ir import Node, TensorType
from ...templating import epilogue_act
from .common import KernelSource, grid1, lit, plain_only
from .tiled import grid_for, tile_note, tiled_kernel


def _geometry(x: TensorType, w_shape, y_shape, a) -> dict:
    (n, c, h, wd), (m, cg, kh, kw) = x.shape, w_shape
    (sh, sw), (dh, dw), (pt, pl, _, _) = a["stride"], a["dilation"], a["pads"]
    return dict(N=n, C=c, H=h, W=wd, M=m, CG=cg, KH=kh, KW=kw, OH=y_shape[2], OW=y_shape[3], SH=sh, SW=sw,
                DH=dh, DW=dw, PT=pt, PL=pl, G=a["groups"], MG=m // a["groups"])




def _window_read(g: dict, k: str, col: str, src: str = "x") -> list[str]:
    """vb = x[n, z*CG + ci, ih, iw] for reduction index k = (ci, ki, kj), column (n, oh, ow)."""
    return [f"ci = {k} // {g['KH'] * g['KW']}", f"ki = ({k} // {g['KW']}) % {g['KH']}", f"kj = {k} % {g['KW']}",
            f"n = {col} // {g['OH'] * g['OW']}", f"oh = ({col} // {g['OW']}) % {g['OH']}", f"ow = {col} % {g['OW']}",
            f"ih = oh * {g['SH']} + ki * {g['DH']} - {g['PT']}", f"iw = ow * {g['SW']} + kj * {g['DW']} - {g['PL']}",
            f"if ih >= 0 and ih < {g['H']} and iw >= 0 and iw < {g['W']}:",
            f"    vb = {src}[((n * {g['C']} + z * {g['CG']} + ci) * {g['H']} + ih) * {g['W']} + iw]"]


def _direct(node: Node, ins, outs, g: dict) -> KernelSource:
    """Depthwise (one input channel per group): one thread per output, the window in a loop."""
    a, d = node.attrs, ins[0].dtype
    has_bias = len(ins) > 2
    params = ["x", "w", *(["b"] if has_bias else []), *(["r"] if a["residual"] else []), "y"]
    total = outs[0].numel
    res = " + r[i]" if a["residual"] else ""
    body = f"""\
def KERNEL({', '.join(params)}):
    i = cuda.grid(1)
    if i < {total}:
        ow = i % {g['OW']}
        oh = (i // {g['OW']}) % {g['OH']}
        m = (i // {g['OH'] * g['OW']}) % {g['M']}
        n = i // {g['M'] * g['OH'] * g['OW']}
        c0 = (m // {g['MG']}) * {g['CG']}
        acc = {'b[m]' if has_bias else lit(0, d)}
        for cc in range({g['CG']}):
            for ki in range({g['KH']}):
                ih = oh * {g['SH']} + ki * {g['DH']} - {g['PT']}
                if ih >= 0 and ih < {g['H']}:
                    for kj in range({g['KW']}):
                        iw = ow * {g['SW']} + kj * {g['DW']} - {g['PL']}
                        if iw >= 0 and iw < {g['W']}:
                            acc += x[((n * {g['C']} + c0 + cc) * {g['H']} + ih) * {g['W']} + iw] * \\
                                w[((m * {g['CG']} + cc) * {g['KH']} + ki) * {g['KW']} + kj]
        y[i] = {epilogue_act(a, d, 'acc' + res)}
"""
    return KernelSource(body, (*node.inputs, node.outputs[0].name), f"direct {g['KH']}x{g['KW']}, thread per output",
                        grid=grid1(total))


@plain_only
def conv2d(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a, d = node.attrs, ins[0].dtype
    g = _geometry(ins[0], ins[1].shape, outs[0].shape, a)
    if g["CG"] == 1 and g["MG"] <= 4:
        return _direct(node, ins, outs, g)
    has_bias = len(ins) > 2
    k, p = g["CG"] * g["KH"] * g["KW"], g["OH"] * g["OW"]
    params = ["x", "w", *(["b"] if has_bias else []), *(["r"] if a["residual"] else []), "y"]
    out = f"(n * {g['M']} + m) * {p} + col % {p}"
    value = "acc" + (" + b[m]" if has_bias else "") + (" + r[o]" if a["residual"] else "")
    body = tiled_kernel(
        params, g["MG"], g["N"] * p, k, d,
        load_a=[f"va = w[(z * {g['MG']} + row) * {k} + k]"],
        load_b=_window_read(g, "k", "col"),
        store=[f"m = z * {g['MG']} + row", f"n = col // {p}", f"o = {out}", f"y[o] = {epilogue_act(a, d, value)}"])
    note = f"implicit GEMM [{g['MG']}x{k}] @ [{k}x{g['N'] * p}] x {g['G']} group(s), {tile_note(g['MG'], g['N'] * p)}"
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note, grid=grid_for(g["MG"], g["N"] * p, g["G"]))


@plain_only
def conv2d_grad_input(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a, d = node.attrs, ins[0].dtype
    g = _geometry(outs[0], ins[1].shape, ins[0].shape, a)
    k, hw = g["MG"] * g["KH"] * g["KW"], g["H"] * g["W"]
    taps = g["KH"] * g["KW"]
    load_b = [f"mm = k // {taps}", f"ki = (k // {g['KW']}) % {g['KH']}", f"kj = k % {g['KW']}",
              f"n = col // {hw}", f"ih = (col // {g['W']}) % {g['H']}", f"iw = col % {g['W']}",
              f"th = ih + {g['PT']} - ki * {g['DH']}", f"tw = iw + {g['PL']} - kj * {g['DW']}",
              f"if th >= 0 and tw >= 0 and th % {g['SH']} == 0 and tw % {g['SW']} == 0:",
              f"    oh = th // {g['SH']}", f"    ow = tw // {g['SW']}",
              f"    if oh < {g['OH']} and ow < {g['OW']}:",
              f"        vb = dy[((n * {g['M']} + z * {g['MG']} + mm) * {g['OH']} + oh) * {g['OW']} + ow]"]
    load_a = [f"mm = k // {taps}", f"t = k % {taps}",
              f"va = w[((z * {g['MG']} + mm) * {g['CG']} + row) * {taps} + t]"]
    store = [f"n = col // {hw}", f"dx[(n * {g['C']} + z * {g['CG']} + row) * {hw} + col % {hw}] = acc"]
    body = tiled_kernel(["dy", "w", "dx"], g["CG"], g["N"] * hw, k, d, load_a, load_b, store)
    note = f"implicit GEMM [{g['CG']}x{k}] @ [{k}x{g['N'] * hw}] x {g['G']} group(s): w^T times dy's taps, " \
        + tile_note(g["CG"], g["N"] * hw)
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note, grid=grid_for(g["CG"], g["N"] * hw, g["G"]))


@plain_only
def conv2d_grad_weight(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a, d = node.attrs, ins[0].dtype
    g = _geometry(ins[0], outs[0].shape, ins[1].shape, a)
    cols, p = g["CG"] * g["KH"] * g["KW"], g["OH"] * g["OW"]
    depth = g["N"] * p
    load_a = [f"n = k // {p}", f"va = dy[(n * {g['M']} + z * {g['MG']} + row) * {p} + k % {p}]"]
    # B[(n,oh,ow), (ci,ki,kj)]: the window read with the roles of k and col swapped
    load_b = _window_read(g, "col", "k")
    store = [f"dw[(z * {g['MG']} + row) * {cols} + col] = acc"]
    body = tiled_kernel(["x", "dy", "dw"], g["MG"], cols, depth, d, load_a, load_b, store)
    note = f"implicit GEMM [{g['MG']}x{depth}] @ [{depth}x{cols}] x {g['G']} group(s): dy times x's windows, " \
        + tile_note(g["MG"], cols)
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note, grid=grid_for(g["MG"], cols, g["G"]))


TEMPLATES = {"conv2d": conv2d, "conv2d_grad_input": conv2d_grad_input, "conv2d_grad_weight": conv2d_grad_weight}
