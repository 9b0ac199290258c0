"""Each cleanup pass: Before/Expected in IR text, a numeric check against the reference
interpreter, and what the pass claims, counted."""

import numpy as np
import pytest
from kiln.ir import parse
from kiln.ir.testing import assert_graph_equal
from kiln.passes import (
    eliminate_common_subexpressions,
    eliminate_dead_code,
    fold_constants,
    freeze_params,
    infer_shapes,
    remove_identities,
    with_input_shapes,
)
from kiln.runtime import interpret


def same_outputs(before, after, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in before.inputs}
    for a, b in zip(interpret(before, feeds), interpret(after, feeds), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_fold_constants():
    before = parse("""
    graph g(%x:f32[2,3]) {
      %t:f32[3,2] = transpose[perm=[1,0]] (%c:f32[2,3] const=[1,2,3,4,5,6])
      %u:f32[3,2] = relu (%t)
      %y:f32[2,2] = matmul (%x, %u)
      return %y
    }""")
    expected = parse("""
    graph g(%x:f32[2,3]) {
      %y:f32[2,2] = matmul (%x, %u:f32[3,2] const=[1,4,2,5,3,6])
      return %y
    }""")
    after = fold_constants(before)
    assert_graph_equal(after, expected)
    same_outputs(before, after)


def test_fold_constants_leaves_trainable_params_and_outputs():
    g = parse("""
    graph g(%x:f32[2]) {
      %t:f32[2] = relu (%w:f32[2] param)
      %c:f32[2] = relu (%k:f32[2] const=[-1,1])
      %y:f32[2] = add (%x, %t)
      return %y, %c
    }""", seed=0)
    assert fold_constants(g) is g
    frozen = freeze_params(g)
    assert {p.role for p in frozen.params} == {"const"}
    assert [n.op for n in fold_constants(frozen).nodes] == ["relu", "add"]  # %c is an output


def test_eliminate_dead_code():
    before = parse("""
    graph g(%x:f32[4]) {
      %a:f32[4] = relu (%x)
      %dead1:f32[4] = tanh (%a)
      %dead2:f32[4] = mul (%dead1, %w:f32[4] const=[1,2,3,4])
      %y:f32[4] = sigmoid (%a)
      return %y
    }""")
    expected = parse("""
    graph g(%x:f32[4]) {
      %a:f32[4] = relu (%x)
      %y:f32[4] = sigmoid (%a)
      return %y
    }""")
    after = eliminate_dead_code(before)
    assert_graph_equal(after, expected)
    assert not after.params
    assert eliminate_dead_code(after) is after
    same_outputs(before, after)


def test_eliminate_common_subexpressions():
    before = parse("""
    graph g(%x:f32[1,2,4,4]) {
      %a:f32[1,2,4,4] = relu (%x)
      %b:f32[1,2,4,4] = relu (%x)
      %p:f32[1,2,2,2] = maxpool2d[kernel=2 stride=2 pads=0] (%a)
      %q:f32[1,2,2,2] = maxpool2d[kernel=2 stride=2 pads=0] (%b)
      %r:f32[1,8] = reshape[shape=[1,-1]] (%p)
      %s:f32[1,8] = reshape[shape=[1,-1]] (%q)
      %m1:f32[1,8] = mul (%r, %k1:f32[1] const=[2])
      %m2:f32[1,8] = mul (%s, %k2:f32[1] const=[2])
      %y:f32[1,8] = add (%m1, %m2)
      return %y
    }""")
    expected = parse("""
    graph g(%x:f32[1,2,4,4]) {
      %a:f32[1,2,4,4] = relu (%x)
      %p:f32[1,2,2,2] = maxpool2d[kernel=2 stride=2 pads=0] (%a)
      %r:f32[1,8] = reshape[shape=[1,-1]] (%p)
      %m1:f32[1,8] = mul (%r, %k1:f32[1] const=[2])
      %m2:f32[1,8] = mul (%r, %k2:f32[1] const=[2])
      %y:f32[1,8] = add (%m1, %m2)
      return %y
    }""")  # float consts are never merged: each layer keeps its own weights
    after = eliminate_common_subexpressions(before)
    assert_graph_equal(after, expected)
    same_outputs(before, after)


def test_cse_keeps_output_names_and_different_attrs():
    g = parse("""
    graph g(%x:f32[4]) {
      %a:f32[4] = leaky_relu[alpha=0.1] (%x)
      %b:f32[4] = leaky_relu[alpha=0.2] (%x)
      %c:f32[4] = relu (%x)
      %d:f32[4] = relu (%x)
      return %a, %b, %c, %d
    }""")
    assert eliminate_common_subexpressions(g) is g


def test_remove_identities():
    before = parse("""
    graph g(%x:f32[3]) {
      %d:f32[3] = dropout[ratio=0.3] (%x)
      %i:f32[3] = identity (%d)
      %y:f32[3] = relu (%i)
      %z:f32[3] = identity (%y)
      return %z
    }""")
    expected = parse("""
    graph g(%x:f32[3]) {
      %y:f32[3] = relu (%x)
      %z:f32[3] = identity (%y)
      return %z
    }""")
    after = remove_identities(before)
    assert_graph_equal(after, expected)
    same_outputs(before, after)


def test_infer_shapes_after_a_batch_change():
    g = parse("""
    graph g(%x:f32[1,3,8,8]) {
      %c:f32[1,4,8,8] = conv2d[pads=1] (%x, %w:f32[4,3,3,3] param)
      %p:f32[1,4,1,1] = global_avgpool (%c)
      %f:f32[1,4] = flatten[axis=1] (%p)
      return %f
    }""", seed=1)
    assert infer_shapes(g) is g
    g8 = with_input_shapes(g, {"x": (8, 3, 8, 8)})
    assert [v.type.shape for n in g8.nodes for v in n.outputs] == [(8, 4, 8, 8), (8, 4, 1, 1), (8, 4)]
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    one = np.concatenate([interpret(g, {"x": x[i:i + 1]})[0] for i in range(8)])
    np.testing.assert_allclose(interpret(g8, {"x": x})[0], one, rtol=1e-6, atol=1e-6)


def test_passes_never_mutate_their_input():
    text = """
    graph g(%x:f32[2]) {
      %a:f32[2] = relu (%x)
      %b:f32[2] = relu (%x)
      %d:f32[2] = dropout (%b)
      %e:f32[2] = tanh (%a)
      %y:f32[2] = add (%a, %d)
      return %y
    }"""
    g = parse(text)
    snapshot = parse(text)
    for p in (fold_constants, eliminate_dead_code, eliminate_common_subexpressions, remove_identities,
              infer_shapes, freeze_params):
        p(g)
        assert_graph_equal(g, snapshot)


@pytest.mark.parametrize("bad", [{"nope": (1,)}])
def test_with_input_shapes_rejects_unknown_inputs(bad):
    g = parse("graph g(%x:f32[2]) {\n  %y:f32[2] = relu (%x)\n  return %y\n}")
    with pytest.raises(Exception, match="has no input"):
        with_input_shapes(g, bad)


def test_fuse_epilogues_residual_and_relu():
    from kiln.passes import fuse_epilogues

    before = parse("""
    graph g(%x:f32[1,2,4,4], %r:f32[1,2,4,4]) {
      %c:f32[1,2,4,4] = conv2d[pads=1] (%x, %w:f32[2,2,3,3] const, %b:f32[2] const)
      %s:f32[1,2,4,4] = add (%c, %r)
      %y:f32[1,2,4,4] = relu (%s)
      %c2:f32[1,2,4,4] = conv2d[pads=0] (%y, %w2:f32[2,2,1,1] const)
      %z:f32[1,2,4,4] = clip[min=0.0 max=6.0] (%c2)
      %c3:f32[1,2,4,4] = conv2d[pads=0] (%z, %w3:f32[2,2,1,1] const)
      %u:f32[1,2,4,4] = leaky_relu[alpha=0.1] (%c3)
      %c4:f32[1,2,4,4] = conv2d[pads=0] (%u, %w4:f32[2,2,1,1] const)
      %v:f32[1,2,4,4] = leaky_relu[alpha=2.0] (%c4)
      %c5:f32[1,2,4,4] = conv2d[pads=0] (%v, %w5:f32[2,2,1,1] const)
      %s5:f32[1,2,4,4] = sigmoid (%c5)
      return %s5
    }""", seed=0)
    expected = parse("""
    graph g(%x:f32[1,2,4,4], %r:f32[1,2,4,4]) {
      %y:f32[1,2,4,4] = conv2d[act=relu pads=1 residual=true] (%x, %w:f32[2,2,3,3] const, %b:f32[2] const, %r)
      %z:f32[1,2,4,4] = conv2d[act=clip pads=0] (%y, %w2:f32[2,2,1,1] const)
      %u:f32[1,2,4,4] = conv2d[act=leaky_relu act_alpha=0.1 pads=0] (%z, %w3:f32[2,2,1,1] const)
      %c4:f32[1,2,4,4] = conv2d[pads=0] (%u, %w4:f32[2,2,1,1] const)
      %v:f32[1,2,4,4] = leaky_relu[alpha=2.0] (%c4)
      %s5:f32[1,2,4,4] = conv2d[act=sigmoid pads=0] (%v, %w5:f32[2,2,1,1] const)
      return %s5
    }""", params=before.param_data())
    after = fuse_epilogues(before)
    assert_graph_equal(after, expected)
    same_outputs(before, after)


def test_fuse_epilogues_declines_shared_and_broadcast():
    from kiln.passes import fuse_epilogues

    g = parse("""
    graph g(%x:f32[1,2,4,4]) {
      %c:f32[1,2,4,4] = conv2d[pads=1] (%x, %w:f32[2,2,3,3] const)
      %a:f32[1,2,4,4] = add (%c, %k:f32[2,1,1] const=[1,2])
      %y:f32[1,2,4,4] = relu (%a)
      %c2:f32[1,2,4,4] = conv2d[pads=1] (%y, %w2:f32[2,2,3,3] const)
      %p:f32[1,2,4,4] = relu (%c2)
      return %p, %c2
    }""", seed=0)
    assert fuse_epilogues(g) is g  # broadcast add; conv output also a graph output


def _gcn_layer(f_in, f_out, order):
    import networkx as nx
    from kiln.frontend import Builder
    from kiln.frontend.graphs import normalized_adjacency

    b = Builder("layer", seed=5)
    x = b.input("features", (12, f_in))
    adj = b.csr("adj", *normalized_adjacency(nx.cycle_graph(12)))
    w = b.param("w", np.random.default_rng(1).standard_normal((f_in, f_out)).astype(np.float32))
    y = b.op("matmul", [b.spmm(adj, x), w]) if order == "(AX)W" else b.spmm(adj, b.op("matmul", [x, w]))
    return b.build(b.relu(y))


@pytest.mark.parametrize("f_in, f_out, given, best", [(32, 4, "(AX)W", "A(XW)"), (4, 32, "A(XW)", "(AX)W"),
                                                       (32, 4, "A(XW)", "A(XW)")])
def test_reassociate_matmuls_picks_the_cheaper_order(f_in, f_out, given, best):
    from kiln.passes import reassociate_matmuls

    before = freeze_params(_gcn_layer(f_in, f_out, given))
    after = reassociate_matmuls(before)
    ops = [n.op for n in after.nodes if n.op in ("spmm", "matmul")]
    assert ops == (["matmul", "spmm"] if best == "A(XW)" else ["spmm", "matmul"])
    assert (after is before) == (given == best)
    x = np.random.default_rng(2).standard_normal((12, f_in)).astype(np.float32)
    np.testing.assert_allclose(interpret(after, {"features": x})[0], interpret(before, {"features": x})[0],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trans_b", [True, False])
def test_fold_conv_bn_after_a_linear_layer(trans_b):
    from kiln.passes import fold_conv_bn

    w = "%w:f32[3,4] const" if trans_b else "%w:f32[4,3] const"
    rng = np.random.default_rng(3)
    g = parse(f"""
    graph g(%x:f32[5,4]) {{
      %h:f32[5,3] = gemm[trans_b={'true' if trans_b else 'false'}] (%x, {w}, %c:f32[3] const)
      %y:f32[5,3] = batch_norm (%h, %gamma:f32[3] const, %beta:f32[3] const, %mean:f32[3] const, %var:f32[3] const)
      return %y
    }}""", params={"w": rng.standard_normal((3, 4) if trans_b else (4, 3)).astype(np.float32),
                   "c": rng.standard_normal(3).astype(np.float32),
                   "gamma": rng.random(3).astype(np.float32) + 0.5, "beta": rng.standard_normal(3).astype(np.float32),
                   "mean": rng.standard_normal(3).astype(np.float32), "var": rng.random(3).astype(np.float32) + 0.5})
    folded = fold_conv_bn(g)
    assert [n.op for n in folded.nodes] == ["gemm"]
    same_outputs(g, folded)


def test_fold_conv_bn_folds_affine_scale_and_shift():
    """conv, then mul by a per-channel const, then add of one (the const on either side), then
    div and sub by a scalar: all four fold into the conv's weights and bias."""
    from kiln.passes import fold_conv_bn

    rng = np.random.default_rng(4)
    data = {"w": rng.standard_normal((3, 2, 1, 1)), "b": rng.standard_normal(3),
            "s": rng.random((3, 1, 1)) + 0.5, "t": rng.standard_normal((1, 3, 1, 1)), "k": np.array(2.5),
            "u": np.array([0.25])}
    g = parse("""
    graph g(%x:f32[2,2,5,5]) {
      %h:f32[2,3,5,5] = conv2d (%x, %w:f32[3,2,1,1] const, %b:f32[3] const)
      %h2:f32[2,3,5,5] = mul (%s:f32[3,1,1] const, %h)
      %h3:f32[2,3,5,5] = add (%h2, %t:f32[1,3,1,1] const)
      %h4:f32[2,3,5,5] = div (%h3, %k:f32[] const)
      %y:f32[2,3,5,5] = sub (%h4, %u:f32[1] const)
      return %y
    }""", params={k: v.astype(np.float32) for k, v in data.items()})
    folded = fold_conv_bn(g)
    assert [n.op for n in folded.nodes] == ["conv2d"]
    same_outputs(g, folded)


def test_fold_conv_bn_leaves_what_is_not_affine_per_channel():
    """A scale that varies over space, a const minus the conv (not y * s + t), and a scale
    computed at run time stay as they are."""
    from kiln.passes import fold_conv_bn

    rng = np.random.default_rng(5)
    g = parse("""
    graph g(%x:f32[1,2,4,4], %r:f32[3,1,1]) {
      %h:f32[1,3,4,4] = conv2d (%x, %w:f32[3,2,1,1] const)
      %a:f32[1,3,4,4] = mul (%h, %s:f32[1,1,4,4] const)
      %h2:f32[1,3,4,4] = conv2d (%x, %w2:f32[3,2,1,1] const)
      %b:f32[1,3,4,4] = sub (%t:f32[3,1,1] const, %h2)
      %h3:f32[1,3,4,4] = conv2d (%x, %w3:f32[3,2,1,1] const)
      %c:f32[1,3,4,4] = mul (%h3, %r)
      return %a, %b, %c
    }""", params={"w": rng.standard_normal((3, 2, 1, 1)).astype(np.float32),
                  "w2": rng.standard_normal((3, 2, 1, 1)).astype(np.float32),
                  "w3": rng.standard_normal((3, 2, 1, 1)).astype(np.float32),
                  "s": rng.standard_normal((1, 1, 4, 4)).astype(np.float32),
                  "t": rng.standard_normal((3, 1, 1)).astype(np.float32)})
    assert_graph_equal(fold_conv_bn(g), g)


def test_fuse_elementwise_chains():
    from kiln.passes import fuse_elementwise

    before = parse("""
    graph g(%x:f32[2,3,4], %b:f32[4], %s:f32[3,1]) {
      %t1:f32[2,3,4] = add (%x, %b)
      %t2:f32[2,3,4] = relu (%t1)
      %t3:f32[2,3,4] = sub (%s, %t2)
      %t4:f32[2,3,4] = mul (%t3, %s)
      %y:f32[2,3,4] = clip[min=-0.5 max=0.5] (%t4)
      %u1:f32[2,3,4] = sigmoid (%x)
      %u2:f32[2,3,4] = mul (%u1, %u1)
      %u3:f32[2,3,4] = tanh (%u2)
      return %y, %u3
    }""")
    expected = parse("""
    graph g(%x:f32[2,3,4], %b:f32[4], %s:f32[3,1]) {
      %y:f32[2,3,4] = fused_elementwise[steps="add $1; relu; rsub $2; mul $2; clip -0.5 0.5"] (%x, %b, %s)
      %u1:f32[2,3,4] = sigmoid (%x)
      %u2:f32[2,3,4] = mul (%u1, %u1)
      %u3:f32[2,3,4] = tanh (%u2)
      return %y, %u3
    }""")
    after = fuse_elementwise(before)  # u1 * u1 reads its value twice: no chain through it
    assert_graph_equal(after, expected)
    same_outputs(before, after)


def test_fuse_elementwise_stops_at_shared_values_outputs_and_growing_shapes():
    from kiln.passes import fuse_elementwise

    g = parse("""
    graph g(%x:f32[3,4], %r:f32[2,3,4], %k:i32[3]) {
      %a:f32[3,4] = relu (%x)
      %b:f32[3,4] = sigmoid (%a)
      %c:f32[3,4] = tanh (%a)
      %d:f32[3,4] = relu (%c)
      %e:f32[2,3,4] = add (%d, %r)
      %i:i32[3] = add (%k, %k)
      %j:i32[3] = mul (%i, %k)
      return %b, %d, %e, %j
    }""")
    # a has two readers; d ends a chain (a graph output); e grows the shape; integers stay
    expected = parse("""
    graph g(%x:f32[3,4], %r:f32[2,3,4], %k:i32[3]) {
      %a:f32[3,4] = relu (%x)
      %b:f32[3,4] = sigmoid (%a)
      %d:f32[3,4] = fused_elementwise[steps="tanh; relu"] (%a)
      %e:f32[2,3,4] = add (%d, %r)
      %i:i32[3] = add (%k, %k)
      %j:i32[3] = mul (%i, %k)
      return %b, %d, %e, %j
    }""")
    assert_graph_equal(fuse_elementwise(g), expected)


def test_max_min_pow_between_blocked_convs_stay_blocked():
    """16-channel convs meeting in max, min and pow (Max of branches, a Pow in a head) keep
    NCHW16c: no reorder around them; against the reference."""
    import kiln
    from kiln.frontend import Builder

    b = Builder("meet", seed=0)
    x = b.input("x", (2, 3, 6, 6))
    h1, h2 = b.conv2d(x, 16, 3, pads=1, name="c1"), b.conv2d(x, 16, 1, name="c2")
    h = b.op("pow", [b.sigmoid(b.op("max", [h1, h2])), b.op("min", [h1, h2])])  # a positive base
    g = b.build(b.global_avgpool(b.conv2d(h, 16, 3, pads=1, name="c3")))
    exe = kiln.compile(g, target="cpu")
    for op in ("max", "min", "pow"):
        meet = [n for n in exe.graph.nodes if n.op == op or (n.op == "fused_elementwise" and op in n.attrs["steps"])]
        assert meet and all(n.outputs[0].type.layout == "NCHW16c" for n in meet), (op, exe.graph)
    assert sum(n.op == "reorder" for n in exe.graph.nodes) == 1, exe.graph  # the input's only
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)}
    np.testing.assert_allclose(exe.run(feeds)[0], kiln.interpret(g, feeds)[0], rtol=1e-4, atol=1e-5)


def test_fused_chains_run_on_cpu_in_both_layouts():
    """A chain after a 16-channel conv runs in its NCHW16c layout (one flat loop); one with a
    per-channel operand stays plain (broadcast loops); both against the reference."""
    import kiln
    from kiln.frontend import Builder

    b = Builder("chains", seed=0)
    x = b.input("x", (2, 3, 6, 6))
    h = b.conv2d(x, 16, 3, pads=1, name="conv")
    k = b.const("k", np.array(0.5, np.float32))
    blocked = b.relu(b.op("mul", [b.sigmoid(b.op("add", [h, k])), b.conv2d(x, 16, 1, name="conv2")]))
    plain = b.op("sub", [b.const("c", np.arange(16, dtype=np.float32).reshape(16, 1, 1)), b.tanh(blocked)])
    g = b.build(b.global_avgpool(plain), b.global_avgpool(blocked))
    exe = kiln.compile(g, target="cpu")
    fused = [n for n in exe.graph.nodes if n.op == "fused_elementwise"]
    assert [n.outputs[0].type.layout for n in fused] == ["NCHW16c", ""], exe.graph
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)}
    for a, r in zip(exe.run(feeds), kiln.interpret(g, feeds), strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps, why", [("relu;", "an empty step"), ("clip a b", "must be numbers"),
                                        ("add 1", r"names one input as \$k"), ("softmax", "not a chain op"),
                                        ("mul $3", "only 1 operand")])
def test_fused_elementwise_rejects_bad_steps_clearly(steps, why):
    from kiln.frontend import Builder
    from kiln.ir.errors import IRError

    b = Builder("bad")
    x, y = b.input("x", (2, 3)), b.input("y", (3,))
    with pytest.raises(IRError, match=why):
        b.op("fused_elementwise", [x, y], {"steps": steps})


def test_fold_conv_bn_declines_widening_operands_and_division_by_zero():
    from kiln.passes import fold_conv_bn

    rng = np.random.default_rng(6)
    g = parse("""
    graph g(%x:f32[1,2,4,4]) {
      %h:f32[1,1,4,4] = conv2d (%x, %w:f32[1,2,1,1] const)
      %a:f32[1,3,4,4] = mul (%h, %s:f32[1,3,1,1] const)
      %h2:f32[1,3,4,4] = conv2d (%x, %w2:f32[3,2,1,1] const)
      %b:f32[1,3,4,4] = div (%h2, %z:f32[3,1,1] const=[1,0,2])
      return %a, %b
    }""", params={"w": rng.standard_normal((1, 2, 1, 1)).astype(np.float32),
                  "w2": rng.standard_normal((3, 2, 1, 1)).astype(np.float32),
                  "s": rng.standard_normal((1, 3, 1, 1)).astype(np.float32)})
    assert_graph_equal(fold_conv_bn(g), g)


def test_fuse_epilogues_puts_activations_into_gemms():
    from kiln.passes import fuse_epilogues

    before = parse("""
    graph g(%x:f32[4,6]) {
      %h:f32[4,5] = gemm[trans_b=true] (%x, %w:f32[5,6] const, %c:f32[5] const)
      %r:f32[4,5] = relu (%h)
      %h2:f32[4,3] = gemm (%r, %w2:f32[5,3] const)
      %y:f32[4,3] = leaky_relu[alpha=0.25] (%h2)
      %z:f32[4,3] = add (%y, %y)
      return %z
    }""", seed=1)
    expected = parse("""
    graph g(%x:f32[4,6]) {
      %r:f32[4,5] = gemm[act=relu trans_b=true] (%x, %w:f32[5,6] const, %c:f32[5] const)
      %y:f32[4,3] = gemm[act=leaky_relu act_alpha=0.25] (%r, %w2:f32[5,3] const)
      %z:f32[4,3] = add (%y, %y)
      return %z
    }""", params=before.param_data())
    after = fuse_epilogues(before)
    assert_graph_equal(after, expected)
    same_outputs(before, after)


def test_subsample_strided_shares_one_copy_between_the_strided_1x1_convs():
    """Two 1x1/2 convs on one input (a ResNet's projection and first conv) read one subsampled
    copy; a 1x1 with stride (2, 1) gets its own; a strided 3x3 and a padded 1x1 are left alone.
    Odd sizes check that the copy has the conv's output rows (floor((5 - 1) / 2) + 1 = 3)."""
    from kiln.passes import subsample_strided

    before = parse("""
    graph g(%x:f32[1,2,5,7]) {
      %a:f32[1,3,3,4] = conv2d[stride=2] (%x, %wa:f32[3,2,1,1] const, %ba:f32[3] const)
      %b:f32[1,4,3,4] = conv2d[stride=2 act=relu] (%x, %wb:f32[4,2,1,1] const)
      %c:f32[1,3,3,7] = conv2d[stride=[2,1]] (%x, %wa)
      %d:f32[1,3,3,4] = conv2d[stride=2 pads=1] (%x, %wc:f32[3,2,3,3] const)
      %e:f32[1,3,4,5] = conv2d[stride=2 pads=1] (%x, %wa)
      return %a, %b, %c, %d, %e
    }""", seed=0)
    expected = parse("""
    graph g(%x:f32[1,2,5,7]) {
      %x.s2:f32[1,2,3,4] = maxpool2d[kernel=[1,1] stride=[2,2]] (%x)  # subsample x
      %a:f32[1,3,3,4] = conv2d (%x.s2, %wa:f32[3,2,1,1] const, %ba:f32[3] const)
      %b:f32[1,4,3,4] = conv2d[act=relu] (%x.s2, %wb:f32[4,2,1,1] const)
      %x.s2x1:f32[1,2,3,7] = maxpool2d[kernel=[1,1] stride=[2,1]] (%x)  # subsample x
      %c:f32[1,3,3,7] = conv2d (%x.s2x1, %wa)
      %d:f32[1,3,3,4] = conv2d[stride=2 pads=1] (%x, %wc:f32[3,2,3,3] const)
      %e:f32[1,3,4,5] = conv2d[stride=2 pads=1] (%x, %wa)
      return %a, %b, %c, %d, %e
    }""", params=before.param_data())
    after = subsample_strided(before)
    assert_graph_equal(after, expected)
    same_outputs(before, after)
    assert subsample_strided(after) is after  # nothing strided and 1x1 is left


def test_subsample_strided_runs_in_the_cpu_pipeline_on_a_resnet_block():
    """ResNet-50's downsampling block: after the default CPU pipeline no 1x1 conv is strided,
    its two strided 1x1 convs read one copy, and the compiled block matches the reference."""
    import kiln

    b = kiln.Builder("down", seed=7)
    x = b.relu(b.conv2d(b.input("input", (2, 3, 9, 9)), 32, kernel=3, pads=1, name="stem"))
    short = b.conv2d(x, 64, kernel=1, stride=2, name="proj")
    h = b.relu(b.conv2d(x, 16, kernel=1, stride=2, name="conv1"))
    h = b.relu(b.conv2d(h, 16, kernel=3, pads=1, name="conv2"))
    g = b.build(b.relu(b.add(b.conv2d(h, 64, kernel=1, name="conv3"), short)))
    exe = kiln.compile(g, target="cpu")
    convs = [n for n in exe.graph.nodes if n.op == "conv2d"]
    assert all(n.attrs["stride"] == (1, 1) for n in convs if exe.graph.type_of(n.inputs[1]).shape[2:] == (1, 1))
    subs = [n for n in exe.graph.nodes if n.op == "maxpool2d"]
    # both read the copy: one directly, one (the graph output, in NCHW) through its reorder
    assert len(subs) == 1 and sum(n.inputs[0].startswith(subs[0].outputs[0].name) for n in convs) == 2
    prog = exe.compiled.program
    assert any("a strided copy" in prog.kernels[launch.kernel].note for launch in prog.launches)
    record = next(r for r in exe.passes if r.name == "subsample_strided")
    assert record.summary == "2 strided 1x1 conv(s) read 1 subsampled input(s)", record.summary
    rng = np.random.default_rng(0)
    f = {"input": rng.standard_normal((2, 3, 9, 9)).astype(np.float32)}
    np.testing.assert_allclose(exe.run(f)[0], interpret(g, f)[0], rtol=1e-4, atol=1e-4)


def test_winograd_convs_marks_blocked_3x3_stride_1_convs():
    """Blocked 3x3 stride-1 convs with enough output tiles get algo=winograd; a strided one, a
    plain-layout one, a grouped one and one of 2x2 tiles (under MIN_TILES) are left alone."""
    from kiln.passes import winograd_convs

    before = parse("""
    graph g(%x:f32[2,16,8,8]{NCHW16c}) {
      %a:f32[2,16,8,8]{NCHW16c} = conv2d[pads=1 act=relu] (%x, %w:f32[16,16,3,3] const, %b:f32[16] const)
      %c:f32[2,16,4,4]{NCHW16c} = conv2d[pads=1 stride=2] (%a, %w)
      %d:f32[2,16,2,2]{NCHW16c} = conv2d (%c, %w)
      %e:f32[2,16,8,8]{NCHW16c} = conv2d[pads=1 groups=4] (%a, %wg:f32[16,4,3,3] const)
      %p:f32[2,16,8,8] = reorder (%a)
      %f:f32[2,16,8,8] = conv2d[pads=1] (%p, %w)
      return %a, %c, %d, %e, %f
    }""", seed=0)
    expected = parse("""
    graph g(%x:f32[2,16,8,8]{NCHW16c}) {
      %a:f32[2,16,8,8]{NCHW16c} = conv2d[pads=1 act=relu algo=winograd] (%x, %w:f32[16,16,3,3] const, %b:f32[16] const)
      %c:f32[2,16,4,4]{NCHW16c} = conv2d[pads=1 stride=2] (%a, %w)
      %d:f32[2,16,2,2]{NCHW16c} = conv2d (%c, %w)
      %e:f32[2,16,8,8]{NCHW16c} = conv2d[pads=1 groups=4] (%a, %wg:f32[16,4,3,3] const)
      %p:f32[2,16,8,8] = reorder (%a)
      %f:f32[2,16,8,8] = conv2d[pads=1] (%p, %w)
      return %a, %c, %d, %e, %f
    }""", params=before.param_data())
    after = winograd_convs(before)
    assert_graph_equal(after, expected)
    same_outputs(before, after)
    assert winograd_convs(after) is after  # nothing left to mark


def test_winograd_needs_a_3x3_stride_1_conv():
    g = parse("""
    graph g(%x:f32[1,16,8,8]) {
      %y:f32[1,16,4,4] = conv2d[pads=1 stride=2 algo=winograd] (%x, %w:f32[16,16,3,3] const)
      return %y
    }""", seed=0)
    with pytest.raises(Exception, match="algo=winograd needs a 3x3 stride-1 undilated ungrouped conv"):
        infer_shapes(g)


def test_winograd_convs_in_the_cpu_pipeline_on_resnet18():
    """ResNet-18 at batch 1: every blocked 3x3 stride-1 conv with at least 32 output tiles is
    marked (layers 1-3: 56x56, 28x28 and 14x14 images), the 7x7 ones (16 tiles) are not, and the
    summary counts both."""
    import kiln
    from kiln.passes import PIPELINES, run_passes

    g, records = run_passes(kiln.models.resnet18(batch=1), PIPELINES[("cpu", "inference")])
    threes = [n for n in g.nodes if n.op == "conv2d" and g.type_of(n.inputs[1]).shape[2:] == (3, 3)
              and n.attrs["stride"] == (1, 1)]
    marked = [n for n in threes if n.attrs["algo"] == "winograd"]
    assert all(n.outputs[0].type.layout == "NCHW16c" for n in threes)
    assert sorted({n.outputs[0].type.shape[2] for n in marked}) == [14, 28, 56]
    assert {n.outputs[0].type.shape[2] for n in threes if n not in marked} == {7}
    assert len(marked) == 10 and len(threes) == 13
    record = next(r for r in records if r.name == "winograd_convs")
    assert record.summary == "10 conv(s) as winograd F(2x2,3x3); 3 declined: under 32 output tiles"



def test_recognise_activations():
    from kiln.passes import recognise_activations

    before = parse("""
    graph g(%x:f32[2,3]) {
      %s:f32[2,3] = sigmoid (%x)
      %a:f32[2,3] = mul (%s, %x)
      %h:f32[2,3] = hard_sigmoid[alpha=0.16666667 beta=0.5] (%a)
      %b:f32[2,3] = mul (%a, %h)
      %sp:f32[2,3] = softplus (%b)
      %t:f32[2,3] = tanh (%sp)
      %c:f32[2,3] = mul (%b, %t)
      %d:f32[2,3] = div (%c, %r2:f32[] const=[1.4142135])
      %e:f32[2,3] = erf (%d)
      %e1:f32[2,3] = add (%one:f32[] const=[1.0], %e)
      %m:f32[2,3] = mul (%c, %e1)
      %y:f32[2,3] = mul (%m, %half:f32[] const=[0.5])
      %keep:f32[2,3] = sigmoid (%y)
      %z:f32[2,3] = mul (%y, %keep)
      %w:f32[2,3] = add (%z, %keep)
      return %w
    }""")
    expected = parse("""
    graph g(%x:f32[2,3]) {
      %a:f32[2,3] = silu (%x)
      %b:f32[2,3] = hard_swish (%a)
      %c:f32[2,3] = mish (%b)
      %y:f32[2,3] = gelu (%c)
      %keep:f32[2,3] = sigmoid (%y)
      %z:f32[2,3] = mul (%y, %keep)
      %w:f32[2,3] = add (%z, %keep)
      return %w
    }""")
    after = recognise_activations(before)  # %keep has a second reader: that silu stays two ops
    assert_graph_equal(after, expected)
    same_outputs(before, after)
