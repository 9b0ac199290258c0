"""The CPU target end to end: blocked NCHW16c convolutions and the kernels around them, the
passes that put them there (fold_conv_bn, select_layout), the kernel cache, and whole zoo models,
each against the reference interpreter."""

import re
import subprocess
import sys

import kiln
import numpy as np
import pytest
from kiln.passes import fold_conv_bn, freeze_params, select_layout

RTOL, ATOL = 1e-4, 1e-4  # float32 sums over up to a few thousand products, reordered


def feeds_for(g, seed=0):
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in g.inputs}


def check_cpu(g, seed=0, **kw):
    exe = kiln.compile(g, target="cpu", **kw)
    f = feeds_for(g, seed)
    for got, want in zip(exe.run(f), kiln.interpret(g, f), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * max(1.0, float(np.abs(want).max())))
    return exe


def notes(exe):
    p = exe.compiled.program
    return [p.kernels[launch.kernel].note for launch in p.launches]


@pytest.mark.parametrize("cin, cout, k, stride, pads, dil, hw", [
    (3, 16, 3, 1, 1, 1, (9, 11)),        # plain first-layer input
    (16, 32, 3, 2, 1, 1, (9, 11)),       # stride 2, odd sizes
    (32, 64, 1, 1, 0, 1, (7, 7)),        # 1x1 -> 4 output blocks per job
    (16, 16, 3, 1, (0, 2, 1, 0), 2, (10, 9)),  # asymmetric pads, dilation
    (16, 48, 5, 3, 2, 1, (12, 13)),      # stride larger than the pads, 3 output blocks
    (3, 16, 7, 2, 3, 1, (17, 15)),       # a ResNet stem on an odd image
    (1024, 64, 1, 1, 0, 1, (8, 12)),     # 1x1 over flat rows of 48 pixels, input blocks in chunks of 32
    (2048, 32, 1, 2, 0, 1, (5, 5)),      # strided 1x1 (rows stay rows), chunks of 64, 2 output blocks
    (256, 64, 3, 1, 1, 1, (5, 7)),       # 3x3 whose 4 output blocks' weights overflow a chunk: chunks of 2
])
def test_blocked_conv_matches_reference(cin, cout, k, stride, pads, dil, hw):
    b = kiln.Builder("conv", seed=1)
    x = b.input("input", (2, cin, *hw))
    if cin % 16 == 0:
        x = b.relu(b.conv2d(x, cin, kernel=1, name="pre"))  # makes the tested conv's input blocked
    y = b.conv2d(x, cout, kernel=k, stride=stride, pads=pads, dilation=dil, name="conv")
    exe = check_cpu(b.build(b.sigmoid(b.relu(y))))  # relu fuses into the conv; sigmoid reads plain
    assert any(n.startswith("direct NCHW16c") for n in notes(exe))


@pytest.mark.parametrize("cin, cout, pads, hw, residual", [
    (16, 16, 1, (9, 11), True),           # 1 output block, odd sizes: the last tiles half outside
    (32, 48, 1, (7, 7), True),            # 3 output blocks (T = 1), fused residual add
    (64, 32, 0, (12, 10), False),         # no padding, 2 output blocks
    (16, 64, (0, 2, 1, 0), (8, 9), False),  # asymmetric pads (7x9 outputs), 4 output blocks
    (256, 64, 1, (8, 8), True),           # input blocks in chunks (8 of 2)
])
def test_winograd_conv_matches_reference(cin, cout, pads, hw, residual):
    b = kiln.Builder("wino", seed=2)
    x = b.relu(b.conv2d(b.input("input", (2, cin, *hw)), cin, kernel=1, name="pre"))  # blocked input
    y = b.conv2d(x, cout, kernel=3, pads=pads, name="conv")
    if residual:
        y = b.add(y, b.relu(b.conv2d(x, cout, kernel=1, name="skip")))
    exe = check_cpu(b.build(b.sigmoid(b.relu(y))))
    note = next(n for n in notes(exe) if n.startswith("winograd"))
    assert ("residual" in note) == residual, note
    if cin == 256:
        assert "input blocks in chunks" in note, note


def test_chunked_flat_1x1_conv_with_fused_residual():
    """A bottleneck's last 1x1 conv: pixels as flat rows, input blocks in chunks, the residual
    add and relu applied once, after the last chunk."""
    b = kiln.Builder("bottleneck", seed=3)
    x = b.input("input", (2, 1024, 7, 7))
    h = b.relu(b.conv2d(x, 1024, kernel=1, name="pre"))
    y = b.relu(b.add(b.conv2d(h, 1024, kernel=1, name="last"), h))
    exe = check_cpu(b.build(b.sigmoid(y)))
    note = next(n for n in notes(exe) if "residual" in n)
    assert "pixels as rows" in note and "input blocks in chunks" in note, note


@pytest.mark.parametrize("hw, want", [(49, 49), (3136, 196), (784, 196), (96, 48), (35, 35), (97, 97)])
def test_flat_row_width(hw, want):
    """The flat row: a divisor of the pixel count in [48, 256] whose strips of up to 6 waste
    least, the narrower of equals (or the whole image when none divides it)."""
    from kiln.backends.numba_cpu.kernels.conv_blocked import flat_row
    assert flat_row(hw, 6) == want


@pytest.mark.parametrize("pool", ["max", "avg_pad", "avg_nopad", "global_avg", "global_max", "bn"])
def test_blocked_neighbours_match_reference(pool):
    b = kiln.Builder("pool", seed=2)
    x = b.input("input", (2, 3, 11, 10))
    y = b.conv2d(x, 32, kernel=3, pads=1, name="conv")
    if pool == "max":
        y = b.maxpool2d(y, 3, stride=2, pads=1, ceil_mode=True)
    elif pool.startswith("avg"):
        y = b.avgpool2d(y, 3, stride=2, pads=1, count_include_pad=pool == "avg_pad")
    elif pool == "global_avg":
        y = b.global_avgpool(y)
    elif pool == "global_max":
        y = b.op("global_maxpool", [y])
    else:
        y = b.batch_norm(y, name="bn")
    g = b.build(b.tanh(y))  # an activation that stays a node: a blocked reader of y
    if pool == "bn":  # random statistics so the norm does something
        rng = np.random.default_rng(3)
        params = [p if not p.name.startswith("bn.") else
                  kiln.ir.Param(p.value, (rng.random(p.data.shape) + 0.5).astype(np.float32), p.role)
                  for p in g.params]
        g = g.replace(params=tuple(params))
    exe = check_cpu(g)
    assert sum("NCHW16c" in n for n in notes(exe)) >= 2


def test_residual_network_runs_blocked_end_to_end():
    g = kiln.models.resnet20(batch=2)
    exe = check_cpu(g)
    ops = [n.op for n in exe.graph.nodes]
    assert "batch_norm" not in ops  # folded
    assert ops.count("reorder") <= 2  # only around the plain image input and the flatten


def test_fold_conv_bn_effect_and_decline():
    g = freeze_params(kiln.models.resnet20(batch=1))
    folded = fold_conv_bn(g)
    assert sum(n.op == "batch_norm" for n in folded.nodes) == 0
    f = feeds_for(g)
    np.testing.assert_allclose(kiln.interpret(folded, f)[0], kiln.interpret(g, f)[0], rtol=1e-4, atol=1e-4)
    b = kiln.Builder("shared", seed=0)
    x = b.input("input", (1, 16, 4, 4))
    c = b.conv2d(x, 16, kernel=1, name="conv")
    g2 = freeze_params(b.build(b.batch_norm(c, name="bn"), c))  # the conv output is also an output
    assert fold_conv_bn(g2) is g2


def test_select_layout_keeps_graph_io_plain():
    g = select_layout(fold_conv_bn(freeze_params(kiln.models.resnet20(batch=1))))
    assert all(v.type.layout == "" for v in g.inputs)
    assert all(g.type_of(o).layout == "" for o in g.outputs)
    blocked = [v for n in g.nodes for v in n.outputs if v.type.layout == "NCHW16c"]
    assert len(blocked) > 20
    kiln.verify(g)


def _layouts(g):
    return [g.type_of(n.outputs[0].name).layout or "NCHW" for n in g.nodes if n.op == "conv2d"]


def test_select_layout_prices_each_conv_with_the_cost_model():
    """Rates decide: blocked convs when the blocked kernel is faster, plain ones when the plain
    kernel is, and plain when blocking would win on the kernel but lose it to the reorders."""
    from kiln.passes.cost_model import CostModel
    from kiln.passes.select_layout import select_layout_with

    def model(blocked, plain, reorder):
        rates = {f"{k}/{lay}": r for k in ("conv3x3", "conv1x1") for lay, r in (("NCHW16c", blocked), ("NCHW", plain))}
        return CostModel({**rates, "reorder": reorder}, "test")

    g = fold_conv_bn(freeze_params(kiln.models.resnet20(batch=1)))
    assert set(_layouts(select_layout_with(model(200, 100, 20))(g))) == {"NCHW16c"}
    assert set(_layouts(select_layout_with(model(100, 200, 20))(g))) == {"NCHW"}
    b = kiln.Builder("one", seed=0)  # one conv between plain ops: blocking costs two reorders
    y = b.conv2d(b.input("x", (1, 16, 8, 8)), 16, 3, pads=1, name="conv")
    one = freeze_params(b.build(b.op("softmax", [b.flatten(y)])))
    assert _layouts(select_layout_with(model(110, 100, 1))(one)) == ["NCHW"]
    assert _layouts(select_layout_with(model(110, 100, 1e6))(one)) == ["NCHW16c"]
    assert _layouts(select_layout_with(None)(one)) == ["NCHW16c"]  # by rule


def test_cost_model_is_measured_once_then_read_from_its_cache(tmp_path, monkeypatch):
    from kiln import costs

    monkeypatch.delenv("KILN_COST_MODEL", raising=False)  # conftest's rule: this test measures
    monkeypatch.setattr(costs, "cache_file", lambda: tmp_path / "cost_model.json")
    monkeypatch.setattr(costs, "_memo", {})
    first = costs.machine_model()
    assert first.source.startswith("measured") and (tmp_path / "cost_model.json").exists()
    assert set(first.rates) == {"conv3x3/NCHW16c", "conv3x3/NCHW", "conv1x1/NCHW16c", "conv1x1/NCHW", "reorder"}
    assert all(r > 0 for r in first.rates.values())
    monkeypatch.setattr(costs, "_memo", {})
    again = costs.machine_model()
    assert again.source.startswith("cached") and again.rates == first.rates
    # the compile's dump says which model priced the layouts
    exe = kiln.compile(kiln.models.resnet20(batch=1), target="cpu")
    summary = next(r.summary for r in exe.passes if r.name == "select_layout")
    assert "cost model (cached from" in summary and re.search(r"21 conv\(s\) priced, \d+ plain by cost", summary)
    monkeypatch.setenv("KILN_COST_MODEL", "rules")
    assert costs.machine_model() is None


def test_cost_model_survives_a_bad_cache_and_a_failed_measurement(tmp_path, monkeypatch):
    import json

    from kiln import costs

    monkeypatch.delenv("KILN_COST_MODEL", raising=False)
    path = tmp_path / "cost_model.json"
    path.write_text(json.dumps({"machine": costs.machine(), "measured": "then", "rates": {"reorder": 1.0}}))
    monkeypatch.setattr(costs, "cache_file", lambda: path)
    monkeypatch.setattr(costs, "_memo", {})

    def broken():
        raise RuntimeError("no timer")

    monkeypatch.setattr(costs, "calibrate", broken)
    with pytest.warns(RuntimeWarning, match="no timer.*decides by rule"):
        assert costs.machine_model() is None  # the incomplete file is not trusted; measuring failed
    assert costs.machine_model() is None  # and is not retried in this process


def test_zoo_models_on_cpu():
    for g in (kiln.models.lenet5(batch=3), kiln.models.mobilenet_v1(batch=1, image_size=32),
              kiln.models.gcn_karate()):
        check_cpu(g)


def test_second_process_compiles_nothing(tmp_path):
    """...and runs what it loads: a model of job kernels only, loaded whole from the cache into
    a process that compiles nothing (so no prange of its own starts numba's threads)."""
    code = ("import kiln, numpy as np\n"
            "b = kiln.Builder('jobs', seed=4)\n"
            "y = b.relu(b.conv2d(b.input('input', (2, 16, 6, 6)), 16, kernel=3, pads=1, name='conv'))\n"
            "g = b.build(b.linear(b.flatten(y), 5, name='fc'))\n"
            "exe = kiln.compile(g, target='cpu')\n"
            "f = {'input': np.random.default_rng(0).standard_normal((2, 16, 6, 6)).astype(np.float32)}\n"
            "err = float(np.abs(exe.run(f)[0] - kiln.interpret(g, f)[0]).max())\n"
            "print(err, exe.compiled.compiled_kernels)")
    env = {"KILN_CACHE_DIR": str(tmp_path)}
    import os

    env = {k: v for k, v in {**os.environ, **env}.items() if k != "NUMBA_ENABLE_CUDASIM"}  # the simulator
    # starts numba's threads on import, which would hide a launcher that does not
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(first.stdout.split()[-1]) > 0
    assert int(second.stdout.split()[-1]) == 0
    assert float(first.stdout.split()[-2]) < 1e-4 and float(second.stdout.split()[-2]) < 1e-4


def test_profile_reports_every_launch():
    g = kiln.models.lenet5(batch=2)
    exe = kiln.compile(g, target="cpu")
    rows = exe.profile(feeds_for(g), repeat=2)
    assert len(rows) == len(exe.compiled.program.launches)
    assert all(r["seconds"] > 0 for r in rows)
    assert sum(r["flops"] for r in rows) > 0


def test_cpu_inputs_checked_and_outputs_fresh():
    g = kiln.models.lenet5(batch=2)
    exe = kiln.compile(g, target="cpu")
    f = feeds_for(g)
    keep = f["input"].copy()
    out = exe.run(f)[0]
    out[...] = 7
    np.testing.assert_array_equal(f["input"], keep)
    assert not np.all(exe.run(f)[0] == 7)
    with pytest.raises(kiln.errors.InputError, match="expected shape"):
        exe.run({"input": np.zeros((1, 1, 28, 28), np.float32)})


def _independent_liveness(g):
    """(start, end) node index of every planned value, recomputed here from the graph alone:
    produced at its node, alive until the last node reading it or any view of it."""
    views = {"reshape", "flatten", "identity", "dropout"}
    root = {}
    for n in g.nodes:
        for v in n.outputs:
            root[v.name] = root.get(n.inputs[0], n.inputs[0]) if n.op in views and n.inputs else v.name
    span = {}
    for i, n in enumerate(g.nodes):
        for v in n.outputs:
            span.setdefault(v.name, [i, i])
        for x in n.inputs:
            if x in span:
                span[x][1] = max(span[x][1], i)
    return span


def test_reuse_buffers_never_overlaps_live_values_and_meets_the_targets():
    from kiln.passes import PIPELINES, run_passes

    g, records = run_passes(kiln.models.resnet50(batch=1), PIPELINES[("cpu", "inference")])
    assert records[-1].name == "reuse_buffers"
    span = _independent_liveness(g)
    planned = [(v.name, v.buffer) for n in g.nodes for v in n.outputs if v.buffer is not None]
    assert len(planned) > 50
    views = {v.name for n in g.nodes if n.op in {"reshape", "flatten"} for v in n.outputs}
    for i, (a, ba) in enumerate(planned):
        for b, bb in planned[i + 1:]:
            if a in views or b in views or ba.arena != bb.arena:
                continue
            shares = ba.offset < bb.offset + bb.nbytes and bb.offset < ba.offset + ba.nbytes
            live_together = span[a][0] < span[b][1] and span[b][0] < span[a][1]
            assert not (shares and live_together), f"{a} and {b} overlap in time and bytes"
    # the lower bound, computed independently: the most bytes live at any node
    bound = max(sum(g.type_of(v).nbytes for v, _ in planned if span[v][0] <= t <= span[v][1] and v not in views)
                for t in range(len(g.nodes)))
    peak = max(b.offset + b.nbytes for _, b in planned)
    naive = sum(g.type_of(v).nbytes for v, _ in planned if v not in views)
    assert peak <= 1.2 * bound
    assert peak <= 0.4 * naive


def test_in_place_elementwise_is_safe():
    b = kiln.Builder("inplace", seed=4)
    x = b.input("input", (1, 8, 6, 6))
    c = b.conv2d(x, 8, kernel=3, pads=1, name="c1")
    s = b.sigmoid(c)           # c dies here: sigmoid may write over it
    t = b.tanh(s)              # s is read again below: tanh must not write over it
    y = b.add(t, s)
    g = b.build(b.conv2d(y, 8, kernel=1, name="c2"))
    exe = check_cpu(g, skip=["fuse_elementwise"])  # which would make sigmoid, tanh, add one kernel
    slots = {v.name: v.buffer for n in exe.graph.nodes for v in n.outputs if v.buffer is not None}
    assert slots["tanh"].offset != slots["sigmoid"].offset


@pytest.mark.parametrize("cin", [64, 1024])  # the last conv's weights in one piece; in chunks (of 32 blocks)
def test_blocked_conv_writes_over_its_residual(cin):
    """A bottleneck's last conv takes the bytes of the skip tensor it adds, which dies there;
    the residual is read before the output is first written, with or without input chunks.
    Where the skip tensor is also the conv's input, it keeps its own bytes."""
    b = kiln.Builder("over_residual", seed=5)
    x = b.input("input", (2, 32, 7, 7))
    skip = b.relu(b.conv2d(x, 256, kernel=1, name="skip"))
    h = b.relu(b.conv2d(x, cin, kernel=1, name="reduce"))
    y = b.relu(b.add(b.conv2d(h, 256, kernel=1, name="last"), skip))
    z = b.relu(b.add(b.conv2d(y, 256, kernel=1, name="again"), y))  # y is both input and residual
    exe = check_cpu(b.build(b.sigmoid(z)))
    slots = {v.name: v.buffer for n in exe.graph.nodes for v in n.outputs if v.buffer is not None}
    fused = [n for n in exe.graph.nodes if n.op == "conv2d" and n.attrs["residual"]]
    assert len(fused) == 2
    last, again = fused
    assert last.inputs[3] == skip.name and slots[last.outputs[0].name].offset == slots[skip.name].offset
    assert again.inputs[0] == again.inputs[3] == last.outputs[0].name
    assert slots[again.outputs[0].name].offset != slots[last.outputs[0].name].offset
    first = next(n for n in notes(exe) if "residual" in n)
    assert ("input blocks in chunks" in first) == (cin == 1024), first


def test_known_failure_modes_of_other_compilers():
    """Each graph once broke some compiler's buffer planner or fuser; here they must match the
    reference on the CPU target."""
    b = kiln.Builder("views", seed=6)
    x = b.input("input", (2, 16, 4, 4))
    r = b.relu(b.conv2d(x, 16, kernel=1, name="c"))
    flat = b.reshape(r, (2, 256))          # a view of r ...
    other = b.sigmoid(b.conv2d(r, 16, kernel=3, pads=1, name="d"))  # ... while r's bytes could be reused
    both = b.concat([flat, b.flatten(r), b.reshape(other, (2, 256))], axis=1)  # two views of r in one concat
    check_cpu(b.build(both))

    b = kiln.Builder("grouped", seed=7)
    x = b.input("input", (1, 32, 6, 6))
    skip = b.relu(b.conv2d(x, 32, kernel=1, name="pre"))
    y = b.conv2d(skip, 32, kernel=3, pads=1, groups=4, name="grouped")  # grouped conv, then a residual add
    check_cpu(b.build(b.relu(b.add(y, skip))))

    b = kiln.Builder("bn_out", seed=8)
    x = b.input("input", (1, 16, 5, 5))
    c = b.conv2d(x, 16, kernel=3, pads=1, name="conv")
    exe = check_cpu(b.build(b.batch_norm(c, name="bn"), c))  # the conv output is also a graph output
    assert any(n.op == "batch_norm" for n in exe.graph.nodes)


def test_leaky_relu_epilogue_on_every_conv_kernel():
    """A leaky relu fuses into each conv kernel (blocked, blocked depthwise, flat grid, direct
    depthwise, im2col for float64) and matches the reference; a slope above 1 stays a node."""
    b = kiln.Builder("leaky", seed=5)
    x = b.input("input", (2, 3, 9, 9))

    def leaky(t, alpha=0.2):
        return b.leaky_relu(t, alpha)

    blocked = leaky(b.conv2d(x, 32, kernel=3, pads=1, name="blocked"))
    dw = leaky(b.conv2d(blocked, 32, kernel=3, pads=1, groups=32, name="dw"))
    flat = leaky(b.conv2d(x, 6, kernel=3, pads=1, name="flat"), 0.5)
    direct = leaky(b.conv2d(flat, 6, kernel=3, pads=1, groups=6, name="direct"))
    steep = leaky(b.conv2d(x, 4, kernel=1, name="steep"), 1.5)
    g = b.build(b.global_avgpool(dw), direct, steep)
    exe = check_cpu(g)
    left = [n.name for n in exe.graph.nodes if n.op == "leaky_relu"]
    assert left == [next(n.name for n in g.nodes if n.op == "leaky_relu" and n.attrs["alpha"] == 1.5)], left
    assert any("fused leaky_relu" in note for note in notes(exe)), notes(exe)
    b = kiln.Builder("leaky64", seed=5, dtype="f64")
    y = b.leaky_relu(b.conv2d(b.input("input", (1, 2, 6, 6), "f64"), 3, kernel=3, stride=2, name="im2col"), 0.1)
    exe = check_cpu(b.build(y))
    assert [n.op for n in exe.graph.nodes] == ["conv2d"] and notes(exe)[0].startswith("gemm"), notes(exe)


def test_sigmoid_epilogue_on_every_conv_kernel_and_gemm():
    """A sigmoid fuses into each conv kernel and into a linear layer, and matches the reference,
    saturating inputs included (a bias of +-40 drives exp(-v) to 0 and to inf)."""
    b = kiln.Builder("sig", seed=6)
    x = b.input("input", (2, 3, 9, 9))
    w = np.random.default_rng(0).standard_normal((32, 3, 3, 3)).astype(np.float32)
    saturating = np.repeat(np.float32([40.0, -40.0]), 16)
    blocked = b.sigmoid(b.op("conv2d", [x, b.param("w", w), b.param("b", saturating)], {"pads": (1, 1, 1, 1)}))
    blocked = b.sigmoid(b.conv2d(blocked, 32, kernel=3, pads=1, name="blocked"))
    dw = b.sigmoid(b.conv2d(blocked, 32, kernel=3, pads=1, groups=32, name="dw"))
    flat = b.sigmoid(b.conv2d(x, 6, kernel=3, pads=1, name="flat"))
    direct = b.sigmoid(b.conv2d(flat, 6, kernel=3, pads=1, groups=6, name="direct"))
    fc = b.sigmoid(b.linear(b.flatten(b.global_avgpool(dw)), 5, name="fc"))
    exe = check_cpu(b.build(fc, direct, blocked))
    assert not [n.name for n in exe.graph.nodes if n.op == "sigmoid"]
    assert [n.attrs["act"] for n in exe.graph.nodes if n.op in ("conv2d", "gemm")] == ["sigmoid"] * 6
    assert any(n.startswith("direct NCHW16c") and n.endswith("fused sigmoid") for n in notes(exe)), notes(exe)


def test_job_kernels_run_through_the_shared_launcher():
    """Convs and gemms are job kernels: compiled serially (no prange of their own), called by
    address from the driver, which links none of them. The graph input (read in place by the
    first conv) and output (written by the gemm) change every call: the job table must follow."""
    b = kiln.Builder("jobs", seed=4)
    x = b.input("input", (2, 16, 6, 6))
    y = b.relu(b.conv2d(x, 16, kernel=3, pads=1, name="conv"))
    g = b.build(b.linear(b.flatten(y), 5, name="fc"))
    exe = kiln.compile(g, target="cpu")
    c = exe.compiled
    jobs = [k for k in c.program.kernels.values() if k.jobs]
    assert {k.name.split("_")[1] for k in jobs} == {"conv2d", "gemm"}, [k.note for k in jobs]
    for k in jobs:
        assert "@cfunc(" in c.sources[k.name] and "prange(" not in c.sources[k.name]
    driver = next(src for name, src in c.sources.items() if name.startswith("kiln_run_"))
    assert all(f"import {k.name}" not in driver for k in jobs) and "launch_parallel(job_fns[0]" in driver
    rng = np.random.default_rng(0)
    outs = []
    for _ in range(3):
        f = {"input": rng.standard_normal((2, 16, 6, 6)).astype(np.float32)}
        got = exe.run(f)[0]
        np.testing.assert_allclose(got, kiln.interpret(g, f)[0], rtol=RTOL, atol=ATOL)
        outs.append(got)
    assert not np.shares_memory(outs[0], outs[1])


@pytest.mark.parametrize("skip", [(), ("winograd_convs",)])
def test_shape_generic_kernels_shared_across_layer_sizes(skip):
    """Blocked convs (1x1 over flat rows, 3x3 direct and Winograd, depthwise with a residual)
    and pools at two image sizes whose widths leave a masked last strip (15x19, then 7x9): the
    layers of one kind and algorithm share a kernel, and every output matches the reference."""
    b = kiln.Builder("generic", seed=7)
    h = b.input("input", (2, 32, 15, 19))  # rows of 19, then 9: strips of 5 and a masked one
    for k in range(2):  # same geometry, different input channels (32, then 64)
        h = b.relu(b.conv2d(h, 64, kernel=1, name=f"pw{k}"))
    outs = []
    for size in range(2):
        d = b.relu(b.add(b.conv2d(h, 64, kernel=3, pads=1, groups=64, name=f"dw{size}"), h))
        h = b.relu(b.conv2d(d, 64, kernel=3, pads=1, name=f"c3_{size}"))
        h = b.relu(b.conv2d(h, 64, kernel=1, name=f"pw_after{size}"))
        outs.append(b.global_avgpool(h))
        h = b.maxpool2d(h, 2, stride=2, name=f"pool{size}")
    exe = check_cpu(b.build(*outs, b.global_avgpool(h)), skip=skip)
    p = exe.compiled.program
    for prefix in ("dw", "c3_", "pw_after", "pool"):  # one layer at each size
        kinds: dict[str, set[str]] = {}
        for k in p.kernels.values():
            if any(f"{prefix}0" in n or f"{prefix}1" in n for n in k.nodes):
                kinds.setdefault(k.note.split(",")[0], set()).add(k.name)
        assert kinds and all(len(names) == 1 for names in kinds.values()), (prefix, kinds)
    if skip:
        assert not any(k.note.startswith("winograd") for k in p.kernels.values())
