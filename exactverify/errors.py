"""Exception hierarchy of exactverify.

Every error inherits from :class:`ExactVerifyError` and from the standard type a
caller would expect (``ValueError``, ``TypeError``), so ``except ValueError`` keeps
working for code that does not know this library.
"""

from __future__ import annotations


class ExactVerifyError(Exception):
    """Base class of every error raised on purpose by exactverify."""


class InvalidInputError(ExactVerifyError, ValueError):
    """A parameter handed to a public entry point is malformed (names the parameter)."""


class ShapeMismatchError(InvalidInputError):
    """Two shapes that must agree do not (layer chain, input vs. network, composition)."""


class UnsupportedLayerError(ExactVerifyError, ValueError):
    """A model contains operators the IR cannot represent; lists every one of them."""

    def __init__(self, unsupported: list[tuple[str, str]], source: str = "model") -> None:
        self.unsupported = list(unsupported)
        listing = ", ".join(f"{name!r} ({kind})" for name, kind in self.unsupported)
        super().__init__(
            f"{source} contains {len(self.unsupported)} unsupported operator(s): {listing}"
        )


class LoadMismatchError(ExactVerifyError, ValueError):
    """The loaded IR does not reproduce the source model's outputs on random inputs."""


class SolverError(ExactVerifyError, RuntimeError):
    """A solver backend failed in a way that is not a normal status (crash, missing package)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a query; ``result`` is what it had proved so far.

    A ``KeyboardInterrupt``, so loops over many queries stop as Ctrl-C always does; the
    anytime result (a :class:`~exactverify.queries.results.Verdict` or
    :class:`~exactverify.queries.results.DistortionResult` with status ``unknown`` and the
    bounds proved before the interruption) is not lost: the command line prints it.
    """

    def __init__(self, result) -> None:
        super().__init__(f"interrupted: {result.reason}")
        self.result = result
