"""kiln: a compiler for neural-network dataflow graphs."""

from . import errors, ir
from .frontend import models
