"""The op families. Importing this package registers every op."""

from . import conv, elementwise, loss, matmul, norm, optim, pool, resize, shape, sparse  # noqa: F401
