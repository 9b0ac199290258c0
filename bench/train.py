"""Training-step time: kiln's compiled step (forward, backward, SGD update in one program)
against torch CPU doing the same step on the same model, weights and batch, in one process.

    python -m bench.train                                  # LeNet-5 b64, ResNet-20 b64, Cora-sized GCN
    python -m bench.train --models lenet5_b64 --runs 20 --target cpu

torch is required here (it is the reference); times are medians of N steps after warm-up, with
the spread; the ratio is kiln / torch (below 1 is faster).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import kiln
import numpy as np

from bench.__main__ import emit, fmt, timeit

MODELS = {  # name -> (builder, kwargs, data)
    "lenet5_b64": ("lenet5", {"batch": 64}),
    "resnet20_b64": ("resnet20", {"batch": 64}),
    "gcn_cora": ("gcn_cora_like", {}),
}
LR, MOMENTUM = 0.01, 0.9


def feeds_for(g, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = g.inputs[0]
    logits = g.type_of(g.outputs[0])
    feeds = {x.name: rng.standard_normal(x.type.shape).astype(np.float32),
             "labels": rng.integers(0, logits.shape[1], logits.shape[0])}
    if any(n.op == "spmm" for n in g.nodes):  # node classification: 140 labelled nodes, as in Cora
        mask = np.zeros(logits.shape[0], bool)
        mask[rng.choice(logits.shape[0], 140, replace=False)] = True
        feeds["mask"] = mask
    return feeds


def torch_step(g, device: str = "cpu"):
    """A function feeds -> loss doing one SGD step of `g` in torch (batch statistics, dropout)
    on `device` (the batch is moved there each step)."""
    import torch
    import torch.nn.functional as F

    from bench.torch_ref import OPS

    params = {p.name: torch.tensor(np.array(p.data), device=device,
                                   requires_grad=p.role == "param" and p.data.dtype.kind == "f")
              for p in g.params}
    trainable = [t for t in params.values() if t.requires_grad]
    opt = torch.optim.SGD(trainable, lr=LR, momentum=MOMENTUM)
    adj = None
    ops = dict(OPS)
    ops["batch_norm"] = lambda xs, a: F.batch_norm(xs[0], xs[3], xs[4], xs[1], xs[2], True, 1 - a["momentum"],
                                                   a["epsilon"])
    ops["dropout"] = lambda xs, a: F.dropout(xs[0], a["ratio"], training=True)

    def spmm(xs, a):
        nonlocal adj
        if adj is None:
            adj = torch.sparse_csr_tensor(xs[0], xs[1], xs[2], (len(xs[0]) - 1, xs[3].shape[0]))
        return adj @ xs[3]

    ops["spmm"] = spmm
    nodes = [(ops[n.op], n.inputs, n.output_names[0], dict(n.attrs)) for n in g.nodes]

    def step(feeds):
        env = dict(params)
        env[g.inputs[0].name] = torch.from_numpy(feeds[g.inputs[0].name]).to(device)
        for fn, ins, out, attrs in nodes:
            env[out] = fn([env[i] for i in ins], attrs)
        logits, labels = env[g.outputs[0]], torch.from_numpy(feeds["labels"]).to(device)
        if "mask" in feeds:
            m = torch.from_numpy(feeds["mask"]).to(device)
            logits, labels = logits[m], labels[m]
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def bench_model(name: str, runs: int, target: str) -> dict:
    builder, kw = MODELS[name]
    g = kiln.models.get_model(builder, **kw)
    t0 = time.perf_counter()
    trainer = kiln.compile(g, target=target, mode="train", optimizer=kiln.optim.SGD(LR, momentum=MOMENTUM))
    compile_s = time.perf_counter() - t0
    feeds = feeds_for(g)
    row = {"name": name, "compile_s": compile_s, "kiln": timeit(lambda: trainer.step(feeds), runs)}
    try:
        import torch  # noqa: F401
    except ImportError:
        return row
    step = torch_step(g)
    row["torch"] = timeit(lambda: step(feeds), runs)
    return row


def table(rows: list[dict], what: str = "step ms") -> str:
    """kiln against torch, a row per model: `what` names the timed unit ("step ms", "ms")."""
    head = f"| model | kiln {what} | torch {what} | kiln/torch | kiln compile s |\n|---|---|---|---|---|\n"
    lines = []
    for r in rows:
        ratio = f"{statistics.median(r['kiln']) / statistics.median(r['torch']):.2f}" if "torch" in r else "-"
        lines.append(f"| {r['name']} | {fmt(r['kiln'])} | {fmt(r['torch']) if 'torch' in r else '-'} | {ratio} | "
                     f"{r['compile_s']:.1f} |")
    return head + "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--target", default="cpu")
    ap.add_argument("--out", help="also write the table (markdown) here")
    args = ap.parse_args()
    names = args.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}", file=sys.stderr)
        return 2
    rows = []
    for n in names:
        rows.append(bench_model(n, args.runs, args.target))
        print(f"{n}: kiln {fmt(rows[-1]['kiln'])} ms" + (f", torch {fmt(rows[-1]['torch'])} ms" if "torch" in rows[-1]
                                                         else ""), file=sys.stderr, flush=True)
    text = (f"Training step (SGD, momentum {MOMENTUM}), {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, target {args.target}, {args.runs} steps after warm-up:\n\n" + table(rows))
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
