"""Elementwise training kernels: training dropout and the optimizer updates, one thread per
element.

Each sizes itself from its array at run time (`x.size`, `w.size`), so every tensor of one dtype
shares the kernel (one sgd_update kernel for all of a model's params), and only the launch's
grid differs.

dropout_train: the reference's counter hash, bit for bit in uint64 arithmetic: key = mix(seed *
GOLDEN + step), element i kept when the top 24 bits of mix(key + (i + 1) * GOLDEN) are at least
ceil(ratio * 2**24) (the reference's `u >= ratio` with u = bits * 2**-24, done on integers).
Every thread mixes the key itself: one hash more per element beats a second launch.
sgd_update / adam_update: float64 arithmetic in the reference's order, cast once on the store.
"""

from __future__ import annotations

import math

from ....ir import Node, TensorType
from ...templating import sgd_lines
from .common import KernelSource, grid1, indent, lit, plain_only

GOLDEN, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix(var: str) -> list[str]:
    """splitmix64's finaliser applied to the uint64 `var`, in place."""
    return [f"{var} = ({var} ^ ({var} >> np.uint64(30))) * np.uint64({MIX1:#x})",
            f"{var} = ({var} ^ ({var} >> np.uint64(27))) * np.uint64({MIX2:#x})",
            f"{var} = {var} ^ ({var} >> np.uint64(31))"]


def _elementwise(params: str, size: str, head: list[str], lines: list[str]) -> str:
    """A kernel running `lines` for every element i < size, after `head` (per thread)."""
    return (f"def KERNEL({params}):\n    i = cuda.grid(1)\n    if i < {size}:\n"
            f"{indent(head + lines, 2)}\n")


def dropout_train(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    a, d = node.attrs, ins[0].dtype
    base = a["seed"] * GOLDEN % (1 << 64)  # the key's seed term, wrapped as uint64 arithmetic wraps
    threshold = math.ceil(a["ratio"] * 2**24)
    head = [f"key = np.uint64({base:#x}) + np.uint64(step[0])", *_mix("key")]
    lines = [f"z = key + np.uint64(i + 1) * np.uint64({GOLDEN:#x})", *_mix("z"),
             f"m = {lit(1 / (1 - a['ratio']), d)} if z >> np.uint64(40) >= np.uint64({threshold}) else {lit(0, d)}",
             "mask[i] = m", "y[i] = x[i] * m"]
    body = _elementwise("x, step, y, mask", "x.size", head, lines)
    note = f"dropout_train ratio {a['ratio']} seed {a['seed']}, splitmix64 counter hash, one thread per element"
    return KernelSource(body, (*node.inputs, *node.output_names), note, grid=grid1(ins[0].numel))


def sgd_update(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """PyTorch's SGD: weight decay into g, then the velocity (when momentum), then the step
    (Nesterov looks one velocity ahead)."""
    a = node.attrs
    velocity = len(ins) > 3
    lines = ["lr = np.float64(hyper[0])", *sgd_lines(a, velocity)]
    params = "w, g, hyper, v, w_new, v_new" if velocity else "w, g, hyper, w_new"
    how = ("nesterov " if a["nesterov"] else "") + ("momentum" if velocity else "plain")
    return KernelSource(_elementwise(params, "w.size", [], lines), (*node.inputs, *node.output_names),
                        f"sgd_update {how}, float64, one thread per element", grid=grid1(ins[0].numel))


def adam_update(node: Node, ins: list[TensorType], outs: list[TensorType]) -> KernelSource:
    """hyper = [lr / (1 - b1^t), 1 / sqrt(1 - b2^t), lr]; AdamW (`decoupled`) shrinks w first,
    Adam adds the decay to g."""
    a = node.attrs
    b1, b2, wd = a["beta1"], a["beta2"], a["weight_decay"]
    lines = ["wi = np.float64(w[i])", "gi = np.float64(g[i])"]
    if a["decoupled"]:
        lines.append(f"wi = wi * (1.0 - np.float64(hyper[2]) * {wd!r})")
    elif wd:
        lines.append(f"gi = gi + {wd!r} * wi")
    lines += [f"mi = {b1!r} * np.float64(m[i]) + {1 - b1!r} * gi",
              f"vi = {b2!r} * np.float64(v[i]) + {1 - b2!r} * gi * gi",
              "m_new[i] = mi", "v_new[i] = vi",
              f"w_new[i] = wi - np.float64(hyper[0]) * mi / (math.sqrt(vi) * np.float64(hyper[1]) + {a['eps']!r})"]
    body = _elementwise("w, g, m, v, hyper, w_new, m_new, v_new", "w.size", [], lines)
    note = f"adam_update{'W (decoupled decay)' if a['decoupled'] else ''}, float64, one thread per element"
    return KernelSource(body, (*node.inputs, *node.output_names), note, grid=grid1(ins[0].numel))


TEMPLATES = {"dropout_train": plain_only(dropout_train), "sgd_update": plain_only(sgd_update),
             "adam_update": plain_only(adam_update)}
