"""Kernel templates for the numba CPU target, by op family: op name -> render function."""

from . import elementwise

TEMPLATES = {**elementwise.TEMPLATES}
