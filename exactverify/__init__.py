"""exactverify: exact answers about small neural networks via MILP and SMT encodings."""

from __future__ import annotations

from . import ir
from .bounds import BoundsResult, bounds
from .compose import compose
from .errors import (
    ExactVerifyError,
    Interrupted,
    InvalidInputError,
    LoadMismatchError,
    ShapeMismatchError,
    SolverError,
    UnsupportedLayerError,
)
from .ir import Network
from .loaders import SourceModel, load, load_source
from .queries import DistortionResult, Verdict, VerdictStatus, minimal_distortion, verify
from .regions import Region, ball, box, l1_ball, linf_ball
from .specs import DEFAULT_MARGIN, Conjunction, OutputSpec, class_wins, other_class_wins

__version__ = "0.1.0"

__all__ = [
    "BoundsResult", "Conjunction", "DEFAULT_MARGIN", "ExactVerifyError", "Interrupted", "InvalidInputError",
    "LoadMismatchError", "Network", "OutputSpec", "Region", "ShapeMismatchError", "SolverError",
    "UnsupportedLayerError", "ball", "bounds", "box", "class_wins", "compose", "ir", "l1_ball",
    "linf_ball", "load", "load_source", "SourceModel", "other_class_wins", "DistortionResult", "Verdict",
    "VerdictStatus", "minimal_distortion", "verify",
]
