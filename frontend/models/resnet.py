"""Residual networks (He et al. 2015, "Deep Residual Learning for Image Recognition").

ImageNet models follow Table 1 of the paper exactly: in a bottleneck block the stride sits on
the first 1x1 conv (the original placement, 3.8e9 multiply-adds for ResNet-50), not on the 3x3
as in torchvision's "v1.5". Shortcuts are identity when the shape is unchanged and a projection
(1x1 conv with the block's stride + BN, option B) when it changes. Every conv is bias-free and
followed by BN; the residual add is followed by relu. Names follow torchvision (`conv1`, `bn1`,
`layer1.0.conv1`, `layer1.0.downsample.0`, `fc`), so the param names match its state_dict keys
(without `num_batches_tracked`).

The CIFAR-10 models of section 4.2 (ResNet-20/32/44/56/110) are built by `cifar_resnet`.
"""

from __future__ import annotations

from ...ir import Graph
from ...ir.errors import UnsupportedError
from ..dsl import Builder, Tensor
from ._layers import conv_bn

# depth -> (block kind, blocks per stage), Table 1
IMAGENET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}


def _shortcut(b: Builder, x: Tensor, out_channels: int, stride: int) -> Tensor:
    """Identity, or option B's projection when the block changes the shape."""
    if stride == 1 and x.shape[1] == out_channels:
        return x
    with b.scope("downsample"):
        return conv_bn(b, x, out_channels, 1, stride, relu=False, conv="0", bn="1")


def basic_block(b: Builder, x: Tensor, width: int, stride: int) -> Tensor:
    """Two 3x3 convs (the first with the stride) + shortcut, then relu."""
    y = conv_bn(b, x, width, 3, stride, conv="conv1", bn="bn1")
    y = conv_bn(b, y, width, 3, relu=False, conv="conv2", bn="bn2")
    return b.relu(b.add(y, _shortcut(b, x, width, stride), name="add"), name="relu")


def bottleneck_block(b: Builder, x: Tensor, width: int, stride: int) -> Tensor:
    """1x1 (with the stride) -> 3x3 -> 1x1 expanding to 4 * width, + shortcut, then relu."""
    y = conv_bn(b, x, width, 1, stride, conv="conv1", bn="bn1")
    y = conv_bn(b, y, width, 3, conv="conv2", bn="bn2")
    y = conv_bn(b, y, 4 * width, 1, relu=False, conv="conv3", bn="bn3")
    return b.relu(b.add(y, _shortcut(b, x, 4 * width, stride), name="add"), name="relu")


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def _stages(b: Builder, x: Tensor, kind: str, blocks: tuple[int, ...], widths: tuple[int, ...],
            first_stride: int) -> Tensor:
    """`layer1`, `layer2`, ...: stage i has blocks[i] blocks; all but the first stage open with a
    stride-2 block (the first with `first_stride`)."""
    for i, (n, width) in enumerate(zip(blocks, widths, strict=True)):
        with b.scope(f"layer{i + 1}"):
            for j in range(n):
                with b.scope(str(j)):
                    stride = (first_stride if i == 0 else 2) if j == 0 else 1
                    x = BLOCKS[kind](b, x, width, stride)
    return x


def _head(b: Builder, x: Tensor, num_classes: int) -> Graph:
    x = b.flatten(b.global_avgpool(x, name="avgpool"), name="flatten")
    return b.build(b.linear(x, num_classes, name="fc"))


def resnet(depth: int, num_classes: int = 1000, batch: int = 1, image_size: int = 224,
           seed: int = 0) -> Graph:
    """ImageNet ResNet of `depth` 18, 34, 50, 101 or 152 (Table 1): 7x7/2 conv 64 + BN + relu,
    3x3/2 max pool (pad 1), four stages of 64/128/256/512-wide blocks, global average pool, fc.
    Input `input` [batch, 3, image_size, image_size] (any size >= 32); output [batch, classes]."""
    if depth not in IMAGENET_DEPTHS:
        raise UnsupportedError(f"ResNet depth {depth}: supported depths are {sorted(IMAGENET_DEPTHS)}")
    kind, blocks = IMAGENET_DEPTHS[depth]
    b = Builder(f"resnet{depth}", seed=seed)
    x = b.input("input", (batch, 3, image_size, image_size))
    x = conv_bn(b, x, 64, 7, 2, conv="conv1", bn="bn1")
    x = b.maxpool2d(x, 3, 2, pads=1, name="maxpool")
    x = _stages(b, x, kind, blocks, (64, 128, 256, 512), first_stride=1)
    return _head(b, x, num_classes)


def resnet18(num_classes: int = 1000, batch: int = 1, image_size: int = 224, seed: int = 0) -> Graph:
    """ResNet-18: basic blocks [2, 2, 2, 2]; 11,689,512 params, 1.8e9 multiply-adds at 224."""
    return resnet(18, num_classes, batch, image_size, seed)


def resnet34(num_classes: int = 1000, batch: int = 1, image_size: int = 224, seed: int = 0) -> Graph:
    """ResNet-34: basic blocks [3, 4, 6, 3]; 21,797,672 params, 3.6e9 multiply-adds at 224."""
    return resnet(34, num_classes, batch, image_size, seed)


def resnet50(num_classes: int = 1000, batch: int = 1, image_size: int = 224, seed: int = 0) -> Graph:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]; 25,557,032 params, 3.8e9 multiply-adds at 224."""
    return resnet(50, num_classes, batch, image_size, seed)


def resnet101(num_classes: int = 1000, batch: int = 1, image_size: int = 224, seed: int = 0) -> Graph:
    """ResNet-101: bottleneck blocks [3, 4, 23, 3]; 44,549,160 params, 7.6e9 multiply-adds at 224."""
    return resnet(101, num_classes, batch, image_size, seed)


def resnet152(num_classes: int = 1000, batch: int = 1, image_size: int = 224, seed: int = 0) -> Graph:
    """ResNet-152: bottleneck blocks [3, 8, 36, 3]; 60,192,808 params, 11.3e9 multiply-adds at 224."""
    return resnet(152, num_classes, batch, image_size, seed)


def cifar_resnet(depth: int, num_classes: int = 10, batch: int = 1, seed: int = 0) -> Graph:
    """CIFAR-10 ResNet of section 4.2 with depth = 6n + 2: 3x3 conv 16 + BN + relu, three stages
    of n basic blocks with 16, 32 and 64 filters (stride 2 at the start of stages 2 and 3),
    global average pool, fc. Where a block changes the shape the shortcut is a projection, a
    1x1 conv + BN (option B); the paper's CIFAR models used zero-padding shortcuts (option A),
    so these have slightly more params (ResNet-20: 272,474 instead of ~0.27M).
    Input `input` [batch, 3, 32, 32]; output [batch, num_classes]."""
    if depth < 8 or (depth - 2) % 6:
        raise UnsupportedError(f"CIFAR ResNet depth {depth}: depth must be 6n + 2 with n >= 1 "
                               "(20, 32, 44, 56, 110, ...)")
    n = (depth - 2) // 6
    b = Builder(f"resnet{depth}", seed=seed)
    x = b.input("input", (batch, 3, 32, 32))
    x = conv_bn(b, x, 16, 3, conv="conv1", bn="bn1")
    x = _stages(b, x, "basic", (n, n, n), (16, 32, 64), first_stride=1)
    return _head(b, x, num_classes)


def resnet20(num_classes: int = 10, batch: int = 1, seed: int = 0) -> Graph:
    """CIFAR ResNet-20 (n = 3, option-B projection shortcuts); 272,474 params for 10 classes."""
    return cifar_resnet(20, num_classes, batch, seed)


def resnet56(num_classes: int = 10, batch: int = 1, seed: int = 0) -> Graph:
    """CIFAR ResNet-56 (n = 9, option-B projection shortcuts); 855,770 params for 10 classes."""
    return cifar_resnet(56, num_classes, batch, seed)
