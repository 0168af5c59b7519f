"""Solver backends behind one narrow interface (see :mod:`encoders.backends.base`).

``make_backend(name, **options)`` builds a fresh model for one query. SCIP (pyscipopt) is
the default. Every backend module is imported on first use, so ``import encoders.backends``
loads no solver package and works with only pyscipopt installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import platform

from exactverify.errors import InvalidInputError, SolverError

from .base import Backend, SolveProgress, SolveResult, Status

__all__ = [
    "Backend", "SolveProgress", "SolveResult", "Status", "DEFAULT_BACKEND", "BACKENDS",
    "make_backend", "available_backends", "solver_versions",
]

DEFAULT_BACKEND = "scip"

# name -> (module in this package, class name, distribution the module needs)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "scip": ("scip", "ScipBackend", "pyscipopt"),
    "ortools": ("ortools", "OrToolsBackend", "ortools"),
    "z3": ("z3", "Z3Backend", "z3"),
}


def _backend_class(name: str) -> type[Backend]:
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {sorted(BACKENDS)}, got {name!r}")
    module_name, class_name, package = BACKENDS[name.lower()]
    if importlib.util.find_spec(package) is None:
        raise SolverError(f"backend {name!r} needs the {package!r} package, which is not installed")
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ImportError as exc:
        raise SolverError(f"backend {name!r} could not be imported: {exc}") from exc
    return getattr(module, class_name)


def make_backend(name: str = DEFAULT_BACKEND, **options) -> Backend:
    """A fresh backend model. ``options`` go to its constructor: default solve options
    (``gap``, ``feastol``, ``verbose``) and, for ``ortools``, ``solver`` (engine name)."""
    return _backend_class(name)(**options)


def available_backends() -> list[str]:
    """Names accepted by :func:`make_backend` whose solver package is installed (no import)."""
    return [name for name, (_, _, package) in BACKENDS.items() if importlib.util.find_spec(package) is not None]


def solver_versions() -> dict[str, str]:
    """Versions of the installed solver packages (for benchmark reports); imports them."""
    versions: dict[str, str] = {"python": platform.python_version()}
    try:
        import pyscipopt

        from .scip import scip_version

        versions["pyscipopt"] = pyscipopt.__version__
        versions["scip"] = scip_version()
    except ImportError:
        versions["pyscipopt"] = "missing"
    try:
        import ortools

        versions["ortools"] = ortools.__version__
    except ImportError:
        versions["ortools"] = "missing"
    try:
        import z3

        versions["z3"] = z3.get_version_string()
    except ImportError:
        versions["z3"] = "missing"
    return versions
