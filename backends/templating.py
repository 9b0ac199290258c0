"""Template helpers every backend shares: scalar literals, strides, and the scalar expressions
of elementwise ops (the same math in a CPU loop body and a CUDA thread)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from ..ir import Node, TensorType
from ..ir.errors import UnsupportedError
from ..ir.types import FLOAT_DTYPES
from ..ir.verify import node_label

NP_NAMES = {"f16": "np.float16", "f32": "np.float32", "f64": "np.float64", "i8": "np.int8",
            "u8": "np.uint8", "i16": "np.int16", "u16": "np.uint16", "i32": "np.int32",
            "u32": "np.uint32", "i64": "np.int64", "u64": "np.uint64", "bool": "np.bool_"}


# What a kernel "compiled with fastmath" may assume: reorder sums, contract to FMAs, use fast
# reciprocals and library calls, ignore the sign of zero. Not numba's fastmath=True, which also
# assumes no NaN and no Inf ('nnan', 'ninf'): LLVM then folds `v != v` to False and turns
# NaN-propagating max and min into ones that drop NaN, so a NaN input would come out as a
# number on one layout and as NaN on another.
FASTMATH_FLAGS = "{'nsz', 'arcp', 'contract', 'afn', 'reassoc'}"


def fastmath_option(fastmath: bool | str) -> str:
    """The `fastmath=` argument for a numba decorator: True -> FASTMATH_FLAGS, False -> False,
    a flag set written as text passes through."""
    return FASTMATH_FLAGS if fastmath is True else str(fastmath)


def lit(x: float, dtype: str = "f32") -> str:
    """A scalar literal of IR dtype `dtype` (infinities spelled for numba)."""
    if dtype.startswith(("i", "u")):
        return f"{NP_NAMES[dtype]}({int(x)})"
    if dtype == "bool":
        return "True" if x else "False"
    if math.isinf(x):
        return f"{NP_NAMES[dtype]}({'-' if x < 0 else ''}np.inf)"
    return f"{NP_NAMES[dtype]}({float(x)!r})"


def strides(shape: Sequence[int]) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def broadcast_strides(in_shape: Sequence[int], out_shape: Sequence[int]) -> list[int]:
    """Element strides of an input read at output coordinates (0 along broadcast axes)."""
    pad = (1,) * (len(out_shape) - len(in_shape)) + tuple(in_shape)
    st = strides(pad)
    return [0 if d == 1 and o != 1 else s for d, o, s in zip(pad, out_shape, st, strict=True)]


def view_strides(node: Node, x: TensorType, y: TensorType) -> tuple[int, list[int], str]:
    """(base offset, source stride per output axis, a note) of the affine ops, for both targets."""
    st = strides(x.shape)
    if node.op == "transpose":
        perm = node.attrs["perm"] or tuple(reversed(range(x.rank)))
        return 0, [st[p] for p in perm], f"transpose {list(perm)}"
    if node.op == "slice":
        a = node.attrs
        base = sum(b * s for b, s in zip(a["starts"], st, strict=True))
        return base, [s * k for s, k in zip(st, a["steps"], strict=True)], \
            f"slice from {list(a['starts'])} by {list(a['steps'])}"
    return 0, broadcast_strides(x.shape, y.shape), f"expand {list(x.shape)} to {list(y.shape)}"


@dataclass(frozen=True)
class ResizeLoop:
    """One output loop of a resize kernel: `size` iterations; a kept run of axes (taps 0) steps
    the input by `in_stride`; a resized axis reads its tap tables at i * taps + t: the input
    offsets ix (indices times the input stride), the weights wx (not for nearest) and, for
    tf_crop_and_resize, the extrapolated flags ex."""

    size: int
    in_stride: int
    out_stride: int
    taps: int = 0
    weighted: bool = False
    flagged: bool = False


def resize_plan(node: Node, x: TensorType, y: TensorType) -> tuple[list[ResizeLoop], dict[str, np.ndarray]]:
    """The loops of a resize kernel (runs of kept axes merged) and its packed tap tables, named
    `<output>.ix<loop>` and so on, for the cpu and cuda templates alike (ir/ops/resize.py
    computes the taps)."""
    from ..ir.ops.resize import resized_axes, taps_of

    a, out = node.attrs, node.outputs[0].name
    resized = set(resized_axes(x, a))
    in_st, out_st = strides(x.shape), strides(y.shape)
    loops: list[ResizeLoop] = []
    packed: dict[str, np.ndarray] = {}
    for k in range(x.rank):
        if k in resized:
            idx, w, ext = taps_of(x, a, k)
            j = len(loops)
            packed[f"{out}.ix{j}"] = (idx * in_st[k]).astype(np.int64).reshape(-1)
            if a["mode"] != "nearest":
                packed[f"{out}.wx{j}"] = w.reshape(-1).astype(np.float64)
            if ext is not None:
                packed[f"{out}.ex{j}"] = ext.astype(np.bool_)
            loops.append(ResizeLoop(y.shape[k], in_st[k], out_st[k], idx.shape[1], a["mode"] != "nearest",
                                    ext is not None))
        elif y.shape[k] == 1:
            continue
        elif loops and not loops[-1].taps:
            last = loops[-1]
            loops[-1] = ResizeLoop(last.size * y.shape[k], in_st[k], out_st[k])
        else:
            loops.append(ResizeLoop(y.shape[k], in_st[k], out_st[k]))
    return loops or [ResizeLoop(1, 0, 0)], packed


def resize_body(loops: list[ResizeLoop], a, dtype: str, index) -> list[str]:
    """Lines computing y[o] from the loop indices `index(j)`, for both targets: the input offset
    of the kept axes, then the taps of the resized ones (a weighted sum in float64; nearest
    copies one element); an extrapolated output gets the extrapolation value."""
    base = " + ".join(f"{index(j)} * {lp.in_stride}" for j, lp in enumerate(loops) if not lp.taps) or "0"
    out = " + ".join(f"{index(j)} * {lp.out_stride}" for j, lp in enumerate(loops) if lp.out_stride) or "0"
    tapped = [(j, lp) for j, lp in enumerate(loops) if lp.taps]
    lines = [f"b = {base}", f"o = {out}"]
    if a["mode"] == "nearest":
        body = [f"y[o] = x[{' + '.join(['b', *(f'ix{j}[{index(j)}]' for j, _ in tapped)])}]"]
    else:
        body, ind, prod, where = ["acc = 0.0"], "", [], ["b"]
        for j, lp in tapped:
            body += [f"{ind}for t{j} in range({lp.taps}):", f"{ind}    a{j} = {index(j)} * {lp.taps} + t{j}"]
            ind += "    "
            prod.append(f"wx{j}[a{j}]")
            where.append(f"ix{j}[a{j}]")
        body.append(f"{ind}acc += {' * '.join(prod)} * x[{' + '.join(where)}]")
        body.append(f"y[o] = {NP_NAMES[dtype]}(acc)")
    flags = [f"ex{j}[{index(j)}]" for j, lp in tapped if lp.flagged]
    if not flags:
        return lines + body
    v = a["extrapolation"]
    fill = f"{NP_NAMES[dtype]}(np.nan)" if math.isnan(v) else lit(v, dtype)
    return lines + [f"if {' or '.join(flags)}:", f"    y[o] = {fill}", "else:", *("    " + b for b in body)]


def resize_params(loops: list[ResizeLoop]) -> list[str]:
    """The kernel's table parameters, in packed order."""
    names = []
    for j, lp in enumerate(loops):
        if lp.taps:
            names += [f"ix{j}"] + ([f"wx{j}"] if lp.weighted else []) + ([f"ex{j}"] if lp.flagged else [])
    return names


def reduce_fold(op: str, dtype: str, acc: str, v: str) -> tuple[str, str]:
    """(initial value, update line) of a reduction's accumulator `acc` for element `v`: sums in
    float64 / int64 (uint64 for u64); max and min in the dtype, from its extreme, NaN kept once seen."""
    if op == "reduce_sum":
        acc0 = "np.float64" if dtype in FLOAT_DTYPES else "np.uint64" if dtype == "u64" else "np.int64"
        return f"{acc0}(0)", f"{acc} += {v}"
    big = op == "reduce_max"
    if dtype in FLOAT_DTYPES:
        init = f"{NP_NAMES[dtype]}({'-' if big else ''}np.inf)"
    else:
        info = np.iinfo(TensorType(dtype, ()).np_dtype) if dtype != "bool" else None
        init = (("False" if big else "True") if info is None else
                f"{NP_NAMES[dtype]}({info.min if big else info.max})")
    test = f"{v} > {acc}" if big else f"{v} < {acc}"
    if dtype in FLOAT_DTYPES:
        test += f" or {v} != {v}"
    return init, f"{acc} = {v} if {test} else {acc}"


def arg_better(op: str, dtype: str, last: bool, v: str, best: str) -> str:
    """The test that element `v` replaces `best` in arg_max / arg_min, scanning up the axis: a
    strictly better value (or an equal one, for the last index), and a NaN counts as best (the
    first NaN, or the last), as numpy's argmax and argmin have it."""
    cmp = (">" if op == "arg_max" else "<") + ("=" if last else "")
    test = f"{v} {cmp} {best}"
    if dtype in FLOAT_DTYPES:
        test += f" or {v} != {v}" if last else f" or ({v} != {v} and {best} == {best})"
    return test


def arg_axes(x: TensorType, axis: int) -> tuple[int, int, int]:
    """x viewed as [outer, size of `axis`, inner]."""
    axis %= x.rank
    return math.prod(x.shape[:axis]), x.shape[axis], math.prod(x.shape[axis + 1:])


def collapse(shape: Sequence[int], *stride_sets: Sequence[int]) -> tuple[list[int], list[list[int]]]:
    """Merge adjacent axes that every stride set walks contiguously, to nest fewer loops."""
    if not shape:
        return [1], [[0] for _ in stride_sets]
    dims = [int(d) for d in shape]
    sets = [list(s) for s in stride_sets]
    i = len(dims) - 1
    while i > 0:
        inner = dims[i]
        if all(s[i - 1] == s[i] * inner for s in sets):
            dims[i - 1] *= inner
            del dims[i]
            for s in sets:
                s[i - 1] = s[i]
                del s[i]
        i -= 1
    keep = [k for k, d in enumerate(dims) if d != 1] or [0]
    return [dims[k] for k in keep], [[s[k] for k in keep] for s in sets]


_SP = "(max({v}, 0.0) + math.log1p(math.exp(-abs({v}))))"  # softplus, without overflow

# The table activations (ir/ops/elementwise.py, ACTIVATIONS) as scalar expressions for numba's
# cpu and cuda code: `v` the input (or the saved x / y for a derivative), `a` the node's attrs.
# Constants are Python floats, so f32 inputs compute in float64 and round once when stored, as
# the reference does; NaN in gives NaN out (numba's max(v, 0) keeps a NaN first argument).
ACT_EXPRS = {
    "exp": lambda v, a: f"math.exp({v})",
    # guarded so Python's math (the CUDA simulator's) answers as numba's does, not ValueError
    "log": lambda v, a: f"(math.log({v}) if {v} > 0.0 else (-math.inf if {v} == 0.0 else math.nan))",
    "sqrt": lambda v, a: f"(math.sqrt({v}) if {v} >= 0.0 else math.nan)",
    "abs": lambda v, a: f"abs({v})",
    "neg": lambda v, a: f"-({v})",
    "reciprocal": lambda v, a: f"1.0 / ({v})",
    "erf": lambda v, a: f"math.erf({v})",
    "elu": lambda v, a: f"({v} if {v} > 0.0 else {a['alpha']!r} * math.expm1({v}))",
    "selu": lambda v, a: f"{a['gamma']!r} * ({v} if {v} > 0.0 else {a['alpha']!r} * math.expm1({v}))",
    "softplus": lambda v, a: _SP.format(v=v),
    "softsign": lambda v, a: f"{v} / (1.0 + abs({v}))",
    "hard_sigmoid": lambda v, a: f"min(max({a['alpha']!r} * {v} + {a['beta']!r}, 0.0), 1.0)",
    "hard_swish": lambda v, a: f"{v} * min(max({v} / 6.0 + 0.5, 0.0), 1.0)",
    "gelu": lambda v, a: f"0.5 * {v} * (1.0 + math.erf({v} * {1 / math.sqrt(2)!r}))",
    "gelu_tanh": lambda v, a: f"0.5 * {v} * (1.0 + math.tanh({math.sqrt(2 / math.pi)!r} * ({v} + 0.044715 * {v} * {v} * {v})))",
    "mish": lambda v, a: f"{v} * math.tanh({_SP.format(v=v)})",
    "silu": lambda v, a: f"{v} / (1.0 + math.exp(-{v}))",
}

_GT = f"math.tanh({math.sqrt(2 / math.pi)!r} * ({{r}} + 0.044715 * {{r}} * {{r}} * {{r}}))"
ACT_DERIVS = {  # d act / dx from the saved tensor r (x or y, as the table says)
    "exp": lambda r, a: f"{r}",
    "log": lambda r, a: f"1.0 / {r}",
    "sqrt": lambda r, a: f"0.5 / {r}",
    "abs": lambda r, a: f"(1.0 if {r} > 0.0 else (-1.0 if {r} < 0.0 else 0.0))",
    "neg": lambda r, a: "-1.0",
    "reciprocal": lambda r, a: f"-({r}) * {r}",
    "erf": lambda r, a: f"{2 / math.sqrt(math.pi)!r} * math.exp(-({r}) * {r})",
    "elu": lambda r, a: f"(1.0 if {r} > 0.0 else {a['alpha']!r} * math.exp({r}))",
    "selu": lambda r, a: f"{a['gamma']!r} * (1.0 if {r} > 0.0 else {a['alpha']!r} * math.exp({r}))",
    "softplus": lambda r, a: f"1.0 / (1.0 + math.exp(-{r}))",
    "softsign": lambda r, a: f"1.0 / ((1.0 + abs({r})) * (1.0 + abs({r})))",
    "hard_sigmoid": lambda r, a: f"({a['alpha']!r} if 0.0 < {a['alpha']!r} * {r} + {a['beta']!r} < 1.0 else 0.0)",
    "hard_swish": lambda r, a: f"(0.0 if {r} < -3.0 else (1.0 if {r} > 3.0 else (2.0 * {r} + 3.0) / 6.0))",
    "gelu": lambda r, a: f"0.5 * (1.0 + math.erf({r} * {1 / math.sqrt(2)!r})) + {r} * {1 / math.sqrt(2 * math.pi)!r} "
                         f"* math.exp(-0.5 * {r} * {r})",
    "gelu_tanh": lambda r, a: f"0.5 * (1.0 + {_GT.format(r=r)}) + 0.5 * {r} * (1.0 - {_GT.format(r=r)} ** 2) * "
                              f"{math.sqrt(2 / math.pi)!r} * (1.0 + {3 * 0.044715!r} * {r} * {r})",
    "mish": lambda r, a: f"math.tanh({_SP.format(v=r)}) + {r} / (1.0 + math.exp(-{r})) * "
                         f"(1.0 - math.tanh({_SP.format(v=r)}) ** 2)",
    "silu": lambda r, a: f"(1.0 + {r} * (1.0 - 1.0 / (1.0 + math.exp(-{r})))) / (1.0 + math.exp(-{r}))",
}


def act_derivative_expr(act: str, a, d: str, r: str) -> str | None:
    """d act / dx of a table activation from the saved tensor's element `r`, or None for the
    activations each backend writes itself (relu, leaky_relu, sigmoid, tanh, clip)."""
    return f"({ACT_DERIVS[act](r, a)})" if act in ACT_DERIVS else None


def unary_expr(node: Node, t: TensorType) -> str:
    a, d = node.attrs, t.dtype
    if node.op == "relu":
        return f"{lit(0, d)} if v < {lit(0, d)} else v"  # NaN stays NaN
    if node.op == "leaky_relu":
        return f"v if v >= {lit(0, d)} else v * {lit(a['alpha'], d)}"
    if node.op == "sigmoid":
        return f"{lit(1, d)} / ({lit(1, d)} + math.exp(-v))"
    if node.op == "tanh":
        return "math.tanh(v)"
    if node.op == "clip":
        lo, hi = a["min"], a["max"]
        if d.startswith(("i", "u")):
            info = np.iinfo(t.np_dtype)
            lo, hi = int(min(max(lo, info.min), info.max)), int(min(max(hi, info.min), info.max))
        return f"min(max(v, {lit(lo, d)}), {lit(hi, d)})"
    if node.op in ACT_EXPRS:
        return ACT_EXPRS[node.op]("v", a)
    if node.op in ("copy", "identity", "dropout", "reshape", "flatten"):
        return "v"
    raise KeyError(node.op)


BINARY_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}  # the arithmetic ops as Python operators
# every binary op on scalars va and vb (max and min keep a NaN from either side, as numpy does)
BINARY_EXPRS = {**{op: f"va {sym} vb" for op, sym in BINARY_SYMBOLS.items()}, "pow": "va ** vb",
                "max": "va if va > vb or va != va else vb", "min": "va if va < vb or va != va else vb",
                "equal": "va == vb", "less": "va < vb", "greater": "va > vb", "less_equal": "va <= vb",
                "greater_equal": "va >= vb"}


def binary_expr(op: str, out_dtype: str) -> str:
    """The scalar expression of a binary op on va and vb; integer division truncates toward zero
    (as ONNX and the reference)."""
    if op == "div" and out_dtype.startswith(("i", "u")):
        return f"{NP_NAMES[out_dtype]}(va / vb)"
    return BINARY_EXPRS[op]


def cast_expr(v: str, to: str) -> str:
    """v converted to dtype `to`: a float to an integer truncates toward zero; to bool, v != 0."""
    return f"{v} != 0" if to == "bool" else f"{NP_NAMES[to]}({v})"


def chain_lines(node: Node, t: TensorType, index: dict[int, str]) -> list[str]:
    """The steps of a fused_elementwise node on `v`, operand k read as x{k}[index[k]]; each
    step rounds to the dtype as the unfused node would."""
    from ..ir.ops.elementwise import CHAIN_UNARY, parse_steps

    cast, symbols = NP_NAMES[t.dtype], BINARY_SYMBOLS
    lines = []
    for op, sa in parse_steps(node.attrs["steps"]):
        if op in CHAIN_UNARY:
            expr = unary_expr(SimpleNamespace(op=op, attrs=sa), t)
        else:
            k = sa["operand"]
            operand = f"x{k}[{index[k]}]"
            expr = f"{operand} {symbols[op[1:]]} v" if op.startswith("r") else f"v {symbols[op]} {operand}"
        lines.append(f"v = {cast}({expr})")
    return lines


def epilogue_act(a, d: str, v: str) -> str:
    """A conv's or gemm's fused activation (attrs act, act_min, act_max, act_alpha) applied to
    the scalar expression `v` of dtype `d`; leaky_relu's slope is in (0, 1], so max(v, alpha v)."""
    act = a.get("act", "")
    if act == "relu":
        return f"max({v}, {lit(0, d)})"
    if act == "clip":
        return f"min(max({v}, {lit(a['act_min'], d)}), {lit(a['act_max'], d)})"
    if act == "leaky_relu":
        return f"max({v}, ({v}) * {lit(a['act_alpha'], d)})"
    if act == "sigmoid":
        return f"{lit(1, d)} / ({lit(1, d)} + math.exp(-({v})))"
    if act == "silu":
        return f"({v}) / ({lit(1, d)} + math.exp(-({v})))"
    return v


def plain_only_for(target: str, f16_reason: str):
    """A decorator for templates that handle only row-major ("") layouts and no float16 on
    `target`: anything else is refused with a clear error, not a wrong kernel or a numba failure."""

    def plain_only(render):
        def checked(node, in_types, out_types):
            for t in (*in_types, *out_types):
                if t.layout or t.dtype == "f16":
                    why = f16_reason if t.dtype == "f16" else "row-major tensors only"
                    raise UnsupportedError(f"{node_label(node)}: the {target} kernel takes {why}, got {t}")
            return render(node, in_types, out_types)

        checked.__name__, checked.__doc__ = render.__name__, render.__doc__
        return checked

    return plain_only


def sgd_lines(a, velocity: bool) -> list[str]:
    """PyTorch's SGD for element i in float64 (w, g, v in; w_new, v_new out; `lr` bound):
    weight decay into g, then the velocity (when momentum), then the step (Nesterov looks one
    velocity ahead)."""
    lines = ["wi = np.float64(w[i])", "gi = np.float64(g[i])"]
    if a["weight_decay"]:
        lines.append(f"gi = gi + {a['weight_decay']!r} * wi")
    if velocity:
        lines += [f"vi = {a['momentum']!r} * np.float64(v[i]) + gi", "v_new[i] = vi",
                  f"gi = gi + {a['momentum']!r} * vi" if a["nesterov"] else "gi = vi"]
    return [*lines, "w_new[i] = wi - lr * gi"]
