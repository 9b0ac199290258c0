"""Kernel templates for the numba CPU target, by op family: op name -> render function."""

from . import (
    argmax,
    blocked,
    conv,
    conv_grad,
    elementwise,
    loss,
    matmul,
    norm,
    norm_train,
    pool,
    pool_grad,
    reduce,
    resize,
    shape,
    sparse,
    train,
)

TEMPLATES = {**elementwise.TEMPLATES, **conv.TEMPLATES, **pool.TEMPLATES, **norm.TEMPLATES,
             **matmul.TEMPLATES, **shape.TEMPLATES, **sparse.TEMPLATES, **argmax.TEMPLATES,
             **resize.TEMPLATES}
# training: backward, loss and optimizer ops
TEMPLATES |= {**train.TEMPLATES, **conv_grad.TEMPLATES, **pool_grad.TEMPLATES, **norm_train.TEMPLATES,
              **loss.TEMPLATES, **reduce.TEMPLATES}
TEMPLATES.update(blocked.layout_templates(TEMPLATES))
