"""The `kiln` command line: info, compile (dumps, check), run, and its errors."""

import json
import re
import subprocess
import sys

import kiln
import numpy as np
from kiln.cli import main
from kiln.ir import graph_stats


def test_info_json_has_the_documented_keys(capsys):
    assert main(["info", "zoo:lenet5", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    g = kiln.models.lenet5()
    s = graph_stats(g)
    assert doc["params"] == s.params == 61706  # LeNet-5 (28x28, padded first conv): 61,706 weights
    assert doc["macs"] == s.macs and doc["activation_bytes"] == s.activation_bytes
    assert doc["inputs"] == {"input": "f32[1,1,28,28]"}


def test_info_text_and_batch(capsys):
    assert main(["info", "zoo:lenet5", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "%input:f32[4,1,28,28]" in out and "multiply-adds" in out


def test_compile_dumps_and_checks(tmp_path, capsys):
    assert main(["compile", "zoo:lenet5", "--dump-ir", str(tmp_path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "check: OK" in out
    n_passes = len(kiln.passes.PIPELINES[("reference", "inference")])
    assert len(list(tmp_path.glob("*.ir"))) == n_passes + 1
    assert (tmp_path / "index.md").exists()


def test_compile_reports_kernels_and_the_layers_sharing_them():
    """A ResNet's 3x3 convs of one shape share a kernel: the report (kernel_sharing, the line
    `kiln compile` prints) counts every launch once and names the most shared kernels."""
    from kiln.api import _with_cost_model
    from kiln.backends.lowering import lower
    from kiln.backends.numba_cpu.kernels import TEMPLATES
    from kiln.cli import kernel_sharing
    from kiln.passes import PIPELINES
    from kiln.passes.manager import run_passes

    g, _ = run_passes(kiln.models.resnet20(), _with_cost_model(PIPELINES[("cpu", "inference")], None), None)
    program = lower(g, TEMPLATES, "cpu")
    line = kernel_sharing(program.kernels.values())
    head = line.splitlines()[0]
    assert head.startswith("layers per kernel: ")
    total = sum(int(k) * int(n) for k, n in re.findall(r"(\d+) kernels? x (\d+) layers?", head))
    assert total == len(program.launches), line  # every launch counted once
    assert " layers share " in line, line  # some kernel serves several layers


def test_run_reads_npy_and_writes_npz(tmp_path, capsys):
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out_file = tmp_path / "out.npz"
    assert main(["run", "zoo:lenet5", "--input", f"input={tmp_path / 'x.npy'}", "--output", str(out_file)]) == 0
    g = kiln.models.lenet5()
    (ref,) = kiln.interpret(g, {"input": x})
    saved = np.load(out_file)
    np.testing.assert_allclose(saved[g.outputs[0]], ref, rtol=1e-6, atol=1e-6)


def test_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    assert main(["run", "zoo:lenet5", "--input", f"input={tmp_path / 'x.npy'}"]) == 2
    err = capsys.readouterr().err
    assert "input 'input': expected shape [1, 1, 28, 28], given [2, 2]" in err
    assert main(["info", "zoo:nonexistent"]) == 2
    assert "lenet5" in capsys.readouterr().err
    assert main(["compile", "zoo:lenet5", "--target", "tpu"]) == 2
    assert "targets that exist: reference, cpu, cuda" in capsys.readouterr().err


def test_a_long_error_is_one_line_unless_verbose(tmp_path, capsys):
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Frobnicate", ["x"], ["a"], name="f1"), helper.make_node("Twiddle", ["a"], ["y"], name="f2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    path = tmp_path / "bad.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot import 2 node(s)" in err and "more line(s) with --verbose" in err
    assert main(["info", str(path), "--verbose"]) == 2
    err = capsys.readouterr().err
    assert "'f1' (op Frobnicate" in err and "'f2' (op Twiddle" in err and "kiln imports: " in err


def test_python_dash_m_kiln():
    r = subprocess.run([sys.executable, "-m", "kiln", "info", "zoo:lenet5", "--json"],
                       capture_output=True, text=True, check=True)
    assert json.loads(r.stdout)["params"] == 61706


def test_onnx_files_work_wherever_zoo_names_do(tmp_path, capsys):
    path = tmp_path / "lenet.onnx"
    assert main(["export-onnx", "zoo:lenet5", str(path), "--batch", "2"]) == 0
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 61706
    assert main(["compile", str(path), "--check"]) == 0
    assert "check: OK" in capsys.readouterr().out
    g = kiln.load_model(str(path), batch=2)
    assert g.inputs[0].type.shape == (2, 1, 28, 28)
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28)).astype(np.float32)
    (ours,) = kiln.interpret(g, {"input": x})
    (ref,) = kiln.interpret(kiln.models.lenet5(batch=2), {"input": x})
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_train_checkpoints_resumes_and_exports(tmp_path, capsys):
    ck, out = tmp_path / "ck.npz", tmp_path / "trained.onnx"
    assert main(["train", "zoo:gcn_karate", "--target", "reference", "--optimizer", "adam", "--lr", "0.01",
                 "--epochs", "2", "--checkpoint", str(ck)]) == 0
    first = capsys.readouterr().out
    assert "epoch 2/2: train loss" in first and "test accuracy" in first
    assert main(["train", "zoo:gcn_karate", "--target", "reference", "--optimizer", "adam", "--lr", "0.01",
                 "--epochs", "3", "--resume", str(ck)]) == 0
    resumed = capsys.readouterr().out
    assert "resumed from" in resumed and "epoch 3/3" in resumed and "epoch 1/" not in resumed
    assert int(np.load(ck)["__epoch__"]) == 2
    assert main(["train", "zoo:lenet5", "--data", "synthetic", "--examples", "8", "--batch", "4", "--epochs", "1",
                 "--target", "reference", "--out", str(out)]) == 0
    g = kiln.from_onnx(out)
    assert g.type_of(g.outputs[0]).shape == (4, 10)


def test_train_rejects_data_that_does_not_fit_the_model(capsys):
    assert main(["train", "zoo:resnet20", "--data", "digits", "--target", "reference"]) == 2
    assert "the model takes 'input': f32[1,3,32,32]" in capsys.readouterr().err


def test_cache_info_and_clear(tmp_path, monkeypatch, capsys):
    """Only kiln's cache folders go; other files under KILN_CACHE_DIR stay."""
    root = tmp_path / "cache"
    monkeypatch.setenv("KILN_CACHE_DIR", str(root))
    for name, size in (("numba0.1-llvmlite0.2-py311-aaaa", 1000), ("numba0.3-llvmlite0.4-py311-bbbb", 3000)):
        (root / name / "__pycache__").mkdir(parents=True)
        (root / name / "k_x.py").write_bytes(b"x" * size)
        (root / name / "__pycache__" / "k_x.nbi").write_bytes(b"y" * size)
    (root / "notes.txt").write_text("mine")
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(root) in out and "numba0.1-llvmlite0.2-py311-aaaa: 2 files" in out and "numba0.3" in out
    assert main(["cache", "clear"]) == 0
    assert "cleared 2 cache folder(s)" in capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]
    assert main(["cache", "info"]) == 0
    assert "(empty)" in capsys.readouterr().out
