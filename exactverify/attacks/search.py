"""The smallest budget at which an attack succeeds, found by batched bisection over eps.

This is how an attack's distortion is measured against the provable minimum: for each
sample, the smallest eps at which PGD finds a (strictly) misclassified point, to within
``iterations`` halvings of the starting bracket.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..ir import Network
from .pgd import pgd


def pgd_min_distortion(
    network: Network,
    center: torch.Tensor,
    score: Callable[[torch.Tensor], torch.Tensor],
    success: Callable[[torch.Tensor], torch.Tensor],
    eps_high: torch.Tensor,
    *,
    norm: str = "linf",
    domain=None,
    iterations: int = 12,
    steps: int = 60,
    restarts: int = 1,
    deadline: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample: (distortion found, adversarial point, found flag).

    ``score`` is maximised by PGD; ``success(logits)`` says per row whether a point counts.
    Samples for which the attack fails even at ``eps_high`` get distortion inf.
    ``deadline`` (a ``time.perf_counter()`` value) ends the search early with what it has.
    """
    batch = center.shape[0]
    low = torch.zeros(batch, dtype=torch.float64)
    high = torch.as_tensor(eps_high, dtype=torch.float64).expand(batch).clone()
    best = torch.full((batch,), float("inf"), dtype=torch.float64)
    points = center.clone().to(torch.float64)
    generator = torch.Generator().manual_seed(0)

    def attempt(eps: torch.Tensor) -> torch.Tensor:
        adv, _ = pgd(network, center, eps, score, norm=norm, domain=domain, steps=steps,
                     restarts=restarts, generator=generator, deadline=deadline)
        ok = success(network.forward(adv))
        diff = (adv - center).reshape(batch, -1).abs()
        dist = diff.max(1).values if norm == "linf" else diff.sum(1)
        better = ok & (dist < best)
        best[better] = dist[better]
        points[better] = adv[better]
        return ok

    found = attempt(high)
    high = torch.where(found, torch.minimum(high, best), high)
    for _ in range(iterations):
        if deadline is not None and time.perf_counter() > deadline:
            break
        mid = (low + high) / 2
        ok = attempt(mid) & found
        high = torch.where(ok, torch.minimum(mid, best), high)
        low = torch.where(ok | ~found, low, mid)
    return best, points, found
