"""Optimisation helpers shared by the Carlini-Wagner and EAD attacks.

- :class:`RowAdam`: Adam whose state can be reset row by row (each sample of a batch runs
  its own episode in CW-L-inf).
- :func:`to_tanh_space` / :func:`from_tanh_space`: CW's change of variables
  ``x = low + (high - low) * (tanh(w) + 1) / 2``, which keeps every iterate in the domain.
- :func:`update_constants`: CW's per-sample binary search on the constant ``c``.
"""

from __future__ import annotations

import torch

#: ``atanh`` is taken of ``(1 - TANH_MARGIN) * z`` so that points on the domain's faces map to
#: finite ``w`` (CW use 0.999999); the start point then differs from ``x`` by at most
#: ``TANH_MARGIN * (high - low) / 2``.
TANH_MARGIN = 1e-6
#: A constant ``c`` above this is "no upper bound found yet" in the binary search.
NO_UPPER = 1e10


class RowAdam:
    """Adam (Kingma & Ba) on one tensor; ``reset(rows)`` restarts the moments of those rows."""

    def __init__(self, param: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = torch.zeros(param.shape[0], dtype=param.dtype)

    def reset(self, rows: torch.Tensor) -> None:
        self.m[rows] = 0
        self.v[rows] = 0
        self.t[rows] = 0

    def step(self, param: torch.Tensor, grad: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The updated parameter; only ``rows`` (a bool mask) move when given."""
        mask = torch.ones(param.shape[0], dtype=torch.bool) if rows is None else rows
        shape = (-1,) + (1,) * (param.dim() - 1)
        self.t = self.t + mask.to(param.dtype)
        m = self.b1 * self.m + (1 - self.b1) * grad
        v = self.b2 * self.v + (1 - self.b2) * grad * grad
        t = self.t.clamp_min(1).reshape(shape)
        update = self.lr * (m / (1 - self.b1 ** t)) / ((v / (1 - self.b2 ** t)).sqrt() + self.eps)
        keep = mask.reshape(shape)
        self.m = torch.where(keep, m, self.m)
        self.v = torch.where(keep, v, self.v)
        return torch.where(keep, param - update, param)


def to_tanh_space(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``w`` with ``from_tanh_space(w)`` equal to ``x`` up to ``TANH_MARGIN`` (see module doc)."""
    half = (high - low) / 2
    z = torch.where(half > 0, (x - low) / half.clamp_min(1e-300) - 1, torch.zeros_like(x))
    return torch.atanh(z.clamp(-1, 1) * (1 - TANH_MARGIN))


def from_tanh_space(w: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """The point ``low + (high - low) * (tanh(w) + 1) / 2``, clamped to the domain against rounding."""
    point = low + (high - low) * (torch.tanh(w) + 1) / 2
    return torch.minimum(torch.maximum(point, low), high)


def update_constants(const: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, succeeded: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of CW's binary search: halve toward success, grow 10x until a success bounds ``c``."""
    upper = torch.where(succeeded, torch.minimum(upper, const), upper)
    lower = torch.where(succeeded, lower, torch.maximum(lower, const))
    bounded = upper < NO_UPPER
    const = torch.where(bounded, (lower + upper) / 2, const * 10)
    return const, lower, upper


def hinge(margin: torch.Tensor, confidence: float) -> torch.Tensor:
    """CW's objective ``f = max(-margin, -confidence)``: zero gradient once ``margin >= confidence``."""
    return torch.clamp(-margin, min=-confidence)
