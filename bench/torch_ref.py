"""Run a kiln graph with torch CPU ops (same weights), as a second reference in the benchmark.
torch is optional: this module is imported only when it is installed."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _conv(x, w, b=None, *, stride, dilation, pads, groups):
    pt, pl, pb, pr = pads
    if (pt, pl) != (pb, pr):
        x = F.pad(x, (pl, pr, pt, pb))
        pt = pl = 0
    return F.conv2d(x, w, b, stride=stride, padding=(pt, pl), dilation=dilation, groups=groups)


def _pool(fn, x, a, **extra):
    pt, pl, pb, pr = a["pads"]
    if (pt, pl) != (pb, pr):
        raise NotImplementedError("asymmetric pool padding")
    return fn(x, a["kernel"], a["stride"], (pt, pl), ceil_mode=a["ceil_mode"], **extra)


OPS = {
    "conv2d": lambda xs, a: _conv(*xs, stride=a["stride"], dilation=a["dilation"], pads=a["pads"], groups=a["groups"]),
    "batch_norm": lambda xs, a: F.batch_norm(xs[0], xs[3], xs[4], xs[1], xs[2], False, 0.0, a["epsilon"]),
    "relu": lambda xs, a: F.relu(xs[0]),
    "clip": lambda xs, a: torch.clamp(xs[0], a["min"], a["max"]),
    "add": lambda xs, a: xs[0] + xs[1],
    "mul": lambda xs, a: xs[0] * xs[1],
    "maxpool2d": lambda xs, a: _pool(F.max_pool2d, xs[0], a, dilation=a["dilation"]),
    "avgpool2d": lambda xs, a: _pool(F.avg_pool2d, xs[0], a, count_include_pad=a["count_include_pad"]),
    "global_avgpool": lambda xs, a: F.adaptive_avg_pool2d(xs[0], 1),
    "flatten": lambda xs, a: torch.flatten(xs[0], a["axis"]),
    "reshape": lambda xs, a: xs[0].reshape(a["shape"]),
    "gemm": lambda xs, a: F.linear(xs[0], xs[1], xs[2] if len(xs) > 2 else None) if a["trans_b"] and not a["trans_a"]
    and a["alpha"] == a["beta"] == 1.0 else NotImplemented,
    "matmul": lambda xs, a: xs[0] @ xs[1],
    "dropout": lambda xs, a: xs[0],
    "identity": lambda xs, a: xs[0],
    "softmax": lambda xs, a: F.softmax(xs[0], a["axis"]),
    "lrn": lambda xs, a: F.local_response_norm(xs[0], a["size"], a["alpha"], a["beta"], a["bias"]),
}


def supports(graph) -> bool:
    return all(n.op in OPS for n in graph.nodes)


def make_runner(graph, device: str = "cpu"):
    """A function feeds -> outputs running `graph` op by op in torch (inference mode) on
    `device`; feeds may be numpy arrays or torch tensors already there, outputs are tensors
    on the device for "cuda" (no copy back), numpy arrays for "cpu"."""
    params = {p.name: torch.from_numpy(np.array(p.data)).to(device) for p in graph.params}
    nodes = [(OPS[n.op], n.inputs, n.output_names[0], dict(n.attrs)) for n in graph.nodes]

    def run(feeds):
        with torch.inference_mode():
            env = dict(params)
            env.update({k: v if torch.is_tensor(v) else torch.from_numpy(v).to(device) for k, v in feeds.items()})
            for fn, ins, out, attrs in nodes:
                env[out] = fn([env[i] for i in ins], attrs)
            outs = [env[o] for o in graph.outputs]
            return outs if device != "cpu" else [o.numpy() for o in outs]

    return run
