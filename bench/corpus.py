"""The real-model corpus: CNN architectures as people export them (torchvision's models and three
small hand-written ones), with random seeded weights, exported to ONNX by torch (opset 17) and
run once by onnxruntime for the expected outputs. Nothing is downloaded.

    python bench/corpus.py export DIR [--size 64] [--models a,b]   # DIR/<name>.onnx and <name>.npz
    python bench/corpus.py list

Run as its own process (the tests and `python -m bench --corpus` do): the process that runs kiln
never imports torch or onnxruntime. Each <name>.npz holds `input` and `output_0..` (onnxruntime,
all graph optimisations off). torchvision's compiled ops do not load beside the CPU build of
torch, but its models do once `torchvision._meta_registrations` is stubbed before the import.
The ONNX package's bundled "light" models (onnx/backend/test/data/light: AlexNet, DenseNet-121,
Inception v1 and v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512; opset 9, fixed
224x224 inputs) join the corpus as `light_<name>`. Their weights are ConstantOfShape fills (every
filter the same, so every channel computes the same thing); the export replaces each fill with a
seeded random initializer of its shape (He-scaled for weights, in [0.5, 1.5] for the 1-D ones:
biases, BatchNormalization's scales and variances), so the outputs tell channels apart.
Exporting them needs onnxruntime only, not torch.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
from pathlib import Path

# name -> (family, the input size the architecture is made for); CIFAR-style models take 32
CORPUS = {
    "efficientnet_b0": ("torchvision", 224),
    "mobilenet_v3_small": ("torchvision", 224),
    "mobilenet_v3_large": ("torchvision", 224),
    "convnext_tiny": ("torchvision", 224),
    "shufflenet_v2_x1_0": ("torchvision", 224),
    "googlenet": ("torchvision", 224),
    "densenet121": ("torchvision", 224),
    "squeezenet1_1": ("torchvision", 224),
    "cifar_resnet20_a": ("custom", 32),
    "unet_small": ("custom", 64),
    "yolo_head": ("custom", 64),
}
OPSET = 17


def light_models() -> dict[str, Path]:
    """The ONNX package's bundled light models (random-free: their weights are ConstantOfShape)."""
    import onnx

    folder = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    return {p.stem.removeprefix("light_"): p for p in sorted(folder.glob("light_*.onnx"))}


def _torch():
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torch
    import torchvision

    return torch, torchvision


def _custom(name: str, torch):
    nn, F = torch.nn, torch.nn.functional

    def cbr(cin, cout, k=3, s=1):
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    class BlockA(nn.Module):
        """A CIFAR ResNet basic block with the option-A shortcut: x[:, :, ::2, ::2] padded with
        zero channels (He et al. 2015, section 4.2)."""

        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(cbr(cin, cout, 3, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(cout))
            self.extra = cout - cin

        def forward(self, x):
            short = x
            if self.extra:
                short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
            return F.relu(self.body(x) + short)

    class ResNet20A(nn.Module):
        def __init__(self):
            super().__init__()
            layers, cin = [cbr(3, 16)], 16
            for cout in (16, 32, 64):
                for k in range(3):
                    layers.append(BlockA(cin, cout, 2 if k == 0 and cout != 16 else 1))
                    cin = cout
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))

    class UNet(nn.Module):
        """Two down steps, a transposed-conv up step and a bilinear (Resize) one, skip concats."""

        def __init__(self):
            super().__init__()
            self.e1, self.e2, self.mid = cbr(3, 16), cbr(16, 32), cbr(32, 64)
            self.up1 = nn.ConvTranspose2d(64, 32, 2, stride=2)
            self.d1 = cbr(64, 32)
            self.d2 = cbr(32 + 16, 16)
            self.out = nn.Conv2d(16, 2, 1)

        def forward(self, x):
            a = self.e1(x)
            b = self.e2(F.max_pool2d(a, 2))
            m = self.mid(F.max_pool2d(b, 2))
            u = self.d1(torch.cat([self.up1(m), b], 1))
            u = F.interpolate(u, scale_factor=2, mode="bilinear", align_corners=False)
            return self.out(self.d2(torch.cat([u, a], 1)))

    class YoloHead(nn.Module):
        """A small backbone, an FPN-style nearest upsample and concat, and a detection head whose
        outputs split into boxes, objectness and classes (sigmoid), concatenated back."""

        def __init__(self, classes=3, anchors=2):
            super().__init__()
            self.c1, self.c2, self.c3 = cbr(3, 16, 3, 2), cbr(16, 32, 3, 2), cbr(32, 64, 3, 2)
            self.lat = cbr(64, 32, 1)
            self.fuse = cbr(64, 32)
            self.head = nn.Conv2d(32, anchors * (5 + classes), 1)
            self.anchors, self.classes = anchors, classes

        def forward(self, x):
            p2 = self.c2(self.c1(x))
            p3 = self.c3(p2)
            f = self.fuse(torch.cat([F.interpolate(self.lat(p3), scale_factor=2, mode="nearest"), p2], 1))
            y = self.head(f)
            n, _, h, w = y.shape
            y = y.view(n, self.anchors, 5 + self.classes, h, w)
            box, obj, cls = torch.split(y, [4, 1, self.classes], dim=2)
            return torch.cat([box.sigmoid() * 2 - 0.5, obj.sigmoid(), cls.sigmoid()], 2).flatten(1, 2)

    return {"cifar_resnet20_a": ResNet20A, "unet_small": UNet, "yolo_head": YoloHead}[name]()


def build(name: str, torch, torchvision):
    """The torch module, in eval mode, with seeded random weights and batch-norm statistics."""
    torch.manual_seed(0)
    family, _ = CORPUS[name]
    if family == "torchvision":
        kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
        model = getattr(torchvision.models, name)(weights=None, **kwargs)
    else:
        model = _custom(name, torch)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def export(out: Path, size: int | None, names: list[str]) -> None:
    import numpy as np
    import onnxruntime as ort

    torch, torchvision = _torch()
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        model = build(name, torch, torchvision)
        side = size or CORPUS[name][1]
        x = np.random.default_rng(0).standard_normal((1, 3, side, side)).astype(np.float32)
        path = out / f"{name}.onnx"
        torch.onnx.export(model, (torch.from_numpy(x),), str(path), opset_version=OPSET, input_names=["input"],
                          dynamo=False)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        outs = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"input": x})
        np.savez(out / f"{name}.npz", input=x, **{f"output_{k}": o for k, o in enumerate(outs)})
        print(f"{name}: {side}x{side}, {os.path.getsize(path) / 2**20:.1f} MiB", flush=True)


LIGHT = "light_"


def light_with_random_weights(path: Path, seed: int = 0):
    """A light model with each ConstantOfShape fill replaced by a seeded random initializer (also
    listed as a graph input, as IR version 3 wants of every initializer)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(path))
    rng = np.random.default_rng(seed)
    shapes = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    keep, new = [], []
    for node in m.graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in shapes:
            keep.append(node)
            continue
        shape = tuple(int(d) for d in shapes[node.input[0]])
        if len(shape) >= 2:
            w = rng.standard_normal(shape) * np.sqrt(2.0 / max(1, int(np.prod(shape[1:]))))
        else:
            w = rng.uniform(0.5, 1.5, shape)
        new.append(numpy_helper.from_array(w.astype(np.float32), node.output[0]))
    used = {i for n in keep for i in n.input}
    gone = {t.name for t in m.graph.initializer if t.name not in used}
    inits = [t for t in m.graph.initializer if t.name not in gone] + new
    inputs = [i for i in m.graph.input if i.name not in gone] + \
        [helper.make_tensor_value_info(t.name, onnx.TensorProto.FLOAT, list(t.dims)) for t in new]
    for field, items in ((m.graph.node, keep), (m.graph.initializer, inits), (m.graph.input, inputs)):
        del field[:]
        field.extend(items)
    return m


def export_light(out: Path, names: list[str]) -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort

    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        m = light_with_random_weights(light_models()[name.removeprefix(LIGHT)])
        path = out / f"{name}.onnx"
        onnx.save(m, str(path))
        inits = {t.name for t in m.graph.initializer}
        (inp,) = [i for i in m.graph.input if i.name not in inits]
        shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        outs = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {inp.name: x})
        np.savez(out / f"{name}.npz", input=x, input_name=np.array(inp.name),
                 **{f"output_{k}": o for k, o in enumerate(outs)})
        print(f"{name}: {'x'.join(map(str, shape))}", flush=True)


def all_models() -> list[str]:
    """The corpus's torch-exported models, then the light ones."""
    return [*CORPUS, *(LIGHT + n for n in light_models())]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="export the corpus to DIR")
    ex.add_argument("dir", type=Path)
    ex.add_argument("--size", type=int, default=None, help="input height and width (default: each model's own)")
    ex.add_argument("--models", default=",".join(CORPUS))
    sub.add_parser("list", help="the corpus models")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for name, (family, side) in CORPUS.items():
            print(f"{name}\t{family}\t{side}")
        for name in light_models():
            print(f"{LIGHT}{name}\tonnx light\t224")
        return
    names = [n for n in args.models.split(",") if n]
    unknown = sorted(set(names) - set(all_models()))
    if unknown:
        ap.error(f"unknown models {unknown}; the corpus: {', '.join(all_models())}")
    light = [n for n in names if n.startswith(LIGHT)]
    if light and args.size:
        ap.error(f"the light models have fixed 224x224 inputs; --size does not apply to {light}")
    if light:
        export_light(args.dir, light)
    if len(light) < len(names):
        export(args.dir, args.size, [n for n in names if n not in light])


if __name__ == "__main__":
    main()
