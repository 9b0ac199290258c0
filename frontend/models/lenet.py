"""LeNet-5 (LeCun et al. 1998) in its common 28x28 MNIST form."""

from __future__ import annotations

from ...ir import Graph
from ..dsl import Builder


def lenet5(num_classes: int = 10, batch: int = 1, seed: int = 0) -> Graph:
    """LeNet-5 for 1x28x28 images: conv 6@5x5 (pad 2) - relu - maxpool 2 - conv 16@5x5 - relu -
    maxpool 2 - flatten - fc 400-120 - relu - fc 120-84 - relu - fc 84-num_classes.

    Max pooling and relu replace the paper's subsampling and tanh units, and the C3 layer is
    fully connected (the usual modern variant). Input `input` [batch, 1, 28, 28]; output logits
    [batch, num_classes]; 61,706 params for 10 classes.
    """
    b = Builder("lenet5", seed=seed)
    x = b.input("input", (batch, 1, 28, 28))
    x = b.relu(b.conv2d(x, 6, 5, pads=2, name="conv1"), name="relu1")
    x = b.maxpool2d(x, 2, name="pool1")
    x = b.relu(b.conv2d(x, 16, 5, name="conv2"), name="relu2")
    x = b.maxpool2d(x, 2, name="pool2")
    x = b.flatten(x, name="flatten")
    x = b.relu(b.linear(x, 120, name="fc1"), name="relu3")
    x = b.relu(b.linear(x, 84, name="fc2"), name="relu4")
    return b.build(b.linear(x, num_classes, name="fc3"))
