"""Kernel templates for the numba CPU target, by op family: op name -> render function."""

from . import argmax, blocked, conv, elementwise, matmul, norm, pool, shape, sparse

TEMPLATES = {**elementwise.TEMPLATES, **conv.TEMPLATES, **pool.TEMPLATES, **norm.TEMPLATES,
             **matmul.TEMPLATES, **shape.TEMPLATES, **sparse.TEMPLATES, **argmax.TEMPLATES}
TEMPLATES.update(blocked.layout_templates(TEMPLATES))
