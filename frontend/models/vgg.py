"""VGG (Simonyan & Zisserman 2014), configurations A (VGG-11) and D (VGG-16), without batch
norm, as torchvision builds them."""

from __future__ import annotations

from ...ir import Graph
from ..dsl import Builder
from ._layers import adaptive_avgpool

# Table 1 of the paper: conv output channels, "M" for a 2x2/2 max pool.
CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def vgg(config: str, num_classes: int = 1000, batch: int = 1, image_size: int = 224, seed: int = 0,
        name: str | None = None) -> Graph:
    """VGG of configuration `config` ("A" or "D"): 3x3 pad-1 convs with relu and 2x2 max pools
    as in CONFIGS, an adaptive average pool to 7x7 (no node at image_size 224), then fc
    25088-4096 - relu - dropout - fc 4096-4096 - relu - dropout - fc 4096-num_classes.

    Names follow torchvision's module paths (`features.0`, `classifier.6`). Input `input`
    [batch, 3, image_size, image_size]; any image_size >= 32 works.
    """
    b = Builder(name or f"vgg_{config}", seed=seed)
    x = b.input("input", (batch, 3, image_size, image_size))
    with b.scope("features"):
        i = 0
        for v in CONFIGS[config]:
            if v == "M":
                x = b.maxpool2d(x, 2, 2, name=str(i))
                i += 1
            else:
                x = b.relu(b.conv2d(x, v, 3, pads=1, name=str(i)), name=str(i + 1))
                i += 2
    x = b.flatten(adaptive_avgpool(b, x, 7), name="flatten")
    with b.scope("classifier"):
        x = b.dropout(b.relu(b.linear(x, 4096, name="0"), name="1"), 0.5, name="2")
        x = b.dropout(b.relu(b.linear(x, 4096, name="3"), name="4"), 0.5, name="5")
        x = b.linear(x, num_classes, name="6")
    return b.build(x)


def vgg11(num_classes: int = 1000, batch: int = 1, image_size: int = 224, seed: int = 0) -> Graph:
    """VGG-11 (configuration A, 8 convs + 3 fc); 132,863,336 params for 1000 classes."""
    return vgg("A", num_classes, batch, image_size, seed, name="vgg11")


def vgg16(num_classes: int = 1000, batch: int = 1, image_size: int = 224, seed: int = 0) -> Graph:
    """VGG-16 (configuration D, 13 convs + 3 fc); 138,357,544 params for 1000 classes."""
    return vgg("D", num_classes, batch, image_size, seed, name="vgg16")
