"""Layer patterns shared by several zoo families."""

from __future__ import annotations

import numpy as np

from ..dsl import Builder, Tensor


def adaptive_pool_matrix(size: int, out: int) -> np.ndarray:
    """[size, out] matrix whose column j averages PyTorch's adaptive window j:
    rows floor(j * size / out) up to ceil((j + 1) * size / out)."""
    m = np.zeros((size, out))
    for j in range(out):
        lo, hi = (j * size) // out, -(-((j + 1) * size) // out)
        m[lo:hi, j] = 1.0 / (hi - lo)
    return m


def adaptive_avgpool(b: Builder, x: Tensor, out: int, name: str = "avgpool") -> Tensor:
    """torch's AdaptiveAvgPool2d((out, out)) on an NCHW tensor, with the cheapest exact op:
    nothing when the map already is out x out, an avgpool when the windows are uniform, and
    otherwise a matmul of the flattened map with a constant averaging matrix."""
    n, c, h, w = x.shape
    if (h, w) == (out, out):
        return x
    if h % out == 0 and w % out == 0:
        return b.avgpool2d(x, (h // out, w // out), name=name)
    with b.scope(name):
        pool = np.kron(adaptive_pool_matrix(h, out), adaptive_pool_matrix(w, out))  # [h*w, out*out]
        weights = b.const("matrix", pool.astype(x.type.np_dtype))
    flat = b.reshape(x, (n, c, h * w), name=f"{name}.flatten")
    pooled = b.op("matmul", [flat, weights], name=name)
    return b.reshape(pooled, (n, c, out, out), name=f"{name}.unflatten")


def conv_bn(b: Builder, x: Tensor, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
            relu: bool = True, conv: str = "conv", bn: str = "bn") -> Tensor:
    """Bias-free conv ('same' padding for odd kernels), batch norm, and optionally relu."""
    y = b.conv2d(x, out_channels, kernel, stride=stride, pads=kernel // 2, groups=groups, bias=False,
                 name=conv)
    y = b.batch_norm(y, name=bn)
    return b.relu(y, name="relu") if relu else y
