"""Every zoo model on the cuda target against the reference interpreter.

On a real GPU every model runs at its full size. In Numba's simulator every CUDA thread is a
Python thread (ResNet-20 at batch 1, 41 M multiply-adds, takes about three minutes on this
project's 2-core machine), so the simulator runs each model at the smallest input its
architecture takes (32 x 32 images for the ImageNet models, 63 x 63 for AlexNet), batch 1:
the same layers, kernels and launch logic, on fewer pixels. CI runs the quick ones; set
KILN_SIM_ALL=1 to run them all in the simulator (about an hour and a half). Every kernel of every
full-size model is also compiled for a real GPU (typing and lowering, no device needed) in
test_every_zoo_model_compiles_for_a_real_gpu.
"""

from __future__ import annotations

import os
import subprocess
import sys

import kiln
import numpy as np
import pytest
from conftest import HAS_GPU

pytest.importorskip("numba.cuda", reason="the cuda target needs numba-cuda")
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in scalar multiply:RuntimeWarning")

ALL = os.environ.get("KILN_SIM_ALL") == "1"
# the smallest input each architecture takes, for the simulator
SIM_SIZE = {"alexnet": {"image_size": 63}, "mobilenet_v1": {"image_size": 32},
            **{m: {"image_size": 32} for m in ("vgg11", "vgg16", "resnet18", "resnet34", "resnet50", "resnet101",
                                               "resnet152")}}
QUICK = {"lenet5", "gcn_karate"}  # seconds in the simulator: always run


def model_kwargs(name: str) -> dict:
    if HAS_GPU or name.startswith("gcn"):
        return {}
    return SIM_SIZE.get(name, {})


@pytest.mark.parametrize("name", sorted(kiln.models.ZOO))
def test_every_zoo_model_matches_the_reference(name):
    if not (HAS_GPU or ALL or name in QUICK):
        pytest.skip("minutes to an hour in the simulator: KILN_SIM_ALL=1 runs it (a GPU runs it always)")
    g = kiln.models.get_model(name, **model_kwargs(name))
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in g.inputs}
    got = kiln.compile(g, target="cuda").run(feeds)
    want = kiln.interpret(g, feeds)
    for o, a, b in zip(g.outputs, got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()), err_msg=o)


COMPILE_ZOO = """
import sys
sys.path.insert(0, {tests!r})
import kiln
from test_cuda_kernels import compile_for_gpu
for name in sorted(kiln.models.ZOO):
    compile_for_gpu(kiln.models.get_model(name))
    print(name, "compiled", flush=True)
"""


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
                    reason="not in the simulator: the test above runs every full-size model on the GPU")
def test_every_zoo_model_compiles_for_a_real_gpu():
    """Full size, batch 1: every kernel through numba's CUDA typing and lowering for compute
    capability 8.0, in a process without the simulator (which would accept any Python)."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    code = COMPILE_ZOO.format(tests=os.path.dirname(__file__))
    r = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-4000:]
    assert r.stdout.count("compiled") == len(kiln.models.ZOO)
