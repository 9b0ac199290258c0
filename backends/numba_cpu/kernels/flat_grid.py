"""The padded flat grid the conv_flat.py kernels run on: its sizes, the copy of a batch of images
onto it, and each tap's offset.

Stride 1. Each job copies a batch of NB images into a buffer xp, one flat row per channel:
image b is a block of Hb x Wp cells (Wp = W + max(PL, PR), Hb = H + max(PT, PB)) holding pixel
(i, j) at cell b*BS + (PT + i)*Wp + PL + j (BS = Hb*Wp), zeros elsewhere. Output pixel (oi, oj)
of image b is cell q = b*BS + oi*Wp + oj, and its tap (ki, kj) reads cell q + ki*DH*Wp + kj*DW:
one offset per tap, the same for every pixel, so 16 consecutive cells are one (unaligned) vector
load. The pads are shared: a read past a row's end lands in the next row's left pad, one below
an image's last row in the next image's top pad (or the zero slack after the last), so a block
needs only max(PL, PR) pad columns and max(PT, PB) pad rows. Cells that are not output pixels
(columns >= OW, rows >= OH: 6% of the cells at 32x32, 21% at 8x8) compute values never stored
(forward) or multiply zeros (weight gradient).

Stride S > 1 (no dilation): the padded input is split into phases, plane (a, b) holding padded
pixel (S*i + a, S*j + b), so tap (ki, kj) of output (oi, oj) reads phase (ki % S, kj % S) at
(oi + ki // S, oj + kj // S): a stride-1 offset again. A block is the Hq x Wq cells outputs
read (Hq = OH + (KH-1) // S), pads included; only the phases some tap reads are kept (one for a
1x1 conv). Input channel c's phase p is row c*SS + p of xp.

Cells are zeroed once per job; a batch's copy writes the same cells every time, so pads stay
zero. Images past the last of a short final batch keep stale values, harmless where the output
is not stored; the weight gradient zeroes them.
"""

from __future__ import annotations

from .im2col import threads

BATCH_BYTES = 384 * 1024  # a job's grid buffers up to this size: more images per batch


def grid(n: int, xc: int, yc: int, h: int, w: int, oh: int, ow: int, kh: int, kw: int, dh: int, dw: int,
         pads, cells_min: int = 0, stride: int = 1) -> dict:
    """Sizes of one job's grid: NB images a batch, Q16 cells a channel (16-rounded), XS cells per
    input channel row with the slack the last taps read, SS phase rows per input channel, J
    jobs (one per thread, images split evenly)."""
    pt, pl, pb, pr = pads
    s = stride
    if s == 1:
        wp, hb, sa, sb = w + max(pl, pr), h + max(pt, pb), 1, 1
        reach = (kh - 1) * dh * wp + (kw - 1) * dw
    else:
        wp, hb, sa, sb = ow + (kw - 1) // s, oh + (kh - 1) // s, min(s, kh), min(s, kw)
        reach = (kh - 1) // s * wp + (kw - 1) // s
    bs = hb * wp
    jobs = max(1, min(n, threads()))
    per_job = -(-n // jobs)
    nb = max(1, min(per_job, BATCH_BYTES // ((xc * sa * sb + yc) * bs * 4)))
    if cells_min:
        nb = max(nb, min(per_job, -(-cells_min // bs)))
    q16 = -(-nb * bs // 16) * 16
    return dict(N=n, XC=xc, YC=yc, H=h, W=w, OH=oh, OW=ow, KH=kh, KW=kw, DH=dh, DW=dw, PT=pt, PL=pl, S=s,
                SB=sb, SS=sa * sb, WP=wp, BS=bs, NB=nb, Q16=q16, XS=-(-(q16 + reach) // 16) * 16, J=jobs,
                BATCHES=-(-per_job // nb))


def row_offset(f: dict, ki: str) -> str:
    """The offset of kernel row `ki` (an expression) within an input channel's rows."""
    if f["S"] == 1:
        return f"{ki} * {f['DH'] * f['WP']}"
    return f"({ki}) % {f['S']} * {f['SB'] * f['XS']} + ({ki}) // {f['S']} * {f['WP']}"


def col_offset(f: dict, kj: int) -> int:
    """The offset of kernel column `kj`."""
    return kj * f["DW"] if f["S"] == 1 else kj % f["S"] * f["XS"] + kj // f["S"]


def tap_offset(f: dict, k: str) -> str:
    """The offset of unfolded-weight row `k` (an expression: channel, kernel row, column)."""
    ki, kj = f"({k} // {f['KW']}) % {f['KH']}", f"{k} % {f['KW']}"
    col = f"({kj}) * {f['DW']}" if f["S"] == 1 else f"({kj}) % {f['S']} * {f['XS']} + ({kj}) // {f['S']}"
    return f"({k} // {f['KH'] * f['KW']}) * {f['SS'] * f['XS']} + {row_offset(f, ki)} + {col}"


def batch_head(f: dict, more: list[str]) -> list[str]:
    """Job prologue: this job's images [lo, hi), xp zeroed once (then `more`); `for bt` over
    batches, binding n0 and nb."""
    size = f["XC"] * f["SS"] * f["XS"]
    return [f"        lo = job * {f['N']} // {f['J']}",
            f"        hi = (job + 1) * {f['N']} // {f['J']}",
            f"        xo = job * {size}",
            f"        xp[xo:xo + {size}] = 0",
            *more,
            f"        for bt in range({f['BATCHES']}):",
            f"            n0 = lo + bt * {f['NB']}",
            f"            nb = min({f['NB']}, hi - n0)",
            "            if nb <= 0:",
            "                break"]


def fill(f: dict, src: str, dst: str, base: str, chans: int, rows: int, cols: int, stride: int,
         first: int) -> list[str]:
    """Copy images n0 .. n0+nb of `src` [N, chans, rows, cols] onto the stride-1 grid `dst`:
    channel c of image bi at base + c*stride + bi*BS + first + i*WP, over row views so the copy
    vectorises (dy onto its grid too: `first` 0)."""
    return ["            for bi in range(nb):",
            f"                for c in range({chans}):",
            f"                    s0 = ((n0 + bi) * {chans} + c) * {rows * cols}",
            f"                    d0 = {base} + c * {stride} + bi * {f['BS']} + {first}",
            f"                    for i in range({rows}):",
            f"                        d = {dst}[d0 + i * {f['WP']}:d0 + i * {f['WP']} + {cols}]",
            f"                        e = {src}[s0 + i * {cols}:s0 + (i + 1) * {cols}]",
            f"                        for k in range({cols}):",
            "                            d[k] = e[k]"]


def span(s: int, phase: int, pad: int, size: int, cells: int) -> tuple[int, int]:
    """Phase cells [lo, hi) whose padded position s*i + phase lands inside [pad, pad + size)."""
    lo = max(0, -(-(pad - phase) // s))
    hi = min(cells, (size - 1 + pad - phase) // s + 1)
    return lo, max(lo, hi)


def fill_phases(f: dict) -> list[str]:
    """Copy images n0 .. n0+nb of x onto the phase grid (stride > 1): for each kept phase, the
    rows and columns that land inside x (static ranges), over strided row views."""
    s, hq = f["S"], f["BS"] // f["WP"]
    out = ["            for bi in range(nb):",
           f"                for c in range({f['XC']}):",
           f"                    s0 = ((n0 + bi) * {f['XC']} + c) * {f['H'] * f['W']}",
           f"                    d0 = xo + c * {f['SS'] * f['XS']} + bi * {f['BS']}"]
    for p in range(f["SS"]):
        a, b = divmod(p, f["SB"])
        i0, i1 = span(s, a, f["PT"], f["H"], hq)
        j0, j1 = span(s, b, f["PL"], f["W"], f["WP"])
        if i1 == i0 or j1 == j0:
            continue
        first = s * j0 + b - f["PL"]
        row = f"d0 + i * {f['WP']}"
        out += [f"                    for i in range({i0}, {i1}):",
                f"                        d = xp[{row} + {p * f['XS'] + j0}:{row} + {p * f['XS'] + j1}]",
                f"                        r = s0 + (i * {s} + {a - f['PT']}) * {f['W']} + {first}",
                f"                        e = x[r:r + {s * (j1 - j0 - 1) + 1}:{s}]",
                f"                        for k in range({j1 - j0}):",
                "                            d[k] = e[k]"]
    return out


def fill_input(f: dict) -> list[str]:
    """x onto xp, whichever the stride."""
    if f["S"] == 1:
        return fill(f, "x", "xp", "xo", f["XC"], f["H"], f["W"], f["XS"], f["PT"] * f["WP"] + f["PL"])
    return fill_phases(f)
