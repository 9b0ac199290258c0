"""Elementwise training kernels: activation gradients, training dropout, optimizer updates.

Each is one flat loop sized at run time (`w.size`), so every layer of one dtype shares the
kernel: an optimizer step over a model's params compiles one sgd_update, not one per param.

act_grad: dy times the activation's derivative, computed in the tensor's dtype exactly as the
reference does (a 0/1 factor is multiplied, not selected, so a NaN in dy stays NaN).
dropout_train: the reference's counter hash, bit for bit in uint64 arithmetic: key = mix(seed *
GOLDEN + step), element i kept when the top 24 bits of mix(key + (i + 1) * GOLDEN) are at least
ceil(ratio * 2**24) (the same test as `u >= ratio` with u = bits * 2**-24, done on integers).
sgd_update / adam_update: float64 arithmetic in the reference's order, cast once on the store;
hyper (f32) is read once per call.
"""

from __future__ import annotations

import math

from ....ir import Node, TensorType
from ...templating import act_derivative_expr, sgd_lines
from .common import PARALLEL_MIN, KernelSource, lit, plain_only

GOLDEN, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _loop(n: int) -> str:
    return "prange" if n >= PARALLEL_MIN else "range"


def _block(lines: list[str], indent: int) -> str:
    return "".join(" " * indent + s + "\n" for s in lines)


def _derivative(node: Node, d: str) -> str:
    """act'(x) from `v`, the saved y (relu, sigmoid, tanh) or x (leaky_relu, clip)."""
    a = node.attrs
    one, zero = lit(1, d), lit(0, d)
    table = act_derivative_expr(a["act"], a, d, "v")
    if table:
        return table
    return {
        "relu": f"({one} if v > {zero} else {zero})",
        "leaky_relu": f"({one} if v >= {zero} else {lit(a['alpha'], d)})",
        "sigmoid": f"v * ({one} - v)",
        "tanh": f"({one} - v * v)",
        "clip": f"({one} if v > {lit(a['min'], d)} and v < {lit(a['max'], d)} else {zero})",
    }[a["act"]]


def act_grad(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    body = f"""\
def KERNEL(dy, saved, dx):
    for i in {_loop(outs[0].numel)}(dy.size):
        v = saved[i]
        dx[i] = dy[i] * {_derivative(node, ins[0].dtype)}
"""
    return KernelSource(body, (*node.inputs, node.outputs[0].name), f"act_grad {node.attrs['act']}, flat loop",
                        parallel=outs[0].numel >= PARALLEL_MIN)


def _mix(var: str, pad: str) -> str:
    """splitmix64's finaliser applied to the uint64 `var`, in place."""
    return (f"{pad}{var} = ({var} ^ ({var} >> np.uint64(30))) * np.uint64({MIX1:#x})\n"
            f"{pad}{var} = ({var} ^ ({var} >> np.uint64(27))) * np.uint64({MIX2:#x})\n"
            f"{pad}{var} = {var} ^ ({var} >> np.uint64(31))\n")


def dropout_train(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a, d = node.attrs, ins[0].dtype
    base = a["seed"] * GOLDEN % (1 << 64)  # the key's seed term, wrapped as uint64 arithmetic wraps
    threshold = math.ceil(a["ratio"] * 2**24)
    scale = lit(1 / (1 - a["ratio"]), d)
    body = f"""\
def KERNEL(x, step, y, mask):
    key = np.uint64({base:#x}) + np.uint64(step[0])
{_mix("key", "    ")}\
    for i in {_loop(outs[0].numel)}(x.size):
        z = key + np.uint64(i + 1) * np.uint64({GOLDEN:#x})
{_mix("z", "        ")}\
        m = {scale} if z >> np.uint64(40) >= np.uint64({threshold}) else {lit(0, d)}
        mask[i] = m
        y[i] = x[i] * m
"""
    note = f"dropout_train ratio {a['ratio']} seed {a['seed']}, splitmix64 counter hash"
    return KernelSource(body, (*node.inputs, *node.output_names), note, parallel=outs[0].numel >= PARALLEL_MIN)


def sgd_update(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """PyTorch's SGD in float64: weight decay into g, then the velocity (when momentum), then
    the step (Nesterov looks one velocity ahead)."""
    a = node.attrs
    velocity = len(ins) > 3
    lines = sgd_lines(a, velocity)
    params = "w, g, hyper, v, w_new, v_new" if velocity else "w, g, hyper, w_new"
    body = f"""\
def KERNEL({params}):
    lr = np.float64(hyper[0])
    for i in {_loop(ins[0].numel)}(w.size):
""" + _block(lines, 8)
    how = ("nesterov " if a["nesterov"] else "") + ("momentum" if velocity else "plain")
    return KernelSource(body, (*node.inputs, *node.output_names), f"sgd_update {how}, float64",
                        parallel=ins[0].numel >= PARALLEL_MIN)


def adam_update(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """hyper = [lr / (1 - b1^t), 1 / sqrt(1 - b2^t), lr]; AdamW (`decoupled`) shrinks w first,
    Adam adds the decay to g."""
    a = node.attrs
    b1, b2, wd = a["beta1"], a["beta2"], a["weight_decay"]
    head, decay = [], []
    if a["decoupled"]:
        head, decay = [f"shrink = 1.0 - np.float64(hyper[2]) * {wd!r}"], ["wi = wi * shrink"]
    elif wd:
        decay = [f"gi = gi + {wd!r} * wi"]
    body = f"""\
def KERNEL(w, g, m, v, hyper, w_new, m_new, v_new):
    step = np.float64(hyper[0])
    correction = np.float64(hyper[1])
{_block(head, 4)}\
    for i in {_loop(ins[0].numel)}(w.size):
        wi = np.float64(w[i])
        gi = np.float64(g[i])
{_block(decay, 8)}\
        mi = {b1!r} * np.float64(m[i]) + {1 - b1!r} * gi
        vi = {b2!r} * np.float64(v[i]) + {1 - b2!r} * gi * gi
        m_new[i] = mi
        v_new[i] = vi
        w_new[i] = wi - step * mi / (math.sqrt(vi) * correction + {a['eps']!r})
"""
    note = f"adam_update{'W (decoupled decay)' if a['decoupled'] else ''}, float64"
    return KernelSource(body, (*node.inputs, *node.output_names), note, parallel=ins[0].numel >= PARALLEL_MIN)


TEMPLATES = {"act_grad": plain_only(act_grad), "dropout_train": plain_only(dropout_train),
             "sgd_update": plain_only(sgd_update), "adam_update": plain_only(adam_update)}
