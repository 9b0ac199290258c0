"""Convolutions (f32, plain NCHW / OIHW) on a padded flat grid, with 16-lane vector micro-kernels
(simd.py): the forward conv, the input gradient as forward convs of dy, and the weight gradient,
at any stride. ResNet-20 batch 64 here: 0.8-1.0 ms per stride-1 3x3 conv or gradient (about 330
GFLOP/s on two cores) against 2.0-3.9 ms for unfold + BLAS, whose OpenBLAS runs AVX2 kernels,
half the AVX-512 width; the stride-2 ones 0.6-0.8 ms against 1.0-1.6. Each kernel takes 2-3 s
to compile (about 1 s of it numba's parfor lowering of the prange), so a cold compile of the
ResNet-20 step went from 73 s to about 100; numba's cache keeps it to once.

The grid (flat_grid.py): a batch of images copied so that every tap is one flat offset from the
output cell, the same for every pixel; 16 consecutive cells are one vector load.

Forward: a tile of MR output channels x NV vectors of cells lives in registers while the loop
runs over input channels and kernel rows, the KW taps unrolled: NV loads, then per channel one
weight broadcast and NV FMAs. Tiles go to a grid buffer yp, copied out to y row by row with the
bias, residual and activation. Cell tiles are the outer loop, so a tile's input window stays in
L1 while every channel tile uses it.

Input gradient, stride 1: dx is the forward conv of dy with the kernel flipped and its channel
axes swapped, pads (KH-1)*DH - PT (top), ... (bottom PB, likewise for columns); the weight
broadcasts read w at the flipped, transposed index, so no weight copy is made. Stride S: each of
dx's S*S output phases is such a conv with its share of the taps (grad_input_strided).

Weight gradient: dw[m, k] = sum over cells q of dy'[m, q] * xp[q + offset(k)], k = (c, ki, kj),
where dy' is dy on the grid with zeros off the output pixels. A tile of MR channels x TR rows k
keeps MR*TR vector dot products in registers over the batch's cells (MR + TR loads, MR*TR FMAs
per vector of cells), then sums each across its lanes into the job's float64 partial dw; the
partials of the jobs are summed at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ....ir import Node
from ...templating import epilogue_act
from .common import KernelSource, job_function, parallel_jobs
from .flat_grid import batch_head, fill, fill_input, grid, row_offset, span, tap_offset
from .im2col import depthwise

MR, NV = 4, 6  # forward tile: output channels x vectors of 16 cells (24 accumulators)
MR_W, TR_W = 4, 6  # weight-gradient tile: output channels x rows of the unfolded weight
MIN_CELLS = 1024  # weight gradient: at least this many cells per batch before lanes are summed


def usable(g: dict, dtype: str, grad_input: bool = False) -> bool:
    """The flat grid serves f32 convs that are not depthwise, strided ones with equal strides
    and no dilation. A stride-1 input gradient (a conv with the flipped kernel) also needs that
    conv's pads, (K-1)*D - P, to be non-negative; a strided one, pads smaller than the stride
    times the kernel (any sane conv)."""
    if dtype != "f32" or g["SH"] != g["SW"] or depthwise(g):
        return False
    if g["SH"] > 1 and (g["DH"] != 1 or g["DW"] != 1):
        return False
    if grad_input and g["SH"] == 1:
        pads = g["PADS"]
        return (g["KH"] - 1) * g["DH"] >= max(pads[0], pads[2]) and (g["KW"] - 1) * g["DW"] >= max(pads[1], pads[3])
    return True


def _grid(g: dict, cells_min: int = 0) -> dict:
    f = grid(g["N"], g["C"], g["M"], g["H"], g["W"], g["OH"], g["OW"], g["KH"], g["KW"], g["DH"], g["DW"],
             g["PADS"], cells_min, g["SH"])
    f.update(XCG=g["CG"], YCG=g["MG"], G=g["G"], K=g["K"])
    return f


# -- forward (and input gradient) ----------------------------------------------------------------
@dataclass(frozen=True)
class Taps:
    """What a tile sums over, per input channel c: kernel rows ki < `rows` at cell offset `row`,
    columns kj < `cols` at `col` further; `weight(r)` is w's index for output channel m0 + r
    (ki, kj, c, gi and m0 bound in the code; `rows` and `cols` may be run-time names). Both tap
    loops run at run time: unrolling the columns ran no faster and compiled ~20% slower."""

    rows: int | str
    row: str
    cols: int | str
    col: str
    weight: Callable[[int], str]


def _fw_tile(f: dict, taps: Taps, mr: int, nv: int, q0: str, ind: str) -> list[str]:
    """One MR x NV tile at cells q0 of output channels m0 .. m0+mr of group gi."""
    out = [f"{ind}a{r}_{v} = vzero()" for r in range(mr) for v in range(nv)]
    out += [f"{ind}for c in range({f['XCG']}):",
            f"{ind}    xb = xo + (gi * {f['XCG']} + c) * {f['SS'] * f['XS']} + {q0}",
            f"{ind}    for ki in range({taps.rows}):",
            f"{ind}        xr = xb + {taps.row}",
            f"{ind}        for kj in range({taps.cols}):",
            f"{ind}            xk = xr + {taps.col}"]
    body = ind + "            "
    out += [f"{body}b{v} = vload(xp, xk + {16 * v})" for v in range(nv)]
    for r in range(mr):
        out.append(f"{body}s = vsplat(w[{taps.weight(r)}])")
        out += [f"{body}a{r}_{v} = vfma(s, b{v}, a{r}_{v})" for v in range(nv)]
    out += [f"{ind}vstore(yp, yo + (gi * {f['YCG']} + m0 + {r}) * {f['Q16']} + {q0} + {16 * v}, a{r}_{v})"
            for r in range(mr) for v in range(nv)]
    return out


def _fw_taps(f: dict, flipped: bool) -> Taps:
    """Every tap of the kernel; flipped: the input gradient's, w read as [XC, YCG, KH, KW] (the
    forward's [M, CG, ...]) with both kernel axes reversed."""
    kk, kh, kw = f["KH"] * f["KW"], f["KH"], f["KW"]
    if flipped:
        def weight(r):
            return f"((gi * {f['XCG']} + c) * {f['YCG']} + m0 + {r}) * {kk} + ({kh - 1} - ki) * {kw} + {kw - 1} - kj"
    else:
        def weight(r):
            return f"((gi * {f['YCG']} + m0 + {r}) * {f['XCG']} + c) * {kk} + ki * {kw} + kj"
    col = f"kj * {f['DW']}" if f["S"] == 1 else f"kj % {f['S']} * {f['XS']} + kj // {f['S']}"
    return Taps(kh, row_offset(f, "ki"), kw, col, weight)


def _fw_tiles(f: dict, taps: Taps) -> list[str]:
    """Every tile of group gi: cell tiles of NV vectors (then the tail), channel tiles inside."""
    full, tail = divmod(f["Q16"] // 16, NV)
    mfull, mtail = divmod(f["YCG"], MR)

    def channel_tiles(nv: int, q0: str, ind: str) -> list[str]:
        out = []
        if mfull:
            out += [f"{ind}for mt in range({mfull}):", f"{ind}    m0 = mt * {MR}"]
            out += _fw_tile(f, taps, MR, nv, q0, ind + "    ")
        if mtail:
            out.append(f"{ind}m0 = {mfull * MR}")
            out += _fw_tile(f, taps, mtail, nv, q0, ind)
        return out

    out = [f"            for gi in range({f['G']}):"]
    if full:
        out.append(f"                for qt in range({full}):")
        out += channel_tiles(NV, f"qt * {16 * NV}", " " * 20)
    if tail:
        out += channel_tiles(tail, str(full * NV * 16), " " * 16)
    return out


def _epilogue(node: Node | None, f: dict) -> tuple[str, list[str]]:
    """The copy-out value of cell e[k] for channel m (bias, residual, activation)."""
    if node is None:
        return "e[k]", []
    a, v = node.attrs, "e[k]"
    pre = []
    if f["BIAS"]:
        pre.append("                    bv = b[m]")
        v += " + bv"
    if a["residual"]:
        v += " + rr[k]"
    return epilogue_act(a, "f32", v), pre


def _copy_out(node: Node | None, f: dict) -> list[str]:
    value, pre = _epilogue(node, f)
    res = node is not None and node.attrs["residual"]
    lines = ["            for bi in range(nb):",
             f"                for m in range({f['YC']}):",
             *pre,
             f"                    s0 = yo + m * {f['Q16']} + bi * {f['BS']}",
             f"                    d0 = ((n0 + bi) * {f['YC']} + m) * {f['OH'] * f['OW']}",
             f"                    for i in range({f['OH']}):",
             f"                        e = yp[s0 + i * {f['WP']}:s0 + i * {f['WP']} + {f['OW']}]",
             f"                        d = y[d0 + i * {f['OW']}:d0 + (i + 1) * {f['OW']}]"]
    if res:
        lines.append(f"                        rr = r[d0 + i * {f['OW']}:d0 + (i + 1) * {f['OW']}]")
    lines += [f"                        for k in range({f['OW']}):", f"                            d[k] = {value}"]
    return lines


def flat_conv(f: dict, args: tuple[str, ...], params: str, note: str, body_lines: list[str]) -> KernelSource:
    """A forward-shaped kernel over plan `f`: per batch, the grid fill, then `body_lines` (tiles
    and copy-outs)."""
    lines = batch_head(f, [f"        yo = job * {f['YC'] * f['Q16']}"]) + fill_input(f) + body_lines
    scratch = (("f32", f["J"] * f["XC"] * f["SS"] * f["XS"]), ("f32", f["J"] * f["YC"] * f["Q16"]))
    return KernelSource(job_function(params, lines), args, note, parallel=True, fastmath=True, scratch=scratch,
                        jobs=f["J"])


def _note(f: dict, what: str) -> str:
    return (f"flat grid {what}: {f['NB']} image(s) of {f['BS']} cells a batch, {f['J']} job(s), "
            f"tiles {MR if 'weight' not in what else MR_W}x{NV * 16 if 'weight' not in what else TR_W}")


def forward(node: Node, ins, outs, g: dict) -> KernelSource:
    a = node.attrs
    f = _grid(g)
    f["BIAS"] = len(ins) > 2
    params = "x, w" + (", b" if f["BIAS"] else "") + (", r" if a["residual"] else "") + ", y, xp, yp"
    what = "conv" + (f", stride {f['S']} on {f['SS']} phase(s)" if f["S"] > 1 else "")
    lines = _fw_tiles(f, _fw_taps(f, False)) + _copy_out(node, f)
    return flat_conv(f, (*node.inputs, node.outputs[0].name), params, _note(f, what), lines)


def grad_input(node: Node, ins, outs, g: dict) -> KernelSource:
    """dx = conv(dy, flipped w^T): dy's M channels are the input, dx's C the output."""
    kh, kw = (g["KH"] - 1) * g["DH"], (g["KW"] - 1) * g["DW"]
    pt, pl, pb, pr = g["PADS"]
    f = grid(g["N"], g["M"], g["C"], g["OH"], g["OW"], g["H"], g["W"], g["KH"], g["KW"], g["DH"], g["DW"],
             (kh - pt, kw - pl, kh - pb, kw - pr))
    f.update(XCG=g["MG"], YCG=g["CG"], G=g["G"], BIAS=False)
    lines = _fw_tiles(f, _fw_taps(f, True)) + _copy_out(None, f)
    return flat_conv(f, (*node.inputs, node.outputs[0].name), "x, w, y, xp, yp",
                     _note(f, "conv of dy with the flipped kernel"), lines)


def _phase_copy_out(f: dict, s: int, pads) -> list[str]:
    """Cells (i, j) of output phase (pa, pb) into dx[S*i + pa - PT, S*j + pb - PL] over strided
    views, for the cells that land inside dx."""
    pt, pl = pads[0], pads[1]
    return [f"                i0 = max(0, -((pa - {pt}) // {s}))",
            f"                i1 = min({f['OH']}, ({f['XH'] - 1 + pt} - pa) // {s} + 1)",
            f"                j0 = max(0, -((pb - {pl}) // {s}))",
            f"                j1 = min({f['OW']}, ({f['XW'] - 1 + pl} - pb) // {s} + 1)",
            "                if i1 <= i0 or j1 <= j0:",
            "                    continue",
            "                for bi in range(nb):",
            f"                    for m in range({f['YC']}):",
            f"                        s0 = yo + m * {f['Q16']} + bi * {f['BS']}",
            f"                        d0 = ((n0 + bi) * {f['YC']} + m) * {f['XH'] * f['XW']} + {s} * j0 + pb - {pl}",
            "                        for i in range(i0, i1):",
            f"                            e = yp[s0 + i * {f['WP']} + j0:s0 + i * {f['WP']} + j1]",
            f"                            r0 = d0 + (i * {s} + pa - {pt}) * {f['XW']}",
            f"                            d = y[r0:r0 + {s} * (j1 - j0 - 1) + 1:{s}]",
            "                            for k in range(j1 - j0):",
            "                                d[k] = e[k]"]


def grad_input_strided(node: Node, ins, outs, g: dict) -> KernelSource:
    """Stride S: output phase (pa, pb) of dx, dx[S*i + pa - PT, S*j + pb - PL], is a stride-1
    correlation of dy with the taps (pa + S*t, pb + S*u): sum over t, u of w[pa + S*t, pb + S*u]
    * dy[i - t, j - u]. dy goes on a stride-1 grid padded by the most taps a phase has, less one;
    a run-time loop takes the phases in turn, each into yp and then out to its strided cells of
    dx (one copy of the tile code for all phases: unrolling them took 20 s to compile). Cells of
    dx no phase computes (a phase without taps, rows the forward conv's floor dropped) are zeroed
    first."""
    s, kh, kw = g["SH"], g["KH"], g["KW"]
    rows = [len(range(a, kh, s)) for a in range(s)]
    cols = [len(range(b, kw, s)) for b in range(s)]
    pt, pl = rows[0] - 1, cols[0] - 1
    f = grid(g["N"], g["M"], g["C"], g["OH"], g["OW"], g["OH"] + pt, g["OW"] + pl, rows[0], cols[0], 1, 1,
             (pt, pl, pt, pl))
    f.update(XCG=g["MG"], YCG=g["CG"], G=g["G"], XH=g["H"], XW=g["W"])
    covered = sum((i1 - i0) * (j1 - j0)
                  for a in range(s) for b in range(s) if rows[a] and cols[b]
                  for i0, i1 in [span(s, a, g["PT"], g["H"], f["OH"])] for j0, j1 in [span(s, b, g["PL"], g["W"], f["OW"])])

    def weight(r):
        return (f"((gi * {f['XCG']} + c) * {f['YCG']} + m0 + {r}) * {kh * kw} + "
                f"(pa + {s} * ki) * {kw} + pb + {s} * kj")

    taps = Taps("rows", f"({pt} - ki) * {f['WP']}", "cols", f"{pl} - kj", weight)
    lines = [f"            for ph in range({s * s}):",
             f"                pa = ph // {s}",
             f"                pb = ph % {s}",
             f"                rows = ({kh - 1} - pa + {s}) // {s}",
             f"                cols = ({kw - 1} - pb + {s}) // {s}",
             "                if rows <= 0 or cols <= 0:",
             "                    continue"]
    lines += ["    " + line for line in _fw_tiles(f, taps)] + _phase_copy_out(f, s, g["PADS"])
    if covered < g["H"] * g["W"]:
        plane = g["C"] * g["H"] * g["W"]
        lines[:0] = [f"            y[n0 * {plane}:(n0 + nb) * {plane}] = 0"]
    note = _note(f, f"conv of dy with the flipped kernel, stride {s} as {s * s} output phases")
    return flat_conv(f, (*node.inputs, node.outputs[0].name), "x, w, y, xp, yp", note, lines)


# -- weight gradient ---------------------------------------------------------------------------
def _gw_tile(f: dict, mr: int, tr: int, ind: str) -> list[str]:
    """Dot products of dy' rows m0 .. m0+mr with the xp rows of unfolded-weight rows k0 .. k0+tr."""
    out = []
    for t in range(tr):
        out += [f"{ind}k{t} = k0 + {t}"] if t else []
        out.append(f"{ind}o{t} = xo + gi * {f['XCG'] * f['SS'] * f['XS']} + {tap_offset(f, f'k{t}')}")
    out += [f"{ind}y{r} = yo + (gi * {f['YCG']} + m0 + {r}) * {f['Q16']}" for r in range(mr)]
    out += [f"{ind}a{r}_{t} = vzero()" for r in range(mr) for t in range(tr)]
    out.append(f"{ind}for q in range(0, qn, 16):")
    out += [f"{ind}    d{r} = vload(dyp, y{r} + q)" for r in range(mr)]
    for t in range(tr):
        out.append(f"{ind}    xv = vload(xp, o{t} + q)")
        out += [f"{ind}    a{r}_{t} = vfma(d{r}, xv, a{r}_{t})" for r in range(mr)]
    out += [f"{ind}part[po + (gi * {f['YCG']} + m0 + {r}) * {f['K']} + k{t}] += vsum(a{r}_{t})"
            for r in range(mr) for t in range(tr)]
    return out


def _gw_tiles(f: dict) -> list[str]:
    mfull, mtail = divmod(f["YCG"], MR_W)
    kfull, ktail = divmod(f["K"], TR_W)

    def row_tiles(mr: int, ind: str) -> list[str]:
        out = []
        if kfull:
            out += [f"{ind}for kt in range({kfull}):", f"{ind}    k0 = kt * {TR_W}"]
            out += _gw_tile(f, mr, TR_W, ind + "    ")
        if ktail:
            out.append(f"{ind}k0 = {kfull * TR_W}")
            out += _gw_tile(f, mr, ktail, ind)
        return out

    out = []
    if mfull:
        out += [f"                for mt in range({mfull}):", f"                    m0 = mt * {MR_W}"]
        out += row_tiles(MR_W, " " * 20)
    if mtail:
        out.append(f"                m0 = {mfull * MR_W}")
        out += row_tiles(mtail, " " * 16)
    return out


def grad_weight(node: Node, ins, outs, g: dict) -> KernelSource:
    """dw from x and dy, each job over its images into a float64 partial, then the sum."""
    f = _grid(g, MIN_CELLS)
    mk = g["M"] * g["K"]
    bs, nbmax, xs = f["BS"], f["NB"], f["SS"] * f["XS"]
    lines = batch_head(f, [f"        yo = job * {f['YC'] * f['Q16']}",
                           f"        po = job * {mk}",
                           f"        dyp[yo:yo + {f['YC'] * f['Q16']}] = 0",
                           f"        part[po:po + {mk}] = 0"])
    lines += fill_input(f)
    lines += fill(f, "dy", "dyp", "yo", f["YC"], f["OH"], f["OW"], f["Q16"], 0)
    lines += [f"            if nb < {nbmax}:  # the last batch: no stale images in the sums",
              f"                for c in range({f['XC'] * f['SS']}):",
              f"                    xp[xo + c * {f['XS']} + nb * {bs}:xo + c * {f['XS']} + {nbmax * bs}] = 0",
              f"                for m in range({f['YC']}):",
              f"                    dyp[yo + m * {f['Q16']} + nb * {bs}:yo + m * {f['Q16']} + {nbmax * bs}] = 0",
              f"            qn = (nb * {bs} + 15) // 16 * 16",
              f"            for gi in range({f['G']}):"]
    lines += _gw_tiles(f)
    body = parallel_jobs("x, dy, dw, xp, dyp, part", f["J"], lines)
    body += f"""\
    for i in prange({mk}):
        acc = 0.0
        for j in range({f['J']}):
            acc += part[j * {mk} + i]
        dw[i] = acc
"""
    scratch = (("f32", f["J"] * f["XC"] * xs), ("f32", f["J"] * f["YC"] * f["Q16"]), ("f64", f["J"] * mk))
    what = "weight gradient" + (f", stride {f['S']} on {f['SS']} phase(s)" if f["S"] > 1 else "")
    return KernelSource(body, (*node.inputs, node.outputs[0].name), _note(f, what), parallel=True,
                        fastmath=True, scratch=scratch)
