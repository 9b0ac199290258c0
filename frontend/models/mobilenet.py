"""MobileNet v1 (Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications")."""

from __future__ import annotations

from ...ir import Graph
from ...ir.errors import UnsupportedError
from ..dsl import Builder
from ._layers import conv_bn

# Table 1: (pointwise output channels, depthwise stride) of the 13 depthwise-separable blocks.
# The table prints "s2" for the 13th depthwise conv, but its input and output are both 7x7:
# like every implementation, stride 1 is used there.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)


def mobilenet_v1(num_classes: int = 1000, batch: int = 1, image_size: int = 224, width: float = 1.0,
                 seed: int = 0) -> Graph:
    """MobileNet v1: 3x3/2 conv 32 + BN + relu, 13 depthwise-separable blocks (3x3 depthwise conv
    with groups = channels + BN + relu, then 1x1 pointwise conv + BN + relu) with Table 1's
    channels and strides, global average pool, fc.

    `width` is the paper's width multiplier alpha: every layer gets int(alpha * channels)
    channels (Keras' rule). Names: `conv1`/`bn1`, then `blocks.<i>.dw_conv`, `.dw_bn`,
    `.pw_conv`, `.pw_bn`, and `fc`. Input `input` [batch, 3, image_size, image_size] (any size
    >= 32); 4,231,976 params and 569M multiply-adds at width 1.0, 224x224, 1000 classes.
    """
    if width <= 0:
        raise UnsupportedError(f"MobileNet width multiplier must be > 0, got {width}")

    def ch(c: int) -> int:
        return max(1, int(c * width))

    b = Builder("mobilenet_v1", seed=seed)
    x = b.input("input", (batch, 3, image_size, image_size))
    x = conv_bn(b, x, ch(32), 3, 2, conv="conv1", bn="bn1")
    with b.scope("blocks"):
        for i, (out, stride) in enumerate(BLOCKS):
            with b.scope(str(i)):
                c = x.shape[1]
                x = conv_bn(b, x, c, 3, stride, groups=c, conv="dw_conv", bn="dw_bn")
                x = conv_bn(b, x, ch(out), 1, conv="pw_conv", bn="pw_bn")
    x = b.flatten(b.global_avgpool(x, name="avgpool"), name="flatten")
    return b.build(b.linear(x, num_classes, name="fc"))
