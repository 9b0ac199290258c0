"""Training on the CPU target: the compiled step against the reference interpreter's step, and
real learning with kiln's kernels."""

from __future__ import annotations

import kiln
import numpy as np
import pytest
from kiln.frontend import models
from test_training import batch, lrn_prelu_cnn, resnet_block, small_cnn


def assert_steps_agree(g, feeds_list, optimizer, rtol=2e-4, atol=1e-5, **kw):
    """The same steps on both targets: losses and every piece of state agree."""
    ref = kiln.compile(g, target="reference", mode="train", optimizer=optimizer, **kw)
    cpu = kiln.compile(g, target="cpu", mode="train", optimizer=optimizer, **kw)
    for feeds in feeds_list:
        assert cpu.step(feeds) == pytest.approx(ref.step(feeds), rel=rtol, abs=atol)
    for name, value in ref.state_dict().items():
        np.testing.assert_allclose(cpu.state_dict()[name], value, rtol=rtol, atol=atol, err_msg=name)
    return ref, cpu


def test_small_cnn_with_dropout_and_batch_norm():
    assert_steps_agree(small_cnn(dropout=0.3), [batch(s) for s in range(3)],
                       kiln.optim.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3))


def test_lrn_and_prelu_steps_match_the_reference():
    ref, _ = assert_steps_agree(lrn_prelu_cnn(), [batch(s) for s in range(3)], kiln.optim.SGD(0.1, momentum=0.9))
    assert not np.allclose(ref.state_dict()["slope"], 0.25), "the prelu slope must train"


def test_resnet_block_steps_match_the_reference():
    """Batch statistics, a residual add, a strided projection and Adam (ResNet-20's own step
    is exercised by the benchmark; compiling it cold takes over a minute)."""
    rng = np.random.default_rng(1)
    feeds = [{"input": rng.standard_normal((2, 4, 6, 6)).astype(np.float32), "labels": rng.integers(0, 3, 2)}
             for _ in range(2)]
    assert_steps_agree(resnet_block(), feeds, kiln.optim.Adam(1e-3), rtol=1e-3, atol=1e-4)


def test_gcn_learns_karate_on_cpu():
    train, test = kiln.data.karate()
    g = models.gcn(train.extra["graph"], 34, 16, num_classes=2, seed=0)
    _, cpu = assert_steps_agree(g, [train.feeds()] * 3, kiln.optim.Adam(0.01, weight_decay=5e-4))
    for _ in range(97):
        cpu.step(train.feeds())
    assert kiln.data.evaluate(cpu, test)["accuracy"] >= 0.90


def test_lenet5_learns_digits_on_cpu():
    train, test = kiln.data.digits(seed=0)
    tr = kiln.compile(models.lenet5(batch=64, seed=0), target="cpu", mode="train",
                      optimizer=kiln.optim.SGD(0.05, momentum=0.9))
    for epoch in range(8):
        for feeds in kiln.data.batches(train, 64, seed=epoch):
            tr.step(feeds)
    assert kiln.data.evaluate(tr, test)["accuracy"] >= 0.97


def test_train_step_plans_one_arena(tmp_path):
    """The inference passes run on the step graph too: buffers are planned and the dump shows
    the backward graph beside the generated kernels."""
    tr = kiln.compile(small_cnn(), target="cpu", mode="train", dump_dir=tmp_path)
    g = tr._step_exe.graph  # graph outputs are written to fresh arrays, everything else to the arena
    assert all(v.buffer is not None for n in g.nodes for v in n.outputs if v.name not in g.outputs)
    assert (tmp_path / "kernels").is_dir() and any((tmp_path / "kernels").iterdir())
    assert "conv2d_grad_weight" in next(tmp_path.glob("*-reuse_buffers.ir")).read_text()
