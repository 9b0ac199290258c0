"""kiln.compile / Executable: the pipeline, the dumps, input checking, clear errors."""

import re

import kiln
import numpy as np
import pytest
from kiln.errors import InputError, KilnError, PassError, UnsupportedError
from kiln.frontend import Builder
from kiln.ir import Graph, parse
from kiln.passes import Pass, run_passes


def tiny() -> Graph:
    b = Builder("tiny", seed=0)
    x = b.input("input", (2, 3, 8, 8))
    y = b.relu(b.batch_norm(b.conv2d(x, 4, kernel=3, pads=1, bias=False, name="conv"), name="bn"))
    y = b.dropout(y, 0.2)
    z = b.linear(b.flatten(b.global_avgpool(y)), 5, name="fc")
    return b.build(z)


def feeds(g, seed=0):
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in g.inputs}


def test_compile_runs_the_pipeline_and_matches_the_interpreter():
    g = tiny()
    exe = kiln.compile(g)
    f = feeds(g)
    (y,) = exe.run(f)
    (ref,) = kiln.interpret(g, f)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    assert [n.op for n in exe.graph.nodes].count("dropout") == 0
    assert next(r.name for r in exe.passes) == "import"
    (y2,) = exe(f["input"])
    np.testing.assert_array_equal(y, y2)


def test_users_arrays_are_not_modified_and_outputs_are_fresh():
    g = tiny()
    exe = kiln.compile(g)
    f = feeds(g)
    before = f["input"].copy()
    out1 = exe.run(f)[0]
    out1[...] = 0
    np.testing.assert_array_equal(f["input"], before)
    assert np.abs(exe.run(f)[0]).sum() > 0


@pytest.mark.parametrize("bad, message", [
    ({}, r"missing input\(s\) \['input'\]"),
    ({"input": np.zeros((2, 3, 8, 8), np.float32), "extra": np.zeros(1)}, r"unknown input\(s\) \['extra'\]"),
    ({"input": np.zeros((2, 3, 8, 8), np.float64)}, r"input 'input': expected dtype float32 .*given float64"),
    ({"input": np.zeros((1, 3, 8, 8), np.float32)}, r"input 'input': expected shape \[2, 3, 8, 8\], given \[1, 3, 8, 8\]"),
    ({"input": [[1.0]]}, r"expected a numpy array"),
])
def test_bad_inputs_name_the_input(bad, message):
    exe = kiln.compile(tiny())
    with pytest.raises(InputError, match=message):
        exe.run(bad)


def test_positional_call_checks_count():
    exe = kiln.compile(tiny())
    with pytest.raises(InputError, match=r"expected 1 positional input\(s\) \['input'\], given 2"):
        exe(np.zeros(1), np.zeros(1))


def test_unbuilt_targets_and_modes_say_what_exists():
    with pytest.raises(UnsupportedError, match=r"unknown target 'tpu'; targets that exist: reference, cpu, cuda"):
        kiln.compile(tiny(), target="tpu")
    with pytest.raises(UnsupportedError, match=r"mode 'fit' is not supported; modes that exist: inference, train"):
        kiln.compile(tiny(), mode="fit")
    with pytest.raises(KilnError, match="zoo:"):
        kiln.load_model("resnet18")


def test_dump_dir_has_one_file_per_pass(tmp_path):
    exe = kiln.compile(tiny(), dump_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.glob("*.ir"))
    expected = [f"{r.index:02d}-{r.name}.ir" for r in exe.passes]
    assert files == expected and len(files) == len(kiln.passes.PIPELINES[("reference", "inference")]) + 1
    index = (tmp_path / "index.md").read_text()
    for name in expected:
        assert f"({name})" in index
    text = (tmp_path / files[-1]).read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert re.search(r"nodes: \d+ \(before: \d+\)\s+time: [\d.]+ ms", header[1])
    assert header[2].startswith("# changed:") and "MACs:" in header[3] and "activation bytes:" in header[3]
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert parse(body, params=exe.graph.param_data()) == exe.graph  # dumps parse back
    remove = (tmp_path / "03-remove_identities.ir").read_text()
    assert "removed 1 identity/dropout node(s)" in remove


def test_a_failing_pass_is_named_with_the_passes_before_it():
    def breaks(g):
        n = g.nodes[0]
        return g.with_nodes([n.with_(op="tanh", inputs=("nowhere",), attrs={}), *g.nodes[1:]])

    pipeline = [Pass("ok", lambda g: g, "does nothing"), Pass("breaker", breaks, "breaks the graph")]
    with pytest.raises(PassError, match=r"pass 'breaker' failed \(passes run before it: ok\)") as e:
        run_passes(tiny(), pipeline)
    assert "%nowhere is never defined" in str(e.value)


def test_skip_leaves_optional_passes_out():
    g = tiny()
    exe = kiln.compile(g, skip=("remove_identities",))
    assert "remove_identities" not in [r.name for r in exe.passes]
    assert any(n.op == "dropout" for n in exe.graph.nodes)
    f = feeds(g)
    np.testing.assert_allclose(exe.run(f)[0], kiln.interpret(g, f)[0], rtol=1e-6, atol=1e-6)
    with pytest.raises(UnsupportedError, match=r"cannot skip \['freeze_params'\]"):
        kiln.compile(g, skip=("freeze_params",))
