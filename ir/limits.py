"""Resource limits, checked before anything is allocated.

Every tensor kiln infers (at import, in every pass, when folding constants) and every arena it
plans must fit `max_bytes()`: `KILN_MAX_BYTES` when set, else half of this machine's physical
memory. A value over it is a ResourceError naming the op, the shape and the bytes.
"""

from __future__ import annotations

import os

from .errors import ResourceError
from .types import TensorType


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def max_bytes() -> int:
    """The per-tensor and per-arena limit in bytes."""
    text = os.environ.get("KILN_MAX_BYTES", "").strip()
    if text:
        try:
            value = int(float(text))
        except ValueError:
            raise ResourceError(f"KILN_MAX_BYTES={text!r} is not a number of bytes") from None
        if value > 0:
            return value
    return physical_memory() // 2


def _why() -> str:
    how = "KILN_MAX_BYTES" if os.environ.get("KILN_MAX_BYTES") else "half of this machine's memory; KILN_MAX_BYTES"
    return f"the limit of {max_bytes():,} bytes ({how} changes it)"


def check_bytes(nbytes: int, what: str) -> None:
    if nbytes > max_bytes():
        raise ResourceError(f"{what} would take {nbytes:,} bytes, over {_why()}")


def check_type(t: TensorType, what: str) -> None:
    """Raise ResourceError when a value of type `t` would exceed the limit."""
    n = 1
    for d in t.shape:
        n *= int(d)
    check_bytes(n * t.np_dtype.itemsize, f"{what} {t}")
