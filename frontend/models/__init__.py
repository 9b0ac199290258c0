"""The model zoo: classic CNNs, ResNets and GCNs built with the DSL, with deterministic weights.

    import kiln
    g = kiln.models.resnet18(batch=1)          # or kiln.models.get_model("resnet18", batch=1)
    sorted(kiln.models.ZOO)                     # every name get_model knows

Each builder returns a verified `ir.Graph` whose weights come from `seed`. CNN inputs are named
`input` (NCHW); GCN inputs `features` ([num_nodes, in_features]).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from ...ir import Graph
from ...ir.errors import UnsupportedError
from .alexnet import alexnet
from .gcn import gcn, gcn_cora_like, gcn_karate
from .lenet import lenet5
from .mobilenet import mobilenet_v1
from .resnet import (
    cifar_resnet,
    resnet,
    resnet18,
    resnet20,
    resnet34,
    resnet50,
    resnet56,
    resnet101,
    resnet152,
)
from .vgg import vgg, vgg11, vgg16

ZOO: dict[str, Callable[..., Graph]] = {
    "lenet5": lenet5,
    "alexnet": alexnet,
    "vgg11": vgg11,
    "vgg16": vgg16,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
    "resnet20": resnet20,
    "resnet56": resnet56,
    "mobilenet_v1": mobilenet_v1,
    "gcn_karate": gcn_karate,
    "gcn_cora_like": gcn_cora_like,
}


def get_model(name: str, **kwargs) -> Graph:
    """Build zoo model `name` with the builder's keyword arguments (batch, seed, num_classes, ...)."""
    try:
        build = ZOO[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), ZOO, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnsupportedError(f"unknown model {name!r}{hint}; the zoo has: {', '.join(ZOO)}") from None
    return build(**kwargs)


__all__ = [
    "ZOO", "alexnet", "cifar_resnet", "gcn", "gcn_cora_like", "gcn_karate", "get_model", "lenet5",
    "mobilenet_v1", "resnet", "resnet18", "resnet20", "resnet34", "resnet50", "resnet56", "resnet101",
    "resnet152", "vgg", "vgg11", "vgg16",
]
