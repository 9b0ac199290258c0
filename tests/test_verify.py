"""The verifier rejects malformed graphs and names the node, with the IR around it."""

import numpy as np
import pytest
from kiln.ir import Graph, IRError, Node, Param, TensorType, Value, VerifyError, parse, verify

GOOD = """
graph g(%x:f32[1,4]) {
  %a:f32[1,4] = relu (%x)  # first
  %b:f32[1,4] = sigmoid (%a)  # second
  %c:f32[1,4] = add (%a, %b)  # third
  return %c
}
"""


def nodes_of(g):
    return list(g.nodes)


def test_good_graph_passes():
    g = parse(GOOD)
    assert verify(g) is g


def test_redefinition_breaks_ssa():
    g = parse(GOOD)
    n = nodes_of(g)
    dup = n[1].with_(outputs=(Value("a", n[1].outputs[0].type),))
    with pytest.raises(VerifyError, match=r"%a is defined more than once") as e:
        verify(g.with_nodes([n[0], dup, n[2]]))
    assert ">>" in str(e.value) and "sigmoid" in str(e.value)


def test_use_before_definition_is_reported_as_order():
    g = parse(GOOD)
    n = nodes_of(g)
    with pytest.raises(VerifyError, match=r"node %b = sigmoid \(second\): input 0 %a is defined later"):
        verify(g.with_nodes([n[1], n[0], n[2]]))


def test_undefined_input():
    g = parse(GOOD)
    n = nodes_of(g)
    bad = n[2].with_(inputs=("a", "nope"))
    with pytest.raises(VerifyError, match=r"input 1 %nope is never defined"):
        verify(g.with_nodes([n[0], n[1], bad]))


def test_wrong_output_type():
    g = parse(GOOD)
    n = nodes_of(g)
    bad = n[0].with_(outputs=(Value("a", TensorType("f32", (1, 5))),))
    with pytest.raises(VerifyError, match=r"typed f32\[1,5\] but relu infers f32\[1,4\]"):
        verify(g.with_nodes([bad, n[1], n[2]]))


def test_shape_rule_violation_names_the_node():
    g = parse("""
    graph g(%x:f32[1,3,8,8]) {
      %y:f32[1,4,8,8] = conv2d[pads=1] (%x, %w:f32[4,2,3,3] param)  # layer1.conv
      return %y
    }""", seed=0)
    with pytest.raises(VerifyError, match=r"layer1.conv.*expects 2 input channels, input has 3"):
        verify(g)


def test_wrong_arity_and_bad_attrs():
    g = parse(GOOD)
    n = nodes_of(g)
    with pytest.raises(VerifyError, match=r"add takes 2 inputs"):
        verify(g.with_nodes([n[0], n[1], n[2].with_(inputs=("a",))]))
    with pytest.raises(VerifyError, match=r"unknown attribute"):
        verify(g.with_nodes([n[0].with_(attrs={"alpha": 1.0}), n[1], n[2]]))
    with pytest.raises(VerifyError, match=r"unknown op 'swizzle'"):
        verify(g.with_nodes([n[0].with_(op="swizzle"), n[1], n[2]]))


def test_missing_output_and_duplicate_param():
    g = parse(GOOD)
    with pytest.raises(VerifyError, match=r"graph output %zzz is never defined"):
        verify(g.replace(outputs=("zzz",)))
    p = Param(Value("x", TensorType("f32", (1, 4))), np.zeros((1, 4), np.float32))
    with pytest.raises(VerifyError, match=r"param %x reuses the name"):
        verify(g.replace(params=(p,)))


def test_param_data_must_match_its_type():
    with pytest.raises(IRError, match=r"data is float64\[3\], type says f32\[3\]"):
        Param(Value("w", TensorType("f32", (3,))), np.zeros(3))


def test_graph_types_are_immutable():
    g = parse(GOOD)
    with pytest.raises(AttributeError):
        g.nodes[0].op = "tanh"  # type: ignore[misc]
    with pytest.raises(TypeError):
        g.nodes[0].attrs["x"] = 1  # type: ignore[index]
    assert isinstance(g, Graph) and isinstance(g.nodes[0], Node)
