"""Input regions: boxes, L-infinity balls and L1 balls, each intersected with a box.

Every region is batched: it describes ``B`` regions over one input shape at once,
so bounds can be computed for many regions in one pass. A single region is a batch
of one. ``lower``/``upper`` is always a box that contains the region (for the box and
L-infinity kinds it *is* the region).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .errors import InvalidInputError, ShapeMismatchError

Norm = Literal["linf", "l1", "box"]

#: How far (absolute) a point given as a centre may lie outside its input domain before
#: it is refused (float noise from normalisation); within it, the point is clipped in.
DOMAIN_TOLERANCE = 1e-9


def _as_tensor(value, name: str) -> torch.Tensor:
    """``value`` as a float64 tensor (InvalidInputError naming ``name`` if it is not numbers)."""
    try:
        if isinstance(value, np.ndarray):
            value = np.array(value, dtype=np.float64)  # a writable copy: torch refuses read-only views
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"{name} must be an array of numbers, got {type(value).__name__}") from exc


def _batched(value, shape: tuple[int, ...], name: str) -> torch.Tensor:
    """``value`` as a float64 tensor of shape (B, *shape); a single sample gets B = 1."""
    tensor = _as_tensor(value, name)
    if tuple(tensor.shape) == tuple(shape):
        tensor = tensor.unsqueeze(0)
    elif tensor.dim() >= 1 and tuple(tensor.shape[1:]) != tuple(shape):
        if tensor.dim() == 2 and tensor.shape[1] == int(torch.tensor(shape).prod()):
            tensor = tensor.reshape(tensor.shape[0], *shape)
        elif tensor.dim() == 1 and tensor.numel() == int(torch.tensor(shape).prod()):
            tensor = tensor.reshape(1, *shape)
        else:
            raise ShapeMismatchError(
                f"{name} has shape {tuple(tensor.shape)}; expected {tuple(shape)} or (B, {', '.join(map(str, shape))})"
            )
    if torch.isnan(tensor).any():
        raise InvalidInputError(f"{name} contains NaN")
    return tensor


def _eps_vector(eps, batch: int, name: str = "eps") -> torch.Tensor:
    if isinstance(eps, (str, bytes, bool)):
        raise InvalidInputError(f"{name} must be a number or one number per region, got {eps!r}")
    try:
        eps_t = torch.as_tensor(eps, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"{name} must be a number or one number per region, got {eps!r}") from exc
    if eps_t.numel() == 1:
        eps_t = eps_t.expand(batch).clone()
    if eps_t.numel() != batch:
        raise ShapeMismatchError(f"{name} has {eps_t.numel()} entries for a batch of {batch} regions")
    if not torch.isfinite(eps_t).all() or (eps_t < 0).any():
        raise InvalidInputError(f"{name} must be finite and >= 0, got {eps_t.tolist()[:5]}")
    return eps_t


@dataclass(frozen=True, eq=False)
class Region:
    """A batch of input regions (see module docstring). Build with the helpers below.

    ``norm`` is ``"box"``, ``"linf"`` or ``"l1"``; ``center`` and ``eps`` are set for the
    ball kinds; ``lower``/``upper`` are float64 tensors of shape (B, *shape).
    """

    norm: Norm
    lower: torch.Tensor
    upper: torch.Tensor
    center: torch.Tensor | None = None
    eps: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.lower.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.lower.shape[1:])

    def to(self, device) -> "Region":
        move = (lambda t: None if t is None else t.to(device))  # noqa: E731
        return Region(self.norm, move(self.lower), move(self.upper), move(self.center), move(self.eps))

    def __getitem__(self, index) -> "Region":
        """Sub-batch selection (an int keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        pick = (lambda t: None if t is None else t[index])  # noqa: E731
        return Region(self.norm, pick(self.lower), pick(self.upper), pick(self.center), pick(self.eps))

    def contains(self, x: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
        """Per-sample membership of ``x`` (B, *shape) in its region, within ``tol``."""
        x = x.to(torch.float64)
        flat = (lambda t: t.reshape(t.shape[0], -1))  # noqa: E731
        inside = ((flat(x) >= flat(self.lower) - tol) & (flat(x) <= flat(self.upper) + tol)).all(1)
        if self.norm == "l1":
            inside &= flat(x - self.center).abs().sum(1) <= self.eps + tol
        return inside

    def sample(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` points of each region, shape (count, B, *shape), including extreme ones.

        For boxes and L-infinity balls a third of the points are box vertices, the rest
        uniform. For L1 balls, points are random directions scaled to random radii
        (many on the sphere), then clipped into the box, which keeps them in the ball.
        """
        shape = (count, *self.lower.shape)
        rand = torch.rand(shape, generator=generator, dtype=torch.float64).to(self.lower.device)
        if self.norm in ("box", "linf"):
            vertex = rand[: count // 3] < 0.5
            rand = torch.cat([vertex.to(torch.float64), rand[count // 3:]])
            return self.lower + rand * (self.upper - self.lower)
        direction = -torch.log(rand.clamp_min(1e-300))  # exponential => uniform on simplex
        direction = direction / direction.reshape(count, self.batch_size, -1).sum(-1).reshape(
            count, self.batch_size, *([1] * len(self.shape)))
        sign = torch.where(torch.rand(shape, generator=generator, dtype=torch.float64).to(rand.device) < 0.5, -1.0, 1.0)
        radius = torch.rand((count, self.batch_size), generator=generator, dtype=torch.float64).to(rand.device)
        radius[: count // 2] = 1.0
        radius = radius * self.eps
        delta = sign * direction * radius.reshape(count, self.batch_size, *([1] * len(self.shape)))
        return torch.minimum(torch.maximum(self.center + delta, self.lower), self.upper)


def box(lower, upper, shape: tuple[int, ...] | None = None) -> Region:
    """A box ``lower <= x <= upper`` (e.g. a latent region); batched like the arguments."""
    shape = tuple(shape) if shape is not None else tuple(_as_tensor(lower, "lower").shape)
    low = _batched(lower, shape, "lower")
    high = _batched(upper, shape, "upper")
    low, high = torch.broadcast_tensors(low, high)
    if (low > high).any():
        raise InvalidInputError("box lower bound exceeds upper bound")
    if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise InvalidInputError("box bounds must be finite")
    if not torch.isfinite(high - low).all():
        raise InvalidInputError("box is too wide: upper - lower overflows float64")
    return Region("box", low.clone(), high.clone())


def _domain(domain, shape, batch, center) -> tuple[torch.Tensor, torch.Tensor]:
    if domain is None:
        inf = torch.full((batch, *shape), float("inf"), dtype=torch.float64)
        return -inf, inf
    low, high = (torch.as_tensor(np.array(v, dtype=np.float64)) if not torch.is_tensor(v) else v for v in domain)
    low = low.expand(*shape) if low.dim() == 0 else low
    high = high.expand(*shape) if high.dim() == 0 else high
    low = _batched(low, shape, "domain lower").expand(batch, *shape)
    high = _batched(high, shape, "domain upper").expand(batch, *shape)
    if (low > high).any():
        raise InvalidInputError("domain lower bound exceeds upper bound")
    if ((center < low - 1e-12) | (center > high + 1e-12)).any():
        raise InvalidInputError("center lies outside the input domain")
    return low, high


def _ball(norm: Norm, center, eps, domain, shape: tuple[int, ...] | None) -> Region:
    """The ball of ``norm`` (see :func:`linf_ball`) with its bounding box; refuses non-finite
    centres and boxes (``center +- eps`` clipped to the domain) too wide for float64."""
    shape = tuple(shape) if shape is not None else tuple(_as_tensor(center, "center").shape)
    c = _batched(center, shape, "center")
    if not torch.isfinite(c).all():
        raise InvalidInputError("center contains infinite values")
    eps_t = _eps_vector(eps, c.shape[0])
    low_d, high_d = _domain(domain, shape, c.shape[0], c)
    radius = eps_t.reshape(-1, *([1] * len(shape)))
    low = torch.maximum(c - radius, low_d)
    high = torch.minimum(c + radius, high_d)
    if not (torch.isfinite(low).all() and torch.isfinite(high).all() and torch.isfinite(high - low).all()):
        raise InvalidInputError(
            f"eps={eps_t.max().item():g} is too large: the region's box (center +- eps, clipped to the domain) "
            "is not finite in float64; use a smaller eps or a finite domain"
        )
    return Region(norm, low, high, c, eps_t)


def linf_ball(center, eps, domain=None, shape: tuple[int, ...] | None = None) -> Region:
    """``{x : ||x - center||_inf <= eps}`` intersected with ``domain = (low, high)``.

    ``center`` is (*shape) or (B, *shape); ``eps`` a scalar or one value per region.
    """
    return _ball("linf", center, eps, domain, shape)


def l1_ball(center, eps, domain=None, shape: tuple[int, ...] | None = None) -> Region:
    """``{x : ||x - center||_1 <= eps}`` intersected with ``domain = (low, high)``."""
    return _ball("l1", center, eps, domain, shape)


def ball(center, eps, norm: str = "linf", domain=None, shape=None) -> Region:
    """Dispatch to :func:`linf_ball` or :func:`l1_ball` by ``norm`` name."""
    if norm == "linf":
        return linf_ball(center, eps, domain, shape)
    if norm == "l1":
        return l1_ball(center, eps, domain, shape)
    raise InvalidInputError(f"norm must be 'linf' or 'l1', got {norm!r}")


def bisect_boxes(low: torch.Tensor, high: torch.Tensor, dims: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Halve each flat box ``[low[k], high[k]]`` (B, n) along input ``dims[k]``; returns the 2B
    children's bounds, first the lower halves of all boxes, then the upper halves (so the
    child ``k`` and ``k + B`` together cover box ``k`` exactly)."""
    rows = torch.arange(low.shape[0], device=low.device)
    mid = (low[rows, dims] + high[rows, dims]) / 2
    left_high, right_low = high.clone(), low.clone()
    left_high[rows, dims] = mid
    right_low[rows, dims] = mid
    return torch.cat([low, right_low]), torch.cat([left_high, high])
