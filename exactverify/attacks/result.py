"""What every attack of the suite returns, and the float64 re-check that fills it in.

Success is *strict* misclassification by a float64 ``network.forward`` of the returned
point: targeted, the target's logit is strictly larger than every other; untargeted,
some logit is strictly larger than the label's. Ties never count. The distortion is
recomputed from the returned points, never taken from the attack's own bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .inputs import AttackInputs

NORMS = ("linf", "l1", "l2")
#: Relative amount by which a point that overshoots its budget by float rounding is pulled
#: back toward ``x`` (rounding of ``x + delta`` can exceed ``eps`` by an ulp).
BUDGET_SHRINK = 1e-12


@dataclass
class AttackResult:
    """Per sample: the attack's point, whether it is (strictly) adversarial, and how far it moved.

    ``points`` (B, *input_shape) float64, always inside the domain (and the budget, for
    fixed-budget attacks); ``success`` (B,) bool from a float64 re-check; ``distortion``
    (B,) float64 in ``norm`` (inf where it failed); ``margin`` (B,) the re-checked
    adversarial margin (> 0 iff success); ``eps`` the budget, if the attack had one.
    """

    points: torch.Tensor
    success: torch.Tensor
    distortion: torch.Tensor
    norm: str
    margin: torch.Tensor
    attack: str = ""
    eps: torch.Tensor | None = None

    @property
    def success_rate(self) -> float:
        return float(self.success.double().mean())


def adversarial_margin(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """How far each row is into the adversarial set: > 0 iff strictly misclassified.

    Targeted: ``z_t - max_{j != t} z_j``; untargeted: ``max_{j != y} z_j - z_y``.
    """
    logits = logits.reshape(logits.shape[0], -1)
    cls = labels if target is None else target
    own = logits.gather(1, cls.reshape(-1, 1)).squeeze(1)
    others = logits.masked_fill(torch.nn.functional.one_hot(cls, logits.shape[1]).bool(), -float("inf"))
    best_other = others.max(1).values
    return own - best_other if target is not None else best_other - own


def norm_of(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-row ``norm`` ("linf", "l1", "l2") of a (B, ...) tensor."""
    flat = delta.reshape(delta.shape[0], -1)
    if norm == "linf":
        return flat.abs().max(1).values
    if norm == "l1":
        return flat.abs().sum(1)
    return flat.pow(2).sum(1).sqrt()


def keep_in_budget(inputs: AttackInputs, points: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """``points`` moved (by at most ``BUDGET_SHRINK`` relative) so ``||points - x|| <= eps`` exactly in float64.

    Only rows that overshoot by rounding move; the result stays in the domain.
    """
    x, low, high = inputs.x, inputs.low, inputs.high
    points = torch.minimum(torch.maximum(points, low), high)
    for _ in range(8):
        size = norm_of(points - x, norm)
        over = size > eps
        if not over.any():
            return points
        shape = (-1,) + (1,) * (x.dim() - 1)
        scale = (eps / size.clamp_min(1e-300) * (1 - BUDGET_SHRINK)).reshape(shape)
        pulled = torch.minimum(torch.maximum(x + (points - x) * scale, low), high)
        points = torch.where(over.reshape(shape), pulled, points)
    raise RuntimeError("could not bring a point inside its budget")  # pragma: no cover - rounding only


def finish(inputs: AttackInputs, points: torch.Tensor, norm: str, attack: str,
           eps: torch.Tensor | None = None) -> AttackResult:
    """Re-check ``points`` with a float64 forward pass and package them as an :class:`AttackResult`."""
    points = points.detach().to(torch.float64).reshape(inputs.x.shape)
    with torch.no_grad():
        margin = adversarial_margin(inputs.network.forward(points), inputs.labels, inputs.target)
    success = margin > 0
    size = norm_of(points - inputs.x, norm)
    distortion = torch.where(success, size, torch.full_like(size, float("inf")))
    return AttackResult(points, success, distortion, norm, margin, attack, eps)
