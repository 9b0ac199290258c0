"""kiln's errors. Every error kiln raises on purpose is a `KilnError`."""

from __future__ import annotations

from .ir.errors import IRError, KilnError, ParseError, ShapeError, VerifyError


class UnsupportedError(KilnError):
    """A target, mode, op or model feature kiln does not support; the message lists what is."""


class InputError(KilnError):
    """A run was given the wrong inputs: which input, expected vs given."""


class PassError(KilnError):
    """A pass failed or broke the IR; names the pass and the passes run before it."""


__all__ = ["IRError", "InputError", "KilnError", "ParseError", "PassError", "ShapeError",
           "UnsupportedError", "VerifyError"]
