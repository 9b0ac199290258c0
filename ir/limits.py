"""Resource limits, checked before anything is allocated.

Every tensor kiln infers (at import, in every pass, when folding constants) and every arena it
plans must fit `max_bytes()`: `KILN_MAX_BYTES` when set, else half of this machine's physical
memory. A value over it is a ResourceError naming the op, the shape and the bytes.

An imported graph may have at most `max_nodes()` nodes: `KILN_MAX_NODES` when set, else a
million (import and the reference pipeline are linear in the node count, about 0.2 ms a node on
a 2-core machine, so a million-node model takes minutes and gigabytes of memory).
"""

from __future__ import annotations

import functools
import os

from .errors import ResourceError
from .types import TensorType

DEFAULT_MAX_NODES = 1_000_000


@functools.cache
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
    nbytes = n * t.np_dtype.itemsize
    if nbytes > max_bytes():  # (the message is worded only when it is needed)
        check_bytes(nbytes, f"{what} {t}")
    if n == 0:  # no elements, but numpy still refuses dimensions whose product overflows 64 bits
        span = t.np_dtype.itemsize
        for d in t.shape:
            span *= max(int(d), 1)
        if span >= 2**63:
            raise ResourceError(f"{what} {t} has no elements, but its other dimensions multiply to {span:,} bytes, "
                                "past the 64-bit sizes numpy can hold")


def max_nodes() -> int:
    """The most nodes an imported graph may have."""
    text = os.environ.get("KILN_MAX_NODES", "").strip()
    if not text:
        return DEFAULT_MAX_NODES
    try:
        value = int(float(text))
    except ValueError:
        raise ResourceError(f"KILN_MAX_NODES={text!r} is not a number of nodes") from None
    return value if value > 0 else DEFAULT_MAX_NODES


def check_nodes(count: int, what: str) -> None:
    limit = max_nodes()
    if count > limit:
        how = "KILN_MAX_NODES" if os.environ.get("KILN_MAX_NODES") else "the default; KILN_MAX_NODES changes it"
        raise ResourceError(f"{what} has {count:,} nodes, over the limit of {limit:,} ({how})")
