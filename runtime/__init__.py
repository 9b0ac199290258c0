"""Runtimes: the reference interpreter and the executables that backends produce."""

from .executable import Executable, check_feeds
from .interpreter import interpret

__all__ = ["Executable", "check_feeds", "interpret"]
