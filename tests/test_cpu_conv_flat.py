"""The flat-grid convolution kernels (backends/numba_cpu/kernels/conv_flat.py) against the
reference interpreter: the forward conv with its fused epilogues, the input gradient as a conv
of dy with the flipped kernel, and the weight gradient; strided convs on phase grids.

Cases cover what the grid has to get right: pads on either side and larger than the kernel
reach, dilation, groups, 1x1 and 5x5 kernels, channel counts that leave a partial tile, images
that leave a partial batch or an uneven split between jobs. Weights are graph inputs, as in a
training step, so the convs stay in the plain layout. f32 to rtol 1e-4.
"""

import kiln
import numpy as np
import pytest
from kiln.backends.numba_cpu.kernels import conv_flat, flat_grid
from kiln.frontend import Builder

GEO = {"stride": (1, 1), "dilation": (1, 1), "pads": (0, 0, 0, 0), "groups": 1}

# (n, c, (h, w), m, (kh, kw), attrs)
CASES = [
    (2, 16, (8, 8), 16, (3, 3), {"pads": (1, 1, 1, 1)}),          # a ResNet block, full tiles
    (3, 5, (7, 9), 6, (3, 3), {"pads": (1, 2, 0, 1)}),            # odd sizes, asymmetric pads, channel tail
    (2, 4, (6, 6), 8, (3, 2), {"pads": (2, 1, 2, 1), "dilation": (2, 1)}),
    (3, 6, (5, 7), 4, (1, 1), {"groups": 2}),                      # 1x1 grouped, no pads
    (2, 3, (9, 8), 7, (5, 5), {"pads": (2, 2, 2, 2)}),             # 5x5, 3 input channels
    (1, 8, (4, 5), 12, (3, 3), {"pads": (1, 1, 1, 1), "groups": 4}),  # one image
    (2, 4, (5, 5), 4, (3, 3), {"pads": (3, 0, 0, 3)}),            # pads beyond the kernel's reach
]


def check(g, **kw):
    rng = np.random.default_rng(0)
    f = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    exe = kiln.compile(g, target="cpu", **kw)
    for name, got, want in zip(g.outputs, exe.run(f), kiln.interpret(g, f), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())),
                                   err_msg=name)
    p = exe.compiled.program
    return [p.kernels[launch.kernel].note for launch in p.launches]


def conv(b, i, n, c, hw, m, kernel, attrs, bias=False, residual=False, act=""):
    geo = {**GEO, **attrs}
    x = b.input(f"x{i}", (n, c, *hw))
    w = b.input(f"w{i}", (m, c // geo["groups"], *kernel))
    ins = [x, w] + ([b.input(f"b{i}", (m,))] if bias or residual else [])
    y = b.op("conv2d", [x, w], geo)
    if residual:
        ins.append(b.input(f"r{i}", y.shape))
    a = {**geo, "residual": residual, "act": act, "act_min": -0.5, "act_max": 0.5}
    return b.op("conv2d", ins, a)


def grads(b, i, n, c, hw, m, kernel, attrs):
    geo = {**GEO, **attrs}
    x = b.input(f"x{i}", (n, c, *hw))
    w = b.input(f"w{i}", (m, c // geo["groups"], *kernel))
    dy = b.input(f"dy{i}", b.op("conv2d", [x, w], geo).shape)
    return [b.op("conv2d_grad_input", [dy, w], {**geo, "input_hw": hw}),
            b.op("conv2d_grad_weight", [x, dy], {**geo, "kernel": kernel})]


def test_forward_geometries():
    b = Builder("flat_fw", seed=0)
    notes = check(b.build(*[conv(b, i, *case) for i, case in enumerate(CASES)]))
    assert all(n.startswith("flat grid conv") for n in notes), notes


def test_forward_epilogues():
    b = Builder("flat_epilogue", seed=0)
    ys = [conv(b, 0, 2, 4, (6, 6), 6, (3, 3), {"pads": (1, 1, 1, 1)}, bias=True),
          conv(b, 1, 2, 4, (6, 6), 6, (3, 3), {"pads": (1, 1, 1, 1)}, residual=True, act="relu"),
          conv(b, 2, 3, 8, (5, 4), 8, (3, 3), {"pads": (1, 1, 1, 1), "groups": 2}, bias=True, act="clip")]
    notes = check(b.build(*ys))
    assert all(n.startswith("flat grid conv") for n in notes), notes


def test_gradients_geometries():
    b = Builder("flat_grads", seed=0)
    notes = check(b.build(*[y for i, case in enumerate(CASES) for y in grads(b, i, *case)]))
    flat = [n for n in notes if n.startswith("flat grid")]
    # the last case's input gradient needs a negative pad (3 > 2): it takes the gemm route
    assert len(flat) == 2 * len(CASES) - 1 and any(n.startswith("gemm w^T") for n in notes), notes


@pytest.mark.parametrize("n", [5, 7])
def test_partial_batches_and_uneven_jobs(monkeypatch, n):
    """Two images a batch: jobs of 3 and 2 (or 4 and 3) images end on a partial batch, whose
    stale images must not reach the weight gradient's sums."""
    monkeypatch.setattr(flat_grid, "BATCH_BYTES", 2 * (4 + 6) * 7 * 7 * 4)
    monkeypatch.setattr(conv_flat, "MIN_CELLS", 0)
    b = Builder("flat_batches", seed=0)
    geo = {"pads": (1, 1, 1, 1)}
    notes = check(b.build(conv(b, 0, n, 4, (6, 6), 6, (3, 3), geo, bias=True), *grads(b, 1, n, 4, (6, 6), 6, (3, 3), geo)))
    assert all("2 image(s)" in s for s in notes), notes


STRIDED = [
    (2, 16, (9, 11), 32, (3, 3), {"stride": (2, 2), "pads": (1, 1, 1, 1)}),  # ResNet's downsampling conv
    (3, 5, (8, 8), 6, (1, 1), {"stride": (2, 2)}),                          # its 1x1 shortcut: one phase
    (2, 4, (7, 10), 8, (5, 5), {"stride": (3, 3), "pads": (2, 1, 0, 2)}),   # stride 3, uneven pads
    (2, 6, (6, 7), 4, (3, 2), {"stride": (2, 2), "pads": (0, 1, 1, 0), "groups": 2}),
    (3, 3, (8, 9), 4, (3, 3), {"stride": (2, 2)}),  # the last input row and column reach no output
]


def test_strided_convs():
    """Strided convs: forward and weight gradient on the phase grid, the input gradient as
    S*S output phases (zeroed where a phase has no taps or the forward's floor dropped rows)."""
    b = Builder("flat_strided", seed=0)
    ys = [conv(b, i, *case, bias=i == 0, act="relu" if i == 1 else "") for i, case in enumerate(STRIDED)]
    ys += [y for i, case in enumerate(STRIDED) for y in grads(b, 10 + i, *case)]
    # the strided 1x1 stays strided (as in a training step, whose pipeline does not subsample)
    notes = check(b.build(*ys), skip=("subsample_strided",))
    assert sum("phase(s)" in n for n in notes) == 2 * len(STRIDED), notes
    assert sum("output phases" in n for n in notes) == len(STRIDED), notes


def test_f64_and_dilated_strides_keep_the_gemm_route():
    b = Builder("not_flat", seed=0)
    x = b.input("x", (2, 4, 7, 7), "f64")
    w = b.input("w", (4, 4, 3, 3), "f64")
    x2, w2 = b.input("x2", (2, 4, 9, 9)), b.input("w2", (4, 4, 3, 3))
    g = b.build(b.op("conv2d", [x, w], {**GEO, "pads": (1, 1, 1, 1)}),
                b.op("conv2d", [x2, w2], {**GEO, "stride": (2, 2), "dilation": (2, 2)}))
    rng = np.random.default_rng(0)
    f = {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in g.inputs}
    exe = kiln.compile(g, target="cpu")
    for got, want in zip(exe.run(f), kiln.interpret(g, f), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    p = exe.compiled.program
    assert all(p.kernels[launch.kernel].note.startswith("gemm") for launch in p.launches)
