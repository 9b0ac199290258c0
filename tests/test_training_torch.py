"""Whole-model gradients and optimizer steps against PyTorch (optional: skipped, saying why,
when torch is not installed). kiln's weights are copied into equivalent torch modules."""

from __future__ import annotations

import kiln
import numpy as np
import pytest
from kiln.frontend import Builder, models
from kiln.passes import autodiff
from kiln.runtime import interpret
from test_training import resnet_block

torch = pytest.importorskip("torch", reason="torch is an optional reference; pip install torch to run these")
F = torch.nn.functional


def kiln_grads(g, feeds, labels, mask=None):
    spec = autodiff(g, kiln.optim.SGD(0.0), expose_grads=True, masked=mask is not None)
    run = {**feeds, spec.labels: labels, spec.hyper: np.zeros(spec.graph.type_of(spec.hyper).shape, np.float32),
           **spec.state}
    if spec.mask:
        run[spec.mask] = mask
    outs = interpret(spec.graph, {k: v for k, v in run.items() if k in {i.name for i in spec.graph.inputs}})
    names = spec.graph.outputs
    return float(outs[0]), {p: outs[names.index(o)] for p, o in spec.grads.items()}


def t(x):
    return torch.tensor(np.asarray(x, np.float64), requires_grad=True)


def compare(loss, grads, ref_loss, ref_params):
    assert loss == pytest.approx(ref_loss.item(), rel=1e-5)
    ref_loss.backward()
    for name, p in ref_params.items():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=2e-4, atol=2e-6, err_msg=name)


def test_lenet5_gradients_match_torch():
    g = models.lenet5(batch=4, seed=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    loss, grads = kiln_grads(g, {"input": x}, y)
    p = {k: t(v) for k, v in g.param_data().items()}
    h = F.max_pool2d(F.relu(F.conv2d(t(x), p["conv1.weight"], p["conv1.bias"], padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"])), 2).flatten(1)
    h = F.relu(F.linear(h, p["fc1.weight"], p["fc1.bias"]))
    h = F.relu(F.linear(h, p["fc2.weight"], p["fc2.bias"]))
    out = F.linear(h, p["fc3.weight"], p["fc3.bias"])
    compare(loss, grads, F.cross_entropy(out, torch.tensor(y)), p)


def test_resnet_block_gradients_match_torch_in_training_mode():
    g = resnet_block()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    y = np.array([2, 0])
    loss, grads = kiln_grads(g, {"input": x}, y)
    p = {k: t(v) for k, v in g.param_data().items()}

    def bn(h, name):
        return F.batch_norm(h, None, None, p[f"{name}.weight"], p[f"{name}.bias"], training=True, eps=1e-5)

    h = F.relu(bn(F.conv2d(t(x), p["conv1.weight"], padding=1), "bn1"))
    h = bn(F.conv2d(h, p["conv2.weight"], padding=1), "bn2")
    h = F.relu(h + t(x))
    h = F.adaptive_avg_pool2d(F.conv2d(h, p["proj.weight"], p["proj.bias"], stride=2), 1).flatten(1)
    out = F.linear(h, p["fc.weight"], p["fc.bias"])
    trainable = {k: v for k, v in p.items() if "running" not in k}
    compare(loss, grads, F.cross_entropy(out, torch.tensor(y)), trainable)


def test_gcn_gradients_match_torch_with_a_mask():
    train, _ = kiln.data.karate()
    g = models.gcn(train.extra["graph"], 34, 8, num_classes=2, dropout=0.0, seed=0)
    mask = train.mask
    loss, grads = kiln_grads(g, {"features": train.x}, train.labels, mask)
    indptr, indices, data = (g.param_map[f"adjacency.{k}"].data for k in ("indptr", "indices", "data"))
    a = np.zeros((34, 34))
    for r in range(34):
        a[r, indices[indptr[r]:indptr[r + 1]]] = data[indptr[r]:indptr[r + 1]]
    A = torch.tensor(a)
    p = {k: t(v) for k, v in g.param_data().items() if k.startswith("gc")}
    h = F.relu(A @ (t(train.x) @ p["gc1.weight"]) + p["gc1.bias"])
    out = A @ (h @ p["gc2.weight"]) + p["gc2.bias"]
    ref = F.cross_entropy(out[torch.tensor(mask)], torch.tensor(train.labels[mask]))
    compare(loss, grads, ref, p)


@pytest.mark.parametrize("make, ref", [
    (lambda: kiln.optim.SGD(0.1), lambda ps: torch.optim.SGD(ps, 0.1)),
    (lambda: kiln.optim.SGD(0.1, momentum=0.9, weight_decay=0.01),
     lambda ps: torch.optim.SGD(ps, 0.1, momentum=0.9, weight_decay=0.01)),
    (lambda: kiln.optim.SGD(0.1, momentum=0.9, nesterov=True),
     lambda ps: torch.optim.SGD(ps, 0.1, momentum=0.9, nesterov=True)),
    (lambda: kiln.optim.Adam(0.01, weight_decay=0.01), lambda ps: torch.optim.Adam(ps, 0.01, weight_decay=0.01)),
    (lambda: kiln.optim.AdamW(0.01, weight_decay=0.1), lambda ps: torch.optim.AdamW(ps, 0.01, weight_decay=0.1)),
])
def test_optimizer_steps_match_torch(make, ref):
    """Three steps on a linear model: the weights after each step agree with torch.optim."""
    b = Builder("linear", seed=4)
    x = b.input("input", (5, 6))
    g = b.build(b.linear(x, 3, name="fc"))
    rng = np.random.default_rng(2)
    batches = [(rng.standard_normal((5, 6)).astype(np.float32), rng.integers(0, 3, 5)) for _ in range(3)]
    tr = kiln.compile(g, mode="train", optimizer=make())
    w = torch.tensor(g.param_map["fc.weight"].data.copy(), requires_grad=True)
    bias = torch.tensor(g.param_map["fc.bias"].data.copy(), requires_grad=True)
    opt = ref([w, bias])
    for xb, yb in batches:
        tr.step({"input": xb, "labels": yb})
        opt.zero_grad()
        F.cross_entropy(F.linear(torch.tensor(xb), w, bias), torch.tensor(yb)).backward()
        opt.step()
        np.testing.assert_allclose(tr.state["fc.weight"], w.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(tr.state["fc.bias"], bias.detach().numpy(), rtol=1e-5, atol=1e-6)
