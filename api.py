"""The public entry points: load a model, compile it for a target, run it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from .frontend import models
from .frontend.onnx import from_onnx
from .ir import Graph
from .ir.errors import UnsupportedError
from .passes import PIPELINES, autodiff, run_passes, stateful_forward
from .passes.autodiff import LOSSES, split_state
from .passes.select_layout import select_layout_with
from .runtime import Executable, interpret
from .runtime.arena import ArenaRunner
from .runtime.trainer import Trainer

TARGETS = ("reference", "cpu", "cuda")  # what compile() can build today
PLANNED_TARGETS = ()  # named by the design, not built yet
MODES = ("inference", "train")
REQUIRED_PASSES = frozenset({"infer_shapes", "freeze_params"})  # later passes and kernels rely on them


def load_model(spec: str | Path | Graph, **kwargs) -> Graph:
    """A graph from a zoo name (`zoo:resnet18`), an ONNX file path, or a Graph (returned as is).

    Keyword arguments go to the zoo builder (`batch=...`) or to `from_onnx` (`batch=...`,
    `input_shapes=...`)."""
    if isinstance(spec, Graph):
        return spec
    if not isinstance(spec, (str, Path)):
        raise UnsupportedError(f"expected a kiln Graph, a model name like 'zoo:resnet18' or an .onnx path, "
                               f"got {type(spec).__name__}")
    spec = str(spec)
    if spec.startswith("zoo:"):
        return models.get_model(spec[4:], **kwargs)
    if spec.endswith(".onnx") or Path(spec).exists():
        return from_onnx(spec, **kwargs)
    raise UnsupportedError(f"unknown model {spec!r}: give an .onnx file or zoo:NAME with NAME one of "
                           f"{', '.join(models.ZOO)}")


def compile(model: Graph | str, target: str = "reference", mode: str = "inference",
            dump_dir: str | Path | None = None, threads: int | None = None, skip: Sequence[str] = (), *,
            loss: str = "softmax_cross_entropy", optimizer=None, frozen: Sequence[str] = (),
            masked: bool | None = None, cost_model="machine") -> Executable | Trainer:
    """Optimise `model` with the (target, mode) pipeline and bind it to a runner.

    With `dump_dir`, the IR after every pass is written there (NN-<pass>.ir and index.md), and
    for kernel targets the generated sources under `kernels/`. `threads` caps the CPU target's
    worker threads (default: all cores). `skip` names optional passes to leave out, to see what
    each one buys (fold_conv_bn, fuse_epilogues, select_layout, reuse_buffers, ...).

    mode="train" returns a Trainer (runtime/trainer.py): `loss` on the first output,
    `optimizer` a kiln.optim.SGD or Adam (default SGD(lr=0.01)), `frozen` param names (or
    prefixes ending in '.') kept fixed, `masked` adds a boolean 'mask' feed choosing the rows the
    loss counts (default: on for graphs with spmm, i.e. node classification).

    `cost_model` prices select_layout's choices on the CPU target: "machine" (this machine's
    measured rates, kiln/costs.py), a passes.cost_model.CostModel, or None (the rule: block every
    conv that can be)."""
    if target not in TARGETS:
        planned = f" ('{target}' is planned but not built yet)" if target in PLANNED_TARGETS else ""
        raise UnsupportedError(f"unknown target {target!r}{planned}; targets that exist: {', '.join(TARGETS)}")
    if mode not in MODES:
        raise UnsupportedError(f"mode {mode!r} is not supported; modes that exist: {', '.join(MODES)}")
    graph = load_model(model)
    if mode == "train":
        return _compile_train(graph, target, dump_dir, threads, skip, loss, optimizer, frozen, masked, cost_model)
    return _compile_graph(graph, target, PIPELINES[(target, mode)], dump_dir, threads, skip, mode, cost_model)


def _with_cost_model(pipeline, cost_model):
    """The pipeline with select_layout given the target's cost model (the pass never measures)."""
    if not any(p.name == "select_layout" for p in pipeline):
        return pipeline
    if cost_model == "machine":
        from .costs import machine_model

        cost_model = machine_model()
    return [dataclasses.replace(p, fn=select_layout_with(cost_model)) if p.name == "select_layout" else p
            for p in pipeline]


def _compile_graph(graph: Graph, target: str, pipeline, dump_dir, threads, skip, mode: str,
                   cost_model="machine") -> Executable:
    names = [p.name for p in pipeline]
    unknown = sorted(set(skip) - set(names) | set(skip) & REQUIRED_PASSES)
    if unknown:
        raise UnsupportedError(f"cannot skip {unknown}: the {target}/{mode} pipeline's optional passes are "
                               f"{', '.join(n for n in names if n not in REQUIRED_PASSES)}")
    kept = [p for p in pipeline if p.name not in skip]
    optimized, records = run_passes(graph, _with_cost_model(kept, cost_model) if target == "cpu" else kept, dump_dir)
    if target == "reference":
        return Executable(optimized, lambda feeds: interpret(optimized, feeds), target, records)
    if target == "cuda":
        from .backends.numba_cuda import build as build_cuda
        from .runtime.device import DeviceRunner

        compiled = build_cuda(optimized, dump_dir)
        runner = DeviceRunner(compiled)
        return Executable(optimized, runner, target, records, profiler=runner.profile, compiled=compiled)
    from .backends.numba_cpu import build  # numba loads only when a kernel target is asked for

    compiled = build(optimized, dump_dir)
    runner = ArenaRunner(compiled, threads)
    return Executable(optimized, runner, target, records, profiler=runner.profile, compiled=compiled)


def _compile_train(graph: Graph, target, dump_dir, threads, skip, loss, optimizer, frozen, masked,
                   cost_model="machine") -> Trainer:
    from . import optim

    optimizer = optimizer if optimizer is not None else optim.SGD(lr=0.01)
    if loss not in LOSSES:
        raise UnsupportedError(f"unknown loss {loss!r}; losses: {', '.join(LOSSES)}")
    split_state(graph, frozen)  # unknown frozen names fail here, before any pass runs
    if masked is None:
        masked = any(n.op == "spmm" for n in graph.nodes)
    built = {}

    def bound_autodiff(g: Graph) -> Graph:
        built["spec"] = autodiff(g, optimizer, loss=loss, frozen=frozen, masked=masked)
        return built["spec"].graph

    pipeline = [dataclasses.replace(p, fn=bound_autodiff) if p.name == "autodiff" else p
                for p in PIPELINES[(target, "train")]]
    step_exe = _compile_graph(graph, target, pipeline, dump_dir, threads, skip, "train", cost_model)
    eval_dir = Path(dump_dir) / "eval" if dump_dir is not None else None
    eval_skip = [s for s in skip if s in {p.name for p in PIPELINES[(target, "inference")]}]
    eval_exe = _compile_graph(stateful_forward(graph, frozen), target, PIPELINES[(target, "inference")],
                              eval_dir, threads, eval_skip, "inference", cost_model)
    return Trainer(built["spec"], step_exe, eval_exe, optimizer, graph)
