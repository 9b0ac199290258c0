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
"""

from __future__ import annotations

import numpy as np

from ....ir import Node, TensorType
from .common import KernelSource, job_function
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
    sizes = [jt for jt in range(1, min(JOB_TILES, total) + 1) if jt == 1 or jobs(jt) >= JOBS_PER_THREAD * THREADS]
    jt = min(sizes, key=lambda jt: (waste(jt) > 0.05, waste(jt) if waste(jt) > 0.05 else 0, -jt))
    per_block = 16 * 16 * t * 16 * 4
    cbk = chunk_blocks(cb, per_block)
    return dict(N=n, C=c, H=h, W=w, M=m, OH=oh, OW=ow, PT=pt, PL=pl, MB=mb, CB=cb, T=t, R=STRIP[t], TH=th, TW=tw,
                TILES=total, NJ=-(-total // jt), JT=jt, CBK=cbk, VS=16 * cbk * jt * 16, MS=16 * jt * t * 16,
                RES=node.attrs["residual"], ACT=node.attrs["act"], ALO=node.attrs["act_min"],
                AHI=node.attrs["act_max"], ALPHA=node.attrs["act_alpha"])


def _tile(p: dict, ind: str) -> list[str]:
    """Tile j of the job: its image n and its first output row and column (oh, ow)."""
    per_image = p["TH"] * p["TW"]
    return [f"{ind}q = q0 + j",
            f"{ind}n = q // {per_image}",
            f"{ind}oh = q % {per_image} // {p['TW']} * 2",
            f"{ind}ow = q % {p['TW']} * 2"]


def _input_transform(p: dict, ind: str) -> list[str]:
    """The job's tiles of this chunk of input blocks -> V[position, block, tile, 16]."""
    hw16 = p["H"] * p["W"] * 16
    out = [f"{ind}for j in range({p['JT']}):", *_tile(p, ind + "    "),
           f"{ind}    ih = oh - {p['PT']}" + (f" if q < {p['TILES']} else -4" if p["NJ"] * p["JT"] > p["TILES"] else ""),
           f"{ind}    iw = ow - {p['PL']}"]
    body = ind + "    "
    for a in range(4):
        for b in range(4):  # each of the 16 input pixels: its source (the zero vector outside)
            out += [f"{body}ok = 0 <= ih + {a} < {p['H']} and 0 <= iw + {b} < {p['W']}",
                    f"{body}s{a}{b} = x if ok else z",
                    f"{body}o{a}{b} = (((n * {p['CB']} + chunk) * {p['H']} + ih + {a}) * {p['W']} + iw + {b}) * 16 if ok else 0",
                    f"{body}e{a}{b} = {hw16} if ok else 0"]
    out.append(f"{body}for cbl in range({p['CBK']}):")
    inner = body + "    "
    out += [f"{inner}d{a}{b} = vload(s{a}{b}, o{a}{b} + cbl * e{a}{b})" for a in range(4) for b in range(4)]
    for b in range(4):  # B^T d: over rows
        out += [f"{inner}t0{b} = vsub(d0{b}, d2{b})", f"{inner}t1{b} = vadd(d1{b}, d2{b})",
                f"{inner}t2{b} = vsub(d2{b}, d1{b})", f"{inner}t3{b} = vsub(d1{b}, d3{b})"]
    cols = [("vsub", 0, 2), ("vadd", 1, 2), ("vsub", 2, 1), ("vsub", 1, 3)]  # (B^T d) B: over columns
    for a in range(4):
        for b, (op, i, k) in enumerate(cols):
            pos = a * 4 + b
            out.append(f"{inner}vstore(vs, vo + (({pos * p['CBK']} + cbl) * {p['JT']} + j) * 16, {op}(t{a}{i}, t{a}{k}))")
    return out


def _strip(p: dict, first: str, count: int, ind: str) -> list[str]:
    """R tiles' products at one position, over this chunk's input blocks, into M."""
    T, JT = p["T"], p["JT"]
    out = [f"{ind}mo{r} = mo + ((pos * {JT} + {first} + {r}) * {T}) * 16" for r in range(count)]
    if p["CBK"] == p["CB"]:
        out += [f"{ind}a{t}_{r} = vzero()" for t in range(T) for r in range(count)]
    else:
        out.append(f"{ind}if chunk == 0:")
        out += [f"{ind}    a{t}_{r} = vzero()" for t in range(T) for r in range(count)]
        out.append(f"{ind}else:")
        out += [f"{ind}    a{t}_{r} = vload(ms, mo{r} + {t * 16})" for t in range(T) for r in range(count)]
    out.append(f"{ind}for cbl in range({p['CBK']}):")
    out.append(f"{ind}    vi = vo + ((pos * {p['CBK']} + cbl) * {JT} + {first}) * 16")
    out.append(f"{ind}    wi = wo + cbl * {16 * T * 16}")
    out.append(f"{ind}    for ci in range(16):")
    out += fma_step(T, count, f"wi + ci * {T * 16}", lambda r: f"vs, vi + {r * 16} + ci", ind + "        ")
    out += [f"{ind}vstore(ms, mo{r} + {t * 16}, a{t}_{r})" for r in range(count) for t in range(T)]
    return out


def _output_transform(p: dict, ind: str) -> list[str]:
    """M -> the 2x2 outputs of every tile, with bias, residual and activation."""
    T, JT, OH, OW = p["T"], p["JT"], p["OH"], p["OW"]
    body = ind + "    "
    out = [f"{ind}for j in range({JT}):", *_tile(p, body)]
    if p["NJ"] * JT > p["TILES"]:  # the last job's tiles past the batch
        out += [f"{body}if q >= {p['TILES']}:", f"{body}    break"]
    for t in range(T):
        out += [f"{body}m{a}{b} = vload(ms, mo + (({a * 4 + b} * {JT} + j) * {T} + {t}) * 16)"
                for a in range(4) for b in range(4)]
        for b in range(4):  # A^T m: over rows
            out += [f"{body}s0{b} = vadd(vadd(m0{b}, m1{b}), m2{b})", f"{body}s1{b} = vsub(vsub(m1{b}, m2{b}), m3{b})"]
        for a in range(2):  # (A^T m) A: over columns, plus the bias
            out += [f"{body}y{a}0 = vadd(vadd(vadd(s{a}0, s{a}1), s{a}2), bias{t})",
                    f"{body}y{a}1 = vadd(vsub(vsub(s{a}1, s{a}2), s{a}3), bias{t})"]
        for a in range(2):
            for b in range(2):
                idx = f"(((n * {p['MB']} + mb + {t}) * {OH} + oh + {a}) * {OW} + ow + {b}) * 16"
                lines = [*vector_epilogue(p, [(f"y{a}{b}", idx)]), f"vstore(y, {idx}, y{a}{b})"]
                edge = [c for c, odd in ((f"oh + {a} < {OH}", a and OH % 2), (f"ow + {b} < {OW}", b and OW % 2)) if odd]
                if edge:
                    out.append(f"{body}if {' and '.join(edge)}:")
                    out += [f"{body}    {line}" for line in lines]
                else:
                    out += [f"{body}{line}" for line in lines]
    return out


def conv2d_winograd(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    p = _plan(node, ins, outs)
    T, R, JT = p["T"], p["R"], p["JT"]
    out_name = node.outputs[0].name
    wname, bname = f"{out_name}.wino", f"{out_name}.b16"
    nj = p["NJ"]
    lines = [f"        q0 = job % {nj} * {JT}",
             f"        g = job // {nj}",
             f"        mb = g * {T}",
             "        tid = get_thread_id()",
             f"        vo = tid * {p['VS']}",
             f"        mo = tid * {p['MS']}"]
    lines += [f"        bias{t} = vload(b, (mb + {t}) * 16)" for t in range(T)]
    lines.append(f"        for chunk in range(0, {p['CB']}, {p['CBK']}):")
    ind = " " * 12
    lines += _input_transform(p, ind)
    lines.append(f"{ind}for pos in range(16):")
    lines.append(f"{ind}    wo = ((g * 16 + pos) * {p['CB']} + chunk) * {16 * T * 16}")
    full, tail = divmod(JT, R)
    if full:
        lines.append(f"{ind}    for s in range({full}):")
        lines += _strip(p, f"s * {R}", R, ind + "        ")
    if tail:
        lines += _strip(p, str(full * R), tail, ind + "    ")
    lines += _output_transform(p, " " * 8)
    args = (node.inputs[0], wname, bname, *((node.inputs[3],) if p["RES"] else ()), out_name, ZEROS)
    params = f"x, w, b, {'r, ' if p['RES'] else ''}y, z, vs, ms"
    note = (f"winograd F(2x2,3x3) NCHW16c: {T} output blocks x {R} tiles in registers, {JT} tiles a job, "
            f"input blocks in chunks of {p['CBK']}")
    if p["RES"] or p["ACT"]:
        note += f", fused {'residual add + ' if p['RES'] else ''}{p['ACT'] or 'no activation'}"
    w_in, b_in = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None

    def packed_w(params):
        return pack_weights(params[w_in], T)

    def packed_b(params):
        return params[b_in] if b_in else np.zeros(p["M"], np.float32)

    return KernelSource(job_function(params, lines), args, note, parallel=True, fastmath=True,
                        jobs=nj * (p["MB"] // T), scratch=(("f32", THREADS * p["VS"]), ("f32", THREADS * p["MS"])),
                        packed={wname: packed_w, bname: packed_b, ZEROS: np.zeros(16, np.float32)})

