"""Direct convolution into the blocked NCHW16c layout, on 16-lane vector registers.

Layouts: y[n, m // 16, oh, ow, m % 16]; x the same with C (or plain NCHW for a first layer whose
channels do not fill a block); weights packed at compile time to [M/16T, C/16, KH, KW, 16 ci, T,
16 co] (plain input: [M/16T, KH, KW, C, T, 16 co]), so one vector load gives a tap's weights for
16 outputs, and a job reads its weights as one stream.

Micro-kernel: a job is a group of output rows of T output blocks (16T channels): rows are added
until the job holds about JOB_PIXELS pixels, while each thread keeps JOBS_PER_THREAD jobs, so
weights read once from memory serve many strips. Along a row, R output pixels at a time,
T x R accumulators live in registers (f32x16 values, not arrays) through the
loops over input channels and taps: per input channel, T weight vectors are loaded and each of
the R input values is broadcast once and multiplied into T accumulators. T x R + T + 1 <= 32
registers. When a job's weights exceed CHUNK_BYTES, input-channel blocks go in chunks (outermost),
so one chunk's weights stay in L2 across the job's rows; accumulators go back to the output
between chunks. (Chunks of 16 KB, held in L1, ran ResNet-50's 1x1 convs 4-6% slower: more trips
of the accumulators through memory, for weights that stream from L2 fast enough.)
A 1x1 stride-1 conv, whose output pixel q reads input pixel q, runs over the image's pixels as
flat rows (fewer, wider strips than the image's own rows give on 7x7 or 14x14).

Borders: rows outside the input are skipped per tap; pixels whose window leaves the input on the
left or right run one at a time with checks, the interior in unchecked strips of R.
"""

from __future__ import annotations

import numba
import numpy as np

from ....ir import Node, TensorType
from .common import KernelSource, job_function, run_time_sizes

STRIP = {4: 6, 2: 12, 1: 14}  # output blocks per job -> pixels per strip (fits 32 registers)
CHUNK_BYTES = 128 * 1024  # a job's weights beyond this: input blocks in chunks of up to this many bytes
JOB_PIXELS = 96  # a job takes output rows until it holds this many pixels,
JOBS_PER_THREAD = 4  # unless that leaves fewer jobs than this per thread
THREADS = numba.config.NUMBA_NUM_THREADS
ZEROS = "kiln.zeros16"  # the vector border pixels read: one const shared by every conv


def strip_width(ow: int, most: int) -> int:
    """Pixels per strip: as few strips as `most` allows, of equal width, so a row does not end
    in a thin strip (7 columns: 4 + 3, not 6 + 1)."""
    strips = -(-ow // most)
    return -(-ow // strips)


def chunk_blocks(cb: int, per_block: int) -> int:
    """Input blocks per chunk: the most, dividing `cb`, whose weights (`per_block` bytes each)
    fit CHUNK_BYTES; at least one."""
    return max(d for d in range(1, cb + 1) if cb % d == 0 and (d == 1 or d * per_block <= CHUNK_BYTES))


def flat_row(hw: int, most: int) -> int:
    """Pixels per virtual row when a 1x1 stride-1 conv runs over the image's pixels as one flat
    sequence: the divisor of H*W in [48, 256] that wastes least in strips of up to `most`."""
    def waste(p: int) -> float:
        r = strip_width(p, most)
        return 1 - p / (-(-p // r) * r)
    rows = [p for p in range(48, min(hw, 256) + 1) if hw % p == 0]
    return min(rows, key=lambda p: (round(waste(p), 3), p)) if rows else hw


def _plan(node: Node, ins, outs) -> dict:
    (n, c, h, w), (m, _, kh, kw) = ins[0].shape, ins[1].shape
    (_, _, oh, ow) = outs[0].shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = node.attrs["stride"], node.attrs["dilation"], node.attrs["pads"]
    mb = m // 16
    t = next(t for t in (4, 2, 1) if mb % t == 0)
    blocked_in = ins[0].layout == "NCHW16c"
    flat = (kh, kw, sh, sw, pt, pl, pb, pr) == (1, 1, 1, 1, 0, 0, 0, 0)
    if flat:  # pixel q of the output reads pixel q of the input: rows of any width will do
        ow = w = flat_row(h * w, STRIP[t])
        oh = h = oh * outs[0].shape[3] // ow
    cb = c // 16 if blocked_in else 1
    ci = 16 if blocked_in else c
    per_block = t * kh * kw * ci * 16 * 4  # bytes of weights per input block, for T output blocks
    # input blocks per chunk: the accumulators stay in registers through a chunk, whose weights
    # stay in L2 across the job's rows; all of them when they fit
    cbk = chunk_blocks(cb, per_block)
    # rows per job: enough pixels that a chunk's weights, once read, serve many strips,
    # while every thread keeps several jobs
    groups = n * (mb // t)
    rg = max([r for r in range(1, oh + 1) if (r == 1 or (r - 1) * ow < JOB_PIXELS)
              and (r == 1 or groups * -(-oh // r) >= JOBS_PER_THREAD * THREADS)])
    # interior columns: every tap of the window inside [0, w)
    lo = -(-pl // sw)
    hi = min(ow - 1, (w - 1 - (kw - 1) * dw + pl) // sw)
    return dict(N=n, C=c, H=h, W=w, M=m, KH=kh, KW=kw, OH=oh, OW=ow, SH=sh, SW=sw, DH=dh, DW=dw, PT=pt,
                PL=pl, MB=mb, T=t, R=strip_width(ow, STRIP[t]), BIN=blocked_in, CB=cb, CI=ci, CBK=cbk,
                RG=rg, NRG=-(-oh // rg), LO=lo, HI=hi, RES=node.attrs["residual"], ACT=node.attrs["act"], FLAT=flat,
                WHOLE=cbk == cb,
                ALO=node.attrs["act_min"], AHI=node.attrs["act_max"], ALPHA=node.attrs["act_alpha"])


def pack_weights(w: np.ndarray, blocked_in: bool, t: int) -> np.ndarray:
    """[M/16T, C/16, KH, KW, 16 ci, T, 16 co] (plain input: [M/16T, KH, KW, C, T, 16 co]): a job's
    weights, for its T output blocks, are one contiguous stream in the order it reads them."""
    m, c, kh, kw = w.shape
    if blocked_in:
        return w.reshape(m // (16 * t), t, 16, c // 16, 16, kh, kw).transpose(0, 3, 5, 6, 4, 1, 2)
    return w.reshape(m // (16 * t), t, 16, c, kh, kw).transpose(0, 4, 5, 3, 1, 2)


def _x_index(p: dict, col: str) -> str:
    """Flat index of x at (n, cb or channel block, ih, column `col`, ci); CB, C and H are the
    kernel's run-time sizes."""
    if p["BIN"]:
        return f"(((n * CB + cb) * H + ih) * W + {col}) * 16 + ci"
    return f"((n * C + ci) * H + ih) * {p['W']} + {col}"


def _strip(p: dict, first: str, count: int, checked: bool, ind: str, masked: bool = False) -> list[str]:
    """Code for `count` output pixels starting at column expression `first`. The sizes that vary
    between layers (C, CB, H, OH, MB, CBK, and W and OW for a blocked input) are run-time names;
    the window, strides, pads and register tile are literals. `masked`: a row's last strip,
    whose pixels past OW are computed from zeros or stray inputs and not stored (a row of any
    width runs in whole strips of R, one body for every width; a tail body per width would
    tie the kernel to it)."""
    T, out = p["T"], []
    ow = "OW" if p["BIN"] else p["OW"]
    for t in range(T):
        out.append(f"{ind}yo{t} = ((n * MB + mb + {t}) * OH + oh) * {ow} * 16 + ({first}) * 16")
    if masked:
        out += [f"{ind}m{r} = {first} + {r} < OW" for r in range(count)]

    def load(array: str, t: int, r: int) -> str:  # a pixel past the row reads the zero vector
        return f"vload({array} if m{r} else z, yo{t} + {r * 16} if m{r} else 0)" if masked else \
            f"vload({array}, yo{t} + {r * 16})"
    whole = p["WHOLE"]
    # the start: bias, plus the residual, read before this strip's outputs are first written,
    # so the output may take the residual's bytes (reuse_buffers writes it in place)
    start = [f"a{t}_{r} = " + (f"vadd(bias{t}, {load('r', t, r)})" if p["RES"] else f"bias{t}")
             for t in range(T) for r in range(count)]
    if whole:  # all input blocks inside the strip: accumulators never leave the registers
        out += [f"{ind}{line}" for line in start]
    else:  # one chunk of input blocks: start from the bias or from what the last chunk stored
        out.append(f"{ind}if chunk == 0:")
        out += [f"{ind}    {line}" for line in start]
        out.append(f"{ind}else:")
        out += [f"{ind}    a{t}_{r} = {load('y', t, r)}" for t in range(T) for r in range(count)]
    out.append(f"{ind}for cb in range({'CB' if whole else 'chunk, chunk + CBK'}):")
    kin = ind + "    "
    out.append(f"{kin}for kh in range({p['KH']}):")
    out.append(f"{kin}    ih = oh * {p['SH']} + kh * {p['DH']} - {p['PT']}")
    out.append(f"{kin}    if ih < 0 or ih >= H:")
    out.append(f"{kin}        continue")
    out.append(f"{kin}    for kw in range({p['KW']}):")
    out.append(f"{kin}        iw = ({first}) * {p['SW']} + kw * {p['DW']} - {p['PL']}")
    body = f"{kin}        "
    select = (checked or masked) and p["BIN"]  # blocked input: out-of-range pixels read a zero vector instead
    if checked and not select:
        out.append(f"{body}if iw < 0 or iw >= {p['W']}:")
        out.append(f"{body}    continue")
    if select:  # pick each pixel's source outside the channel loop: no branch inside it
        for r in range(count):
            out.append(f"{body}c{r} = iw + {r * p['SW']}")
            out.append(f"{body}ok{r} = 0 <= c{r} < W")
            out.append(f"{body}s{r} = x if ok{r} else z")
            out.append(f"{body}o{r} = ((n * CB + cb) * H + ih) * W * 16 + c{r} * 16 if ok{r} else 0")
    ci = "16" if p["BIN"] else "C"  # input channels per block: a plain input is one block of C
    out.append(f"{body}wo = ((mb // {T} * CB + cb) * {p['KH']} + kh) * {p['KW']} * {ci} * {T * 16} + "
               f"kw * {ci} * {T * 16}")
    out.append(f"{body}for ci in range({ci}):")
    sw = p["SW"]
    out += fma_step(T, count, f"wo + ci * {T * 16}", lambda r: f"s{r}, o{r} + ci" if select else
                    f"x, {_x_index(p, f'iw + {r * sw}')}", body + "    ")
    tail = []
    for r in range(count):  # the residual is in already
        tail += vector_epilogue({**p, "RES": False}, [(f"a{t}_{r}", f"yo{t} + {r * 16}") for t in range(T)])
    if tail and whole:
        out += [f"{ind}{line}" for line in tail]
    elif tail:
        out.append(f"{ind}if chunk == CB - CBK:")
        out += [f"{ind}    {line}" for line in tail]
    for r in range(count):
        stores = [f"vstore(y, yo{t} + {r * 16}, a{t}_{r})" for t in range(T)]
        out += [f"{ind}if m{r}:", *(f"{ind}    {x}" for x in stores)] if masked else [f"{ind}{x}" for x in stores]
    return out


def fma_step(T: int, count: int, w_index: str, source, ind: str) -> list[str]:
    """One input channel's step of the micro-kernel: T weight vectors loaded from w at
    `w_index` + 16 t, and each of `count` input values broadcast once (vbroadcast's arguments
    `source(r)`) and multiplied into the accumulators a{t}_{r}."""
    out = [f"{ind}w{t} = vload(w, {w_index} + {t * 16})" for t in range(T)]
    for r in range(count):
        out.append(f"{ind}xv = vbroadcast({source(r)})")
        out += [f"{ind}a{t}_{r} = vfma(xv, w{t}, a{t}_{r})" for t in range(T)]
    return out


def vector_epilogue(p: dict, accs: list[tuple[str, str]]) -> list[str]:
    """Residual add and activation on accumulators (name, flat output index), after the last block."""
    lines = []
    for acc, idx in accs:
        if p["RES"]:
            lines.append(f"{acc} = vadd({acc}, vload(r, {idx}))")
        if p["ACT"] == "relu":
            lines.append(f"{acc} = vmax({acc}, vzero())")
        elif p["ACT"] == "clip":
            lines.append(f"{acc} = vmin(vmax({acc}, vsplat(np.float32({p['ALO']!r}))), vsplat(np.float32({p['AHI']!r})))")
        elif p["ACT"] == "leaky_relu":  # 0 < alpha <= 1: max(y, alpha y)
            lines.append(f"{acc} = vmax({acc}, vmul({acc}, vsplat(np.float32({p['ALPHA']!r}))))")
        elif p["ACT"] == "sigmoid":
            lines.append(f"{acc} = vsigmoid({acc})")
        elif p["ACT"] == "silu":
            lines.append(f"{acc} = vmul({acc}, vsigmoid({acc}))")
    return lines


# a blocked conv's run-time sizes, in the order of its sizes array
RUN_TIME = ("C", "CB", "H", "W", "OH", "OW", "MB", "CBK", "RG", "NRG")


def conv2d_blocked(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """Shape-generic in N, C, H, OH, M and the job split: the convs of one window, stride,
    padding, width, register tile and epilogue share a kernel (DenseNet's 1x1 convs of every
    input width, ResNet's blocks of every stage with the same width)."""
    p = _plan(node, ins, outs)
    T, R = p["T"], p["R"]
    out_name = node.outputs[0].name
    wname, bname = f"{out_name}.w16", f"{out_name}.b16"
    sizes, sizes_data = run_time_sizes(node, *(p[k] for k in RUN_TIME))
    lines = [f"        {k} = sizes[{i}]" for i, k in enumerate(RUN_TIME)]
    lines += ["        rows = job % NRG",
              f"        mb = (job // NRG) % (MB // {T}) * {T}",
              f"        n = job // (NRG * (MB // {T}))"]
    lines += [f"        bias{t} = vload(b, (mb + {t}) * 16)" for t in range(T)]
    ind = "        "
    if not p["WHOLE"]:  # chunks of input blocks outermost: one chunk's weights stay in L2
        lines.append(f"{ind}for chunk in range(0, CB, CBK):")
        ind += "    "
    lines.append(f"{ind}for oh in range(rows * RG, min(rows * RG + RG, OH)):")
    ind += "    "
    lo, hi = max(p["LO"], 0), p["HI"]
    if p["BIN"]:  # every strip picks its pixels' sources (zeros outside) before the channel loop:
        # one strip body serves the whole row, and one masked body the row's end, at any width
        checked = lo > 0 or hi < p["OW"] - 1
        lines.append(f"{ind}for s in range(OW // {R}):")
        lines += _strip(p, f"s * {R}", R, checked, ind + "    ")
        lines.append(f"{ind}if OW % {R}:")
        lines += _strip(p, f"OW // {R} * {R}", R, checked, ind + "    ", masked=True)
    # a plain first-layer input: border pixels one at a time, with branches, at its own width
    segments = [] if p["BIN"] else [(c, c + 1, True) for c in range(min(lo, p["OW"]))] + \
        ([(lo, hi + 1, False)] if hi >= lo else []) + [(c, c + 1, True) for c in range(max(hi + 1, lo), p["OW"])]
    for start, stop, checked in segments:
        full, tail = divmod(stop - start, R)
        if full > 1:
            lines.append(f"{ind}for s in range({full}):")
            lines += _strip(p, f"{start} + s * {R}", R, checked, ind + "    ")
        elif full == 1:
            lines += _strip(p, str(start), R, checked, ind)
        if tail:
            lines += _strip(p, str(start + full * R), tail, checked, ind)
    note = (f"direct NCHW16c {'blocked' if p['BIN'] else 'plain'} input, {T} output blocks x {R} pixels "
            f"in registers, {p['KH']}x{p['KW']}/{p['SH']}, ")
    note += "sizes at run time" if p["BIN"] else f"C, H and M at run time, rows of {p['OW']}"
    if p["FLAT"]:
        note += ", pixels as rows"
    if not p["WHOLE"]:
        note += ", input blocks in chunks"
    w_in, has_bias = node.inputs[1], len(node.inputs) > 2
    b_in = node.inputs[2] if has_bias else None
    args = (node.inputs[0], wname, bname, *((node.inputs[3],) if p["RES"] else ()), sizes, out_name, ZEROS)
    params = f"x, w, b, {'r, ' if p['RES'] else ''}sizes, y, z"
    body = job_function(params, lines)
    if p["RES"] or p["ACT"]:
        note += f", fused {'residual add + ' if p['RES'] else ''}{p['ACT'] or 'no activation'}"

    def packed_w(params):
        return pack_weights(params[w_in], p["BIN"], T)

    def packed_b(params):
        return params[b_in] if has_bias else np.zeros(p["M"], np.float32)

    return KernelSource(body, args, note, parallel=True, fastmath=True, jobs=p["N"] * (p["MB"] // T) * p["NRG"],
                        packed={wname: packed_w, bname: packed_b, ZEROS: np.zeros(16, np.float32), **sizes_data})


def depthwise_blocked(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """Depthwise conv (one input channel per output channel) in NCHW16c: 16 channels per vector,
    a job per (image, channel block, output row), R output pixels accumulated in registers.
    Channel blocks, heights and widths come at run time (sizes: blocks, H, OH, W, OW), a row's
    last strip masked past OW: the depthwise convs of one window, stride, padding and epilogue
    share a kernel."""
    n, c, h, w = ins[0].shape
    _, _, kh, kw = ins[1].shape
    _, _, oh, ow = outs[0].shape
    (sh, sw), (dh, dw), (pt, pl, _, _) = node.attrs["stride"], node.attrs["dilation"], node.attrs["pads"]
    cb, r_max = c // 16, 8
    out_name = node.outputs[0].name
    wname, bname = f"{out_name}.w16", f"{out_name}.b16"
    w_in, b_in = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None
    a = node.attrs
    ep = dict(RES=a["residual"], ACT=a["act"], ALO=a["act_min"], AHI=a["act_max"], ALPHA=a["act_alpha"])
    sizes, sizes_data = run_time_sizes(node, cb, h, oh, w, ow)

    def packed_w(params):  # [C/16, KH, KW, 16]
        return params[w_in].reshape(cb, 16, kh, kw).transpose(0, 2, 3, 1)

    def packed_b(params):
        return params[b_in] if b_in else np.zeros(c, np.float32)

    def strip(first: str, count: int, ind: str, masked: bool = False) -> list[str]:
        out = [f"{ind}a{r} = bias" for r in range(count)]
        out += [f"{ind}for ki in range({kh}):",
                f"{ind}    ih = oh * {sh} + ki * {dh} - {pt}",
                f"{ind}    if ih < 0 or ih >= H:",
                f"{ind}        continue",
                f"{ind}    for kj in range({kw}):",
                f"{ind}        wv = vload(w, ((cbk * {kh} + ki) * {kw} + kj) * 16)"]
        for r in range(count):
            out += [f"{ind}        iw = ({first} + {r}) * {sw} + kj * {dw} - {pl}",
                    f"{ind}        if 0 <= iw < W:",
                    f"{ind}            a{r} = vfma(vload(x, ((nb * H + ih) * W + iw) * 16), wv, a{r})"]
        idx = [f"((nb * OH + oh) * OW + {first} + {r}) * 16" for r in range(count)]
        for r in range(count):  # a pixel past the row's end (masked): no residual read, no store
            finish = [*vector_epilogue(ep, [(f"a{r}", idx[r])]), f"vstore(y, {idx[r]}, a{r})"]
            if masked:
                out += [f"{ind}if {first} + {r} < OW:", *(f"{ind}    {line}" for line in finish)]
            else:
                out += [f"{ind}{line}" for line in finish]
        return out

    lines = ["        CB = sizes[0]",
             "        H = sizes[1]",
             "        OH = sizes[2]",
             "        W = sizes[3]",
             "        OW = sizes[4]",
             "        oh = job % OH",
             "        nb = job // OH",
             "        cbk = nb % CB",
             "        bias = vload(b, cbk * 16)"]
    lines.append(f"        for s in range(OW // {r_max}):")
    lines += strip(f"s * {r_max}", r_max, " " * 12)
    lines.append(f"        if OW % {r_max}:")
    lines += strip(f"OW // {r_max} * {r_max}", r_max, " " * 12, masked=True)
    args = (node.inputs[0], wname, bname, *((node.inputs[3],) if ep["RES"] else ()), sizes, out_name)
    body = job_function(f"x, w, b, {'r, ' if ep['RES'] else ''}sizes, y", lines)
    return KernelSource(body, args, f"depthwise {kh}x{kw}/{sh} NCHW16c, 16 channels per vector, {r_max} pixels, "
                        "sizes at run time", parallel=True, fastmath=True,
                        packed={wname: packed_w, bname: packed_b, **sizes_data}, jobs=n * cb * oh)
