"""Training: the trainer's API, its state, and real learning with fixed seeds.

Learning tests run on the reference target here; test_training_cpu.py runs the same steps on
the compiled CPU kernels.
"""

from __future__ import annotations

import itertools

import kiln
import numpy as np
import pytest
from kiln.errors import InputError, KilnError, UnsupportedError
from kiln.frontend import Builder, models
from kiln.runtime import interpret


def small_cnn(batch: int = 4, dropout: float = 0.0, seed: int = 0):
    b = Builder("small_cnn", seed=seed)
    x = b.input("input", (batch, 2, 8, 8))
    x = b.relu(b.batch_norm(b.conv2d(x, 4, 3, pads=1, bias=False, name="conv1"), name="bn1"))
    x = b.maxpool2d(x, 2, name="pool")
    if dropout:
        x = b.dropout(x, dropout, name="drop")
    return b.build(b.linear(b.flatten(x), 3, name="fc"))


def lrn_prelu_cnn(batch: int = 4):
    """AlexNet's local response normalisation and a learned per-channel leaky relu (prelu)."""
    b = Builder("lrn_prelu", seed=1)
    x = b.input("input", (batch, 2, 8, 8))
    x = b.conv2d(x, 6, 3, pads=1, name="conv1")
    x = b.op("prelu", [x, b.param("slope", np.full((6, 1, 1), 0.25, np.float32))], name="prelu")
    x = b.maxpool2d(b.lrn(x, size=3, alpha=0.1, name="lrn"), 2, name="pool")
    return b.build(b.linear(b.flatten(x), 3, name="fc"))


def resnet_block():
    """conv-BN-relu, conv-BN, residual add, relu, a strided 1x1 projection, global pool, fc."""
    b = Builder("block", seed=2)
    x = b.input("input", (2, 4, 6, 6))
    h = b.relu(b.batch_norm(b.conv2d(x, 4, 3, pads=1, bias=False, name="conv1"), name="bn1"))
    h = b.batch_norm(b.conv2d(h, 4, 3, pads=1, bias=False, name="conv2"), name="bn2")
    h = b.relu(b.add(h, x))
    h = b.global_avgpool(b.conv2d(h, 8, 1, stride=2, name="proj"))
    return b.build(b.linear(b.flatten(h), 3, name="fc"))


def batch(seed: int = 0, n: int = 4):
    rng = np.random.default_rng(seed)
    return {"input": rng.standard_normal((n, 2, 8, 8)).astype(np.float32), "labels": rng.integers(0, 3, n)}


# -- the API ----------------------------------------------------------------------------------
def test_step_returns_the_loss_of_the_weights_before_the_update():
    g = small_cnn()
    tr = kiln.compile(g, mode="train", optimizer=kiln.optim.SGD(0.1))
    feeds = batch()
    # the forward graph with batch statistics, run by the interpreter, is the oracle
    b_g = kiln.passes.autodiff(g, kiln.optim.SGD(0.1))
    ref = interpret(b_g.graph, {**feeds, b_g.labels: feeds["labels"], b_g.hyper: np.array([0.1], np.float32),
                                **b_g.state})[0]
    assert tr.step(feeds) == pytest.approx(float(ref), rel=1e-6)
    assert tr.steps == 1


def test_loss_falls_and_weights_change_only_where_trained():
    g = small_cnn()
    tr = kiln.compile(g, mode="train", optimizer=kiln.optim.SGD(0.1, momentum=0.9), frozen=["conv1.weight"])
    before = tr.state_dict()
    feeds = batch()
    losses = [tr.step(feeds) for _ in range(15)]
    after = tr.state_dict()
    assert losses[-1] < 0.5 * losses[0]
    assert "conv1.weight" not in after  # frozen: a const, not state
    assert not np.allclose(before["fc.weight"], after["fc.weight"])
    assert not np.allclose(before["bn1.running_mean"], after["bn1.running_mean"])
    assert "fc.weight.velocity" in after


def test_running_statistics_follow_the_momentum_rule():
    g = small_cnn()
    tr = kiln.compile(g, mode="train")
    feeds = batch()
    tr.step(feeds)
    conv = interpret(g.replace(outputs=("conv1",)), {"input": feeds["input"]})[0].astype(np.float64)
    mean, var = conv.mean(axis=(0, 2, 3)), conv.var(axis=(0, 2, 3), ddof=1)
    m = 0.9  # the builder's momentum: running = running * m + batch * (1 - m)
    np.testing.assert_allclose(tr.state["bn1.running_mean"], (1 - m) * mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(tr.state["bn1.running_var"], m + (1 - m) * var, rtol=1e-5)


def test_state_dict_round_trip_resumes_exactly():
    feeds = [batch(s) for s in range(4)]
    a = kiln.compile(small_cnn(dropout=0.3), mode="train", optimizer=kiln.optim.Adam(0.01))
    for f in feeds[:2]:
        a.step(f)
    saved = a.state_dict()
    rest = [a.step(f) for f in feeds[2:]]
    b = kiln.compile(small_cnn(dropout=0.3, seed=5), mode="train", optimizer=kiln.optim.Adam(0.01))
    b.load_state_dict(saved)
    assert b.steps == 2
    assert [b.step(f) for f in feeds[2:]] == rest  # same weights, slots, step count and dropout masks
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k], err_msg=k)


def test_load_state_dict_checks_names_and_shapes():
    tr = kiln.compile(small_cnn(), mode="train")
    state = tr.state_dict()
    with pytest.raises(InputError, match=r"missing \['fc.bias'\]"):
        tr.load_state_dict({k: v for k, v in state.items() if k != "fc.bias"})
    with pytest.raises(InputError, match=r"state 'fc.bias': expected float32\[3\], given float32\[4\]"):
        tr.load_state_dict({**state, "fc.bias": np.zeros(4, np.float32)})


def test_dropout_masks_change_per_step_and_repeat_per_seed():
    feeds = batch()
    runs = []
    for _ in range(2):
        tr = kiln.compile(small_cnn(dropout=0.5), mode="train", optimizer=kiln.optim.SGD(0.0))
        runs.append([tr.step(feeds) for _ in range(3)])
    assert runs[0] == runs[1]  # seeded: repeatable
    assert len(set(runs[0])) == 3  # lr 0: only the masks differ between steps


def test_schedule_sets_each_steps_learning_rate():
    opt = kiln.optim.SGD(0.1, schedule=kiln.optim.step_decay(2, 0.5))
    tr = kiln.compile(small_cnn(), mode="train", optimizer=opt)
    seen = []
    for _ in range(5):
        seen.append(tr.lr)
        tr.step(batch())
    assert seen == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert kiln.optim.cosine(10, warmup=2)(0) == pytest.approx(0.5)
    assert kiln.optim.cosine(10)(10) == pytest.approx(0.0)


def test_evaluate_and_inference_graph_agree():
    g = small_cnn()
    tr = kiln.compile(g, mode="train", optimizer=kiln.optim.SGD(0.1))
    for s in range(3):
        tr.step(batch(s))
    feeds = batch(7)
    logits = tr.predict(feeds)[0]
    exported = tr.inference_graph()
    np.testing.assert_allclose(interpret(exported, {"input": feeds["input"]})[0], logits, rtol=1e-5, atol=1e-6)
    result = tr.evaluate(feeds)
    assert result["accuracy"] == float((logits.argmax(1) == feeds["labels"]).mean())
    assert result["loss"] > 0


def test_trained_model_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    tr = kiln.compile(small_cnn(), mode="train", optimizer=kiln.optim.SGD(0.1))
    tr.step(batch())
    path = tmp_path / "trained.onnx"
    kiln.save_onnx(tr.inference_graph(), path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = batch(3)
    got = sess.run(None, {"input": feeds["input"]})[0]
    np.testing.assert_allclose(got, tr.predict(feeds)[0], rtol=1e-4, atol=1e-5)


def test_fine_tune_an_imported_onnx_model(tmp_path):
    """Transfer learning: weights come from an ONNX file; the conv stays frozen, fc learns."""
    src = small_cnn(seed=3)
    path = tmp_path / "pretrained.onnx"
    kiln.save_onnx(src, path)
    g = kiln.from_onnx(path)
    frozen = [p.name for p in g.params if p.role == "param" and not p.name.startswith("fc")]
    tr = kiln.compile(g, mode="train", optimizer=kiln.optim.SGD(0.1), frozen=frozen)
    assert set(tr.spec.trainable) == {p.name for p in g.params if p.role == "param"} - set(frozen)
    feeds = batch()
    losses = [tr.step(feeds) for _ in range(10)]
    assert losses[-1] < losses[0]
    fc = next(p for p in g.params if p.name in tr.spec.trainable)
    assert not np.allclose(tr.state[fc.name], fc.data)


def test_training_errors_are_clear():
    g = small_cnn()
    tr = kiln.compile(g, mode="train")
    with pytest.raises(InputError, match="need 'labels'"):
        tr.step({"input": batch()["input"]})
    with pytest.raises(InputError, match="compiled without one"):
        tr.step({**batch(), "mask": np.ones(4, bool)})
    with pytest.raises(InputError, match=r"input 'labels': expected shape \[4\], given \[3\]"):
        tr.step({**batch(), "labels": np.zeros(3, np.int64)})
    with pytest.raises(UnsupportedError, match=r"frozen names \['conv9'\] match no param"):
        kiln.compile(g, mode="train", frozen=["conv9"])
    with pytest.raises(UnsupportedError, match="unknown loss 'hinge'"):
        kiln.compile(g, mode="train", loss="hinge")
    with pytest.raises(InputError, match="momentum must be in"):
        kiln.optim.SGD(0.1, momentum=1.5)
    b = Builder("second_order")  # an op without a gradient rule: a backward op, no second derivatives
    x = b.flatten(b.conv2d(b.input("input", (2, 4, 3, 3)), 4, 1, name="conv"))
    g2 = b.build(b.op("softmax_grad", [x, b.softmax(x)], name="norm"))
    with pytest.raises(KilnError, match=r"pass 'autodiff' failed(.|\n)*norm.*'softmax_grad' has no gradient rule"):
        kiln.compile(g2, mode="train")


def test_dumps_show_the_backward_graph(tmp_path):
    kiln.compile(small_cnn(), mode="train", dump_dir=tmp_path)
    text = next(tmp_path.glob("*-autodiff.ir")).read_text()
    assert "conv2d_grad_weight" in text and "batch_norm_grad" in text and "sgd_update" in text
    assert (tmp_path / "eval").is_dir()


# -- real learning ----------------------------------------------------------------------------
def test_lenet5_learns_digits():
    train, test = kiln.data.digits(seed=0)
    tr = kiln.compile(models.lenet5(batch=64, seed=0), mode="train",
                      optimizer=kiln.optim.SGD(0.05, momentum=0.9))
    for epoch in range(8):
        for feeds in kiln.data.batches(train, 64, seed=epoch):
            tr.step(feeds)
    assert kiln.data.evaluate(tr, test)["accuracy"] >= 0.97


def test_gcn_learns_karate_from_one_label_per_club():
    train, test = kiln.data.karate()
    g = models.gcn(train.extra["graph"], 34, 16, num_classes=2, seed=0)
    tr = kiln.compile(g, mode="train", optimizer=kiln.optim.Adam(0.01, weight_decay=5e-4))
    for _ in range(100):
        tr.step(train.feeds())
    assert kiln.data.evaluate(tr, test)["accuracy"] >= 0.90


def test_gcn_learns_a_block_model():
    train, test = kiln.data.block_model(sizes=(50, 50, 50), signal=0.4, seed=1)
    g = models.gcn(train.extra["graph"], 16, 16, num_classes=3, seed=0)
    tr = kiln.compile(g, mode="train", optimizer=kiln.optim.Adam(0.01, weight_decay=5e-4))
    for _ in range(100):
        tr.step(train.feeds())
    assert kiln.data.evaluate(tr, test)["accuracy"] >= 0.80


def test_augmentation_is_seeded_and_shape_preserving():
    data = kiln.data.synthetic_images(8, shape=(3, 8, 8), seed=0)
    aug = kiln.data.Augment(crop_pad=2, flip=True, brightness=0.2, contrast=0.2)
    a = [f["input"] for f in kiln.data.batches(data, 4, seed=1, augment=aug)]
    b = [f["input"] for f in kiln.data.batches(data, 4, seed=1, augment=aug)]
    c = [f["input"] for f in kiln.data.batches(data, 4, seed=2, augment=aug)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and not np.array_equal(a[0], c[0])
    assert a[0].shape == (4, 3, 8, 8) and a[0].dtype == np.float32
    flipped = kiln.data.hflip(data.x[:1])
    np.testing.assert_array_equal(flipped[0, :, :, 0], data.x[0, :, :, -1])


def test_resnet20_loss_falls_steadily():
    data = kiln.data.synthetic_images(64, classes=10, shape=(3, 32, 32), seed=0)
    tr = kiln.compile(models.resnet20(batch=16, seed=0), mode="train", optimizer=kiln.optim.SGD(0.05, momentum=0.9))
    epochs = [np.mean([tr.step(f) for f in kiln.data.batches(data, 16, seed=e)]) for e in range(6)]
    assert all(b < a for a, b in itertools.pairwise(epochs[1:])), epochs  # falling after the first epoch
    assert epochs[-1] < 0.3 * epochs[0], epochs


def test_test_time_augmentation_averages_the_views():
    data = kiln.data.synthetic_images(6, classes=3, shape=(2, 8, 8), seed=4)
    tr = kiln.compile(small_cnn(), mode="train")
    tr.step({"input": data.x[:4], "labels": data.labels[:4]})
    plain = kiln.data.predict_probs(tr, data)
    flipped = kiln.data.predict_probs(tr, kiln.data.Dataset(kiln.data.hflip(data.x), data.labels))
    np.testing.assert_allclose(kiln.data.predict_probs(tr, data, [kiln.data.hflip]), (plain + flipped) / 2, rtol=1e-6)
    assert plain.shape == (6, 3)  # 6 examples through a batch-4 model: the last chunk is padded
    np.testing.assert_allclose(plain.sum(axis=1), 1.0, rtol=1e-6)
