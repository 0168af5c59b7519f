"""Solver backends behind one narrow interface (see :mod:`encoders.backends.base`)."""

from .base import Backend, SolveResult, Status

__all__ = ["Backend", "SolveResult", "Status"]
