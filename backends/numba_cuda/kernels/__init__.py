"""CUDA kernel templates by op family: op name -> render function."""

from . import conv, elementwise, matmul

TEMPLATES = {**elementwise.TEMPLATES, **conv.TEMPLATES, **matmul.TEMPLATES}
