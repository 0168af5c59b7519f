"""Measuring attacks: the smallest budget at which a fixed-budget attack succeeds, and an L2 bound.

:func:`min_distortion_fixed_budget` turns a fixed-budget attack (FGM, BIM, PGD) into a
minimum-distortion one, so all attacks can be compared with the provable minimum. PGD
and BIM go through :func:`pgd_min_distortion` (batched bisection); any other attack
``attack(network, x, labels, eps, *, target, norm, domain, **kwargs) -> AttackResult``
first runs on a geometric grid ``eps_high * 2**-k`` (success need not be monotone in
eps for one-step attacks), then bisects between the smallest succeeding grid value and
the one below it. Either way the reported distortion is that of the best re-checked
point found, which is at most the eps it was found at.

:func:`l2_lower_bound` turns proved L-inf and L1 lower bounds into an L2 lower bound.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..ir import Network
from .inputs import DEFAULT_DOMAIN, AttackInputs, check_inputs, check_positive_int
from .iterative import bim, pgd_attack
from .result import AttackResult, adversarial_margin, finish, norm_of
from .search import pgd_min_distortion

FixedBudgetAttack = Callable[..., AttackResult]


def max_radius(inputs: AttackInputs, norm: str) -> torch.Tensor:
    """Per sample, the smallest eps whose ``norm`` ball around ``x`` contains the whole domain."""
    reach = torch.maximum(inputs.x - inputs.low, inputs.high - inputs.x)
    return norm_of(reach, norm)


def _pgd_search(inputs: AttackInputs, eps_high: torch.Tensor, norm: str, iterations: int,
                steps: int, restarts: int) -> torch.Tensor:
    def score(logits: torch.Tensor) -> torch.Tensor:
        return adversarial_margin(logits, inputs.labels, inputs.target)

    def success(logits: torch.Tensor) -> torch.Tensor:
        return score(logits) > 0

    _, points, _ = pgd_min_distortion(inputs.network, inputs.x, score, success, eps_high, norm=norm,
                                      domain=(inputs.low, inputs.high), iterations=iterations, steps=steps,
                                      restarts=restarts)
    return points


def _grid_search(attack: FixedBudgetAttack, inputs: AttackInputs, eps_high: torch.Tensor, norm: str,
                 iterations: int, levels: int, kwargs: dict) -> torch.Tensor:
    batch = inputs.batch
    best = torch.full((batch,), float("inf"), dtype=torch.float64)
    points = inputs.x.clone()

    def attempt(eps: torch.Tensor) -> torch.Tensor:
        result = attack(inputs.network, inputs.x, inputs.labels, eps, target=inputs.target, norm=norm,
                        domain=(inputs.low, inputs.high), **kwargs)
        better = result.success & (result.distortion < best)
        best[better] = result.distortion[better]
        points[better] = result.points[better]
        return result.success

    # grid from the largest eps down: `high` ends at the smallest succeeding value, `low` below it
    high = torch.full((batch,), float("inf"), dtype=torch.float64)
    low = torch.zeros(batch, dtype=torch.float64)
    for k in range(levels):
        eps = eps_high * 2.0 ** -k
        ok = attempt(eps)
        high = torch.where(ok, eps, high)
        low = torch.where(ok, torch.zeros_like(low), torch.where(torch.isfinite(high) & (low == 0), eps, low))
    found = torch.isfinite(high)
    high = torch.where(found, high, eps_high)
    for _ in range(iterations):
        mid = (low + high) / 2
        ok = attempt(mid) & found
        high = torch.where(ok, mid, high)
        low = torch.where(ok | ~found, low, mid)
    return points


def min_distortion_fixed_budget(attack: FixedBudgetAttack, network: Network, x, labels, *, target=None,
                                norm: str = "linf", domain=DEFAULT_DOMAIN, eps_high=None, iterations: int = 12,
                                levels: int = 10, steps: int | None = None, restarts: int | None = None,
                                **attack_kwargs) -> AttackResult:
    """Per sample, the least-distortion success of ``attack`` over budgets up to ``eps_high``.

    ``eps_high`` defaults to the radius that covers the whole domain. For :func:`pgd_attack`
    and :func:`bim`, ``steps`` / ``restarts`` go to :func:`pgd_min_distortion` (defaults 60 / 1
    for BIM, 60 / 3 for PGD); for other attacks, ``levels`` grid values come first and the
    remaining keyword arguments go to ``attack``. ``result.eps`` is None: budgets varied.
    """
    inputs = check_inputs(network, x, labels, target, domain, norm=norm, norms=("linf", "l1", "l2"))
    check_positive_int(iterations, "iterations", minimum=0)
    check_positive_int(levels, "levels")
    high = max_radius(inputs, norm) if eps_high is None else torch.as_tensor(eps_high, dtype=torch.float64)
    high = high.reshape(-1).expand(inputs.batch).clone()
    if attack in (pgd_attack, bim):
        steps = 60 if steps is None else steps
        restarts = (1 if attack is bim else 3) if restarts is None else restarts
        points = _pgd_search(inputs, high, norm, iterations, steps, restarts)
        name = "pgd" if attack is pgd_attack else "bim"
    else:
        if steps is not None:
            attack_kwargs["steps"] = steps
        if restarts is not None:
            attack_kwargs["restarts"] = restarts
        points = _grid_search(attack, inputs, high, norm, iterations, levels, attack_kwargs)
        name = getattr(attack, "__name__", "attack")
    return finish(inputs, points, norm, f"min_{name}")


def l2_lower_bound(linf_lower: float, l1_lower: float, size: int) -> float:
    """A lower bound on ``||d||_2`` for every ``d`` with ``||d||_inf >= a`` and ``||d||_1 >= b`` in ``R^size``.

    With ``t = |d|_max >= a`` the rest must carry ``b - t`` of L1 mass over ``size - 1``
    coordinates, costing at least ``(b - t)^2 / (size - 1)`` in squared L2; minimising
    ``t^2 + max(b - t, 0)^2 / (size - 1)`` over ``t >= a`` gives ``t = max(a, b / size)``.
    Always at least ``a`` (``||d||_2 >= ||d||_inf``) and ``b / sqrt(size)``.
    """
    a, b = max(float(linf_lower), 0.0), max(float(l1_lower), 0.0)
    if size <= 1:
        return max(a, b)
    t = max(a, b / size)
    return math.sqrt(t * t + max(b - t, 0.0) ** 2 / (size - 1))
