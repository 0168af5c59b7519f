"""Projected gradient attacks (PGD / BIM) under L-inf and L1 budgets, batched.

The attack maximises a differentiable score (e.g. an output spec's slack: >= 0 means the
point is adversarial) over ``{x : ||x - center|| <= eps} ∩ [low, high]``. Every returned
point lies in its region; whether it is adversarial must be re-checked by the caller.
The L1 variant steps along the sign of the largest gradient coordinates (as sparse L1
descent does) and projects exactly onto the L1 ball intersected with the box.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..ir import Network

Score = Callable[[torch.Tensor], torch.Tensor]

#: Bisection steps for the L1 projection threshold; the result is shrunk to feasibility
#: afterwards, so fewer steps cost only precision of the projection, never validity.
L1_PROJECTION_ITERATIONS = 30


def project_l1_box(delta: torch.Tensor, eps: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of ``delta`` onto ``{d : ||d||_1 <= eps, low <= d <= high}``, per row.

    Requires ``low <= 0 <= high``. The projection is ``clip(soft(delta, lam), low, high)`` with the
    threshold ``lam >= 0`` found by bisection; the result is shrunk slightly if bisection
    leaves it above the budget, so it is always feasible.
    """
    flat = delta.reshape(delta.shape[0], -1)
    lo, hi = low.reshape(flat.shape), high.reshape(flat.shape)
    eps = eps.reshape(-1, 1).to(flat.dtype)

    def shrink(lam: torch.Tensor) -> torch.Tensor:
        soft = torch.sign(flat) * torch.clamp(flat.abs() - lam, min=0)
        return torch.minimum(torch.maximum(soft, lo), hi)

    inside = shrink(torch.zeros_like(eps)).abs().sum(1, keepdim=True) <= eps
    lam_lo = torch.zeros_like(eps)
    lam_hi = flat.abs().max(1, keepdim=True).values
    for _ in range(L1_PROJECTION_ITERATIONS):
        mid = (lam_lo + lam_hi) / 2
        over = shrink(mid).abs().sum(1, keepdim=True) > eps
        lam_lo = torch.where(over, mid, lam_lo)
        lam_hi = torch.where(over, lam_hi, mid)
    result = torch.where(inside, shrink(torch.zeros_like(eps)), shrink(lam_hi))
    size = result.abs().sum(1, keepdim=True)
    result = torch.where(size > eps, result * (eps / size.clamp_min(1e-300)), result)
    return result.reshape(delta.shape)


def pgd(
    network: Network,
    center: torch.Tensor,
    eps: torch.Tensor,
    score: Score,
    *,
    norm: str = "linf",
    domain: tuple[torch.Tensor, torch.Tensor] | None = None,
    steps: int = 100,
    restarts: int = 1,
    step_fraction: float = 0.1,
    l1_coordinates: float = 0.05,
    generator: torch.Generator | None = None,
    deadline: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise ``score(network(x))`` over each region; returns (best points, best scores).

    ``center`` is (B, *shape), ``eps`` (B,). Restarts after the first begin at a random
    point of the region. ``step_fraction`` is the step size as a fraction of eps;
    ``l1_coordinates`` the fraction of coordinates moved per L1 step. ``deadline`` (a
    ``time.perf_counter()`` value) stops the attack early with the best points so far.
    """
    center = center.to(torch.float64)
    batch = center.shape[0]
    eps = torch.as_tensor(eps, dtype=torch.float64).reshape(-1).expand(batch)
    shape = (batch,) + (1,) * (center.dim() - 1)
    if domain is None:
        low = torch.full_like(center, -float("inf"))
        high = torch.full_like(center, float("inf"))
    else:
        low = torch.as_tensor(domain[0], dtype=torch.float64).expand_as(center)
        high = torch.as_tensor(domain[1], dtype=torch.float64).expand_as(center)
    radius = eps.reshape(shape)
    d_low = torch.maximum(low - center, -radius)
    d_high = torch.minimum(high - center, radius)

    def project(delta: torch.Tensor) -> torch.Tensor:
        if norm == "linf":
            return torch.minimum(torch.maximum(delta, d_low), d_high)
        return project_l1_box(delta, eps, d_low, d_high)

    best_x = center.clone()
    with torch.no_grad():
        best_score = score(network.forward(center))
    for restart in range(restarts):
        if restart == 0:
            delta = torch.zeros_like(center)
        else:
            noise = torch.rand(center.shape, generator=generator, dtype=torch.float64) * 2 - 1
            delta = project(noise.to(center.device) * radius)
        for _ in range(steps):
            if deadline is not None and time.perf_counter() > deadline:
                break
            delta.requires_grad_(True)
            values = score(network.forward(center + delta))
            (grad,) = torch.autograd.grad(values.sum(), delta)
            with torch.no_grad():
                improved = values > best_score
                best_score = torch.where(improved, values, best_score)
                best_x[improved] = (center + delta)[improved]
                if norm == "linf":
                    delta = delta + step_fraction * radius * grad.sign()
                else:
                    # only coordinates that can still move toward the gradient compete for the step
                    movable = ((grad > 0) & (delta < d_high)) | ((grad < 0) & (delta > d_low))
                    flat = (grad * movable).reshape(batch, -1)
                    k = max(1, int(l1_coordinates * flat.shape[1]))
                    cut = flat.abs().topk(k, dim=1).values[:, -1:]
                    mask = (flat.abs() >= cut) & (flat != 0)
                    count = mask.sum(1, keepdim=True).clamp_min(1)
                    step = mask * flat.sign() * (step_fraction * eps.reshape(-1, 1) / count)
                    delta = delta + step.reshape(delta.shape)
                delta = project(delta).detach()
        with torch.no_grad():
            values = score(network.forward(center + delta))
            improved = values > best_score
            best_score = torch.where(improved, values, best_score)
            best_x[improved] = (center + delta)[improved]
    return best_x.detach(), best_score.detach()
