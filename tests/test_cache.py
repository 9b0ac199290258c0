"""The kernel cache heals: corrupted entries (truncated, garbage, flipped bytes in the machine
code) are found by their checksum or by failing to load, deleted with a warning naming them, and
rebuilt; an unusable KILN_CACHE_DIR falls back to a temporary folder with a warning; four
processes filling one empty cache concurrently all compute the right answer. Every scenario runs
in fresh processes (a loaded kernel module stays loaded in its process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import json, sys, warnings
import numpy as np
import kiln
from kiln.frontend import Builder
warnings.simplefilter("always")
b = Builder("cached", seed=0)
x = b.input("x", (1, 3, 8, 8))
g = b.build(b.global_avgpool(b.op("add", [b.relu(x), x])))  # three small kernels: quick to build
feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)}
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    got = kiln.compile(g, target="cpu").run(feeds)[0]
want = kiln.interpret(g, feeds)[0]
print(json.dumps({"err": float(np.max(np.abs(got - want))),
                  "warnings": [str(w.message) for w in seen if "cache" in str(w.message)]}))
"""


def run(cache: Path | str, timeout: int = 600) -> dict:
    env = {"KILN_CACHE_DIR": str(cache), "KILN_COST_MODEL": "rules", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def entries(cache: Path, suffix: str, kernel: str = "") -> list[Path]:
    return sorted(cache.rglob(f"{kernel}*{suffix}"))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    first = run(cache)
    assert first["err"] < 1e-5 and not first["warnings"], first
    assert entries(cache, ".kiln-sha256"), "no checksum recorded"
    return cache


def _corrupt(cache: Path, how: str) -> Path:
    code = entries(cache, ".nbc", "k_global_avgpool_")[0]
    data = bytearray(code.read_bytes())
    if how == "flip":
        for k in range(len(data) // 2, len(data) // 2 + 64):
            data[k] ^= 0xFF
        code.write_bytes(bytes(data))
    elif how == "truncate":
        code.write_bytes(bytes(data[: len(data) // 3]))
    else:
        index = entries(cache, ".nbi", "k_global_avgpool_")[0]
        index.write_bytes(b"\x80\x04garbage" * 7)
        return index
    return code


@pytest.mark.parametrize("how", ["flip", "truncate", "garbage_index"])
def test_a_corrupted_entry_is_deleted_rebuilt_and_named(built, how):
    bad = _corrupt(built, how)
    name = bad.name.split(".")[0]
    healed = run(built)
    assert healed["err"] < 1e-5, healed
    assert any(name in w and "rebuilding" in w for w in healed["warnings"]), healed
    again = run(built)
    assert again["err"] < 1e-5 and not again["warnings"], again  # healed for good


def test_an_unusable_cache_folder_falls_back_with_a_warning(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("not a folder")
    result = run(not_a_folder)
    assert result["err"] < 1e-5
    assert any("KILN_CACHE_DIR" in w and str(not_a_folder) in w for w in result["warnings"]), result


def test_four_processes_fill_one_cache_concurrently(tmp_path):
    env = {"KILN_CACHE_DIR": str(tmp_path), "KILN_COST_MODEL": "rules", "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["err"] < 1e-5 for r in results), results
    after = run(tmp_path)  # a later process loads what they left, checksums and all
    assert after["err"] < 1e-5 and not after["warnings"], after
