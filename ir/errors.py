"""The IR's error types. `kiln.errors` re-exports these with the rest of kiln's errors."""

from __future__ import annotations


class KilnError(Exception):
    """Base of every error kiln raises on purpose."""


class IRError(KilnError):
    """A malformed type, attribute or graph built through the IR API."""


class ParseError(IRError):
    """The IR text form could not be read; names the line and column."""


class VerifyError(IRError):
    """The verifier found a broken invariant; names the node and shows the IR around it."""

    def __init__(self, message: str, node: str | None = None, context: str = ""):
        self.node = node
        self.context = context
        super().__init__(message + (f"\n{context}" if context else ""))


class ShapeError(IRError):
    """An op's inputs do not fit its shape/dtype rules."""


class ResourceError(IRError):
    """A value (or an arena) would be bigger than kiln allows (KILN_MAX_BYTES): said before
    anything is allocated, naming the node, the shape and the bytes."""


class UnsupportedError(KilnError):
    """A target, mode, op or model feature kiln does not support; the message lists what is."""


class InputError(KilnError):
    """A run was given the wrong inputs: which input, expected vs given."""


class ConcurrencyError(KilnError):
    """An object that serves one caller at a time (a Trainer's step) was entered by a second
    thread while the first was inside it."""


class PassError(KilnError):
    """A pass failed or broke the IR; names the pass and the passes run before it."""


class ModelError(KilnError):
    """A model file or proto is malformed or cannot be read."""
