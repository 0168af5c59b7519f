"""Adversarial attacks, batched in torch: warm starts for the exact queries and things to measure."""

from .pgd import pgd, project_l1_box
from .search import pgd_min_distortion

__all__ = ["pgd", "pgd_min_distortion", "project_l1_box"]
