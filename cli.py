"""The `kiln` command line: info, compile, run, export-onnx.

    kiln info zoo:resnet50 [--json]
    kiln compile zoo:resnet18 --dump-ir dump/
    kiln run zoo:lenet5 --input input=x.npy [--output out.npz]
    kiln export-onnx zoo:resnet18 resnet18.onnx [--after eliminate_dead_code] [--opset 17]
    kiln train zoo:lenet5 --data digits --epochs 8 --target cpu [--checkpoint ck.npz] [--resume ck.npz]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

import numpy as np

from .api import TARGETS, compile, load_model
from .frontend.onnx_export import save_onnx
from .ir import graph_stats
from .ir.errors import KilnError, UnsupportedError
from .passes import PIPELINES, buffer_stats, run_passes
from .runtime import interpret


def _model(args) -> object:
    kwargs = {"batch": args.batch} if args.batch is not None else {}
    return load_model(args.model, **kwargs)


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def _planned_memory(g) -> dict:
    """Activation memory as the CPU pipeline plans it (reuse_buffers), without compiling."""
    planned, _ = run_passes(g, PIPELINES[("cpu", "inference")])
    return buffer_stats(planned)


def cmd_cache(args) -> int:
    """`kiln cache info`: the cache root and each cache folder's size; `kiln cache clear`:
    delete kiln's cache folders (other files under the root are left alone)."""
    import shutil

    from .backends.numba_cpu import codegen

    root, folders = codegen.cache_root(), codegen.cache_folders()
    current = codegen.cache_tag()
    if args.action == "info":
        print(f"kernel cache: {root}" + ("" if folders else " (empty)"))
        for f in folders:
            files, size = codegen.folder_usage(f)
            print(f"  {f.name}: {files} files, {size / 2**20:.1f} MiB" + ("  (this kiln's)" if f.name == current else ""))
        return 0
    freed = 0
    for f in folders:
        freed += codegen.folder_usage(f)[1]
        try:
            shutil.rmtree(f)
        except OSError as e:
            raise KilnError(f"cannot delete {f}: {e}") from None
    print(f"cleared {len(folders)} cache folder(s) under {root}, {freed / 2**20:.1f} MiB")
    return 0


def cmd_info(args) -> int:
    g = _model(args)
    s = graph_stats(g)
    mem = _planned_memory(g)
    if args.json:
        doc = {"model": args.model, "graph": g.name, **s.as_dict(), **mem,
               "inputs": {v.name: str(v.type) for v in g.inputs},
               "outputs": {o: str(g.type_of(o)) for o in g.outputs}}
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{g.name}: {s.nodes} nodes")
    print("  inputs:  " + ", ".join(f"%{v.name}:{v.type}" for v in g.inputs))
    print("  outputs: " + ", ".join(f"%{o}:{g.type_of(o)}" for o in g.outputs))
    print(f"  params: {s.params:,} trainable, {s.buffers:,} buffer, {s.consts:,} const "
          f"({_fmt_bytes(s.param_bytes)})")
    print(f"  multiply-adds: {s.macs:,} ({s.macs / 1e9:.2f} G)   FLOPs: {s.flops:,}")
    print(f"  activation memory: {_fmt_bytes(s.activation_bytes)} (one buffer per value); planned for the cpu "
          f"target: peak {_fmt_bytes(mem['peak_activation_bytes'])} (naive {_fmt_bytes(mem['naive_activation_bytes'])}, "
          f"lower bound {_fmt_bytes(mem['lower_bound_bytes'])})")
    print("  ops: " + ", ".join(f"{k} x{v}" for k, v in s.ops.items()))
    return 0


def kernel_sharing(kernels, top: int = 3) -> str:
    """How many launching layers (nodes) share each kernel: the histogram, and the most shared."""
    counts = Counter(len(k.nodes) for k in kernels)
    hist = ", ".join(f"{n} kernel{'s' * (n != 1)} x {layers} layer{'s' * (layers != 1)}"
                     for layers, n in sorted(counts.items()))
    shared = sorted((k for k in kernels if len(k.nodes) > 1), key=lambda k: -len(k.nodes))[:top]
    most = "".join(f"\n  {len(k.nodes)} layers share {k.name}: {k.note}" for k in shared)
    return f"layers per kernel: {hist}{most}"


def cmd_compile(args) -> int:
    g = _model(args)
    t0 = time.perf_counter()
    exe = compile(g, target=args.target, dump_dir=args.dump_ir)
    dt = time.perf_counter() - t0
    print(f"compiled {g.name} for {args.target} in {dt:.2f} s: {len(g.nodes)} -> {len(exe.graph.nodes)} nodes")
    width = max(len(r.name) for r in exe.passes)
    for r in exe.passes[1:]:
        print(f"  {r.index:02d} {r.name:<{width}} {r.seconds * 1e3:8.2f} ms  {r.nodes_after:5d} nodes  {r.summary}")
    if exe.compiled is not None:
        c = exe.compiled
        n = len(c.program.kernels)
        if args.target == "cuda":
            print(f"kernels: {n} for {len(c.program.launches)} launches, built in {c.compile_seconds:.2f} s "
                  f"(numba compiles each for the device on its first launch)")
        else:
            print(f"kernels: {n} for {len(c.program.launches)} launches; compiled now {c.compiled_kernels}, "
                  f"from the cache {n - c.compiled_kernels} ({'cold' if c.compiled_kernels else 'cached'} "
                  f"compile {c.compile_seconds:.2f} s)")
        print(kernel_sharing(c.program.kernels.values()))
    if args.dump_ir:
        extra = " and generated kernels in kernels/" if exe.compiled is not None else ""
        print(f"IR after every pass written to {args.dump_ir}/ (index.md lists them){extra}")
    return _check(g, exe) if args.check else 0


def _check(g, exe) -> int:
    """Run the compiled graph and the reference interpreter on the original graph; compare."""
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in g.inputs}
    t0 = time.perf_counter()
    outs = exe.run(feeds)
    dt = time.perf_counter() - t0
    refs = interpret(g, feeds)
    worst = 0.0
    ok = True
    for name, y, r in zip(exe.output_names, outs, refs, strict=True):
        err = float(np.max(np.abs(y - r))) if y.size else 0.0
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        worst = max(worst, err)
        ok &= bool(np.allclose(y, r, rtol=1e-4, atol=1e-5 * max(1.0, scale)))
        print(f"check %{name}: max |compiled - reference| = {err:.3g} (max |reference| = {scale:.3g})")
    print(f"check: {'OK' if ok else 'MISMATCH'} (compiled run {dt * 1e3:.1f} ms, random input, seed 0)")
    return 0 if ok else 1


def _parse_feed(item: str) -> tuple[str, np.ndarray]:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        raise KilnError(f"--input takes NAME=FILE.npy, got {item!r}")
    try:
        return name, np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise KilnError(f"--input {name}: cannot read {path}: {e}") from None


def cmd_run(args) -> int:
    g = _model(args)
    feeds = dict(_parse_feed(i) for i in args.input)
    exe = compile(g, target=args.target)
    outs = exe.run(feeds)
    for name, y in zip(exe.output_names, outs, strict=True):
        flat = y.ravel()
        head = np.array2string(flat[:8], precision=5, separator=", ")
        print(f"%{name}: {y.dtype}{list(y.shape)}  first values {head}")
    if args.output:
        np.savez(args.output, **dict(zip(exe.output_names, outs, strict=True)))
        print(f"outputs written to {args.output}")
    return 0


def cmd_export_onnx(args) -> int:
    """Write the model as ONNX, optionally after the reference inference pipeline up to --after."""
    g = _model(args)
    if args.after is not None:
        passes = PIPELINES[("reference", "inference")]
        names = [p.name for p in passes]
        if args.after not in names:
            raise UnsupportedError(f"--after {args.after!r}: no such pass in the reference inference "
                                   f"pipeline; its passes are: {', '.join(names)}")
        g, _ = run_passes(g, passes[: names.index(args.after) + 1])
    try:
        model = save_onnx(g, args.out, opset=args.opset)
    except OSError as e:
        raise KilnError(f"cannot write {args.out}: {e}") from None
    after = f" after {args.after}" if args.after else ""
    print(f"exported {g.name}{after}: {len(g.nodes)} nodes -> {len(model.graph.node)} ONNX nodes "
          f"(opset {args.opset}) to {args.out}")
    return 0


DATASETS = ("digits", "karate", "synthetic")
DEFAULT_DATA = {"lenet5": "digits", "gcn_karate": "karate"}


def _train_data(args, g):
    """(train, test) for the chosen data set, checked against the model's input."""
    from . import data

    name = args.data or DEFAULT_DATA.get(args.model.removeprefix("zoo:"), "synthetic")
    if name == "digits":
        sets = data.digits(seed=args.seed)
    elif name == "karate":
        sets = data.karate()
    else:
        shape = g.inputs[0].type.shape
        classes = g.type_of(g.outputs[0]).shape[-1]
        sets = (data.synthetic_images(args.examples, classes, shape[1:], seed=args.seed),
                data.synthetic_images(max(shape[0], args.examples // 4), classes, shape[1:], seed=args.seed + 1))
    want, got = g.inputs[0], sets[0].x.shape[1:]
    if sets[0].input_name != want.name or tuple(want.type.shape[1:]) != got:
        raise UnsupportedError(f"data set {name!r} gives {sets[0].input_name!r} of shape [*, {', '.join(map(str, got))}]"
                               f"; the model takes {want.name!r}: {want.type}")
    return name, sets


def _progress(done: int, total: int, loss: float, width: int = 30) -> None:
    if sys.stderr.isatty():
        fill = int(width * done / max(total, 1))
        print(f"\r  [{'#' * fill}{'.' * (width - fill)}] {done}/{total} loss {loss:.4f}", end="", file=sys.stderr)


def cmd_train(args) -> int:
    from . import data, optim

    g = _model(args)
    name, (train, test) = _train_data(args, g)
    opt = (optim.Adam(args.lr or 1e-3, weight_decay=args.weight_decay) if args.optimizer == "adam" else
           optim.SGD(args.lr or 0.05, momentum=args.momentum, weight_decay=args.weight_decay))
    t0 = time.perf_counter()
    trainer = compile(g, target=args.target, mode="train", optimizer=opt)
    print(f"compiled {g.name} for training on {args.target} in {time.perf_counter() - t0:.1f} s; "
          f"data {name}: {len(train)} train / {len(test)} test")
    start = 0
    if args.resume:
        saved = dict(np.load(args.resume))
        start = int(saved.pop("__epoch__"))
        trainer.load_state_dict(saved)
        print(f"resumed from {args.resume} after epoch {start}")
    batch = g.inputs[0].type.shape[0]
    aug = data.Augment(crop_pad=args.crop_pad, flip=args.flip) if args.crop_pad or args.flip else None
    for epoch in range(start, args.epochs):
        t0, losses = time.perf_counter(), []
        feeds = list(data.batches(train, batch, seed=args.seed * 1000 + epoch, augment=aug))
        for i, f in enumerate(feeds, 1):
            losses.append(trainer.step(f))
            _progress(i, len(feeds), losses[-1])
        result = data.evaluate(trainer, test)
        if sys.stderr.isatty():
            print("\r", end="", file=sys.stderr)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {np.mean(losses):.4f}, test loss {result['loss']:.4f}, "
              f"test accuracy {result['accuracy']:.2%} ({time.perf_counter() - t0:.1f} s)")
        if args.checkpoint:
            np.savez(args.checkpoint, __epoch__=epoch + 1, **trainer.state_dict())
    if args.out:
        save_onnx(trainer.inference_graph(), args.out)
        print(f"wrote the trained model to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiln", description="kiln: compile neural-network graphs to kernels")
    sub = p.add_subparsers(dest="command", required=True)

    def model_cmd(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_)
        c.add_argument("model", help="zoo:NAME (e.g. zoo:resnet18) or a path to an .onnx file")
        c.add_argument("--batch", type=int, help="batch size for zoo models (default 1)")
        return c

    c = model_cmd("info", "ops, params, multiply-adds and activation memory of a model")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(fn=cmd_info)
    c = model_cmd("compile", "run the pass pipeline, optionally dumping the IR after every pass")
    c.add_argument("--dump-ir", metavar="DIR", help="write NN-<pass>.ir files and index.md here")
    c.add_argument("--target", default="reference", help=f"one of {', '.join(TARGETS)}")
    c.add_argument("--check", action="store_true",
                   help="run on a random input and compare with the reference interpreter")
    c.set_defaults(fn=cmd_compile)
    c = model_cmd("run", "compile and run a model on inputs from .npy files")
    c.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    c.add_argument("--output", metavar="FILE.npz", help="save the outputs here")
    c.add_argument("--target", default="reference", help=f"one of {', '.join(TARGETS)}")
    c.set_defaults(fn=cmd_run)
    c = model_cmd("export-onnx", "write the model (optionally after some passes) as an ONNX file")
    c.add_argument("out", metavar="OUT.onnx", help="where to write the ONNX model")
    c.add_argument("--after", metavar="PASS",
                   help="first run the reference inference pipeline up to and including PASS")
    c.add_argument("--opset", type=int, default=17, help="ONNX opset to export (13 or newer; default 17)")
    c.set_defaults(fn=cmd_export_onnx)
    c = model_cmd("train", "train a model on a bundled data set, with checkpoints")
    c.add_argument("--data", choices=DATASETS, help="digits (lenet5), karate (gcn_karate) or synthetic images "
                   "(default: the model's own, else synthetic)")
    c.add_argument("--epochs", type=int, default=5)
    c.add_argument("--target", default="cpu", help=f"one of {', '.join(TARGETS)}")
    c.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    c.add_argument("--lr", type=float, help="learning rate (default 0.05 for sgd, 0.001 for adam)")
    c.add_argument("--momentum", type=float, default=0.9)
    c.add_argument("--weight-decay", type=float, default=0.0)
    c.add_argument("--crop-pad", type=int, default=0, help="augment: random crops after padding this much")
    c.add_argument("--flip", action="store_true", help="augment: random horizontal flips")
    c.add_argument("--examples", type=int, default=512, help="synthetic data: number of training images")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--checkpoint", metavar="FILE.npz", help="save the state after every epoch")
    c.add_argument("--resume", metavar="FILE.npz", help="continue from a checkpoint")
    c.add_argument("--out", metavar="OUT.onnx", help="write the trained model as ONNX")
    c.set_defaults(fn=cmd_train)
    c = sub.add_parser("cache", help="show (info) or delete (clear) the kernel cache")
    c.add_argument("action", choices=("info", "clear"))
    c.set_defaults(fn=cmd_cache)

    for c in sub.choices.values():
        c.add_argument("--verbose", action="store_true", help="print errors whole (default: their first line)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KilnError as e:
        lines = str(e).splitlines() or [type(e).__name__]
        if getattr(args, "verbose", False) or len(lines) == 1:
            print(f"kiln {args.command}: error: " + "\n".join(lines), file=sys.stderr)
        else:  # one line; the node list, IR context and op list with --verbose
            print(f"kiln {args.command}: error: {lines[0]} ({len(lines) - 1} more line(s) with --verbose)",
                  file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
