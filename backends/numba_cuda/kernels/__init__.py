"""CUDA kernel templates by op family: op name -> render function."""

from . import conv, elementwise, loss, matmul, norm, norm_train, pool, pool_grad, resize, shape, sparse, train

TEMPLATES = {**elementwise.TEMPLATES, **conv.TEMPLATES, **matmul.TEMPLATES,
             **pool.TEMPLATES, **pool_grad.TEMPLATES, **norm.TEMPLATES, **norm_train.TEMPLATES,
             **shape.TEMPLATES, **sparse.TEMPLATES, **loss.TEMPLATES, **train.TEMPLATES,
             **resize.TEMPLATES}
