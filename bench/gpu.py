"""GPU benchmark: kiln's cuda target against torch with cuDNN on the same GPU, in one process,
on the same weights and inputs (inference outputs checked to agree).

    python -m bench.gpu                                   # the table the GPU issue asks for
    python -m bench.gpu --models resnet18_b1 --runs 50 --out bench/gpu.md

Models: ResNet-18 and ResNet-50 inference at batch 1 and 32 (kiln reads and writes device
arrays, so no host copies are timed; torch runs under inference_mode with cudnn.benchmark on),
and a ResNet-20 training step at batch 256 (SGD with momentum; both move the host batch to the
GPU each step and return the loss). Times are synchronised wall-clock medians of N runs after
warm-up, with the spread; the ratio is kiln / torch (below 1 is faster). Needs a CUDA GPU
(numba-cuda) and torch built with CUDA for the comparison; `lenet5_b1` is a smoke test that
also runs in Numba's simulator (NUMBA_ENABLE_CUDASIM=1), without torch's column.
"""

from __future__ import annotations

import argparse
import sys
import time

import kiln
import numpy as np

from bench.__main__ import emit, fmt
from bench.train import table

MODELS = {  # name -> (builder, kwargs, mode)
    "resnet18_b1": ("resnet18", {"batch": 1}, "inference"),
    "resnet18_b32": ("resnet18", {"batch": 32}, "inference"),
    "resnet50_b1": ("resnet50", {"batch": 1}, "inference"),
    "resnet50_b32": ("resnet50", {"batch": 32}, "inference"),
    "resnet20_train_b256": ("resnet20", {"batch": 256}, "train"),
}
SMOKE = {"lenet5_b1": ("lenet5", {"batch": 1}, "inference")}


def timed(fn, sync, runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def torch_cuda():
    """torch when it can use the GPU, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def bench_model(name: str, runs: int) -> dict:
    from numba import cuda

    builder, kw, mode = {**MODELS, **SMOKE}[name]
    g = kiln.models.get_model(builder, **kw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(g.inputs[0].type.shape).astype(np.float32)
    torch = torch_cuda()
    t0 = time.perf_counter()
    row = {"name": name}
    if mode == "inference":
        exe = kiln.compile(g, target="cuda")
        row["compile_s"] = time.perf_counter() - t0
        xd = cuda.to_device(x)
        feeds = {g.inputs[0].name: xd}
        row["kiln"] = timed(lambda: exe.run(feeds), cuda.synchronize, runs)
        got = exe.run(feeds)[0].copy_to_host()
        if torch is not None:
            from bench.torch_ref import make_runner

            torch.backends.cudnn.benchmark = True
            run = make_runner(g, "cuda")
            xt = torch.from_numpy(x).cuda()
            row["torch"] = timed(lambda: run({g.inputs[0].name: xt}), torch.cuda.synchronize, runs)
            want = run({g.inputs[0].name: xt})[0].cpu().numpy()
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
    else:
        from bench.train import LR, MOMENTUM, feeds_for, torch_step

        trainer = kiln.compile(g, target="cuda", mode="train", optimizer=kiln.optim.SGD(LR, momentum=MOMENTUM))
        row["compile_s"] = time.perf_counter() - t0
        feeds = feeds_for(g)
        row["kiln"] = timed(lambda: trainer.step(feeds), cuda.synchronize, runs)
        if torch is not None:
            torch.backends.cudnn.benchmark = True
            step = torch_step(g, "cuda")
            row["torch"] = timed(lambda: step(feeds), torch.cuda.synchronize, runs)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join([*MODELS, *SMOKE])}")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", help="also write the markdown table here")
    args = ap.parse_args()
    names = args.models.split(",")
    unknown = [n for n in names if n not in MODELS and n not in SMOKE]
    if unknown:
        print(f"unknown model(s) {unknown}; choose from {', '.join([*MODELS, *SMOKE])}", file=sys.stderr)
        return 2
    from numba import config, cuda

    gpu = "Numba's CUDA simulator" if config.ENABLE_CUDASIM else cuda.get_current_device().name
    if isinstance(gpu, bytes):
        gpu = gpu.decode()
    torch = torch_cuda()
    versions = f"torch {torch.__version__} + cuDNN {torch.backends.cudnn.version()}" if torch else "no torch with CUDA"
    rows = []
    for n in names:
        rows.append(bench_model(n, args.runs))
        print(f"{n}: kiln {fmt(rows[-1]['kiln'])} ms", file=sys.stderr, flush=True)
    emit(f"GPU: {gpu}; {versions}; {args.runs} runs after 3 warm-up\n\n" + table(rows, "ms"), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
