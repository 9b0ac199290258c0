"""kiln's benchmark: kiln's CPU target against onnxruntime (all graph optimisations on) and torch
CPU when installed, in one process, on the same weights and inputs, outputs checked to agree.

    python -m bench                      # the full table (minutes)
    python -m bench --models resnet18_b1,lenet5_b64 --runs 20
    python -m bench --out bench/results.md
    python -m bench --corpus [NAMES]     # the real-model corpus (bench/corpus.py) against onnxruntime

Times are wall-clock medians of N runs after warm-up, with the spread (min-max); ratios are
kiln / onnxruntime (below 1 is faster). GEMM peak is one large numpy float32 matmul, measured
in the same run.
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
from kiln.ir import graph_stats

MODELS = {  # name -> (builder, kwargs)
    "resnet18_b1": ("resnet18", {"batch": 1}),
    "resnet18_b8": ("resnet18", {"batch": 8}),
    "resnet50_b1": ("resnet50", {"batch": 1}),
    "resnet50_b8": ("resnet50", {"batch": 8}),
    "resnet20_b1": ("resnet20", {"batch": 1}),
    "resnet20_b64": ("resnet20", {"batch": 64}),
    "lenet5_b64": ("lenet5", {"batch": 64}),
    "mobilenet_v1_b1": ("mobilenet_v1", {"batch": 1}),
    "vgg16_b1": ("vgg16", {"batch": 1}),
    "gcn_cora": ("gcn_cora_like", {}),
}


def timeit(fn, runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def gemm_peak() -> float:
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    ts = timeit(lambda: a @ a, 10)
    return 2 * 1024**3 / min(ts) / 1e9


def ort_session(graph):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = kiln.to_onnx(graph)
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda feeds: sess.run(None, feeds)


def scipy_gcn(graph):
    """The GCN forward written with scipy.sparse + numpy: the bar for kiln's spmm."""
    import scipy.sparse as sp

    env = {p.name: p.data for p in graph.params}
    mats = {}
    steps = []
    for n in graph.nodes:
        steps.append(n)
        if n.op == "spmm":
            ip, ix, d = (env[i] for i in n.inputs[:3])
            mats[n.inputs[0]] = sp.csr_matrix((d, ix, ip), shape=(len(ip) - 1, len(ip) - 1))

    def run(feeds):
        vals = dict(env, **feeds)
        for n in steps:
            xs = [vals[i] for i in n.inputs]
            if n.op == "spmm":
                y = mats[n.inputs[0]] @ xs[3]
            elif n.op == "matmul":
                y = xs[0] @ xs[1]
            elif n.op == "add":
                y = xs[0] + xs[1]
            elif n.op == "relu":
                y = np.maximum(xs[0], 0)
            else:  # dropout / identity
                y = xs[0]
            vals[n.output_names[0]] = y
        return [vals[o] for o in graph.outputs]

    return run


def emit(text: str, out: str | None) -> None:
    """Print the table, and write it to `out` when given."""
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text.rstrip("\n") + "\n")


def fmt(ts: list[float]) -> str:
    return f"{statistics.median(ts) * 1e3:.2f} ({min(ts) * 1e3:.2f}-{max(ts) * 1e3:.2f})"


def bench_model(name: str, runs: int, peak: float) -> dict:
    builder, kwargs = MODELS[name]
    g = kiln.models.get_model(builder, **kwargs)
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in g.inputs}
    t0 = time.perf_counter()
    exe = kiln.compile(g, target="cpu")
    compile_s = time.perf_counter() - t0
    ours = exe.run(feeds)
    row = {"model": name, "compile_s": compile_s, "macs": graph_stats(g).macs}
    row["kiln"] = timeit(lambda: exe.run(feeds), runs)
    others = {"scipy": scipy_gcn(g)} if any(n.op == "spmm" for n in g.nodes) else {"ort": ort_session(g)}
    try:
        from bench import torch_ref

        if torch_ref.supports(g):
            others["torch"] = torch_ref.make_runner(g)
    except ImportError:
        pass
    for key, fn in others.items():
        ref = fn(feeds)
        for a, b in zip(ours, ref, strict=True):
            scale = max(1.0, float(np.abs(b).max()))
            err = float(np.abs(a - b).max()) / scale
            if err > 1e-3:
                raise SystemExit(f"{name}: kiln and {key} disagree (max relative error {err:.2e})")
        row[key] = timeit(lambda fn=fn: fn(feeds), runs)
    med = statistics.median(row["kiln"])
    row["gflops"] = 2 * row["macs"] / med / 1e9
    row["peak_frac"] = row["gflops"] / peak
    return row


ABLATE = ("fold_conv_bn", "fuse_epilogues", "fuse_elementwise", "subsample_strided", "select_layout", "winograd_convs",
          "reuse_buffers")


def ablation(name: str, runs: int, rounds: int = 4) -> str:
    """The model with each optimisation pass switched off in turn: time and arena size. Every
    variant is compiled first, then timed in `rounds` blocks taken in turn (shuffled per round):
    timed one after the other, the first ran slower after the compiles (up to 1.2x here), and the
    machine's speed drifts over minutes."""
    builder, kwargs = MODELS[name]
    g = kiln.models.get_model(builder, **kwargs)
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in g.inputs}
    exes = {off: kiln.compile(g, target="cpu", skip=(off,) if off else ()) for off in ("", *ABLATE)}
    times: dict[str, list[float]] = {off: [] for off in exes}
    order = list(exes)
    for _ in range(rounds):
        rng.shuffle(order)
        for off in order:
            times[off] += timeit(lambda exe=exes[off]: exe.run(feeds), max(1, runs // rounds), warmup=2)
    lines = [f"| {name}: passes | kiln ms | vs all passes | arena MiB |", "|---|---|---|---|"]
    base = statistics.median(times[""])
    for off, exe in exes.items():
        ts = times[off]
        arena = sum(n * np.dtype(kiln.ir.DTYPES[d]).itemsize for d, n in exe.compiled.program.arena_sizes.items())
        label = f"without {off}" if off else "all"
        lines.append(f"| {label} | {fmt(ts)} | {statistics.median(ts) / base:.2f}x | {arena / 2**20:.1f} |")
        print(f"{name} {label}: {fmt(ts)} ms", file=sys.stderr, flush=True)
    return "\n".join(lines)


def table(rows: list[dict], peak: float) -> str:
    has_torch = any("torch" in r for r in rows)
    head = "| model | kiln ms | onnxruntime ms | kiln/ort |" + (" torch ms | kiln/torch |" if has_torch else "") + \
        " GFLOP/s | of GEMM peak | compile s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        base = r.get("ort") or r.get("scipy")
        label = "" if "ort" in r else " (scipy)"
        med = statistics.median
        cells = [r["model"], fmt(r["kiln"]), fmt(base) + label, f"{med(r['kiln']) / med(base):.2f}"]
        if has_torch:
            cells += [fmt(r["torch"]), f"{med(r['kiln']) / med(r['torch']):.2f}"] if "torch" in r else ["-", "-"]
        cells += [f"{r['gflops']:.1f}", f"{r['peak_frac']:.0%}", f"{r['compile_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def corpus_rows(names: list[str], runs: int, folder: str) -> str:
    """The real-model corpus (bench/corpus.py) at each model's own input size, batch 1: exported by
    torch in its own process, then kiln's cpu target against onnxruntime (all graph
    optimisations) on the same ONNX file and input."""
    import subprocess
    from pathlib import Path

    import onnx
    import onnxruntime as ort

    script = Path(__file__).with_name("corpus.py")
    out = Path(folder)
    todo = [n for n in names if not (out / f"{n}.npz").exists()]
    if todo:
        subprocess.run([sys.executable, str(script), "export", str(out), "--models", ",".join(todo)], check=True)
    lines = ["| model | input | ONNX ops | kiln ms | onnxruntime ms | kiln/ort | compile s |", "|---|---|---|---|---|---|---|"]
    for name in names:
        io = np.load(out / f"{name}.npz")
        x = io["input"]
        key = str(io["input_name"]) if "input_name" in io.files else "input"
        path = str(out / f"{name}.onnx")
        ops = sorted({n.op_type for n in onnx.load(path, load_external_data=False).graph.node})
        t0 = time.perf_counter()
        exe = kiln.compile(kiln.from_onnx(path), target="cpu")
        compile_s = time.perf_counter() - t0
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        feeds = {key: x}
        want = sess.run(None, feeds)
        for a, b in zip(exe.run(feeds), want, strict=True):
            if not np.allclose(a, b, rtol=1e-3, atol=1e-4 * float(np.abs(b).max())):
                raise SystemExit(f"{name}: kiln and onnxruntime disagree")
        ours = timeit(lambda exe=exe, feeds=feeds: exe.run(feeds), runs)
        theirs = timeit(lambda sess=sess, feeds=feeds: sess.run(None, feeds), runs)
        ratio = statistics.median(ours) / statistics.median(theirs)
        lines.append(f"| {name} | {x.shape[2]}x{x.shape[3]} | {', '.join(ops)} | {fmt(ours)} | {fmt(theirs)} | "
                     f"{ratio:.2f} | {compile_s:.0f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", help="also write the markdown table here")
    ap.add_argument("--corpus", nargs="?", const="all", default=None, metavar="NAMES",
                    help="instead: the real-model corpus (bench/corpus.py, the light models included), all or a "
                         "comma list, at full size")
    ap.add_argument("--corpus-dir", default=os.path.expanduser("~/.cache/kiln-corpus"),
                    help="where the exported corpus models are kept (default ~/.cache/kiln-corpus)")
    ap.add_argument("--ablate", action="store_true",
                    help=f"instead: each model with each of {', '.join(ABLATE)} switched off in turn")
    args = ap.parse_args()
    if args.corpus:
        from bench.corpus import all_models

        names = all_models() if args.corpus == "all" else args.corpus.split(",")
        head = f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; batch 1; " \
            f"{args.runs} runs after 3 warm-up\n\n"
        emit(head + corpus_rows(names, args.runs, args.corpus_dir), args.out)
        return 0
    if args.ablate:
        emit("\n\n".join(ablation(name, args.runs) for name in args.models.split(",")), args.out)
        return 0
    peak = gemm_peak()
    rows = []
    for name in args.models.split(","):
        rows.append(bench_model(name, args.runs, peak))
        print(f"{name}: kiln {fmt(rows[-1]['kiln'])} ms", file=sys.stderr, flush=True)
    text = (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"numpy float32 GEMM peak {peak:.0f} GFLOP/s; {args.runs} runs after 3 warm-up\n\n"
            + table(rows, peak))
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
