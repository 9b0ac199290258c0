"""The ONNX conformance node cases and the pytorch-converted / pytorch-operator model tests
for every op kiln claims, each within the case's own tolerance (see onnx_conformance.py).

Ops kiln imports through their ONNX function bodies run every case on the reference target; on
cpu, CI runs the first case of each such op (the bodies lower onto ops whose own cases run
there in full: compiling the hundred-odd Attention variants alone takes minutes), and
KILN_CONFORMANCE_ALL=1 runs all of them. The `_expanded` cases (an op's function body written
out as the model) likewise: every one on reference, the first of each op on cpu and cuda (the
162 of them took about 6 of the cpu target's 10 minutes here). The cuda target runs the cases of
converted ops."""

import os
import re

import numpy as np
import pytest
from conftest import HAS_GPU
from onnx_conformance import KNOWN_GAPS, converted, gap, label, model_cases, node_cases, run_case

SIMULATOR_MAX_OUTPUTS = 5000  # the simulator runs each CUDA thread in Python: ~1 ms per thread
SIM_ALL = os.environ.get("KILN_SIM_ALL") == "1"  # run the big cases in the simulator anyway
ALL = os.environ.get("KILN_CONFORMANCE_ALL") == "1"  # every function-body case on cpu too


def _op_of(case, by_name) -> str:
    """The op a case is about: an `_expanded` case's is its unexpanded twin's."""
    base = by_name.get(re.sub(r"_expanded(_ver\d+)?$", "", case.name), case)
    return label(base.model)


def _written_out(case) -> bool:
    """A function-body case: the op imports through its body, or the case spells the body out."""
    return not converted(case.model) or "_expanded" in case.name


def _first_of_each_written_out_op() -> set[str]:
    by_name = {c.name: c for c in node_cases()}
    seen, first = set(), set()
    for c in node_cases():
        kind = (_op_of(c, by_name), "_expanded" in c.name)
        if _written_out(c) and gap(c.name, c.model, "cpu") is None and kind not in seen:
            seen.add(kind)
            first.add(c.name)
    return first


KERNEL_TARGET_CASES = _first_of_each_written_out_op()


def _past_the_first(case, target: str) -> None:
    if not ALL and _written_out(case) and case.name not in KERNEL_TARGET_CASES and case.name not in KNOWN_GAPS:
        pytest.skip(f"a function-body case past the first of its op ({_op_of(case, {})}); KILN_CONFORMANCE_ALL=1 "
                    f"runs it on {target}")


def _param(name, values, target="reference"):
    model = values[0].model if len(values) == 1 else values[1]
    why = gap(name, model, target)
    marks = [pytest.mark.xfail(reason=why, strict=True)] if why else []
    return pytest.param(*values, id=name, marks=marks)


@pytest.mark.parametrize("case", [_param(c.name, [c]) for c in node_cases()])
def test_node_case(case):
    run_case(case.model, case.data_sets, case.rtol, case.atol)


@pytest.mark.parametrize("name, model, sets, rtol, atol",
                         [_param(name, [name, m, s, r, a]) for name, _, m, s, r, a in model_cases()])
def test_model_case(name, model, sets, rtol, atol):
    run_case(model, sets, rtol, atol)


@pytest.mark.parametrize("case", [_param(c.name, [c], "cpu") for c in node_cases()])
def test_node_case_on_cpu(case):
    """Every node case again through the numba CPU target's generated kernels."""
    _past_the_first(case, "cpu")
    run_case(case.model, case.data_sets, case.rtol, case.atol, target="cpu")


@pytest.mark.parametrize("name, model, sets, rtol, atol",
                         [_param(name, [name, m, s, r, a], "cpu") for name, _, m, s, r, a in model_cases()])
def test_model_case_on_cpu(name, model, sets, rtol, atol):
    """The same model tests through the numba CPU target's generated kernels."""
    run_case(model, sets, rtol, atol, target="cpu")


def test_every_known_gap_is_a_real_case():
    names = {c.name for c in node_cases()} | {name for name, *_ in model_cases()}
    assert set(KNOWN_GAPS) <= names


def _on_cuda(model, sets, rtol, atol):
    pytest.importorskip("numba.cuda", reason="the cuda target needs numba-cuda")
    outputs = sum(np.asarray(e).size for _, expected in sets for e in expected)
    if not HAS_GPU and not SIM_ALL and outputs > SIMULATOR_MAX_OUTPUTS:
        pytest.skip(f"{outputs} output elements would take minutes in Numba's CUDA simulator (over "
                    f"{SIMULATOR_MAX_OUTPUTS}); the case runs where a GPU is present, or with KILN_SIM_ALL=1")
    run_case(model, sets, rtol, atol, target="cuda")


@pytest.mark.parametrize("case", [_param(c.name, [c], "cuda") for c in node_cases() if converted(c.model)])
def test_node_case_on_cuda(case):
    """Every node case through the CUDA target's kernels (in the simulator without a GPU)."""
    _past_the_first(case, "cuda")
    _on_cuda(case.model, case.data_sets, case.rtol, case.atol)


@pytest.mark.parametrize("name, model, sets, rtol, atol",
                         [_param(name, [name, m, s, r, a], "cuda") for name, _, m, s, r, a in model_cases()])
def test_model_case_on_cuda(name, model, sets, rtol, atol):
    """The pytorch-converted / pytorch-operator model tests through the CUDA target."""
    _on_cuda(model, sets, rtol, atol)
