"""AlexNet (Krizhevsky et al. 2012) as torchvision builds it (the one-GPU variant of
"One weird trick", Krizhevsky 2014: 64-192-384-256-256 channels, no LRN)."""

from __future__ import annotations

from ...ir import Graph
from ..dsl import Builder
from ._layers import adaptive_avgpool


def alexnet(num_classes: int = 1000, batch: int = 1, image_size: int = 224, seed: int = 0) -> Graph:
    """torchvision's AlexNet: five convs (11x11/4 pad 2 -> 64, 5x5 pad 2 -> 192, three 3x3 pad 1
    -> 384, 256, 256) with relu and 3x3/2 max pools after the 1st, 2nd and 5th, an adaptive
    average pool to 6x6, then dropout - fc 9216-4096 - relu - dropout - fc 4096-4096 - relu -
    fc 4096-num_classes.

    At image_size 224 the last map already is 6x6 and no pool node is emitted; other sizes get
    the exact adaptive pool (see `_layers.adaptive_avgpool`), so any size >= 63 works. Node and
    param names follow torchvision's module paths (`features.0.weight`, `classifier.1.bias`).
    Input `input` [batch, 3, image_size, image_size]; 61,100,840 params for 1000 classes.
    """
    b = Builder("alexnet", seed=seed)
    x = b.input("input", (batch, 3, image_size, image_size))
    with b.scope("features"):
        x = b.relu(b.conv2d(x, 64, 11, stride=4, pads=2, name="0"), name="1")
        x = b.maxpool2d(x, 3, 2, name="2")
        x = b.relu(b.conv2d(x, 192, 5, pads=2, name="3"), name="4")
        x = b.maxpool2d(x, 3, 2, name="5")
        x = b.relu(b.conv2d(x, 384, 3, pads=1, name="6"), name="7")
        x = b.relu(b.conv2d(x, 256, 3, pads=1, name="8"), name="9")
        x = b.relu(b.conv2d(x, 256, 3, pads=1, name="10"), name="11")
        x = b.maxpool2d(x, 3, 2, name="12")
    x = b.flatten(adaptive_avgpool(b, x, 6), name="flatten")
    with b.scope("classifier"):
        x = b.dropout(x, 0.5, name="0")
        x = b.relu(b.linear(x, 4096, name="1"), name="2")
        x = b.dropout(x, 0.5, name="3")
        x = b.relu(b.linear(x, 4096, name="4"), name="5")
        x = b.linear(x, num_classes, name="6")
    return b.build(x)
