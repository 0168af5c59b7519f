"""Exact queries: robustness at eps and provably minimal adversarial distortion."""

from .checks import DOMAIN_TOLERANCE, REGION_TOLERANCE
from .distortion import minimal_distortion
from .results import DistortionResult, SolveRecord, Verdict, VerdictStatus
from .stages import DUAL_BOUND_SLACK
from .verify import verify

__all__ = [
    "DOMAIN_TOLERANCE", "DUAL_BOUND_SLACK", "DistortionResult", "REGION_TOLERANCE", "SolveRecord",
    "Verdict", "VerdictStatus", "minimal_distortion", "verify",
]
