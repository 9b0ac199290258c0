"""The IR text form: printing, parsing back, and errors that point at the text."""

import numpy as np
import pytest
from kiln.frontend import Builder
from kiln.ir import ParseError, format_graph, parse, verify
from kiln.runtime import interpret


def small_net():
    b = Builder("small", seed=3)
    x = b.input("input", (2, 3, 9, 9))
    with b.scope("stem"):
        y = b.relu(b.batch_norm(b.conv2d(x, 8, kernel=3, stride=2, pads=(0, 1, 2, 0), bias=False)))
    skip = y
    y = b.conv2d(y, 8, kernel=1, groups=2, name="pw")
    y = b.relu(y + skip)
    y = b.maxpool2d(y, 3, stride=2, pads=1, ceil_mode=True)
    y = b.avgpool2d(y, 2, stride=1, count_include_pad=True)
    z = b.linear(b.flatten(b.global_avgpool(y)), 4, name="fc")
    return b.build(b.log_softmax(z), b.clip(z, lo=-1.0))


def test_round_trip_is_exact():
    g = small_net()
    text = format_graph(g)
    back = parse(text, params=g.param_data())
    assert back == g
    assert format_graph(back) == text


def test_round_trip_runs_the_same():
    g = small_net()
    back = parse(format_graph(g), params=g.param_data())
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    for a, b in zip(interpret(g, {"input": x}), interpret(back, {"input": x}), strict=True):
        np.testing.assert_array_equal(a, b)


def test_line_format_matches_the_design():
    text = format_graph(small_net())
    line = next(s for s in text.splitlines() if "= conv2d" in s and "stem" in s)
    # H: (9 + 0 + 2 - 3) // 2 + 1 = 5; W: (9 + 1 + 0 - 3) // 2 + 1 = 4
    assert line.strip() == (
        "%stem.conv:f32[2,8,5,4] = conv2d[groups=1 pads=[0,1,2,0] stride=2] "
        "(%input, %stem.conv.weight:f32[8,3,3,3] param)  # stem.conv"
    )
    assert "clip[min=-1.0] (%fc)" in text  # default max=inf not printed


def test_hand_written_text_with_seeded_params():
    g = parse("""
    graph t(%x:f32[1,4]) {
      %h:f32[1,3] = gemm[trans_b=true] (%x, %w:f32[3,4] param, %b:f32[3] param)  # fc1
      %shape:i64[2] = identity (%s:i64[2] const=[3,1])
      %y:f32[3,1] = reshape[shape=[3,1]] (%h)
      return %y, %shape
    }
    """, seed=0)
    verify(g)
    assert g.param_map["s"].data.tolist() == [3, 1]
    assert g.nodes[0].name == "fc1"


def test_odd_names_are_quoted():
    g = parse("""
    graph "my model"(%"input.1":f32[2]) {
      %"onnx::Relu_3":f32[2] = relu (%"input.1")
      return %"onnx::Relu_3"
    }""")
    assert g.inputs[0].name == "input.1"
    assert parse(format_graph(g)) == g


def test_buffers_and_layouts_round_trip():
    text = ("graph b(%x:f32[1,16,4,4]) {\n"
            "  %y:f32[1,16,4,4] = relu (%x)  @arena+64 (1024 B)  # r\n"
            "  return %y\n}\n")
    g = parse(text)
    assert g.nodes[0].outputs[0].buffer.offset == 64
    assert format_graph(g) == text


@pytest.mark.parametrize("text, message", [
    ("graph g(%x:f32[2]) {\n  %y:f32[2] = frobnicate (%x)\n  return %y\n}", "unknown op 'frobnicate'"),
    ("graph g(%x:f32[2]) {\n  %y:f32[2] = relu (%x) junk\n  return %y\n}", "line 2"),
    ("graph g(%x:f32[2]) {\n  %y:f32[2] = relu[wat=1] (%x)\n  return %y\n}", "unknown attribute"),
    ("graph g(%x:q8[2]) {\n  return %x\n}", "unknown dtype"),
    ("graph g(%x:f32[2]) {\n  %y:f32[2] = relu (%x)\n}", "missing return"),
    ("graph g(%x:f32[2]) {\n  %y:f32[2] = add (%x, %w:f32[2] param)\n  return %y\n}", "no data for param %w"),
])
def test_parse_errors_say_where(text, message):
    with pytest.raises(ParseError, match=message.replace("[", r"\[")):
        parse(text)
