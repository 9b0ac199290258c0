"""The op families. Importing this package registers every op."""

from . import conv, elementwise, matmul, norm, pool, shape, sparse  # noqa: F401
