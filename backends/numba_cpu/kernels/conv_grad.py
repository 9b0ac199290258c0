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
Both run images in parallel when there are several and their buffers fit (SCRATCH_MAX);
otherwise images take turns and the col2im / unfold loop runs in parallel.
Depthwise convs (one input channel per group, few outputs per group) loop directly: dx as a
scatter over each plane's taps, dw as one float64 dot product per (channel, tap), compiled with
fastmath so LLVM may reorder that sum and vectorise it (2.2x here).

Rows of a window that fall in the padding are skipped, and each tap's range of output columns
that reads inside the input is computed once (`oj0, oj1`). The inner loops then run over views
of that range from index 0: numba drops its negative-index test there and LLVM vectorises them
(the unfold ran 4x faster than indexing the flat arrays, the col2im 1.5x).
"""

from __future__ import annotations

from ....ir import Node, TensorType
from .common import PARALLEL_MIN, KernelSource, plain_only

SCRATCH_MAX = 1 << 24  # elements of unfold buffers: above this, fewer jobs share the images


def _geometry(node: Node, x: tuple[int, ...], w: tuple[int, ...], y: tuple[int, ...]) -> dict:
    """Sizes by name: x [N, C, H, W], w [M, CG, KH, KW], y (= dy) [N, M, OH, OW]; K = the rows
    of an unfolded group, P = output pixels."""
    (n, c, h, wd), (m, cg, kh, kw), (oh, ow) = x, w, y[2:]
    a = node.attrs
    (sh, sw), (dh, dw), (pt, pl, _, _) = a["stride"], a["dilation"], a["pads"]
    return dict(N=n, C=c, H=h, W=wd, M=m, CG=cg, KH=kh, KW=kw, OH=oh, OW=ow, SH=sh, SW=sw, DH=dh, DW=dw,
                PT=pt, PL=pl, G=a["groups"], MG=m // a["groups"], K=cg * kh * kw, P=oh * ow)


def _mul(var: str, n: int) -> str:
    return var if n == 1 else f"{var} * {n}"


def _columns(g: dict, pad: str) -> str:
    """Lines (indented by `pad`) binding `s`, tap kj's input column for output column 0, and
    `oj0 <= oj1`: the output columns whose tap kj reads a column inside [0, W)."""
    sw, ow = g["SW"], g["OW"]
    if sw == 1:
        lo, hi = "-s", f"{g['W']} - s"
    else:
        lo, hi = f"(-s + {sw - 1}) // {sw}", f"({g['W']} - s + {sw - 1}) // {sw}"
    return (f"{pad}s = {_mul('kj', g['DW'])} - {g['PL']}\n"
            f"{pad}oj0 = min(max(0, {lo}), {ow})\n"
            f"{pad}oj1 = max(min({ow}, {hi}), oj0)\n")


def _input_row(g: dict, array: str, start: str) -> str:
    """The view of input row `array[start + oj * SW]` for oj in [oj0, oj1) (start includes s)."""
    if g["SW"] == 1:
        return f"{array}[{start} + oj0:{start} + oj1]"
    return f"{array}[{start} + oj0 * {g['SW']}:{start} + oj1 * {g['SW']} - {g['SW'] - 1}:{g['SW']}]"


def _row_test(g: dict) -> str:
    return (f"ih = {_mul('oi', g['SH'])} + {_mul('ki', g['DH'])} - {g['PT']}\n"
            f"if ih < 0 or ih >= {g['H']}:")


def _indent(text: str, n: int) -> str:
    return "".join(" " * n + line + "\n" for line in text.splitlines())


def _pointwise(g: dict) -> bool:
    return g["KH"] == g["KW"] == g["SH"] == g["SW"] == 1 and g["PT"] == g["PL"] == 0 and \
        (g["OH"], g["OW"]) == (g["H"], g["W"])


def _depthwise(g: dict) -> bool:
    return g["CG"] == 1 and g["MG"] <= 4


# -- grad input -------------------------------------------------------------------------------
def _col2im(g: dict, coff: str, loop: str) -> str:
    """Add the unfolded rows at col[coff:] into dx's planes of group gi of image n."""
    hw = g["H"] * g["W"]
    return f"""\
            for ci in {loop}({g['CG']}):
                plane = xoff + ci * {hw}
                dx[plane:plane + {hw}] = 0
                for ki in range({g['KH']}):
                    for kj in range({g['KW']}):
{_columns(g, ' ' * 24)}\
                        src = {coff} + ((ci * {g['KH']} + ki) * {g['KW']} + kj) * {g['P']}
                        for oi in range({g['OH']}):
{_indent(_row_test(g), 28)}\
                                continue
                            d = {_input_row(g, 'dx', f"plane + ih * {g['W']} + s")}
                            c = col[src + oi * {g['OW']} + oj0:src + oi * {g['OW']} + oj1]
                            for k in range(oj1 - oj0):
                                d[k] += c[k]
"""


def _grad_input_gemm(node: Node, ins, outs, g: dict) -> KernelSource:
    k, p = g["K"], g["P"]
    pointwise = _pointwise(g)
    per_image = g["N"] > 1 and g["N"] * k * p <= SCRATCH_MAX
    outer, inner = ("prange", "range") if per_image else ("range", "prange")
    coff = f"n * {k * p}" if per_image else "0"
    if pointwise:  # the product is dx's group block itself
        params, scratch, tail = "dy, w, dx", (), ""
        dst = f"dx[xoff:xoff + {k * p}].reshape(({k}, {p}))"
    else:
        params, scratch = "dy, w, dx, col", ((ins[0].dtype, k * p * (g["N"] if per_image else 1)),)
        dst, tail = f"col[{coff}:{coff} + {k * p}].reshape(({k}, {p}))", _col2im(g, coff, inner)
    body = f"""\
def KERNEL({params}):
    for n in {outer}({g['N']}):
        for gi in range({g['G']}):
            wg = w[gi * {g['MG'] * k}:(gi + 1) * {g['MG'] * k}].reshape(({g['MG']}, {k}))
            yoff = (n * {g['M']} + gi * {g['MG']}) * {p}
            xoff = (n * {g['C']} + gi * {g['CG']}) * {g['H'] * g['W']}
            np.dot(wg.T, dy[yoff:yoff + {g['MG'] * p}].reshape(({g['MG']}, {p})), {dst})
{tail}"""
    note = (f"gemm w^T @ dy: [{k}x{g['MG']}] @ [{g['MG']}x{p}] x {g['N'] * g['G']}, "
            f"{'1x1 (no col2im)' if pointwise else 'col2im'}{', images in parallel' if per_image else ''}")
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
            m = {_mul('c', g['MG'])} + mm
            yb = (n * {g['M']} + m) * {g['P']}
            for ki in range({g['KH']}):
                for kj in range({g['KW']}):
{_columns(g, ' ' * 20)}\
                    wv = w[(m * {g['KH']} + ki) * {g['KW']} + kj]
                    for oi in range({g['OH']}):
{_indent(_row_test(g), 24)}\
                            continue
                        d = {_input_row(g, 'dx', f"plane + ih * {g['W']} + s")}
                        e = dy[yb + oi * {g['OW']} + oj0:yb + oi * {g['OW']} + oj1]
                        for k in range(oj1 - oj0):
                            d[k] += e[k] * wv
"""
    return KernelSource(body, (*node.inputs, node.outputs[0].name), f"direct {g['KH']}x{g['KW']} (depthwise)",
                        parallel=outs[0].numel >= PARALLEL_MIN or g["N"] * g["C"] >= 4)


def conv2d_grad_input(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    g = _geometry(node, outs[0].shape, ins[1].shape, ins[0].shape)
    return (_grad_input_direct if _depthwise(g) else _grad_input_gemm)(node, ins, outs, g)


# -- grad weight ------------------------------------------------------------------------------
def _im2col(g: dict, loop: str) -> str:
    """Unfold group gi of image n into col[coff:] as [K, P] (zeros where a tap reads padding)."""
    return f"""\
                for row in {loop}({g['K']}):
                    ci = row // {g['KH'] * g['KW']}
                    ki = (row // {g['KW']}) % {g['KH']}
                    kj = row % {g['KW']}
{_columns(g, ' ' * 20)}\
                    src = xoff + ci * {g['H'] * g['W']} + s
                    for oi in range({g['OH']}):
                        dst = coff + row * {g['P']} + oi * {g['OW']}
                        c = col[dst:dst + {g['OW']}]
{_indent(_row_test(g), 24)}\
                            c[:] = 0
                            continue
                        c[:oj0] = 0
                        c[oj1:] = 0
                        d = c[oj0:oj1]
                        e = {_input_row(g, 'x', f"src + ih * {g['W']}")}
                        for k in range(oj1 - oj0):
                            d[k] = e[k]
"""


def _grad_weight_gemm(node: Node, ins, outs, g: dict) -> KernelSource:
    k, p, mk, mgk = g["K"], g["P"], g["M"] * g["K"], g["MG"] * g["K"]
    pointwise = _pointwise(g)
    jobs = g["N"] if pointwise else max(1, min(g["N"], SCRATCH_MAX // (k * p)))
    outer, inner = ("prange", "range") if jobs > 1 else ("range", "prange")
    # a job's part: its partial dw [M, K], then (when it has several images) a [MG, K] product
    stride = mk + (mgk if jobs < g["N"] else 0)
    scratch = ((ins[0].dtype, jobs * stride),) if pointwise else \
        ((ins[0].dtype, jobs * stride), (ins[0].dtype, jobs * k * p))
    cols = f"{'x[xoff:xoff' if pointwise else 'col[coff:coff'} + {k * p}].reshape(({k}, {p})).T"
    dyg = f"dy[yoff:yoff + {g['MG'] * p}].reshape(({g['MG']}, {p}))"
    partial = f"part[poff + gi * {mgk}:poff + (gi + 1) * {mgk}]"
    if jobs < g["N"]:
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
    coff = "" if pointwise else f"\n        coff = j * {k * p}"
    body = f"""\
def KERNEL(x, dy, dw, part{'' if pointwise else ', col'}):
    for j in {outer}({jobs}):{coff}
        poff = j * {stride}
        for n in range(j, {g['N']}, {jobs}):
            for gi in range({g['G']}):
                xoff = (n * {g['C']} + gi * {g['CG']}) * {g['H'] * g['W']}
{'' if pointwise else _im2col(g, inner)}\
                yoff = (n * {g['M']} + gi * {g['MG']}) * {p}
{product}\
    for i in prange({mk}):
        acc = 0.0
        for j in range({jobs}):
            acc += part[j * {stride} + i]
        dw[i] = acc
"""
    note = (f"gemm dy @ im2col(x)^T: [{g['MG']}x{p}] @ [{p}x{k}] x {g['N'] * g['G']}, "
            f"{'1x1 (no unfold), ' if pointwise else ''}{jobs} job(s) with partial sums")
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
{_columns(g, ' ' * 16)}\
                acc = 0.0
                for n in range({g['N']}):
                    xb = (n * {g['C']} + c) * {hw} + s
                    yb = (n * {g['M']} + m) * {g['P']}
                    for oi in range({g['OH']}):
{_indent(_row_test(g), 24)}\
                            continue
                        e = {_input_row(g, 'x', f"xb + ih * {g['W']}")}
                        d = dy[yb + oi * {g['OW']} + oj0:yb + oi * {g['OW']} + oj1]
                        for k in range(oj1 - oj0):
                            acc += e[k] * d[k]
                dw[(m * {g['KH']} + ki) * {g['KW']} + kj] = acc
"""
    return KernelSource(body, (*node.inputs, node.outputs[0].name), f"direct {g['KH']}x{g['KW']} (depthwise)",
                        parallel=g["M"] > 1, fastmath=True)


def conv2d_grad_weight(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    g = _geometry(node, ins[0].shape, outs[0].shape, ins[1].shape)
    return (_grad_weight_direct if _depthwise(g) else _grad_weight_gemm)(node, ins, outs, g)


TEMPLATES = {"conv2d_grad_input": plain_only(conv2d_grad_input),
             "conv2d_grad_weight": plain_only(conv2d_grad_weight)}
