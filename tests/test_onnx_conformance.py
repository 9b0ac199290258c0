"""The ONNX conformance node cases and the pytorch-converted / pytorch-operator model tests
for every op kiln claims, each within the case's own tolerance (see onnx_conformance.py)."""

import pytest
from onnx_conformance import KNOWN_GAPS, model_cases, node_cases, run_case


def _param(name, values):
    marks = [pytest.mark.xfail(reason=KNOWN_GAPS[name], strict=True)] if name in KNOWN_GAPS else []
    return pytest.param(*values, id=name, marks=marks)


@pytest.mark.parametrize("case", [_param(c.name, [c]) for c in node_cases()])
def test_node_case(case):
    run_case(case.model, case.data_sets, case.rtol, case.atol)


@pytest.mark.parametrize("name, model, sets, rtol, atol",
                         [_param(name, [name, m, s, r, a]) for name, _, m, s, r, a in model_cases()])
def test_model_case(name, model, sets, rtol, atol):
    run_case(model, sets, rtol, atol)


@pytest.mark.parametrize("case", [_param(c.name, [c]) for c in node_cases()])
def test_node_case_on_cpu(case):
    """Every node case again through the numba CPU target's generated kernels."""
    run_case(case.model, case.data_sets, case.rtol, case.atol, target="cpu")


@pytest.mark.parametrize("name, model, sets, rtol, atol",
                         [_param(name, [name, m, s, r, a]) for name, _, m, s, r, a in model_cases()])
def test_model_case_on_cpu(name, model, sets, rtol, atol):
    """The same model tests through the numba CPU target's generated kernels."""
    run_case(model, sets, rtol, atol, target="cpu")


def test_every_known_gap_is_a_real_case():
    names = {c.name for c in node_cases()} | {name for name, *_ in model_cases()}
    assert set(KNOWN_GAPS) <= names
