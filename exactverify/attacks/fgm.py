"""Fast gradient method (FGSM and its L1/L2 variants): one step of size ``eps``, batched.

The step maximises the loss's linearisation at ``x`` over the ball intersected with the
domain: L-inf, ``clip(eps * sign(g))`` (exact); L1, the budget goes greedily to the
coordinates with the largest ``|g|`` up to each one's room in the domain (exact, and
the classic "largest coordinate" step when the domain does not bind); L2,
``clip(eps * g / ||g||)`` (clipping only shrinks coordinates, so it stays in budget).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InvalidInputError
from ..ir import Network
from .inputs import DEFAULT_DOMAIN, AttackInputs, check_eps, check_inputs
from .result import AttackResult, adversarial_margin, finish, keep_in_budget

FGM_NORMS = ("linf", "l1", "l2")
LOSSES = ("ce", "margin")


def attack_loss(inputs: AttackInputs, logits: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-row loss the attack *ascends*: cross-entropy away from the label / toward the target, or the margin."""
    if loss == "margin":
        return adversarial_margin(logits, inputs.labels, inputs.target)
    if inputs.target is None:
        return F.cross_entropy(logits, inputs.labels, reduction="none")
    return -F.cross_entropy(logits, inputs.target, reduction="none")


def steepest_step(grad: torch.Tensor, eps: torch.Tensor, d_low: torch.Tensor, d_high: torch.Tensor,
                  norm: str) -> torch.Tensor:
    """The step ``d`` with ``||d|| <= eps`` and ``d_low <= d <= d_high`` that (nearly) maximises ``<grad, d>``.

    Requires ``d_low <= 0 <= d_high``; exact for L-inf and L1 (see module doc).
    """
    batch = grad.shape[0]
    shape = (batch,) + (1,) * (grad.dim() - 1)
    radius = eps.reshape(shape)
    if norm == "linf":
        return torch.minimum(torch.maximum(radius * grad.sign(), d_low), d_high)
    if norm == "l2":
        length = grad.reshape(batch, -1).norm(dim=1).reshape(shape)
        unit = torch.where(length > 0, grad / length.clamp_min(1e-300), torch.zeros_like(grad))
        return torch.minimum(torch.maximum(radius * unit, d_low), d_high)
    flat = grad.reshape(batch, -1)
    room = torch.where(flat > 0, d_high.reshape(batch, -1), -d_low.reshape(batch, -1))
    room = torch.where(flat != 0, room, torch.zeros_like(room))
    order = flat.abs().argsort(dim=1, descending=True)
    room_sorted = room.gather(1, order)
    spent_before = room_sorted.cumsum(1) - room_sorted
    take = torch.minimum(torch.clamp(eps.reshape(-1, 1) - spent_before, min=0), room_sorted)
    amount = torch.zeros_like(flat).scatter(1, order, take)
    return (amount * flat.sign()).reshape(grad.shape)


def fgm(network: Network, x, labels, eps, *, target=None, norm: str = "linf", domain=DEFAULT_DOMAIN,
        loss: str = "ce") -> AttackResult:
    """One fast-gradient step of size ``eps`` (per sample) from ``x``; inputs stay in ``domain``.

    ``loss="ce"`` follows Goodfellow et al. (cross-entropy); ``"margin"`` ascends the logit margin.
    """
    inputs = check_inputs(network, x, labels, target, domain, norm=norm, norms=FGM_NORMS)
    eps_t = check_eps(eps, inputs.batch)
    if loss not in LOSSES:
        raise InvalidInputError(f"loss must be one of {LOSSES}, got {loss!r}")
    point = inputs.x.clone().requires_grad_(True)
    value = attack_loss(inputs, network.forward(point).reshape(inputs.batch, -1), loss)
    (grad,) = torch.autograd.grad(value.sum(), point)
    step = steepest_step(grad, eps_t, inputs.low - inputs.x, inputs.high - inputs.x, norm)
    points = keep_in_budget(inputs, inputs.x + step, eps_t, norm)
    return finish(inputs, points, norm, "fgm", eps_t)
