"""kiln's errors. Every error kiln raises on purpose is a `KilnError`; they are defined with the
IR (the lowest floor) so every layer can raise them, and gathered here for users."""

from __future__ import annotations

from .ir.errors import (
    ConcurrencyError,
    InputError,
    IRError,
    KilnError,
    ModelError,
    ParseError,
    PassError,
    ResourceError,
    ShapeError,
    UnsupportedError,
    VerifyError,
)

__all__ = ["ConcurrencyError", "IRError", "InputError", "KilnError", "ModelError", "ParseError", "PassError", "ResourceError", "ShapeError",
           "UnsupportedError", "VerifyError"]
