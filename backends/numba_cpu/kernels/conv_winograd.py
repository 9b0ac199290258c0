"""Winograd F(2x2, 3x3) convolution in the blocked NCHW16c layout: a 3x3 stride-1 conv as 16
small matrix products instead of 9, 2.25x fewer multiplications.

Algebra (Lavin and Gray's minimal filtering): each 2x2 output tile Y is computed from the 4x4
input tile d around it as

    Y = A^T [ sum over input channels of (G g G^T) * (B^T d B) ] A

elementwise product in the 4x4 "position" space, with

    B^T = [1  0 -1  0]    G = [ 1    0    0 ]    A^T = [1 1  1  0]
          [0  1  1  0]        [1/2  1/2  1/2]          [0 1 -1 -1]
          [0 -1 1  0]        [1/2 -1/2  1/2]
          [0  1  0 -1]        [ 0    0    1 ]

U = G g G^T is computed once, at compile time, in float64; per position p the sum over input
channels is a matrix product V_p[tiles, C] @ U_p[C, M], run on the direct conv's micro-kernel
(T output blocks x R tiles of accumulators in registers, one broadcast per input value).

Jobs: (T output blocks, a run of up to JOB_TILES tiles), the batch's tiles numbered image by
image, row by row, so a job may span images (a 7x7 image has 16 tiles: weights read once per
job would otherwise serve only those; ResNet-18's 7x7 3x3 convs at batch 8: 11.1 -> 7.1 ms). Per
chunk of input blocks (their transformed weights, all 16 positions, up to conv_blocked's
CHUNK_BYTES): the job's input tiles are transformed into V (per-thread scratch, zeros outside
the image), then the 16 products accumulate into M (per-thread scratch, [position, tile, T,
16]); after the last chunk
each tile's M is transformed back, the bias, residual and activation applied, and the 2x2
outputs stored (those inside the image). The residual is read right before the output at the
same place is written, so the output may take the residual's bytes.

Weights: [M/16T, 16 positions, C/16, 16 ci, T, 16 co].

Shape-generic: channels, heights, widths, tile counts, tiles per job (a multiple of R) and the
chunk size come at run time (an int64 sizes array); the register tile (T, R) and the pads are
literals, so the Winograd convs of a network share one kernel per register tile and epilogue.
"""

from __future__ import annotations

import numpy as np

from ....ir import Node, TensorType
from .common import KernelSource, job_function, run_time_sizes
from .conv_blocked import JOBS_PER_THREAD, STRIP, THREADS, ZEROS, chunk_blocks, fma_step, vector_epilogue

JOB_TILES = 64  # tiles per job, at most
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def pack_weights(w: np.ndarray, t: int) -> np.ndarray:
    """U = G g G^T per (output, input) channel, as [M/16T, 16 positions, C/16, 16 ci, T, 16 co]."""
    m, c = w.shape[:2]
    u = np.einsum("ai,mcij,bj->mcab", G, w.astype(np.float64), G).reshape(m // (16 * t), t, 16, c // 16, 16, 16)
    return np.ascontiguousarray(u.transpose(0, 5, 3, 4, 1, 2), dtype=np.float32)


def _plan(node: Node, ins, outs) -> dict:
    n, c, h, w = ins[0].shape
    m, oh, ow = outs[0].shape[1:]
    pt, pl = node.attrs["pads"][:2]
    mb, cb = m // 16, c // 16
    t = next(t for t in (4, 2, 1) if mb % t == 0)
    th, tw = -(-oh // 2), -(-ow // 2)
    total = n * th * tw
    groups = mb // t

    def jobs(jt: int) -> int:
        return groups * -(-total // jt)

    def waste(jt: int) -> float:
        return -(-total // jt) * jt / total - 1
    # tiles per job: the most (up to JOB_TILES) that leave every thread JOBS_PER_THREAD jobs and
    # waste under 5% in a partial last job; the tile list runs on across images, so a small
    # image's weights, read once per job, still serve many tiles
    # whole strips of R tiles only (a job's last strip runs on zero tiles past the batch), so that
    # the job size is a literal of the register tile alone; a batch of fewer tiles: one strip
    r = STRIP[t]
    sizes = [jt for jt in range(r, max(JOB_TILES, r) + 1, r) if jt == r or jobs(jt) >= JOBS_PER_THREAD * THREADS]
    jt = min(sizes, key=lambda jt: (waste(jt) > 0.05, waste(jt) if waste(jt) > 0.05 else 0, -jt))
    per_block = 16 * 16 * t * 16 * 4
    cbk = chunk_blocks(cb, per_block)
    return dict(N=n, C=c, H=h, W=w, M=m, OH=oh, OW=ow, PT=pt, PL=pl, MB=mb, CB=cb, T=t, R=r, TH=th, TW=tw,
                TILES=total, NJ=-(-total // jt), JT=jt, CBK=cbk, WHOLE=cbk == cb, VS=16 * cbk * jt * 16, MS=16 * jt * t * 16,
                RES=node.attrs["residual"], ACT=node.attrs["act"], ALO=node.attrs["act_min"],
                AHI=node.attrs["act_max"], ALPHA=node.attrs["act_alpha"])


# a Winograd conv's run-time sizes, in the order of its sizes array
RUN_TIME = ("CB", "CBK", "H", "W", "OH", "OW", "TH", "TW", "TILES", "NJ", "JT", "MB", "VS", "MS")


def _tile(p: dict, ind: str) -> list[str]:
    """Tile j of the job: its image n and its first output row and column (oh, ow)."""
    return [f"{ind}q = q0 + j",
            f"{ind}n = q // (TH * TW)",
            f"{ind}oh = q % (TH * TW) // TW * 2",
            f"{ind}ow = q % TW * 2"]


def _input_transform(p: dict, ind: str) -> list[str]:
    """The job's tiles of this chunk of input blocks -> V[position, block, tile, 16]."""
    out = [f"{ind}hw16 = H * W * 16",
           f"{ind}for j in range(JT):", *_tile(p, ind + "    "),
           f"{ind}    ih = oh - {p['PT']} if q < TILES else -4",  # tiles past the batch read zeros
           f"{ind}    iw = ow - {p['PL']}"]
    body = ind + "    "
    for a in range(4):
        for b in range(4):  # each of the 16 input pixels: its source (the zero vector outside)
            out += [f"{body}ok = 0 <= ih + {a} < H and 0 <= iw + {b} < W",
                    f"{body}s{a}{b} = x if ok else z",
                    f"{body}o{a}{b} = (((n * CB + chunk) * H + ih + {a}) * W + iw + {b}) * 16 if ok else 0",
                    f"{body}e{a}{b} = hw16 if ok else 0"]
    out.append(f"{body}for cbl in range(CBK):")
    inner = body + "    "
    out += [f"{inner}d{a}{b} = vload(s{a}{b}, o{a}{b} + cbl * e{a}{b})" for a in range(4) for b in range(4)]
    for b in range(4):  # B^T d: over rows
        out += [f"{inner}t0{b} = vsub(d0{b}, d2{b})", f"{inner}t1{b} = vadd(d1{b}, d2{b})",
                f"{inner}t2{b} = vsub(d2{b}, d1{b})", f"{inner}t3{b} = vsub(d1{b}, d3{b})"]
    cols = [("vsub", 0, 2), ("vadd", 1, 2), ("vsub", 2, 1), ("vsub", 1, 3)]  # (B^T d) B: over columns
    for a in range(4):
        for b, (op, i, k) in enumerate(cols):
            pos = a * 4 + b
            out.append(f"{inner}vstore(vs, vo + (({pos} * CBK + cbl) * JT + j) * 16, {op}(t{a}{i}, t{a}{k}))")
    return out


def _strip(p: dict, first: str, count: int, ind: str) -> list[str]:
    """R tiles' products at one position, over this chunk's input blocks, into M."""
    T = p["T"]
    out = [f"{ind}mo{r} = mo + ((pos * JT + {first} + {r}) * {T}) * 16" for r in range(count)]
    if p["WHOLE"]:
        out += [f"{ind}a{t}_{r} = vzero()" for t in range(T) for r in range(count)]
    else:
        out.append(f"{ind}if chunk == 0:")
        out += [f"{ind}    a{t}_{r} = vzero()" for t in range(T) for r in range(count)]
        out.append(f"{ind}else:")
        out += [f"{ind}    a{t}_{r} = vload(ms, mo{r} + {t * 16})" for t in range(T) for r in range(count)]
    out.append(f"{ind}for cbl in range(CBK):")
    out.append(f"{ind}    vi = vo + ((pos * CBK + cbl) * JT + {first}) * 16")
    out.append(f"{ind}    wi = wo + cbl * {16 * T * 16}")
    out.append(f"{ind}    for ci in range(16):")
    out += fma_step(T, count, f"wi + ci * {T * 16}", lambda r: f"vs, vi + {r * 16} + ci", ind + "        ")
    out += [f"{ind}vstore(ms, mo{r} + {t * 16}, a{t}_{r})" for r in range(count) for t in range(T)]
    return out


def _output_transform(p: dict, ind: str) -> list[str]:
    """M -> the 2x2 outputs of every tile, with bias, residual and activation."""
    T = p["T"]
    body = ind + "    "
    out = [f"{ind}for j in range(JT):", *_tile(p, body)]
    out += [f"{body}if q >= TILES:", f"{body}    break"]  # the last job's tiles past the batch
    for t in range(T):
        out += [f"{body}m{a}{b} = vload(ms, mo + (({a * 4 + b} * JT + j) * {T} + {t}) * 16)"
                for a in range(4) for b in range(4)]
        for b in range(4):  # A^T m: over rows
            out += [f"{body}s0{b} = vadd(vadd(m0{b}, m1{b}), m2{b})", f"{body}s1{b} = vsub(vsub(m1{b}, m2{b}), m3{b})"]
        for a in range(2):  # (A^T m) A: over columns, plus the bias
            out += [f"{body}y{a}0 = vadd(vadd(vadd(s{a}0, s{a}1), s{a}2), bias{t})",
                    f"{body}y{a}1 = vadd(vsub(vsub(s{a}1, s{a}2), s{a}3), bias{t})"]
        for a in range(2):
            for b in range(2):
                idx = f"(((n * MB + mb + {t}) * OH + oh + {a}) * OW + ow + {b}) * 16"
                lines = [*vector_epilogue(p, [(f"y{a}{b}", idx)]), f"vstore(y, {idx}, y{a}{b})"]
                # an odd height or width: the last tiles' second row or column is outside
                edge = [c for c, second in ((f"oh + {a} < OH", a), (f"ow + {b} < OW", b)) if second]
                if edge:
                    out.append(f"{body}if {' and '.join(edge)}:")
                    out += [f"{body}    {line}" for line in lines]
                else:
                    out += [f"{body}{line}" for line in lines]
    return out


def conv2d_winograd(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    p = _plan(node, ins, outs)
    T, R = p["T"], p["R"]
    out_name = node.outputs[0].name
    wname, bname = f"{out_name}.wino", f"{out_name}.b16"
    sizes, sizes_data = run_time_sizes(node, *(p[k] for k in RUN_TIME))
    lines = [f"        {k} = sizes[{i}]" for i, k in enumerate(RUN_TIME)]
    lines += ["        q0 = job % NJ * JT",
              "        g = job // NJ",
              f"        mb = g * {T}",
              "        tid = get_thread_id()",
              "        vo = tid * VS",
              "        mo = tid * MS"]
    lines += [f"        bias{t} = vload(b, (mb + {t}) * 16)" for t in range(T)]
    lines.append("        for chunk in range(0, CB, CBK):")
    ind = " " * 12
    lines += _input_transform(p, ind)
    lines.append(f"{ind}for pos in range(16):")
    lines.append(f"{ind}    wo = ((g * 16 + pos) * CB + chunk) * {16 * T * 16}")
    lines.append(f"{ind}    for s in range(JT // {R}):")
    lines += _strip(p, f"s * {R}", R, ind + "        ")
    lines += _output_transform(p, " " * 8)
    args = (node.inputs[0], wname, bname, *((node.inputs[3],) if p["RES"] else ()), sizes, out_name, ZEROS)
    params = f"x, w, b, {'r, ' if p['RES'] else ''}sizes, y, z, vs, ms"
    note = (f"winograd F(2x2,3x3) NCHW16c: {T} output blocks x {R} tiles in registers, tiles a job in strips of {R}, "
            f"sizes at run time{'' if p['WHOLE'] else ', input blocks in chunks'}")
    if p["RES"] or p["ACT"]:
        note += f", fused {'residual add + ' if p['RES'] else ''}{p['ACT'] or 'no activation'}"
    w_in, b_in = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None

    def packed_w(params):
        return pack_weights(params[w_in], T)

    def packed_b(params):
        return params[b_in] if b_in else np.zeros(p["M"], np.float32)

    return KernelSource(job_function(params, lines), args, note, parallel=True, fastmath=True,
                        jobs=p["NJ"] * (p["MB"] // T), scratch=(("f32", THREADS * p["VS"]), ("f32", THREADS * p["MS"])),
                        packed={wname: packed_w, bname: packed_b, ZEROS: np.zeros(16, np.float32), **sizes_data})

