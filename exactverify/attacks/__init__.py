"""Adversarial attacks, batched in torch: warm starts for the exact queries and things to measure.

The suite (every attack returns an :class:`AttackResult` re-checked in float64):
fixed-budget :func:`fgm`, :func:`bim`, :func:`pgd_attack`; minimum-distortion :func:`cw_l2`,
:func:`cw_linf`, :func:`ead`; :func:`min_distortion_fixed_budget` turns a fixed-budget
attack into a minimum-distortion one. :func:`pgd` is the projected-gradient core.
"""

from .cw import cw_l2, cw_linf
from .ead import ead
from .fgm import fgm
from .iterative import bim, pgd_attack
from .measure import l2_lower_bound, min_distortion_fixed_budget
from .pgd import pgd, project_l1_box
from .result import AttackResult, adversarial_margin, norm_of
from .search import pgd_min_distortion

__all__ = [
    "AttackResult", "adversarial_margin", "bim", "cw_l2", "cw_linf", "ead", "fgm", "l2_lower_bound",
    "min_distortion_fixed_budget", "norm_of", "pgd", "pgd_attack", "pgd_min_distortion", "project_l1_box",
]
