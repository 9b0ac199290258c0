"""Throughput of one CPU executable shared by several threads: kiln's workspace pool against a
single workspace (every caller waits its turn, as a lock would make them), with onnxruntime's
InferenceSession (which is documented as safe to call from several threads) in the same run.

    python -m bench.concurrency                          # resnet20_b1, lenet5_b1, resnet18_b1
    python -m bench.concurrency --models lenet5_b1 --threads 1,2,4,8 --seconds 3

Each cell is calls per second summed over all threads, over a fixed wall-clock window after
warm-up; every output is checked against the single-threaded result of the same input.
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time

import kiln
import numpy as np

MODELS = {"resnet20_b1": ("resnet20", {"batch": 1}), "lenet5_b1": ("lenet5", {"batch": 1}),
          "resnet18_b1": ("resnet18", {"batch": 1})}


def throughput(call, feeds: list, expect: list, threads: int, seconds: float) -> float:
    stop = time.perf_counter() + seconds
    counts = [0] * threads
    errors: list[str] = []
    start = threading.Barrier(threads)

    def work(t):
        start.wait()
        i = t
        while time.perf_counter() < stop:
            k = i % len(feeds)
            out = call(feeds[k])
            if not np.allclose(out, expect[k], rtol=1e-4, atol=1e-5):
                errors.append(f"thread {t}: wrong output for input {k}")
            counts[t] += 1
            i += threads
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    if errors:
        raise AssertionError(errors[0])
    return sum(counts) / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", default="1,2,4,8")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    import onnxruntime as ort
    from kiln.runtime.arena import ArenaRunner

    counts = [int(t) for t in args.threads.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"calls/s summed over threads, {args.seconds:g} s windows\n")
    print("| model | threads | kiln pool | kiln 1 workspace | onnxruntime | pool workspaces made |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        builder, kw = MODELS[name]
        g = kiln.models.get_model(builder, **kw)
        exe = kiln.compile(g, target="cpu")
        (inp,) = g.inputs
        rng = np.random.default_rng(0)
        feeds = [rng.standard_normal(inp.type.shape).astype(np.float32) for _ in range(8)]
        expect = [exe.run({inp.name: f})[0] for f in feeds]
        sess = ort.InferenceSession(kiln.to_onnx(g).SerializeToString(), providers=["CPUExecutionProvider"])
        for t in counts:
            pooled, single = ArenaRunner(exe.compiled, max_workspaces=8), ArenaRunner(exe.compiled, max_workspaces=1)
            key = inp.name
            pool = throughput(lambda f, r=pooled, k=key: r({k: f})[0], feeds, expect, t, args.seconds)
            one = throughput(lambda f, r=single, k=key: r({k: f})[0], feeds, expect, t, args.seconds)
            ort_tp = throughput(lambda f, s=sess, k=key: s.run(None, {k: f})[0], feeds, expect, t, args.seconds)
            made = pooled.workspaces
            print(f"| {name} | {t} | {pool:.0f} | {one:.0f} | {ort_tp:.0f} | {made} |", flush=True)


if __name__ == "__main__":
    main()
