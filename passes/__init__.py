"""The compiler's passes, and the pipelines that run them: read this file to see what kiln does.

Each pipeline is a literal list for one (target, mode). Every pass is `Graph -> Graph`, and the
pass manager verifies the graph after each one (see manager.py).
"""

from __future__ import annotations

from .autodiff import TrainingGraph, autodiff, stateful_forward, vjp
from .cse import eliminate_common_subexpressions
from .dead_code import eliminate_dead_code
from .fold_constants import fold_constants, freeze_params
from .fold_conv_bn import fold_conv_bn
from .fuse_elementwise import fuse_elementwise
from .fuse_epilogues import fuse_epilogues
from .identities import remove_identities
from .infer_shapes import infer_shapes, with_input_shapes
from .manager import Pass, PassError, PassRecord, note, run_passes
from .reassociate_matmuls import reassociate_matmuls
from .recognise_activations import recognise_activations
from .reuse_buffers import buffer_stats, reuse_buffers
from .select_layout import select_layout
from .subsample_strided import subsample_strided
from .winograd_convs import winograd_convs

INFERENCE_CLEANUP = [
    Pass("infer_shapes", infer_shapes, "re-derive every value's type from the graph inputs"),
    Pass("freeze_params", freeze_params, "inference never updates weights: params become consts"),
    Pass("remove_identities", remove_identities, "drop identity and (inference) dropout nodes"),
    Pass("fold_constants", fold_constants, "evaluate nodes whose inputs are all consts"),
    Pass("eliminate_common_subexpressions", eliminate_common_subexpressions,
         "compute each distinct expression once"),
    Pass("eliminate_dead_code", eliminate_dead_code, "drop nodes and params no output needs"),
]

CPU_INFERENCE = [
    *INFERENCE_CLEANUP,
    Pass("recognise_activations", recognise_activations, "x*sigmoid(x) -> silu, Gelu/Mish/HardSwish expansions -> one op"),
    Pass("reassociate_matmuls", reassociate_matmuls, "multiply adjacency-feature-weight chains in the cheaper order"),
    Pass("fold_conv_bn", fold_conv_bn, "fold inference batch_norm into the convolution before it"),
    Pass("fuse_epilogues", fuse_epilogues, "run residual adds and activations in the conv's kernel"),
    Pass("fuse_elementwise", fuse_elementwise, "run each chain of elementwise ops as one kernel"),
    Pass("subsample_strided", subsample_strided, "strided 1x1 convs read one shared subsampled copy of their input"),
    Pass("select_layout", select_layout, "choose NCHW or blocked NCHW16c per value; insert reorders"),
    Pass("winograd_convs", winograd_convs, "run blocked 3x3 stride-1 convs as Winograd F(2x2,3x3)"),
    Pass("reuse_buffers", reuse_buffers, "pack activations into one arena, reusing dead values' bytes"),
]


# the CUDA kernels work in NCHW (no blocked layouts yet), where a strided read costs a GPU
# little: the CPU list without select_layout, subsample_strided and winograd_convs
CUDA_INFERENCE = [p for p in CPU_INFERENCE if p.name not in ("select_layout", "subsample_strided", "winograd_convs")]


def _unbound_autodiff(g):
    raise PassError("autodiff needs the loss and optimizer: kiln.compile(..., mode='train') binds them")


AUTODIFF = Pass("autodiff", _unbound_autodiff, "add the loss, the backward graph and the optimizer update")
# the step graph keeps weights as inputs (they change every step), so freeze_params is left out
TRAIN_CLEANUP = [p for p in INFERENCE_CLEANUP if p.name not in ("infer_shapes", "freeze_params")]

REFERENCE_TRAIN = [INFERENCE_CLEANUP[0], AUTODIFF, *TRAIN_CLEANUP]
CPU_TRAIN = [
    *REFERENCE_TRAIN,
    Pass("fuse_epilogues", fuse_epilogues, "run residual adds and activations in the conv's kernel"),
    Pass("fuse_elementwise", fuse_elementwise, "run each chain of elementwise ops as one kernel"),
    Pass("reuse_buffers", reuse_buffers, "pack activations and gradients into one arena"),
]

PIPELINES: dict[tuple[str, str], list[Pass]] = {
    ("reference", "inference"): INFERENCE_CLEANUP,
    ("cpu", "inference"): CPU_INFERENCE,
    ("reference", "train"): REFERENCE_TRAIN,
    ("cpu", "train"): CPU_TRAIN,
    ("cuda", "inference"): CUDA_INFERENCE,
    ("cuda", "train"): CPU_TRAIN,
}


def pipeline(target: str, mode: str) -> list[Pass]:
    """The pass list for (target, mode); KeyError if there is none."""
    return list(PIPELINES[(target, mode)])


__all__ = [
    "AUTODIFF",
    "PIPELINES",
    "Pass",
    "PassError",
    "PassRecord",
    "TrainingGraph",
    "autodiff",
    "buffer_stats",
    "eliminate_common_subexpressions",
    "eliminate_dead_code",
    "fold_constants",
    "fold_conv_bn",
    "freeze_params",
    "fuse_elementwise",
    "fuse_epilogues",
    "infer_shapes",
    "note",
    "pipeline",
    "remove_identities",
    "reuse_buffers",
    "run_passes",
    "select_layout",
    "stateful_forward",
    "subsample_strided",
    "vjp",
    "winograd_convs",
    "with_input_shapes",
]
