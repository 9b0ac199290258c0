"""Stride-1 convolutions (f32, plain NCHW / OIHW) on a padded flat grid, with 16-lane vector
micro-kernels (simd.py): the forward conv, the input gradient as a forward conv, and the weight
gradient. ResNet-20 batch 64 here: 0.8-1.0 ms per 3x3 conv and per gradient (about 330 GFLOP/s on
two cores) against 2.0-3.9 ms for unfold + BLAS, whose OpenBLAS runs AVX2 kernels, half the
AVX-512 width. The kernels are long (tiles unrolled over taps): a fresh compile of the ResNet-20
step went from 71 to 100 s; numba's cache keeps it to once.

The grid. Each job copies a batch of NB images into a buffer xp, one flat row per channel: image
b is a block of Hb x Wp cells (Wp = W + max(PL, PR), Hb = H + max(PT, PB)) holding pixel (i, j)
at cell b*BS + (PT + i)*Wp + PL + j (BS = Hb*Wp), zeros elsewhere. Output pixel (oi, oj) of image
b is cell q = b*BS + oi*Wp + oj, and its tap (ki, kj) reads cell q + ki*DH*Wp + kj*DW: one offset
per tap, the same for every pixel, so 16 consecutive cells are one (unaligned) vector load. The
pads are shared: a read past a row's end lands in the next row's left pad, one below an image's
last row in the next image's top pad (or the zero slack after the last), so a block needs only
max(PL, PR) pad columns and max(PT, PB) pad rows. Cells that are not output pixels (columns >= OW,
rows >= OH: 6% of the cells at 32x32, 21% at 8x8) compute values never stored (forward) or
multiply zeros (weight gradient).

Forward: a tile of MR output channels x NV vectors of cells lives in registers while the loop
runs over input channels and kernel rows, the KW taps unrolled: NV loads, then per channel one
weight broadcast and NV FMAs. Tiles go to a grid buffer yp, copied out to y row by row with the
bias, residual and activation. Cell tiles are the outer loop, so a tile's input window stays in
L1 while every channel tile uses it.

Input gradient (stride 1): dx is the forward conv of dy with the kernel flipped and its channel
axes swapped, pads (KH-1)*DH - PT (top), ... (bottom PB, likewise for columns); the weight
broadcasts read w at the flipped, transposed index, so no weight copy is made.

Weight gradient: dw[m, k] = sum over cells q of dy'[m, q] * xp[q + offset(k)], k = (c, ki, kj),
where dy' is dy on the grid with zeros off the output pixels. A tile of MR channels x TR rows k
keeps MR*TR vector dot products in registers over the batch's cells (MR + TR loads, MR*TR FMAs
per vector of cells), then sums each across its lanes into the job's float64 partial dw; the
partials of the jobs are summed at the end.
"""

from __future__ import annotations

from ....ir import Node
from .common import KernelSource, lit, parallel_jobs
from .im2col import depthwise, threads

MR, NV = 4, 6  # forward tile: output channels x vectors of 16 cells (24 accumulators)
MR_W, TR_W = 4, 6  # weight-gradient tile: output channels x rows of the unfolded weight
BATCH_BYTES = 384 * 1024  # a job's grid buffers up to this size: more images per batch
MIN_CELLS = 1024  # weight gradient: at least this many cells per batch before lanes are summed


def usable(g: dict, dtype: str, grad_input: bool = False) -> bool:
    """The flat grid serves f32 stride-1 convs that are not depthwise; the input gradient
    also needs the flipped conv's pads, (K-1)*D - P, to be non-negative."""
    if dtype != "f32" or g["SH"] != 1 or g["SW"] != 1 or depthwise(g):
        return False
    if grad_input:
        pads = g["PADS"]
        return (g["KH"] - 1) * g["DH"] >= max(pads[0], pads[2]) and (g["KW"] - 1) * g["DW"] >= max(pads[1], pads[3])
    return True


def grid(n: int, xc: int, yc: int, h: int, w: int, oh: int, ow: int, kh: int, kw: int, dh: int, dw: int,
         pads, cells_min: int) -> dict:
    """Sizes of one job's grid: NB images a batch, Q16 cells a channel (16-rounded), XS cells
    per input channel with the slack the last taps read, J jobs."""
    pt, pl, pb, pr = pads
    wp, hb = w + max(pl, pr), h + max(pt, pb)
    bs = hb * wp
    jobs = max(1, min(n, threads()))
    per_job = -(-n // jobs)
    per_image = (xc + yc) * bs * 4
    nb = max(1, min(per_job, BATCH_BYTES // per_image))
    if cells_min:
        nb = max(nb, min(per_job, -(-cells_min // bs)))
    q16 = -(-nb * bs // 16) * 16
    reach = (kh - 1) * dh * wp + (kw - 1) * dw
    xs = -(-(q16 + reach) // 16) * 16
    return dict(N=n, XC=xc, YC=yc, H=h, W=w, OH=oh, OW=ow, KH=kh, KW=kw, DH=dh, DW=dw, PT=pt, PL=pl,
                WP=wp, BS=bs, NB=nb, Q16=q16, XS=xs, J=jobs, BATCHES=-(-per_job // nb))


def _batch_head(f: dict) -> list[str]:
    """Job prologue: this job's images [lo, hi), its buffers zeroed once; then `for bt`."""
    return [f"        lo = job * {f['N']} // {f['J']}",
            f"        hi = (job + 1) * {f['N']} // {f['J']}",
            f"        xo = job * {f['XC'] * f['XS']}",
            f"        xp[xo:xo + {f['XC'] * f['XS']}] = 0",
            f"        for bt in range({f['BATCHES']}):",
            f"            n0 = lo + bt * {f['NB']}",
            f"            nb = min({f['NB']}, hi - n0)",
            "            if nb <= 0:",
            "                break"]


def _fill(f: dict, src: str, dst: str, base: str, chans: int, rows: int, cols: int, stride: int,
          first: int) -> list[str]:
    """Copy images n0 .. n0+nb of `src` [N, chans, rows, cols] onto the grid `dst`: channel c of
    image bi at base + c*stride + bi*BS + first + i*WP, over row views so the copy vectorises."""
    return ["            for bi in range(nb):",
            f"                for c in range({chans}):",
            f"                    s0 = ((n0 + bi) * {chans} + c) * {rows * cols}",
            f"                    d0 = {base} + c * {stride} + bi * {f['BS']} + {first}",
            f"                    for i in range({rows}):",
            f"                        d = {dst}[d0 + i * {f['WP']}:d0 + i * {f['WP']} + {cols}]",
            f"                        e = {src}[s0 + i * {cols}:s0 + (i + 1) * {cols}]",
            f"                        for k in range({cols}):",
            "                            d[k] = e[k]"]


# -- forward (and input gradient) ----------------------------------------------------------------
def _fw_tile(f: dict, wref, mr: int, nv: int, q0: str, ind: str) -> list[str]:
    """One MR x NV tile at cells q0 of output channels m0 .. m0+mr of group gi."""
    out = [f"{ind}a{r}_{v} = vzero()" for r in range(mr) for v in range(nv)]
    out += [f"{ind}for c in range({f['XCG']}):",
            f"{ind}    xb = xo + (gi * {f['XCG']} + c) * {f['XS']} + {q0}",
            f"{ind}    for ki in range({f['KH']}):",
            f"{ind}        xr = xb + ki * {f['DH'] * f['WP']}"]
    body = ind + "        "
    for kj in range(f["KW"]):
        out += [f"{body}b{v} = vload(xp, xr + {kj * f['DW'] + 16 * v})" for v in range(nv)]
        for r in range(mr):
            out.append(f"{body}s = vsplat(w[{wref(r, kj)}])")
            out += [f"{body}a{r}_{v} = vfma(s, b{v}, a{r}_{v})" for v in range(nv)]
    out += [f"{ind}vstore(yp, yo + (gi * {f['YCG']} + m0 + {r}) * {f['Q16']} + {q0} + {16 * v}, a{r}_{v})"
            for r in range(mr) for v in range(nv)]
    return out


def _fw_weights(f: dict, flipped: bool):
    """w's flat index for output channel m0 + r (within group gi), input channel c, tap (ki, kj)."""
    kk = f["KH"] * f["KW"]
    if not flipped:  # w [YC, XCG, KH, KW]
        return lambda r, kj: f"((gi * {f['YCG']} + m0 + {r}) * {f['XCG']} + c) * {kk} + ki * {f['KW']} + {kj}"
    # input gradient: w [XC, YCG, KH, KW] (the forward's [M, CG, ...]), flipped taps
    return lambda r, kj: (f"((gi * {f['XCG']} + c) * {f['YCG']} + m0 + {r}) * {kk} + "
                          f"({f['KH'] - 1} - ki) * {f['KW']} + {f['KW'] - 1 - kj}")


def _fw_tiles(f: dict, wref) -> list[str]:
    """Every tile of group gi: cell tiles of NV vectors (then the tail), channel tiles inside."""
    full, tail = divmod(f["Q16"] // 16, NV)
    mfull, mtail = divmod(f["YCG"], MR)

    def channel_tiles(nv: int, q0: str, ind: str) -> list[str]:
        out = []
        if mfull:
            out += [f"{ind}for mt in range({mfull}):", f"{ind}    m0 = mt * {MR}"]
            out += _fw_tile(f, wref, MR, nv, q0, ind + "    ")
        if mtail:
            out.append(f"{ind}m0 = {mfull * MR}")
            out += _fw_tile(f, wref, mtail, nv, q0, ind)
        return out

    out = []
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
    if a["act"] == "relu":
        v = f"max({v}, {lit(0)})"
    elif a["act"] == "clip":
        v = f"min(max({v}, {lit(a['act_min'])}), {lit(a['act_max'])})"
    return v, pre


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


def flat_conv(node: Node, f: dict, args: tuple[str, ...], params: str, flipped: bool, note: str) -> KernelSource:
    """The forward kernel over plan `f` (see forward / grad_input)."""
    wref = _fw_weights(f, flipped)
    lines = _batch_head(f)
    lines.insert(3, f"        yo = job * {f['YC'] * f['Q16']}")
    lines += _fill(f, "x", "xp", "xo", f["XC"], f["H"], f["W"], f["XS"], f["PT"] * f["WP"] + f["PL"])
    lines.append(f"            for gi in range({f['G']}):")
    lines += _fw_tiles(f, wref)
    lines += _copy_out(None if flipped else node, f)
    body = parallel_jobs(params, f["J"], lines)
    scratch = (("f32", f["J"] * f["XC"] * f["XS"]), ("f32", f["J"] * f["YC"] * f["Q16"]))
    return KernelSource(body, args, note, parallel=True, fastmath=True, scratch=scratch)


def _note(f: dict, what: str) -> str:
    return (f"flat grid {what}: {f['NB']} image(s) of {f['BS']} cells a batch, {f['J']} job(s), "
            f"tiles {MR if 'weight' not in what else MR_W}x{NV * 16 if 'weight' not in what else TR_W}")


def forward(node: Node, ins, outs, g: dict) -> KernelSource:
    a = node.attrs
    f = grid(g["N"], g["C"], g["M"], g["H"], g["W"], g["OH"], g["OW"], g["KH"], g["KW"], g["DH"], g["DW"],
             a["pads"], 0)
    f.update(XCG=g["CG"], YCG=g["MG"], G=g["G"], BIAS=len(ins) > 2)
    params = "x, w" + (", b" if f["BIAS"] else "") + (", r" if a["residual"] else "") + ", y, xp, yp"
    return flat_conv(node, f, (*node.inputs, node.outputs[0].name), params, False, _note(f, "conv"))


def grad_input(node: Node, ins, outs, g: dict) -> KernelSource:
    """dx = conv(dy, flipped w^T): dy's M channels are the input, dx's C the output."""
    kh, kw = (g["KH"] - 1) * g["DH"], (g["KW"] - 1) * g["DW"]
    pt, pl, pb, pr = g["PADS"]
    f = grid(g["N"], g["M"], g["C"], g["OH"], g["OW"], g["H"], g["W"], g["KH"], g["KW"], g["DH"], g["DW"],
             (kh - pt, kw - pl, kh - pb, kw - pr), 0)
    f.update(XCG=g["MG"], YCG=g["CG"], G=g["G"], BIAS=False)
    return flat_conv(node, f, (*node.inputs, node.outputs[0].name), "x, w, y, xp, yp", True,
                     _note(f, "conv of dy with the flipped kernel"))


# -- weight gradient ---------------------------------------------------------------------------
def _gw_tile(f: dict, mr: int, tr: int, ind: str) -> list[str]:
    """Dot products of dy' rows m0 .. m0+mr with the xp rows of unfolded-weight rows k0 .. k0+tr."""
    kk = f["KH"] * f["KW"]
    out = []
    for t in range(tr):
        tap = f"((k{t} // {f['KW']}) % {f['KH']}) * {f['DH'] * f['WP']} + (k{t} % {f['KW']}) * {f['DW']}"
        out += [f"{ind}k{t} = k0 + {t}", f"{ind}o{t} = xo + (gi * {f['XCG']} + k{t} // {kk}) * {f['XS']} + {tap}"]
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
    f = grid(g["N"], g["C"], g["M"], g["H"], g["W"], g["OH"], g["OW"], g["KH"], g["KW"], g["DH"], g["DW"],
             node.attrs["pads"], MIN_CELLS)
    f.update(XCG=g["CG"], YCG=g["MG"], G=g["G"], K=g["K"])
    mk = g["M"] * g["K"]
    bs, nbmax = f["BS"], f["NB"]
    lines = _batch_head(f)
    lines[3:3] = [f"        yo = job * {f['YC'] * f['Q16']}",
                  f"        po = job * {mk}",
                  f"        dyp[yo:yo + {f['YC'] * f['Q16']}] = 0",
                  f"        part[po:po + {mk}] = 0"]
    lines += _fill(f, "x", "xp", "xo", f["XC"], f["H"], f["W"], f["XS"], f["PT"] * f["WP"] + f["PL"])
    lines += _fill(f, "dy", "dyp", "yo", f["YC"], f["OH"], f["OW"], f["Q16"], 0)
    lines += [f"            if nb < {nbmax}:  # the last batch: no stale images in the sums",
              f"                for c in range({f['XC']}):",
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
    scratch = (("f32", f["J"] * f["XC"] * f["XS"]), ("f32", f["J"] * f["YC"] * f["Q16"]), ("f64", f["J"] * mk))
    return KernelSource(body, (*node.inputs, node.outputs[0].name), _note(f, "weight gradient"), parallel=True,
                        fastmath=True, scratch=scratch)
