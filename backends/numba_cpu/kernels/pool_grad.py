"""Pooling gradients over NCHW: maxpool2d_grad (x, dy) and avgpool2d_grad (dy).

Both walk the forward's windows (kernels/pool.py: the same per-row and per-column tap ranges, so
padding and the cells ceil mode reads past the end are never touched) and scatter each window's
dy back into its input plane, one plane per parallel job.

maxpool2d_grad: dy goes to the window's first maximum in row-major tap order, as the reference's
argmax picks it; a NaN is a maximum (the first NaN wins, as np.argmax's); padding never wins.
avgpool2d_grad: every cell of the window gets dy * (1 / divisor), with the forward's divisor
(the taps inside the input, or with count_include_pad inside input + explicit padding).

The reference sums in float64. Where windows overlap (a window spans more than its stride) a
cell takes several contributions: an f32 plane then accumulates in a float64 buffer and is cast
once at the end. Without overlap each cell takes at most one value and is written directly.
"""

from __future__ import annotations

from ....ir import Node, TensorType
from .common import PARALLEL_MIN, KernelSource, plain_only
from .pool import _indent, _tap_range, _times


def _plan(node: Node, x_shape, y_shape) -> dict:
    a = node.attrs
    (n, c, h, w), (oh, ow) = x_shape, y_shape[2:]
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
    overlap = (kh - 1) * dh + 1 > sh or (kw - 1) * dw + 1 > sw
    return dict(N=n, C=c, H=h, W=w, OH=oh, OW=ow, KH=kh, KW=kw, SH=sh, SW=sw, DH=dh, DW=dw,
                PADS=a["pads"], OVERLAP=overlap)


def _windows(p: dict, include: bool) -> tuple[list[str], list[str]]:
    """Lines binding each window's row (then column) start and its tap range inside the input
    (`i0, i1` / `j0, j1`); with `include`, also the range inside input + padding (`ci`, `cj`)."""
    pt, pl, pb, pr = p["PADS"]
    rows = [f"h0 = oh * {p['SH']} - {pt}", *_tap_range("i", "h0", "0", str(p["H"]), p["KH"], p["DH"])]
    cols = [f"w0 = ow * {p['SW']} - {pl}", *_tap_range("j", "w0", "0", str(p["W"]), p["KW"], p["DW"])]
    if include:
        rows += _tap_range("ci", "h0", str(-pt), str(p["H"] + pb), p["KH"], p["DH"])
        cols += _tap_range("cj", "w0", str(-pl), str(p["W"] + pr), p["KW"], p["DW"])
    return rows, cols


def _kernel(p: dict, params: str, dtype: str, window: list[str], par: bool, include: bool = False,
            after: tuple[str, ...] = ()) -> str:
    """The plane loop: zero the accumulator `acc` (plane cell t at acc[t]), run `window` (lines
    at the depth of a window's body) over the windows, then `after`, then store."""
    hw, oh, ow = p["H"] * p["W"], p["OH"], p["OW"]
    buffered = p["OVERLAP"] and dtype != "f64"
    rows, cols = _windows(p, include)
    head = [f"acc = np.zeros({hw}, np.float64)"] if buffered else \
        [f"acc = dx[base:base + {hw}]", f"for t in range({hw}):", "    acc[t] = 0"]
    if after:
        head.append(f"where = np.empty({oh * ow}, np.int64)")
    store = [f"for t in range({hw}):", "    dx[base + t] = acc[t]"] if buffered else []
    return f"""\
def KERNEL({params}):
    for q in {'prange' if par else 'range'}({p['N'] * p['C']}):
        base = q * {hw}
{_indent(head, 8)}
        for oh in range({oh}):
{_indent(rows, 12)}
            for ow in range({ow}):
{_indent(cols, 16)}
{_indent(window, 16)}
{_indent([*after, *store], 8)}
"""


def maxpool2d_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """Two passes per plane: each window's first maximum (its plane cell, -1 for a window with
    no cell inside the input) into `where`, then dy added there. Adding inside the window loop
    ran 3x slower here: the data-dependent read-modify-write of dx stalls the next window's
    loads of x, which the CPU cannot prove it does not alias."""
    p = _plan(node, ins[0].shape, ins[1].shape)
    oh, ow = p["OH"], p["OW"]
    window = [
        "t0 = -1",
        "best = x[base]",
        "for i in range(i0, i1):",
        f"    r = (h0 + {_times('i', p['DH'])}) * {p['W']} + w0",
        "    for j in range(j0, j1):",
        f"        t = r + {_times('j', p['DW'])}",
        "        v = x[base + t]",
        "        if t0 < 0 or v > best or (v != v and best == best):",
        "            best = v",
        "            t0 = t",
        f"where[oh * {ow} + ow] = t0",
    ]
    after = (f"for o in range({oh * ow}):", "    if where[o] >= 0:",
             f"        acc[where[o]] += dy[q * {oh * ow} + o]")
    par = ins[0].numel >= PARALLEL_MIN
    body = _kernel(p, "x, dy, dx", ins[0].dtype, window, par, after=after)
    note = f"maxpool2d_grad {p['KH']}x{p['KW']} stride {p['SH']}x{p['SW']}, first maxima then dy, " + \
        ("overlapping windows, float64 plane" if p["OVERLAP"] else "disjoint windows")
    return KernelSource(body, (*node.inputs, node.outputs[0].name), note, parallel=par)


def avgpool2d_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    p = _plan(node, outs[0].shape, ins[0].shape)
    include = node.attrs["count_include_pad"]
    ci, cj = ("ci", "cj") if include else ("i", "j")
    window = [
        f"g = dy[(q * {p['OH']} + oh) * {p['OW']} + ow]",
        f"count = max({ci}1 - {ci}0, 0) * max({cj}1 - {cj}0, 0)",
        "if count > 0:",
        "    share = np.float64(g) * (1.0 / count)",
        "    for i in range(i0, i1):",
        f"        r = (h0 + {_times('i', p['DH'])}) * {p['W']} + w0",
        "        for j in range(j0, j1):",
        f"            acc[r + {_times('j', p['DW'])}] += share",
    ]
    par = outs[0].numel >= PARALLEL_MIN
    body = _kernel(p, "dy, dx", outs[0].dtype, window, par, include)
    note = f"avgpool2d_grad {p['KH']}x{p['KW']} stride {p['SH']}x{p['SW']}, " + \
        ("overlapping windows, float64 plane" if p["OVERLAP"] else "disjoint windows")
    return KernelSource(body, (node.inputs[0], node.outputs[0].name), note, parallel=par)


TEMPLATES = {"maxpool2d_grad": plain_only(maxpool2d_grad), "avgpool2d_grad": plain_only(avgpool2d_grad)}
